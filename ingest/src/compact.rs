//! `gdq compact`: merges the small files of each type partition into large ones sorted by
//! `updated_at`, without a row lost or doubled for gdq readers, and safe against crashes.
//!
//! Protocol, per partition (a compaction is a batch like any other, id prefixed `c`):
//! 1. read the partition's files as listed now, merge, sort, optionally dedupe, and stage the
//!    outputs (`_gdq/staging/c…/findings/type=…/c…-00000.parquet`, uploaded for S3) and
//!    their id index (`_gdq/staging/c…/_gdq/index/c….ids`);
//! 2. under the commit lock, check every input still exists (another compaction may have
//!    taken them), then write the manifest `_gdq/staging/c…/compaction.json`;
//! 3. move the outputs into `findings/` and the index into `_gdq/index/` — gdq readers
//!    ignore files of compactions without a record, so they see either the inputs or the
//!    outputs, never both;
//! 4. write the record `_gdq/compactions/c….json` (the commit point): from now on gdq
//!    readers ignore the inputs;
//! 5. delete the inputs, the id indexes of commits with no file left, then the staging.
//!
//! Recovery (any writer, under the lock) finds the manifest of an interrupted compaction:
//! with a record it finishes step 5, without one it deletes the outputs. The ledger is not
//! touched: it names source objects, which compaction keeps, so a late redelivery of a
//! compacted object still adds nothing.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashSet};
use std::fs::File;

use arrow_array::{Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow_select::concat::concat_batches;
use gdq_schemas::{
    COMPACTIONS_DONE_DIR, PARTITION_COLUMN, decode_partition_value, findings_schema,
    format_rfc3339_ms, id_index_key,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use crate::batch::{new_batch_id, now_ms};
use crate::error::IngestError;
use crate::id_index::{retire_id_indexes, stage_id_index};
use crate::ledger::FileRecord;
use crate::warehouse::{DataFile, Recovery, Warehouse};
use crate::writer::{PartitionWriter, ROW_GROUP_ROWS, sort_by_updated_at};

/// Where compaction records go, relative to the warehouse root.
pub const COMPACTIONS: &str = gdq_schemas::COMPACTIONS_DIR;
/// The manifest in a compaction's staging folder.
pub const MANIFEST: &str = "compaction.json";
/// Decoded bytes of rows sorted in memory at once (one sorted run on local disk).
const RUN_BYTES: usize = 96 << 20;
/// Rows read at a time from each run while merging, and rows merged per output slice.
const MERGE_BATCH_ROWS: usize = 2048;
const MERGE_ROWS: usize = 16 * 1024;

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

/// One sorted run on local disk, read back a batch at a time during the merge.
struct Run {
    reader: parquet::arrow::arrow_reader::ParquetRecordBatchReader,
    batch: Option<RecordBatch>,
    row: usize,
}

impl Run {
    /// The `updated_at` of the current row; nulls first, as the writer sorts them.
    fn key(&self) -> Option<i64> {
        let batch = self.batch.as_ref()?;
        let times = batch
            .column_by_name("updated_at")?
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()?;
        Some(if times.is_valid(self.row) {
            times.value(self.row)
        } else {
            i64::MIN
        })
    }

    fn advance(&mut self) -> Result<(), IngestError> {
        self.row += 1;
        if self
            .batch
            .as_ref()
            .is_some_and(|b| self.row >= b.num_rows())
        {
            self.batch = self.reader.next().transpose()?;
            self.row = 0;
        }
        Ok(())
    }
}

/// Sorts `pending` and writes it as one run file.
fn write_run(
    pending: &mut Vec<RecordBatch>,
    path: &std::path::Path,
    finding_type: &str,
) -> Result<(), IngestError> {
    let schema = findings_schema();
    let sorted = sort_by_updated_at(&concat_batches(&schema, pending.iter())?)?;
    pending.clear();
    let parquet_err = |source| IngestError::Parquet {
        finding_type: finding_type.to_string(),
        source,
    };
    let file = File::create(path).map_err(IngestError::warehouse(path))?;
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .set_dictionary_enabled(false)
        .build();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(file, schema, Some(props)).map_err(parquet_err)?;
    writer.write(&sorted).map_err(parquet_err)?;
    writer.close().map_err(parquet_err)?;
    Ok(())
}

/// Reads the partition's files into sorted runs of at most `RUN_BYTES` of decoded rows on
/// local disk, so memory stays bounded whatever the partition's size.
fn write_runs(
    warehouse: &Warehouse,
    finding_type: &str,
    files: &[DataFile],
    scratch: &std::path::Path,
    rows_before: &mut u64,
) -> Result<Vec<std::path::PathBuf>, IngestError> {
    let mut runs = Vec::new();
    let mut pending: Vec<RecordBatch> = Vec::new();
    let mut pending_bytes = 0usize;
    for file in files {
        let path = warehouse.local_copy(&file.relative, scratch)?;
        for batch in read_file(&path, finding_type)? {
            *rows_before += batch.num_rows() as u64;
            pending_bytes += batch.get_array_memory_size();
            pending.push(batch);
            if pending_bytes >= RUN_BYTES {
                let run = scratch.join(format!("run-{:05}.parquet", runs.len()));
                write_run(&mut pending, &run, finding_type)?;
                runs.push(run);
                pending_bytes = 0;
            }
        }
        if warehouse.remote().is_some() {
            let _ = std::fs::remove_file(&path);
        }
    }
    if !pending.is_empty() {
        let run = scratch.join(format!("run-{:05}.parquet", runs.len()));
        write_run(&mut pending, &run, finding_type)?;
        runs.push(run);
    }
    Ok(runs)
}

/// Merges sorted runs into one sorted stream, handed to `emit` `MERGE_ROWS` rows at a time.
fn merge_runs(
    runs: &[std::path::PathBuf],
    finding_type: &str,
    mut emit: impl FnMut(RecordBatch) -> Result<(), IngestError>,
) -> Result<(), IngestError> {
    let parquet_err = |source| IngestError::Parquet {
        finding_type: finding_type.to_string(),
        source,
    };
    let mut open = Vec::with_capacity(runs.len());
    for path in runs {
        let file = File::open(path).map_err(IngestError::warehouse(path))?;
        let mut reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(parquet_err)?
            .with_batch_size(MERGE_BATCH_ROWS)
            .build()
            .map_err(parquet_err)?;
        let batch = reader.next().transpose()?;
        open.push(Run {
            reader,
            batch,
            row: 0,
        });
    }
    let mut heap: BinaryHeap<Reverse<(i64, usize)>> = open
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.key().map(|k| Reverse((k, i))))
        .collect();
    // The batches the pending output rows point into, and (batch, row) of each of them.
    let mut held: Vec<RecordBatch> = Vec::new();
    let mut held_of_run: Vec<Option<usize>> = vec![None; open.len()];
    let mut picks: Vec<(usize, usize)> = Vec::with_capacity(MERGE_ROWS);
    while let Some(Reverse((_, i))) = heap.pop() {
        let run = &mut open[i];
        let Some(batch) = run.batch.as_ref() else {
            continue;
        };
        let slot = match held_of_run[i] {
            Some(slot) => slot,
            None => {
                held.push(batch.clone());
                held_of_run[i] = Some(held.len() - 1);
                held.len() - 1
            }
        };
        picks.push((slot, run.row));
        if run.row + 1 >= batch.num_rows() {
            // The run moves on to its next batch, which gets a slot of its own.
            held_of_run[i] = None;
        }
        run.advance()?;
        if let Some(key) = run.key() {
            heap.push(Reverse((key, i)));
        }
        if picks.len() >= MERGE_ROWS || heap.is_empty() {
            let refs: Vec<&RecordBatch> = held.iter().collect();
            emit(arrow_select::interleave::interleave_record_batch(
                &refs, &picks,
            )?)?;
            picks.clear();
            held.clear();
            held_of_run.iter_mut().for_each(|h| *h = None);
        }
    }
    Ok(())
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
    std::fs::create_dir_all(&downloads).map_err(IngestError::warehouse(&downloads))?;
    let mut writer = PartitionWriter::new(
        finding_type,
        &staging_root,
        &batch,
        options.target_file_bytes,
    );
    let mut seen = HashSet::new();
    let runs = write_runs(
        warehouse,
        finding_type,
        files,
        &downloads,
        &mut report.rows_before,
    )?;
    merge_runs(&runs, finding_type, |merged| {
        let merged = if options.dedupe {
            dedupe(&merged, &mut seen)?
        } else {
            merged
        };
        writer.write(&merged)
    })?;
    for run in &runs {
        let _ = std::fs::remove_file(run);
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
    let mut output_paths: Vec<String> = outputs.iter().map(|f| f.path.clone()).collect();
    output_paths.extend(stage_id_index(&staging_root, &batch, &outputs)?);
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
    let inputs: HashSet<&String> = record.inputs.iter().collect();
    let remaining: Vec<String> = present
        .iter()
        .filter(|f| !inputs.contains(f))
        .cloned()
        .chain(record.outputs.iter().map(|f| f.path.clone()))
        .collect();
    retire_id_indexes(warehouse, &record.inputs, &remaining)?;
    retire_record(warehouse, &batch)?;
    drop(live);
    warehouse.discard_staged(&batch)?;
    report.files_after = record.outputs.len();
    report.rows_after = record.rows_after;
    report.bytes_after = record.outputs.iter().map(|f| f.bytes).sum();
    Ok(())
}

/// Moves a record whose inputs are all deleted to the finished folder (a copy, then the
/// delete: a reader in between sees the batch committed either way).
fn retire_record(warehouse: &Warehouse, batch: &str) -> Result<(), IngestError> {
    let key = record_key(batch);
    if let Some(bytes) = warehouse.get_meta(&key)? {
        warehouse.put_meta(&format!("{COMPACTIONS_DONE_DIR}/{batch}.json"), bytes)?;
        warehouse.delete_files(&[key])?;
    }
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
        let remaining: Vec<String> = warehouse
            .data_files()?
            .into_iter()
            .map(|f| f.relative)
            .collect();
        retire_id_indexes(warehouse, &manifest.inputs, &remaining)?;
        retire_record(warehouse, batch)?;
        return Ok(true);
    }
    if warehouse
        .get_meta(&format!("{COMPACTIONS_DONE_DIR}/{batch}.json"))?
        .is_some()
    {
        return Ok(true);
    }
    let outputs: Vec<String> = manifest
        .outputs
        .iter()
        .map(|f| f.path.clone())
        .chain([id_index_key(batch)])
        .collect();
    warehouse.delete_files(&outputs)?;
    Ok(false)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn sorted_batch(times: &[Option<i64>], tag: &str) -> RecordBatch {
        let schema = findings_schema();
        let columns = schema
            .fields()
            .iter()
            .map(|f| match f.name().as_str() {
                "updated_at" => {
                    Arc::new(TimestampMillisecondArray::from(times.to_vec()).with_timezone("UTC"))
                        as Arc<dyn Array>
                }
                "id" => Arc::new(StringArray::from_iter_values(
                    (0..times.len()).map(|i| format!("{tag}{i}")),
                )),
                _ if !f.is_nullable() => {
                    Arc::new(StringArray::from_iter_values((0..times.len()).map(|_| "x")))
                }
                _ => arrow_array::new_null_array(f.data_type(), times.len()),
            })
            .collect();
        RecordBatch::try_new(schema, columns).unwrap()
    }

    #[test]
    fn runs_merge_into_one_sorted_stream_with_nulls_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = Vec::new();
        let runs = [
            vec![Some(1), Some(5), Some(9)],
            vec![None, Some(2), Some(5), Some(7)],
            vec![Some(3)],
        ];
        for (i, times) in runs.iter().enumerate() {
            let path = dir.path().join(format!("r{i}.parquet"));
            let mut pending = vec![sorted_batch(times, &format!("r{i}-"))];
            write_run(&mut pending, &path, "T").unwrap();
            paths.push(path);
        }
        let mut merged = Vec::new();
        merge_runs(&paths, "T", |b| {
            let times = b
                .column_by_name("updated_at")
                .unwrap()
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
                .unwrap()
                .clone();
            merged.extend(times.iter());
            Ok(())
        })
        .unwrap();
        assert_eq!(
            merged,
            [
                None,
                Some(1),
                Some(2),
                Some(3),
                Some(5),
                Some(5),
                Some(7),
                Some(9)
            ]
        );
    }
}
