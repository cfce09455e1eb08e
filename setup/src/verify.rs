//! `gdq setup verify`: checks every link of the export path and names the broken one.

use std::collections::HashMap;

use aws_sdk_guardduty::types::DetectorStatus;
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::Value;

use crate::clients::Clients;
use crate::error::{SetupError, aws};
use crate::policy::{self, Names};
use crate::record::{AlertsRecord, RegionRecord, SetupRecord};
use crate::{alerts, bucket, destination, forwarding, key, notification, organization, queue};

/// One link of the path, and whether it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub link: &'static str,
    /// The region of a regional link (detector, destination, forwarding, organization);
    /// `None` for the shared links, which live in the home region.
    pub region: Option<String>,
    pub ok: bool,
    pub detail: String,
}

impl Check {
    fn new(link: &'static str, ok: bool, detail: impl Into<String>) -> Check {
        Check {
            link,
            region: None,
            ok,
            detail: detail.into(),
        }
    }

    fn in_region(mut self, region: &str) -> Check {
        self.region = Some(region.to_string());
        self
    }
}

/// Every check, in the order GuardDuty's findings travel: each region's links, then the
/// shared ones. An AWS error on one check fails that check (a deleted queue is a broken
/// link, not a crash) and the others still run.
pub async fn verify(c: &Clients, record: &SetupRecord) -> Vec<Check> {
    let n = record.names();
    let mut checks = Vec::new();
    for part in record.region_records() {
        let gd = c.guardduty_in(&part.region);
        checks.push(detector(&gd, &part).await.in_region(&part.region));
        checks.push(destination(&gd, &part, &n).await.in_region(&part.region));
        if record.organization.is_some() {
            checks.push(members(c, &part).await.in_region(&part.region));
        }
        if let Some(a) = record
            .alerts
            .as_ref()
            .filter(|_| part.region != record.region)
        {
            checks.push(
                forward_rule(c, &n, a, &part.region)
                    .await
                    .in_region(&part.region),
            );
        }
    }
    checks.extend([
        key_policy(c, &n).await,
        key_rotation(c, &n).await,
        bucket_encryption(c, &n).await,
        bucket_policy(c, &n).await,
        notification(c, &n).await,
    ]);
    // Both queue checks read the same attributes.
    let attributes = queue::attributes(&c.sqs, &record.queue_url).await;
    checks.push(queue_policy(&attributes, &n));
    checks.push(dead_letter(c, record, &attributes).await);
    if let Some(a) = &record.alerts {
        checks.push(alert_rule(c, a).await);
        checks.push(alert_topic(c, a).await);
    }
    checks
}

fn failed(link: &'static str, e: impl std::fmt::Display) -> Check {
    Check::new(link, false, e.to_string())
}

async fn detector(gd: &aws_sdk_guardduty::Client, record: &RegionRecord) -> Check {
    const LINK: &str = "detector";
    match gd
        .get_detector()
        .detector_id(&record.detector_id)
        .send()
        .await
    {
        Ok(d) if d.status() == Some(&DetectorStatus::Enabled) => {
            Check::new(LINK, true, format!("{} enabled", record.detector_id))
        }
        Ok(d) => Check::new(
            LINK,
            false,
            format!(
                "{} is {}: GuardDuty produces no findings",
                record.detector_id,
                d.status().map(|s| s.as_str()).unwrap_or("in no state")
            ),
        ),
        Err(e) => failed(LINK, aws("guardduty:GetDetector")(e)),
    }
}

async fn destination(gd: &aws_sdk_guardduty::Client, record: &RegionRecord, n: &Names) -> Check {
    const LINK: &str = "destination";
    let d = match destination::find(gd, &record.detector_id).await {
        Ok(Some(d)) => d,
        Ok(None) => return Check::new(LINK, false, "the detector has no publishing destination"),
        Err(e) => return failed(LINK, e),
    };
    let arn = destination::destination_arn(n);
    if d.destination_arn != arn || d.key_arn != n.key_arn {
        return Check::new(
            LINK,
            false,
            format!(
                "{} exports to {} with {}, not to {arn} with {}",
                d.id, d.destination_arn, d.key_arn, n.key_arn
            ),
        );
    }
    Check::new(
        LINK,
        d.status == "PUBLISHING",
        format!("{} → {arn}: status {}", d.id, d.status),
    )
}

/// Which of `ours` are missing from (or differ in) `document`, by Sid.
fn missing_statements(document: Option<&Value>, ours: &[Value]) -> Vec<String> {
    let theirs = document.map(policy::statements).unwrap_or_default();
    ours.iter()
        .filter(|s| !theirs.contains(s))
        .map(|s| s["Sid"].as_str().unwrap_or("?").to_string())
        .collect()
}

fn statements_check(link: &'static str, what: &str, missing: Vec<String>) -> Check {
    if missing.is_empty() {
        Check::new(link, true, format!("{what} has gdq's statements"))
    } else {
        Check::new(
            link,
            false,
            format!("{what} lacks or changed {}", missing.join(", ")),
        )
    }
}

async fn key_policy(c: &Clients, n: &Names) -> Check {
    const LINK: &str = "key policy";
    match key::current_policy(&c.kms, &n.key_arn).await {
        Ok(current) => {
            let ours = policy::statements(&policy::key_policy(n));
            // The account-administers statement is advice; GuardDuty's grant is the link.
            let guardduty: Vec<Value> = ours
                .into_iter()
                .filter(|s| s["Sid"] == "gdqGuardDutyEncryptsExports")
                .collect();
            statements_check(
                LINK,
                "the key policy",
                missing_statements(current.as_ref(), &guardduty),
            )
        }
        Err(e) => failed(LINK, e),
    }
}

async fn key_rotation(c: &Clients, n: &Names) -> Check {
    const LINK: &str = "key rotation";
    match c
        .kms
        .get_key_rotation_status()
        .key_id(&n.key_arn)
        .send()
        .await
    {
        Ok(s) if s.key_rotation_enabled() => Check::new(LINK, true, "enabled"),
        Ok(_) => Check::new(LINK, false, format!("rotation is off for {}", n.key_arn)),
        Err(e) => failed(LINK, aws("kms:GetKeyRotationStatus")(e)),
    }
}

async fn bucket_encryption(c: &Clients, n: &Names) -> Check {
    const LINK: &str = "bucket encryption";
    match bucket::default_encryption(&c.s3, &n.bucket).await {
        Ok(Some((alg, Some(key)))) if alg == "aws:kms" && key == n.key_arn => {
            Check::new(LINK, true, "SSE-KMS with the key by default")
        }
        Ok(other) => Check::new(
            LINK,
            false,
            format!(
                "default encryption is {other:?}, not aws:kms with {}",
                n.key_arn
            ),
        ),
        Err(e) => failed(LINK, e),
    }
}

async fn bucket_policy(c: &Clients, n: &Names) -> Check {
    const LINK: &str = "bucket policy";
    match bucket::current_policy(&c.s3, &n.bucket).await {
        Ok(current) => statements_check(
            LINK,
            "the bucket policy",
            missing_statements(current.as_ref(), &policy::bucket_statements(n)),
        ),
        Err(e) => failed(LINK, e),
    }
}

async fn notification(c: &Clients, n: &Names) -> Check {
    const LINK: &str = "notification";
    let wanted = match notification::wanted(n) {
        Ok(w) => notification::meaning(&w),
        Err(e) => return failed(LINK, e),
    };
    match notification::current(&c.s3, &n.bucket).await {
        Ok(configuration) => {
            let found = configuration
                .queue_configurations()
                .iter()
                .any(|q| notification::meaning(q) == wanted);
            if found {
                Check::new(
                    LINK,
                    true,
                    format!("new exports are announced on {}", n.queue_arn),
                )
            } else {
                Check::new(
                    LINK,
                    false,
                    format!(
                        "no notification of s3:ObjectCreated:* on {}*{} to {}",
                        notification::key_prefix(n),
                        notification::KEY_SUFFIX,
                        n.queue_arn
                    ),
                )
            }
        }
        Err(e) => failed(LINK, e),
    }
}

type QueueAttributes = Result<HashMap<QueueAttributeName, String>, SetupError>;

fn queue_policy(attributes: &QueueAttributes, n: &Names) -> Check {
    const LINK: &str = "queue policy";
    match attributes {
        Ok(attributes) => {
            let current = attributes
                .get(&QueueAttributeName::Policy)
                .and_then(|p| serde_json::from_str::<Value>(p).ok());
            statements_check(
                LINK,
                "the queue policy",
                missing_statements(
                    current.as_ref(),
                    &policy::statements(&policy::queue_policy(n)),
                ),
            )
        }
        Err(e) => failed(LINK, e),
    }
}

async fn dead_letter(c: &Clients, record: &SetupRecord, attributes: &QueueAttributes) -> Check {
    const LINK: &str = "dead-letter queue";
    let attributes = match attributes {
        Ok(a) => a,
        Err(e) => return failed(LINK, e),
    };
    let target = attributes
        .get(&QueueAttributeName::RedrivePolicy)
        .and_then(|p| serde_json::from_str::<Value>(p).ok())
        .and_then(|p| p["deadLetterTargetArn"].as_str().map(str::to_string));
    if target.as_deref() != Some(record.dead_letter_queue_arn.as_str()) {
        return Check::new(
            LINK,
            false,
            format!(
                "the queue's redrive policy points at {}, not {}",
                target.as_deref().unwrap_or("nothing"),
                record.dead_letter_queue_arn
            ),
        );
    }
    match queue::attributes(&c.sqs, &record.dead_letter_queue_url).await {
        Ok(_) => Check::new(
            LINK,
            true,
            format!("attached: {}", record.dead_letter_queue_arn),
        ),
        Err(e) => failed(LINK, e),
    }
}

async fn members(c: &Clients, part: &RegionRecord) -> Check {
    const LINK: &str = "organization";
    let detector = crate::policy::DetectorRef {
        region: part.region.clone(),
        id: part.detector_id.clone(),
    };
    match organization::members_enabled(c, &detector).await {
        Ok(Some(state)) if state == "ALL" => Check::new(
            LINK,
            true,
            "GuardDuty auto-enabled for every member account",
        ),
        Ok(state) => Check::new(
            LINK,
            false,
            format!(
                "members' auto-enable is {}, not ALL: new and existing members are not all \
                 covered",
                state.as_deref().unwrap_or("unset")
            ),
        ),
        Err(e) => failed(LINK, e),
    }
}

async fn forward_rule(c: &Clients, n: &Names, a: &AlertsRecord, region: &str) -> Check {
    const LINK: &str = "alert forwarding";
    let events = c.events_in(region);
    match alerts::rule(&events, &a.rule_name).await {
        Ok(Some((_, true))) => match forwarding::target(&events, &a.rule_name).await {
            Ok(Some(t)) if t.arn() == n.home_bus_arn() => Check::new(
                LINK,
                true,
                format!("{} → {}", a.rule_name, n.home_bus_arn()),
            ),
            Ok(_) => Check::new(
                LINK,
                false,
                format!(
                    "rule {} does not forward to {}",
                    a.rule_name,
                    n.home_bus_arn()
                ),
            ),
            Err(e) => failed(LINK, e),
        },
        Ok(Some((_, false))) => {
            Check::new(LINK, false, format!("rule {} is disabled", a.rule_name))
        }
        Ok(None) => Check::new(
            LINK,
            false,
            format!(
                "rule {} does not exist: findings here send no alert",
                a.rule_name
            ),
        ),
        Err(e) => failed(LINK, e),
    }
}

async fn alert_rule(c: &Clients, a: &AlertsRecord) -> Check {
    const LINK: &str = "alert rule";
    match alerts::rule(&c.events, &a.rule_name).await {
        Ok(Some((_, true))) => match alerts::target(&c.events, &a.rule_name).await {
            Ok(Some(t)) if t.arn() == a.topic_arn => {
                Check::new(LINK, true, format!("{} → {}", a.rule_name, a.topic_arn))
            }
            Ok(_) => Check::new(
                LINK,
                false,
                format!(
                    "rule {} has no target publishing to {}",
                    a.rule_name, a.topic_arn
                ),
            ),
            Err(e) => failed(LINK, e),
        },
        Ok(Some((_, false))) => {
            Check::new(LINK, false, format!("rule {} is disabled", a.rule_name))
        }
        Ok(None) => Check::new(LINK, false, format!("rule {} does not exist", a.rule_name)),
        Err(e) => failed(LINK, e),
    }
}

async fn alert_topic(c: &Clients, a: &AlertsRecord) -> Check {
    const LINK: &str = "alert topic";
    match alerts::topic_attributes(&c.sns, &a.topic_arn).await {
        Ok(Some(_)) => Check::new(LINK, true, a.topic_arn.clone()),
        Ok(None) => Check::new(LINK, false, format!("topic {} does not exist", a.topic_arn)),
        Err(e) => failed(LINK, e),
    }
}

/// Asks `part`'s detector for sample findings (one of each type); they are exported like
/// real ones.
pub async fn create_sample_findings(c: &Clients, part: &RegionRecord) -> Result<(), SetupError> {
    c.guardduty_in(&part.region)
        .create_sample_findings()
        .detector_id(&part.detector_id)
        .send()
        .await
        .map_err(aws("guardduty:CreateSampleFindings"))?;
    Ok(())
}
