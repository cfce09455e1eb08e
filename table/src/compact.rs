//! `gdq compact`: a table rewrite. Each type partition's small files are merged into large
//! ones sorted by `updated_at` and committed as one version that removes the inputs and adds
//! the outputs, both marked as no data change, so a reader sees the inputs or the outputs,
//! never both, and appends committed meanwhile are untouched.
//!
//! Per partition (a compaction is a batch like any other, named `c<batch>`):
//! 1. read the partition's files of the current snapshot, merge them through sorted runs on
//!    local disk (memory stays bounded), optionally drop repeated (`id`, `updated_at`)
//!    versions, and write the outputs and their id index;
//! 2. publish them and commit remove(inputs) + add(outputs) as the log's next version;
//! 3. if another writer took that version: an append leaves the inputs alone, so the same
//!    commit is tried again; another compaction that removed an input wins, and this one's
//!    outputs are deleted.
//!
//! The removed inputs stay for the table's retention (readers of older snapshots may still
//! read them) and are deleted by a later vacuum: every writer's opening, `gdq vacuum`, or
//! the end of this command. The ledger is not touched: it names source objects, which
//! compaction keeps, so a late redelivery of a compacted object still adds nothing.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::{Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow_select::concat::concat_batches;
use deltalake_core::kernel::{Action, Remove};
use deltalake_core::protocol::DeltaOperation;
use gdq_schemas::{PARTITION_COLUMN, findings_schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::json;
use xxhash_rust::xxh3::Xxh3;

use crate::append::{publish_files, unpublish};
use crate::error::{Result, TableError};
use crate::fault::{crash_point, pause_point};
use crate::layout::{new_batch_id, now_ms};
use crate::snapshot::DataFile;
use crate::transaction::{Outcome, Table};
use crate::vacuum::{Recovery, VacuumOptions};
use crate::writer::{PartitionWriter, ROW_GROUP_ROWS, StagedFile, sort_by_updated_at};
/// Decoded bytes of rows sorted in memory at once (one sorted run on local disk).
const RUN_BYTES: usize = 96 << 20;
/// Rows read at a time from each run while merging, and rows merged per output slice.
const MERGE_BATCH_ROWS: usize = 2048;
const MERGE_ROWS: usize = 16 * 1024;

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
    /// What opening the table removed (debris of dead writers).
    pub recovery: Recovery,
    pub partitions: Vec<PartitionReport>,
    /// What the closing vacuum removed (earlier compactions' inputs past the retention).
    pub vacuumed: Recovery,
}

/// Compacts the table's partitions.
pub async fn compact(writer: &mut Table, options: &CompactOptions) -> Result<CompactReport> {
    let recovery = writer.recovery().clone();
    writer.refresh().await?;
    let mut by_type: BTreeMap<String, Vec<DataFile>> = BTreeMap::new();
    for file in writer.snapshot()?.files {
        by_type
            .entry(file.finding_type.clone())
            .or_default()
            .push(file);
    }
    let mut report = CompactReport {
        recovery,
        partitions: Vec::new(),
        vacuumed: Recovery::default(),
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
        compact_partition(writer, &finding_type, &files, options, &mut partition).await?;
        report.partitions.push(partition);
    }
    report.vacuumed = crate::vacuum::vacuum(writer, &VacuumOptions::default()).await?;
    Ok(report)
}

/// Reads a data file whole.
fn read_file(path: &std::path::Path, finding_type: &str) -> Result<Vec<RecordBatch>> {
    let file = File::open(path).map_err(TableError::io(path))?;
    let parquet_err = || TableError::parquet(format!("file of type {finding_type:?}"));
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(parquet_err())?
        .with_batch_size(ROW_GROUP_ROWS)
        .build()
        .map_err(parquet_err())?;
    reader
        .map(|b| b.map_err(TableError::Arrow))
        .collect::<Result<Vec<_>, _>>()
}

/// Keeps the rows whose (`id`, `updated_at`) was not seen before.
fn dedupe(batch: &RecordBatch, seen: &mut HashSet<u128>) -> Result<RecordBatch> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| TableError::Internal(format!("data file without {name}")))
    };
    let ids = column("id")?
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| TableError::Internal("id is not Utf8".into()))?;
    let times = column("updated_at")?
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .ok_or_else(|| TableError::Internal("updated_at is not a timestamp".into()))?;
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

    fn advance(&mut self) -> Result<()> {
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
) -> Result<()> {
    let schema = findings_schema();
    let sorted = sort_by_updated_at(&concat_batches(&schema, pending.iter())?)?;
    pending.clear();
    let parquet_err = || TableError::parquet(format!("sorted run of type {finding_type:?}"));
    let file = File::create(path).map_err(TableError::io(path))?;
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .set_dictionary_enabled(false)
        .build();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(file, schema, Some(props)).map_err(parquet_err())?;
    writer.write(&sorted).map_err(parquet_err())?;
    writer.close().map_err(parquet_err())?;
    Ok(())
}

/// Reads the partition's files into sorted runs of at most `RUN_BYTES` of decoded rows on
/// local disk, so memory stays bounded whatever the partition's size.
/// `inputs` are local copies (`true`: downloaded, deleted once read) of the files.
fn write_runs(
    finding_type: &str,
    inputs: &[(PathBuf, bool)],
    scratch: &Path,
    rows_before: &mut u64,
) -> Result<Vec<PathBuf>> {
    let mut runs = Vec::new();
    let mut pending: Vec<RecordBatch> = Vec::new();
    let mut pending_bytes = 0usize;
    for (path, downloaded) in inputs {
        for batch in read_file(path, finding_type)? {
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
        if *downloaded {
            let _ = std::fs::remove_file(path);
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
    runs: &[PathBuf],
    finding_type: &str,
    mut emit: impl FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    let parquet_err = || TableError::parquet(format!("sorted run of type {finding_type:?}"));
    let mut open = Vec::with_capacity(runs.len());
    for path in runs {
        let file = File::open(path).map_err(TableError::io(path))?;
        let mut reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(parquet_err())?
            .with_batch_size(MERGE_BATCH_ROWS)
            .build()
            .map_err(parquet_err())?;
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

/// Reads, merges and writes one partition's outputs into `staging` (a blocking job).
fn rewrite_partition(
    finding_type: &str,
    inputs: &[(PathBuf, bool)],
    staging: &Path,
    batch: &str,
    options: &CompactOptions,
    rows_before: &mut u64,
) -> Result<Vec<StagedFile>> {
    let mut writer = PartitionWriter::new(finding_type, staging, batch, options.target_file_bytes);
    let scratch = staging.join("runs");
    std::fs::create_dir_all(&scratch).map_err(TableError::io(&scratch))?;
    let runs = write_runs(finding_type, inputs, &scratch, rows_before)?;
    let mut seen = HashSet::new();
    merge_runs(&runs, finding_type, |merged| {
        let merged = if options.dedupe {
            dedupe(&merged, &mut seen)?
        } else {
            merged
        };
        writer.write(&merged)
    })?;
    std::fs::remove_dir_all(&scratch).map_err(TableError::io(&scratch))?;
    writer.finish()
}

/// The remove action of a compaction input.
fn remove_action(file: &DataFile, now: i64) -> Action {
    Action::Remove(Remove {
        path: file.path.clone(),
        data_change: false,
        deletion_timestamp: Some(now),
        extended_file_metadata: Some(true),
        partition_values: Some(
            [(
                PARTITION_COLUMN.to_string(),
                Some(file.finding_type.clone()),
            )]
            .into(),
        ),
        size: Some(i64::try_from(file.size).unwrap_or(i64::MAX)),
        ..Remove::default()
    })
}

/// A predicate naming the partition, for the commit's operation parameters.
fn partition_predicate(finding_type: &str) -> String {
    format!(
        "{PARTITION_COLUMN} = '{}'",
        finding_type.replace('\'', "''")
    )
}

async fn compact_partition(
    writer: &mut Table,
    finding_type: &str,
    files: &[DataFile],
    options: &CompactOptions,
    report: &mut PartitionReport,
) -> Result<()> {
    let batch = format!("c{}", new_batch_id());
    let staging = writer.warehouse().stage(&batch)?;
    let mut inputs = Vec::with_capacity(files.len());
    for file in files {
        match writer.warehouse().local_path(&file.path) {
            Some(path) => inputs.push((path, false)),
            None => {
                let local = staging
                    .dir()
                    .join(format!("input-{:05}.parquet", inputs.len()));
                writer
                    .warehouse()
                    .store()
                    .download(&file.key(), &local)
                    .await?;
                inputs.push((local, true));
            }
        }
    }
    let outputs = {
        let (task_type, dir, batch, options) = (
            finding_type.to_string(),
            staging.dir().to_path_buf(),
            batch.clone(),
            options.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let mut rows_before = 0;
            rewrite_partition(
                &task_type,
                &inputs,
                &dir,
                &batch,
                &options,
                &mut rows_before,
            )
            .map(|outputs| (outputs, rows_before))
        })
        .await
        .map_err(|e| TableError::Internal(format!("compacting {finding_type:?}: {e}")))??
    };
    let (outputs, rows_before) = outputs;
    report.rows_before = rows_before;
    let mut actions = publish_files(writer, &staging, &batch, &outputs, false).await?;
    let published_at = std::time::Instant::now();
    let now = now_ms();
    actions.extend(files.iter().map(|f| remove_action(f, now)));
    let inputs: HashSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
    let rows_after: u64 = outputs.iter().map(|f| f.rows).sum();
    writer.warehouse().store().sync().await?;
    loop {
        writer.check_not_stale(published_at)?;
        crash_point("compact-before-commit");
        pause_point("compact-before-commit");
        let metadata = json!({
            "operation": "compact",
            "batch": batch,
            "type": finding_type,
            "files_before": files.len(),
            "files_after": outputs.len(),
            "rows_before": rows_before,
            "rows_after": rows_after,
            "dedupe": options.dedupe,
        });
        let operation = DeltaOperation::Optimize {
            predicate: Some(partition_predicate(finding_type)),
            target_size: i64::try_from(options.target_file_bytes).unwrap_or(i64::MAX),
        };
        match writer
            .try_commit(&batch, actions.clone(), operation, metadata, Vec::new())
            .await?
        {
            Outcome::Committed(_) => break,
            Outcome::Lost(entries) => {
                let taken = entries
                    .iter()
                    .flat_map(|(_, e)| &e.removed)
                    .find(|path| inputs.contains(path.as_str()));
                if let Some(taken) = taken {
                    report.skipped =
                        Some(format!("{taken} was compacted by another run meanwhile"));
                    unpublish(writer, &batch, &outputs, false).await?;
                    staging.clear()?;
                    return Ok(());
                }
            }
        }
    }
    writer.warehouse().store().sync().await?;
    crash_point("compact-after-commit");
    staging.clear()?;
    report.files_after = outputs.len();
    report.rows_after = rows_after;
    report.bytes_after = outputs.iter().map(|f| f.bytes).sum();
    Ok(())
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
