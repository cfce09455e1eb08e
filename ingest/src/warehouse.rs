//! The warehouse layout on a local file system, its lock, and crash recovery.
//!
//! ```text
//! <root>/findings/type=<enc>/<batch>-<part>.parquet   the table (what every reader reads)
//! <root>/_gdq/commits/<batch>.json                    the ledger: one record per commit
//! <root>/_gdq/staging/<batch>/…                       files of a batch not yet published
//! <root>/_gdq/quarantine/<batch>.jsonl                lines and objects that could not be ingested
//! <root>/_gdq/lock                                    held while one writer commits or recovers
//! ```
//!
//! Several processes may write at once (two SQS workers, a worker and a backfill): each
//! stages its own batch, holding `_gdq/staging/<batch>/.lock` so nobody's recovery mistakes
//! it for the leftovers of a crash, and takes `_gdq/lock` only for the short commit step.

use std::fs::{self, File, TryLockError};
use std::path::{Path, PathBuf};

use crate::error::IngestError;
use crate::ledger::{CommitRecord, read_commit, sync_dir};

/// A local warehouse directory.
#[derive(Debug, Clone)]
pub struct Warehouse {
    root: PathBuf,
}

/// Held while a process writes to the warehouse; released on drop.
pub struct WarehouseLock {
    _file: File,
}

/// What recovery did when a writer opened the warehouse.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Batches whose commit record existed but whose files were not all published.
    pub published: Vec<String>,
    /// Staged batches without a commit record, discarded.
    pub discarded: Vec<String>,
}

impl Warehouse {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Warehouse { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn findings_dir(&self) -> PathBuf {
        self.root.join(crate::writer::FINDINGS_DIR)
    }

    pub fn meta_dir(&self) -> PathBuf {
        self.root.join("_gdq")
    }

    pub fn commits_dir(&self) -> PathBuf {
        self.meta_dir().join("commits")
    }

    pub fn staging_dir(&self, batch: &str) -> PathBuf {
        self.meta_dir().join("staging").join(batch)
    }

    pub fn quarantine_dir(&self) -> PathBuf {
        self.meta_dir().join("quarantine")
    }

    /// Creates the layout if needed.
    pub fn create_layout(&self) -> Result<(), IngestError> {
        for dir in [
            self.findings_dir(),
            self.commits_dir(),
            self.meta_dir().join("staging"),
            self.quarantine_dir(),
        ] {
            fs::create_dir_all(&dir).map_err(IngestError::warehouse(&dir))?;
        }
        Ok(())
    }

    /// Takes the commit lock, waiting for another writer's commit to finish.
    pub fn lock(&self) -> Result<WarehouseLock, IngestError> {
        self.create_layout()?;
        let path = self.meta_dir().join("lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(IngestError::warehouse(&path))?;
        file.lock().map_err(IngestError::warehouse(&path))?;
        Ok(WarehouseLock { _file: file })
    }

    /// Creates a batch's staging folder and takes its liveness lock, held until the batch
    /// is committed or dropped.
    pub fn stage(&self, batch: &str) -> Result<WarehouseLock, IngestError> {
        let dir = self.staging_dir(batch);
        fs::create_dir_all(&dir).map_err(IngestError::warehouse(&dir))?;
        let path = dir.join(".lock");
        let file = File::create(&path).map_err(IngestError::warehouse(&path))?;
        match file.try_lock() {
            Ok(()) => Ok(WarehouseLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(IngestError::Internal(format!(
                "batch {batch} is staged twice"
            ))),
            Err(TryLockError::Error(e)) => Err(IngestError::warehouse(&path)(e)),
        }
    }

    /// Whether a live process is still writing this staged batch.
    fn is_live(&self, batch: &str) -> bool {
        let Ok(file) = File::options()
            .write(true)
            .open(self.staging_dir(batch).join(".lock"))
        else {
            return false;
        };
        matches!(file.try_lock(), Err(TryLockError::WouldBlock))
    }

    /// Finishes what a crashed writer left: publishes committed batches, discards uncommitted
    /// ones whose writer is gone. Needs the commit lock; live writers' batches are left alone.
    pub fn recover(&self, _lock: &WarehouseLock) -> Result<Recovery, IngestError> {
        let mut recovery = Recovery::default();
        let staging = self.meta_dir().join("staging");
        let entries = fs::read_dir(&staging).map_err(IngestError::warehouse(&staging))?;
        let mut batches: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        batches.sort();
        for batch in batches {
            match read_commit(&self.commits_dir(), &batch)? {
                Some(record) => {
                    self.publish(&record)?;
                    recovery.published.push(batch);
                }
                None if self.is_live(&batch) => {}
                None => {
                    let dir = self.staging_dir(&batch);
                    fs::remove_dir_all(&dir).map_err(IngestError::warehouse(&dir))?;
                    recovery.discarded.push(batch);
                }
            }
        }
        Ok(recovery)
    }

    /// Moves a committed batch's staged files to their place in the table. Idempotent: a
    /// file already moved is skipped, so a crash half way through is finished by rerunning.
    pub fn publish(&self, record: &CommitRecord) -> Result<(), IngestError> {
        let staging = self.staging_dir(&record.batch);
        let mut touched_dirs = Vec::new();
        let quarantine = self.quarantine_path(&record.batch);
        let quarantine_rel = quarantine
            .strip_prefix(&self.root)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let paths = record
            .files
            .iter()
            .map(|f| PathBuf::from(&f.path))
            .chain(std::iter::once(quarantine_rel));
        for (i, relative) in paths.enumerate() {
            let from = staging.join(&relative);
            let to = self.root.join(&relative);
            if !from.exists() {
                continue;
            }
            if let Some(parent) = to.parent() {
                fs::create_dir_all(parent).map_err(IngestError::warehouse(parent))?;
                if !touched_dirs.contains(&parent.to_path_buf()) {
                    touched_dirs.push(parent.to_path_buf());
                }
            }
            match fs::rename(&from, &to) {
                Ok(()) => {}
                // Another recovering writer moved it first.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(IngestError::warehouse(&to)(e)),
            }
            if i == 0 {
                crate::fault::crash_point("publish-first-file");
            }
        }
        for dir in touched_dirs {
            sync_dir(&dir)?;
        }
        match fs::remove_dir_all(&staging) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(IngestError::warehouse(&staging)(e)),
        }
        Ok(())
    }

    /// Where a batch's quarantine records go once published.
    pub fn quarantine_path(&self, batch: &str) -> PathBuf {
        self.quarantine_dir().join(format!("{batch}.jsonl"))
    }
}
