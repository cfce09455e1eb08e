//! The ledger: which export objects the table holds, and which of gdq's commits landed.
//!
//! It lives in the table's own commits, as Delta `txn` actions (Delta's mechanism for
//! idempotent writes): every commit that adds an object's rows also records
//! `gdq.source/<source id>` (bucket/key/ETag, or a local file's content hash), and every
//! commit records `gdq.commit/<attempt>`. A `txn` is kept by every checkpoint, so the ledger
//! survives checkpoints and the cleanup of old log entries; and because it is committed in
//! the same version as the rows, an object is in the ledger exactly when its rows are in
//! the table. Source ids are shared by every way into the warehouse (local folders, the S3
//! listing, the SQS worker), so an object committed by one is skipped by the others.
//!
//! delta-rs looks up one application id at a time; the ledger needs all of them, so it reads
//! the `txn` column of the newest checkpoint and the `txn` lines of the commits after it.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Deserialize;

use arrow_array::{Array, StringArray, StructArray};

use crate::delta::{DeltaLog, LogEntry};
use crate::error::{Result, TableError};

/// Application id prefix of a committed source object.
pub const SOURCE_APP: &str = "gdq.source/";
/// Application id prefix of a landed commit attempt.
pub const COMMIT_APP: &str = "gdq.commit/";

/// Log entries read at once when catching up.
const READ_AHEAD: usize = 16;

fn key(app_id: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(app_id.as_bytes())
}

/// Committed source ids and commit attempts, as of one version of the table. Each is kept
/// as a 128-bit hash: a year of a large organization's exports stays a few MB.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    sources: HashSet<u128>,
    commits: HashSet<u128>,
    /// The newest version read into the ledger; `None` before the table exists.
    version: Option<u64>,
}

impl Ledger {
    /// Whether the object with this source id is in the table.
    pub fn contains_source(&self, source_id: &str) -> bool {
        self.sources
            .contains(&key(&format!("{SOURCE_APP}{source_id}")))
    }

    /// Whether the commit attempt with this name landed.
    pub fn contains_commit(&self, attempt: &str) -> bool {
        self.commits
            .contains(&key(&format!("{COMMIT_APP}{attempt}")))
    }

    /// Number of distinct committed objects.
    pub fn sources(&self) -> usize {
        self.sources.len()
    }

    /// Number of gdq commits (appends, compactions, the upgrade of an older warehouse
    /// counts each of its commits).
    pub fn commits(&self) -> usize {
        self.commits.len()
    }

    pub fn version(&self) -> Option<u64> {
        self.version
    }

    pub(crate) fn add_app_id(&mut self, app_id: &str) {
        if app_id.starts_with(SOURCE_APP) {
            self.sources.insert(key(app_id));
        } else if app_id.starts_with(COMMIT_APP) {
            self.commits.insert(key(app_id));
        }
    }

    /// Adds one version's entry (the version after the ledger's).
    pub(crate) fn apply(&mut self, version: u64, entry: &LogEntry) {
        for app_id in &entry.app_ids {
            self.add_app_id(app_id);
        }
        self.version = Some(self.version.map_or(version, |v| v.max(version)));
    }

    /// Reads the ledger of the table at (at least) `version`.
    pub async fn load(log: &DeltaLog, version: u64) -> Result<Ledger> {
        let store = log.log_store.object_store(None);
        let mut ledger = Ledger::default();
        if let Some(checkpoint) = read_checkpoint_pointer(&store, log).await? {
            {
                for part in checkpoint.parts() {
                    let path = ObjectPath::from(format!("_delta_log/{part}"));
                    let bytes = store
                        .get(&path)
                        .await
                        .map_err(TableError::store(format!("{}/{path}", log.name)))?
                        .bytes()
                        .await
                        .map_err(TableError::store(format!("{}/{path}", log.name)))?;
                    read_checkpoint_txns(bytes, &mut ledger).map_err(|reason| {
                        TableError::Corrupt {
                            what: format!("{}/_delta_log/{part}", log.name),
                            reason,
                        }
                    })?;
                }
                ledger.version = Some(checkpoint.version);
            }
        }
        ledger.advance(log, version).await?;
        Ok(ledger)
    }

    /// Reads the versions after the ledger's up to `to` and returns them, in order.
    pub async fn advance(&mut self, log: &DeltaLog, to: u64) -> Result<Vec<(u64, LogEntry)>> {
        let from = self.version.map_or(0, |v| v + 1);
        let entries: Vec<(u64, LogEntry)> = futures::stream::iter(from..=to)
            .map(|version| async move { log.entry(version).await.map(|e| (version, e)) })
            .buffered(READ_AHEAD)
            .try_collect()
            .await?;
        for (version, entry) in &entries {
            self.apply(*version, entry);
        }
        Ok(entries)
    }
}

/// `_delta_log/_last_checkpoint`.
#[derive(Debug, Deserialize)]
struct CheckpointPointer {
    version: u64,
    parts: Option<u32>,
    #[serde(rename = "v2Checkpoint")]
    v2: Option<serde_json::Value>,
}

impl CheckpointPointer {
    /// The checkpoint's file names in `_delta_log/` (classic, single or multi-part).
    fn parts(&self) -> Vec<String> {
        match self.parts {
            Some(n) if n > 1 => (1..=n)
                .map(|i| format!("{:020}.checkpoint.{i:010}.{n:010}.parquet", self.version))
                .collect(),
            _ => vec![format!("{:020}.checkpoint.parquet", self.version)],
        }
    }
}

async fn read_checkpoint_pointer(
    store: &Arc<dyn ObjectStore>,
    log: &DeltaLog,
) -> Result<Option<CheckpointPointer>> {
    let path = ObjectPath::from("_delta_log/_last_checkpoint");
    let what = format!("{}/{path}", log.name);
    let bytes = match store.get(&path).await {
        Ok(got) => got.bytes().await.map_err(TableError::store(what.clone()))?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(TableError::store(what)(e)),
    };
    let pointer: CheckpointPointer =
        serde_json::from_slice(&bytes).map_err(|e| TableError::Corrupt {
            what: what.clone(),
            reason: e.to_string(),
        })?;
    if pointer.v2.is_some() {
        return Err(TableError::State(format!(
            "{what}: a V2 checkpoint (written by another engine); gdq reads classic checkpoints"
        )));
    }
    Ok(Some(pointer))
}

/// Adds every `txn.appId` of a checkpoint file.
fn read_checkpoint_txns(bytes: Bytes, ledger: &mut Ledger) -> Result<(), String> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| e.to_string())?;
    let Some(leaf) = builder
        .parquet_schema()
        .columns()
        .iter()
        .position(|c| c.path().string() == "txn.appId")
    else {
        // A checkpoint without any `txn` column holds no ledger.
        return Ok(());
    };
    let mask = ProjectionMask::leaves(builder.parquet_schema(), [leaf]);
    let reader = builder
        .with_projection(mask)
        .build()
        .map_err(|e| e.to_string())?;
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        let Some(txn) = batch
            .column_by_name("txn")
            .and_then(|c| c.as_any().downcast_ref::<StructArray>())
        else {
            continue;
        };
        let Some(app_ids) = txn
            .column_by_name("appId")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        else {
            continue;
        };
        for (i, app_id) in app_ids.iter().enumerate() {
            if let Some(app_id) = app_id.filter(|_| txn.is_valid(i)) {
                ledger.add_app_id(app_id);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_and_commits_are_told_apart() {
        let mut ledger = Ledger::default();
        ledger.add_app_id("gdq.source/s3-xxh3-00ff");
        ledger.add_app_id("gdq.commit/20240101T000000Z-aa");
        ledger.add_app_id("someone-elses-stream");
        assert!(ledger.contains_source("s3-xxh3-00ff"));
        assert!(!ledger.contains_source("20240101T000000Z-aa"));
        assert!(ledger.contains_commit("20240101T000000Z-aa"));
        assert_eq!((ledger.sources(), ledger.commits()), (1, 1));
    }

    #[test]
    fn multi_part_checkpoints_name_every_part() {
        let pointer = CheckpointPointer {
            version: 10,
            parts: Some(2),
            v2: None,
        };
        assert_eq!(
            pointer.parts(),
            [
                "00000000000000000010.checkpoint.0000000001.0000000002.parquet",
                "00000000000000000010.checkpoint.0000000002.0000000002.parquet"
            ]
        );
    }
}
