//! Step 7 (with `--notify-email`): e-mail alerts. An SNS topic that EventBridge may publish
//! to, one e-mail subscription per address, and an EventBridge rule on GuardDuty findings of
//! at least the asked severity whose input transformer writes a readable message.

use std::collections::HashMap;

use aws_sdk_eventbridge::types::{InputTransformer, RuleState, Target};
use gdq_aws::{AwsError, AwsErrorKind};
use serde_json::Value;

use crate::error::{SetupError, aws, code};
use crate::policy::{self, Names};
use crate::record::AlertsRecord;
use crate::report::Report;

const STEP: &str = "alerts";

/// The id of the rule's target that publishes to the topic.
pub const TARGET_ID: &str = "gdq-alerts-topic";

#[derive(Debug, Clone)]
pub struct AlertsWanted {
    pub emails: Vec<String>,
    pub min_severity: f64,
}

pub fn topic_arn(n: &Names, name: &str) -> String {
    format!("arn:{}:sns:{}:{}:{name}", n.partition, n.region, n.account)
}

pub fn rule_arn(n: &Names, name: &str) -> String {
    format!(
        "arn:{}:events:{}:{}:rule/{name}",
        n.partition, n.region, n.account
    )
}

/// The topic's attributes, if it exists.
pub async fn topic_attributes(
    c: &aws_sdk_sns::Client,
    arn: &str,
) -> Result<Option<HashMap<String, String>>, SetupError> {
    match c.get_topic_attributes().topic_arn(arn).send().await {
        Ok(got) => Ok(Some(got.attributes().cloned().unwrap_or_default())),
        Err(e) if code(&e) == "NotFound" => Ok(None),
        Err(e) => Err(aws("sns:GetTopicAttributes")(e)),
    }
}

/// The rule's (event pattern, state), if it exists.
pub async fn rule(
    c: &aws_sdk_eventbridge::Client,
    name: &str,
) -> Result<Option<(Option<Value>, bool)>, SetupError> {
    match c.describe_rule().name(name).send().await {
        Ok(got) => Ok(Some((
            got.event_pattern()
                .and_then(|p| serde_json::from_str(p).ok()),
            got.state() == Some(&RuleState::Enabled),
        ))),
        Err(e) if code(&e) == "ResourceNotFoundException" => Ok(None),
        Err(e) => Err(aws("events:DescribeRule")(e)),
    }
}

/// The rule's target that publishes to the topic, if present.
pub async fn target(
    c: &aws_sdk_eventbridge::Client,
    rule: &str,
) -> Result<Option<Target>, SetupError> {
    target_with_id(c, rule, TARGET_ID).await
}

/// The rule's target with id `id`, if present.
pub async fn target_with_id(
    c: &aws_sdk_eventbridge::Client,
    rule: &str,
    id: &str,
) -> Result<Option<Target>, SetupError> {
    let listed = c
        .list_targets_by_rule()
        .rule(rule)
        .send()
        .await
        .map_err(aws("events:ListTargetsByRule"))?;
    Ok(listed.targets().iter().find(|t| t.id() == id).cloned())
}

pub fn wanted_target(topic_arn: &str) -> Result<Target, SetupError> {
    let paths: HashMap<String, String> = policy::alert_input_paths()
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let transformer = InputTransformer::builder()
        .set_input_paths_map(Some(paths))
        .input_template(policy::ALERT_TEMPLATE)
        .build()?;
    Target::builder()
        .id(TARGET_ID)
        .arn(topic_arn)
        .input_transformer(transformer)
        .build()
        .map_err(|e| SetupError::Usage(e.to_string()))
}

/// The alerts an earlier setup wired under `name`, if its rule still exists: a run without
/// `--notify-email` keeps them (and records them, so that teardown still removes them).
pub async fn existing(
    events: &aws_sdk_eventbridge::Client,
    names: &Names,
    name: &str,
) -> Result<Option<AlertsRecord>, SetupError> {
    let Some((pattern, _)) = rule(events, name).await? else {
        return Ok(None);
    };
    let min_severity = pattern
        .as_ref()
        .and_then(|p| p["detail"]["severity"][0]["numeric"][1].as_f64())
        .unwrap_or(0.0);
    Ok(Some(AlertsRecord {
        topic_arn: topic_arn(names, name),
        rule_name: name.to_string(),
        rule_arn: rule_arn(names, name),
        min_severity,
        forward_role_arn: None,
    }))
}

pub async fn ensure(
    sns: &aws_sdk_sns::Client,
    events: &aws_sdk_eventbridge::Client,
    r: &mut Report<'_>,
    names: &Names,
    name: &str,
    want: &AlertsWanted,
) -> Result<AlertsRecord, SetupError> {
    let topic = topic_arn(names, name);
    let rule_arn = rule_arn(names, name);
    let names = Names {
        topic_arn: topic.clone(),
        rule_arn: rule_arn.clone(),
        ..names.clone()
    };
    // What did not exist before has no subscriptions or targets to list.
    let topic_existed = ensure_topic(sns, r, &names, name).await?;
    ensure_subscriptions(sns, r, &topic, &want.emails, topic_existed).await?;
    let rule_existed = ensure_rule(events, r, name, want.min_severity).await?;
    ensure_target(events, r, name, &topic, rule_existed).await?;
    Ok(AlertsRecord {
        topic_arn: topic,
        rule_name: name.to_string(),
        rule_arn,
        min_severity: want.min_severity,
        forward_role_arn: None,
    })
}

async fn ensure_topic(
    c: &aws_sdk_sns::Client,
    r: &mut Report<'_>,
    names: &Names,
    name: &str,
) -> Result<bool, SetupError> {
    let attributes = topic_attributes(c, &names.topic_arn).await?;
    match &attributes {
        Some(_) => r.found(STEP, format!("topic {}", names.topic_arn)),
        None => {
            if !r.dry_run {
                c.create_topic()
                    .name(name)
                    .tags(
                        aws_sdk_sns::types::Tag::builder()
                            .key("gdq:managed")
                            .value("true")
                            .build()?,
                    )
                    .send()
                    .await
                    .map_err(aws("sns:CreateTopic"))?;
            }
            r.change(STEP, format!("create topic {}", names.topic_arn));
        }
    }
    let current: Option<Value> = attributes
        .as_ref()
        .and_then(|a| a.get("Policy"))
        .and_then(|p| serde_json::from_str(p).ok());
    let wanted = policy::merge_statements(
        current.as_ref(),
        policy::statements(&policy::topic_policy(names)),
    );
    if current.as_ref() == Some(&wanted) {
        r.found(STEP, "topic policy lets the rule publish");
    } else {
        if !r.dry_run {
            c.set_topic_attributes()
                .topic_arn(&names.topic_arn)
                .attribute_name("Policy")
                .attribute_value(wanted.to_string())
                .send()
                .await
                .map_err(aws("sns:SetTopicAttributes"))?;
        }
        r.change(
            STEP,
            "topic policy: EventBridge may publish this rule's alerts",
        );
    }
    if r.dry_run {
        r.document("topic policy", &wanted);
    }
    Ok(attributes.is_some())
}

async fn ensure_subscriptions(
    c: &aws_sdk_sns::Client,
    r: &mut Report<'_>,
    topic: &str,
    emails: &[String],
    topic_existed: bool,
) -> Result<(), SetupError> {
    let mut subscribed = Vec::new();
    if topic_existed {
        let mut token = None;
        loop {
            let page = c
                .list_subscriptions_by_topic()
                .topic_arn(topic)
                .set_next_token(token)
                .send()
                .await
                .map_err(aws("sns:ListSubscriptionsByTopic"))?;
            subscribed.extend(
                page.subscriptions()
                    .iter()
                    .filter(|s| s.protocol() == Some("email"))
                    .filter_map(|s| s.endpoint().map(str::to_ascii_lowercase)),
            );
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
    }
    for email in emails {
        if subscribed.contains(&email.to_ascii_lowercase()) {
            r.found(STEP, format!("{email} subscribed"));
            continue;
        }
        if !r.dry_run {
            c.subscribe()
                .topic_arn(topic)
                .protocol("email")
                .endpoint(email)
                .send()
                .await
                .map_err(aws("sns:Subscribe"))?;
        }
        r.change(
            STEP,
            format!("subscribe {email} (AWS e-mails a confirmation link; alerts start once it is followed)"),
        );
    }
    Ok(())
}

async fn ensure_rule(
    c: &aws_sdk_eventbridge::Client,
    r: &mut Report<'_>,
    name: &str,
    min_severity: f64,
) -> Result<bool, SetupError> {
    let pattern = policy::alert_pattern(min_severity);
    let current = rule(c, name).await?;
    if r.dry_run {
        r.document("alert rule pattern", &pattern);
    }
    if current == Some((Some(pattern.clone()), true)) {
        r.found(
            STEP,
            format!("rule {name}: GuardDuty findings of severity ≥ {min_severity}"),
        );
        return Ok(true);
    }
    if !r.dry_run {
        c.put_rule()
            .name(name)
            .event_pattern(pattern.to_string())
            .state(RuleState::Enabled)
            .description("GuardDuty findings to e-mail (gdq setup)")
            .send()
            .await
            .map_err(aws("events:PutRule"))?;
    }
    r.change(
        STEP,
        format!("rule {name}: GuardDuty findings of severity ≥ {min_severity}"),
    );
    Ok(current.is_some())
}

async fn ensure_target(
    c: &aws_sdk_eventbridge::Client,
    r: &mut Report<'_>,
    rule_name: &str,
    topic: &str,
    rule_existed: bool,
) -> Result<(), SetupError> {
    let wanted = wanted_target(topic)?;
    let current = if rule_existed {
        target(c, rule_name).await?
    } else {
        None
    };
    if r.dry_run {
        r.document(
            "alert message template",
            &serde_json::json!({
                "InputPathsMap": policy::alert_input_paths(),
                "InputTemplate": policy::ALERT_TEMPLATE,
            }),
        );
    }
    if current.as_ref() == Some(&wanted) {
        r.found(STEP, format!("rule target → {topic}"));
        return Ok(());
    }
    if !r.dry_run {
        let put = c
            .put_targets()
            .rule(rule_name)
            .targets(wanted)
            .send()
            .await
            .map_err(aws("events:PutTargets"))?;
        if put.failed_entry_count() > 0 {
            let why: Vec<String> = put
                .failed_entries()
                .iter()
                .map(|f| f.error_message().unwrap_or("unknown").to_string())
                .collect();
            return Err(SetupError::Aws(AwsError {
                action: "events:PutTargets",
                resource: Some(format!("rule {rule_name}")),
                kind: AwsErrorKind::Service,
                code: None,
                message: why.join("; "),
            }));
        }
    }
    r.change(
        STEP,
        format!("rule target → {topic}, as a readable message"),
    );
    Ok(())
}
