//! An AWS call that failed, kept as what it is: which call, on which resource, what kind of
//! failure, AWS's own code and message, and a hint for the failures users meet most.
//!
//! The SDK's own `Display` of an error says "service error"; flattening its chain into a
//! string loses whether it was a missing permission or a throttle. Every AWS call of gdq's
//! (setup, the worker, `ingest s3://`) maps its error through [`AwsError::new`].

use std::error::Error;
use std::fmt;

use aws_credential_types::provider::error::CredentialsError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// What kind of failure an AWS call met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsErrorKind {
    /// The caller lacks a permission (IAM, a key policy or a bucket policy said no).
    AccessDenied,
    /// No credentials, or expired or invalid ones.
    Credentials,
    /// AWS kept throttling after the SDK's retries.
    Throttled,
    /// The resource does not exist.
    NotFound,
    /// No answer in time.
    Timeout,
    /// The request did not reach AWS (DNS, connection, TLS).
    Network,
    /// Any other answer from the service.
    Service,
}

/// A failed AWS call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct AwsError {
    /// The IAM action of the call, `s3:GetObject`.
    pub action: &'static str,
    /// What it was called on (`s3://bucket/key`, a queue URL), when known.
    pub resource: Option<String>,
    pub kind: AwsErrorKind,
    /// AWS's error code (`AccessDenied`), when the service answered.
    pub code: Option<String>,
    /// AWS's message, or the chain of causes when there was no answer.
    pub message: String,
}

impl AwsError {
    /// Classifies an SDK error (`SdkError<…>` implements both traits).
    pub fn new<E>(action: &'static str, resource: Option<String>, e: &E) -> AwsError
    where
        E: ProvideErrorMetadata + Error + 'static,
    {
        let code = e.code().map(str::to_string);
        let chain = causes(e);
        let kind = match code.as_deref() {
            Some(code) => kind_of_code(code),
            None => kind_of_chain(e, &chain),
        };
        let message = match (e.message(), &code) {
            (Some(text), _) => text.to_string(),
            (None, Some(_)) => String::new(),
            (None, None) => chain,
        };
        AwsError {
            action,
            resource,
            kind,
            code,
            message,
        }
    }

    /// A call that got no service answer to classify, e.g. a body that stopped streaming.
    pub fn unanswered(
        action: &'static str,
        resource: Option<String>,
        e: &(dyn Error + 'static),
    ) -> AwsError {
        let message = causes(e);
        AwsError {
            action,
            resource,
            kind: kind_of_chain(e, &message),
            code: None,
            message,
        }
    }

    /// What to do about it, for the kinds where gdq can say.
    pub fn hint(&self) -> Option<String> {
        let on = self
            .resource
            .as_deref()
            .map_or_else(String::new, |r| format!(" on {r}"));
        match self.kind {
            AwsErrorKind::AccessDenied => Some(format!(
                "grant {}{on} to the caller (docs/operations.md has each command's IAM policy)",
                self.action
            )),
            AwsErrorKind::Credentials
                if self.message.contains("SSO") || self.message.contains("sso") =>
            {
                Some("the SSO session has expired: run `aws sso login`".into())
            }
            AwsErrorKind::Credentials => Some(
                "check the credentials (AWS_PROFILE, `aws sso login`, `aws sts get-caller-identity`)"
                    .into(),
            ),
            AwsErrorKind::Throttled => {
                Some("AWS throttled past the SDK's retries: run again later, or lower --concurrency".into())
            }
            AwsErrorKind::Network | AwsErrorKind::Timeout => Some(
                "check the region, AWS_ENDPOINT_URL and the network path to AWS".into(),
            ),
            AwsErrorKind::NotFound | AwsErrorKind::Service => None,
        }
    }
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.action)?;
        if let Some(resource) = &self.resource {
            write!(f, " on {resource}")?;
        }
        write!(f, " failed: ")?;
        match (&self.code, self.message.is_empty()) {
            (Some(code), true) => write!(f, "{code}")?,
            (Some(code), false) => write!(f, "{code}: {}", self.message)?,
            (None, _) => write!(f, "{}", self.message)?,
        }
        if let Some(hint) = self.hint() {
            write!(f, "; hint: {hint}")?;
        }
        Ok(())
    }
}

/// AWS's error codes, by kind (S3's, the JSON services', the query services').
fn kind_of_code(code: &str) -> AwsErrorKind {
    match code {
        "AccessDenied"
        | "AccessDeniedException"
        | "AuthorizationError"
        | "UnauthorizedOperation"
        | "KMS.AccessDeniedException"
        | "Forbidden" => AwsErrorKind::AccessDenied,
        "ExpiredToken"
        | "ExpiredTokenException"
        | "RequestExpired"
        | "InvalidClientTokenId"
        | "UnrecognizedClientException"
        | "InvalidAccessKeyId"
        | "SignatureDoesNotMatch"
        | "InvalidSignatureException"
        | "IncompleteSignature"
        | "MissingAuthenticationToken" => AwsErrorKind::Credentials,
        "Throttling"
        | "ThrottlingException"
        | "ThrottledException"
        | "SlowDown"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "RequestThrottled"
        | "RequestThrottledException"
        | "LimitExceededException" => AwsErrorKind::Throttled,
        "NoSuchKey"
        | "NoSuchBucket"
        | "NotFound"
        | "NotFoundException"
        | "ResourceNotFoundException"
        | "NotFoundException.Detector"
        | "AWS.SimpleQueueService.NonExistentQueue"
        | "QueueDoesNotExist"
        | "NonExistentQueue" => AwsErrorKind::NotFound,
        "RequestTimeout" | "RequestTimeoutException" => AwsErrorKind::Timeout,
        _ => AwsErrorKind::Service,
    }
}

/// A failure with no answer from AWS: credentials that could not be loaded are in the
/// chain as the SDK's own type; timeouts and connection failures only as text.
fn kind_of_chain(e: &(dyn Error + 'static), chain: &str) -> AwsErrorKind {
    let mut next: Option<&(dyn Error + 'static)> = Some(e);
    while let Some(cause) = next {
        if cause.downcast_ref::<CredentialsError>().is_some() {
            return AwsErrorKind::Credentials;
        }
        next = cause.source();
    }
    let chain = chain.to_ascii_lowercase();
    if chain.contains("timeout") || chain.contains("timed out") {
        AwsErrorKind::Timeout
    } else if chain.contains("credential") || chain.contains("token") {
        AwsErrorKind::Credentials
    } else {
        AwsErrorKind::Network
    }
}

/// "dispatch failure: io error: connection refused": each cause once.
pub fn causes(e: &dyn Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_types::error::ErrorMetadata;

    /// A service error as the SDK hands it over: code and message in its metadata.
    #[derive(Debug)]
    struct Answer(ErrorMetadata);

    impl fmt::Display for Answer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "service error")
        }
    }
    impl Error for Answer {}
    impl ProvideErrorMetadata for Answer {
        fn meta(&self) -> &ErrorMetadata {
            &self.0
        }
    }

    fn answer(code: &str, message: &str) -> Answer {
        Answer(ErrorMetadata::builder().code(code).message(message).build())
    }

    #[test]
    fn access_denied_names_the_action_and_resource_to_grant() {
        let e = AwsError::new(
            "s3:GetObject",
            Some("s3://exports/AWSLogs/1/x.jsonl.gz".into()),
            &answer("AccessDenied", "Access Denied"),
        );
        assert_eq!(e.kind, AwsErrorKind::AccessDenied);
        assert_eq!(
            e.to_string(),
            "s3:GetObject on s3://exports/AWSLogs/1/x.jsonl.gz failed: AccessDenied: Access Denied; \
             hint: grant s3:GetObject on s3://exports/AWSLogs/1/x.jsonl.gz to the caller \
             (docs/operations.md has each command's IAM policy)"
        );
    }

    #[test]
    fn codes_of_every_protocol_map_to_their_kind() {
        for (code, kind) in [
            ("AccessDeniedException", AwsErrorKind::AccessDenied),
            ("AuthorizationError", AwsErrorKind::AccessDenied),
            ("ExpiredToken", AwsErrorKind::Credentials),
            ("UnrecognizedClientException", AwsErrorKind::Credentials),
            ("SlowDown", AwsErrorKind::Throttled),
            ("ThrottlingException", AwsErrorKind::Throttled),
            ("NoSuchBucket", AwsErrorKind::NotFound),
            (
                "AWS.SimpleQueueService.NonExistentQueue",
                AwsErrorKind::NotFound,
            ),
            ("InvalidParameterValue", AwsErrorKind::Service),
        ] {
            assert_eq!(
                AwsError::new("x:Y", None, &answer(code, "m")).kind,
                kind,
                "{code}"
            );
        }
    }

    /// A failure with no service answer, as the SDK raises it: "dispatch failure" and the
    /// cause beneath it.
    #[derive(Debug)]
    struct Dispatch(Box<dyn Error + Send + Sync>);
    impl fmt::Display for Dispatch {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "dispatch failure")
        }
    }
    impl Error for Dispatch {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(self.0.as_ref())
        }
    }
    impl ProvideErrorMetadata for Dispatch {
        fn meta(&self) -> &ErrorMetadata {
            static EMPTY: std::sync::OnceLock<ErrorMetadata> = std::sync::OnceLock::new();
            EMPTY.get_or_init(|| ErrorMetadata::builder().build())
        }
    }

    /// An expired SSO token: the credentials provider's error in the chain.
    #[test]
    fn an_expired_sso_session_says_aws_sso_login() {
        let e = AwsError::new(
            "sqs:ReceiveMessage",
            None,
            &Dispatch(Box::new(CredentialsError::provider_error(
                "the SSO session associated with this profile has expired",
            ))),
        );
        assert_eq!(e.kind, AwsErrorKind::Credentials);
        assert!(e.to_string().contains("run `aws sso login`"), "{e}");
        assert!(e.to_string().contains("has expired"), "{e}");
    }

    #[test]
    fn no_answer_at_all_is_a_network_failure_with_its_causes() {
        let refused =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let e = AwsError::new(
            "s3:ListBucket",
            Some("s3://b/".into()),
            &Dispatch(Box::new(refused)),
        );
        assert_eq!(e.kind, AwsErrorKind::Network);
        assert!(
            e.to_string().starts_with(
                "s3:ListBucket on s3://b/ failed: dispatch failure: connection refused"
            ),
            "{e}"
        );
    }
}
