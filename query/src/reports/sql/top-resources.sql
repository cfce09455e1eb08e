-- top-resources: the instances, access keys, buckets and clusters with the most findings of
-- High severity and above (severity >= 7).
with high as (select * from findings_latest where severity >= 7),
buckets as (select id, severity, updated_at, unnest(bucket_names) as bucket from high),
affected as (
  select 'instance' as kind, instance_id as resource, id, severity, updated_at
    from high where instance_id is not null
  union all
  select 'access key', access_key_id, id, severity, updated_at
    from high where access_key_id is not null
  union all
  select 'bucket', bucket, id, severity, updated_at from buckets
  union all
  select 'eks cluster', eks_cluster_name, id, severity, updated_at
    from high where eks_cluster_name is not null
  union all
  select 'ecs cluster', ecs_cluster_name, id, severity, updated_at
    from high where ecs_cluster_name is not null
)
select kind, resource, count(distinct id) as findings, max(severity) as max_severity,
       max(updated_at) as last_seen
from affected
group by kind, resource
order by findings desc, max_severity desc, kind, resource
limit 50
