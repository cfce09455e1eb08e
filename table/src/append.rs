//! Appending a batch: its staged files, the objects they came from, and their quarantine
//! records become one table version, or nothing.
//!
//! 1. Objects the ledger already holds (another writer committed them meanwhile) and
//!    objects that failed part way are dropped: their rows are rewritten out of the staged
//!    files into files of a new attempt name, their quarantine records removed.
//! 2. The files, their id index and the quarantine file are published under the attempt's
//!    names (invisible until a commit names them).
//! 3. The attempt commits: the files' `add`s with statistics, a `txn` per object (the
//!    ledger) and one for the attempt, as the log's next version. If another writer took
//!    that version, the ledger is read again and the loop goes back to 1.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

use deltalake_core::kernel::{Action, Add};
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use gdq_schemas::{PARTITION_COLUMN, encode_id_index, id_index_key};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::delta::ledger_transaction;
use crate::error::{Result, TableError};
use crate::fault::{crash_point, pause_point};
use crate::footer::Footer;
use crate::layout::{
    attempt_name, batch_of, data_file_path, now_ms, quarantine_key, warehouse_key,
};
use crate::ledger::SOURCE_APP;
use crate::quarantine::drop_records;
use crate::staging::Staging;
use crate::transaction::{Outcome, Table};
use crate::writer::{StagedFile, drop_sources};

/// One source object covered by a commit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceRecord {
    /// Stable identity of the object (bucket/key/ETag, or a local file's content hash).
    pub id: String,
    pub uri: String,
    pub rows: u64,
    pub quarantined: u64,
    /// Set when the object could only be read in part (a corrupt gzip stream): the rows
    /// before the break are committed, and the break is quarantined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A batch ready to commit: what its staging folder holds.
#[derive(Debug)]
pub struct StagedAppend {
    pub batch: String,
    pub staging: Staging,
    /// Its data files, in the staging folder under their table paths.
    pub files: Vec<StagedFile>,
    pub sources: Vec<SourceRecord>,
    /// URIs of objects whose rows may be in the staged files but must not commit: their
    /// decoding failed part way (they are not among `sources`).
    pub failed: HashSet<String>,
    /// The quarantine file in the staging folder, and its records.
    pub quarantine: Option<(PathBuf, u64)>,
}

/// What a batch's commit came to.
#[derive(Debug, Clone)]
pub struct Committed {
    pub version: u64,
    /// The attempt that committed (the batch name, or `<batch>.<n>` after a rewrite).
    pub attempt: String,
    pub sources: Vec<SourceRecord>,
    pub files: Vec<StagedFile>,
    pub quarantined: u64,
    /// Objects of the batch another writer committed first (left out of this commit).
    pub already_committed: Vec<String>,
}

impl Committed {
    pub fn rows(&self) -> u64 {
        self.files.iter().map(|f| f.rows).sum()
    }
}

/// The add action of a staged file, with its Delta statistics.
pub(crate) fn add_action(file: &StagedFile, footer: &Footer, data_change: bool) -> Add {
    Add {
        path: file.path.clone(),
        partition_values: [(
            PARTITION_COLUMN.to_string(),
            Some(file.finding_type.clone()),
        )]
        .into(),
        size: i64::try_from(file.bytes).unwrap_or(i64::MAX),
        modification_time: now_ms(),
        data_change,
        stats: Some(footer.delta_stats()),
        ..Add::default()
    }
}

/// Reads the footers of staged files (on a blocking thread: small reads, but file I/O).
pub(crate) async fn read_footers(
    staging: PathBuf,
    files: Vec<StagedFile>,
) -> Result<Vec<(StagedFile, Footer)>> {
    tokio::task::spawn_blocking(move || {
        files
            .into_iter()
            .map(|f| Footer::read(&staging.join(&f.path)).map(|footer| (f, footer)))
            .collect()
    })
    .await
    .map_err(|e| TableError::Internal(format!("reading footers: {e}")))?
}

/// Publishes an attempt's files and their id index; returns the add actions.
pub(crate) async fn publish_files(
    writer: &Table,
    staging: &Staging,
    attempt: &str,
    files: &[StagedFile],
    data_change: bool,
) -> Result<Vec<Action>> {
    let store = writer.warehouse.store();
    let footers = read_footers(staging.dir().to_path_buf(), files.to_vec()).await?;
    let mut adds = Vec::with_capacity(footers.len());
    let mut entries = Vec::with_capacity(footers.len());
    for (file, footer) in &footers {
        entries.push(footer.id_index_entry(&warehouse_key(&file.path))?);
        adds.push(Action::Add(add_action(file, footer, data_change)));
    }
    let published: Vec<(PathBuf, String)> = files
        .iter()
        .map(|f| (staging.dir().join(&f.path), warehouse_key(&f.path)))
        .collect();
    store.publish_files(&published).await?;
    if !entries.is_empty() {
        store
            .put(&id_index_key(attempt), encode_id_index(&entries))
            .await?;
    }
    Ok(adds)
}

/// Deletes what a lost attempt published (its version went to another writer, so no
/// commit can ever name these files).
pub(crate) async fn unpublish(
    writer: &Table,
    attempt: &str,
    files: &[StagedFile],
    quarantine: bool,
) -> Result<()> {
    let mut keys: Vec<String> = files.iter().map(|f| warehouse_key(&f.path)).collect();
    keys.push(id_index_key(attempt));
    if quarantine {
        keys.push(quarantine_key(attempt));
    }
    writer.warehouse.store().delete_many(&keys).await
}

impl Table {
    /// Commits a staged batch as one table version; `None` when nothing of it is left to
    /// commit (every object was committed by another writer meanwhile).
    pub async fn commit_append(&mut self, staged: StagedAppend) -> Result<Option<Committed>> {
        let StagedAppend {
            batch,
            staging,
            mut files,
            mut sources,
            failed,
            quarantine,
        } = staged;
        let (quarantine_path, mut quarantined) = match quarantine {
            Some((path, records)) => (Some(path), records),
            None => (None, 0),
        };
        let mut drop_uris = failed;
        let mut already_committed = Vec::new();
        let mut attempt_number = 0u32;
        let mut attempt = batch.clone();
        // The attempt whose files are published, and when.
        let mut published: Option<(String, Vec<Action>, Instant)> = None;
        loop {
            let duplicates: HashSet<String> = sources
                .iter()
                .filter(|s| self.ledger().contains_source(&s.id))
                .map(|s| s.uri.clone())
                .collect();
            already_committed.extend(duplicates.iter().cloned());
            sources.retain(|s| !duplicates.contains(&s.uri));
            drop_uris.extend(duplicates);
            if !drop_uris.is_empty() {
                if let Some((old, _, _)) = published.take() {
                    unpublish(self, &old, &files, quarantined > 0).await?;
                }
                attempt_number += 1;
                attempt = attempt_name(&batch, attempt_number);
                files = rewrite_without(&staging, &files, &attempt, &drop_uris).await?;
                if let Some(path) = &quarantine_path {
                    quarantined = drop_records(path, &drop_uris)?;
                }
                drop_uris.clear();
            }
            if sources.is_empty() && quarantined == 0 {
                if let Some((old, _, _)) = published.take() {
                    unpublish(self, &old, &files, false).await?;
                }
                staging.clear()?;
                return Ok(None);
            }
            let (adds, published_at) = match &published {
                Some((name, adds, at)) if *name == attempt => (adds.clone(), *at),
                _ => {
                    crash_point("before-publish");
                    let adds = publish_files(self, &staging, &attempt, &files, true).await?;
                    if let Some(path) = quarantine_path.as_ref().filter(|_| quarantined > 0) {
                        self.warehouse
                            .store()
                            .publish_file(path, &quarantine_key(&attempt))
                            .await?;
                    }
                    let at = Instant::now();
                    published = Some((attempt.clone(), adds.clone(), at));
                    (adds, at)
                }
            };
            self.check_not_stale(published_at)?;
            // The files a commit names must survive a power cut that the commit survives.
            self.warehouse.store().sync().await?;
            crash_point("before-commit");
            pause_point("before-commit");
            let transactions = sources
                .iter()
                .map(|s| ledger_transaction(format!("{SOURCE_APP}{}", s.id)))
                .collect();
            let metadata = json!({
                "operation": "append",
                "batch": batch,
                "attempt": attempt,
                "rows": files.iter().map(|f| f.rows).sum::<u64>(),
                "quarantined": quarantined,
                "sources": sources,
            });
            let operation = DeltaOperation::Write {
                mode: SaveMode::Append,
                partition_by: None,
                predicate: None,
            };
            match self
                .try_commit(&attempt, adds, operation, metadata, transactions)
                .await?
            {
                Outcome::Committed(version) => {
                    // Durable before the caller acts on it (deletes the messages it covers).
                    self.warehouse.store().sync().await?;
                    crash_point("after-commit");
                    staging.clear()?;
                    return Ok(Some(Committed {
                        version,
                        attempt,
                        sources,
                        files,
                        quarantined,
                        already_committed,
                    }));
                }
                Outcome::Lost(entries) => {
                    tracing::debug!(
                        batch = %batch,
                        versions = entries.len(),
                        "another writer committed first; checking its objects"
                    );
                }
            }
        }
    }

    /// Refuses to commit files published so long ago that another writer's recovery may
    /// already take them for a dead writer's debris (S3 warehouses, where age is the test).
    pub(crate) fn check_not_stale(&self, published_at: Instant) -> Result<()> {
        let limit = self.warehouse.uncommitted_ttl() / 2;
        if self.warehouse.local_root().is_none() && published_at.elapsed() > limit {
            return Err(TableError::State(format!(
                "the batch's files were published {:.0} s ago, more than half of the {:.0} s after which uncommitted files count as debris; not committing them (the objects stay to be ingested again)",
                published_at.elapsed().as_secs_f64(),
                self.warehouse.uncommitted_ttl().as_secs_f64()
            )));
        }
        Ok(())
    }
}

/// Writes the staged files of a new attempt without the rows of `uris`.
async fn rewrite_without(
    staging: &Staging,
    files: &[StagedFile],
    attempt: &str,
    uris: &HashSet<String>,
) -> Result<Vec<StagedFile>> {
    let dir = staging.dir().to_path_buf();
    let files = files.to_vec();
    let attempt = attempt.to_string();
    let uris = uris.clone();
    tokio::task::spawn_blocking(move || {
        let mut kept = Vec::with_capacity(files.len());
        let mut parts = std::collections::HashMap::<String, u32>::new();
        for file in files {
            let part = parts.entry(file.finding_type.clone()).or_default();
            let path = data_file_path(&file.finding_type, &attempt, *part);
            let from = dir.join(&file.path);
            if let Some((rows, bytes)) = drop_sources(&from, &dir.join(&path), &uris)? {
                *part += 1;
                kept.push(StagedFile {
                    path,
                    finding_type: file.finding_type,
                    rows,
                    bytes,
                });
            }
            std::fs::remove_file(&from).map_err(TableError::io(&from))?;
            debug_assert!(batch_of(&file.path).is_some());
        }
        Ok(kept)
    })
    .await
    .map_err(|e| TableError::Internal(format!("rewriting staged files: {e}")))?
}
