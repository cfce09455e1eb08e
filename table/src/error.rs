//! Errors of the table layer, each naming the file, object or version it failed on.

use std::io;
use std::path::PathBuf;

/// Why a table operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// A local file or folder of the warehouse (or of a batch being built) could not be used.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// An object store call failed (S3, or the local file system through object_store).
    #[error("{what}: {source}")]
    Store {
        what: String,
        source: object_store::Error,
    },
    /// delta-rs refused or failed an operation on the table.
    #[error("{what}: {source}")]
    Delta {
        what: String,
        source: Box<deltalake_core::DeltaTableError>,
    },
    #[error("Parquet {what}: {source}")]
    Parquet {
        what: String,
        source: parquet::errors::ParquetError,
    },
    #[error("building rows: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// Something the table holds does not parse (a log entry, a checkpoint, a legacy record).
    #[error("{what} is unreadable: {reason}")]
    Corrupt { what: String, reason: String },
    /// The commit was sent but not confirmed (a timeout, a dropped connection): it may still
    /// land. Its files are kept; the next writer finds out which way it went.
    #[error(
        "commit of {attempt} to {table} not confirmed ({reason}); it may still land, so its files are kept and the next run skips whatever it committed"
    )]
    Unconfirmed {
        attempt: String,
        table: String,
        reason: String,
    },
    /// Another writer changed what this operation was built on in a way it cannot merge
    /// (a compaction's input removed, the table's schema or protocol changed).
    #[error("{0}")]
    Conflict(String),
    /// The warehouse location or a setting is not usable.
    #[error("{0}")]
    Usage(String),
    /// The warehouse is in a state gdq does not write to (say why and what to run).
    #[error("{0}")]
    State(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl TableError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> TableError {
        let path = path.into();
        move |source| TableError::Io { path, source }
    }

    pub(crate) fn store(what: impl Into<String>) -> impl FnOnce(object_store::Error) -> TableError {
        let what = what.into();
        move |source| TableError::Store { what, source }
    }

    pub(crate) fn delta(
        what: impl Into<String>,
    ) -> impl FnOnce(deltalake_core::DeltaTableError) -> TableError {
        let what = what.into();
        move |source| TableError::Delta {
            what,
            source: Box::new(source),
        }
    }

    pub(crate) fn parquet(
        what: impl Into<String>,
    ) -> impl FnOnce(parquet::errors::ParquetError) -> TableError {
        let what = what.into();
        move |source| TableError::Parquet { what, source }
    }
}

pub type Result<T, E = TableError> = std::result::Result<T, E>;
