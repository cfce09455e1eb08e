//! `gdq teardown`: removes what setup created — the publishing destination, gdq's bucket
//! notification, the alert rule and topic, the queues. The detector, the key and the
//! findings stay unless asked for by name: they hold history no rerun can bring back.

use aws_sdk_s3::types::{Delete, ObjectIdentifier};

use crate::clients::Clients;
use crate::error::{SetupError, aws, code};
use crate::record::{RegionRecord, SetupRecord};
use crate::report::Report;
use crate::{alerts, bucket, destination, detector, forwarding, notification, queue};

#[derive(Debug, Clone, Copy, Default)]
pub struct TeardownOptions {
    pub disable_detector: bool,
    /// Schedules deletion (after KMS's longest waiting period, 30 days).
    pub delete_key: bool,
    /// Deletes every object (all versions) and the bucket.
    pub delete_bucket: bool,
}

pub const KEY_DELETION_DAYS: i32 = 30;

pub async fn teardown(
    c: &Clients,
    record: &SetupRecord,
    o: TeardownOptions,
    r: &mut Report<'_>,
) -> Result<(), SetupError> {
    let n = record.names();
    // Which recorded detectors still exist, region by region.
    let mut detectors = Vec::new();
    for part in record.region_records() {
        r.in_region(&part.region);
        let gd = c.guardduty_in(&part.region);
        let exists = remove_destination(&gd, &part, r).await?;
        detectors.push((part, gd, exists));
    }
    r.global();

    let bucket_exists = bucket::exists(&c.s3, &record.bucket).await?;
    if bucket_exists {
        let configuration = notification::current(&c.s3, &record.bucket).await?;
        let ours = configuration
            .queue_configurations()
            .iter()
            .any(|q| q.id() == Some(notification::ID));
        if ours {
            if !r.dry_run {
                c.s3.put_bucket_notification_configuration()
                    .bucket(&record.bucket)
                    .notification_configuration(notification::merged(&configuration, None))
                    .send()
                    .await
                    .map_err(aws("s3:PutBucketNotificationConfiguration"))?;
            }
            r.change(
                "notification",
                format!("remove {} (others kept)", notification::ID),
            );
        } else {
            r.found("notification", "none of gdq's");
        }
    }

    if let Some(a) = &record.alerts {
        if alerts::rule(&c.events, &a.rule_name).await?.is_some() {
            if !r.dry_run {
                if alerts::target(&c.events, &a.rule_name).await?.is_some() {
                    c.events
                        .remove_targets()
                        .rule(&a.rule_name)
                        .ids(alerts::TARGET_ID)
                        .send()
                        .await
                        .map_err(aws("events:RemoveTargets"))?;
                }
                c.events
                    .delete_rule()
                    .name(&a.rule_name)
                    .send()
                    .await
                    .map_err(aws("events:DeleteRule"))?;
            }
            r.change("alerts", format!("delete rule {}", a.rule_name));
        }
        if alerts::topic_attributes(&c.sns, &a.topic_arn)
            .await?
            .is_some()
        {
            if !r.dry_run {
                c.sns
                    .delete_topic()
                    .topic_arn(&a.topic_arn)
                    .send()
                    .await
                    .map_err(aws("sns:DeleteTopic"))?;
            }
            r.change(
                "alerts",
                format!("delete topic {} and its subscriptions", a.topic_arn),
            );
        }
    }

    if let Some(a) = &record.alerts {
        for (part, _, _) in detectors
            .iter()
            .filter(|(p, _, _)| p.region != record.region)
        {
            r.in_region(&part.region);
            if forwarding::remove_rule(&c.events_in(&part.region), &a.rule_name, r.dry_run).await? {
                r.change("alerts", format!("delete forwarding rule {}", a.rule_name));
            }
        }
        r.global();
        if a.forward_role_arn.is_some()
            && forwarding::remove_role(c, &a.rule_name, r.dry_run).await?
        {
            r.change(
                "alerts",
                format!("delete role {}", forwarding::role_name(&a.rule_name)),
            );
        }
    }

    for (step, url) in [
        ("queue", &record.queue_url),
        ("dead-letter", &record.dead_letter_queue_url),
    ] {
        let name = url.rsplit('/').next().unwrap_or(url);
        if queue::url(&c.sqs, name).await?.is_none() {
            r.found(step, format!("{name} already gone"));
            continue;
        }
        if !r.dry_run {
            c.sqs
                .delete_queue()
                .queue_url(url)
                .send()
                .await
                .map_err(aws("sqs:DeleteQueue"))?;
        }
        r.change(step, format!("delete {name}"));
    }

    for (part, gd, exists) in &detectors {
        r.in_region(&part.region);
        let id = &part.detector_id;
        if o.disable_detector && *exists {
            if !r.dry_run {
                gd.update_detector()
                    .detector_id(id)
                    .enable(false)
                    .send()
                    .await
                    .map_err(aws("guardduty:UpdateDetector"))?;
            }
            r.change("detector", format!("disable {id} (its findings stay)"));
        } else if *exists {
            r.note(
                "detector",
                format!("{id} stays enabled (--disable-detector)"),
            );
        } else {
            r.found("detector", format!("{id} no longer exists"));
        }
    }
    r.global();
    if record.organization.is_some() {
        r.note(
            "organization",
            "the delegated administrator and members' auto-enable stay: members keep GuardDuty \
             on (guardduty:UpdateOrganizationConfiguration with NONE turns it off for new ones)",
        );
    }

    if o.delete_bucket && bucket_exists {
        let removed = if r.dry_run {
            0
        } else {
            empty_bucket(c, &record.bucket).await?
        };
        if !r.dry_run {
            c.s3.delete_bucket()
                .bucket(&record.bucket)
                .send()
                .await
                .map_err(aws("s3:DeleteBucket"))?;
        }
        r.change(
            "bucket",
            format!(
                "delete s3://{} and its {removed} object version(s)",
                record.bucket
            ),
        );
    } else if bucket_exists {
        r.note(
            "bucket",
            format!(
                "s3://{} and the findings in it stay (--delete-bucket)",
                n.bucket
            ),
        );
    }

    if o.delete_key {
        if !r.dry_run {
            match c
                .kms
                .delete_alias()
                .alias_name(&record.key_alias)
                .send()
                .await
            {
                Err(e) if code(&e) != "NotFoundException" => {
                    return Err(aws("kms:DeleteAlias")(e));
                }
                _ => {}
            }
            // The key id rather than the ARN: both name a key of this account, and moto
            // 5.2 only looks keys up by id here.
            let key_id = record.key_arn.rsplit('/').next().unwrap_or(&record.key_arn);
            c.kms
                .schedule_key_deletion()
                .key_id(key_id)
                .pending_window_in_days(KEY_DELETION_DAYS)
                .send()
                .await
                .map_err(aws("kms:ScheduleKeyDeletion"))?;
        }
        let warning = if o.delete_bucket {
            ""
        } else {
            "; the exports it encrypts become unreadable then"
        };
        r.change(
            "kms key",
            format!(
                "schedule deletion of {} in {KEY_DELETION_DAYS} days (kms:CancelKeyDeletion undoes it){warning}",
                record.key_arn
            ),
        );
    } else {
        r.note(
            "kms key",
            format!("{} stays (--delete-key)", record.key_arn),
        );
    }
    Ok(())
}

/// Deletes `part`'s publishing destination; returns whether its detector still exists. A
/// deleted detector took its destination with it (and GuardDuty refuses to list the
/// destinations of a detector it does not know).
async fn remove_destination(
    gd: &aws_sdk_guardduty::Client,
    part: &RegionRecord,
    r: &mut Report<'_>,
) -> Result<bool, SetupError> {
    let exists = detector::find(gd).await?.as_deref() == Some(part.detector_id.as_str());
    let destination = if exists {
        destination::find(gd, &part.detector_id).await?
    } else {
        None
    };
    match destination {
        Some(d) => {
            if !r.dry_run {
                gd.delete_publishing_destination()
                    .detector_id(&part.detector_id)
                    .destination_id(&d.id)
                    .send()
                    .await
                    .map_err(aws("guardduty:DeletePublishingDestination"))?;
            }
            r.change(
                "destination",
                format!("delete {} → {}", d.id, d.destination_arn),
            );
        }
        None => r.found("destination", "none"),
    }
    Ok(exists)
}

/// Deletes every object version and delete marker; returns how many.
async fn empty_bucket(c: &Clients, bucket: &str) -> Result<usize, SetupError> {
    let mut removed = 0;
    loop {
        let page =
            c.s3.list_object_versions()
                .bucket(bucket)
                .send()
                .await
                .map_err(aws("s3:ListObjectVersions"))?;
        let mut ids = Vec::new();
        for (key, version) in page
            .versions()
            .iter()
            .map(|v| (v.key(), v.version_id()))
            .chain(
                page.delete_markers()
                    .iter()
                    .map(|m| (m.key(), m.version_id())),
            )
        {
            let Some(key) = key else { continue };
            ids.push(
                ObjectIdentifier::builder()
                    .key(key)
                    .set_version_id(version.map(str::to_string))
                    .build()?,
            );
        }
        if ids.is_empty() {
            return Ok(removed);
        }
        removed += ids.len();
        for chunk in ids.chunks(1000) {
            c.s3.delete_objects()
                .bucket(bucket)
                .delete(
                    Delete::builder()
                        .set_objects(Some(chunk.to_vec()))
                        .quiet(true)
                        .build()?,
                )
                .send()
                .await
                .map_err(aws("s3:DeleteObjects"))?;
        }
    }
}
