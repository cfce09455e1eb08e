//! `gdq compact`: merges the small files of each type partition into large ones sorted by
//! `updated_at`, without a row lost or doubled for gdq readers, and safe against crashes.
//!
//! Protocol, per partition (a compaction is a batch like any other, id prefixed `c`):
//! 1. read the partition's files as listed now, merge, sort, optionally dedupe, and stage the
//!    outputs (`_gdq/staging/c…/findings/type=…/c…-00000.parquet`, uploaded for S3);
//! 2. under the commit lock, check every input still exists (another compaction may have
//!    taken them), then write the manifest `_gdq/staging/c…/compaction.json`;
//! 3. move the outputs into `findings/` — gdq readers ignore files of compactions without
//!    a record, so they see either the inputs or the outputs, never both;
//! 4. write the record `_gdq/compactions/c….json` (the commit point): from now on gdq
//!    readers ignore the inputs;
//! 5. delete the inputs, then the staging.
//!
//! Recovery (any writer, under the lock) finds the manifest of an interrupted compaction:
//! with a record it finishes step 5, without one it deletes the outputs. The ledger is not
//! touched: it names source objects, which compaction keeps, so a late redelivery of a
//! compacted object still adds nothing.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;

use arrow_array::{Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow_select::concat::concat_batches;
use gdq_schemas::{PARTITION_COLUMN, decode_partition_value, findings_schema, format_rfc3339_ms};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use crate::batch::{new_batch_id, now_ms};
use crate::error::IngestError;
use crate::ledger::FileRecord;
use crate::warehouse::{DataFile, Recovery, Warehouse};
use crate::writer::{PartitionWriter, sort_by_updated_at};

/// Where compaction records go, relative to the warehouse root.
pub const COMPACTIONS: &str = "_gdq/compactions";
/// The manifest in a compaction's staging folder.
pub const MANIFEST: &str = "compaction.json";
/// Rows per row group of a compacted file.
const ROW_GROUP_ROWS: usize = 128 * 1024;

/// What a compaction replaces with what. Written first as the manifest, then as the record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CompactionRecord {
    pub format: u32,
    pub batch: String,
    pub finding_type: String,
    #[serde(default)]
    pub committed_at: String,
    /// Data files replaced (relative to the warehouse root).
    pub inputs: Vec<String>,
    pub outputs: Vec<FileRecord>,
    pub rows_before: u64,
    pub rows_after: u64,
    pub dedupe: bool,
}

/// How to compact.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// Only these types (empty: all).
    pub types: Vec<String>,
    /// Outputs are closed past this size.
    pub target_file_bytes: u64,
    /// Keep one row per (`id`, `updated_at`).
    pub dedupe: bool,
    /// Partitions with fewer files are left alone (unless deduplicating).
    pub min_files: usize,
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactOptions {
            types: Vec::new(),
            target_file_bytes: 128 << 20,
            dedupe: false,
            min_files: 2,
        }
    }
}

/// What happened to one partition.
#[derive(Debug, Clone, Default)]
pub struct PartitionReport {
    pub finding_type: String,
    pub files_before: usize,
    pub files_after: usize,
    pub rows_before: u64,
    pub rows_after: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Set when the partition was left as it was, and why.
    pub skipped: Option<String>,
}

#[derive(Debug, Default)]
pub struct CompactReport {
    pub recovery: Recovery,
    pub partitions: Vec<PartitionReport>,
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, IngestError> {
    serde_json::to_vec_pretty(value)
        .map_err(|e| IngestError::Internal(format!("encoding compaction record: {e}")))
}

fn record_key(batch: &str) -> String {
    format!("{COMPACTIONS}/{batch}.json")
}

/// Compacts the warehouse's partitions.
pub fn compact(
    warehouse: &Warehouse,
    options: &CompactOptions,
) -> Result<CompactReport, IngestError> {
    let recovery = {
        let lock = warehouse.lock()?;
        warehouse.recover(&lock)?
    };
    let mut by_type: BTreeMap<String, Vec<DataFile>> = BTreeMap::new();
    for file in warehouse.data_files()? {
        let finding_type = file
            .relative
            .split('/')
            .nth(1)
            .and_then(|dir| dir.strip_prefix(PARTITION_COLUMN)?.strip_prefix('='))
            .and_then(decode_partition_value);
        if let Some(finding_type) = finding_type {
            by_type.entry(finding_type).or_default().push(file);
        }
    }
    let mut report = CompactReport {
        recovery,
        partitions: Vec::new(),
    };
    for (finding_type, files) in by_type {
        if !options.types.is_empty() && !options.types.contains(&finding_type) {
            continue;
        }
        let bytes_before = files.iter().map(|f| f.size).sum();
        let mut partition = PartitionReport {
            finding_type: finding_type.clone(),
            files_before: files.len(),
            files_after: files.len(),
            bytes_before,
            bytes_after: bytes_before,
            ..PartitionReport::default()
        };
        let small = files
            .iter()
            .filter(|f| f.size < options.target_file_bytes / 2)
            .count();
        if !options.dedupe && (files.len() < options.min_files.max(2) || small < 2) {
            partition.skipped = Some("already compact".into());
            report.partitions.push(partition);
            continue;
        }
        compact_partition(warehouse, &finding_type, &files, options, &mut partition)?;
        report.partitions.push(partition);
    }
    Ok(report)
}

/// Reads a data file whole.
fn read_file(path: &std::path::Path, finding_type: &str) -> Result<Vec<RecordBatch>, IngestError> {
    let file = File::open(path).map_err(IngestError::warehouse(path))?;
    let parquet_err = |source| IngestError::Parquet {
        finding_type: finding_type.to_string(),
        source,
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(parquet_err)?
        .with_batch_size(ROW_GROUP_ROWS)
        .build()
        .map_err(parquet_err)?;
    reader
        .map(|b| b.map_err(IngestError::Arrow))
        .collect::<Result<Vec<_>, _>>()
}

/// Keeps the rows whose (`id`, `updated_at`) was not seen before.
fn dedupe(batch: &RecordBatch, seen: &mut HashSet<u128>) -> Result<RecordBatch, IngestError> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| IngestError::Internal(format!("data file without {name}")))
    };
    let ids = column("id")?
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| IngestError::Internal("id is not Utf8".into()))?;
    let times = column("updated_at")?
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .ok_or_else(|| IngestError::Internal("updated_at is not a timestamp".into()))?;
    let keep: arrow_array::BooleanArray = (0..batch.num_rows())
        .map(|i| {
            let mut h = Xxh3::new();
            h.update(ids.value(i).as_bytes());
            h.update(&[u8::from(times.is_valid(i))]);
            h.update(&times.value(i).to_le_bytes());
            Some(seen.insert(h.digest128()))
        })
        .collect();
    Ok(arrow_select::filter::filter_record_batch(batch, &keep)?)
}

/// Groups input files into outputs of about `target` bytes each, in commit order.
fn output_groups(files: &[DataFile], target: u64) -> Vec<&[DataFile]> {
    let mut groups = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, f) in files.iter().enumerate() {
        if i > start && bytes + f.size > target {
            groups.push(&files[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += f.size;
    }
    if start < files.len() {
        groups.push(&files[start..]);
    }
    groups
}

fn compact_partition(
    warehouse: &Warehouse,
    finding_type: &str,
    files: &[DataFile],
    options: &CompactOptions,
    report: &mut PartitionReport,
) -> Result<(), IngestError> {
    let batch = format!("c{}", new_batch_id());
    let live = warehouse.stage(&batch)?;
    let staging_root = warehouse.staging_dir(&batch);
    let downloads = staging_root.join("inputs");
    if warehouse.remote().is_some() {
        std::fs::create_dir_all(&downloads).map_err(IngestError::warehouse(&downloads))?;
    }
    let mut writer = PartitionWriter::new(
        finding_type,
        &staging_root,
        &batch,
        options.target_file_bytes,
    );
    let mut seen = HashSet::new();
    let schema = findings_schema();
    for group in output_groups(files, options.target_file_bytes) {
        let mut batches = Vec::new();
        for file in group {
            let path = warehouse.local_copy(&file.relative, &downloads)?;
            for b in read_file(&path, finding_type)? {
                report.rows_before += b.num_rows() as u64;
                batches.push(b);
            }
            if warehouse.remote().is_some() {
                let _ = std::fs::remove_file(&path);
            }
        }
        let merged = sort_by_updated_at(&concat_batches(&schema, &batches)?)?;
        drop(batches);
        let merged = if options.dedupe {
            dedupe(&merged, &mut seen)?
        } else {
            merged
        };
        let mut offset = 0;
        while offset < merged.num_rows() {
            let length = ROW_GROUP_ROWS.min(merged.num_rows() - offset);
            writer.write(&merged.slice(offset, length))?;
            offset += length;
        }
    }
    let outputs: Vec<FileRecord> = writer
        .finish()?
        .into_iter()
        .map(|f| FileRecord {
            path: f.relative_path,
            rows: f.rows,
            bytes: f.bytes,
        })
        .collect();
    let output_paths: Vec<String> = outputs.iter().map(|f| f.path.clone()).collect();
    warehouse.upload_staged(&batch, &output_paths)?;
    let mut record = CompactionRecord {
        format: 1,
        batch: batch.clone(),
        finding_type: finding_type.to_string(),
        committed_at: String::new(),
        inputs: files.iter().map(|f| f.relative.clone()).collect(),
        rows_after: outputs.iter().map(|f| f.rows).sum(),
        outputs,
        rows_before: report.rows_before,
        dedupe: options.dedupe,
    };

    let _lock = warehouse.lock()?;
    let present: HashSet<String> = warehouse
        .data_files()?
        .into_iter()
        .map(|f| f.relative)
        .collect();
    if let Some(gone) = record.inputs.iter().find(|i| !present.contains(*i)) {
        report.skipped = Some(format!("{gone} was compacted by another run meanwhile"));
        drop(live);
        return warehouse.discard_staged(&batch);
    }
    let manifest = format!("_gdq/staging/{batch}/{MANIFEST}");
    warehouse.put_meta(&manifest, encode(&record)?)?;
    crate::fault::crash_point("compact-before-publish");
    warehouse.publish_staged(&batch, &output_paths)?;
    crate::fault::crash_point("compact-before-record");
    record.committed_at = format_rfc3339_ms(now_ms());
    if !warehouse.put_meta_new(&record_key(&batch), encode(&record)?)? {
        return Err(IngestError::Internal(format!(
            "compaction record {batch} already exists"
        )));
    }
    crate::fault::crash_point("compact-after-record");
    warehouse.delete_files(&record.inputs)?;
    drop(live);
    warehouse.discard_staged(&batch)?;
    report.files_after = record.outputs.len();
    report.rows_after = record.rows_after;
    report.bytes_after = record.outputs.iter().map(|f| f.bytes).sum();
    Ok(())
}

/// Finishes or undoes an interrupted compaction from its staged manifest (under the lock).
/// Returns whether it had committed (and was finished).
pub(crate) fn recover(
    warehouse: &Warehouse,
    batch: &str,
    manifest: &[u8],
) -> Result<bool, IngestError> {
    let manifest: CompactionRecord =
        serde_json::from_slice(manifest).map_err(|e| IngestError::Ledger {
            path: format!("_gdq/staging/{batch}/{MANIFEST}").into(),
            reason: e.to_string(),
        })?;
    if warehouse.get_meta(&record_key(batch))?.is_some() {
        warehouse.delete_files(&manifest.inputs)?;
        return Ok(true);
    }
    let outputs: Vec<String> = manifest.outputs.iter().map(|f| f.path.clone()).collect();
    warehouse.delete_files(&outputs)?;
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, size: u64) -> DataFile {
        DataFile {
            relative: format!("findings/type=T/{name}"),
            size,
        }
    }

    #[test]
    fn inputs_are_grouped_into_outputs_of_about_the_target_size() {
        let files = [file("a", 40), file("b", 40), file("c", 40), file("d", 200)];
        let groups = output_groups(&files, 100);
        let sizes: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        assert_eq!(sizes, [2, 1, 1]);
    }
}
