-- resource-severity: findings per resource type and severity label.
select resource_type, severity_label, count(*) as findings
from findings_latest
group by resource_type, severity_label
order by resource_type, findings desc, severity_label
