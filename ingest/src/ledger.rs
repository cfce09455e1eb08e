//! The ledger: which export objects the warehouse already holds.
//!
//! Every commit writes one record, `_gdq/commits/<batch>.json`, listing the source objects
//! it covers and the data files it adds. Writing that record (atomically: temp file, fsync,
//! rename) is the commit point: files staged before it are invisible and discarded after a
//! crash, files listed in it are published even if the process dies half way through.
//! Source ids are shared by every way into the warehouse (local folders, the S3 listing, the
//! SQS worker), so an object committed by one is skipped by the others.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::IngestError;
use crate::warehouse::Warehouse;

/// Format version of commit records.
pub const COMMIT_FORMAT: u32 = 1;

/// One source object covered by a commit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SourceRecord {
    /// Stable identity of the object's content (see [`crate::source_id`]).
    pub id: String,
    pub uri: String,
    pub rows: u64,
    pub quarantined: u64,
    /// Set when the object could only be read in part (for instance a corrupt gzip stream):
    /// the rows before the error are committed, and the error is quarantined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A file a commit adds, relative to the warehouse root.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileRecord {
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
}

/// The record that makes a batch visible.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CommitRecord {
    pub format: u32,
    pub batch: String,
    pub committed_at: String,
    pub sources: Vec<SourceRecord>,
    pub files: Vec<FileRecord>,
}

/// Source ids already committed, with the batch that committed each.
#[derive(Debug, Default)]
pub struct Ledger {
    committed: HashMap<String, String>,
    seen: HashSet<String>,
    commits: usize,
}

impl Ledger {
    /// Reads every commit record of the warehouse (none yet: empty ledger).
    pub fn load(warehouse: &Warehouse) -> Result<Ledger, IngestError> {
        let mut ledger = Ledger::default();
        ledger.refresh(warehouse)?;
        Ok(ledger)
    }

    /// Reads the commit records written since the last load or refresh (by this process or
    /// another one) and returns them.
    pub fn refresh(&mut self, warehouse: &Warehouse) -> Result<Vec<CommitRecord>, IngestError> {
        let mut unseen: Vec<String> = warehouse
            .commit_names()?
            .into_iter()
            .filter(|b| !self.seen.contains(b))
            .collect();
        unseen.sort();
        let new = warehouse.read_commits(&unseen)?;
        for record in &new {
            self.add(record);
        }
        Ok(new)
    }

    /// Adds a committed record's sources.
    pub fn add(&mut self, record: &CommitRecord) {
        if !self.seen.insert(record.batch.clone()) {
            return;
        }
        self.commits += 1;
        for s in &record.sources {
            self.committed
                .entry(s.id.clone())
                .or_insert_with(|| record.batch.clone());
        }
    }

    pub fn contains(&self, source_id: &str) -> bool {
        self.committed.contains_key(source_id)
    }

    /// Number of distinct committed sources.
    pub fn len(&self) -> usize {
        self.committed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.committed.is_empty()
    }

    /// Number of commit records read or added.
    pub fn commits(&self) -> usize {
        self.commits
    }
}

fn read_record(path: &Path) -> Result<CommitRecord, IngestError> {
    let bytes = fs::read(path).map_err(IngestError::warehouse(path))?;
    parse_record(&bytes, path)
}

/// Decodes a commit record read from `path` (a file or an object URL, for errors).
pub(crate) fn parse_record(bytes: &[u8], path: &Path) -> Result<CommitRecord, IngestError> {
    let record: CommitRecord = serde_json::from_slice(bytes).map_err(|e| IngestError::Ledger {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if record.format != COMMIT_FORMAT {
        return Err(IngestError::Ledger {
            path: path.to_path_buf(),
            reason: format!(
                "format {} is newer than this gdq understands ({COMMIT_FORMAT})",
                record.format
            ),
        });
    }
    Ok(record)
}

/// Path of a batch's commit record.
pub fn record_path(commits_dir: &Path, batch: &str) -> PathBuf {
    commits_dir.join(format!("{batch}.json"))
}

/// Reads one batch's record, if it was committed.
pub fn read_commit(commits_dir: &Path, batch: &str) -> Result<Option<CommitRecord>, IngestError> {
    let path = record_path(commits_dir, batch);
    if !path.exists() {
        return Ok(None);
    }
    read_record(&path).map(Some)
}

/// Writes `bytes` to `path` atomically: a temp file beside it, fsync, rename, fsync the dir.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), IngestError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(IngestError::warehouse(dir))?;
    let tmp = path.with_extension("tmp");
    let mut file = fs::File::create(&tmp).map_err(IngestError::warehouse(&tmp))?;
    file.write_all(bytes)
        .map_err(IngestError::warehouse(&tmp))?;
    file.sync_all().map_err(IngestError::warehouse(&tmp))?;
    fs::rename(&tmp, path).map_err(IngestError::warehouse(path))?;
    sync_dir(dir)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), IngestError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(IngestError::warehouse(dir))
}

/// Writes a commit record: the commit point of its batch.
pub fn write_commit(commits_dir: &Path, record: &CommitRecord) -> Result<(), IngestError> {
    let bytes = serde_json::to_vec_pretty(record).map_err(|e| IngestError::Ledger {
        path: record_path(commits_dir, &record.batch),
        reason: e.to_string(),
    })?;
    write_atomic(&record_path(commits_dir, &record.batch), &bytes)
}
