-- account-region: findings per account and region, High and above counted apart.
select account_id, region, count(*) as findings,
       count(*) filter (where severity >= 7) as high_or_critical,
       max(updated_at) as last_seen
from findings_latest
group by account_id, region
order by findings desc, account_id, region
