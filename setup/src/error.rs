//! What can stop setup, verify or teardown: each names the AWS call or the input at fault.

use std::path::PathBuf;

use aws_sdk_s3::error::ProvideErrorMetadata;
use gdq_aws::AwsError;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// An AWS call failed: the call, AWS's code and message, its kind and a hint.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// The account holds something setup cannot use as asked (a key of the wrong kind, a
    /// bucket owned by another account, a second publishing destination).
    #[error("{0}")]
    Conflict(String),
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// An SDK request builder refused the fields gdq gave it: a bug in gdq, not in the input.
    #[error("building an AWS request: {0}")]
    Request(#[from] aws_sdk_s3::error::BuildError),
    /// The setup record could not be read or written.
    #[error("setup record {}: {message}", path.display())]
    Record { path: PathBuf, message: String },
}

/// Maps an SDK error to [`SetupError::Aws`], keeping its kind, AWS's error code and message
/// (or the error's chain of causes when there is no service answer, e.g. a connection failure).
pub(crate) fn aws<E>(action: &'static str) -> impl FnOnce(E) -> SetupError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    move |e| SetupError::Aws(AwsError::new(action, None, &e))
}

/// The AWS error code of a failed call, for the "not found means create it" checks.
pub(crate) fn code<E: ProvideErrorMetadata>(e: &E) -> &str {
    e.code().unwrap_or("")
}
