-- top-types: finding types by number of findings, with their severity and time span.
select type, count(*) as findings, max(severity) as max_severity,
       round(avg(severity), 2) as avg_severity,
       min(created_at) as first_seen, max(updated_at) as last_seen
from findings_latest
group by type
order by findings desc, type
limit 50
