//! What a warehouse holds, read from Parquet footers and the ledger (no table scan): the
//! first thing an operator runs.

use std::collections::BTreeMap;
use std::fs::File;

use gdq_schemas::{
    COMPACTIONS_DIR, COMPACTIONS_DONE_DIR, CompactionView, PARTITION_COLUMN, decode_partition_value,
};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::statistics::Statistics;

use crate::error::IngestError;
use crate::ledger::Ledger;
use crate::remote::Remote;
use crate::warehouse::Warehouse;

/// One type partition.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PartitionStatus {
    pub files: u64,
    pub rows: u64,
    pub bytes: u64,
    /// Newest `updated_at` (epoch ms), from row-group statistics.
    pub newest_updated_at_ms: Option<i64>,
}

/// The whole warehouse.
#[derive(Debug, Default, Clone)]
pub struct WarehouseStatus {
    pub types: BTreeMap<String, PartitionStatus>,
    pub commits: usize,
    pub objects: usize,
    pub quarantine_records: u64,
    /// Batches staged but not committed (a writer running now, or one that crashed).
    pub staged_batches: usize,
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

fn read_dir_names(dir: &std::path::Path) -> Result<Vec<(String, std::path::PathBuf)>, IngestError> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok().map(|n| (n, e.path())))
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(IngestError::warehouse(dir)(e)),
    }
}

/// Adds one data file's footer to its partition's status.
fn add_file(partition: &mut PartitionStatus, bytes: u64, meta: &ParquetMetaData) {
    partition.files += 1;
    partition.bytes += bytes;
    partition.rows += meta.file_metadata().num_rows().max(0) as u64;
    let column = meta
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.name() == "updated_at");
    for group in meta.row_groups() {
        if let Some(Statistics::Int64(s)) = column.and_then(|i| group.column(i).statistics()) {
            partition.newest_updated_at_ms =
                partition.newest_updated_at_ms.max(s.max_opt().copied());
        }
    }
}

/// The type a `type=<enc>` folder name holds.
fn partition_type(dir_name: &str) -> Option<String> {
    dir_name
        .strip_prefix(PARTITION_COLUMN)?
        .strip_prefix('=')
        .and_then(decode_partition_value)
}

/// Reads the status of a warehouse, local or in S3.
pub fn warehouse_status(warehouse: &Warehouse) -> Result<WarehouseStatus, IngestError> {
    let mut status = match warehouse.remote() {
        Some(remote) => remote_files(warehouse, remote)?,
        None => local_files(warehouse)?,
    };
    let ledger = Ledger::load(warehouse)?;
    status.commits = ledger.commits();
    status.objects = ledger.len();
    Ok(status)
}

/// The compaction records, to leave out files a crashed compaction left behind, as queries do.
fn compactions(warehouse: &Warehouse) -> Result<CompactionView, IngestError> {
    let mut view = CompactionView::default();
    for name in warehouse.meta_names(COMPACTIONS_DIR)? {
        let key = format!("{COMPACTIONS_DIR}/{name}.json");
        if let Some(bytes) = warehouse.get_meta(&key)? {
            view.add_record(&bytes)
                .map_err(|reason| IngestError::Ledger {
                    path: key.into(),
                    reason,
                })?;
        }
    }
    for name in warehouse.meta_names(COMPACTIONS_DONE_DIR)? {
        view.add_finished(&name);
    }
    Ok(view)
}

fn local_files(warehouse: &Warehouse) -> Result<WarehouseStatus, IngestError> {
    let mut status = WarehouseStatus::default();
    let view = compactions(warehouse)?;
    for (name, dir) in read_dir_names(&warehouse.findings_dir())? {
        let Some(finding_type) = partition_type(&name) else {
            continue;
        };
        let partition = status.types.entry(finding_type.clone()).or_default();
        for (file_name, path) in read_dir_names(&dir)? {
            if !file_name.ends_with(".parquet") || view.hides(&file_name) {
                continue;
            }
            let file = File::open(&path).map_err(IngestError::warehouse(&path))?;
            let bytes = file
                .metadata()
                .map_err(IngestError::warehouse(&path))?
                .len();
            let reader =
                SerializedFileReader::new(file).map_err(|source| IngestError::Parquet {
                    finding_type: finding_type.clone(),
                    source,
                })?;
            add_file(partition, bytes, reader.metadata());
        }
    }
    for (name, path) in read_dir_names(&warehouse.quarantine_dir())? {
        if name.ends_with(".jsonl") {
            let text = std::fs::read(&path).map_err(IngestError::warehouse(&path))?;
            status.quarantine_records += text.iter().filter(|&&b| b == b'\n').count() as u64;
        }
    }
    status.staged_batches = read_dir_names(&warehouse.meta_dir().join("staging"))?.len();
    Ok(status)
}

fn remote_files(warehouse: &Warehouse, remote: &Remote) -> Result<WarehouseStatus, IngestError> {
    let mut status = WarehouseStatus::default();
    let view = compactions(warehouse)?;
    for listed in remote.list("findings/")? {
        let mut parts = listed.relative.split('/').skip(1);
        let (Some(dir), Some(file)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Some(finding_type) =
            partition_type(dir).filter(|_| file.ends_with(".parquet") && !view.hides(file))
        else {
            continue;
        };
        let meta = remote.parquet_footer(&listed.relative, listed.size)?;
        add_file(
            status.types.entry(finding_type).or_default(),
            listed.size,
            &meta,
        );
    }
    let quarantine: Vec<String> = remote
        .list("_gdq/quarantine/")?
        .into_iter()
        .map(|l| l.relative)
        .filter(|r| r.ends_with(".jsonl"))
        .collect();
    for body in remote.get_many(&quarantine)?.into_iter().flatten() {
        status.quarantine_records += body.iter().filter(|&&b| b == b'\n').count() as u64;
    }
    let staged: std::collections::BTreeSet<String> = remote
        .list("_gdq/staging/")?
        .into_iter()
        .filter_map(|l| l.relative.split('/').nth(2).map(str::to_string))
        .collect();
    status.staged_batches = staged.len();
    Ok(status)
}
