//! What a warehouse holds, from the snapshot's statistics and the ledger (no file is
//! opened): the first thing an operator runs.

use std::collections::BTreeMap;

use crate::error::Result;
use crate::layout::{QUARANTINE_DIR, quarantine_attempt};
use crate::quarantine::count_records;
use crate::snapshot::Snapshot;
use crate::transaction::Table;
use crate::warehouse::Warehouse;

/// One type partition.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PartitionStatus {
    pub files: u64,
    pub rows: u64,
    pub bytes: u64,
    /// Newest `updated_at` (epoch ms), from the files' statistics.
    pub newest_updated_at_ms: Option<i64>,
}

/// The whole warehouse.
#[derive(Debug, Default, Clone)]
pub struct WarehouseStatus {
    /// The table's version (`None`: no table yet).
    pub version: Option<u64>,
    pub types: BTreeMap<String, PartitionStatus>,
    /// gdq commits that landed (appends and compactions; an upgraded warehouse's earlier
    /// commits count too).
    pub commits: usize,
    /// Export objects the ledger holds.
    pub objects: usize,
    pub quarantine_records: u64,
    /// Files in the table's folders no version adds: a writer in flight, a dead writer's
    /// debris, or a compaction's inputs kept for the retention.
    pub unreferenced_files: u64,
}

impl WarehouseStatus {
    pub fn total(&self) -> PartitionStatus {
        self.types
            .values()
            .fold(PartitionStatus::default(), |mut t, p| {
                t.files += p.files;
                t.rows += p.rows;
                t.bytes += p.bytes;
                t.newest_updated_at_ms = t.newest_updated_at_ms.max(p.newest_updated_at_ms);
                t
            })
    }
}

fn partitions(snapshot: &Snapshot) -> BTreeMap<String, PartitionStatus> {
    let mut types: BTreeMap<String, PartitionStatus> = BTreeMap::new();
    for file in &snapshot.files {
        let p = types.entry(file.finding_type.clone()).or_default();
        p.files += 1;
        p.rows += file.rows.unwrap_or(0);
        p.bytes += file.size;
        p.newest_updated_at_ms = p.newest_updated_at_ms.max(file.max_updated_at_ms);
    }
    types
}

/// Reads the status of a warehouse, local or in S3.
pub async fn warehouse_status(warehouse: &Warehouse) -> Result<WarehouseStatus> {
    if warehouse.snapshot().await?.is_none() {
        return Ok(WarehouseStatus::default());
    }
    let writer = Table::load(warehouse).await?;
    let snapshot = writer.snapshot()?;
    let mut status = WarehouseStatus {
        version: Some(snapshot.version),
        types: partitions(&snapshot),
        commits: writer.ledger().commits(),
        objects: writer.ledger().sources(),
        ..WarehouseStatus::default()
    };
    let store = warehouse.store();
    let committed: Vec<String> = store
        .list(QUARANTINE_DIR)
        .await?
        .into_iter()
        .filter(|l| quarantine_attempt(&l.key).is_some_and(|a| writer.ledger().contains_commit(a)))
        .map(|l| l.key)
        .collect();
    for body in store.get_many(&committed).await?.into_iter().flatten() {
        status.quarantine_records += count_records(&body);
    }
    let active: std::collections::HashSet<String> =
        snapshot.files.iter().map(|f| f.key()).collect();
    status.unreferenced_files = store
        .list(crate::layout::FINDINGS_DIR)
        .await?
        .iter()
        .filter(|l| l.key.ends_with(".parquet") && !active.contains(&l.key))
        .count() as u64;
    Ok(status)
}
