//! `gdq compact`: far fewer files, the same rows (row by row), one table version per
//! partition (atomic for every Delta reader) even when killed half way, racing an append,
//! and on S3 too.

use std::path::Path;

use crate::moto::{aws, bucket};
use crate::support::*;

const TYPE: &str = "Recon:EC2/PortProbeUnprotectedPort";

/// `n` small exports of one type (3 findings each, ids unique per export).
fn many_small_exports(dir: &Path, n: usize) {
    for i in 0..n {
        let text: String = (0..3)
            .map(|j| {
                serde_json::json!({"id": format!("f{i}-{j}"), "type": TYPE, "accountId": "123456789012",
                    "severity": (i % 9) as f64, "updatedAt": format!("2024-03-{:02}T{:02}:00:00.000Z", 1 + i % 28, j)})
                .to_string()
                    + "\n"
            })
            .collect();
        write_gz(
            &dir.join(format!(
                "AWSLogs/123456789012/GuardDuty/us-east-1/2024/03/01/e{i:04}.jsonl.gz"
            )),
            text.as_bytes(),
        );
    }
}

/// Files and rows of `TYPE`, as `gdq status` reports them.
fn type_status(wh: &Path) -> (u64, u64) {
    let out = run(gdq(wh).args(["status", "--format", "json"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let status: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    status["types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == TYPE)
        .map(|t| (t["files"].as_u64().unwrap(), t["rows"].as_u64().unwrap()))
        .unwrap_or((0, 0))
}

fn files_of_type(wh: &Path) -> u64 {
    type_status(wh).0
}

/// Ingests `exports` with one commit per object (a file per object and type, as a worker
/// leaves them) and checks it succeeded.
fn ingest_one_commit_per_object(wh: &Path, exports: &Path) {
    let out = run(gdq(wh).args(["ingest", "--commit-mib", "0"]).arg(exports));
    assert!(out.status.success(), "{}", stderr(&out));
}

fn compact(wh: &Path, args: &[&str]) -> std::process::Output {
    let out = run(gdq(wh).arg("compact").args(args));
    assert!(out.status.success(), "{}", stderr(&out));
    out
}

#[test]
fn hundreds_of_small_files_become_one_with_the_same_rows() {
    let exports = tempdir();
    many_small_exports(exports.path(), 240);
    let wh = tempdir();
    ingest_one_commit_per_object(wh.path(), exports.path());
    assert_eq!(files_of_type(wh.path()), 240);
    let before = row_fingerprint(wh.path());
    let indexes = || {
        let mut names: Vec<String> = walk(&wh.path().join("_gdq/index"))
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(indexes().len(), 240, "one id index per commit");

    let out = compact(wh.path(), &[]);
    assert!(
        stdout(&out).contains(&format!("{TYPE}: 240 files -> 1, 720 rows -> 720")),
        "{}",
        stdout(&out)
    );
    assert_eq!(files_of_type(wh.path()), 1);
    assert_eq!(row_fingerprint(wh.path()), before);
    // One version removes the 240 inputs and adds the output, both without a data change.
    let commit = last_commit(wh.path());
    let count = |action: &str| commit.iter().filter(|a| a.get(action).is_some()).count();
    assert_eq!((count("remove"), count("add")), (240, 1));
    assert!(
        commit
            .iter()
            .filter_map(|a| a.get("remove").or(a.get("add")))
            .all(|a| a["dataChange"] == false)
    );
    let lookup = "select id from findings where id = 'f117-2'";
    assert_eq!(sql_rows(wh.path(), lookup), [["f117-2"]]);
    assert_eq!(scanned_files(wh.path(), lookup).len(), 1);
    let absent = "select id from findings where id = 'f117-3'";
    assert!(scanned_files(wh.path(), absent).is_empty());
    // The inputs stay for readers of older snapshots until the retention passes; a vacuum
    // then deletes them and the id indexes no file needs any more.
    assert_eq!(parquet_files(wh.path()).len(), 241);
    let vacuumed = run(gdq(wh.path()).args(["vacuum", "--retention", "0s"]));
    assert!(vacuumed.status.success(), "{}", stderr(&vacuumed));
    assert!(
        stdout(&vacuumed).contains("240 removed file(s) past the retention"),
        "{}",
        stdout(&vacuumed)
    );
    assert_eq!(parquet_files(wh.path()).len(), 1);
    let after = indexes();
    assert!(
        after.len() == 1 && after[0].starts_with('c'),
        "the inputs' indexes are retired, the output's written: {after:?}"
    );
    assert_eq!(row_fingerprint(wh.path()), before);
    // A late redelivery of a compacted object adds nothing: the ledger still names it.
    let again = run(gdq(wh.path()).arg("ingest").arg(exports.path()));
    assert!(stdout(&again).contains("0 ingested, 240 already in the warehouse"));
    assert_eq!(row_fingerprint(wh.path()), before);
    let nothing_to_do = compact(wh.path(), &[]);
    assert!(stdout(&nothing_to_do).contains("0 of 1 partitions compacted"));
}

#[test]
fn dedupe_keeps_one_row_per_id_and_updated_at() {
    let exports = tempdir();
    let line = |id: &str, at: &str| {
        serde_json::json!({"id": id, "type": TYPE, "updatedAt": at}).to_string() + "\n"
    };
    let dir = exports.path().join("AWSLogs/1/GuardDuty/r/2024/03/01");
    // Two exports that share a version of finding a (re-exported) but are different objects.
    write_gz(
        &dir.join("one.jsonl.gz"),
        (line("a", "2024-03-01T00:00:00Z") + &line("b", "2024-03-01T00:00:00Z")).as_bytes(),
    );
    write_gz(
        &dir.join("two.jsonl.gz"),
        (line("a", "2024-03-01T00:00:00Z") + &line("a", "2024-03-02T00:00:00Z")).as_bytes(),
    );
    let wh = tempdir();
    ingest_one_commit_per_object(wh.path(), exports.path());
    assert_eq!(sql_count(wh.path(), "select count(*) from findings"), 4);
    let out = compact(wh.path(), &["--dedupe", "--type", TYPE]);
    assert!(stdout(&out).contains("4 rows -> 3"), "{}", stdout(&out));
    assert_eq!(
        sql_rows(
            wh.path(),
            "select id, cast(updated_at as varchar) from findings order by 1, 2"
        ),
        [
            ["a", "2024-03-01T00:00:00Z"],
            ["a", "2024-03-02T00:00:00Z"],
            ["b", "2024-03-01T00:00:00Z"]
        ]
    );
}

#[test]
fn a_crash_at_each_compaction_step_never_shows_a_row_twice_and_a_rerun_finishes() {
    let exports = tempdir();
    many_small_exports(exports.path(), 12);
    for point in ["compact-before-commit", "compact-after-commit"] {
        let wh = tempdir();
        ingest_one_commit_per_object(wh.path(), exports.path());
        let before = row_fingerprint(wh.path());
        let crashed = run(gdq(wh.path()).arg("compact").env("GDQ_CRASH_AT", point));
        assert!(
            stderr(&crashed).contains(&format!("crash injected at {point}")),
            "{point}: {}",
            stderr(&crashed)
        );
        // Whatever the crash left on disk, readers of the table see each row once.
        assert_eq!(
            row_fingerprint(wh.path()),
            before,
            "{point}: after the crash"
        );
        assert_eq!(
            type_status(wh.path()).1,
            36,
            "{point}: status after the crash"
        );
        assert_eq!(
            delta_rows(wh.path()),
            36,
            "{point}: deltalake after the crash"
        );
        let rerun = compact(wh.path(), &[]);
        if point == "compact-before-commit" {
            assert!(
                stdout(&rerun).contains("1 uncommitted batch(es) discarded"),
                "{point}: the crashed compaction's outputs go: {}",
                stdout(&rerun)
            );
        }
        assert_eq!(
            row_fingerprint(wh.path()),
            before,
            "{point}: after the rerun"
        );
        assert_eq!(files_of_type(wh.path()), 1, "{point}");
        assert!(
            std::fs::read_dir(wh.path().join("_gdq/staging"))
                .unwrap()
                .next()
                .is_none(),
            "{point}: staging left behind"
        );
    }
}

#[test]
fn a_compaction_racing_an_append_keeps_both() {
    let exports = tempdir();
    many_small_exports(exports.path(), 10);
    let late = tempdir();
    let late_export = late
        .path()
        .join("AWSLogs/123456789012/GuardDuty/us-east-1/2024/03/02/late.jsonl.gz");
    write_gz(
        &late_export,
        (serde_json::json!({"id": "late", "type": TYPE, "updatedAt": "2024-03-02T00:00:00Z"})
            .to_string()
            + "\n")
            .as_bytes(),
    );
    let wh = tempdir();
    ingest_one_commit_per_object(wh.path(), exports.path());
    // The compaction has read and written its files and waits at its commit ...
    let pause = wh.path().join("go");
    let compaction = gdq(wh.path())
        .arg("compact")
        .env("GDQ_PAUSE_AT", "compact-before-commit")
        .env("GDQ_PAUSE_FILE", &pause)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&pause.with_extension("reached"));
    // ... while an append of the same type commits ...
    let append = ingest(wh.path(), &[&late_export]);
    assert!(append.status.success(), "{}", stderr(&append));
    // ... then the compaction commits one version later, the append's file untouched.
    std::fs::write(&pause, "").unwrap();
    let done = compaction.wait_with_output().unwrap();
    assert!(done.status.success(), "{}", stderr(&done));
    assert!(stdout(&done).contains("10 files -> 1"), "{}", stdout(&done));
    assert_eq!(sql_count(wh.path(), "select count(*) from findings"), 31);
    assert_eq!(
        sql_count(wh.path(), "select count(*) from findings where id = 'late'"),
        1
    );
    assert_eq!(
        files_of_type(wh.path()),
        2,
        "the compaction's output and the append's file"
    );
    assert_eq!(delta_rows(wh.path()), 31);
}

#[test]
fn an_s3_warehouse_compacts_the_same_way() {
    let url = format!("s3://{}/wh", bucket(&aws(), "compact"));
    let wh = Path::new(&url);
    let exports = tempdir();
    many_small_exports(exports.path(), 20);
    ingest_one_commit_per_object(wh, exports.path());
    assert_eq!(files_of_type(wh), 20);
    let before = row_fingerprint(wh);
    let out = compact(wh, &[]);
    assert!(stdout(&out).contains("20 files -> 1"), "{}", stdout(&out));
    assert_eq!(files_of_type(wh), 1);
    assert_eq!(row_fingerprint(wh), before);
    assert_eq!(
        delta_rows(wh),
        60,
        "deltalake reads the compacted table in S3"
    );
}
