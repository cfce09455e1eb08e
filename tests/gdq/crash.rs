//! A crash at any step of a commit, or a SIGKILL at any time, followed by a re-run, gives
//! exactly the rows of an uninterrupted run.

use std::time::Duration;

use crate::support::*;

fn reference() -> Vec<Vec<String>> {
    let wh = tempdir();
    assert!(ingest(wh.path(), &[&testdata("exports")]).status.success());
    row_fingerprint(wh.path())
}

fn staging_is_empty(wh: &std::path::Path) -> bool {
    std::fs::read_dir(wh.join("_gdq/staging"))
        .map(|mut d| d.next().is_none())
        .unwrap_or(true)
}

/// The commit steps a test can crash at, and whether the crashed batch is in the table.
pub const COMMIT_STEPS: [(&str, bool); 3] = [
    ("before-publish", false),
    ("before-commit", false),
    ("after-commit", true),
];

#[test]
fn a_crash_at_each_commit_step_then_a_rerun_gives_the_uninterrupted_rows() {
    let expected = reference();
    for (point, committed) in COMMIT_STEPS {
        let wh = tempdir();
        let crashed = run(gdq(wh.path())
            .args(["ingest", "--commit-mib", "0"])
            .arg(testdata("exports"))
            .env("GDQ_CRASH_AT", point));
        assert!(
            !crashed.status.success(),
            "{point}: the crash point must be reached"
        );
        assert!(stderr(&crashed).contains(&format!("crash injected at {point}")));
        // Readers see the table as of the last commit: the crashed batch all or nothing.
        let visible = sql_count(wh.path(), "select count(*) from findings");
        assert_eq!(visible > 0, committed, "{point}: {visible} rows visible");
        assert_eq!(
            delta_rows(wh.path()),
            visible,
            "{point}: Delta readers agree"
        );
        let rerun = ingest(wh.path(), &[&testdata("exports")]);
        assert!(rerun.status.success(), "{point}: {}", stderr(&rerun));
        assert_eq!(
            stdout(&rerun).contains("1 uncommitted batch(es) discarded"),
            !committed,
            "{point}: {}",
            stdout(&rerun)
        );
        assert_eq!(row_fingerprint(wh.path()), expected, "{point}");
        assert!(staging_is_empty(wh.path()), "{point}: staging left behind");
        assert_eq!(
            status_json(wh.path())["unreferenced_files"],
            0,
            "{point}: no file but the committed ones"
        );
    }
}

#[test]
fn sigkill_at_any_moment_then_a_rerun_gives_the_uninterrupted_rows() {
    use std::os::unix::process::ExitStatusExt;
    let expected = reference();
    let total: u64 = expected.len().try_into().unwrap();
    // Kills that landed while the ingest ran, and those of them after some of its commits.
    let (mut landed, mut between_commits) = (Vec::new(), Vec::new());
    for delay_ms in [5, 40, 120, 250, 500, 1500] {
        let wh = tempdir();
        let mut child = gdq(wh.path())
            .args(["ingest", "--commit-mib", "0", "--threads", "2"])
            .arg(testdata("exports"))
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        if child.wait().unwrap().signal() == Some(SIGKILL) {
            landed.push(delay_ms);
            let visible = sql_count(wh.path(), "select count(*) from findings");
            if visible > 0 && visible < total {
                between_commits.push(delay_ms);
            }
        }
        let rerun = ingest(wh.path(), &[&testdata("exports")]);
        assert!(
            rerun.status.success(),
            "after kill at {delay_ms} ms: {}",
            stderr(&rerun)
        );
        assert_eq!(
            row_fingerprint(wh.path()),
            expected,
            "after kill at {delay_ms} ms"
        );
    }
    assert!(
        !between_commits.is_empty(),
        "no kill landed between two commits (kills that landed: {landed:?} ms)"
    );
}

/// SIGKILL's number on every Unix gdq builds for.
const SIGKILL: i32 = 9;
