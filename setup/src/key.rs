//! Step 2: the customer KMS key GuardDuty encrypts exports with: found by alias or created
//! (symmetric, ENCRYPT_DECRYPT, tagged), its policy merged with gdq's statements, rotation on.

use aws_sdk_kms::types::{KeySpec, KeyState, KeyUsageType, Tag};
use serde_json::Value;

use crate::error::{SetupError, aws, code};
use crate::policy::{self, Names};
use crate::report::Report;

const STEP: &str = "kms key";

/// Stands for the ARN of the key a dry run would create.
fn planned_arn(n: &Names) -> String {
    format!(
        "arn:{}:kms:{}:{}:key/<new-key-id>",
        n.partition, n.region, n.account
    )
}

/// The ARN of the key `alias` names, if any. Fails when it names a key GuardDuty cannot
/// use (not a symmetric encryption key, disabled, pending deletion).
pub async fn find(c: &aws_sdk_kms::Client, alias: &str) -> Result<Option<String>, SetupError> {
    let described = match c.describe_key().key_id(alias).send().await {
        Ok(d) => d,
        Err(e) if code(&e) == "NotFoundException" => return Ok(None),
        Err(e) => return Err(aws("kms:DescribeKey")(e)),
    };
    let Some(meta) = described.key_metadata() else {
        return Ok(None);
    };
    if meta
        .key_spec()
        .is_some_and(|s| *s != KeySpec::SymmetricDefault)
        || meta
            .key_usage()
            .is_some_and(|u| *u != KeyUsageType::EncryptDecrypt)
    {
        return Err(SetupError::Conflict(format!(
            "{alias} names {}, which is not a symmetric encryption key; GuardDuty exports need \
             one (choose another --key-alias)",
            meta.arn().unwrap_or(meta.key_id())
        )));
    }
    if meta.key_state().is_some_and(|s| *s != KeyState::Enabled) {
        return Err(SetupError::Conflict(format!(
            "{alias} names {}, which is {}; enable it or choose another --key-alias",
            meta.arn().unwrap_or(meta.key_id()),
            meta.key_state()
                .map(|s| s.as_str())
                .unwrap_or("not enabled")
        )));
    }
    Ok(meta.arn().map(str::to_string))
}

/// Finds or creates the key; returns its ARN and whether it exists (not when a dry run only
/// plans it). The policy comes later ([`ensure_policy`]): it names the key's own ARN.
pub async fn ensure(
    c: &aws_sdk_kms::Client,
    r: &mut Report<'_>,
    alias: &str,
    names: &Names,
) -> Result<(String, bool), SetupError> {
    if let Some(arn) = find(c, alias).await? {
        r.found(STEP, format!("{alias} → {arn}"));
        return Ok((arn, true));
    }
    if r.dry_run {
        r.change(
            STEP,
            format!("create a symmetric ENCRYPT_DECRYPT key, tagged gdq:managed, named {alias}"),
        );
        return Ok((planned_arn(names), false));
    }
    let tag = Tag::builder()
        .tag_key("gdq:managed")
        .tag_value("true")
        .build()?;
    let created = c
        .create_key()
        .description("GuardDuty findings exports (created by gdq setup)")
        .key_usage(KeyUsageType::EncryptDecrypt)
        .key_spec(KeySpec::SymmetricDefault)
        .tags(tag)
        .send()
        .await
        .map_err(aws("kms:CreateKey"))?;
    let meta = created
        .key_metadata()
        .ok_or_else(|| SetupError::Conflict("kms:CreateKey returned no key".into()))?;
    c.create_alias()
        .alias_name(alias)
        .target_key_id(meta.key_id())
        .send()
        .await
        .map_err(aws("kms:CreateAlias"))?;
    let arn = meta.arn().unwrap_or(meta.key_id()).to_string();
    r.change(STEP, format!("created {arn} as {alias}"));
    Ok((arn, true))
}

/// Merges gdq's statements into the key policy and turns rotation on.
pub async fn ensure_policy(
    c: &aws_sdk_kms::Client,
    r: &mut Report<'_>,
    names: &Names,
    exists: bool,
) -> Result<(), SetupError> {
    let current = if exists {
        current_policy(c, &names.key_arn).await?
    } else {
        None
    };
    let ours: Vec<Value> = policy::statements(&policy::key_policy(names))
        .into_iter()
        // A new key's default policy (and most existing ones) already lets the account
        // administer the key; gdq adds its own such statement only where none is.
        .filter(|s| {
            !(s["Sid"] == policy::KEY_ADMIN_SID && account_administers(current.as_ref(), names))
        })
        .collect();
    let wanted = policy::merge_statements(current.as_ref(), ours);
    if current.as_ref() == Some(&wanted) {
        r.found(STEP, "key policy has gdq's statements");
    } else {
        if !r.dry_run {
            c.put_key_policy()
                .key_id(&names.key_arn)
                .policy_name("default")
                .policy(wanted.to_string())
                .send()
                .await
                .map_err(aws("kms:PutKeyPolicy"))?;
        }
        r.change(
            STEP,
            if names.detectors.len() > 1 {
                format!(
                    "key policy: GuardDuty may GenerateDataKey for the exports of the {} detectors",
                    names.detectors.len()
                )
            } else {
                "key policy: GuardDuty may GenerateDataKey for this detector's exports".to_string()
            },
        );
    }
    if r.dry_run {
        r.document("key policy", &wanted);
    }

    let rotating = exists
        && c.get_key_rotation_status()
            .key_id(&names.key_arn)
            .send()
            .await
            .map_err(aws("kms:GetKeyRotationStatus"))?
            .key_rotation_enabled();
    if rotating {
        r.found(STEP, "rotation enabled");
    } else {
        if !r.dry_run {
            c.enable_key_rotation()
                .key_id(&names.key_arn)
                .send()
                .await
                .map_err(aws("kms:EnableKeyRotation"))?;
        }
        r.change(STEP, "enable yearly rotation");
    }
    Ok(())
}

/// The key's policy as JSON.
pub async fn current_policy(
    c: &aws_sdk_kms::Client,
    key: &str,
) -> Result<Option<Value>, SetupError> {
    let got = c
        .get_key_policy()
        .key_id(key)
        .policy_name("default")
        .send()
        .await
        .map_err(aws("kms:GetKeyPolicy"))?;
    Ok(got.policy().and_then(|p| serde_json::from_str(p).ok()))
}

/// Whether a statement that is not gdq's lets the account root do everything with the key.
fn account_administers(policy_doc: Option<&Value>, n: &Names) -> bool {
    let root = format!("arn:{}:iam::{}:root", n.partition, n.account);
    policy_doc
        .map(policy::statements)
        .unwrap_or_default()
        .iter()
        .filter(|s| {
            !s["Sid"]
                .as_str()
                .is_some_and(|sid| sid.starts_with(policy::SID_PREFIX))
        })
        .any(|s| {
            s["Effect"] == "Allow"
                && s["Action"] == "kms:*"
                && (s["Principal"]["AWS"] == root.as_str()
                    || s["Principal"]["AWS"] == n.account.as_str())
                && s.get("Condition").is_none()
        })
}
