//! The warehouse layout, its commit lock, and crash recovery, on a local file system or in S3.
//!
//! ```text
//! <root>/findings/type=<enc>/<batch>-<part>.parquet   the table (what every reader reads)
//! <root>/_gdq/commits/<batch>.json                    the ledger: one record per commit
//! <root>/_gdq/staging/<batch>/…                       files of a batch not yet published
//! <root>/_gdq/quarantine/<batch>.jsonl                lines and objects that could not be ingested
//! <root>/_gdq/index/<batch>.ids                       the `id` bloom filters of the batch's files
//! <root>/_gdq/lock                                    held while one writer commits or recovers
//! ```
//!
//! Several processes may write at once (two SQS workers, a worker and a backfill): each
//! stages its own batch and takes `_gdq/lock` only for the short commit step. Locally a
//! staged batch is kept alive by a file lock on `_gdq/staging/<batch>/.lock`, so nobody's
//! recovery mistakes it for the leftovers of a crash. In S3 (`s3://bucket/prefix`) batches
//! are built in a local scratch folder and uploaded to `_gdq/staging/<batch>/` just before
//! their commit; the lock is a lease object created with `If-None-Match` and taken over by
//! an `If-Match` write once it is older than its ttl; the commit record is created with
//! `If-None-Match`; publishing copies staged objects into place. An uploaded batch without
//! a commit record is discarded by recovery once nobody has touched it for the staging ttl.

use std::collections::BTreeMap;
use std::fs::{self, File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use gdq_schemas::id_index_key;

use crate::error::IngestError;
use crate::ledger::{CommitRecord, parse_record, read_commit, sync_dir};
use crate::remote::{Lease, Remote, S3Location};

const COMMITS: &str = "_gdq/commits";
const STAGING: &str = "_gdq/staging";
const QUARANTINE: &str = "_gdq/quarantine";
const LOCK: &str = "_gdq/lock";

/// A lease older than this belongs to a writer that died (commits hold it for seconds).
const LEASE_TTL: Duration = Duration::from_secs(60);
/// An uploaded, uncommitted batch untouched for this long belongs to a writer that died.
const STAGING_TTL: Duration = Duration::from_secs(15 * 60);

fn ttl_from_env(name: &str, default: Duration) -> Duration {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(default, Duration::from_secs_f64)
}

/// A warehouse: a local directory, or an S3 prefix with a local scratch folder for staging.
#[derive(Debug, Clone)]
pub struct Warehouse {
    root: PathBuf,
    remote: Option<Remote>,
    _scratch: Option<Arc<tempfile::TempDir>>,
    lease_ttl: Duration,
    staging_ttl: Duration,
}

/// Held while a process commits to the warehouse; released on drop.
pub struct WarehouseLock {
    _held: Held,
}

enum Held {
    File(#[allow(dead_code)] File),
    Lease(#[allow(dead_code)] Lease),
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
    /// A local warehouse directory.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Warehouse {
            root: root.into(),
            remote: None,
            _scratch: None,
            lease_ttl: LEASE_TTL,
            staging_ttl: STAGING_TTL,
        }
    }

    /// Opens `s3://bucket[/prefix]` (AWS settings from the standard chain) or a local path.
    pub fn open(location: &str) -> Result<Self, IngestError> {
        if !location.starts_with("s3://") {
            if location.contains("://") {
                return Err(IngestError::Usage(format!(
                    "warehouse {location:?}: only local paths and s3:// URLs are supported"
                )));
            }
            return Ok(Warehouse::new(location));
        }
        let remote = Remote::connect(S3Location::parse(location)?)?;
        let scratch = tempfile::Builder::new()
            .prefix("gdq-scratch-")
            .tempdir()
            .map_err(IngestError::warehouse(std::env::temp_dir()))?;
        Ok(Warehouse {
            root: scratch.path().to_path_buf(),
            remote: Some(remote),
            _scratch: Some(Arc::new(scratch)),
            lease_ttl: ttl_from_env("GDQ_LEASE_TTL_SECS", LEASE_TTL),
            staging_ttl: ttl_from_env("GDQ_STAGING_TTL_SECS", STAGING_TTL),
        })
    }

    /// The local directory (for an S3 warehouse: the scratch folder batches are built in).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The S3 side, for an `s3://` warehouse.
    pub fn remote(&self) -> Option<&Remote> {
        self.remote.as_ref()
    }

    /// What users call it: the path or the `s3://` URL.
    pub fn name(&self) -> String {
        match &self.remote {
            Some(remote) => remote.url(),
            None => self.root.display().to_string(),
        }
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
        if let Some(remote) = &self.remote {
            let lease = remote.acquire_lease(LOCK, self.lease_ttl)?;
            return Ok(WarehouseLock {
                _held: Held::Lease(lease),
            });
        }
        let path = self.meta_dir().join("lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(IngestError::warehouse(&path))?;
        file.lock().map_err(IngestError::warehouse(&path))?;
        Ok(WarehouseLock {
            _held: Held::File(file),
        })
    }

    /// Creates a batch's staging folder and takes its liveness lock, held until the batch
    /// is committed or dropped.
    pub fn stage(&self, batch: &str) -> Result<WarehouseLock, IngestError> {
        let dir = self.staging_dir(batch);
        fs::create_dir_all(&dir).map_err(IngestError::warehouse(&dir))?;
        let path = dir.join(".lock");
        let file = File::create(&path).map_err(IngestError::warehouse(&path))?;
        match file.try_lock() {
            Ok(()) => Ok(WarehouseLock {
                _held: Held::File(file),
            }),
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
        if let Some(remote) = &self.remote {
            return self.recover_remote(remote);
        }
        let mut recovery = Recovery::default();
        let staging = self.meta_dir().join("staging");
        let entries = fs::read_dir(&staging).map_err(IngestError::warehouse(&staging))?;
        let mut batches: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        batches.sort();
        for batch in batches {
            if self.recover_compaction(&batch, &mut recovery)? {
                continue;
            }
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

    fn recover_remote(&self, remote: &Remote) -> Result<Recovery, IngestError> {
        let mut recovery = Recovery::default();
        let mut batches: BTreeMap<String, (Vec<String>, SystemTime)> = BTreeMap::new();
        for listed in remote.list(&format!("{STAGING}/"))? {
            let Some((batch, _)) = listed
                .relative
                .strip_prefix(&format!("{STAGING}/"))
                .and_then(|rest| rest.split_once('/'))
            else {
                continue;
            };
            let entry = batches
                .entry(batch.to_string())
                .or_insert_with(|| (Vec::new(), SystemTime::UNIX_EPOCH));
            entry.1 = entry.1.max(listed.modified);
            entry.0.push(listed.relative);
        }
        for (batch, (objects, newest)) in batches {
            if self.recover_compaction(&batch, &mut recovery)? {
                continue;
            }
            match self.read_commit(&batch)? {
                Some(record) => {
                    self.publish(&record)?;
                    recovery.published.push(batch);
                }
                None if newest.elapsed().unwrap_or_default() < self.staging_ttl => {}
                None => {
                    remote.delete_many(objects)?;
                    recovery.discarded.push(batch);
                }
            }
        }
        Ok(recovery)
    }

    /// Names of the committed batches.
    pub fn commit_names(&self) -> Result<Vec<String>, IngestError> {
        self.meta_names(COMMITS)
    }

    /// Reads the commit records of `batches` (all of them committed).
    pub fn read_commits(&self, batches: &[String]) -> Result<Vec<CommitRecord>, IngestError> {
        let Some(remote) = &self.remote else {
            return batches
                .iter()
                .map(|b| {
                    read_commit(&self.commits_dir(), b)?.ok_or_else(|| IngestError::Ledger {
                        path: crate::ledger::record_path(&self.commits_dir(), b),
                        reason: "disappeared while being read".into(),
                    })
                })
                .collect();
        };
        let keys: Vec<String> = batches.iter().map(|b| commit_key(b)).collect();
        let bodies = remote.get_many(&keys)?;
        keys.iter()
            .zip(bodies)
            .map(|(key, body)| {
                let what = PathBuf::from(format!("{}/{key}", remote.url()));
                let body = body.ok_or_else(|| IngestError::Ledger {
                    path: what.clone(),
                    reason: "disappeared while being read".into(),
                })?;
                parse_record(&body, &what)
            })
            .collect()
    }

    /// One batch's commit record, if it was committed.
    pub fn read_commit(&self, batch: &str) -> Result<Option<CommitRecord>, IngestError> {
        let Some(remote) = &self.remote else {
            return read_commit(&self.commits_dir(), batch);
        };
        let key = commit_key(batch);
        match remote.get(&key)? {
            None => Ok(None),
            Some(body) => {
                parse_record(&body, &PathBuf::from(format!("{}/{key}", remote.url()))).map(Some)
            }
        }
    }

    /// Writes a batch's commit record: its commit point. Never overwrites a record.
    pub fn write_commit(&self, record: &CommitRecord) -> Result<(), IngestError> {
        let Some(remote) = &self.remote else {
            return crate::ledger::write_commit(&self.commits_dir(), record);
        };
        let key = commit_key(&record.batch);
        let bytes = serde_json::to_vec_pretty(record)
            .map_err(|e| IngestError::Internal(format!("encoding commit record: {e}")))?;
        if !remote.put_new(&key, bytes)? {
            return Err(IngestError::Internal(format!(
                "commit record {key} already exists: batch ids collided"
            )));
        }
        Ok(())
    }

    /// Makes a batch's locally staged files (paths relative to its staging folder) visible
    /// to recovery and publishing. For a local warehouse they already are.
    pub fn upload_staged(&self, batch: &str, relatives: &[String]) -> Result<(), IngestError> {
        let Some(remote) = &self.remote else {
            return Ok(());
        };
        let staging = self.staging_dir(batch);
        let files = relatives
            .iter()
            .filter(|r| staging.join(r).exists())
            .map(|r| (staging.join(r), format!("{STAGING}/{batch}/{r}")))
            .collect();
        remote.upload(files)
    }

    /// Throws away a batch that will not be committed.
    pub fn discard_staged(&self, batch: &str) -> Result<(), IngestError> {
        let dir = self.staging_dir(batch);
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(IngestError::warehouse(&dir)(e)),
        }
        self.discard_staged_remote(batch)
    }

    /// Deletes what a batch uploaded to the S3 staging area (nothing for a local warehouse).
    pub fn discard_staged_remote(&self, batch: &str) -> Result<(), IngestError> {
        if let Some(remote) = &self.remote {
            let staged = remote.list(&format!("{STAGING}/{batch}/"))?;
            remote.delete_many(staged.into_iter().map(|l| l.relative).collect())?;
        }
        Ok(())
    }

    /// Moves a committed batch's staged files to their place in the table. Idempotent: a
    /// file already moved is skipped, so a crash half way through is finished by rerunning.
    pub fn publish(&self, record: &CommitRecord) -> Result<(), IngestError> {
        let batch = &record.batch;
        let paths: Vec<String> = record
            .files
            .iter()
            .map(|f| f.path.clone())
            .chain([id_index_key(batch), quarantine_key(batch)])
            .collect();
        let (first, rest) = paths.split_at(1);
        self.publish_staged(batch, first)?;
        crate::fault::crash_point("publish-first-file");
        self.publish_staged(batch, rest)?;
        self.discard_staged(batch)
    }

    /// Finishes or undoes an interrupted compaction staged as `batch`; `false` when the
    /// batch is not a compaction.
    fn recover_compaction(
        &self,
        batch: &str,
        recovery: &mut Recovery,
    ) -> Result<bool, IngestError> {
        let Some(manifest) = self.staged_compaction(batch)? else {
            return Ok(false);
        };
        let finished = crate::compact::recover(self, batch, &manifest)?;
        self.discard_staged(batch)?;
        if finished {
            recovery.published.push(batch.to_string());
        } else {
            recovery.discarded.push(batch.to_string());
        }
        Ok(true)
    }

    /// Where a batch's quarantine records go once published.
    pub fn quarantine_path(&self, batch: &str) -> PathBuf {
        self.root.join(quarantine_key(batch))
    }
}

/// A data file of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFile {
    /// `findings/type=<enc>/<name>.parquet`
    pub relative: String,
    pub size: u64,
}

impl Warehouse {
    /// Every data file of the table.
    pub fn data_files(&self) -> Result<Vec<DataFile>, IngestError> {
        let mut files = Vec::new();
        if let Some(remote) = &self.remote {
            for listed in remote.list(&format!("{}/", crate::writer::FINDINGS_DIR))? {
                if listed.relative.ends_with(".parquet") {
                    files.push(DataFile {
                        relative: listed.relative,
                        size: listed.size,
                    });
                }
            }
        } else {
            let findings = self.findings_dir();
            let partitions = match fs::read_dir(&findings) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
                Err(e) => return Err(IngestError::warehouse(&findings)(e)),
            };
            for partition in partitions.filter_map(|e| e.ok()) {
                let Ok(dir_name) = partition.file_name().into_string() else {
                    continue;
                };
                let dir = partition.path();
                for file in fs::read_dir(&dir)
                    .map_err(IngestError::warehouse(&dir))?
                    .filter_map(|e| e.ok())
                {
                    let Ok(name) = file.file_name().into_string() else {
                        continue;
                    };
                    if name.ends_with(".parquet") {
                        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
                        files.push(DataFile {
                            relative: format!("{}/{dir_name}/{name}", crate::writer::FINDINGS_DIR),
                            size,
                        });
                    }
                }
            }
        }
        files.sort_by(|a, b| a.relative.cmp(&b.relative));
        Ok(files)
    }

    /// A local path holding the file's bytes: the file itself, or a download into `scratch`.
    pub fn local_copy(&self, relative: &str, scratch: &Path) -> Result<PathBuf, IngestError> {
        let Some(remote) = &self.remote else {
            return Ok(self.root.join(relative));
        };
        let name = relative.rsplit('/').next().unwrap_or(relative);
        let local = scratch.join(name);
        remote.download(relative, &local)?;
        Ok(local)
    }

    /// Writes a small metadata file (relative to the root), replacing any.
    pub fn put_meta(&self, relative: &str, bytes: Vec<u8>) -> Result<(), IngestError> {
        match &self.remote {
            Some(remote) => remote.put(relative, bytes),
            None => crate::ledger::write_atomic(&self.root.join(relative), &bytes),
        }
    }

    /// Writes a small metadata file only if none exists; `false` when one did.
    pub fn put_meta_new(&self, relative: &str, bytes: Vec<u8>) -> Result<bool, IngestError> {
        match &self.remote {
            Some(remote) => remote.put_new(relative, bytes),
            None => {
                let path = self.root.join(relative);
                if path.exists() {
                    return Ok(false);
                }
                crate::ledger::write_atomic(&path, &bytes).map(|()| true)
            }
        }
    }

    /// Reads a small metadata file; `None` when missing.
    pub fn get_meta(&self, relative: &str) -> Result<Option<Vec<u8>>, IngestError> {
        match &self.remote {
            Some(remote) => Ok(remote.get(relative)?.map(|b| b.to_vec())),
            None => {
                let path = self.root.join(relative);
                match fs::read(&path) {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(IngestError::warehouse(&path)(e)),
                }
            }
        }
    }

    /// Names (without `.json`) of the metadata files in a folder such as `_gdq/compactions`.
    pub fn meta_names(&self, folder: &str) -> Result<Vec<String>, IngestError> {
        let names: Vec<String> = match &self.remote {
            // The listing is recursive; sub-folders' objects are not this folder's.
            Some(remote) => remote
                .list(&format!("{folder}/"))?
                .into_iter()
                .filter_map(|l| {
                    let name = l.relative.strip_prefix(folder)?.strip_prefix('/')?;
                    (!name.contains('/')).then(|| name.to_string())
                })
                .collect(),
            None => {
                let dir = self.root.join(folder);
                match fs::read_dir(&dir) {
                    Ok(entries) => entries
                        .filter_map(|e| e.ok())
                        .filter_map(|e| e.file_name().into_string().ok())
                        .collect(),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                    Err(e) => return Err(IngestError::warehouse(&dir)(e)),
                }
            }
        };
        let mut names: Vec<String> = names
            .iter()
            .filter_map(|n| n.rsplit('/').next()?.strip_suffix(".json"))
            .map(str::to_string)
            .collect();
        names.sort();
        Ok(names)
    }

    /// Moves a batch's staged files (relative paths) into place; missing ones are skipped.
    pub fn publish_staged(&self, batch: &str, relatives: &[String]) -> Result<(), IngestError> {
        if let Some(remote) = &self.remote {
            let pairs = relatives
                .iter()
                .map(|rel| (format!("{STAGING}/{batch}/{rel}"), rel.clone()))
                .collect();
            remote.copy_many(pairs)?;
            return Ok(());
        }
        let staging = self.staging_dir(batch);
        let mut touched = Vec::new();
        for relative in relatives {
            let (from, to) = (staging.join(relative), self.root.join(relative));
            if let Some(parent) = to.parent() {
                fs::create_dir_all(parent).map_err(IngestError::warehouse(parent))?;
                if !touched.contains(&parent.to_path_buf()) {
                    touched.push(parent.to_path_buf());
                }
            }
            match fs::rename(&from, &to) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(IngestError::warehouse(&to)(e)),
            }
        }
        for dir in touched {
            sync_dir(&dir)?;
        }
        Ok(())
    }

    /// Deletes data files (relative paths); already missing ones are fine.
    pub fn delete_files(&self, relatives: &[String]) -> Result<(), IngestError> {
        if let Some(remote) = &self.remote {
            return remote.delete_many(relatives.to_vec());
        }
        for relative in relatives {
            let path = self.root.join(relative);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(IngestError::warehouse(&path)(e)),
            }
        }
        Ok(())
    }

    /// Whether a staged batch (local or uploaded) carries a compaction manifest.
    fn staged_compaction(&self, batch: &str) -> Result<Option<Vec<u8>>, IngestError> {
        let key = format!("{STAGING}/{batch}/{}", crate::compact::MANIFEST);
        self.get_meta(&key)
    }
}

fn commit_key(batch: &str) -> String {
    format!("{COMMITS}/{batch}.json")
}

/// A batch's quarantine file, relative to the warehouse root.
pub fn quarantine_key(batch: &str) -> String {
    format!("{QUARANTINE}/{batch}.jsonl")
}
