-- resource-timeline: every version of every finding touching one resource ($resource: an
-- instance id, access key id, user name, bucket or cluster name), in time order.
select updated_at, id, type, severity, count, archived, title
from (
  select updated_at, id, type, severity, count, archived, title
  from findings
  where instance_id = $resource or access_key_id = $resource or user_name = $resource
     or eks_cluster_name = $resource or ecs_cluster_name = $resource
  union all
  select updated_at, id, type, severity, count, archived, title
  from (select updated_at, id, type, severity, count, archived, title,
               unnest(bucket_names) as bucket
        from findings)
  where bucket = $resource
)
order by updated_at, id
