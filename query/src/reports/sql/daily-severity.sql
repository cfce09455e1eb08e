-- daily-severity: findings seen per day, by severity label.
-- A finding counts once on each day it was exported (a version updated that day), with the
-- label of that day's newest version (between versions of one instant, the larger count,
-- then the higher severity).
with daily as (
  select date_trunc('day', updated_at) as day, id,
         last_value(severity_label order by updated_at, count, severity) as severity_label
  from findings
  group by date_trunc('day', updated_at), id
)
select day, severity_label, count(*) as findings
from daily
group by day, severity_label
order by day, severity_label
