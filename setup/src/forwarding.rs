//! Alerts for every region. An SNS topic cannot be the target of another region's
//! EventBridge rule, but another region's default event bus can: each non-home region gets
//! a rule on GuardDuty findings (the alert pattern) whose target is the home region's
//! default bus, through a role EventBridge assumes that may only `events:PutEvents` there.
//! The forwarded event keeps its source and region, so the home rule alerts on it as on a
//! home finding, and the e-mail names the region the finding came from.

use aws_sdk_eventbridge::types::{RuleState, Target};
use serde_json::Value;

use crate::clients::Clients;
use crate::error::{SetupError, aws, code};
use crate::policy::{self, Names};
use crate::report::Report;

const STEP: &str = "alerts";

/// The id of the forwarding rule's target.
pub const TARGET_ID: &str = "gdq-alerts-forward";

/// The name of the role and of its one inline policy.
pub fn role_name(alerts_name: &str) -> String {
    format!("{alerts_name}-forward")
}

pub fn role_arn(n: &Names, alerts_name: &str) -> String {
    format!(
        "arn:{}:iam::{}:role/{}",
        n.partition,
        n.account,
        role_name(alerts_name)
    )
}

fn decoded(document: Option<&str>) -> Option<Value> {
    // IAM answers policy documents URL-encoded (RFC 3986).
    let text = percent_encoding::percent_decode_str(document?).decode_utf8_lossy();
    serde_json::from_str(&text).ok()
}

/// The forwarding role, created or brought to gdq's trust and permission documents;
/// returns its ARN.
pub async fn ensure_role(
    c: &Clients,
    r: &mut Report<'_>,
    names: &Names,
    alerts_name: &str,
) -> Result<String, SetupError> {
    let name = role_name(alerts_name);
    let trust = policy::forward_role_trust();
    let permissions = policy::forward_role_policy(names);
    if r.dry_run {
        r.document("forwarding role trust policy", &trust);
        r.document("forwarding role policy", &permissions);
    }
    let existing = match c.iam.get_role().role_name(&name).send().await {
        Ok(got) => got
            .role()
            .map(|role| decoded(role.assume_role_policy_document())),
        Err(e) if code(&e) == "NoSuchEntity" => None,
        Err(e) => return Err(aws("iam:GetRole")(e)),
    };
    match &existing {
        Some(current) if current.as_ref() == Some(&trust) => {
            r.found(
                STEP,
                format!("role {name} (EventBridge forwards findings home)"),
            );
        }
        Some(_) => {
            if !r.dry_run {
                c.iam
                    .update_assume_role_policy()
                    .role_name(&name)
                    .policy_document(trust.to_string())
                    .send()
                    .await
                    .map_err(aws("iam:UpdateAssumeRolePolicy"))?;
            }
            r.change(STEP, format!("role {name}: only EventBridge may assume it"));
        }
        None => {
            if !r.dry_run {
                c.iam
                    .create_role()
                    .role_name(&name)
                    .assume_role_policy_document(trust.to_string())
                    .description(
                        "Forwards GuardDuty findings to the home region's event bus (gdq setup)",
                    )
                    .tags(
                        aws_sdk_iam::types::Tag::builder()
                            .key("gdq:managed")
                            .value("true")
                            .build()?,
                    )
                    .send()
                    .await
                    .map_err(aws("iam:CreateRole"))?;
            }
            r.change(
                STEP,
                format!("create role {name} that EventBridge assumes to forward findings home"),
            );
        }
    }
    let current = if existing.is_some() {
        match c
            .iam
            .get_role_policy()
            .role_name(&name)
            .policy_name(&name)
            .send()
            .await
        {
            Ok(got) => decoded(Some(got.policy_document())),
            Err(e) if code(&e) == "NoSuchEntity" => None,
            Err(e) => return Err(aws("iam:GetRolePolicy")(e)),
        }
    } else {
        None
    };
    if current.as_ref() == Some(&permissions) {
        r.found(
            STEP,
            format!("role {name} may put events on {}", names.home_bus_arn()),
        );
    } else {
        if !r.dry_run {
            c.iam
                .put_role_policy()
                .role_name(&name)
                .policy_name(&name)
                .policy_document(permissions.to_string())
                .send()
                .await
                .map_err(aws("iam:PutRolePolicy"))?;
        }
        r.change(
            STEP,
            format!(
                "role {name}: events:PutEvents on {} only",
                names.home_bus_arn()
            ),
        );
    }
    Ok(role_arn(names, alerts_name))
}

/// The target a forwarding rule must have.
pub fn wanted_target(names: &Names, role_arn: &str) -> Result<Target, SetupError> {
    Target::builder()
        .id(TARGET_ID)
        .arn(names.home_bus_arn())
        .role_arn(role_arn)
        .build()
        .map_err(|e| SetupError::Usage(e.to_string()))
}

/// The forwarding target of rule `name` in the region `c` works in, if present.
pub async fn target(
    c: &aws_sdk_eventbridge::Client,
    name: &str,
) -> Result<Option<Target>, SetupError> {
    crate::alerts::target_with_id(c, name, TARGET_ID).await
}

/// One non-home region's rule and target; `c` is EventBridge in that region.
pub async fn ensure_rule(
    c: &aws_sdk_eventbridge::Client,
    r: &mut Report<'_>,
    names: &Names,
    alerts_name: &str,
    min_severity: f64,
    role_arn: &str,
) -> Result<(), SetupError> {
    let pattern = policy::alert_pattern(min_severity);
    let current = crate::alerts::rule(c, alerts_name).await?;
    if current == Some((Some(pattern.clone()), true)) {
        r.found(
            STEP,
            format!("rule {alerts_name}: severity ≥ {min_severity} forwarded home"),
        );
    } else {
        if !r.dry_run {
            c.put_rule()
                .name(alerts_name)
                .event_pattern(pattern.to_string())
                .state(RuleState::Enabled)
                .description("GuardDuty findings forwarded to the home region's alerts (gdq setup)")
                .send()
                .await
                .map_err(aws("events:PutRule"))?;
        }
        r.change(
            STEP,
            format!(
                "rule {alerts_name}: forward findings of severity ≥ {min_severity} to {}",
                names.home_bus_arn()
            ),
        );
    }
    let wanted = wanted_target(names, role_arn)?;
    let existing = if current.is_some() {
        target(c, alerts_name).await?
    } else {
        None
    };
    if existing.as_ref() == Some(&wanted) {
        r.found(STEP, format!("rule target → {}", names.home_bus_arn()));
        return Ok(());
    }
    if !r.dry_run {
        let put = c
            .put_targets()
            .rule(alerts_name)
            .targets(wanted)
            .send()
            .await
            .map_err(aws("events:PutTargets"))?;
        if put.failed_entry_count() > 0 {
            return Err(SetupError::Conflict(format!(
                "events:PutTargets refused the forwarding target of rule {alerts_name}: {}",
                put.failed_entries()
                    .iter()
                    .map(|f| f.error_message().unwrap_or("unknown"))
                    .collect::<Vec<_>>()
                    .join("; ")
            )));
        }
    }
    r.change(
        STEP,
        format!("rule target → {} as role {role_arn}", names.home_bus_arn()),
    );
    Ok(())
}

/// Removes one region's forwarding rule (its target first); returns whether there was one.
pub async fn remove_rule(
    c: &aws_sdk_eventbridge::Client,
    alerts_name: &str,
    dry_run: bool,
) -> Result<bool, SetupError> {
    if crate::alerts::rule(c, alerts_name).await?.is_none() {
        return Ok(false);
    }
    if !dry_run {
        if target(c, alerts_name).await?.is_some() {
            c.remove_targets()
                .rule(alerts_name)
                .ids(TARGET_ID)
                .send()
                .await
                .map_err(aws("events:RemoveTargets"))?;
        }
        c.delete_rule()
            .name(alerts_name)
            .send()
            .await
            .map_err(aws("events:DeleteRule"))?;
    }
    Ok(true)
}

/// Removes the forwarding role and its policy; returns whether there was one.
pub async fn remove_role(
    c: &Clients,
    alerts_name: &str,
    dry_run: bool,
) -> Result<bool, SetupError> {
    let name = role_name(alerts_name);
    match c.iam.get_role().role_name(&name).send().await {
        Ok(_) => {}
        Err(e) if code(&e) == "NoSuchEntity" => return Ok(false),
        Err(e) => return Err(aws("iam:GetRole")(e)),
    }
    if !dry_run {
        match c
            .iam
            .delete_role_policy()
            .role_name(&name)
            .policy_name(&name)
            .send()
            .await
        {
            Err(e) if code(&e) != "NoSuchEntity" => return Err(aws("iam:DeleteRolePolicy")(e)),
            _ => {}
        }
        c.iam
            .delete_role()
            .role_name(&name)
            .send()
            .await
            .map_err(aws("iam:DeleteRole"))?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iam_documents_decode() {
        assert_eq!(
            decoded(Some("%7B%22a%22%3A%20%22b%22%7D")),
            Some(serde_json::json!({"a": "b"}))
        );
        assert_eq!(
            decoded(Some("{\"x\":1}")),
            Some(serde_json::json!({"x": 1}))
        );
        assert_eq!(decoded(Some("not json")), None);
    }
}
