-- new-types: finding types whose first sighting in the whole history is in [$since, $until).
with first as (
  select type, min(created_at) as first_seen, count(distinct id) as findings,
         max(severity) as max_severity
  from findings
  group by type
)
select type, first_seen, findings, max_severity
from first
where first_seen >= $since and first_seen < $until
order by first_seen, type
