//! Recovery and vacuum: removing what no commit names.
//!
//! - **Debris of writers that died** before committing: data files in the table's folders
//!   that no version adds, and index and quarantine files of attempts that never landed.
//!   Locally they go as soon as their batch's lock is free; in S3 once they are older than
//!   the uncommitted ttl (a live writer never commits files older than half of it). Every
//!   writer does this when it opens the table; `gdq vacuum` does it on demand.
//! - **Files a compaction removed**, once the table's retention
//!   (`delta.deletedFileRetentionDuration`, an hour) has passed since, so readers of older
//!   snapshots never lose a file under them. Until then plain-Parquet readers of the folders
//!   see those files beside the compaction's outputs; Delta readers never do.
//!
//! The folders are listed before the snapshot is read again, so a file committed by another
//! writer between the two is seen as committed, never as debris.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use deltalake_core::table::config::TablePropertiesExt;
use futures::TryStreamExt;

use crate::error::{Result, TableError};
use crate::layout::{
    FINDINGS_DIR, ID_INDEX_DIR, QUARANTINE_DIR, batch_of, index_attempt, now_ms, quarantine_attempt,
};
pub use crate::recovery::Recovery;
use crate::staging;
use crate::store::Listed;
use crate::transaction::Table;

/// How a vacuum runs.
#[derive(Debug, Clone, Default)]
pub struct VacuumOptions {
    /// Keep removed files this long instead of the table's retention (`Some(0)`: delete
    /// them now; for plain-Parquet readers, when nobody is reading an older snapshot).
    pub retention: Option<Duration>,
    /// Say what would go, delete nothing.
    pub dry_run: bool,
}

/// The batch of an attempt (`<batch>.<n>` → `<batch>`), whose staging lock tells liveness.
fn batch_of_attempt(attempt: &str) -> &str {
    attempt.split('.').next().unwrap_or(attempt)
}

/// Removes the debris of dead writers and expired removed files (a writer's opening).
pub(crate) async fn recover(writer: &Table) -> Result<Recovery> {
    sweep(writer, &VacuumOptions::default()).await
}

/// `gdq vacuum`.
pub async fn vacuum(writer: &mut Table, options: &VacuumOptions) -> Result<Recovery> {
    writer.refresh().await?;
    sweep(writer, options).await
}

async fn sweep(writer: &Table, options: &VacuumOptions) -> Result<Recovery> {
    let warehouse = writer.warehouse();
    let store = warehouse.store();
    // Listed first: anything committed by the time the snapshot below is read is in it.
    let data = store.list(FINDINGS_DIR).await?;
    let indexes = store.list(ID_INDEX_DIR).await?;
    let quarantine = store.list(QUARANTINE_DIR).await?;
    let mut fresh = Table::snapshot_view(writer).await?;
    let active: HashSet<String> = fresh.active.drain().collect();
    let retention = options.retention.unwrap_or(fresh.retention);
    let now = now_ms();
    let expired_before = now - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);

    let dead = |attempt: &str, listed: &Listed| -> bool {
        match warehouse.local_root() {
            Some(root) => !staging::is_live(root, batch_of_attempt(attempt)),
            None => listed
                .modified
                .elapsed()
                .unwrap_or_default()
                .ge(&warehouse.uncommitted_ttl()),
        }
    };
    let mut report = Recovery::default();
    let mut doomed: Vec<String> = Vec::new();
    let mut discarded = BTreeSet::new();
    // Attempts with a file in the table (or kept for the retention) keep their index.
    let mut referenced: HashSet<String> = HashSet::new();
    for listed in &data {
        let Some(path) = listed
            .key
            .strip_prefix(FINDINGS_DIR)
            .and_then(|p| p.strip_prefix('/'))
        else {
            continue;
        };
        if path.starts_with("_delta_log/") || !path.ends_with(".parquet") {
            continue;
        }
        let Some(attempt) = batch_of(path) else {
            continue;
        };
        if active.contains(path) {
            referenced.insert(attempt.to_string());
            continue;
        }
        match fresh.removed.get(path) {
            Some(&removed_at) if removed_at.is_some_and(|t| t <= expired_before) => {
                report.expired_files += 1;
                doomed.push(listed.key.clone());
            }
            Some(_) => {
                report.retained_files += 1;
                referenced.insert(attempt.to_string());
            }
            None if dead(attempt, listed) => {
                report.debris_files += 1;
                discarded.insert(attempt.to_string());
                doomed.push(listed.key.clone());
            }
            None => {}
        }
    }
    for listed in &indexes {
        if let Some(attempt) = index_attempt(&listed.key)
            && !referenced.contains(attempt)
            && dead(attempt, listed)
        {
            report.debris_files += usize::from(!writer.ledger().contains_commit(attempt));
            doomed.push(listed.key.clone());
        }
    }
    for listed in &quarantine {
        if let Some(attempt) = quarantine_attempt(&listed.key)
            && !writer.ledger().contains_commit(attempt)
            && !fresh.committed.contains(attempt)
            && dead(attempt, listed)
        {
            report.debris_files += 1;
            discarded.insert(attempt.to_string());
            doomed.push(listed.key.clone());
        }
    }
    report.discarded = discarded.into_iter().collect();
    if options.dry_run {
        return Ok(report);
    }
    store.delete_many(&doomed).await?;
    if let Some(root) = warehouse.local_root() {
        for batch in staging::local_batches(root)? {
            if !staging::is_live(root, &batch) {
                let dir = root.join(crate::layout::STAGING_DIR).join(&batch);
                std::fs::remove_dir_all(&dir).map_err(TableError::io(&dir))?;
                // Its files may all be committed (a crash after the commit): only a batch
                // no commit names counts as discarded.
                if !writer.ledger().contains_commit(&batch)
                    && !fresh.committed.contains(&batch)
                    && !report.discarded.contains(&batch)
                {
                    report.discarded.push(batch);
                }
            }
        }
        report.discarded.sort();
    }
    if !doomed.is_empty() {
        tracing::info!(
            debris = report.debris_files,
            expired = report.expired_files,
            "removed files no commit names"
        );
    }
    Ok(report)
}

/// What a sweep needs of the newest snapshot.
pub(crate) struct SnapshotView {
    pub active: HashSet<String>,
    /// Removed paths and when they were removed.
    pub removed: std::collections::HashMap<String, Option<i64>>,
    pub retention: Duration,
    /// Attempts committed after the writer's ledger was read.
    pub committed: HashSet<String>,
}

impl Table {
    /// Reads the newest snapshot again (without moving the writer's own view).
    pub(crate) async fn snapshot_view(writer: &Table) -> Result<SnapshotView> {
        let log = writer.warehouse().log();
        let mut table = writer.delta.clone();
        table
            .update_state()
            .await
            .map_err(TableError::delta(format!("reading {}", log.name)))?;
        let state = table
            .snapshot()
            .map_err(TableError::delta(format!("snapshot of {}", log.name)))?;
        let active = state
            .log_data()
            .iter()
            .map(|f| f.path().into_owned())
            .collect();
        let removed = state
            .all_tombstones(log.log_store.as_ref())
            .map_ok(|t| (t.path().into_owned(), t.deletion_timestamp()))
            .try_collect()
            .await
            .map_err(TableError::delta(format!("removed files of {}", log.name)))?;
        let mut committed = HashSet::new();
        for version in writer.version() + 1..=state.version() {
            for app_id in log.entry(version).await?.app_ids {
                if let Some(attempt) = app_id.strip_prefix(crate::ledger::COMMIT_APP) {
                    committed.insert(attempt.to_string());
                }
            }
        }
        Ok(SnapshotView {
            active,
            removed,
            retention: state.table_config().deleted_file_retention_duration(),
            committed,
        })
    }
}
