//! `gdq ingest`: every good line in, every bad one quarantined, nothing twice.

use std::path::Path;

use serde_json::Value;

use crate::support::*;

#[test]
fn bundled_exports_ingest_every_finding_under_its_exact_type() {
    let wh = tempdir();
    let out = ingest(wh.path(), &[&testdata("exports")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let expected = oracle_type_counts(&testdata("exports"));
    assert!(
        expected.keys().any(|t| t.contains('&') && t.contains('!')),
        "corpus should hold a type with & and !"
    );
    assert_eq!(gdq_type_counts(wh.path()), expected);
    let summary = stdout(&out);
    let total: u64 = expected.values().sum();
    assert!(
        summary.contains(&format!("{total} rows written")),
        "{summary}"
    );
}

#[test]
fn reingesting_the_same_files_changes_nothing() {
    let wh = tempdir();
    let first = ingest(wh.path(), &[&testdata("exports")]);
    assert!(first.status.success());
    let before = row_fingerprint(wh.path());
    let files_before = export_files_in(wh.path());

    let again = ingest(wh.path(), &[&testdata("exports")]);
    assert!(again.status.success());
    assert!(
        stdout(&again).contains("0 ingested, 11 already in the warehouse"),
        "{}",
        stdout(&again)
    );

    // A copy of the exports elsewhere is the same data: recognised by content.
    let copy = tempdir();
    copy_tree(&testdata("exports"), copy.path());
    let copied = ingest(wh.path(), &[copy.path()]);
    assert!(
        stdout(&copied).contains("0 ingested"),
        "{}",
        stdout(&copied)
    );

    assert_eq!(row_fingerprint(wh.path()), before);
    assert_eq!(export_files_in(wh.path()), files_before);
}

fn export_files_in(warehouse: &Path) -> Vec<(String, u64)> {
    let mut files = Vec::new();
    let mut stack = vec![warehouse.join("findings")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push((
                    p.strip_prefix(warehouse).unwrap().display().to_string(),
                    p.metadata().unwrap().len(),
                ));
            }
        }
    }
    files.sort();
    files
}

fn copy_tree(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let target = to.join(p.file_name().unwrap());
        if p.is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&p, &target);
        } else {
            std::fs::copy(&p, &target).unwrap();
        }
    }
}

fn quarantine_records(warehouse: &Path) -> Vec<Value> {
    let dir = warehouse.join("_gdq/quarantine");
    let mut records = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        records.extend(
            text.lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap()),
        );
    }
    records
}

#[test]
fn corrupt_lines_are_quarantined_and_every_good_line_is_ingested() {
    let corpus = testdata("corrupt");
    let mut good = 0u64;
    let mut bad = 0u64;
    for f in export_files(&corpus) {
        let lines = raw_lines(&f);
        for line in &lines[..lines.len() - 1] {
            match classify(line) {
                Oracle::Good(_) => good += 1,
                Oracle::Bad => bad += 1,
                Oracle::Blank => {}
            }
        }
    }
    assert!(
        bad > 10 && good > 400,
        "the corrupt corpus should hold both: {good} good, {bad} bad"
    );

    let wh = tempdir();
    let out = ingest(wh.path(), &[&corpus]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "quarantine must show in the exit status\n{}",
        stderr(&out)
    );
    assert_eq!(sql_count(wh.path(), "select count(*) from findings"), good);
    let records = quarantine_records(wh.path());
    assert_eq!(records.len() as u64, bad);
    for r in &records {
        assert!(r["source"].as_str().unwrap().starts_with("file:///"), "{r}");
        assert!(r["line"].as_u64().unwrap() >= 1, "{r}");
        assert!(
            r["text"].is_string() || r["bytes_base64"].is_string(),
            "{r}"
        );
    }
    assert!(
        records
            .iter()
            .any(|r| r["reason"].as_str().unwrap().starts_with("not UTF-8"))
    );
    assert!(
        records
            .iter()
            .any(|r| r["reason"].as_str().unwrap().starts_with("incomplete JSON"))
    );
    assert!(
        stdout(&out).contains(&format!("quarantined {bad} lines")),
        "{}",
        stdout(&out)
    );
}

#[test]
fn each_kind_of_bad_line_is_quarantined_with_its_reason() {
    let dir = tempdir();
    let good = r#"{"id":"good1","type":"Recon:EC2/Portscan","updatedAt":"2024-01-01T00:00:00Z"}"#;
    let mut text = Vec::new();
    for line in [
        good.as_bytes(),
        b"not json at all",
        b"{\"id\":\"x\",\"type\":\"Recon:EC2/Portscan\",\"title\":\"\xff\xfe\"}",
        b"[1,2,3]",
        br#"{"type":"Recon:EC2/Portscan"}"#,
        br#"{"id":"no-type"}"#,
        br#"{"id":"good2","type":"Recon:EC2/Portscan","severity":"HIGH","resource":[{}],"service":{"count":"3"}}"#,
    ] {
        text.extend_from_slice(line);
        text.push(b'\n');
    }
    write_gz(&dir.path().join("mixed.jsonl.gz"), &text);
    let wh = tempdir();
    let out = ingest(wh.path(), &[dir.path()]);
    assert_eq!(out.status.code(), Some(3));
    let mut reasons: Vec<(u64, String)> = quarantine_records(wh.path())
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap(),
                r["reason"]
                    .as_str()
                    .unwrap()
                    .split([':', '('])
                    .next()
                    .unwrap()
                    .trim()
                    .to_string(),
            )
        })
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        vec![
            (2, "not valid JSON".to_string()),
            (3, "not UTF-8".to_string()),
            (4, "not a JSON object".to_string()),
            (5, "no `id` string".to_string()),
            (6, "no `type` string".to_string()),
        ]
    );
    let rows = sql_rows(
        wh.path(),
        "select id, severity, \"count\" from findings order by id",
    );
    assert_eq!(rows, vec![vec!["good1", "", ""], vec!["good2", "", "3"]]);
}

#[test]
fn a_corrupt_gzip_object_keeps_its_readable_part_and_is_reported() {
    let dir = tempdir();
    let mut text = String::new();
    for i in 0..3000 {
        text.push_str(&format!(
            "{{\"id\":\"f{i}\",\"type\":\"Recon:EC2/Portscan\",\"title\":\"{}\"}}\n",
            "t".repeat(i % 50)
        ));
    }
    let path = dir.path().join("broken.jsonl.gz");
    write_gz(&path, text.as_bytes());
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();

    let wh = tempdir();
    let out = ingest(wh.path(), &[dir.path()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("broken.jsonl.gz: stream unreadable after line"),
        "{}",
        stderr(&out)
    );
    let rows = sql_count(wh.path(), "select count(*) from findings");
    assert!(rows > 0 && rows < 3000, "{rows}");
    let records = quarantine_records(wh.path());
    assert_eq!(records.len(), 1);
    assert!(
        records[0]["line"].is_null()
            && records[0]["reason"]
                .as_str()
                .unwrap()
                .contains("stream unreadable")
    );

    let again = ingest(wh.path(), &[dir.path()]);
    assert!(
        stdout(&again).contains("1 already in the warehouse"),
        "{}",
        stdout(&again)
    );
    assert_eq!(sql_count(wh.path(), "select count(*) from findings"), rows);
}

#[test]
fn a_missing_path_is_one_clear_line_and_usage_status() {
    let wh = tempdir();
    let out = ingest(wh.path(), &[Path::new("/no/such/exports")]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "gdq: no such file or directory: /no/such/exports\n"
    );
}

#[test]
fn concurrent_ingests_of_the_same_exports_write_each_row_once() {
    let expected = {
        let wh = tempdir();
        assert!(ingest(wh.path(), &[&testdata("exports")]).status.success());
        row_fingerprint(wh.path())
    };
    let wh = tempdir();
    let spawn = || {
        gdq(wh.path())
            .args(["ingest", "--commit-mib", "0"])
            .arg(testdata("exports"))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    run_both(spawn);
    assert_eq!(row_fingerprint(wh.path()), expected);
}

#[test]
fn status_reports_files_rows_and_freshness_per_type_from_footers() {
    let wh = tempdir();
    assert!(ingest(wh.path(), &[&testdata("exports")]).status.success());
    assert!(ingest(wh.path(), &[&testdata("corrupt")]).status.code() == Some(3));
    let out = run(gdq(wh.path()).args(["status", "--format", "json"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let by_sql: std::collections::BTreeMap<String, (u64, String)> = sql_rows(
        wh.path(),
        "select type, count(*), max(updated_at) from findings group by type",
    )
    .into_iter()
    .map(|r| (r[0].clone(), (r[1].parse().unwrap(), r[2].clone())))
    .collect();
    let types = doc["types"].as_array().unwrap();
    assert_eq!(types.len(), by_sql.len());
    for t in types {
        let (rows, newest) = &by_sql[t["type"].as_str().unwrap()];
        assert_eq!(t["rows"].as_u64(), Some(*rows));
        assert_eq!(
            gdq_schemas::parse_timestamp_ms(t["newest_updated_at"].as_str().unwrap()),
            gdq_schemas::parse_timestamp_ms(newest)
        );
        assert!(t["files"].as_u64().unwrap() >= 1 && t["bytes"].as_u64().unwrap() > 0);
    }
    assert_eq!(doc["objects"], 15);
    assert_eq!(doc["commits"], 2);
    let bad = quarantine_records(wh.path()).len() as u64;
    assert_eq!(doc["quarantine_records"].as_u64(), Some(bad));
    assert_eq!(doc["unreferenced_files"], 0);
}

/// Row groups of every data file: (rows, whether the `id` column chunk has a bloom filter).
fn row_groups(warehouse: &Path) -> Vec<(i64, bool)> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let mut groups = Vec::new();
    for path in parquet_files(warehouse) {
        {
            let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
            let meta = reader.metadata();
            let id = meta
                .file_metadata()
                .schema_descr()
                .columns()
                .iter()
                .position(|c| c.name() == "id")
                .unwrap();
            for group in meta.row_groups() {
                let bloom = group.column(id).bloom_filter_offset().is_some();
                groups.push((group.num_rows(), bloom));
            }
        }
    }
    groups
}

#[test]
fn rows_are_the_same_whatever_the_threads_and_memory_budget() {
    let every_column = "select * exclude (ingested_at) from findings";
    let (roomy, tight) = (tempdir(), tempdir());
    let out = run(gdq(roomy.path())
        .args(["ingest", "--threads", "1"])
        .arg(testdata("exports")));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(gdq(tight.path())
        .args(["ingest", "--threads", "2", "--memory-mib", "16"])
        .arg(testdata("exports")));
    assert!(out.status.success(), "{}", stderr(&out));

    let (roomy_groups, tight_groups) = (row_groups(roomy.path()), row_groups(tight.path()));
    let files = parquet_files(roomy.path()).len();
    assert_eq!(
        roomy_groups.len(),
        files,
        "with room, each type's rows are one row group"
    );
    assert!(
        tight_groups.len() > roomy_groups.len(),
        "a tight budget closes row groups early ({} vs {})",
        tight_groups.len(),
        roomy_groups.len()
    );
    assert!(
        roomy_groups
            .iter()
            .chain(&tight_groups)
            .all(|(_, bloom)| *bloom)
    );

    let mut a = sql_rows(roomy.path(), every_column);
    let mut b = sql_rows(tight.path(), every_column);
    a.sort();
    b.sort();
    assert_eq!(
        a.len(),
        roomy_groups.iter().map(|(n, _)| *n as usize).sum::<usize>()
    );
    assert!(a == b, "same rows, every column, whatever the parallelism");
}

#[test]
fn a_lookup_by_id_skips_row_groups_by_the_bloom_filter() {
    let wh = tempdir();
    let out = run(gdq(wh.path())
        .args(["ingest", "--memory-mib", "16"])
        .arg(testdata("exports")));
    assert!(out.status.success(), "{}", stderr(&out));
    // An id between the others (min/max statistics cannot rule it out) that is not there.
    let id = sql_rows(
        wh.path(),
        "select id from findings where type = 'Recon:EC2/PortProbeUnprotectedPort' order by id limit 1 offset 3",
    )[0][0]
        .clone();
    let absent = format!("{id}0");
    // With the id index the scan would open no file at all; without it (a warehouse written
    // before it, or files from another writer) the files' own bloom filters do the work.
    std::fs::remove_dir_all(wh.path().join("_gdq/index")).unwrap();
    let plan = sql_rows(
        wh.path(),
        &format!("explain analyze select * from findings where id = '{absent}'"),
    )
    .concat()
    .join(" ");
    let pruned = plan
        .split("row_groups_pruned_bloom_filter=")
        .nth(1)
        .and_then(|rest| rest.split(" matched").next())
        .unwrap_or_else(|| panic!("no bloom filter metric in {plan}"))
        .to_string();
    let (total, matched) = pruned.split_once(" total → ").unwrap_or(("", ""));
    let (total, matched): (u64, u64) = (total.parse().unwrap(), matched.parse().unwrap());
    assert!(
        total > 0 && matched < total,
        "bloom filter pruned nothing: {pruned}"
    );
}
