-- threat-matrix: threat purpose × resource type affected × threat family, from the type name
-- (ThreatPurpose:ResourceTypeAffected/ThreatFamilyName...).
select threat_purpose, resource_type_affected, threat_family, count(*) as findings,
       max(severity) as max_severity
from findings_latest
group by threat_purpose, resource_type_affected, threat_family
order by findings desc, threat_purpose, resource_type_affected, threat_family
