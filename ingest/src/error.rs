//! Errors of the ingest side, each naming what it failed on.

use std::io;
use std::path::PathBuf;

use gdq_table::TableError;

/// Why an ingest step failed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("cannot read {path}: {source}")]
    Input { path: PathBuf, source: io::Error },
    #[error("no such file or directory: {0}")]
    MissingPath(PathBuf),
    #[error("cannot read {uri}: {source}")]
    Object { uri: String, source: io::Error },
    /// The warehouse: its table, its files, or a commit.
    #[error(transparent)]
    Table(#[from] TableError),
    #[error("{0}")]
    Usage(String),
    #[error("internal error: {0}")]
    Internal(String),
    #[error("building rows: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
}
