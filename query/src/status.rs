//! `gdq status` per type as a result, so every output format prints it.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringArray, TimestampMillisecondArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use gdq_table::status::WarehouseStatus;

use crate::error::QueryError;
use crate::result::QueryResult;

/// One row per finding type, most rows first: type, files, rows, bytes, newest_updated_at.
pub fn status_by_type(status: &WarehouseStatus) -> Result<QueryResult, QueryError> {
    let mut types: Vec<_> = status.types.iter().collect();
    types.sort_by(|a, b| b.1.rows.cmp(&a.1.rows).then(a.0.cmp(b.0)));
    let schema = Arc::new(Schema::new(vec![
        Field::new("type", DataType::Utf8, false),
        Field::new("files", DataType::UInt64, false),
        Field::new("rows", DataType::UInt64, false),
        Field::new("bytes", DataType::UInt64, false),
        Field::new(
            "newest_updated_at",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        ),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(types.iter().map(|(t, _)| t))),
        Arc::new(UInt64Array::from_iter_values(
            types.iter().map(|(_, p)| p.files),
        )),
        Arc::new(UInt64Array::from_iter_values(
            types.iter().map(|(_, p)| p.rows),
        )),
        Arc::new(UInt64Array::from_iter_values(
            types.iter().map(|(_, p)| p.bytes),
        )),
        Arc::new(
            TimestampMillisecondArray::from_iter(types.iter().map(|(_, p)| p.newest_updated_at_ms))
                .with_timezone("UTC"),
        ),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| QueryError::Output(e.to_string()))?;
    Ok(QueryResult {
        schema,
        batches: vec![batch],
    })
}
