-- api-users: API-call findings by API and by the user that called it.
select api, api_service_name, user_name, user_type, count(*) as findings,
       max(severity) as max_severity, max(updated_at) as last_seen
from findings_latest
where action_type = 'AWS_API_CALL'
group by api, api_service_name, user_name, user_type
order by findings desc, api, user_name
limit 50
