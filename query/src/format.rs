//! Output formats of query results, as in datafusion-cli.

use std::io::Write;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use datafusion::arrow::csv::WriterBuilder;
use datafusion::arrow::json::{ArrayWriter, LineDelimitedWriter};
use datafusion::arrow::util::pretty::pretty_format_batches_with_schema;

use crate::error::QueryError;
use crate::session::QueryResult;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// A boxed table for people.
    #[default]
    Table,
    /// CSV with a header row.
    Csv,
    /// Tab-separated with a header row.
    Tsv,
    /// One JSON array of row objects.
    Json,
    /// One JSON object per line.
    Ndjson,
}

impl std::str::FromStr for OutputFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "table" => Ok(OutputFormat::Table),
            "csv" => Ok(OutputFormat::Csv),
            "tsv" => Ok(OutputFormat::Tsv),
            "json" => Ok(OutputFormat::Json),
            "ndjson" | "jsonl" => Ok(OutputFormat::Ndjson),
            other => Err(format!(
                "unknown format {other:?} (table, csv, tsv, json, ndjson)"
            )),
        }
    }
}

/// CSV cannot hold nested values: lists and structs are written as their display text.
fn flatten_nested(batch: &RecordBatch) -> Result<RecordBatch, QueryError> {
    if !batch
        .schema()
        .fields()
        .iter()
        .any(|f| f.data_type().is_nested())
    {
        return Ok(batch.clone());
    }
    let options = FormatOptions::default();
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if field.data_type().is_nested() {
            let formatter =
                ArrayFormatter::try_new(column.as_ref(), &options).map_err(output_err)?;
            let text: StringArray = (0..column.len())
                .map(|i| column.is_valid(i).then(|| formatter.value(i).to_string()))
                .collect();
            fields.push(Field::new(field.name(), DataType::Utf8, true));
            columns.push(Arc::new(text));
        } else {
            fields.push(field.as_ref().clone());
            columns.push(Arc::clone(column));
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(output_err)
}

fn output_err(e: impl std::fmt::Display) -> QueryError {
    QueryError::Output(e.to_string())
}

/// Writes one statement's results to `out`.
pub fn write_result(
    out: &mut dyn Write,
    result: &QueryResult,
    format: OutputFormat,
) -> Result<(), QueryError> {
    let batches = &result.batches;
    match format {
        OutputFormat::Table => {
            let table = pretty_format_batches_with_schema(result.schema.clone(), batches)
                .map_err(output_err)?;
            writeln!(out, "{table}").map_err(output_err)?;
        }
        OutputFormat::Csv | OutputFormat::Tsv => {
            let delimiter = if format == OutputFormat::Csv {
                b','
            } else {
                b'\t'
            };
            let mut writer = WriterBuilder::new()
                .with_header(true)
                .with_delimiter(delimiter)
                .build(&mut *out);
            if batches.is_empty() {
                let empty = RecordBatch::new_empty(result.schema.clone());
                writer.write(&flatten_nested(&empty)?).map_err(output_err)?;
            }
            for batch in batches {
                writer.write(&flatten_nested(batch)?).map_err(output_err)?;
            }
        }
        OutputFormat::Json => {
            let mut writer = ArrayWriter::new(&mut *out);
            for batch in batches {
                writer.write(batch).map_err(output_err)?;
            }
            writer.finish().map_err(output_err)?;
            if batches.iter().all(|b| b.num_rows() == 0) {
                write!(out, "[]").map_err(output_err)?;
            }
            writeln!(out).map_err(output_err)?;
        }
        OutputFormat::Ndjson => {
            let mut writer = LineDelimitedWriter::new(&mut *out);
            for batch in batches {
                writer.write(batch).map_err(output_err)?;
            }
            writer.finish().map_err(output_err)?;
        }
    }
    Ok(())
}
