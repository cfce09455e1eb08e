//! The setup record: what `gdq setup` built, saved as a small JSON file that `gdq worker`,
//! `gdq ingest`, `gdq setup verify` and `gdq teardown` read by default.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::SetupError;
use crate::policy::{DetectorRef, Names};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetupRecord {
    pub partition: String,
    pub account: String,
    /// The home region: bucket, key, queue, alert topic.
    pub region: String,
    /// The home region's detector and destination (also in [`SetupRecord::regions`]; kept
    /// at the top for records and readers from before `--regions`).
    pub detector_id: String,
    pub destination_id: String,
    /// Every region with a detector exporting here, the home region first. Empty in a
    /// record from before `--regions`: then the home region alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<RegionRecord>,
    /// Present when setup ran with `--organization` from the administrator account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<OrganizationRecord>,
    pub bucket: String,
    /// Without leading or trailing `/`; empty for the bucket root.
    pub prefix: String,
    pub key_arn: String,
    pub key_alias: String,
    pub queue_url: String,
    pub queue_arn: String,
    pub dead_letter_queue_url: String,
    pub dead_letter_queue_arn: String,
    /// Present when setup wired e-mail alerts.
    pub alerts: Option<AlertsRecord>,
}

/// One region's part of the export path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionRecord {
    pub region: String,
    pub detector_id: String,
    pub destination_id: String,
}

/// The organization mode: this account is GuardDuty's delegated administrator and turns it
/// on for every member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrganizationRecord {
    pub organization_id: String,
    pub management_account: String,
    pub admin_account: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertsRecord {
    pub topic_arn: String,
    pub rule_name: String,
    pub rule_arn: String,
    pub min_severity: f64,
    /// With several regions: the role other regions' rules forward findings home with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_role_arn: Option<String>,
}

impl SetupRecord {
    /// The export location as `gdq ingest` takes it.
    pub fn source(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    /// Every region's part, the home region first.
    pub fn region_records(&self) -> Vec<RegionRecord> {
        if self.regions.is_empty() {
            return vec![RegionRecord {
                region: self.region.clone(),
                detector_id: self.detector_id.clone(),
                destination_id: self.destination_id.clone(),
            }];
        }
        self.regions.clone()
    }

    /// The regions with a detector, the home region first.
    pub fn region_names(&self) -> Vec<String> {
        self.region_records()
            .into_iter()
            .map(|r| r.region)
            .collect()
    }

    /// The names the policy documents connect.
    pub fn names(&self) -> Names {
        Names {
            partition: self.partition.clone(),
            account: self.account.clone(),
            region: self.region.clone(),
            detectors: self
                .region_records()
                .into_iter()
                .map(|r| DetectorRef {
                    region: r.region,
                    id: r.detector_id,
                })
                .collect(),
            bucket: self.bucket.clone(),
            prefix: self.prefix.clone(),
            key_arn: self.key_arn.clone(),
            queue_arn: self.queue_arn.clone(),
            topic_arn: self
                .alerts
                .as_ref()
                .map(|a| a.topic_arn.clone())
                .unwrap_or_default(),
            rule_arn: self
                .alerts
                .as_ref()
                .map(|a| a.rule_arn.clone())
                .unwrap_or_default(),
        }
    }
}

/// `$XDG_CONFIG_HOME/gdq/setup.json`, else `~/.config/gdq/setup.json` (`--config` and
/// `GDQ_CONFIG` override it at the command line).
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("gdq").join("setup.json"))
}

/// The record at `path`; `None` when there is no file.
pub fn load(path: &Path) -> Result<Option<SetupRecord>, SetupError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(record_error(path, e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| record_error(path, e))
}

/// Writes the record atomically (a temporary file renamed over it).
pub fn save(path: &Path, record: &SetupRecord) -> Result<(), SetupError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| record_error(path, e))?;
    }
    let text = serde_json::to_string_pretty(record).map_err(|e| record_error(path, e))?;
    let partial = path.with_extension("json.partial");
    std::fs::write(&partial, text + "\n").map_err(|e| record_error(path, e))?;
    std::fs::rename(&partial, path).map_err(|e| record_error(path, e))
}

/// Removes the record (teardown); a missing file is fine.
pub fn remove(path: &Path) -> Result<(), SetupError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(record_error(path, e)),
        _ => Ok(()),
    }
}

fn record_error(path: &Path, e: impl std::fmt::Display) -> SetupError {
    SetupError::Record {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_record_loads_back_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/setup.json");
        assert_eq!(load(&path).unwrap(), None);
        let record = SetupRecord {
            partition: "aws".into(),
            account: "123456789012".into(),
            region: "eu-west-1".into(),
            detector_id: "d".into(),
            destination_id: "p".into(),
            regions: Vec::new(),
            organization: None,
            bucket: "exports".into(),
            prefix: "gd".into(),
            key_arn: "arn:aws:kms:eu-west-1:123456789012:key/k".into(),
            key_alias: "alias/gdq-findings".into(),
            queue_url: "https://sqs/q".into(),
            queue_arn: "arn:aws:sqs:eu-west-1:123456789012:q".into(),
            dead_letter_queue_url: "https://sqs/q-dlq".into(),
            dead_letter_queue_arn: "arn:aws:sqs:eu-west-1:123456789012:q-dlq".into(),
            alerts: None,
        };
        save(&path, &record).unwrap();
        assert_eq!(load(&path).unwrap(), Some(record.clone()));
        assert_eq!(record.source(), "s3://exports/gd");
        assert_eq!(
            record.region_names(),
            ["eu-west-1"],
            "a record from before --regions"
        );
        std::fs::write(&path, "{").unwrap();
        assert!(matches!(load(&path), Err(SetupError::Record { .. })));
        remove(&path).unwrap();
        remove(&path).unwrap();
    }
}
