-- recurring: findings whose activity count grew the most across their exported versions.
select id, type, account_id, count(*) as versions, min(count) as first_count,
       max(count) as last_count, max(count) - min(count) as growth,
       min(updated_at) as first_exported, max(updated_at) as last_exported
from findings
group by id, type, account_id
having count(*) > 1
order by growth desc, versions desc, id
limit 50
