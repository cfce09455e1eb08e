//! S3 object notifications as they arrive on SQS, in every shape GuardDuty's export path can
//! produce: S3 → SQS directly (`Records[]`), S3 → SNS → SQS (an SNS envelope whose `Message`
//! is the S3 event, or the S3 event itself with raw delivery), S3 → EventBridge → SQS
//! (`detail-type: Object Created`), and the `s3:TestEvent` S3 sends when a notification
//! configuration is saved. Pure parsing: no I/O.

use serde_json::Value;

/// One object named by a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEvent {
    pub bucket: String,
    /// The key, decoded (S3 event keys are form-URL-encoded; EventBridge keys are not).
    pub key: String,
    pub etag: Option<String>,
    pub size: Option<u64>,
    /// `ObjectCreated:Put`, `Object Created`, `ObjectRemoved:Delete`, …
    pub event_name: String,
}

impl ObjectEvent {
    /// Whether the event announces a new object (the only events gdq ingests).
    pub fn is_created(&self) -> bool {
        self.event_name.starts_with("ObjectCreated") || self.event_name == "Object Created"
    }
}

/// What a message body holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Object events (one message may carry several records).
    Objects(Vec<ObjectEvent>),
    /// `s3:TestEvent`: acknowledged and skipped.
    Test,
}

/// Why a message body is not a notification gdq understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotificationError {
    #[error("message body is not JSON: {0}")]
    NotJson(String),
    #[error("message is not an S3 object notification ({0})")]
    Unrecognized(String),
    #[error("record {index} lacks {field}")]
    MissingField { index: usize, field: &'static str },
    #[error("key {0:?} is not valid form-URL-encoding")]
    BadKey(String),
}

/// Parses an SQS message body.
pub fn parse_notification(body: &str) -> Result<Notice, NotificationError> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| NotificationError::NotJson(e.to_string()))?;
    parse_value(&value, 0)
}

fn parse_value(value: &Value, depth: u8) -> Result<Notice, NotificationError> {
    if value.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Notice::Test);
    }
    if let Some(records) = value.get("Records").and_then(Value::as_array) {
        return records
            .iter()
            .enumerate()
            .map(|(i, r)| s3_record(i, r))
            .collect::<Result<_, _>>()
            .map(Notice::Objects);
    }
    if value.get("Type").and_then(Value::as_str) == Some("Notification") && depth == 0 {
        let message =
            value
                .get("Message")
                .and_then(Value::as_str)
                .ok_or(NotificationError::Unrecognized(
                    "SNS envelope without a Message".into(),
                ))?;
        let inner: Value = serde_json::from_str(message)
            .map_err(|e| NotificationError::NotJson(format!("SNS Message: {e}")))?;
        return parse_value(&inner, depth + 1);
    }
    if value.get("source").and_then(Value::as_str) == Some("aws.s3") {
        return eventbridge(value).map(|e| Notice::Objects(vec![e]));
    }
    let hint = value
        .as_object()
        .map(|o| o.keys().take(5).cloned().collect::<Vec<_>>().join(", "))
        .unwrap_or_else(|| "not an object".into());
    Err(NotificationError::Unrecognized(format!("keys: {hint}")))
}

fn s3_record(index: usize, record: &Value) -> Result<ObjectEvent, NotificationError> {
    let field = |path: &[&str], name: &'static str| -> Result<&Value, NotificationError> {
        path.iter()
            .try_fold(record, |v, k| v.get(*k))
            .ok_or(NotificationError::MissingField { index, field: name })
    };
    let bucket = field(&["s3", "bucket", "name"], "s3.bucket.name")?
        .as_str()
        .unwrap_or_default()
        .to_string();
    let raw_key = field(&["s3", "object", "key"], "s3.object.key")?
        .as_str()
        .unwrap_or_default();
    let key =
        form_url_decode(raw_key).ok_or_else(|| NotificationError::BadKey(raw_key.to_string()))?;
    let object = &record["s3"]["object"];
    Ok(ObjectEvent {
        bucket,
        key,
        etag: object.get("eTag").and_then(Value::as_str).map(unquote),
        size: object.get("size").and_then(Value::as_u64),
        event_name: record
            .get("eventName")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
    })
}

fn eventbridge(event: &Value) -> Result<ObjectEvent, NotificationError> {
    let detail = &event["detail"];
    let bucket = detail["bucket"]["name"]
        .as_str()
        .ok_or(NotificationError::MissingField {
            index: 0,
            field: "detail.bucket.name",
        })?;
    let key = detail["object"]["key"]
        .as_str()
        .ok_or(NotificationError::MissingField {
            index: 0,
            field: "detail.object.key",
        })?;
    Ok(ObjectEvent {
        bucket: bucket.to_string(),
        key: key.to_string(),
        etag: detail["object"]["etag"].as_str().map(unquote),
        size: detail["object"]["size"].as_u64(),
        event_name: event["detail-type"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    })
}

fn unquote(etag: &str) -> String {
    etag.trim_matches('"').to_string()
}

/// Decodes an S3 event key: `+` is a space, `%XX` a byte (so `%2F` is `/`). `None` when
/// an escape is malformed or the bytes are not UTF-8.
pub fn form_url_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The parts of an export object key:
/// `[prefix/]AWSLogs/<account>/GuardDuty/<region>/YYYY/MM/DD/<name>.jsonl.gz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportKey {
    pub prefix: String,
    pub account: String,
    pub region: String,
    /// `YYYY-MM-DD`: the export date.
    pub date: String,
    pub name: String,
}

/// Parses a key in GuardDuty's export layout; `None` for any other key.
pub fn parse_export_key(key: &str) -> Option<ExportKey> {
    let (prefix, rest) = if let Some(rest) = key.strip_prefix("AWSLogs/") {
        ("", rest)
    } else {
        let at = key.find("/AWSLogs/")?;
        (&key[..at], &key[at + "/AWSLogs/".len()..])
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let [account, "GuardDuty", region, year, month, day, name] = parts.as_slice() else {
        return None;
    };
    let numeric = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if account.is_empty() || !account.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if region.is_empty()
        || !numeric(year, 4)
        || !numeric(month, 2)
        || !numeric(day, 2)
        || !name.ends_with(".jsonl.gz")
        || name.len() <= ".jsonl.gz".len()
    {
        return None;
    }
    Some(ExportKey {
        prefix: prefix.to_string(),
        account: account.to_string(),
        region: region.to_string(),
        date: format!("{year}-{month}-{day}"),
        name: name.to_string(),
    })
}

/// Sort key that puts exports in time order: their day folder first (objects outside the
/// export layout first), then the key. Ingests take objects in this order so that the rows
/// of every account and region reach a type's row groups day by day, and `updated_at`
/// statistics prune without a sort.
pub fn export_time_key(key: &str) -> (String, String) {
    let day = parse_export_key(key).map(|k| k.date).unwrap_or_default();
    (day, key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_order_by_day_across_accounts_and_regions() {
        let mut keys = vec![
            "AWSLogs/222/GuardDuty/us-east-1/2024/01/01/b.jsonl.gz",
            "p/AWSLogs/111/GuardDuty/eu-west-1/2024/01/02/a.jsonl.gz",
            "AWSLogs/111/GuardDuty/us-east-1/2024/01/01/c.jsonl.gz",
            "elsewhere/x.jsonl.gz",
            "AWSLogs/111/GuardDuty/us-east-1/2023/12/31/d.jsonl.gz",
        ];
        keys.sort_by_cached_key(|k| export_time_key(k));
        assert_eq!(
            keys,
            [
                "elsewhere/x.jsonl.gz",
                "AWSLogs/111/GuardDuty/us-east-1/2023/12/31/d.jsonl.gz",
                "AWSLogs/111/GuardDuty/us-east-1/2024/01/01/c.jsonl.gz",
                "AWSLogs/222/GuardDuty/us-east-1/2024/01/01/b.jsonl.gz",
                "p/AWSLogs/111/GuardDuty/eu-west-1/2024/01/02/a.jsonl.gz",
            ]
        );
    }

    fn shared(name: &str) -> Option<String> {
        std::fs::read_to_string(format!(
            "{}/../../shared/testdata/notifications/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .ok()
    }

    const KEY: &str = "my prefix/AWSLogs/123456789012/GuardDuty/us-east-1/2024/05/30/07a3f2ce-1485-3031-b842-e1f324c4a48d.jsonl.gz";

    fn single(notice: Notice) -> ObjectEvent {
        match notice {
            Notice::Objects(mut v) if v.len() == 1 => v.remove(0),
            other => panic!("expected one object, got {other:?}"),
        }
    }

    #[test]
    fn s3_direct_keys_are_form_decoded() {
        let body = shared("derived-s3-direct-guardduty-key.json").unwrap_or_else(|| {
            format!(r#"{{"Records":[{{"eventName":"ObjectCreated:Put","s3":{{"bucket":{{"name":"gd-findings-123456789012"}},"object":{{"key":"{}","size":4711,"eTag":"d41d8cd98f00b204e9800998ecf8427e"}}}}}}]}}"#, KEY.replace(' ', "+"))
        });
        let e = single(parse_notification(&body).unwrap());
        assert_eq!(e.bucket, "gd-findings-123456789012");
        assert_eq!(e.key, KEY);
        assert_eq!(e.etag.as_deref(), Some("d41d8cd98f00b204e9800998ecf8427e"));
        assert_eq!(e.size, Some(4711));
        assert!(e.is_created());
    }

    #[test]
    fn sns_envelope_and_raw_delivery_give_the_same_event() {
        let direct = r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"a%2Fb+c%2Bd.jsonl.gz","eTag":"\"e1\""}}}]}"#.to_string();
        let envelope = serde_json::json!({"Type": "Notification", "Message": direct}).to_string();
        let a = single(parse_notification(&direct).unwrap());
        let b = single(parse_notification(&envelope).unwrap());
        assert_eq!(a, b);
        assert_eq!(a.key, "a/b c+d.jsonl.gz");
        assert_eq!(a.etag.as_deref(), Some("e1"));
        if let Some(shared) = shared("derived-sns-wrapped-s3-event.json") {
            assert_eq!(single(parse_notification(&shared).unwrap()).key, KEY);
        }
    }

    #[test]
    fn eventbridge_keys_are_taken_as_they_are() {
        let body = shared("derived-eventbridge-s3-object-created.json").unwrap_or_else(|| {
            format!(r#"{{"source":"aws.s3","detail-type":"Object Created","detail":{{"bucket":{{"name":"gd-findings-123456789012"}},"object":{{"key":"{KEY}","etag":"d41d8cd98f00b204e9800998ecf8427e","size":4711}}}}}}"#)
        });
        let e = single(parse_notification(&body).unwrap());
        assert_eq!(e.key, KEY);
        assert!(e.is_created());
        let plus = r#"{"source":"aws.s3","detail-type":"Object Created","detail":{"bucket":{"name":"b"},"object":{"key":"a+b%2F.jsonl.gz"}}}"#;
        assert_eq!(
            single(parse_notification(plus).unwrap()).key,
            "a+b%2F.jsonl.gz"
        );
    }

    #[test]
    fn test_events_and_several_records() {
        let test = shared("s3-test-event.json")
            .unwrap_or_else(|| r#"{"Service":"Amazon S3","Event":"s3:TestEvent"}"#.into());
        assert_eq!(parse_notification(&test).unwrap(), Notice::Test);
        let two = r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"k1"}}},{"eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"b"},"object":{"key":"k2"}}}]}"#;
        let Notice::Objects(events) = parse_notification(two).unwrap() else {
            panic!()
        };
        assert_eq!(events.len(), 2);
        assert!(events[0].is_created() && !events[1].is_created());
    }

    #[test]
    fn what_is_not_a_notification_is_an_error() {
        assert!(matches!(
            parse_notification("nope"),
            Err(NotificationError::NotJson(_))
        ));
        assert!(matches!(
            parse_notification(r#"{"hello":1}"#),
            Err(NotificationError::Unrecognized(_))
        ));
        assert!(matches!(
            parse_notification(r#"{"Records":[{"s3":{}}]}"#),
            Err(NotificationError::MissingField { .. })
        ));
        assert!(matches!(
            parse_notification(
                r#"{"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"%zz"}}}]}"#
            ),
            Err(NotificationError::BadKey(_))
        ));
    }

    #[test]
    fn export_keys_follow_the_guardduty_layout() {
        let k = parse_export_key(KEY).unwrap();
        assert_eq!(
            (
                k.prefix.as_str(),
                k.account.as_str(),
                k.region.as_str(),
                k.date.as_str()
            ),
            ("my prefix", "123456789012", "us-east-1", "2024-05-30")
        );
        assert!(
            parse_export_key("AWSLogs/123456789012/GuardDuty/eu-west-1/2024/01/02/x.jsonl.gz")
                .is_some_and(|k| k.prefix.is_empty())
        );
        for bad in [
            "AWSLogs/123456789012/CloudTrail/us-east-1/2024/05/30/x.jsonl.gz",
            "AWSLogs/123456789012/GuardDuty/us-east-1/2024/05/30/x.json",
            "AWSLogs/123456789012/GuardDuty/us-east-1/24/05/30/x.jsonl.gz",
            "AWSLogs/acct/GuardDuty/us-east-1/2024/05/30/x.jsonl.gz",
            "AWSLogs/123456789012/GuardDuty/us-east-1/2024/05/30/deeper/x.jsonl.gz",
            "other/123456789012/GuardDuty/us-east-1/2024/05/30/x.jsonl.gz",
        ] {
            assert_eq!(parse_export_key(bad), None, "{bad}");
        }
    }
}
