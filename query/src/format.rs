//! Output formats of query results, as in datafusion-cli.

use std::io::Write;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use datafusion::arrow::csv::WriterBuilder;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::json::{ArrayWriter, LineDelimitedWriter};

use crate::error::QueryError;
use crate::result::QueryResult;

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

/// Rows the table format reads ahead to size its columns: later rows keep those widths
/// (a longer value widens only its own line), so memory stays bounded however many rows
/// a query returns.
pub const TABLE_LOOKAHEAD_ROWS: usize = 1000;

/// Writes one statement's results to `out` batch by batch, as they arrive.
pub struct ResultWriter<'a> {
    out: &'a mut dyn Write,
    schema: SchemaRef,
    format: OutputFormat,
    state: WriterState,
    rows: u64,
}

enum WriterState {
    /// The table format, reading ahead: rows not printed yet.
    TableLookahead(Vec<RecordBatch>, usize),
    /// The table format with its columns sized.
    Table(Vec<usize>),
    /// CSV or TSV: whether the header is out.
    Csv(bool),
    Json(ArrayWriter<JsonOut>),
    Ndjson(LineDelimitedWriter<JsonOut>),
}

/// arrow's JSON writers own their sink, and `out` is borrowed: they write into a buffer
/// that is moved to `out` after every batch.
type JsonOut = Vec<u8>;

impl<'a> ResultWriter<'a> {
    pub fn new(out: &'a mut dyn Write, schema: SchemaRef, format: OutputFormat) -> Self {
        let state = match format {
            OutputFormat::Table => WriterState::TableLookahead(Vec::new(), 0),
            OutputFormat::Csv | OutputFormat::Tsv => WriterState::Csv(false),
            OutputFormat::Json => WriterState::Json(ArrayWriter::new(Vec::new())),
            OutputFormat::Ndjson => WriterState::Ndjson(LineDelimitedWriter::new(Vec::new())),
        };
        ResultWriter {
            out,
            schema,
            format,
            state,
            rows: 0,
        }
    }

    /// Writes (or, in the table's lookahead, keeps) one batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), QueryError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.rows += batch.num_rows() as u64;
        match &mut self.state {
            WriterState::TableLookahead(kept, rows) => {
                kept.push(batch.clone());
                *rows += batch.num_rows();
                if *rows >= TABLE_LOOKAHEAD_ROWS {
                    self.size_table()?;
                }
            }
            WriterState::Table(widths) => {
                let lines = table_rows(batch, widths)?;
                self.out.write_all(lines.as_bytes()).map_err(output_err)?;
            }
            WriterState::Csv(wrote_header) => {
                write_csv(self.out, batch, self.format, !*wrote_header)?;
                *wrote_header = true;
            }
            WriterState::Json(writer) => {
                writer.write(batch).map_err(output_err)?;
                drain(writer.get_mut(), self.out)?;
            }
            WriterState::Ndjson(writer) => {
                writer.write(batch).map_err(output_err)?;
                drain(writer.get_mut(), self.out)?;
            }
        }
        // A row on the screen as soon as it is known, not when a buffer fills.
        self.out.flush().map_err(output_err)
    }

    /// Ends the result (the table's closing line, the JSON array's bracket, the header of
    /// an empty CSV); returns the rows written.
    pub fn finish(mut self) -> Result<u64, QueryError> {
        if let WriterState::TableLookahead(..) = self.state {
            self.size_table()?;
        }
        match &mut self.state {
            WriterState::TableLookahead(..) => {}
            WriterState::Table(widths) => {
                let line = border(widths);
                writeln!(self.out, "{line}").map_err(output_err)?;
            }
            WriterState::Csv(wrote_header) => {
                if !*wrote_header {
                    // A result with no rows still has its header.
                    let empty = RecordBatch::new_empty(self.schema.clone());
                    write_csv(self.out, &empty, self.format, true)?;
                }
            }
            WriterState::Json(writer) => {
                // arrow writes `[]` for a result with no rows.
                writer.finish().map_err(output_err)?;
                drain(writer.get_mut(), self.out)?;
                writeln!(self.out).map_err(output_err)?;
            }
            WriterState::Ndjson(writer) => {
                writer.finish().map_err(output_err)?;
                drain(writer.get_mut(), self.out)?;
            }
        }
        self.out.flush().map_err(output_err)?;
        Ok(self.rows)
    }

    /// Sizes the table's columns from the rows read ahead and prints them under the header.
    fn size_table(&mut self) -> Result<(), QueryError> {
        let WriterState::TableLookahead(kept, _) = &mut self.state else {
            return Ok(());
        };
        let kept = std::mem::take(kept);
        let names: Vec<&str> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        let mut widths: Vec<usize> = names.iter().map(|n| n.chars().count()).collect();
        for batch in &kept {
            for (column, width) in cells(batch)?.iter().zip(widths.iter_mut()) {
                for cell in column {
                    *width = (*width).max(cell.chars().count());
                }
            }
        }
        let line = border(&widths);
        let mut text = format!("{line}\n{}\n{line}\n", row_line(&names, &widths));
        for batch in &kept {
            text.push_str(&table_rows(batch, &widths)?);
        }
        self.out.write_all(text.as_bytes()).map_err(output_err)?;
        self.state = WriterState::Table(widths);
        Ok(())
    }
}

/// One batch as CSV or TSV; arrow's writer owns its sink, so one is made per batch.
fn write_csv(
    out: &mut dyn Write,
    batch: &RecordBatch,
    format: OutputFormat,
    header: bool,
) -> Result<(), QueryError> {
    let delimiter = if format == OutputFormat::Tsv {
        b'\t'
    } else {
        b','
    };
    let mut writer = WriterBuilder::new()
        .with_header(header)
        .with_delimiter(delimiter)
        .build(out);
    writer.write(&flatten_nested(batch)?).map_err(output_err)
}

/// Moves what a writer buffered to `out`.
fn drain(buffer: &mut Vec<u8>, out: &mut dyn Write) -> Result<(), QueryError> {
    out.write_all(buffer).map_err(output_err)?;
    buffer.clear();
    Ok(())
}

/// Each column's cells as display text (arrow's formatting, as the pretty printer uses).
fn cells(batch: &RecordBatch) -> Result<Vec<Vec<String>>, QueryError> {
    let options = FormatOptions::default().with_display_error(true);
    batch
        .columns()
        .iter()
        .map(|column| {
            let formatter =
                ArrayFormatter::try_new(column.as_ref(), &options).map_err(output_err)?;
            Ok((0..column.len())
                .map(|i| formatter.value(i).to_string())
                .collect())
        })
        .collect()
}

fn table_rows(batch: &RecordBatch, widths: &[usize]) -> Result<String, QueryError> {
    let columns = cells(batch)?;
    let mut text = String::new();
    for row in 0..batch.num_rows() {
        let values: Vec<&str> = columns.iter().map(|c| c[row].as_str()).collect();
        text.push_str(&row_line(&values, widths));
        text.push('\n');
    }
    Ok(text)
}

fn row_line(values: &[&str], widths: &[usize]) -> String {
    let mut line = String::from("|");
    for (value, width) in values.iter().zip(widths) {
        let pad = width.saturating_sub(value.chars().count());
        line.push(' ');
        line.push_str(value);
        line.extend(std::iter::repeat_n(' ', pad));
        line.push_str(" |");
    }
    line
}

fn border(widths: &[usize]) -> String {
    let mut line = String::from("+");
    for width in widths {
        line.extend(std::iter::repeat_n('-', width + 2));
        line.push('+');
    }
    line
}

/// Writes a whole result held in memory (drift, tests).
pub fn write_result(
    out: &mut dyn Write,
    result: &QueryResult,
    format: OutputFormat,
) -> Result<(), QueryError> {
    let mut writer = ResultWriter::new(out, result.schema.clone(), format);
    for batch in &result.batches {
        writer.write(batch)?;
    }
    writer.finish().map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;

    fn batch(names: &[&str], numbers: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(names.to_vec())),
                Arc::new(Int64Array::from(numbers.to_vec())),
            ],
        )
        .expect("batch")
    }

    fn written(batches: &[RecordBatch], format: OutputFormat) -> String {
        let mut out = Vec::new();
        let mut writer = ResultWriter::new(&mut out, batches[0].schema(), format);
        for b in batches {
            writer.write(b).expect("write");
        }
        let rows = writer.finish().expect("finish");
        assert_eq!(
            rows as usize,
            batches.iter().map(|b| b.num_rows()).sum::<usize>()
        );
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn a_table_is_sized_by_the_rows_read_ahead_and_later_rows_keep_the_widths() {
        let first: Vec<String> = (0..TABLE_LOOKAHEAD_ROWS)
            .map(|i| format!("r{}", i % 10))
            .collect();
        let first: Vec<&str> = first.iter().map(String::as_str).collect();
        let numbers = vec![1; first.len()];
        let text = written(
            &[
                batch(&first, &numbers),
                batch(&["a much longer name"], &[22]),
            ],
            OutputFormat::Table,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), TABLE_LOOKAHEAD_ROWS + 1 + 4);
        assert_eq!(lines[0], "+------+---+");
        assert_eq!(lines[1], "| name | n |");
        assert_eq!(lines[3], "| r0   | 1 |");
        // The row past the lookahead is not cut and does not resize what was printed.
        assert_eq!(lines[lines.len() - 2], "| a much longer name | 22 |");
        assert_eq!(lines[lines.len() - 1], "+------+---+");
    }

    #[test]
    fn a_short_result_is_one_table_sized_to_all_its_rows() {
        let text = written(
            &[batch(&["x"], &[1]), batch(&["longer"], &[100])],
            OutputFormat::Table,
        );
        assert_eq!(
            text,
            "+--------+-----+\n| name   | n   |\n+--------+-----+\n| x      | 1   |\n| longer | 100 |\n+--------+-----+\n"
        );
    }

    #[test]
    fn many_batches_give_one_document_in_every_format() {
        let batches = [batch(&["a", "b,c"], &[1, 2]), batch(&["d"], &[3])];
        for (format, expected) in [
            (OutputFormat::Csv, "name,n\na,1\n\"b,c\",2\nd,3\n"),
            (OutputFormat::Tsv, "name\tn\na\t1\nb,c\t2\nd\t3\n"),
            (
                OutputFormat::Json,
                "[{\"name\":\"a\",\"n\":1},{\"name\":\"b,c\",\"n\":2},{\"name\":\"d\",\"n\":3}]\n",
            ),
            (
                OutputFormat::Ndjson,
                "{\"name\":\"a\",\"n\":1}\n{\"name\":\"b,c\",\"n\":2}\n{\"name\":\"d\",\"n\":3}\n",
            ),
        ] {
            assert_eq!(written(&batches, format), expected, "{format:?}");
        }
    }

    #[test]
    fn an_empty_result_keeps_its_header_or_brackets() {
        let empty = [batch(&[], &[])];
        assert_eq!(written(&empty, OutputFormat::Csv), "name,n\n");
        assert_eq!(written(&empty, OutputFormat::Json), "[]\n");
        assert_eq!(written(&empty, OutputFormat::Ndjson), "");
        assert_eq!(
            written(&empty, OutputFormat::Table),
            "+------+---+\n| name | n |\n+------+---+\n+------+---+\n"
        );
    }
}
