-- spikes: account-days with more than $threshold findings seen.
select account_id, date_trunc('day', updated_at) as day, count(distinct id) as findings,
       max(severity) as max_severity
from findings
group by account_id, date_trunc('day', updated_at)
having count(distinct id) > $threshold
order by findings desc, account_id, day
