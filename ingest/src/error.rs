//! Errors of the ingest side, each naming what it failed on.

use std::io;
use std::path::PathBuf;

/// Why an ingest step failed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("cannot read {path}: {source}")]
    Input { path: PathBuf, source: io::Error },
    #[error("no such file or directory: {0}")]
    MissingPath(PathBuf),
    #[error("warehouse {path}: {source}")]
    Warehouse { path: PathBuf, source: io::Error },
    #[error("ledger record {path} is unreadable: {reason}")]
    Ledger { path: PathBuf, reason: String },
    #[error("writing Parquet for type {finding_type:?}: {source}")]
    Parquet {
        finding_type: String,
        source: parquet::errors::ParquetError,
    },
    #[error("cannot read {uri}: {source}")]
    Object { uri: String, source: io::Error },
    #[error("{what}: {source}")]
    Store {
        what: String,
        source: object_store::Error,
    },
    #[error("{0}")]
    Usage(String),
    #[error("internal error: {0}")]
    Internal(String),
    #[error("building rows: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
}

impl IngestError {
    pub(crate) fn warehouse(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> IngestError {
        let path = path.into();
        move |source| IngestError::Warehouse { path, source }
    }
}
