//! The setup record: what `gdq setup` built, saved as a small JSON file that `gdq worker`,
//! `gdq ingest`, `gdq setup verify` and `gdq teardown` read by default.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::SetupError;
use crate::policy::Names;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetupRecord {
    pub partition: String,
    pub account: String,
    pub region: String,
    pub detector_id: String,
    pub destination_id: String,
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertsRecord {
    pub topic_arn: String,
    pub rule_name: String,
    pub rule_arn: String,
    pub min_severity: f64,
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

    /// The names the policy documents connect.
    pub fn names(&self) -> Names {
        Names {
            partition: self.partition.clone(),
            account: self.account.clone(),
            region: self.region.clone(),
            detector_id: self.detector_id.clone(),
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
        std::fs::write(&path, "{").unwrap();
        assert!(matches!(load(&path), Err(SetupError::Record { .. })));
        remove(&path).unwrap();
        remove(&path).unwrap();
    }
}
