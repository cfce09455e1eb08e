//! Upgrading a warehouse of an older gdq, whose table was plain Parquet folders plus gdq's
//! own commit records, into the Delta table in place: no data file is rewritten or moved.
//!
//! The old layout (gdq up to the Delta change):
//!
//! ```text
//! findings/type=<enc>/<batch>-<part>.parquet     data files
//! _gdq/commits/<batch>.json                      the ledger: one record per commit
//! _gdq/staging/<batch>/…                         batches not yet published
//! _gdq/compactions/<c-batch>.json                compactions whose inputs may remain
//! _gdq/compactions/done/<c-batch>.json           finished compactions
//! ```
//!
//! The upgrade first finishes what an old writer's crash left (the old recovery: publish
//! committed batches, discard uncommitted ones, finish or undo compactions), then commits
//! version 0 of the table with an `add` for every visible data file (statistics from its
//! footer) and the old ledger as `txn`s: `gdq.source/<id>` for every object, and
//! `gdq.commit/<batch>` for every commit, so the quarantine files of old commits still
//! count. Version 0 is created put-if-absent: a second upgrade, or two at once, change
//! nothing, and a crash before it leaves the old layout as valid as it was. The old records
//! stay where they are; gdq no longer reads them. Old id index files stay valid (they are
//! keyed by the same paths).
//!
//! Stop the old version's writers before upgrading: they do not know the new layout.

use std::collections::{BTreeMap, HashSet};

use deltalake_core::kernel::Action;
use gdq_schemas::{PARTITION_COLUMN, decode_partition_value, id_index_key};
use parquet::file::metadata::ParquetMetaDataReader;
use serde::Deserialize;
use serde_json::json;

use crate::delta::DeltaLog;
use crate::delta::ledger_transaction;
use crate::error::{Result, TableError};
use crate::footer::delta_stats;
use crate::layout::{FINDINGS_DIR, batch_of, now_ms, quarantine_key};
use crate::ledger::{COMMIT_APP, SOURCE_APP};
use crate::store::Store;

const COMMITS: &str = "_gdq/commits";
const STAGING: &str = "_gdq/staging";
const COMPACTIONS: &str = "_gdq/compactions";
const COMPACTIONS_DONE: &str = "_gdq/compactions/done";
const MANIFEST: &str = "compaction.json";

/// What an upgrade did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UpgradeReport {
    /// `false` when the warehouse needed none (already a Delta table, or empty).
    pub upgraded: bool,
    pub files: usize,
    pub rows: u64,
    pub commits: usize,
    pub objects: usize,
    /// Interrupted old batches and compactions finished or undone first.
    pub recovered: usize,
}

#[derive(Deserialize)]
struct OldSource {
    id: String,
}

#[derive(Deserialize)]
struct OldFile {
    path: String,
}

#[derive(Deserialize)]
struct OldCommit {
    batch: String,
    sources: Vec<OldSource>,
    files: Vec<OldFile>,
}

#[derive(Deserialize)]
struct OldCompaction {
    batch: String,
    inputs: Vec<String>,
    outputs: Vec<OldFile>,
}

/// Whether the warehouse holds the old layout (and no Delta table).
pub async fn is_legacy(store: &Store) -> Result<bool> {
    if !store.list(COMMITS).await?.is_empty() {
        return Ok(true);
    }
    Ok(store
        .list(FINDINGS_DIR)
        .await?
        .iter()
        .any(|l| l.key.ends_with(".parquet")))
}

fn parse<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| TableError::Corrupt {
        what: what.to_string(),
        reason: e.to_string(),
    })
}

/// Names (without `.json`) of the records directly in `folder`.
async fn record_names(store: &Store, folder: &str) -> Result<Vec<String>> {
    let mut names: Vec<String> = store
        .list(folder)
        .await?
        .into_iter()
        .filter_map(|l| {
            let rest = l.key.strip_prefix(folder)?.strip_prefix('/')?;
            (!rest.contains('/'))
                .then(|| rest.strip_suffix(".json").map(str::to_string))
                .flatten()
        })
        .collect();
    names.sort();
    Ok(names)
}

async fn read_record<T: for<'de> Deserialize<'de>>(store: &Store, key: &str) -> Result<Option<T>> {
    match store.get(key).await? {
        Some(bytes) => parse(&bytes, &store.describe(key)).map(Some),
        None => Ok(None),
    }
}

/// Moves staged objects into place (copy, then the staged one is deleted with its batch).
async fn publish_staged(store: &Store, batch: &str, keys: &[String]) -> Result<()> {
    for key in keys {
        let staged = format!("{STAGING}/{batch}/{key}");
        if let Some(bytes) = store.get(&staged).await? {
            store.put(key, bytes.to_vec()).await?;
        }
    }
    Ok(())
}

/// The old recovery: finishes committed batches and compactions, undoes the rest.
async fn recover_old_layout(store: &Store) -> Result<usize> {
    let mut staged: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for listed in store.list(STAGING).await? {
        if let Some((batch, _)) = listed
            .key
            .strip_prefix(STAGING)
            .and_then(|r| r.strip_prefix('/'))
            .and_then(|r| r.split_once('/'))
        {
            staged
                .entry(batch.to_string())
                .or_default()
                .push(listed.key.clone());
        }
    }
    let mut recovered = 0;
    for (batch, keys) in &staged {
        if let Some(root) = store.local_root()
            && crate::staging::is_live(root, batch)
        {
            return Err(TableError::State(format!(
                "{}: batch {batch} of an older gdq is still being written; stop the old writers before upgrading",
                store.name()
            )));
        }
        let manifest = format!("{STAGING}/{batch}/{MANIFEST}");
        if let Some(compaction) = read_record::<OldCompaction>(store, &manifest).await? {
            let record = format!("{COMPACTIONS}/{batch}.json");
            if store.get(&record).await?.is_some() {
                store.delete_many(&compaction.inputs).await?;
            } else {
                let mut outputs: Vec<String> =
                    compaction.outputs.into_iter().map(|f| f.path).collect();
                outputs.push(id_index_key(batch));
                store.delete_many(&outputs).await?;
            }
        } else if let Some(commit) =
            read_record::<OldCommit>(store, &format!("{COMMITS}/{batch}.json")).await?
        {
            let mut published: Vec<String> = commit.files.into_iter().map(|f| f.path).collect();
            published.push(id_index_key(batch));
            published.push(quarantine_key(batch));
            publish_staged(store, batch, &published).await?;
        }
        store.delete_many(keys).await?;
        if let Some(root) = store.local_root() {
            let _ = std::fs::remove_dir_all(root.join(STAGING).join(batch));
        }
        recovered += 1;
    }
    // Committed compactions whose inputs were not all deleted yet.
    for name in record_names(store, COMPACTIONS).await? {
        let key = format!("{COMPACTIONS}/{name}.json");
        if let Some(compaction) = read_record::<OldCompaction>(store, &key).await? {
            store.delete_many(&compaction.inputs).await?;
        }
    }
    Ok(recovered)
}

/// The compactions that committed: their outputs are part of the table.
async fn committed_compactions(store: &Store) -> Result<HashSet<String>> {
    let mut committed: HashSet<String> = record_names(store, COMPACTIONS_DONE)
        .await?
        .into_iter()
        .collect();
    for name in record_names(store, COMPACTIONS).await? {
        let key = format!("{COMPACTIONS}/{name}.json");
        if let Some(compaction) = read_record::<OldCompaction>(store, &key).await? {
            committed.insert(compaction.batch);
        }
    }
    Ok(committed)
}

/// The footer of a data file, in two ranged reads.
async fn footer(
    store: &Store,
    key: &str,
    size: u64,
) -> Result<parquet::file::metadata::ParquetMetaData> {
    let bad = |reason: String| TableError::Corrupt {
        what: store.describe(key),
        reason,
    };
    if size < 12 {
        return Err(bad(format!("{size} bytes is too short for Parquet")));
    }
    let tail = store.get_range(key, size - 8..size).await?;
    if &tail[4..] != b"PAR1" {
        return Err(bad("no Parquet footer".into()));
    }
    let length = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    if length + 8 > size {
        return Err(bad(format!("footer of {length} bytes exceeds the file")));
    }
    let bytes = store.get_range(key, size - 8 - length..size - 8).await?;
    ParquetMetaDataReader::decode_metadata(&bytes).map_err(|e| bad(e.to_string()))
}

/// Upgrades the warehouse in `store` (its table's `log`) in place (see the module
/// documentation).
pub async fn upgrade(store: &Store, log: &DeltaLog) -> Result<UpgradeReport> {
    if log.load().await?.is_some() || !is_legacy(store).await? {
        return Ok(UpgradeReport::default());
    }
    let recovered = recover_old_layout(store).await?;
    crate::fault::crash_point("upgrade-before-commit");

    let committed = committed_compactions(store).await?;
    let mut transactions = Vec::new();
    let mut objects = HashSet::new();
    let commits = record_names(store, COMMITS).await?;
    for batch in &commits {
        let key = format!("{COMMITS}/{batch}.json");
        let Some(record) = read_record::<OldCommit>(store, &key).await? else {
            continue;
        };
        for source in record.sources {
            if objects.insert(source.id.clone()) {
                transactions.push(ledger_transaction(format!("{SOURCE_APP}{}", source.id)));
            }
        }
        transactions.push(ledger_transaction(format!("{COMMIT_APP}{}", record.batch)));
    }
    for batch in &committed {
        transactions.push(ledger_transaction(format!("{COMMIT_APP}{batch}")));
    }

    let mut actions: Vec<Action> = Vec::new();
    let mut rows = 0u64;
    for listed in store.list(FINDINGS_DIR).await? {
        let Some(path) = listed
            .key
            .strip_prefix(FINDINGS_DIR)
            .and_then(|p| p.strip_prefix('/'))
            .filter(|p| p.ends_with(".parquet") && !p.starts_with("_delta_log/"))
        else {
            continue;
        };
        // An output of a compaction that never committed is not part of the table.
        let batch = batch_of(path).unwrap_or_default();
        if batch.starts_with('c') && !committed.contains(batch) {
            store.delete_many(std::slice::from_ref(&listed.key)).await?;
            continue;
        }
        let Some(finding_type) = path
            .split('/')
            .next()
            .and_then(|dir| dir.strip_prefix(PARTITION_COLUMN)?.strip_prefix('='))
            .and_then(decode_partition_value)
        else {
            continue;
        };
        let metadata = footer(store, &listed.key, listed.size).await?;
        rows += u64::try_from(metadata.file_metadata().num_rows()).unwrap_or(0);
        actions.push(Action::Add(deltalake_core::kernel::Add {
            path: path.to_string(),
            partition_values: [(PARTITION_COLUMN.to_string(), Some(finding_type))].into(),
            size: i64::try_from(listed.size).unwrap_or(i64::MAX),
            modification_time: listed
                .modified
                .duration_since(std::time::SystemTime::UNIX_EPOCH)
                .map_or(now_ms(), |d| {
                    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
                }),
            data_change: true,
            stats: Some(delta_stats(&metadata)),
            ..Default::default()
        }));
    }
    let files = actions.len();
    actions.extend(transactions.into_iter().map(Action::Txn));
    let metadata = json!({
        "operation": "upgrade",
        "from": "gdq warehouse format 1 (Parquet folders and _gdq/commits)",
        "files": files,
        "rows": rows,
        "commits": commits.len(),
        "objects": objects.len(),
    });
    store.sync().await?;
    let upgraded = log.create(actions, metadata).await?;
    store.sync().await?;
    Ok(UpgradeReport {
        upgraded,
        files,
        rows,
        commits: commits.len(),
        objects: objects.len(),
        recovered,
    })
}
