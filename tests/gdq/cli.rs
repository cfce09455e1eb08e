//! What every command shares: one exit-status table (`src/exit.rs`, docs/commands.md),
//! choices of enum flags checked up front, a closed stdout ending a command quietly, results
//! printed as they stream, and `status` in every format it offers.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::Stdio;

use crate::support::*;

/// A warehouse holding the bundled sample exports.
fn sample_warehouse() -> tempfile::TempDir {
    let wh = tempdir();
    let out = ingest(wh.path(), &[&testdata("exports")]);
    assert!(out.status.success(), "{}", stderr(&out));
    wh
}

/// Runs `args` and checks its status, that stderr is one `gdq:`/clap line (or empty) and
/// holds `says`.
fn expect(wh: &Path, args: &[&str], code: i32, says: &str) {
    let mut cmd = gdq(wh);
    cmd.args(args)
        .env("GDQ_CONFIG", wh.join("no-setup-record.json"));
    let out = run(&mut cmd);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(code), "{args:?}\n{err}");
    assert!(err.contains(says), "{args:?} should say {says:?}:\n{err}");
    assert!(!err.contains("panicked"), "{args:?}:\n{err}");
}

#[test]
fn every_command_ends_with_the_status_of_the_one_table() {
    let exports = testdata("exports").display().to_string();
    let corrupt = testdata("corrupt").display().to_string();
    let wh = sample_warehouse();
    let wh = wh.path();

    // 0: everything asked was done.
    for args in [
        &["query", "select count(*) from findings"][..],
        &["select type, count(*) from findings_latest group by type"],
        &["status"],
        &["status", "--format", "csv"],
        &["schema"],
        &["schema", "drift"],
        &["ddl", "--engine", "duckdb"],
        &["compact"],
        &["vacuum", "--dry-run"],
        &["upgrade"],
        &["ingest", &exports],
    ] {
        expect(wh, args, 0, "");
    }

    // 2: bad usage, before any work; enum flags name their choices.
    expect(
        wh,
        &["--format", "xml", "select 1"],
        2,
        "[possible values: table, csv, tsv, json, ndjson]",
    );
    expect(
        wh,
        &["ingest", "--progress", "fancy", &exports],
        2,
        "[possible values: auto, bar, log, none]",
    );
    expect(
        wh,
        &["worker", "--queue-url", "q", "--log-format", "xml"],
        2,
        "[possible values: text, json]",
    );
    expect(
        wh,
        &["ddl", "--engine", "oracle"],
        2,
        "[possible values: athena, spark, trino, duckdb, snowflake]",
    );
    expect(wh, &["select nope from findings"], 2, "gdq: ");
    expect(wh, &["ingest", "/no/such/folder"], 2, "gdq: ");
    expect(wh, &["worker"], 2, "run gdq setup first");
    expect(wh, &["setup"], 2, "needs --bucket");
    expect(wh, &["compact", "--target-file-size", "lots"], 2, "lots");

    // 1: a run-time failure (here a warehouse path that is a file).
    let file = tempdir();
    let not_a_folder = file.path().join("warehouse");
    std::fs::write(&not_a_folder, b"not a warehouse").unwrap();
    for args in [
        &["status"][..],
        &["select 1 as one"],
        &["compact"],
        &["vacuum"],
        &["upgrade"],
        &["ingest", &exports],
    ] {
        expect(&not_a_folder, args, 1, "gdq: ");
    }

    // 3: done, with input kept aside in the quarantine.
    let fresh = tempdir();
    expect(fresh.path(), &["ingest", &corrupt], 3, "");
}

/// `gdq … | head -1`: the reader goes away while gdq writes; gdq stops at once, says nothing
/// and exits 0, in every format.
#[test]
fn a_closed_stdout_ends_a_query_quietly() {
    let wh = sample_warehouse();
    for format in ["table", "csv", "tsv", "json", "ndjson"] {
        let mut child = gdq(wh.path())
            .args(["--format", format, "select * from findings"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("gdq starts");
        let mut first = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut first)
            .expect("a first line");
        // Dropping the reader closes the pipe while gdq has megabytes left to write.
        assert!(!first.is_empty(), "{format}: nothing printed");
        let mut err = String::new();
        child
            .stderr
            .take()
            .expect("stderr")
            .read_to_string(&mut err)
            .expect("stderr read");
        let status = child.wait().expect("gdq ends");
        assert_eq!(status.code(), Some(0), "{format}: {err}");
        assert_eq!(err, "", "{format}: a closed pipe is not an error");
    }
}

/// Results are written batch by batch: with batches of 7 rows every format still gives one
/// document with every row, the same as with DataFusion's default batches.
#[test]
fn results_stream_in_batches_and_stay_one_document() {
    let wh = sample_warehouse();
    let sql = "select id, type, severity, updated_at from findings order by id, updated_at, severity, type";
    let rows = sql_count(wh.path(), "select count(*) from findings") as usize;
    assert!(
        rows > 1000,
        "the table format's lookahead is exercised: {rows}"
    );
    for format in ["table", "csv", "tsv", "json", "ndjson"] {
        let whole = run(gdq(wh.path()).args(["--format", format, sql]));
        let batched = run(gdq(wh.path())
            .args(["--format", format, sql])
            .env("DATAFUSION_EXECUTION_BATCH_SIZE", "7"));
        assert!(batched.status.success(), "{}", stderr(&batched));
        let text = stdout(&batched);
        if format == "table" {
            // Columns are sized by the first 1,000 rows, so only the cells must agree.
            assert_eq!(table_cells(&text), table_cells(&stdout(&whole)), "{format}");
        } else {
            assert!(
                text == stdout(&whole),
                "{format}: batches changed the output"
            );
        }
        let count = match format {
            "table" => text.lines().filter(|l| l.starts_with("| ")).count() - 1,
            "csv" | "tsv" => text.lines().count() - 1,
            "json" => serde_json::from_str::<Vec<serde_json::Value>>(&text)
                .expect("one JSON array")
                .len(),
            _ => text
                .lines()
                .filter(|l| {
                    serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| v.is_object())
                })
                .count(),
        };
        assert_eq!(count, rows, "{format}");
    }
}

/// The cells of a boxed table, trimmed, row by row.
fn table_cells(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| l.starts_with("| "))
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

#[test]
fn status_prints_every_format_it_offers() {
    let wh = sample_warehouse();
    let rows = sql_count(wh.path(), "select count(*) from findings");
    let types = gdq_type_counts(wh.path());
    for (format, sep) in [("csv", ','), ("tsv", '\t')] {
        let out = run(gdq(wh.path()).args(["status", "--format", format]));
        assert!(out.status.success(), "{}", stderr(&out));
        let text = stdout(&out);
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some(
                ["type", "files", "rows", "bytes", "newest_updated_at"]
                    .join(&sep.to_string())
                    .as_str()
            )
        );
        let mut total = 0;
        for line in lines {
            let cells: Vec<&str> = line.split(sep).collect();
            assert_eq!(cells.len(), 5, "{line}");
            let n: u64 = cells[2].parse().expect("rows");
            assert_eq!(types.get(cells[0]), Some(&n), "{line}");
            total += n;
        }
        assert_eq!(total, rows, "{format}");
    }
    let doc = status_json(wh.path());
    assert_eq!(doc["types"].as_array().map(Vec::len), Some(types.len()));
    let table = stdout(&run(gdq(wh.path()).arg("status")));
    assert!(table.lines().any(|l| l.starts_with("total")), "{table}");
}
