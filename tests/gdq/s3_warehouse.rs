//! A warehouse in S3 (`--warehouse s3://bucket/prefix`) against moto: the same rows as a
//! local warehouse, nothing twice, and crash recovery through the lease and staging area.

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
        stored
            .iter()
            .all(|k| !k.contains("/_gdq/staging/") && !k.ends_with("/_gdq/lock")),
        "staging or lock left behind: {stored:?}"
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
    assert_eq!(status["staged_batches"], 0);

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

#[test]
fn a_crash_at_each_commit_step_on_s3_then_a_rerun_gives_the_uninterrupted_rows() {
    let aws = aws();
    let expected = local_reference();
    for point in ["before-commit", "after-commit", "publish-first-file"] {
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
        assert!(
            keys(&aws, &bucket, "wh/_gdq/lock").len() == 1,
            "{point}: the crashed writer still holds the lease"
        );
        // The dead writer's lease and staged batch are taken over once their ttls pass.
        let rerun = run(gdq(wh)
            .arg("ingest")
            .arg(testdata("exports"))
            .env("GDQ_LEASE_TTL_SECS", "1")
            .env("GDQ_STAGING_TTL_SECS", "0"));
        assert!(rerun.status.success(), "{point}: {}", stderr(&rerun));
        let recovered = if point == "before-commit" {
            "0 interrupted commit(s) finished, 1 uncommitted batch(es) discarded"
        } else {
            "1 interrupted commit(s) finished, 0 uncommitted batch(es) discarded"
        };
        assert!(
            stdout(&rerun).contains(recovered),
            "{point}: {}",
            stdout(&rerun)
        );
        assert_eq!(row_fingerprint(wh), expected, "{point}");
        assert!(
            keys(&aws, &bucket, "wh/_gdq/staging/").is_empty(),
            "{point}: staging left behind"
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
    // Within the staging ttl the batch may belong to a writer still uploading.
    let rerun = run(gdq(wh)
        .arg("ingest")
        .arg(testdata("exports"))
        .env("GDQ_LEASE_TTL_SECS", "1"));
    assert!(rerun.status.success(), "{}", stderr(&rerun));
    assert!(!stdout(&rerun).contains("recovered"), "{}", stdout(&rerun));
    assert!(!keys(&aws, &bucket, "wh/_gdq/staging/").is_empty());
    assert_eq!(row_fingerprint(wh), local_reference());
}

#[test]
fn a_bad_warehouse_url_is_one_clear_line() {
    let out = run(gdq(Path::new("gs://bucket/x")).args(["status"]));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("only local paths and s3:// URLs"));
}
