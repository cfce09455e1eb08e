//! What a commit says about each file it adds, read once from the file's footer: the Delta
//! per-file statistics (so every engine skips files by time, account or severity without
//! opening them) and the `id` bloom filters for gdq's id index.

use std::fs::File;
use std::path::Path;

use gdq_schemas::{IdIndexEntry, format_rfc3339_ms};
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::reader::ChunkReader;
use parquet::file::statistics::Statistics;
use serde_json::{Map, Value, json};

use crate::error::{Result, TableError};

/// Columns that carry Delta statistics: the ones analysts filter on and whose values are
/// short. The table's `delta.dataSkippingStatsColumns` names the same list, so readers know
/// the other columns have none on purpose (the raw `finding` text would only bloat the log).
pub const STATS_COLUMNS: &[&str] = &[
    "account_id",
    "region",
    "severity",
    "severity_label",
    "created_at",
    "updated_at",
    "event_first_seen",
    "event_last_seen",
    "count",
    "archived",
    "sample",
    "ingested_at",
];

/// A min or max string longer than this is left out of the statistics: a truncated maximum
/// would claim less than the file holds.
const MAX_STATS_STRING: usize = 64;

/// Timestamp columns: stored as epoch milliseconds, written to the log as ISO-8601.
fn is_timestamp(column: &str) -> bool {
    matches!(
        column,
        "created_at" | "updated_at" | "event_first_seen" | "event_last_seen" | "ingested_at"
    )
}

/// A staged data file's footer.
pub struct Footer {
    pub metadata: ParquetMetaData,
    file: File,
}

impl Footer {
    pub fn read(path: &Path) -> Result<Footer> {
        let file = File::open(path).map_err(TableError::io(path))?;
        let metadata = ParquetMetaDataReader::new()
            .parse_and_finish(&file)
            .map_err(TableError::parquet(format!("footer of {}", path.display())))?;
        Ok(Footer { metadata, file })
    }

    pub fn rows(&self) -> u64 {
        u64::try_from(self.metadata.file_metadata().num_rows()).unwrap_or(0)
    }

    /// The Delta statistics JSON of the file.
    pub fn delta_stats(&self) -> String {
        delta_stats(&self.metadata)
    }

    /// The file's entry in its commit's id index: each row group's `id` bloom filter as
    /// stored in the file. `key` is the file's path relative to the warehouse root.
    pub fn id_index_entry(&self, key: &str) -> Result<IdIndexEntry> {
        let id_column = self
            .metadata
            .file_metadata()
            .schema_descr()
            .columns()
            .iter()
            .position(|c| c.path().string() == "id");
        let mut row_groups = Vec::with_capacity(self.metadata.num_row_groups());
        for row_group in self.metadata.row_groups() {
            // Without a length the filter's extent is unknown: the row group then has no
            // entry and stays in every lookup rather than the index guessing.
            let extent = id_column.map(|i| row_group.column(i)).and_then(|c| {
                let offset = u64::try_from(c.bloom_filter_offset()?).ok()?;
                let length = usize::try_from(c.bloom_filter_length()?).ok()?;
                Some((offset, length))
            });
            let filter = extent
                .map(|(offset, length)| self.file.get_bytes(offset, length).map(|b| b.to_vec()))
                .transpose()
                .map_err(TableError::parquet(format!("bloom filter of {key}")))?;
            row_groups.push(filter);
        }
        Ok(IdIndexEntry {
            path: key.to_string(),
            row_groups,
        })
    }
}

/// The Delta statistics JSON of a data file (`numRecords`, `minValues`, `maxValues`,
/// `nullCount` of [`STATS_COLUMNS`]) from its footer.
pub fn delta_stats(metadata: &ParquetMetaData) -> String {
    let schema = metadata.file_metadata().schema_descr();
    let (mut mins, mut maxes, mut nulls) = (Map::new(), Map::new(), Map::new());
    for &name in STATS_COLUMNS {
        let Some(index) = schema
            .columns()
            .iter()
            .position(|c| c.path().string() == name)
        else {
            continue;
        };
        let stats: Option<Vec<&Statistics>> = metadata
            .row_groups()
            .iter()
            .map(|rg| rg.column(index).statistics())
            .collect();
        let Some(stats) = stats else {
            continue;
        };
        let null_count: Option<u64> = stats.iter().map(|s| s.null_count_opt()).sum();
        if let Some(n) = null_count {
            nulls.insert(name.to_string(), json!(n));
        }
        if let Some((min, max)) = bounds(name, &stats) {
            mins.insert(name.to_string(), min);
            maxes.insert(name.to_string(), max);
        }
    }
    json!({
        "numRecords": u64::try_from(metadata.file_metadata().num_rows()).unwrap_or(0),
        "minValues": mins,
        "maxValues": maxes,
        "nullCount": nulls,
    })
    .to_string()
}

/// The file's min and max of one column over its row groups, as Delta writes them; `None`
/// when a row group lacks them or they are not exact.
fn bounds(column: &str, stats: &[&Statistics]) -> Option<(Value, Value)> {
    let mut min: Option<Value> = None;
    let mut max: Option<Value> = None;
    let mut keep = |lo: Value, hi: Value, less: &dyn Fn(&Value, &Value) -> bool| {
        if min.as_ref().is_none_or(|m| less(&lo, m)) {
            min = Some(lo);
        }
        if max.as_ref().is_none_or(|m| less(m, &hi)) {
            max = Some(hi);
        }
    };
    for s in stats {
        if !s.min_is_exact() || !s.max_is_exact() {
            return None;
        }
        match s {
            // All nulls: no bounds from this row group.
            _ if s.min_bytes_opt().is_none() => continue,
            Statistics::Int64(v) => keep(json!(*v.min_opt()?), json!(*v.max_opt()?), &|a, b| {
                a.as_i64() < b.as_i64()
            }),
            Statistics::Int32(v) => keep(json!(*v.min_opt()?), json!(*v.max_opt()?), &|a, b| {
                a.as_i64() < b.as_i64()
            }),
            Statistics::Double(v) => {
                let (lo, hi) = (*v.min_opt()?, *v.max_opt()?);
                if !lo.is_finite() || !hi.is_finite() {
                    return None;
                }
                keep(json!(lo), json!(hi), &|a, b| a.as_f64() < b.as_f64());
            }
            Statistics::Boolean(v) => keep(json!(*v.min_opt()?), json!(*v.max_opt()?), &|a, b| {
                a.as_bool() < b.as_bool()
            }),
            Statistics::ByteArray(v) => {
                let lo = v.min_opt()?.as_utf8().ok()?;
                let hi = v.max_opt()?.as_utf8().ok()?;
                if lo.len() > MAX_STATS_STRING || hi.len() > MAX_STATS_STRING {
                    return None;
                }
                keep(json!(lo), json!(hi), &|a, b| a.as_str() < b.as_str());
            }
            _ => return None,
        }
    }
    let (min, max) = (min?, max?);
    if is_timestamp(column) {
        let time = |v: Value| v.as_i64().map(|ms| json!(format_rfc3339_ms(ms)));
        return Some((time(min)?, time(max)?));
    }
    Some((min, max))
}

/// The newest `updated_at` a file's Delta statistics give, in epoch milliseconds.
pub fn max_updated_at(stats: &str) -> Option<i64> {
    let stats: Value = serde_json::from_str(stats).ok()?;
    gdq_schemas::parse_timestamp_ms(stats.get("maxValues")?.get("updated_at")?.as_str()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::writer::PartitionWriter;
    use gdq_schemas::{FindingRows, parse_finding};

    #[test]
    fn statistics_cover_the_file_in_deltas_format() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = PartitionWriter::new("T:X/Y", dir.path(), "b", 1 << 30);
        for (i, (updated, severity)) in [
            ("2024-01-02T00:00:00.5Z", 8.0),
            ("2024-01-01T00:00:00Z", 2.5),
        ]
        .iter()
        .enumerate()
        {
            let mut rows = FindingRows::new(0);
            let json = format!(
                r#"{{"id":"{i}","type":"T:X/Y","accountId":"11112222333{i}","updatedAt":"{updated}","severity":{severity},"title":"{}"}}"#,
                "long title ".repeat(20)
            );
            rows.append(&parse_finding(&json).unwrap(), "s3://b/k");
            writer.write(&rows.finish().unwrap()).unwrap();
            // Two row groups, so the bounds come from both.
            writer.flush_row_group().unwrap();
        }
        let files = writer.finish().unwrap();
        let footer = Footer::read(&dir.path().join(&files[0].path)).unwrap();
        let stats: Value = serde_json::from_str(&footer.delta_stats()).unwrap();
        assert_eq!(stats["numRecords"], 2);
        assert_eq!(stats["minValues"]["updated_at"], "2024-01-01T00:00:00.000Z");
        assert_eq!(stats["maxValues"]["updated_at"], "2024-01-02T00:00:00.500Z");
        assert_eq!(stats["minValues"]["severity"], 2.5);
        assert_eq!(stats["maxValues"]["account_id"], "111122223331");
        assert_eq!(stats["nullCount"]["region"], 2);
        assert!(
            stats["minValues"].get("region").is_none(),
            "all null: no bounds"
        );
        assert!(
            stats["minValues"].get("title").is_none(),
            "not a stats column"
        );
        assert_eq!(
            max_updated_at(&footer.delta_stats()),
            parse_timestamp("2024-01-02T00:00:00.5Z")
        );
    }

    fn parse_timestamp(text: &str) -> Option<i64> {
        gdq_schemas::parse_timestamp_ms(text)
    }
}
