//! Output formats of query results, as in datafusion-cli.

use std::io::Write;

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
                let empty =
                    datafusion::arrow::record_batch::RecordBatch::new_empty(result.schema.clone());
                writer.write(&empty).map_err(output_err)?;
            }
            for batch in batches {
                writer.write(batch).map_err(output_err)?;
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
