//! `gdq "SQL"`: tables, views, JSON functions, formats and errors.

use std::collections::HashMap;

use gdq_schemas::parse_timestamp_ms;
use serde_json::Value;

use crate::support::*;

fn bundled_warehouse() -> tempfile::TempDir {
    let wh = tempdir();
    let out = ingest(wh.path(), &[&testdata("exports")]);
    assert!(out.status.success(), "{}", stderr(&out));
    wh
}

#[test]
fn findings_latest_holds_the_newest_version_of_each_finding() {
    let wh = bundled_warehouse();
    // Oracle: newest updatedAt, then highest count, per id, from the raw JSON.
    let mut newest: HashMap<String, (i64, i64)> = HashMap::new();
    for f in oracle_findings(&testdata("exports")) {
        let at = parse_timestamp_ms(f["updatedAt"].as_str().unwrap()).unwrap();
        let count = f["service"]["count"].as_i64().unwrap_or(0);
        let entry = newest
            .entry(f["id"].as_str().unwrap().to_string())
            .or_insert((at, count));
        *entry = (*entry).max((at, count));
    }
    let versions = sql_count(wh.path(), "select count(*) from findings");
    assert!(
        versions > newest.len() as u64,
        "the corpus must hold several versions of some ids"
    );

    let rows = sql_rows(
        wh.path(),
        "select id, updated_at, \"count\" from findings_latest",
    );
    assert_eq!(rows.len(), newest.len(), "one row per id");
    for r in rows {
        let (at, count) = newest[&r[0]];
        assert_eq!(parse_timestamp_ms(&r[1]), Some(at), "id {}", r[0]);
        assert_eq!(r[2].parse::<i64>().unwrap(), count, "id {}", r[0]);
    }
}

#[test]
fn findings_latest_breaks_ties_by_count_keeps_one_row_and_filters_by_id() {
    let exports = tempdir();
    let line = |id: &str, at: Option<&str>, count: i64, title: &str| {
        let mut f = serde_json::json!({"id": id, "type": "Recon:EC2/Portscan", "title": title,
            "service": {"count": count}});
        if let Some(at) = at {
            f["updatedAt"] = at.into();
        }
        f.to_string() + "\n"
    };
    let dir = exports.path().join("AWSLogs/1/GuardDuty/r/2024/03/01");
    // a: same updatedAt twice, the higher count wins; its newest version is also exported
    // again, identically, in another object (a tie that must still give one row).
    // b: a version without updatedAt loses to one with it. c: one version, another type.
    write_gz(
        &dir.join("one.jsonl.gz"),
        (line("a", Some("2024-03-01T00:00:00Z"), 1, "a old")
            + &line("a", Some("2024-03-02T00:00:00Z"), 2, "a count 2")
            + &line("b", None, 9, "b undated"))
            .as_bytes(),
    );
    write_gz(
        &dir.join("two.jsonl.gz"),
        (line("a", Some("2024-03-02T00:00:00Z"), 5, "a newest")
            + &line("a", Some("2024-03-02T00:00:00Z"), 5, "a newest")
            + &line("b", Some("2024-01-01T00:00:00Z"), 1, "b dated"))
            .as_bytes(),
    );
    let mut c = serde_json::json!({"id": "c", "type": "Backdoor:EC2/C&CActivity.B", "title": "c only",
        "updatedAt": "2024-03-01T00:00:00Z"});
    c["service"] = serde_json::json!({"count": 1});
    write_gz(
        &dir.join("three.jsonl.gz"),
        (c.to_string() + "\n").as_bytes(),
    );
    let wh = tempdir();
    let out = ingest(wh.path(), &[exports.path()]);
    assert!(out.status.success(), "{}", stderr(&out));

    assert_eq!(
        sql_rows(
            wh.path(),
            "select id, title, \"count\", type from findings_latest order by id"
        ),
        vec![
            vec!["a", "a newest", "5", "Recon:EC2/Portscan"],
            vec!["b", "b dated", "1", "Recon:EC2/Portscan"],
            vec!["c", "c only", "1", "Backdoor:EC2/C&CActivity.B"],
        ]
    );
    assert_eq!(
        sql_rows(
            wh.path(),
            "select title from findings_latest where id = 'a'"
        ),
        vec![vec!["a newest"]]
    );
    assert_eq!(
        sql_rows(
            wh.path(),
            "select id from findings_latest where id in ('b', 'zz') and title like 'b%'"
        ),
        vec![vec!["b"]]
    );
    // A filter on another column applies to the newest version, not before choosing it.
    assert_eq!(
        sql_count(
            wh.path(),
            "select count(*) from findings_latest where title = 'a old'"
        ),
        0
    );
    // Same columns, same order as findings.
    let columns = |table: &str| {
        sql_rows(
            wh.path(),
            &format!(
                "select column_name from information_schema.columns where table_name = '{table}' order by ordinal_position"
            ),
        )
    };
    assert_eq!(columns("findings_latest"), columns("findings"));
}

#[test]
fn a_lookup_by_id_opens_only_the_files_the_id_index_allows() {
    let wh = bundled_warehouse();
    let indexes = walk(&wh.path().join("_gdq/index"));
    assert_eq!(indexes.len(), 1, "one index file per commit: {indexes:?}");
    let total = data_files(wh.path());
    assert!(
        total > 50,
        "the bundled data spans many types: {total} files"
    );

    let mut versions: std::collections::BTreeMap<String, u64> = Default::default();
    for f in oracle_findings(&testdata("exports")) {
        *versions
            .entry(f["id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let sample: Vec<(&String, &u64)> = versions.iter().step_by(versions.len() / 16).collect();
    let mut opened = 0;
    for (id, n) in &sample {
        let lookup = format!("select * from findings where id = '{id}'");
        let files = scanned_files(wh.path(), &lookup);
        assert!(
            (1..=2).contains(&files.len()),
            "{id}: {} of {total} files",
            files.len()
        );
        opened += files.len();
        assert_eq!(sql_rows(wh.path(), &lookup).len() as u64, **n, "{id}");
    }
    assert!(
        opened <= sample.len() + 2,
        "{opened} files for {} ids",
        sample.len()
    );

    // An IN list keeps the files of every id; the view filters through the same scan.
    let (a, b) = (sample[0].0, sample[1].0);
    let both = format!("select count(*) from findings where id in ('{a}', '{b}')");
    assert_eq!(sql_count(wh.path(), &both), sample[0].1 + sample[1].1);
    let latest = format!("select count(*) from findings_latest where id = '{a}' or id = '{b}'");
    assert_eq!(sql_count(wh.path(), &latest), 2);
    assert!(scanned_files(wh.path(), &latest).len() <= 4);

    // An id in no file: no rows, and a plan above an emptied scan (a sort) still runs.
    let none = "select * from findings where id = 'no-such-id' order by updated_at";
    assert!(scanned_files(wh.path(), none).len() <= 1);
    assert_eq!(sql_rows(wh.path(), none).len(), 0);
}

#[test]
fn a_damaged_or_missing_id_index_only_makes_lookups_slower() {
    let wh = bundled_warehouse();
    let id = sql_rows(wh.path(), "select min(id) from findings")
        .remove(0)
        .remove(0);
    let lookup = format!("select * from findings where id = '{id}' order by updated_at, source");
    let rows = sql_rows(wh.path(), &lookup);
    assert!(!rows.is_empty());
    let total = data_files(wh.path());
    assert!(scanned_files(wh.path(), &lookup).len() < total);

    let index = walk(&wh.path().join("_gdq/index")).remove(0);
    let mut bytes = std::fs::read(&index).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&index, &bytes).unwrap();
    assert_eq!(sql_rows(wh.path(), &lookup), rows, "damaged index");
    assert_eq!(
        scanned_files(wh.path(), &lookup).len(),
        total,
        "damaged index"
    );

    std::fs::remove_file(&index).unwrap();
    assert_eq!(sql_rows(wh.path(), &lookup), rows, "no index");
    assert_eq!(scanned_files(wh.path(), &lookup).len(), total, "no index");
}

#[test]
fn a_lookup_finds_every_version_when_only_some_commits_are_indexed() {
    // One commit per export object, then one commit's index lost: its files must still be
    // searched (they are not covered), the others' only where their filters allow.
    let wh = tempdir();
    let out = run(gdq(wh.path())
        .args(["ingest", "--commit-mib", "0"])
        .arg(testdata("exports")));
    assert!(out.status.success(), "{}", stderr(&out));
    let mut indexes = walk(&wh.path().join("_gdq/index"));
    indexes.sort();
    assert!(indexes.len() > 5, "{indexes:?}");
    std::fs::remove_file(&indexes[0]).unwrap();
    // The ids of the object that commit covered.
    let batch = indexes[0]
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let record = commit_info(wh.path(), &batch);
    let object = record["sources"][0]["uri"].as_str().unwrap();
    let unindexed: Vec<String> =
        raw_lines(std::path::Path::new(object.trim_start_matches("file://")))
            .iter()
            .filter_map(|l| match classify(l) {
                Oracle::Good(v) => Some(v["id"].as_str().unwrap().to_string()),
                _ => None,
            })
            .collect();
    assert!(!unindexed.is_empty());

    let mut versions: std::collections::BTreeMap<String, u64> = Default::default();
    for f in oracle_findings(&testdata("exports")) {
        *versions
            .entry(f["id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let sample = unindexed
        .iter()
        .take(8)
        .chain(versions.keys().step_by(versions.len() / 16));
    for id in sample {
        let lookup = format!("select count(*) from findings where id = '{id}'");
        assert_eq!(sql_count(wh.path(), &lookup), versions[id], "{id}");
    }
}

#[test]
fn json_functions_reach_fields_without_a_column() {
    let wh = bundled_warehouse();
    let expected = oracle_findings(&testdata("exports"))
        .iter()
        .filter(|f| f["service"]["runtimeDetails"]["process"]["name"].is_string())
        .count() as u64;
    assert!(expected > 0);
    let got = sql_count(
        wh.path(),
        "select count(json_get_str(finding, 'service', 'runtimeDetails', 'process', 'name')) from findings",
    );
    assert_eq!(got, expected);
    let arrow = sql_count(
        wh.path(),
        "select count(*) from findings where (finding->'service'->>'featureName') = 'RuntimeMonitoring'",
    );
    let oracle = oracle_findings(&testdata("exports"))
        .iter()
        .filter(|f| f["service"]["featureName"] == "RuntimeMonitoring")
        .count();
    assert_eq!(arrow, oracle as u64);
}

#[test]
fn output_formats_carry_the_same_rows() {
    let wh = bundled_warehouse();
    let sql = "select type, count(*) as n from findings group by type order by n desc, type";
    let csv = sql_rows(wh.path(), sql);
    let json: Vec<Value> =
        serde_json::from_slice(&run(gdq(wh.path()).args(["--format", "json", sql])).stdout)
            .unwrap();
    let ndjson = stdout(&run(gdq(wh.path()).args(["--format", "ndjson", sql])));
    let tsv = stdout(&run(gdq(wh.path()).args(["--format", "tsv", sql])));
    let table = stdout(&run(gdq(wh.path()).args([sql])));
    assert_eq!(json.len(), csv.len());
    assert_eq!(ndjson.lines().count(), csv.len());
    assert_eq!(tsv.lines().count(), csv.len() + 1);
    for (row, obj) in csv.iter().zip(&json) {
        assert_eq!(obj["type"], row[0].as_str());
        assert_eq!(obj["n"].as_u64().unwrap().to_string(), row[1]);
        assert!(table.contains(&row[0]));
    }
}

#[test]
fn sql_comes_from_an_argument_a_file_or_standard_input() {
    let wh = bundled_warehouse();
    let expected = sql_rows(wh.path(), "select count(*) from findings");
    let file = wh.path().join("q.sql");
    std::fs::write(&file, "select count(*) from findings;\n").unwrap();
    let from_file = stdout(&run(gdq(wh.path())
        .args(["--format", "csv", "-f"])
        .arg(&file)));
    assert_eq!(from_file.lines().nth(1).unwrap(), expected[0][0]);
    let out = run_with_stdin(
        gdq(wh.path()).args(["--format", "csv", "query"]),
        b"select count(*) from findings",
    );
    assert_eq!(stdout(&out).lines().nth(1).unwrap(), expected[0][0]);
}

#[test]
fn bad_sql_is_one_line_with_usage_status() {
    let wh = bundled_warehouse();
    for sql in [
        "selec * from findings",
        "select no_such_column from findings",
        "select * from no_such_table",
    ] {
        let out = run(gdq(wh.path()).arg(sql));
        assert_eq!(out.status.code(), Some(2), "{sql}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("gdq: "), "{err}");
        assert!(stdout(&out).is_empty());
    }
    let err = stderr(&run(
        gdq(wh.path()).arg("select no_such_column from findings")
    ));
    assert!(err.contains("no_such_column"), "{err}");
}

#[test]
fn a_missing_warehouse_answers_empty_with_a_note() {
    let dir = tempdir();
    let wh = dir.path().join("never-written");
    let out = run(gdq(&wh).args(["--format", "csv", "select count(*) from findings_latest"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().nth(1), Some("0"));
    assert!(stderr(&out).contains("holds no findings yet"));
    assert!(!wh.exists(), "a query never writes");
}

#[test]
fn schema_lists_every_column_with_the_type_partition() {
    let out = run(gdq(&tempdir().path().join("x")).arg("schema"));
    let text = stdout(&out);
    for c in gdq_schemas::COLUMNS {
        assert!(text.lines().any(|l| l.starts_with(c.name)), "{}", c.name);
    }
    assert!(text.starts_with("type "));
}

#[test]
fn schema_drift_names_fields_no_column_covers() {
    let extra = tempdir();
    let lines = "{\"id\":\"n1\",\"type\":\"Recon:EC2/Portscan\",\"updatedAt\":\"2024-05-01T00:00:00Z\",\"service\":{\"count\":3,\"brandNewFeature\":{\"flag\":true}}}\n\
                 {\"id\":\"n2\",\"type\":\"Recon:EC2/Portscan\",\"updatedAt\":\"2024-05-03T00:00:00Z\",\"service\":{\"brandNewFeature\":{\"flag\":false}}}\n";
    write_gz(&extra.path().join("new.jsonl.gz"), lines.as_bytes());
    let wh = tempdir();
    assert!(ingest(wh.path(), &[extra.path()]).status.success());
    let out = run(gdq(wh.path()).args(["--format", "csv", "schema", "drift"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = parse_csv(&stdout(&out));
    assert_eq!(
        rows[0],
        ["path", "findings", "first_seen", "last_seen", "example"]
    );
    assert_eq!(
        rows[1..].to_vec(),
        [[
            "service.brandNewFeature.flag",
            "2",
            "2024-05-01T00:00:00Z",
            "2024-05-03T00:00:00Z",
            "true"
        ]],
        "id, type, updatedAt and service.count have columns"
    );
}

#[test]
fn the_shell_describes_tables_and_runs_multi_line_statements() {
    let wh = bundled_warehouse();
    let history = tempdir();
    let out = run_with_stdin(
        gdq(wh.path())
            .arg("shell")
            .env("GDQ_HISTORY", history.path().join("h")),
        b"\\d\n\\d findings\nselect count(*) as n\n  from findings;\n\\format csv\nselect count(distinct id) as ids from findings_latest;\nselect sevrity from findings;\nselect * from finding;\n\\q\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let (text, errors) = (stdout(&out), stderr(&out));
    assert!(text.contains("| findings_latest | VIEW"), "{text}");
    assert!(text.contains("| updated_at ") && text.contains("Timestamp(ms, \"UTC\")"));
    let total = sql_count(wh.path(), "select count(*) from findings");
    assert!(text.contains(&format!("| {total} ")), "{text}");
    let ids = sql_count(wh.path(), "select count(distinct id) from findings");
    assert!(text.contains(&format!("ids\n{ids}\n")), "{text}");
    assert!(text.contains("1 row(s) in "));
    assert!(
        errors.contains("Did you mean 'findings.severity'?"),
        "{errors}"
    );
    assert!(errors.contains("Did you mean 'findings'?"), "{errors}");
    let history = std::fs::read_to_string(history.path().join("h")).unwrap();
    assert!(
        history.contains("from findings;"),
        "history is kept: {history}"
    );
}
