//! Crash points for tests of the commit protocol.
//!
//! With `GDQ_CRASH_AT=<point>` in the environment, the process aborts (as a SIGKILL would
//! stop it: no unwinding, no cleanup) when it reaches that point. Tests use it to prove that
//! a crash between any two steps of a commit loses nothing and doubles nothing.

/// Aborts the process if `GDQ_CRASH_AT` names this point.
pub fn crash_point(point: &str) {
    if std::env::var_os("GDQ_CRASH_AT").is_some_and(|v| v == point) {
        eprintln!("gdq: crash injected at {point}");
        std::process::abort();
    }
}
