//! `gdq schema drift`: the JSON paths of the raw `finding` column that no typed column
//! covers, with how many findings carry each, when they were first and last seen, and an
//! example value. New GuardDuty fields show up here before anyone asks for a column.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, AsArray, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit, TimestampMillisecondType};
use datafusion::execution::context::SessionContext;
use futures::StreamExt;
use gdq_schemas::COLUMNS;
use serde_json::Value;

use crate::error::QueryError;
use crate::result::QueryResult;

/// Longest example value kept.
const EXAMPLE_CHARS: usize = 80;

#[derive(Debug, Default)]
struct Seen {
    findings: i64,
    first_ms: Option<i64>,
    last_ms: Option<i64>,
    example: String,
}

/// JSON paths the typed columns are read from (`service.count`, `resource.s3BucketDetails[].name`).
fn covered_paths() -> HashSet<&'static str> {
    COLUMNS
        .iter()
        .map(|c| c.source)
        .chain(std::iter::once(gdq_schemas::PARTITION_COLUMN))
        .filter(|s| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '[' | ']' | '_'))
        })
        .collect()
}

/// Every leaf path of a JSON value (`a.b`, `a.list[].c`), with one example value each.
fn leaves(value: &Value, path: &mut String, out: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                leaves(child, path, out);
                path.truncate(len);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let len = path.len();
            path.push_str("[]");
            for item in items {
                leaves(item, path, out);
            }
            path.truncate(len);
        }
        leaf => {
            out.entry(path.clone()).or_insert_with(|| {
                let text = leaf.to_string();
                text.chars().take(EXAMPLE_CHARS).collect()
            });
        }
    }
}

/// Scans the `finding` column and returns the uncovered paths, most common first.
pub async fn schema_drift(ctx: &SessionContext) -> Result<QueryResult, QueryError> {
    let covered = covered_paths();
    let frame = ctx
        .sql("select finding, updated_at from findings")
        .await
        .map_err(QueryError::Plan)?;
    let mut stream = frame
        .execute_stream()
        .await
        .map_err(QueryError::Execution)?;
    let mut seen: BTreeMap<String, Seen> = BTreeMap::new();
    let mut paths = BTreeMap::new();
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(QueryError::Execution)?;
        let findings = batch.column(0).as_string::<i32>();
        let updated = batch.column(1).as_primitive::<TimestampMillisecondType>();
        for row in 0..batch.num_rows() {
            let Ok(value) = serde_json::from_str::<Value>(findings.value(row)) else {
                continue;
            };
            let at = updated.is_valid(row).then(|| updated.value(row));
            paths.clear();
            leaves(&value, &mut String::new(), &mut paths);
            for (path, example) in &paths {
                if covered.contains(path.as_str()) {
                    continue;
                }
                let entry = seen.entry(path.clone()).or_default();
                entry.findings += 1;
                entry.first_ms = match (entry.first_ms, at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                entry.last_ms = entry.last_ms.max(at);
                if entry.example.is_empty() {
                    entry.example.clone_from(example);
                }
            }
        }
    }
    let mut rows: Vec<(String, Seen)> = seen.into_iter().collect();
    rows.sort_by(|a, b| b.1.findings.cmp(&a.1.findings).then(a.0.cmp(&b.0)));
    let utc = || DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    let schema = Arc::new(Schema::new(vec![
        Field::new("path", DataType::Utf8, false),
        Field::new("findings", DataType::Int64, false),
        Field::new("first_seen", utc(), true),
        Field::new("last_seen", utc(), true),
        Field::new("example", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.0))),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.1.findings),
            )),
            Arc::new(
                TimestampMillisecondArray::from(
                    rows.iter().map(|r| r.1.first_ms).collect::<Vec<_>>(),
                )
                .with_timezone("UTC"),
            ),
            Arc::new(
                TimestampMillisecondArray::from(
                    rows.iter().map(|r| r.1.last_ms).collect::<Vec<_>>(),
                )
                .with_timezone("UTC"),
            ),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| &r.1.example),
            )),
        ],
    )
    .map_err(|e| QueryError::Execution(e.into()))?;
    Ok(QueryResult {
        schema,
        batches: vec![batch],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_name_nested_and_array_paths() {
        let value: Value = serde_json::from_str(
            r#"{"a": {"b": 1, "c": []}, "l": [{"x": "y"}, {"z": null}], "e": {}}"#,
        )
        .unwrap();
        let mut out = BTreeMap::new();
        leaves(&value, &mut String::new(), &mut out);
        let paths: Vec<&str> = out.keys().map(String::as_str).collect();
        assert_eq!(paths, ["a.b", "a.c", "e", "l[].x", "l[].z"]);
        assert_eq!(out["l[].x"], "\"y\"");
    }

    #[test]
    fn typed_columns_cover_their_source_paths() {
        let covered = covered_paths();
        assert!(covered.contains("service.count"));
        assert!(covered.contains("resource.s3BucketDetails[].name"));
        assert!(!covered.contains("the whole line"));
    }
}
