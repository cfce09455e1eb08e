//! Warehouses of the pre-Delta layout, as the old gdq left them (testdata/legacy), become
//! the Delta table in place: the same rows, no data file rewritten, the ledger carried over,
//! exactly once however often or however interrupted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

/// The exports each fixture was made from (testdata/legacy/README.md).
fn inputs(name: &str) -> Vec<PathBuf> {
    let mut paths = vec![
        testdata("exports/AWSLogs/123456789012"),
        testdata("exports/AWSLogs/205380810795/GuardDuty/us-east-1/2024/03/31"),
        testdata("exports/AWSLogs/205380810795/GuardDuty/us-west-2/2024/01/12"),
        testdata("corrupt/AWSLogs/595921190849/GuardDuty/us-east-1/2024/01"),
    ];
    if name == "crashed-commit" {
        paths.push(testdata(
            "exports/AWSLogs/205380810795/GuardDuty/us-east-1/2024/03/28",
        ));
    }
    paths
}

/// A copy of one fixture warehouse.
fn fixture(dir: &Path, name: &str) -> PathBuf {
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(testdata("legacy/warehouses.tar.gz"))
        .arg("-C")
        .arg(dir)
        .arg(name)
        .status()
        .expect("tar runs");
    assert!(status.success());
    dir.join(name)
}

/// Good findings of the inputs, by the oracle.
fn oracle_rows(name: &str) -> u64 {
    inputs(name)
        .iter()
        .map(|p| oracle_findings(p).len() as u64)
        .sum()
}

/// The data files and their sizes, with the files a committed old batch still had staged
/// under the paths they are published at.
fn files_and_sizes(wh: &Path) -> BTreeMap<PathBuf, u64> {
    let mut files: BTreeMap<PathBuf, u64> = parquet_files(wh)
        .into_iter()
        .map(|p| {
            let size = std::fs::metadata(&p).unwrap().len();
            (p, size)
        })
        .collect();
    let staging = wh.join("_gdq/staging");
    if staging.exists() {
        for path in walk(&staging) {
            let relative = path.strip_prefix(&staging).unwrap();
            let mut parts = relative.components();
            parts.next();
            let published = wh.join(parts.as_path());
            if published.starts_with(wh.join("findings")) {
                files.insert(published, std::fs::metadata(&path).unwrap().len());
            }
        }
    }
    files
}

#[test]
fn every_pre_delta_warehouse_upgrades_in_place_with_its_ledger() {
    for name in [
        "clean",
        "crashed-commit",
        "crashed-compaction",
        "crashed-compaction-after-record",
    ] {
        let dir = tempdir();
        let wh = fixture(dir.path(), name);
        let before = files_and_sizes(&wh);

        // Readers say what to run instead of guessing at the old layout.
        let asked = run(gdq(&wh).arg("select count(*) from findings"));
        assert_eq!(asked.status.code(), Some(1), "{name}");
        assert!(
            stderr(&asked).contains("gdq upgrade"),
            "{name}: {}",
            stderr(&asked)
        );
        assert_eq!(stderr(&asked).lines().count(), 1, "{name}");

        let up = run(gdq(&wh).arg("upgrade"));
        assert!(up.status.success(), "{name}: {}", stderr(&up));
        assert!(stdout(&up).contains("upgraded"), "{name}: {}", stdout(&up));
        let rows = oracle_rows(name);
        assert_eq!(
            sql_count(&wh, "select count(*) from findings"),
            rows,
            "{name}"
        );
        assert_eq!(delta_rows(&wh), rows, "{name}: Delta readers");
        // Every file of the table was there before, unchanged: nothing was rewritten.
        for (path, size) in files_and_sizes(&wh) {
            assert_eq!(before.get(&path), Some(&size), "{name}: {}", path.display());
        }
        let status = status_json(&wh);
        assert_eq!(status["version"], 0, "{name}");
        assert_eq!(
            status["quarantine_records"], 3,
            "{name}: the old quarantine counts"
        );
        assert_eq!(
            status["unreferenced_files"], 0,
            "{name}: hidden files are gone"
        );

        let again = run(gdq(&wh).arg("upgrade"));
        assert!(stdout(&again).contains("nothing to upgrade"), "{name}");
        assert_eq!(
            status_json(&wh)["version"],
            0,
            "{name}: a second upgrade commits nothing"
        );

        // The old ledger carried over: the objects are not ingested again.
        let inputs = inputs(name);
        let paths: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
        let reingest = ingest(&wh, &paths);
        assert!(
            stdout(&reingest).contains("0 ingested"),
            "{name}: {}",
            stdout(&reingest)
        );
        assert_eq!(
            sql_count(&wh, "select count(*) from findings"),
            rows,
            "{name}"
        );
    }
}

#[test]
fn a_crash_during_the_upgrade_changes_nothing_and_the_first_write_upgrades() {
    let dir = tempdir();
    let wh = fixture(dir.path(), "clean");
    let crashed = run(gdq(&wh)
        .arg("upgrade")
        .env("GDQ_CRASH_AT", "upgrade-before-commit"));
    assert!(stderr(&crashed).contains("crash injected at upgrade-before-commit"));
    assert!(!wh.join("findings/_delta_log").exists());
    // An ingest is a write: it upgrades first, then finds every object already in.
    let paths: Vec<PathBuf> = inputs("clean");
    let paths: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let out = ingest(&wh, &paths);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("0 ingested, 5 already"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        sql_count(&wh, "select count(*) from findings"),
        oracle_rows("clean")
    );
}
