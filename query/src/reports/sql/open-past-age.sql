-- open-past-age: findings not archived and older than their severity's limit, measured
-- against now: High and Critical created before $high_before, Medium before
-- $medium_before, Low before $low_before (defaults: 1, 7 and 30 days ago).
select id, type, severity, severity_label, account_id, region, created_at, updated_at, title,
       'https://console.aws.amazon.com/guardduty/home?region=' || region
         || '#/findings?macros=current&fId=' || id as console_url
from findings_latest
where not archived
  and ((severity >= 7 and created_at < $high_before)
    or (severity >= 4 and severity < 7 and created_at < $medium_before)
    or (severity < 4 and created_at < $low_before))
order by severity desc, created_at, id
