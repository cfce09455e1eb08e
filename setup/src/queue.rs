//! Step 5: the SQS queue the worker reads, and its dead-letter queue: encrypted, a redrive
//! policy, a visibility timeout longer than the worker holds a message, and a queue policy
//! that lets the bucket (of this account only) send its notifications.

use std::collections::HashMap;

use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{Value, json};

use crate::error::{SetupError, aws, code};
use crate::policy::{self, Names};
use crate::report::Report;

/// Deliveries of one message before SQS moves it to the dead-letter queue.
pub const MAX_RECEIVE_COUNT: u32 = 5;
/// The worker keeps a message invisible with a heartbeat every third of this timeout until
/// its rows are committed; the timeout is then how soon a crashed worker's messages come
/// back. Five minutes: a heartbeat call per 100 s per message, a redelivery within minutes.
pub const VISIBILITY_TIMEOUT_SECS: u32 = 300;
/// 14 days, SQS's maximum: a worker outage shorter than this loses no notification.
pub const RETENTION_SECS: u32 = 1_209_600;

/// A queue as setup leaves it.
#[derive(Debug, Clone)]
pub struct Queue {
    pub url: String,
    pub arn: String,
}

pub fn queue_arn(n: &Names, name: &str) -> String {
    format!("arn:{}:sqs:{}:{}:{name}", n.partition, n.region, n.account)
}

pub fn dead_letter_name(queue_name: &str) -> String {
    format!("{queue_name}-dlq")
}

/// The queue's URL, if it exists.
pub async fn url(c: &aws_sdk_sqs::Client, name: &str) -> Result<Option<String>, SetupError> {
    match c.get_queue_url().queue_name(name).send().await {
        Ok(got) => Ok(got.queue_url().map(str::to_string)),
        Err(e)
            if matches!(
                code(&e),
                "AWS.SimpleQueueService.NonExistentQueue" | "QueueDoesNotExist"
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(aws("sqs:GetQueueUrl")(e)),
    }
}

/// Every attribute of the queue.
pub async fn attributes(
    c: &aws_sdk_sqs::Client,
    url: &str,
) -> Result<HashMap<QueueAttributeName, String>, SetupError> {
    let got = c
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .map_err(aws("sqs:GetQueueAttributes"))?;
    Ok(got.attributes().cloned().unwrap_or_default())
}

/// The dead-letter queue, then the queue; returns (queue, dead-letter queue).
pub async fn ensure(
    c: &aws_sdk_sqs::Client,
    r: &mut Report<'_>,
    names: &Names,
    queue_name: &str,
) -> Result<(Queue, Queue), SetupError> {
    let dlq_name = dead_letter_name(queue_name);
    let dlq_arn = queue_arn(names, &dlq_name);
    let dlq = ensure_one(
        c,
        r,
        "dead-letter",
        &dlq_name,
        &dlq_arn,
        dead_letter_attributes(),
        None,
    )
    .await?;
    let policy_doc = policy::queue_policy(names);
    let queue = ensure_one(
        c,
        r,
        "queue",
        queue_name,
        &names.queue_arn,
        queue_attributes(&dlq_arn),
        Some(policy_doc),
    )
    .await?;
    Ok((queue, dlq))
}

// SQS-managed encryption rather than a KMS key: with SSE-KMS on the queue, the key policy
// would also have to let s3.amazonaws.com use the key before S3 could deliver anything.
fn dead_letter_attributes() -> Vec<(QueueAttributeName, String)> {
    vec![
        (QueueAttributeName::SqsManagedSseEnabled, "true".into()),
        (
            QueueAttributeName::MessageRetentionPeriod,
            RETENTION_SECS.to_string(),
        ),
    ]
}

fn queue_attributes(dlq_arn: &str) -> Vec<(QueueAttributeName, String)> {
    vec![
        (QueueAttributeName::SqsManagedSseEnabled, "true".into()),
        (
            QueueAttributeName::MessageRetentionPeriod,
            RETENTION_SECS.to_string(),
        ),
        (
            QueueAttributeName::VisibilityTimeout,
            VISIBILITY_TIMEOUT_SECS.to_string(),
        ),
        (
            QueueAttributeName::ReceiveMessageWaitTimeSeconds,
            "20".into(),
        ),
        (
            QueueAttributeName::RedrivePolicy,
            redrive_policy(dlq_arn).to_string(),
        ),
    ]
}

pub fn redrive_policy(dlq_arn: &str) -> Value {
    json!({ "deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT })
}

/// Whether two attribute values mean the same: JSON documents compare as JSON (with
/// numbers and numeric strings alike, as SQS returns `maxReceiveCount` either way).
fn same_value(name: &QueueAttributeName, current: &str, wanted: &str) -> bool {
    match name {
        QueueAttributeName::RedrivePolicy | QueueAttributeName::Policy => {
            let parse = |s: &str| serde_json::from_str::<Value>(s).ok().map(numbers_as_text);
            parse(current).is_some() && parse(current) == parse(wanted)
        }
        _ => current == wanted,
    }
}

fn numbers_as_text(v: Value) -> Value {
    match v {
        Value::Number(n) => Value::String(n.to_string()),
        Value::Object(map) => map
            .into_iter()
            .map(|(k, v)| (k, numbers_as_text(v)))
            .collect(),
        Value::Array(list) => list.into_iter().map(numbers_as_text).collect(),
        other => other,
    }
}

async fn ensure_one(
    c: &aws_sdk_sqs::Client,
    r: &mut Report<'_>,
    step: &str,
    name: &str,
    arn: &str,
    mut wanted: Vec<(QueueAttributeName, String)>,
    policy_doc: Option<Value>,
) -> Result<Queue, SetupError> {
    let existing = url(c, name).await?;
    let current = match &existing {
        Some(url) => attributes(c, url).await?,
        None => HashMap::new(),
    };
    let merged_policy = policy_doc.map(|ours| {
        let current_policy = current
            .get(&QueueAttributeName::Policy)
            .and_then(|p| serde_json::from_str::<Value>(p).ok());
        policy::merge_statements(current_policy.as_ref(), policy::statements(&ours))
    });
    if let Some(merged) = &merged_policy {
        wanted.push((QueueAttributeName::Policy, merged.to_string()));
    }
    let queue = match existing {
        None => {
            let url = if r.dry_run {
                format!("<url of {name}>")
            } else {
                c.create_queue()
                    .queue_name(name)
                    .set_attributes(Some(wanted.into_iter().collect()))
                    .send()
                    .await
                    .map_err(aws("sqs:CreateQueue"))?
                    .queue_url()
                    .unwrap_or_default()
                    .to_string()
            };
            r.change(
                step,
                format!("create {name}: encrypted, redrive and policy as planned"),
            );
            Queue {
                url,
                arn: arn.to_string(),
            }
        }
        Some(url) => {
            let changed: Vec<(QueueAttributeName, String)> = wanted
                .into_iter()
                .filter(|(k, v)| !current.get(k).is_some_and(|now| same_value(k, now, v)))
                .collect();
            if changed.is_empty() {
                r.found(step, format!("{name} as wanted"));
            } else {
                let what: Vec<&str> = changed.iter().map(|(k, _)| k.as_str()).collect();
                let what = what.join(", ");
                if !r.dry_run {
                    c.set_queue_attributes()
                        .queue_url(&url)
                        .set_attributes(Some(changed.into_iter().collect()))
                        .send()
                        .await
                        .map_err(aws("sqs:SetQueueAttributes"))?;
                }
                r.change(step, format!("{name} (existing): set {what}"));
            }
            let arn = current
                .get(&QueueAttributeName::QueueArn)
                .cloned()
                .unwrap_or_else(|| arn.to_string());
            Queue { url, arn }
        }
    };
    if let (true, Some(merged)) = (r.dry_run, &merged_policy) {
        r.document("queue policy", merged);
    }
    Ok(queue)
}
