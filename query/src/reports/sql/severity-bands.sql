-- severity-bands: findings (newest versions) in GuardDuty's four severity bands.
with bands(band, min_severity, max_severity, ord) as (
  values ('Low', 1.0, 3.9, 1), ('Medium', 4.0, 6.9, 2), ('High', 7.0, 8.9, 3),
         ('Critical', 9.0, 10.0, 4)
)
select b.band, b.min_severity, b.max_severity, count(l.id) as findings
from bands b left join findings_latest l on l.severity_label = b.band
group by b.band, b.min_severity, b.max_severity, b.ord
order by b.ord
