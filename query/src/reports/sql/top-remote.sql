-- top-remote: the remote IP addresses in most findings, with their country and owner.
select remote_ip, remote_country, remote_org, remote_asn, count(*) as findings,
       max(severity) as max_severity, max(updated_at) as last_seen
from findings_latest
where remote_ip is not null
group by remote_ip, remote_country, remote_org, remote_asn
order by findings desc, remote_ip
limit 50
