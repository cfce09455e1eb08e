//! Fault points for tests of the commit protocol: where a test may kill, pause or fail the
//! process. Each reads one environment variable and costs one lookup when unset.
//!
//! - `GDQ_CRASH_AT=<point>`: the process aborts at that point, as a SIGKILL would stop it
//!   (no unwinding, no cleanup), after saying so on stderr.
//! - `GDQ_PAUSE_AT=<point>` with `GDQ_PAUSE_FILE=<path>`: at that point the process creates
//!   `<path>.reached` and waits until `<path>` exists, so a test can act in between (commit
//!   another writer's batch, say) without sleeping.
//! - `GDQ_FAIL_AT=<point>`: [`fail_point`] answers true there, so the code takes its error path
//!   (a quarantine write failing half way through an object, say).

use std::time::Duration;

/// Aborts the process if `GDQ_CRASH_AT` names this point.
pub fn crash_point(point: &str) {
    if std::env::var_os("GDQ_CRASH_AT").is_some_and(|v| v == point) {
        eprintln!("gdq: crash injected at {point}");
        std::process::abort();
    }
}

/// Waits at this point while a test acts, if `GDQ_PAUSE_AT` names it.
pub fn pause_point(point: &str) {
    if std::env::var_os("GDQ_PAUSE_AT").is_none_or(|v| v != point) {
        return;
    }
    let Some(file) = std::env::var_os("GDQ_PAUSE_FILE") else {
        return;
    };
    let file = std::path::PathBuf::from(file);
    let mut reached = file.clone().into_os_string();
    reached.push(".reached");
    let _ = std::fs::write(&reached, point);
    eprintln!("gdq: paused at {point}");
    while !file.exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether the code should fail at this point (`GDQ_FAIL_AT` names it).
pub fn fail_point(point: &str) -> bool {
    std::env::var_os("GDQ_FAIL_AT").is_some_and(|v| v == point)
}
