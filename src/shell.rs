//! The interactive SQL shell: `gdq` on a terminal without SQL, or `gdq shell`. The habits of
//! datafusion-cli and psql: statements end with `;` and may span lines, history persists,
//! `\d` lists tables, `\d NAME` describes one, `\timing` and `\format` toggle output.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::ValueEnum;
use gdq_query::{OutputFormat, SessionContext, open_session, print_sql};
use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;

use crate::choices::FormatChoice;
use crate::cli::{query_failure, runtime, table_failure};
use crate::exit::{Failure, Status};

const HELP: &str = "\
Statements end with ';' and may span several lines. Commands:
  \\d            list tables
  \\d NAME       describe a table (columns and types)
  \\timing       show or hide the time each statement takes (on)
  \\format FMT   table, csv, tsv, json or ndjson
  \\?            this help
  \\q            quit (or Ctrl-D)";

fn history_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("GDQ_HISTORY") {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".gdq_history"))
}

struct Shell {
    ctx: SessionContext,
    format: OutputFormat,
    timing: bool,
}

impl Shell {
    async fn run_sql(&self, sql: &str) {
        let started = Instant::now();
        let mut out = std::io::stdout().lock();
        match print_sql(&self.ctx, sql, &mut out, self.format).await {
            Ok(counts) => {
                if self.timing {
                    for rows in counts {
                        let _ = writeln!(
                            out,
                            "{rows} row(s) in {:.3} s",
                            started.elapsed().as_secs_f64()
                        );
                    }
                }
                let _ = out.flush();
            }
            Err(e) => eprintln!("gdq: {}", query_failure(e).message),
        }
    }

    /// Runs a backslash command; `false` to quit.
    async fn command(&mut self, line: &str) -> bool {
        let mut words = line.split_whitespace();
        match (words.next().unwrap_or_default(), words.next()) {
            ("\\q", _) => return false,
            ("\\?" | "\\h", _) => println!("{HELP}"),
            ("\\d", None) => {
                self.run_sql(
                    "select table_name, table_type from information_schema.tables \
                     where table_schema = 'public' order by table_name",
                )
                .await
            }
            ("\\d", Some(name)) => {
                let quoted = name.replace('\'', "''");
                self.run_sql(&format!(
                    "select column_name, data_type, is_nullable from information_schema.columns \
                     where table_schema = 'public' and table_name = '{quoted}' order by ordinal_position"
                ))
                .await
            }
            ("\\timing", _) => {
                self.timing = !self.timing;
                println!("timing {}", if self.timing { "on" } else { "off" });
            }
            // The same names as --format, from the same list.
            ("\\format", Some(format)) => match FormatChoice::from_str(format, true) {
                Ok(f) => self.format = f.into(),
                Err(e) => eprintln!("gdq: {e} (table, csv, tsv, json, ndjson)"),
            },
            (other, _) => eprintln!("gdq: unknown command {other} (\\? lists them)"),
        }
        true
    }
}

/// Runs the shell until `\q` or end of input.
pub fn run(warehouse: &str, format: OutputFormat) -> Result<ExitCode, Failure> {
    // A session is long-running from the start: a 250 ms timer would fire before its second
    // query anyway.
    crate::allocator::purge_freed_memory_at_once();
    let runtime = runtime()?;
    runtime.block_on(async {
        let location = gdq_table::Warehouse::open(warehouse)
            .await
            .map_err(table_failure)?;
        let (ctx, warning) = open_session(&location).await.map_err(query_failure)?;
        if let Some(warning) = warning {
            eprintln!("gdq: {warning}");
        }
        let mut editor = DefaultEditor::new()
            .map_err(|e| Failure::new(Status::Failed, format!("cannot open the shell: {e}")))?;
        let history = history_path();
        if let Some(path) = &history {
            let _ = editor.load_history(path);
        }
        eprintln!(
            "gdq shell on {}; statements end with ';', \\? for help, \\q to quit",
            location.name()
        );
        let mut shell = Shell {
            ctx,
            format,
            timing: true,
        };
        let mut statement = String::new();
        loop {
            let prompt = if statement.is_empty() {
                "gdq> "
            } else {
                "  -> "
            };
            let line = match editor.readline(prompt) {
                Ok(line) => line,
                Err(ReadlineError::Interrupted) => {
                    statement.clear();
                    continue;
                }
                Err(ReadlineError::Eof) => break,
                Err(e) => return Err(Failure::new(Status::Failed, format!("reading input: {e}"))),
            };
            let trimmed = line.trim();
            if statement.is_empty() && trimmed.starts_with('\\') {
                let _ = editor.add_history_entry(trimmed);
                if !shell.command(trimmed).await {
                    break;
                }
                continue;
            }
            if trimmed.is_empty() && statement.is_empty() {
                continue;
            }
            statement.push_str(&line);
            statement.push('\n');
            if trimmed.ends_with(';') {
                let sql = std::mem::take(&mut statement);
                let _ = editor.add_history_entry(sql.trim());
                shell.run_sql(&sql).await;
            }
        }
        if !statement.trim().is_empty() {
            shell.run_sql(&statement).await;
        }
        if let Some(path) = &history {
            let _ = editor.save_history(path);
        }
        Ok(Status::Ok.into())
    })
}
