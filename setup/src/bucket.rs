//! Step 3: the export bucket: created if missing, public access blocked, SSE-KMS with the
//! key by default, and gdq's statements merged into its policy.

use aws_sdk_s3::types::{
    BucketLocationConstraint, CreateBucketConfiguration, PublicAccessBlockConfiguration,
    ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration,
    ServerSideEncryptionRule,
};
use serde_json::Value;

use crate::error::{SetupError, aws, code};
use crate::policy::{self, Names};
use crate::report::Report;

const STEP: &str = "bucket";

/// Whether the bucket exists and this identity may use it.
pub async fn exists(c: &aws_sdk_s3::Client, bucket: &str) -> Result<bool, SetupError> {
    match c.head_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(true),
        Err(e) => match e.raw_response().map(|r| r.status().as_u16()) {
            Some(404) => Ok(false),
            Some(301) => Err(SetupError::Conflict(format!(
                "bucket {bucket} is in {}, not in this region: pass --region with the bucket's \
                 region, or choose another --bucket",
                e.raw_response()
                    .and_then(|r| r.headers().get("x-amz-bucket-region"))
                    .unwrap_or("another region")
            ))),
            Some(403) => Err(SetupError::Conflict(format!(
                "bucket {bucket} exists but this identity may not use it (another account's \
                 bucket, or a policy that denies it); choose another --bucket"
            ))),
            _ => Err(aws("s3:HeadBucket")(e)),
        },
    }
}

/// Creates or completes the bucket; returns whether it exists (not when a dry run only
/// plans it).
pub async fn ensure(
    c: &aws_sdk_s3::Client,
    r: &mut Report<'_>,
    names: &Names,
) -> Result<bool, SetupError> {
    let bucket = &names.bucket;
    let existed = exists(c, bucket).await?;
    if existed {
        r.found(STEP, format!("s3://{bucket} exists"));
    } else {
        if !r.dry_run {
            let mut create = c.create_bucket().bucket(bucket);
            // us-east-1 is the one region that refuses an explicit location constraint.
            if names.region != "us-east-1" {
                create = create.create_bucket_configuration(
                    CreateBucketConfiguration::builder()
                        .location_constraint(BucketLocationConstraint::from(names.region.as_str()))
                        .build(),
                );
            }
            create.send().await.map_err(aws("s3:CreateBucket"))?;
        }
        r.change(STEP, format!("create s3://{bucket} in {}", names.region));
    }
    ensure_public_access_block(c, r, bucket, existed).await?;
    ensure_encryption(c, r, names, existed).await?;
    ensure_policy(c, r, names, existed).await?;
    Ok(existed || !r.dry_run)
}

async fn ensure_public_access_block(
    c: &aws_sdk_s3::Client,
    r: &mut Report<'_>,
    bucket: &str,
    existed: bool,
) -> Result<(), SetupError> {
    let blocked = existed
        && match c.get_public_access_block().bucket(bucket).send().await {
            Ok(got) => got.public_access_block_configuration().is_some_and(|b| {
                b.block_public_acls() == Some(true)
                    && b.ignore_public_acls() == Some(true)
                    && b.block_public_policy() == Some(true)
                    && b.restrict_public_buckets() == Some(true)
            }),
            Err(e) if code(&e) == "NoSuchPublicAccessBlockConfiguration" => false,
            Err(e) => return Err(aws("s3:GetPublicAccessBlock")(e)),
        };
    if blocked {
        r.found(STEP, "public access blocked");
        return Ok(());
    }
    if !r.dry_run {
        c.put_public_access_block()
            .bucket(bucket)
            .public_access_block_configuration(
                PublicAccessBlockConfiguration::builder()
                    .block_public_acls(true)
                    .ignore_public_acls(true)
                    .block_public_policy(true)
                    .restrict_public_buckets(true)
                    .build(),
            )
            .send()
            .await
            .map_err(aws("s3:PutPublicAccessBlock"))?;
    }
    r.change(STEP, "block all public access");
    Ok(())
}

/// The bucket's default encryption: (algorithm, KMS key) of its first rule.
pub async fn default_encryption(
    c: &aws_sdk_s3::Client,
    bucket: &str,
) -> Result<Option<(String, Option<String>)>, SetupError> {
    match c.get_bucket_encryption().bucket(bucket).send().await {
        Ok(got) => Ok(got
            .server_side_encryption_configuration()
            .and_then(|c| c.rules().first())
            .and_then(|rule| rule.apply_server_side_encryption_by_default())
            .map(|d| {
                (
                    d.sse_algorithm().as_str().to_string(),
                    d.kms_master_key_id().map(str::to_string),
                )
            })),
        Err(e) if code(&e) == "ServerSideEncryptionConfigurationNotFoundError" => Ok(None),
        Err(e) => Err(aws("s3:GetBucketEncryption")(e)),
    }
}

async fn ensure_encryption(
    c: &aws_sdk_s3::Client,
    r: &mut Report<'_>,
    names: &Names,
    existed: bool,
) -> Result<(), SetupError> {
    let current = if existed {
        default_encryption(c, &names.bucket).await?
    } else {
        None
    };
    let wanted = ("aws:kms".to_string(), Some(names.key_arn.clone()));
    if current.as_ref() == Some(&wanted) {
        r.found(STEP, "default encryption SSE-KMS with the key");
        return Ok(());
    }
    if !r.dry_run {
        let default = ServerSideEncryptionByDefault::builder()
            .sse_algorithm(ServerSideEncryption::AwsKms)
            .kms_master_key_id(&names.key_arn)
            .build()?;
        let configuration = ServerSideEncryptionConfiguration::builder()
            .rules(
                ServerSideEncryptionRule::builder()
                    .apply_server_side_encryption_by_default(default)
                    // S3 Bucket Keys: one KMS call per bucket-key period instead of per object.
                    .bucket_key_enabled(true)
                    .build(),
            )
            .build()?;
        c.put_bucket_encryption()
            .bucket(&names.bucket)
            .server_side_encryption_configuration(configuration)
            .send()
            .await
            .map_err(aws("s3:PutBucketEncryption"))?;
    }
    let was = current
        .map(|(alg, key)| {
            format!(
                " (was {alg}{})",
                key.map(|k| format!(" {k}")).unwrap_or_default()
            )
        })
        .unwrap_or_default();
    r.change(
        STEP,
        format!("default encryption SSE-KMS with {}{was}", names.key_arn),
    );
    Ok(())
}

/// The bucket policy as JSON, if it has one.
pub async fn current_policy(
    c: &aws_sdk_s3::Client,
    bucket: &str,
) -> Result<Option<Value>, SetupError> {
    match c.get_bucket_policy().bucket(bucket).send().await {
        Ok(got) => Ok(got.policy().and_then(|p| serde_json::from_str(p).ok())),
        Err(e) if code(&e) == "NoSuchBucketPolicy" => Ok(None),
        Err(e) => Err(aws("s3:GetBucketPolicy")(e)),
    }
}

async fn ensure_policy(
    c: &aws_sdk_s3::Client,
    r: &mut Report<'_>,
    names: &Names,
    existed: bool,
) -> Result<(), SetupError> {
    let current = if existed {
        current_policy(c, &names.bucket).await?
    } else {
        None
    };
    let ours = policy::bucket_statements(names);
    let ours_count = ours.len();
    let wanted = policy::merge_statements(current.as_ref(), ours);
    if current.as_ref() == Some(&wanted) {
        r.found(STEP, "bucket policy has gdq's statements");
    } else {
        if !r.dry_run {
            c.put_bucket_policy()
                .bucket(&names.bucket)
                .policy(wanted.to_string())
                .send()
                .await
                .map_err(aws("s3:PutBucketPolicy"))?;
        }
        let kept = policy::statements(&wanted).len() - ours_count;
        r.change(
            STEP,
            format!(
                "bucket policy: GuardDuty may write under the prefix; deny non-KMS uploads, \
                 another key, and non-TLS access ({kept} other statement(s) kept)"
            ),
        );
    }
    if r.dry_run {
        r.document("bucket policy", &wanted);
    }
    Ok(())
}
