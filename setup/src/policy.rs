//! The policy documents `gdq setup` applies, as pure functions of the names and ARNs they
//! grant between: printed by `--dry-run`, compared with golden documents in tests, and merged
//! into what an account already has.
//!
//! Every statement gdq owns has a `Sid` starting with [`SID_PREFIX`]; merging replaces those
//! and leaves every other statement as it was.

use serde_json::{Value, json};

/// Marks the statements gdq owns.
pub const SID_PREFIX: &str = "gdq";

/// The names and ARNs the documents connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub partition: String,
    pub account: String,
    /// The home region: bucket, key, queue, topic.
    pub region: String,
    /// The detectors that export here, the home region's first.
    pub detectors: Vec<DetectorRef>,
    pub bucket: String,
    /// Without leading or trailing `/`; empty for the bucket root.
    pub prefix: String,
    pub key_arn: String,
    pub queue_arn: String,
    pub topic_arn: String,
    pub rule_arn: String,
}

/// One region's detector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectorRef {
    pub region: String,
    pub id: String,
}

impl Names {
    pub fn detector_arn(&self, d: &DetectorRef) -> String {
        format!(
            "arn:{}:guardduty:{}:{}:detector/{}",
            self.partition, d.region, self.account, d.id
        )
    }

    /// The home region's default event bus, where other regions' rules forward findings.
    pub fn home_bus_arn(&self) -> String {
        format!(
            "arn:{}:events:{}:{}:event-bus/default",
            self.partition, self.region, self.account
        )
    }

    pub fn bucket_arn(&self) -> String {
        format!("arn:{}:s3:::{}", self.partition, self.bucket)
    }

    /// The objects GuardDuty writes: everything under the prefix.
    pub fn objects_arn(&self) -> String {
        if self.prefix.is_empty() {
            format!("{}/*", self.bucket_arn())
        } else {
            format!("{}/{}/*", self.bucket_arn(), self.prefix)
        }
    }

    /// GuardDuty's calls are allowed only on behalf of this account's detectors: the
    /// confused-deputy guard the GuardDuty documentation asks for. With several regions the
    /// ARNs are a list, which a condition reads as any of them.
    fn only_for_these_detectors(&self) -> Value {
        let arns: Vec<String> = self
            .detectors
            .iter()
            .map(|d| self.detector_arn(d))
            .collect();
        let source_arn = match arns.as_slice() {
            [one] => json!(one),
            _ => json!(arns),
        };
        json!({
            "StringEquals": {
                "aws:SourceAccount": self.account,
                "aws:SourceArn": source_arn,
            }
        })
    }
}

/// The statements of a policy document.
pub fn statements(document: &Value) -> Vec<Value> {
    match document.get("Statement") {
        Some(Value::Array(list)) => list.clone(),
        Some(one) => vec![one.clone()],
        None => Vec::new(),
    }
}

fn document(statements: Vec<Value>) -> Value {
    json!({ "Version": "2012-10-17", "Statement": statements })
}

/// Sid of the key policy statement that lets the account administer the key.
pub const KEY_ADMIN_SID: &str = "gdqAccountAdministers";

/// Key policy: the account keeps full control through IAM, and GuardDuty may generate data
/// keys for this detector's exports only.
pub fn key_policy(n: &Names) -> Value {
    document(vec![
        json!({
            "Sid": KEY_ADMIN_SID,
            "Effect": "Allow",
            "Principal": { "AWS": format!("arn:{}:iam::{}:root", n.partition, n.account) },
            "Action": "kms:*",
            "Resource": "*",
        }),
        json!({
            "Sid": "gdqGuardDutyEncryptsExports",
            "Effect": "Allow",
            "Principal": { "Service": "guardduty.amazonaws.com" },
            "Action": "kms:GenerateDataKey",
            "Resource": n.key_arn,
            "Condition": n.only_for_these_detectors(),
        }),
    ])
}

/// gdq's statements of the bucket policy: GuardDuty may find the bucket and write under the
/// prefix; uploads that are not SSE-KMS with this key, and any access without TLS, are
/// refused.
pub fn bucket_statements(n: &Names) -> Vec<Value> {
    vec![
        json!({
            "Sid": "gdqGuardDutyGetBucketLocation",
            "Effect": "Allow",
            "Principal": { "Service": "guardduty.amazonaws.com" },
            "Action": "s3:GetBucketLocation",
            "Resource": n.bucket_arn(),
            "Condition": n.only_for_these_detectors(),
        }),
        json!({
            "Sid": "gdqGuardDutyPutObject",
            "Effect": "Allow",
            "Principal": { "Service": "guardduty.amazonaws.com" },
            "Action": "s3:PutObject",
            "Resource": n.objects_arn(),
            "Condition": n.only_for_these_detectors(),
        }),
        json!({
            "Sid": "gdqDenyUploadsNotKms",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:PutObject",
            "Resource": n.objects_arn(),
            "Condition": { "StringNotEquals": { "s3:x-amz-server-side-encryption": "aws:kms" } },
        }),
        json!({
            "Sid": "gdqDenyOtherKmsKey",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:PutObject",
            "Resource": n.objects_arn(),
            "Condition": {
                "StringNotEquals": {
                    "s3:x-amz-server-side-encryption-aws-kms-key-id": n.key_arn
                }
            },
        }),
        json!({
            "Sid": "gdqDenyWithoutTls",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [n.bucket_arn(), format!("{}/*", n.bucket_arn())],
            "Condition": { "Bool": { "aws:SecureTransport": "false" } },
        }),
    ]
}

/// Queue policy: S3 may send this bucket's notifications, for this account only.
pub fn queue_policy(n: &Names) -> Value {
    document(vec![json!({
        "Sid": "gdqBucketNotifies",
        "Effect": "Allow",
        "Principal": { "Service": "s3.amazonaws.com" },
        "Action": "sqs:SendMessage",
        "Resource": n.queue_arn,
        "Condition": {
            "ArnLike": { "aws:SourceArn": n.bucket_arn() },
            "StringEquals": { "aws:SourceAccount": n.account },
        },
    })])
}

/// Topic policy: EventBridge may publish this rule's alerts.
pub fn topic_policy(n: &Names) -> Value {
    document(vec![json!({
        "Sid": "gdqEventBridgePublishes",
        "Effect": "Allow",
        "Principal": { "Service": "events.amazonaws.com" },
        "Action": "sns:Publish",
        "Resource": n.topic_arn,
        "Condition": { "ArnEquals": { "aws:SourceArn": n.rule_arn } },
    })])
}

/// GuardDuty findings of at least `min_severity`.
pub fn alert_pattern(min_severity: f64) -> Value {
    json!({
        "source": ["aws.guardduty"],
        "detail-type": ["GuardDuty Finding"],
        "detail": { "severity": [{ "numeric": [">=", min_severity] }] },
    })
}

/// The input transformer of the alert: a readable line instead of the raw event.
pub fn alert_input_paths() -> Value {
    json!({
        "type": "$.detail.type",
        "severity": "$.detail.severity",
        "account": "$.detail.accountId",
        "region": "$.region",
        "title": "$.detail.title",
        "id": "$.detail.id",
    })
}

pub const ALERT_TEMPLATE: &str = "\"GuardDuty finding <type> (severity <severity>) in account \
<account>, <region>: <title> https://console.aws.amazon.com/guardduty/home?region=<region>#/findings?macros=current&fId=<id>\"";

/// Trust policy of the role EventBridge takes to forward other regions' findings home.
pub fn forward_role_trust() -> Value {
    document(vec![json!({
        "Sid": "gdqEventBridgeAssumes",
        "Effect": "Allow",
        "Principal": { "Service": "events.amazonaws.com" },
        "Action": "sts:AssumeRole",
    })])
}

/// What that role may do: put events on the home region's default bus, nothing else.
pub fn forward_role_policy(n: &Names) -> Value {
    document(vec![json!({
        "Sid": "gdqForwardToHomeBus",
        "Effect": "Allow",
        "Action": "events:PutEvents",
        "Resource": n.home_bus_arn(),
    })])
}

/// Replaces gdq's statements in an existing policy with `ours`, keeping every other
/// statement (and their order) as it was.
pub fn merge_statements(existing: Option<&Value>, ours: Vec<Value>) -> Value {
    let mut statements: Vec<Value> = existing
        .map(statements)
        .unwrap_or_default()
        .into_iter()
        .filter(|s| !is_ours(s))
        .collect();
    statements.extend(ours);
    document(statements)
}

fn is_ours(statement: &Value) -> bool {
    statement
        .get("Sid")
        .and_then(Value::as_str)
        .is_some_and(|sid| sid.starts_with(SID_PREFIX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        Names {
            partition: "aws".into(),
            account: "123456789012".into(),
            region: "eu-west-1".into(),
            detectors: vec![DetectorRef {
                region: "eu-west-1".into(),
                id: "d1".into(),
            }],
            bucket: "exports".into(),
            prefix: "gd".into(),
            key_arn: "arn:aws:kms:eu-west-1:123456789012:key/k1".into(),
            queue_arn: "arn:aws:sqs:eu-west-1:123456789012:gdq-findings".into(),
            topic_arn: "arn:aws:sns:eu-west-1:123456789012:gdq-alerts".into(),
            rule_arn: "arn:aws:events:eu-west-1:123456789012:rule/gdq-alerts".into(),
        }
    }

    #[test]
    fn merging_replaces_only_gdq_statements() {
        let theirs = json!({"Sid": "Audit", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:role/a"}, "Action": "s3:GetObject", "Resource": "*"});
        let stale = json!({"Sid": "gdqGuardDutyPutObject", "Effect": "Allow"});
        let existing = json!({"Version": "2012-10-17", "Statement": [theirs, stale]});
        let merged = merge_statements(Some(&existing), bucket_statements(&names()));
        let statements = merged["Statement"].as_array().unwrap();
        assert_eq!(statements[0], theirs);
        assert_eq!(statements.len(), 1 + bucket_statements(&names()).len());
        assert_eq!(
            merge_statements(Some(&merged), bucket_statements(&names())),
            merged,
            "merging twice changes nothing"
        );
    }

    #[test]
    fn one_detector_is_named_alone_and_several_as_a_list() {
        let mut n = names();
        let condition = &key_policy(&n)["Statement"][1]["Condition"]["StringEquals"];
        assert_eq!(
            condition["aws:SourceArn"],
            "arn:aws:guardduty:eu-west-1:123456789012:detector/d1"
        );
        n.detectors.push(DetectorRef {
            region: "us-east-1".into(),
            id: "d2".into(),
        });
        let statements = bucket_statements(&n);
        assert_eq!(
            statements[1]["Condition"]["StringEquals"]["aws:SourceArn"],
            json!([
                "arn:aws:guardduty:eu-west-1:123456789012:detector/d1",
                "arn:aws:guardduty:us-east-1:123456789012:detector/d2"
            ])
        );
    }

    #[test]
    fn objects_arn_follows_the_prefix() {
        let mut n = names();
        assert_eq!(n.objects_arn(), "arn:aws:s3:::exports/gd/*");
        n.prefix.clear();
        assert_eq!(n.objects_arn(), "arn:aws:s3:::exports/*");
    }
}
