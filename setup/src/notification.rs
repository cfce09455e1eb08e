//! Step 6: the bucket notification that announces each new export object on the queue:
//! `s3:ObjectCreated:*` under `[prefix/]AWSLogs/` ending in `.jsonl.gz`, merged with the
//! bucket's other notification configurations.

use aws_sdk_s3::types::{
    Event, FilterRule, FilterRuleName, NotificationConfiguration, NotificationConfigurationFilter,
    QueueConfiguration, S3KeyFilter,
};

use crate::error::{SetupError, aws};
use crate::policy::Names;
use crate::report::Report;

const STEP: &str = "notification";

/// Marks gdq's queue configuration among the bucket's.
pub const ID: &str = "gdq-findings-exports";

/// The key prefix GuardDuty writes under.
pub fn key_prefix(n: &Names) -> String {
    if n.prefix.is_empty() {
        "AWSLogs/".to_string()
    } else {
        format!("{}/AWSLogs/", n.prefix)
    }
}

pub const KEY_SUFFIX: &str = ".jsonl.gz";

pub fn wanted(n: &Names) -> Result<QueueConfiguration, SetupError> {
    let rules = [
        (FilterRuleName::Prefix, key_prefix(n)),
        (FilterRuleName::Suffix, KEY_SUFFIX.to_string()),
    ];
    QueueConfiguration::builder()
        .id(ID)
        .queue_arn(&n.queue_arn)
        .events(Event::from("s3:ObjectCreated:*"))
        .filter(
            NotificationConfigurationFilter::builder()
                .key(
                    S3KeyFilter::builder()
                        .set_filter_rules(Some(
                            rules
                                .into_iter()
                                .map(|(name, value)| {
                                    FilterRule::builder().name(name).value(value).build()
                                })
                                .collect(),
                        ))
                        .build(),
                )
                .build(),
        )
        .build()
        .map_err(|e| SetupError::Usage(e.to_string()))
}

/// What a queue configuration does, independent of how S3 spells it back (rule-name case,
/// order): the queue, the events, the filter rules.
pub fn meaning(q: &QueueConfiguration) -> (String, Vec<String>, Vec<(String, String)>) {
    let mut events: Vec<String> = q.events().iter().map(|e| e.as_str().to_string()).collect();
    events.sort();
    let mut rules: Vec<(String, String)> = q
        .filter()
        .and_then(|f| f.key())
        .map(|k| k.filter_rules())
        .unwrap_or_default()
        .iter()
        .map(|r| {
            (
                r.name()
                    .map(|n| n.as_str().to_ascii_lowercase())
                    .unwrap_or_default(),
                r.value().unwrap_or_default().to_string(),
            )
        })
        .collect();
    rules.sort();
    (q.queue_arn().to_string(), events, rules)
}

pub async fn current(
    c: &aws_sdk_s3::Client,
    bucket: &str,
) -> Result<NotificationConfiguration, SetupError> {
    let got = c
        .get_bucket_notification_configuration()
        .bucket(bucket)
        .send()
        .await
        .map_err(aws("s3:GetBucketNotificationConfiguration"))?;
    Ok(NotificationConfiguration::builder()
        .set_queue_configurations(Some(got.queue_configurations().to_vec()))
        .set_topic_configurations(Some(got.topic_configurations().to_vec()))
        .set_lambda_function_configurations(Some(got.lambda_function_configurations().to_vec()))
        .set_event_bridge_configuration(got.event_bridge_configuration().cloned())
        .build())
}

fn is_ours(q: &QueueConfiguration) -> bool {
    q.id().is_some_and(|id| id == ID)
}

/// `configuration` with gdq's queue configuration replaced by `ours` (or removed).
pub fn merged(
    configuration: &NotificationConfiguration,
    ours: Option<QueueConfiguration>,
) -> NotificationConfiguration {
    let mut queues: Vec<QueueConfiguration> = configuration
        .queue_configurations()
        .iter()
        .filter(|q| !is_ours(q))
        .cloned()
        .collect();
    queues.extend(ours);
    NotificationConfiguration::builder()
        .set_queue_configurations(Some(queues))
        .set_topic_configurations(Some(configuration.topic_configurations().to_vec()))
        .set_lambda_function_configurations(Some(
            configuration.lambda_function_configurations().to_vec(),
        ))
        .set_event_bridge_configuration(configuration.event_bridge_configuration().cloned())
        .build()
}

pub async fn ensure(
    c: &aws_sdk_s3::Client,
    r: &mut Report<'_>,
    names: &Names,
    bucket_exists: bool,
) -> Result<(), SetupError> {
    let ours = wanted(names)?;
    let configuration = if bucket_exists {
        current(c, &names.bucket).await?
    } else {
        NotificationConfiguration::builder().build()
    };
    let present = configuration
        .queue_configurations()
        .iter()
        .find(|q| is_ours(q))
        .map(meaning);
    let what = format!(
        "s3:ObjectCreated:* on {}*{KEY_SUFFIX} → {}",
        key_prefix(names),
        names.queue_arn
    );
    if present == Some(meaning(&ours)) {
        r.found(STEP, what);
        return Ok(());
    }
    let others = configuration.queue_configurations().len()
        + configuration.topic_configurations().len()
        + configuration.lambda_function_configurations().len()
        - usize::from(present.is_some());
    if !r.dry_run {
        c.put_bucket_notification_configuration()
            .bucket(&names.bucket)
            .notification_configuration(merged(&configuration, Some(ours)))
            .send()
            .await
            .map_err(aws("s3:PutBucketNotificationConfiguration"))?;
    }
    r.change(
        STEP,
        format!("{what} ({others} other configuration(s) kept)"),
    );
    Ok(())
}
