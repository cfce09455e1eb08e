-- new-vs-updated: per day, the findings exported for the first time and those exported again.
-- Versions are ranked over the whole history; $since and $until pick the days shown.
with ranked as (
  select id, updated_at,
         row_number() over (partition by id order by updated_at) as version
  from findings
)
select date_trunc('day', updated_at) as day,
       count(*) filter (where version = 1) as first_versions,
       count(*) filter (where version > 1) as later_versions
from ranked
where updated_at >= $since and updated_at < $until
group by date_trunc('day', updated_at)
order by day
