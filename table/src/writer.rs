//! gdq's data files: Parquet of one type partition, built in a batch's staging folder until
//! it commits. The file format is part of the table contract, so compaction writes with the
//! same settings as the ingest.
//!
//! Rows accumulate, encoded and compressed, in the open row group until it holds
//! [`ROW_GROUP_ROWS`] rows or the batch's memory budget asks for it to be flushed
//! ([`PartitionWriter::flush_row_group`]): few, large row groups keep footers small and scans
//! fast. Files roll over at a target size so one ingest writes few, large files.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::collections::HashSet;

use arrow_array::{Array, BooleanArray, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow_ord::sort::{SortColumn, SortOptions, lexsort_to_indices};
use arrow_schema::DataType;
use arrow_select::filter::filter_record_batch;
use arrow_select::take::take_record_batch;
use gdq_schemas::{SCHEMA_VERSION, findings_schema};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::error::TableError;
use crate::layout::data_file_path;

/// A finished data file, built in a staging folder and ready to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedFile {
    /// Its path in the table once published (`type=<enc>/<attempt>-<part>.parquet`), and
    /// in the staging folder.
    pub path: String,
    pub finding_type: String,
    pub rows: u64,
    pub bytes: u64,
}

/// Rows of a full row group. Large enough that a million findings make a few hundred row
/// groups (footers stay small, scans stay sequential), small enough that a lookup reads
/// little once the bloom filter on `id` has picked its row group.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// The bloom filter on `id` is sized for this many ids at 1 % false positives: 128 KiB
/// while its row group is open (~135 are open at once), ~2 % at a full row group, so a
/// lookup over 300 row groups opens a handful it did not need. Each filter is folded down
/// to the ids it got, so small partitions carry small filters.
const ID_BLOOM_NDV: u64 = 100_000;
const ID_BLOOM_FPP: f64 = 0.01;

/// Data page size of the raw `finding` column. Every page passes through three buffers of
/// its size (values, levels + values, compressed output); at parquet's default 1 MiB each is
/// above mimalloc's largest size class (512 KiB), so each page took fresh pages from the OS,
/// zeroed by the kernel, and a realloc copying a whole megabyte.
const FINDING_PAGE_BYTES: usize = 256 * 1024;

/// Writer properties of gdq's data files. zstd only on the raw `finding` column: zstd state
/// for every column of ~135 open partitions costs ~360 MB (PROTOTYPE.md); snappy elsewhere.
pub fn writer_properties() -> WriterProperties {
    let finding = ColumnPath::from("finding");
    let id = ColumnPath::from("id");
    let zstd1 = ZstdLevel::try_new(1)
        .map(Compression::ZSTD)
        .unwrap_or(Compression::SNAPPY);
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_column_compression(finding.clone(), zstd1)
        .set_column_dictionary_enabled(finding.clone(), false)
        .set_column_statistics_enabled(finding.clone(), EnabledStatistics::None)
        .set_column_data_page_size_limit(finding, FINDING_PAGE_BYTES)
        .set_column_dictionary_enabled(id.clone(), false)
        .set_column_bloom_filter_enabled(id.clone(), true)
        .set_column_bloom_filter_fpp(id.clone(), ID_BLOOM_FPP)
        .set_column_bloom_filter_max_ndv(id, ID_BLOOM_NDV)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_key_value_metadata(Some(vec![KeyValue::new(
            "gdq.schema_version".to_string(),
            SCHEMA_VERSION.to_string(),
        )]));
    // Timestamps, counts, ports and flags gain little from a dictionary, and each dictionary
    // encoder of a fixed-width column starts with a 4096-slot hash table: ~40 KB per column
    // of each of ~135 open partitions.
    for field in findings_schema().fields() {
        if !matches!(field.data_type(), DataType::Utf8 | DataType::List(_)) {
            builder = builder
                .set_column_dictionary_enabled(ColumnPath::from(field.name().as_str()), false);
        }
    }
    builder.build()
}

/// Sorts a batch by `updated_at` (nulls first), stable, so row groups are ordered. A batch
/// already in order is returned as it is: sorting copies every column, the raw JSON too.
pub fn sort_by_updated_at(batch: &RecordBatch) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let Some(column) = batch.column_by_name("updated_at") else {
        return Ok(batch.clone());
    };
    if let Some(times) = column.as_any().downcast_ref::<TimestampMillisecondArray>() {
        let in_order = times.null_count() == 0 && times.values().windows(2).all(|w| w[0] <= w[1]);
        if in_order {
            return Ok(batch.clone());
        }
    }
    let indices = lexsort_to_indices(
        &[SortColumn {
            values: Arc::clone(column),
            options: Some(SortOptions {
                descending: false,
                nulls_first: true,
            }),
        }],
        None,
    )?;
    take_record_batch(batch, &indices)
}

/// The error of a Parquet call on `finding_type`'s files.
fn parquet_err(finding_type: &str) -> impl FnOnce(parquet::errors::ParquetError) -> TableError {
    TableError::parquet(format!("file of type {finding_type:?}"))
}

/// The open and finished files of one type within one batch.
pub struct PartitionWriter {
    finding_type: String,
    staging_root: PathBuf,
    file_prefix: String,
    target_file_bytes: u64,
    next_part: u32,
    current: Option<(ArrowWriter<BufWriter<File>>, String, u64)>,
    finished: Vec<StagedFile>,
}

impl PartitionWriter {
    /// Files go to `<staging_root>/type=<enc>/<file_prefix>-<part>.parquet`.
    pub fn new(
        finding_type: &str,
        staging_root: &Path,
        file_prefix: &str,
        target_file_bytes: u64,
    ) -> Self {
        PartitionWriter {
            finding_type: finding_type.to_string(),
            staging_root: staging_root.to_path_buf(),
            file_prefix: file_prefix.to_string(),
            target_file_bytes,
            next_part: 0,
            current: None,
            finished: Vec::new(),
        }
    }

    /// Appends rows to the open row group, which closes by itself at [`ROW_GROUP_ROWS`].
    /// Rows keep the order they are given in: an ingest hands them over in export-day
    /// order, so row groups cover narrow time ranges without a sort that would copy every
    /// column; compaction hands them over sorted.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), TableError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.current.is_none() {
            self.open_next()?;
        }
        let Some((writer, _, rows)) = self.current.as_mut() else {
            return Ok(());
        };
        writer
            .write(batch)
            .map_err(parquet_err(&self.finding_type))?;
        *rows += batch.num_rows() as u64;
        self.roll_over_if_full()
    }

    /// Closes the open row group early: the batch's memory budget wants its memory back.
    pub fn flush_row_group(&mut self) -> Result<(), TableError> {
        if let Some((writer, _, _)) = self.current.as_mut() {
            writer.flush().map_err(parquet_err(&self.finding_type))?;
        }
        self.roll_over_if_full()
    }

    /// Memory held by the open row group (encoded pages, encoders, bloom filter).
    pub fn memory_size(&self) -> usize {
        self.current
            .as_ref()
            .map_or(0, |(writer, _, _)| writer.memory_size())
    }

    fn roll_over_if_full(&mut self) -> Result<(), TableError> {
        let full = self
            .current
            .as_ref()
            .is_some_and(|(writer, _, _)| writer.bytes_written() as u64 >= self.target_file_bytes);
        if full {
            self.close_current()?;
        }
        Ok(())
    }

    fn open_next(&mut self) -> Result<(), TableError> {
        let relative = data_file_path(&self.finding_type, &self.file_prefix, self.next_part);
        self.next_part += 1;
        let path = self.staging_root.join(&relative);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(TableError::io(dir))?;
        }
        let file = File::create(&path).map_err(TableError::io(&path))?;
        let writer = ArrowWriter::try_new(
            BufWriter::with_capacity(64 << 10, file),
            findings_schema(),
            Some(writer_properties()),
        )
        .map_err(parquet_err(&self.finding_type))?;
        self.current = Some((writer, relative, 0));
        Ok(())
    }

    fn close_current(&mut self) -> Result<(), TableError> {
        let Some((writer, path, rows)) = self.current.take() else {
            return Ok(());
        };
        let buffered = writer
            .into_inner()
            .map_err(parquet_err(&self.finding_type))?;
        let local = self.staging_root.join(&path);
        // Not synced here: a local commit syncs the file system once for all its files
        // (`Store::sync`), and files bound for S3 need no local durability.
        let file = buffered
            .into_inner()
            .map_err(|e| TableError::io(&local)(e.into_error()))?;
        let bytes = file.metadata().map_err(TableError::io(&local))?.len();
        self.finished.push(StagedFile {
            path,
            finding_type: self.finding_type.clone(),
            rows,
            bytes,
        });
        Ok(())
    }

    /// Closes the open file (writing its footer) and returns every file of this partition.
    pub fn finish(mut self) -> Result<Vec<StagedFile>, TableError> {
        self.close_current()?;
        Ok(self.finished)
    }
}

/// Writes a copy of the staged file `from` without the rows of the given sources (by
/// `source` URI) to `to`: the rare path where another writer committed the same object
/// first, or an object failed part way. Returns the remaining rows and bytes, or `None`
/// when no row remains (nothing is written then). `from` is left as it is: it may be named
/// by a commit that is still in flight.
pub fn drop_sources(
    from: &Path,
    to: &Path,
    uris: &HashSet<String>,
) -> Result<Option<(u64, u64)>, TableError> {
    let err = || TableError::parquet(from.display().to_string());
    let file = File::open(from).map_err(TableError::io(from))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(err())?
        .build()
        .map_err(err())?;
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).map_err(TableError::io(dir))?;
    }
    let tmp = to.with_extension("rewrite");
    let out = File::create(&tmp).map_err(TableError::io(&tmp))?;
    let mut writer = ArrowWriter::try_new(
        BufWriter::new(out),
        findings_schema(),
        Some(writer_properties()),
    )
    .map_err(err())?;
    let mut rows = 0u64;
    for batch in reader {
        let batch = batch?;
        let Some(sources) = batch
            .column_by_name("source")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        else {
            return Err(TableError::Internal(format!(
                "{} has no source column",
                from.display()
            )));
        };
        let keep: BooleanArray = sources
            .iter()
            .map(|s| Some(!s.is_some_and(|s| uris.contains(s))))
            .collect();
        let kept = filter_record_batch(&batch, &keep)?;
        if kept.num_rows() > 0 {
            rows += kept.num_rows() as u64;
            writer.write(&kept).map_err(err())?;
            writer.flush().map_err(err())?;
        }
    }
    let out = writer.into_inner().map_err(err())?;
    let file = out
        .into_inner()
        .map_err(|e| TableError::io(&tmp)(e.into_error()))?;
    if rows == 0 {
        std::fs::remove_file(&tmp).map_err(TableError::io(&tmp))?;
        return Ok(None);
    }
    let bytes = file.metadata().map_err(TableError::io(&tmp))?.len();
    std::fs::rename(&tmp, to).map_err(TableError::io(to))?;
    Ok(Some((rows, bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gdq_schemas::{FindingRows, parse_finding};

    fn batch(times: &[Option<&str>]) -> RecordBatch {
        let mut rows = FindingRows::new(0);
        for (i, t) in times.iter().enumerate() {
            let json = match t {
                Some(t) => format!(r#"{{"id":"{i}","type":"T","updatedAt":"{t}"}}"#),
                None => format!(r#"{{"id":"{i}","type":"T"}}"#),
            };
            rows.append(&parse_finding(&json).unwrap(), "s");
        }
        rows.finish().unwrap()
    }

    fn ids(batch: &RecordBatch) -> Vec<String> {
        let ids = batch
            .column_by_name("id")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow_array::StringArray>()
            .unwrap();
        ids.iter().map(|v| v.unwrap().to_string()).collect()
    }

    #[test]
    fn sorts_by_updated_at_with_nulls_first_and_keeps_ties_in_order() {
        let b = batch(&[
            Some("2024-01-03T00:00:00Z"),
            None,
            Some("2024-01-01T00:00:00Z"),
            Some("2024-01-03T00:00:00Z"),
        ]);
        assert_eq!(ids(&sort_by_updated_at(&b).unwrap()), ["1", "2", "0", "3"]);
    }

    #[test]
    fn an_ordered_batch_is_left_as_it_is() {
        let b = batch(&[Some("2024-01-01T00:00:00Z"), Some("2024-01-02T00:00:00Z")]);
        assert_eq!(ids(&sort_by_updated_at(&b).unwrap()), ["0", "1"]);
    }
}
