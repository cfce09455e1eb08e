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

#[test]
fn a_crash_at_each_commit_step_then_a_rerun_gives_the_uninterrupted_rows() {
    let expected = reference();
    for point in ["before-commit", "after-commit", "publish-first-file"] {
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
        let rerun = ingest(wh.path(), &[&testdata("exports")]);
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
        assert_eq!(row_fingerprint(wh.path()), expected, "{point}");
        assert!(staging_is_empty(wh.path()), "{point}: staging left behind");
    }
}

#[test]
fn sigkill_at_any_moment_then_a_rerun_gives_the_uninterrupted_rows() {
    let expected = reference();
    for delay_ms in [5, 40, 120, 250, 500] {
        let wh = tempdir();
        let mut child = gdq(wh.path())
            .args(["ingest", "--commit-mib", "0", "--threads", "2"])
            .arg(testdata("exports"))
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
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
}
