//! `gdq setup`: every step in order, each saying what it found and what it changed.

use crate::alerts::{self, AlertsWanted};
use crate::clients::Clients;
use crate::detector::{self, DetectorWanted};
use crate::error::{SetupError, aws};
use crate::policy::{DetectorRef, Names};
use crate::record::{RegionRecord, SetupRecord};
use crate::regions::RegionsWanted;
use crate::report::Report;
use crate::{bucket, destination, forwarding, key, notification, organization, queue, regions};

#[derive(Debug, Clone)]
pub struct SetupOptions {
    pub bucket: String,
    /// Without leading or trailing `/`.
    pub prefix: String,
    pub detector: DetectorWanted,
    pub key_alias: String,
    pub queue_name: String,
    /// Name of the alert topic and rule (also when no alerts are asked for: existing ones
    /// are then kept and recorded).
    pub alerts_name: String,
    pub alerts: Option<AlertsWanted>,
    /// Regions with a detector besides the home one (`--regions`).
    pub regions: RegionsWanted,
    /// `--organization --admin-account ID`.
    pub admin_account: Option<String>,
}

impl SetupOptions {
    /// Checks what AWS would refuse later, so that a typo fails before anything changes.
    pub fn validate(&self) -> Result<(), SetupError> {
        let b = &self.bucket;
        let bucket_ok = (3..=63).contains(&b.len())
            && b.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
            && b.starts_with(|c: char| c.is_ascii_alphanumeric())
            && b.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !bucket_ok {
            return Err(SetupError::Usage(format!(
                "--bucket {b:?} is not a valid S3 bucket name (3–63 lowercase letters, digits, \
                 dots and hyphens)"
            )));
        }
        if !self.key_alias.starts_with("alias/") || self.key_alias.starts_with("alias/aws/") {
            return Err(SetupError::Usage(format!(
                "--key-alias {:?} must start with alias/ (and not alias/aws/)",
                self.key_alias
            )));
        }
        let queue_ok = !self.queue_name.is_empty()
            && self.queue_name.len() <= 76
            && self
                .queue_name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
        if !queue_ok {
            return Err(SetupError::Usage(format!(
                "--queue-name {:?}: up to 76 letters, digits, - and _ (the dead-letter queue \
                 adds -dlq)",
                self.queue_name
            )));
        }
        if let Some(a) = &self.alerts {
            if let Some(bad) = a.emails.iter().find(|e| !e.contains('@')) {
                return Err(SetupError::Usage(format!(
                    "--notify-email {bad:?} is not an e-mail address"
                )));
            }
            if !(1.0..=10.0).contains(&a.min_severity) {
                return Err(SetupError::Usage(format!(
                    "--min-severity {}: GuardDuty severities run from 1.0 to 10.0",
                    a.min_severity
                )));
            }
        }
        Ok(())
    }
}

/// Who and where: the account and partition of the caller, the clients' region.
pub async fn identity(c: &Clients) -> Result<(String, String), SetupError> {
    let me = c
        .sts
        .get_caller_identity()
        .send()
        .await
        .map_err(aws("sts:GetCallerIdentity"))?;
    let account = me.account().unwrap_or_default().to_string();
    let partition = me
        .arn()
        .and_then(|arn| arn.split(':').nth(1))
        .filter(|p| !p.is_empty())
        .unwrap_or("aws")
        .to_string();
    Ok((account, partition))
}

/// What a setup run leaves.
#[derive(Debug, Clone, PartialEq)]
pub enum Built {
    /// The export path, to be saved as the setup record.
    Record(Box<SetupRecord>),
    /// From an organization's management account: GuardDuty's administration delegated in
    /// these regions; the administrator builds the export path.
    Delegated {
        admin_account: String,
        regions: Vec<String>,
    },
}

/// Builds (or, in a dry run, plans) the export path; returns what it built.
pub async fn setup(c: &Clients, o: &SetupOptions, r: &mut Report<'_>) -> Result<Built, SetupError> {
    o.validate()?;
    if c.region.is_empty() {
        return Err(SetupError::Usage(
            "no region: pass --region or set AWS_REGION".into(),
        ));
    }
    let (account, partition) = identity(c).await?;
    // Everything that can refuse the input is asked before anything changes.
    let regions = regions::resolve(c, &partition, &o.regions).await?;
    let organization = match &o.admin_account {
        Some(admin) => Some(organization::role(c, &account, admin).await?),
        None => None,
    };
    r.line(format!(
        "gdq setup{} in account {account}, home region {}{}",
        if r.dry_run {
            " --dry-run (nothing is changed)"
        } else {
            ""
        },
        c.region,
        if regions.len() > 1 {
            format!(
                ", detectors in {} regions: {}",
                regions.len(),
                regions.join(", ")
            )
        } else {
            String::new()
        }
    ));
    if let Some(organization::Role::Management(org)) = &organization {
        r.line(format!(
            "account {account} manages organization {}: GuardDuty's administration goes to {}",
            org.organization_id, org.admin_account
        ));
        organization::delegate(c, r, &regions, &org.admin_account).await?;
        return Ok(Built::Delegated {
            admin_account: org.admin_account.clone(),
            regions,
        });
    }
    r.line(
        "VPC Flow Logs and CloudTrail trails are not prerequisites: GuardDuty reads its own \
         independent streams of them.",
    );
    let mut names = Names {
        partition,
        account,
        region: c.region.clone(),
        detectors: Vec::new(),
        bucket: o.bucket.clone(),
        prefix: o.prefix.clone(),
        key_arn: String::new(),
        queue_arn: String::new(),
        topic_arn: String::new(),
        rule_arn: String::new(),
    };

    // Detectors first: the key and bucket policies name every one of them.
    let mut detectors = Vec::new();
    for region in &regions {
        r.in_region(region);
        let (id, exists) = detector::ensure(&c.guardduty_in(region), r, &o.detector).await?;
        detectors.push((
            DetectorRef {
                region: region.clone(),
                id,
            },
            exists,
        ));
    }
    r.global();
    names.detectors = detectors.iter().map(|(d, _)| d.clone()).collect();

    let key_exists;
    (names.key_arn, key_exists) = key::ensure(&c.kms, r, &o.key_alias, &names).await?;
    key::ensure_policy(&c.kms, r, &names, key_exists).await?;

    let bucket_exists = bucket::ensure(&c.s3, r, &names).await?;

    let mut region_records = Vec::new();
    for (d, exists) in &detectors {
        r.in_region(&d.region);
        let destination_id =
            destination::ensure(&c.guardduty_in(&d.region), r, &names, d, *exists).await?;
        region_records.push(RegionRecord {
            region: d.region.clone(),
            detector_id: d.id.clone(),
            destination_id,
        });
    }
    r.global();

    names.queue_arn = queue::queue_arn(&names, &o.queue_name);
    let (queue, dead_letter) = queue::ensure(&c.sqs, r, &names, &o.queue_name).await?;
    notification::ensure(&c.s3, r, &names, bucket_exists).await?;

    let mut alerts = match &o.alerts {
        Some(want) => {
            Some(alerts::ensure(&c.sns, &c.events, r, &names, &o.alerts_name, want).await?)
        }
        None => match alerts::existing(&c.events, &names, &o.alerts_name).await? {
            Some(found) => {
                r.found(
                    "alerts",
                    format!(
                        "rule {} from an earlier setup kept as it is (--notify-email changes it)",
                        found.rule_name
                    ),
                );
                Some(found)
            }
            None => {
                r.note("alerts", "none (--notify-email ADDR wires e-mail alerts)");
                None
            }
        },
    };
    // Alerts cover every region: each other region forwards its findings home.
    if let Some(a) = alerts.as_mut().filter(|_| regions.len() > 1) {
        let role = forwarding::ensure_role(c, r, &names, &o.alerts_name).await?;
        for region in &regions[1..] {
            r.in_region(region);
            forwarding::ensure_rule(
                &c.events_in(region),
                r,
                &names,
                &o.alerts_name,
                a.min_severity,
                &role,
            )
            .await?;
        }
        r.global();
        a.forward_role_arn = Some(role);
    }

    let organization = match organization {
        Some(organization::Role::Administrator(org)) => {
            organization::enable_members(c, r, &detectors, &o.detector.features).await?;
            Some(org)
        }
        _ => None,
    };

    let home = &region_records[0];
    Ok(Built::Record(Box::new(SetupRecord {
        partition: names.partition,
        account: names.account,
        region: names.region,
        detector_id: home.detector_id.clone(),
        destination_id: home.destination_id.clone(),
        regions: if region_records.len() > 1 {
            region_records
        } else {
            Vec::new()
        },
        organization,
        bucket: o.bucket.clone(),
        prefix: o.prefix.clone(),
        key_arn: names.key_arn,
        key_alias: o.key_alias.clone(),
        queue_url: queue.url,
        queue_arn: queue.arn,
        dead_letter_queue_url: dead_letter.url,
        dead_letter_queue_arn: dead_letter.arn,
        alerts,
    })))
}
