//! Parquet files of one type partition, staged inside a batch until it commits.
//!
//! Each batch of rows handed to [`PartitionWriter::write`] is sorted by `updated_at` and
//! becomes one row group, so row-group statistics prune time ranges while memory stays
//! bounded; files roll over at a target size so one ingest writes few, large files.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::collections::HashSet;

use arrow_array::{Array, BooleanArray, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow_ord::sort::{SortColumn, SortOptions, lexsort_to_indices};
use arrow_select::filter::filter_record_batch;
use arrow_select::take::take_record_batch;
use gdq_schemas::{SCHEMA_VERSION, findings_schema, partition_dir_name};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::error::IngestError;

/// Where the table's data files live, relative to the warehouse root.
pub const FINDINGS_DIR: &str = "findings";

/// A finished data file, staged and ready to publish.
#[derive(Debug, Clone)]
pub struct StagedFile {
    /// Path relative to the warehouse root once published (`findings/type=…/….parquet`).
    pub relative_path: String,
    pub rows: u64,
    pub bytes: u64,
}

/// Writer properties of gdq's data files. zstd only on the raw `finding` column: zstd state
/// for every column of ~135 open partitions costs ~360 MB (PROTOTYPE.md); snappy elsewhere.
pub fn writer_properties() -> WriterProperties {
    let finding = ColumnPath::from("finding");
    let zstd1 = ZstdLevel::try_new(1)
        .map(Compression::ZSTD)
        .unwrap_or(Compression::SNAPPY);
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_column_compression(finding.clone(), zstd1)
        .set_column_dictionary_enabled(finding.clone(), false)
        .set_column_statistics_enabled(finding, EnabledStatistics::None)
        .set_max_row_group_row_count(Some(1 << 20))
        .set_key_value_metadata(Some(vec![KeyValue::new(
            "gdq.schema_version".to_string(),
            SCHEMA_VERSION.to_string(),
        )]))
        .build()
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
    /// Files go to `<staging_root>/findings/type=<enc>/<file_prefix>-<part>.parquet`.
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

    fn parquet_err(&self) -> impl FnOnce(parquet::errors::ParquetError) -> IngestError + '_ {
        |source| IngestError::Parquet {
            finding_type: self.finding_type.clone(),
            source,
        }
    }

    /// Writes one batch as one row group, sorted by `updated_at`.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), IngestError> {
        self.append_sorted(&sort_by_updated_at(batch)?, 1)
    }

    /// Appends an already sorted batch to the open row group, which is closed once it holds
    /// `row_group_rows` rows: for rewriting sorted data (compaction) into large row groups.
    pub fn append_sorted(
        &mut self,
        batch: &RecordBatch,
        row_group_rows: usize,
    ) -> Result<(), IngestError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.current.is_none() {
            self.open_next()?;
        }
        let finding_type = self.finding_type.clone();
        let err = |source| IngestError::Parquet {
            finding_type: finding_type.clone(),
            source,
        };
        let Some((writer, _, rows)) = self.current.as_mut() else {
            return Ok(());
        };
        writer.write(batch).map_err(err)?;
        *rows += batch.num_rows() as u64;
        if writer.in_progress_rows() >= row_group_rows {
            writer.flush().map_err(err)?;
            if writer.bytes_written() as u64 >= self.target_file_bytes {
                self.close_current()?;
            }
        }
        Ok(())
    }

    fn open_next(&mut self) -> Result<(), IngestError> {
        let relative_dir = format!("{FINDINGS_DIR}/{}", partition_dir_name(&self.finding_type));
        let dir = self.staging_root.join(&relative_dir);
        std::fs::create_dir_all(&dir).map_err(IngestError::warehouse(&dir))?;
        let name = format!("{}-{:05}.parquet", self.file_prefix, self.next_part);
        self.next_part += 1;
        let path = dir.join(&name);
        let file = File::create(&path).map_err(IngestError::warehouse(&path))?;
        let writer = ArrowWriter::try_new(
            BufWriter::with_capacity(1 << 20, file),
            findings_schema(),
            Some(writer_properties()),
        )
        .map_err(self.parquet_err())?;
        self.current = Some((writer, format!("{relative_dir}/{name}"), 0));
        Ok(())
    }

    fn close_current(&mut self) -> Result<(), IngestError> {
        let Some((writer, relative_path, rows)) = self.current.take() else {
            return Ok(());
        };
        let finding_type = self.finding_type.clone();
        let buffered = writer.into_inner().map_err(|source| IngestError::Parquet {
            finding_type,
            source,
        })?;
        let path = self.staging_root.join(&relative_path);
        let file = buffered.into_inner().map_err(|e| IngestError::Warehouse {
            path: path.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(IngestError::warehouse(&path))?;
        let bytes = file
            .metadata()
            .map_err(IngestError::warehouse(&path))?
            .len();
        self.finished.push(StagedFile {
            relative_path,
            rows,
            bytes,
        });
        Ok(())
    }

    /// Closes the open file (writing its footer) and returns every file of this partition.
    pub fn finish(mut self) -> Result<Vec<StagedFile>, IngestError> {
        self.close_current()?;
        Ok(self.finished)
    }
}

/// Rewrites a staged file without the rows of the given sources (by `source` URI): the rare
/// path where another writer committed the same object first. Returns the remaining rows and
/// bytes, or `None` when no row remains (the file is then removed).
pub fn drop_sources(
    path: &Path,
    uris: &HashSet<String>,
) -> Result<Option<(u64, u64)>, IngestError> {
    let err = |source| IngestError::Parquet {
        finding_type: path.display().to_string(),
        source,
    };
    let file = File::open(path).map_err(IngestError::warehouse(path))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(err)?
        .build()
        .map_err(err)?;
    let tmp = path.with_extension("rewrite");
    let out = File::create(&tmp).map_err(IngestError::warehouse(&tmp))?;
    let mut writer = ArrowWriter::try_new(
        BufWriter::new(out),
        findings_schema(),
        Some(writer_properties()),
    )
    .map_err(err)?;
    let mut rows = 0u64;
    for batch in reader {
        let batch = batch?;
        let Some(sources) = batch
            .column_by_name("source")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        else {
            return Err(IngestError::Internal(format!(
                "{} has no source column",
                path.display()
            )));
        };
        let keep: BooleanArray = sources
            .iter()
            .map(|s| Some(!s.is_some_and(|s| uris.contains(s))))
            .collect();
        let kept = filter_record_batch(&batch, &keep)?;
        if kept.num_rows() > 0 {
            rows += kept.num_rows() as u64;
            writer.write(&kept).map_err(err)?;
            writer.flush().map_err(err)?;
        }
    }
    let out = writer.into_inner().map_err(err)?;
    let file = out
        .into_inner()
        .map_err(|e| IngestError::warehouse(&tmp)(e.into_error()))?;
    file.sync_all().map_err(IngestError::warehouse(&tmp))?;
    if rows == 0 {
        std::fs::remove_file(&tmp).map_err(IngestError::warehouse(&tmp))?;
        std::fs::remove_file(path).map_err(IngestError::warehouse(path))?;
        return Ok(None);
    }
    let bytes = file.metadata().map_err(IngestError::warehouse(&tmp))?.len();
    std::fs::rename(&tmp, path).map_err(IngestError::warehouse(path))?;
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
