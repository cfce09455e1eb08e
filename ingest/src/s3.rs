//! Export objects in S3: clients from the standard AWS configuration, fetching, and the
//! encryption check every object must pass before it is read.

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::types::ServerSideEncryption;
use gdq_aws::AwsError;
use xxhash_rust::xxh3::Xxh3;

/// The AWS clients gdq uses, built from the standard chain: environment, profiles (SSO
/// included), container and instance roles; `AWS_REGION`, `AWS_PROFILE`, `AWS_ENDPOINT_URL`.
/// With a custom endpoint S3 uses path-style addressing, as S3-compatible services expect.
#[derive(Clone, Debug)]
pub struct AwsClients {
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
}

/// The standard chain's configuration, in `region` when given (the region `gdq setup`
/// recorded) instead of the chain's. Every AWS client of gdq is built from one of these.
pub async fn load_config(region: Option<String>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region));
    }
    loader.load().await
}

impl AwsClients {
    pub fn new(config: &SdkConfig) -> AwsClients {
        let s3 = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(config.endpoint_url().is_some())
            .build();
        AwsClients {
            s3: aws_sdk_s3::Client::from_conf(s3),
            sqs: aws_sdk_sqs::Client::new(config),
        }
    }

    /// Clients of `region`, or of the chain's region.
    pub async fn in_region(region: Option<String>) -> AwsClients {
        AwsClients::new(&load_config(region).await)
    }
}

/// Identity of an S3 object version: bucket, key and ETag. A redelivered notification or a
/// later listing of the same object gives the same id; a rewritten object a new one.
pub fn s3_source_id(bucket: &str, key: &str, etag: &str) -> String {
    let mut h = Xxh3::new();
    for part in [bucket, key, etag.trim_matches('"')] {
        h.update(part.as_bytes());
        h.update(&[0]);
    }
    format!("s3-xxh3-{:032x}", h.digest128())
}

pub fn s3_uri(bucket: &str, key: &str) -> String {
    format!("s3://{bucket}/{key}")
}

/// Why an object is refused before it is read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not encrypted with SSE-KMS (server-side encryption: {0})")]
    NotKms(String),
    #[error("encrypted with KMS key {found}, not the expected {expected}")]
    WrongKey { found: String, expected: String },
    #[error("account {0} is not in the --account allow-list")]
    AccountNotAllowed(String),
}

/// Checks that an object is SSE-KMS, with `expected_key` when given (a key ARN, or a key id
/// that the object's key ARN ends with).
pub fn check_encryption(
    sse: Option<&str>,
    kms_key: Option<&str>,
    expected_key: Option<&str>,
) -> Result<(), Refusal> {
    if sse != Some("aws:kms") && sse != Some("aws:kms:dsse") {
        return Err(Refusal::NotKms(sse.unwrap_or("none").to_string()));
    }
    if let Some(expected) = expected_key {
        let found = kms_key.unwrap_or("none");
        let matches = found == expected
            || found.ends_with(&format!(":key/{expected}"))
            || found.ends_with(&format!("/{expected}"));
        if !matches {
            return Err(Refusal::WrongKey {
                found: found.to_string(),
                expected: expected.to_string(),
            });
        }
    }
    Ok(())
}

/// An object fetched whole (export objects are small: at most tens of MB).
pub struct FetchedObject {
    pub etag: String,
    pub sse: Option<String>,
    pub kms_key: Option<String>,
    pub body: Vec<u8>,
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("s3://{bucket}/{key} does not exist (deleted since it was announced?)")]
    NotFound { bucket: String, key: String },
    #[error(transparent)]
    Aws(#[from] AwsError),
}

/// Gets an object and its encryption headers.
pub async fn fetch(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<FetchedObject, FetchError> {
    let response = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| match e.as_service_error() {
            Some(GetObjectError::NoSuchKey(_)) => FetchError::NotFound {
                bucket: bucket.into(),
                key: key.into(),
            },
            _ => FetchError::Aws(AwsError::new(
                "s3:GetObject",
                Some(format!("s3://{bucket}/{key}")),
                &e,
            )),
        })?;
    let sse = response
        .server_side_encryption()
        .map(|s: &ServerSideEncryption| s.as_str().to_string());
    let kms_key = response.ssekms_key_id().map(str::to_string);
    let etag = response
        .e_tag()
        .unwrap_or_default()
        .trim_matches('"')
        .to_string();
    let body = response
        .body
        .collect()
        .await
        .map_err(|e| {
            FetchError::Aws(AwsError::unanswered(
                "s3:GetObject",
                Some(format!("s3://{bucket}/{key}")),
                &e,
            ))
        })?
        .into_bytes()
        .to_vec();
    Ok(FetchedObject {
        etag,
        sse,
        kms_key,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    #[test]
    fn only_sse_kms_with_the_expected_key_passes() {
        assert_eq!(check_encryption(Some("aws:kms"), Some(ARN), None), Ok(()));
        assert_eq!(
            check_encryption(Some("aws:kms"), Some(ARN), Some(ARN)),
            Ok(())
        );
        assert_eq!(
            check_encryption(
                Some("aws:kms"),
                Some(ARN),
                Some("1234abcd-12ab-34cd-56ef-1234567890ab")
            ),
            Ok(())
        );
        assert_eq!(
            check_encryption(Some("AES256"), None, None),
            Err(Refusal::NotKms("AES256".into()))
        );
        assert_eq!(
            check_encryption(None, None, None),
            Err(Refusal::NotKms("none".into()))
        );
        assert!(matches!(
            check_encryption(Some("aws:kms"), Some(ARN), Some("other-key")),
            Err(Refusal::WrongKey { .. })
        ));
    }

    #[test]
    fn source_ids_name_bucket_key_and_etag() {
        let id = s3_source_id("b", "k", "\"e\"");
        assert_eq!(id, s3_source_id("b", "k", "e"));
        assert_ne!(id, s3_source_id("b", "k", "f"));
        assert_ne!(s3_source_id("ab", "c", "e"), s3_source_id("a", "bc", "e"));
    }
}
