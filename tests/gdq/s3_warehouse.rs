//! A warehouse in S3 (`--warehouse s3://bucket/prefix`) against moto: the same rows as a
//! local warehouse, nothing twice, a Delta table other engines read, and crash recovery:
//! uncommitted files are never visible and go once they are older than the ttl.

use std::path::Path;

use crate::moto::{aws, bucket, keys};
use crate::support::*;

fn local_reference() -> Vec<Vec<String>> {
    let wh = tempdir();
    assert!(ingest(wh.path(), &[&testdata("exports")]).status.success());
    row_fingerprint(wh.path())
}

#[test]
fn an_s3_warehouse_holds_the_rows_of_a_local_one_and_a_rerun_adds_nothing() {
    let aws = aws();
    let bucket = bucket(&aws, "s3-wh");
    let url = format!("s3://{bucket}/security/gdq");
    let wh = Path::new(&url);

    let first = ingest(wh, &[&testdata("exports")]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(stdout(&first).contains(&format!("ingest into {url}")));
    assert_eq!(row_fingerprint(wh), local_reference());
    assert_eq!(
        gdq_type_counts(wh),
        oracle_type_counts(&testdata("exports"))
    );

    let again = ingest(wh, &[&testdata("exports")]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stdout(&again).contains("0 ingested, 11 already in the warehouse"),
        "{}",
        stdout(&again)
    );
    assert_eq!(row_fingerprint(wh), local_reference());

    let stored = keys(&aws, &bucket, "security/gdq/");
    assert!(
        stored.iter().all(|k| !k.contains("/_gdq/staging/")),
        "staging left behind: {stored:?}"
    );
    assert!(
        stored
            .iter()
            .any(|k| k.ends_with("/findings/_delta_log/00000000000000000001.json")),
        "the table's log is beside its partitions: {stored:?}"
    );
    let data: Vec<&String> = stored
        .iter()
        .filter(|k| k.contains("/findings/type="))
        .collect();
    assert!(!data.is_empty() && data.iter().all(|k| k.ends_with(".parquet")));
    assert!(
        data.iter().any(|k| k.contains("%3A") && k.contains("%2F")),
        "partition folders are percent-encoded exactly as locally: {data:?}"
    );

    let status = run(gdq(wh).args(["status", "--format", "json"]));
    assert!(status.status.success(), "{}", stderr(&status));
    let status: serde_json::Value = serde_json::from_str(&stdout(&status)).unwrap();
    let rows: u64 = status["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["rows"].as_u64().unwrap())
        .sum();
    assert_eq!(rows, sql_count(wh, "select count(*) from findings"));
    assert_eq!(status["objects"], 11);
    assert_eq!(status["unreferenced_files"], 0);
    // Delta readers read the same table from S3.
    let read = delta_readers(wh, None);
    let expected = gdq_type_counts(wh);
    for reader in ["deltalake", "polars"] {
        let got: std::collections::BTreeMap<String, u64> = read[reader]["types"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
            .collect();
        assert_eq!(got, expected, "{reader}");
    }

    // The id index is published with its commit and narrows a lookup in S3 as locally.
    assert_eq!(
        stored
            .iter()
            .filter(|k| k.contains("/_gdq/index/") && k.ends_with(".ids"))
            .count(),
        1,
        "{stored:?}"
    );
    let id = sql_rows(wh, "select min(id) from findings")
        .remove(0)
        .remove(0);
    let lookup = format!("select id from findings where id = '{id}'");
    assert!(!sql_rows(wh, &lookup).is_empty());
    let scanned = scanned_files(wh, &lookup).len();
    assert!(
        (1..=2).contains(&scanned),
        "{scanned} of {} files",
        data.len()
    );
}

/// Keys under the warehouse's table folders that are data files.
fn data_keys(aws: &crate::moto::Aws, bucket: &str) -> Vec<String> {
    keys(aws, bucket, "wh/findings/")
        .into_iter()
        .filter(|k| k.ends_with(".parquet") && !k.contains("/_delta_log/"))
        .collect()
}

#[test]
fn a_crash_at_each_commit_step_on_s3_then_a_rerun_gives_the_uninterrupted_rows() {
    let aws = aws();
    let expected = local_reference();
    for (point, committed) in crate::crash::COMMIT_STEPS {
        let bucket = bucket(&aws, "s3-crash");
        let url = format!("s3://{bucket}/wh");
        let wh = Path::new(&url);
        let crashed = run(gdq(wh)
            .args(["ingest", "--commit-mib", "0"])
            .arg(testdata("exports"))
            .env("GDQ_CRASH_AT", point));
        assert!(
            stderr(&crashed).contains(&format!("crash injected at {point}")),
            "{point}: {}",
            stderr(&crashed)
        );
        let visible = sql_count(wh, "select count(*) from findings");
        assert_eq!(visible > 0, committed, "{point}: {visible} rows visible");
        assert_eq!(delta_rows(wh), visible, "{point}: Delta readers agree");
        // The dead writer's uploads are taken for debris once older than the ttl (here at
        // once: a writer with that ttl could commit nothing itself, so a vacuum does it).
        let vacuum = run(gdq(wh).arg("vacuum").env("GDQ_STAGING_TTL_SECS", "0"));
        assert!(vacuum.status.success(), "{point}: {}", stderr(&vacuum));
        assert_eq!(
            stdout(&vacuum).contains("of 1 uncommitted batch(es)"),
            point == "before-commit",
            "{point}: {}",
            stdout(&vacuum)
        );
        let rerun = run(gdq(wh).arg("ingest").arg(testdata("exports")));
        assert!(rerun.status.success(), "{point}: {}", stderr(&rerun));
        assert_eq!(row_fingerprint(wh), expected, "{point}");
        assert_eq!(
            data_keys(&aws, &bucket).len() as u64,
            status_json(wh)["types"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["files"].as_u64().unwrap())
                .sum::<u64>(),
            "{point}: every data file in S3 is in the table"
        );
    }
}

#[test]
fn an_unfinished_batch_of_a_live_writer_is_left_alone() {
    let aws = aws();
    let bucket = bucket(&aws, "s3-live");
    let url = format!("s3://{bucket}/wh");
    let wh = Path::new(&url);
    let crashed = run(gdq(wh)
        .args(["ingest", "--commit-mib", "0"])
        .arg(testdata("exports"))
        .env("GDQ_CRASH_AT", "before-commit"));
    assert!(!crashed.status.success());
    let uploaded = data_keys(&aws, &bucket);
    assert!(!uploaded.is_empty());
    // Within the ttl the files may belong to a writer still about to commit.
    let rerun = run(gdq(wh).arg("ingest").arg(testdata("exports")));
    assert!(rerun.status.success(), "{}", stderr(&rerun));
    assert!(!stdout(&rerun).contains("discarded"), "{}", stdout(&rerun));
    let kept = data_keys(&aws, &bucket);
    assert!(uploaded.iter().all(|k| kept.contains(k)));
    assert_eq!(status_json(wh)["unreferenced_files"], uploaded.len());
    assert_eq!(row_fingerprint(wh), local_reference());
    // An operator's vacuum with the ttl passed removes them.
    let vacuum = run(gdq(wh).arg("vacuum").env("GDQ_STAGING_TTL_SECS", "0"));
    assert!(vacuum.status.success(), "{}", stderr(&vacuum));
    assert_eq!(status_json(wh)["unreferenced_files"], 0);
    assert_eq!(row_fingerprint(wh), local_reference());
}

#[test]
fn a_bad_warehouse_url_is_one_clear_line() {
    let out = run(gdq(Path::new("gs://bucket/x")).args(["status"]));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("only local paths and s3:// URLs"));
}
