//! Exit statuses: the one table every command follows (docs/commands.md#exit-status).

use std::process::ExitCode;

/// How a gdq command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Everything asked was done.
    Ok = 0,
    /// A run-time failure: an input or the warehouse could not be read or written.
    Failed = 1,
    /// Bad usage: arguments, a missing path, SQL that does not plan.
    Usage = 2,
    /// The ingest finished, but some lines or objects went to quarantine.
    Quarantined = 3,
}

impl Status {
    /// How a run over many inputs ended: any input that failed (and will be retried) makes
    /// it a failure; inputs kept in the quarantine make it 3; the same rule for every command.
    pub fn of_run(failed: u64, quarantined: u64) -> Status {
        if failed > 0 {
            Status::Failed
        } else if quarantined > 0 {
            Status::Quarantined
        } else {
            Status::Ok
        }
    }
}

impl From<Status> for ExitCode {
    fn from(s: Status) -> ExitCode {
        ExitCode::from(s as u8)
    }
}

/// An error on its way to one line on stderr and an exit status.
#[derive(Debug)]
pub struct Failure {
    pub code: Status,
    pub message: String,
}

impl Failure {
    pub fn new(code: Status, message: impl std::fmt::Display) -> Self {
        Failure {
            code,
            message: message.to_string(),
        }
    }
}
