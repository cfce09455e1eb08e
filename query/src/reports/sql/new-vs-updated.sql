-- new-vs-updated: per day, the findings exported for the first time and those exported again.
-- A finding's first version is its earliest over the whole history; $since and $until pick
-- the days shown.
with firsts as (
  select date_trunc('day', min(updated_at)) as day
  from findings
  group by id
  having min(updated_at) >= $since and min(updated_at) < $until
), per_day as (
  select date_trunc('day', updated_at) as day, count(*) as versions
  from findings
  where updated_at >= $since and updated_at < $until
  group by date_trunc('day', updated_at)
), first_per_day as (
  select day, count(*) as first_versions from firsts group by day
)
select v.day, coalesce(f.first_versions, 0) as first_versions,
       v.versions - coalesce(f.first_versions, 0) as later_versions
from per_day v left join first_per_day f on f.day = v.day
order by v.day
