//! `gdq setup`, `gdq setup verify` and `gdq teardown` against moto (DESIGN §6), with the
//! GuardDuty export calls moto lacks from `tests/moto_server.py`. Each test works in its
//! own region: a region has one GuardDuty detector, so tests sharing one would share it.
//! The state each test checks is read back with the SDK clients directly, not through gdq.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::moto::{Aws, aws_env, aws_in, unique};
use crate::support::{run, sql_count, stderr, stdout};

/// Clients of one region of the emulator.
pub(crate) struct Region {
    pub(crate) name: &'static str,
    pub(crate) rt: tokio::runtime::Runtime,
    pub(crate) s3: aws_sdk_s3::Client,
    sqs: aws_sdk_sqs::Client,
    kms: aws_sdk_kms::Client,
    pub(crate) gd: aws_sdk_guardduty::Client,
    sns: aws_sdk_sns::Client,
    pub(crate) events: aws_sdk_eventbridge::Client,
    dir: tempfile::TempDir,
}

pub(crate) fn region(name: &'static str) -> Region {
    let Aws {
        s3,
        sqs,
        rt,
        config,
    } = aws_in(name);
    Region {
        name,
        s3,
        sqs,
        kms: aws_sdk_kms::Client::new(&config),
        gd: aws_sdk_guardduty::Client::new(&config),
        sns: aws_sdk_sns::Client::new(&config),
        events: aws_sdk_eventbridge::Client::new(&config),
        rt,
        dir: tempfile::tempdir().unwrap(),
    }
}

impl Region {
    pub(crate) fn record_path(&self) -> PathBuf {
        self.dir.path().join("setup.json")
    }

    pub(crate) fn warehouse(&self) -> PathBuf {
        self.dir.path().join("wh")
    }

    /// `gdq` in this region, with this test's setup record and warehouse.
    pub(crate) fn gdq(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gdq"));
        aws_env(&mut cmd)
            .env("AWS_REGION", self.name)
            .env("GDQ_CONFIG", self.record_path())
            .env("GDQ_WAREHOUSE", self.warehouse());
        cmd
    }

    pub(crate) fn setup(&self, args: &[&str]) -> Output {
        run(self.gdq().arg("setup").args(args))
    }

    pub(crate) fn record(&self) -> Value {
        let text = std::fs::read_to_string(self.record_path()).expect("setup wrote its record");
        serde_json::from_str(&text).unwrap()
    }

    pub(crate) fn detector(
        &self,
        id: &str,
    ) -> aws_sdk_guardduty::operation::get_detector::GetDetectorOutput {
        self.rt
            .block_on(self.gd.get_detector().detector_id(id).send())
            .expect("the detector exists")
    }

    fn key_state(&self, key: &str) -> String {
        let described = self
            .rt
            .block_on(self.kms.describe_key().key_id(key).send())
            .expect("the key exists");
        described
            .key_metadata()
            .and_then(|m| m.key_state())
            .map(|s| s.as_str().to_string())
            .unwrap_or_default()
    }

    pub(crate) fn detectors(&self) -> Vec<String> {
        self.rt
            .block_on(self.gd.list_detectors().send())
            .unwrap()
            .detector_ids()
            .to_vec()
    }

    pub(crate) fn bucket_policy(&self, bucket: &str) -> Value {
        let got = self
            .rt
            .block_on(self.s3.get_bucket_policy().bucket(bucket).send())
            .expect("the bucket has a policy");
        serde_json::from_str(got.policy().unwrap()).unwrap()
    }

    pub(crate) fn key_policy(&self, key: &str) -> Value {
        let got = self
            .rt
            .block_on(
                self.kms
                    .get_key_policy()
                    .key_id(key)
                    .policy_name("default")
                    .send(),
            )
            .unwrap();
        serde_json::from_str(got.policy().unwrap()).unwrap()
    }

    fn queue_attributes(&self, url: &str) -> Value {
        use aws_sdk_sqs::types::QueueAttributeName;
        let got = self
            .rt
            .block_on(
                self.sqs
                    .get_queue_attributes()
                    .queue_url(url)
                    .attribute_names(QueueAttributeName::All)
                    .send(),
            )
            .expect("the queue exists");
        got.attributes()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), Value::String(v.clone())))
            .collect()
    }

    pub(crate) fn queue_exists(&self, name: &str) -> bool {
        self.rt
            .block_on(self.sqs.get_queue_url().queue_name(name).send())
            .is_ok()
    }

    fn notification_queues(&self, bucket: &str) -> Vec<(String, String)> {
        let got = self
            .rt
            .block_on(
                self.s3
                    .get_bucket_notification_configuration()
                    .bucket(bucket)
                    .send(),
            )
            .unwrap();
        got.queue_configurations()
            .iter()
            .map(|q| {
                (
                    q.id().unwrap_or_default().to_string(),
                    q.queue_arn().to_string(),
                )
            })
            .collect()
    }
}

fn sids(policy: &Value) -> Vec<String> {
    policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Sid"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn golden(name: &str, record: &Value) -> Value {
    let path = crate::support::repo().join("tests/golden/setup").join(name);
    let mut text = std::fs::read_to_string(&path).unwrap();
    for (placeholder, field) in [
        ("${KEY_ARN}", "key_arn"),
        ("${DETECTOR_ID}", "detector_id"),
        ("${ACCOUNT}", "account"),
        ("${REGION}", "region"),
        ("${BUCKET}", "bucket"),
    ] {
        text = text.replace(placeholder, record[field].as_str().unwrap());
    }
    serde_json::from_str(&text).unwrap()
}

pub(crate) fn changed_lines(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| l.get(14..22).is_some_and(|verb| verb.trim() == "changed"))
        .collect()
}

#[test]
fn a_clean_account_gets_every_link_and_a_second_run_changes_nothing() {
    let r = region("us-west-2");
    let bucket = unique("setup-clean");
    let args = [
        "--bucket",
        &bucket,
        "--prefix",
        "/gd/",
        "--frequency",
        "ONE_HOUR",
        "--features",
        "S3_DATA_EVENTS",
        "--notify-email",
        "secops@example.com",
        "--min-severity",
        "8",
    ];
    let first = r.setup(&args);
    assert!(first.status.success(), "{}", stderr(&first));
    let out = stdout(&first);
    assert!(changed_lines(&out).len() >= 15, "{out}");
    assert!(out.contains("VPC Flow Logs and CloudTrail trails are not prerequisites"));
    assert!(
        out.contains(&format!(
            "gdq worker --warehouse {}",
            r.warehouse().display()
        )),
        "prints the next command: {out}"
    );
    let rec = r.record();
    assert_eq!(rec["prefix"], "gd");

    // Detector: the region's only one, enabled, as asked.
    assert_eq!(r.detectors(), vec![rec["detector_id"].as_str().unwrap()]);
    let d = r.detector(rec["detector_id"].as_str().unwrap());
    assert_eq!(d.status().unwrap().as_str(), "ENABLED");
    assert_eq!(
        d.finding_publishing_frequency().unwrap().as_str(),
        "ONE_HOUR"
    );
    assert!(
        d.features()
            .iter()
            .any(|f| f.name().map(|n| n.as_str()) == Some("S3_DATA_EVENTS")
                && f.status().map(|s| s.as_str()) == Some("ENABLED")),
        "{d:?}"
    );

    // Key: by alias, symmetric, rotating; policy and bucket policy equal the golden documents.
    let key =
        r.rt.block_on(r.kms.describe_key().key_id("alias/gdq-findings").send())
            .unwrap();
    let meta = key.key_metadata().unwrap();
    assert_eq!(meta.arn().unwrap(), rec["key_arn"].as_str().unwrap());
    assert_eq!(meta.key_spec().unwrap().as_str(), "SYMMETRIC_DEFAULT");
    let rotation =
        r.rt.block_on(r.kms.get_key_rotation_status().key_id(meta.key_id()).send())
            .unwrap();
    assert!(rotation.key_rotation_enabled());
    assert_eq!(r.key_policy(meta.key_id()), golden("key_policy.json", &rec));
    assert_eq!(r.bucket_policy(&bucket), golden("bucket_policy.json", &rec));

    // Bucket: default SSE-KMS with the key, public access blocked.
    let encryption =
        r.rt.block_on(r.s3.get_bucket_encryption().bucket(&bucket).send())
            .unwrap();
    let rule = &encryption
        .server_side_encryption_configuration()
        .unwrap()
        .rules()[0];
    let default = rule.apply_server_side_encryption_by_default().unwrap();
    assert_eq!(default.sse_algorithm().as_str(), "aws:kms");
    assert_eq!(default.kms_master_key_id(), rec["key_arn"].as_str());
    let block =
        r.rt.block_on(r.s3.get_public_access_block().bucket(&bucket).send())
            .unwrap();
    let block = block.public_access_block_configuration().unwrap();
    assert_eq!(
        (
            block.block_public_acls(),
            block.ignore_public_acls(),
            block.block_public_policy(),
            block.restrict_public_buckets()
        ),
        (Some(true), Some(true), Some(true), Some(true))
    );

    // Destination: this bucket and prefix, this key.
    let listed =
        r.rt.block_on(
            r.gd.list_publishing_destinations()
                .detector_id(rec["detector_id"].as_str().unwrap())
                .send(),
        )
        .unwrap();
    assert_eq!(listed.destinations().len(), 1);
    let dest =
        r.rt.block_on(
            r.gd.describe_publishing_destination()
                .detector_id(rec["detector_id"].as_str().unwrap())
                .destination_id(rec["destination_id"].as_str().unwrap())
                .send(),
        )
        .unwrap();
    let props = dest.destination_properties().unwrap();
    assert_eq!(
        props.destination_arn(),
        Some(format!("arn:aws:s3:::{bucket}/gd").as_str())
    );
    assert_eq!(props.kms_key_arn(), rec["key_arn"].as_str());

    // Queues: encrypted, redrive to the DLQ, a visibility timeout past the worker's flush.
    let q = r.queue_attributes(rec["queue_url"].as_str().unwrap());
    let redrive: Value = serde_json::from_str(q["RedrivePolicy"].as_str().unwrap()).unwrap();
    assert_eq!(redrive["deadLetterTargetArn"], rec["dead_letter_queue_arn"]);
    assert_eq!(
        redrive["maxReceiveCount"].to_string().trim_matches('"'),
        "5"
    );
    assert_eq!(q["VisibilityTimeout"], "300");
    assert_eq!(q["SqsManagedSseEnabled"], "true");
    let queue_policy: Value = serde_json::from_str(q["Policy"].as_str().unwrap()).unwrap();
    assert_eq!(
        queue_policy["Statement"][0]["Condition"]["ArnLike"]["aws:SourceArn"],
        format!("arn:aws:s3:::{bucket}")
    );
    assert!(r.queue_exists("gdq-findings-dlq"));

    // Notification: gdq's one, to the queue, filtered to the export keys.
    let config =
        r.rt.block_on(
            r.s3.get_bucket_notification_configuration()
                .bucket(&bucket)
                .send(),
        )
        .unwrap();
    let ours = &config.queue_configurations()[0];
    assert_eq!(ours.queue_arn(), rec["queue_arn"].as_str().unwrap());
    let mut rules: Vec<(String, String)> = ours
        .filter()
        .unwrap()
        .key()
        .unwrap()
        .filter_rules()
        .iter()
        .map(|f| {
            (
                f.name().unwrap().as_str().to_ascii_lowercase(),
                f.value().unwrap().to_string(),
            )
        })
        .collect();
    rules.sort();
    assert_eq!(
        rules,
        vec![
            ("prefix".to_string(), "gd/AWSLogs/".to_string()),
            ("suffix".to_string(), ".jsonl.gz".to_string())
        ]
    );

    // Alerts: topic with its policy and the subscription, rule on severity ≥ 8, target.
    let topic = rec["alerts"]["topic_arn"].as_str().unwrap();
    let subs =
        r.rt.block_on(r.sns.list_subscriptions_by_topic().topic_arn(topic).send())
            .unwrap();
    assert_eq!(subs.subscriptions().len(), 1);
    assert_eq!(
        subs.subscriptions()[0].endpoint(),
        Some("secops@example.com")
    );
    let rule =
        r.rt.block_on(r.events.describe_rule().name("gdq-alerts").send())
            .unwrap();
    let pattern: Value = serde_json::from_str(rule.event_pattern().unwrap()).unwrap();
    assert_eq!(pattern["source"], json!(["aws.guardduty"]));
    assert_eq!(
        pattern["detail"]["severity"][0]["numeric"],
        json!([">=", 8.0])
    );
    let targets =
        r.rt.block_on(r.events.list_targets_by_rule().rule("gdq-alerts").send())
            .unwrap();
    let target = &targets.targets()[0];
    assert_eq!(target.arn(), topic);
    let template = target.input_transformer().unwrap().input_template();
    assert!(
        template.contains("<type>") && template.contains("<severity>"),
        "{template}"
    );

    // Second run: every step finds what it wants.
    let second = r.setup(&args);
    assert!(second.status.success(), "{}", stderr(&second));
    let out2 = stdout(&second);
    assert_eq!(changed_lines(&out2), Vec::<&str>::new(), "{out2}");
    assert!(out2.contains("nothing to change"), "{out2}");
    assert_eq!(r.record(), rec, "the same record");
    assert_eq!(r.detectors().len(), 1);

    // Without --notify-email the alerts stay, and stay in the record for teardown.
    let without_alerts = r.setup(&args[..args.len() - 4]);
    assert!(
        without_alerts.status.success(),
        "{}",
        stderr(&without_alerts)
    );
    assert!(changed_lines(&stdout(&without_alerts)).is_empty());
    assert_eq!(r.record()["alerts"], rec["alerts"]);
}

#[test]
fn dry_run_prints_every_policy_and_touches_nothing() {
    let r = region("eu-north-1");
    let bucket = unique("setup-dry");
    let out = r.setup(&[
        "--bucket",
        &bucket,
        "--dry-run",
        "--notify-email",
        "a@example.com",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for title in [
        "key policy:",
        "bucket policy:",
        "queue policy:",
        "topic policy:",
        "alert rule pattern:",
        "alert message template:",
        "gdqGuardDutyPutObject",
        "gdqDenyWithoutTls",
        "gdqBucketNotifies",
    ] {
        assert!(text.contains(title), "the plan shows {title}: {text}");
    }
    assert!(text.contains("would"), "{text}");
    assert!(changed_lines(&text).is_empty(), "{text}");

    assert!(r.detectors().is_empty(), "no detector created");
    assert!(
        r.rt.block_on(r.s3.head_bucket().bucket(&bucket).send())
            .is_err(),
        "no bucket created"
    );
    assert!(
        r.rt.block_on(r.kms.describe_key().key_id("alias/gdq-findings").send())
            .is_err(),
        "no key created"
    );
    assert!(!r.queue_exists("gdq-findings") && !r.queue_exists("gdq-findings-dlq"));
    let topics = r.rt.block_on(r.sns.list_topics().send()).unwrap();
    assert!(topics.topics().is_empty());
    assert!(!r.record_path().exists(), "a dry run writes no record");
}

#[test]
fn existing_detector_key_policies_and_notifications_are_merged_not_clobbered() {
    let r = region("eu-west-2");
    let bucket = unique("setup-merge");
    // What the account had before gdq: a disabled detector publishing every six hours, a
    // key under gdq's alias with an audit statement, a bucket with a third party's policy
    // statement and notification, and the queue with someone's policy statement.
    let detector =
        r.rt.block_on(
            r.gd.create_detector()
                .enable(false)
                .finding_publishing_frequency(
                    aws_sdk_guardduty::types::FindingPublishingFrequency::SixHours,
                )
                .send(),
        )
        .unwrap()
        .detector_id()
        .unwrap()
        .to_string();
    let key = r.rt.block_on(r.kms.create_key().send()).unwrap();
    let key_id = key.key_metadata().unwrap().key_id().to_string();
    r.rt.block_on(
        r.kms
            .create_alias()
            .alias_name("alias/gdq-findings")
            .target_key_id(&key_id)
            .send(),
    )
    .unwrap();
    let audit = json!({"Sid": "Audit", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:role/audit"}, "Action": "kms:DescribeKey", "Resource": "*"});
    let root = json!({"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "kms:*", "Resource": "*"});
    r.rt.block_on(
        r.kms
            .put_key_policy()
            .key_id(&key_id)
            .policy_name("default")
            .policy(json!({"Version": "2012-10-17", "Statement": [root, audit]}).to_string())
            .send(),
    )
    .unwrap();
    r.rt.block_on(
        r.s3.create_bucket()
            .bucket(&bucket)
            .create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::EuWest2)
                    .build(),
            )
            .send(),
    )
    .unwrap();
    let theirs = json!({"Sid": "ThirdPartyRead", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::210987654321:root"}, "Action": "s3:GetObject", "Resource": format!("arn:aws:s3:::{bucket}/reports/*")});
    r.rt.block_on(
        r.s3.put_bucket_policy()
            .bucket(&bucket)
            .policy(json!({"Version": "2012-10-17", "Statement": [theirs]}).to_string())
            .send(),
    )
    .unwrap();
    let other_queue =
        r.rt.block_on(r.sqs.create_queue().queue_name("reports-events").send())
            .unwrap()
            .queue_url()
            .unwrap()
            .to_string();
    let other_arn = "arn:aws:sqs:eu-west-2:123456789012:reports-events";
    r.rt.block_on(
        r.s3.put_bucket_notification_configuration()
            .bucket(&bucket)
            .notification_configuration(
                aws_sdk_s3::types::NotificationConfiguration::builder()
                    .queue_configurations(
                        aws_sdk_s3::types::QueueConfiguration::builder()
                            .id("reports")
                            .queue_arn(other_arn)
                            .events(aws_sdk_s3::types::Event::from("s3:ObjectCreated:*"))
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .send(),
    )
    .unwrap();
    let _ = other_queue;
    let queue_theirs = json!({"Sid": "OpsPeek", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:role/ops"}, "Action": "sqs:GetQueueAttributes", "Resource": "*"});
    r.rt.block_on(
        r.sqs
            .create_queue()
            .queue_name("gdq-findings")
            .attributes(
                aws_sdk_sqs::types::QueueAttributeName::Policy,
                json!({"Version": "2012-10-17", "Statement": [queue_theirs]}).to_string(),
            )
            .send(),
    )
    .unwrap();

    let out = r.setup(&["--bucket", &bucket]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let rec = r.record();

    assert_eq!(
        r.detectors(),
        vec![detector.clone()],
        "the detector is reused"
    );
    assert_eq!(rec["detector_id"], detector.as_str());
    let d = r.detector(&detector);
    assert_eq!(d.status().unwrap().as_str(), "ENABLED");
    assert_eq!(
        d.finding_publishing_frequency().unwrap().as_str(),
        "FIFTEEN_MINUTES"
    );
    assert!(text.contains("(existing)"), "{text}");

    assert!(
        rec["key_arn"].as_str().unwrap().ends_with(&key_id),
        "the key is reused"
    );
    let key_sids = sids(&r.key_policy(&key_id));
    assert_eq!(
        key_sids,
        vec!["Root", "Audit", "gdqGuardDutyEncryptsExports"],
        "their statements kept, no second root statement"
    );

    let bucket_sids = sids(&r.bucket_policy(&bucket));
    assert_eq!(bucket_sids[0], "ThirdPartyRead");
    assert_eq!(bucket_sids.len(), 6, "{bucket_sids:?}");

    let queues = r.notification_queues(&bucket);
    assert!(
        queues.contains(&("reports".to_string(), other_arn.to_string())),
        "{queues:?}"
    );
    assert!(
        queues
            .iter()
            .any(|(_, arn)| arn == rec["queue_arn"].as_str().unwrap()),
        "{queues:?}"
    );
    let q = r.queue_attributes(rec["queue_url"].as_str().unwrap());
    let policy: Value = serde_json::from_str(q["Policy"].as_str().unwrap()).unwrap();
    assert_eq!(sids(&policy), vec!["OpsPeek", "gdqBucketNotifies"]);
    assert!(
        q.get("RedrivePolicy").is_some(),
        "the existing queue got its redrive policy"
    );

    let again = r.setup(&["--bucket", &bucket]);
    assert!(
        changed_lines(&stdout(&again)).is_empty(),
        "{}",
        stdout(&again)
    );
}

/// Breaks one link, checks that verify names it (exit 1), and that setup repairs it.
fn broken_link_is_named(r: &Region, link: &str, break_it: impl FnOnce(&Region, &Value)) {
    let rec = r.record();
    break_it(r, &rec);
    let out = run(r.gdq().args(["setup", "verify"]));
    assert_eq!(out.status.code(), Some(1), "{link}: {}", stdout(&out));
    let text = stdout(&out);
    // One cell of the region × link table, and one line saying what is wrong.
    let cells: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("BROKEN") && !l.starts_with("BROKEN "))
        .collect();
    assert_eq!(cells.len(), 1, "only {link} is broken: {text}");
    assert!(cells[0].starts_with(link), "{link}: {text}");
    let details: Vec<&str> = text.lines().filter(|l| l.starts_with("BROKEN ")).collect();
    assert_eq!(details.len(), 1, "{text}");
    assert!(details[0].contains(&format!(" {link}: ")), "{text}");
    assert!(stderr(&out).contains(link), "{}", stderr(&out));
    let bucket = rec["bucket"].as_str().unwrap().to_string();
    let repaired = r.setup(&["--bucket", &bucket, "--notify-email", "a@example.com"]);
    assert!(repaired.status.success(), "{}", stderr(&repaired));
    let out = run(r.gdq().args(["setup", "verify"]));
    assert!(
        out.status.success(),
        "setup repairs {link}: {}",
        stdout(&out)
    );
}

#[test]
fn verify_names_each_broken_link() {
    let r = region("ap-southeast-2");
    let bucket = unique("setup-verify");
    let out = r.setup(&["--bucket", &bucket, "--notify-email", "a@example.com"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ok = run(r.gdq().args(["setup", "verify"]));
    assert!(ok.status.success(), "{}", stdout(&ok));
    assert!(stdout(&ok).contains("every link holds"));

    broken_link_is_named(&r, "detector", |r, rec| {
        r.rt.block_on(
            r.gd.update_detector()
                .detector_id(rec["detector_id"].as_str().unwrap())
                .enable(false)
                .send(),
        )
        .unwrap();
    });
    broken_link_is_named(&r, "destination", |r, rec| {
        r.rt.block_on(
            r.gd.delete_publishing_destination()
                .detector_id(rec["detector_id"].as_str().unwrap())
                .destination_id(rec["destination_id"].as_str().unwrap())
                .send(),
        )
        .unwrap();
    });
    broken_link_is_named(&r, "key policy", |r, rec| {
        let root = json!({"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "kms:*", "Resource": "*"});
        r.rt.block_on(
            r.kms
                .put_key_policy()
                .key_id(rec["key_arn"].as_str().unwrap())
                .policy_name("default")
                .policy(json!({"Version": "2012-10-17", "Statement": [root]}).to_string())
                .send(),
        )
        .unwrap();
    });
    broken_link_is_named(&r, "key rotation", |r, rec| {
        r.rt.block_on(
            r.kms
                .disable_key_rotation()
                .key_id(rec["key_arn"].as_str().unwrap())
                .send(),
        )
        .unwrap();
    });
    broken_link_is_named(&r, "bucket policy", |r, rec| {
        r.rt.block_on(
            r.s3.delete_bucket_policy()
                .bucket(rec["bucket"].as_str().unwrap())
                .send(),
        )
        .unwrap();
    });
    broken_link_is_named(&r, "notification", |r, rec| {
        r.rt.block_on(
            r.s3.put_bucket_notification_configuration()
                .bucket(rec["bucket"].as_str().unwrap())
                .notification_configuration(
                    aws_sdk_s3::types::NotificationConfiguration::builder().build(),
                )
                .send(),
        )
        .unwrap();
    });
    broken_link_is_named(&r, "queue policy", |r, rec| {
        let other = json!({"Version": "2012-10-17", "Statement": [{"Sid": "Other", "Effect": "Allow", "Principal": "*", "Action": "sqs:GetQueueUrl", "Resource": "*"}]});
        r.rt.block_on(
            r.sqs
                .set_queue_attributes()
                .queue_url(rec["queue_url"].as_str().unwrap())
                .attributes(
                    aws_sdk_sqs::types::QueueAttributeName::Policy,
                    other.to_string(),
                )
                .send(),
        )
        .unwrap();
    });
    broken_link_is_named(&r, "dead-letter queue", |r, rec| {
        r.rt.block_on(
            r.sqs
                .delete_queue()
                .queue_url(rec["dead_letter_queue_url"].as_str().unwrap())
                .send(),
        )
        .unwrap();
    });
    broken_link_is_named(&r, "alert rule", |r, _| {
        r.rt.block_on(
            r.events
                .remove_targets()
                .rule("gdq-alerts")
                .ids("gdq-alerts-topic")
                .send(),
        )
        .unwrap();
    });
}

#[test]
fn setup_then_verify_with_sample_findings_makes_them_queryable_exactly_once() {
    let r = region("ca-central-1");
    let bucket = unique("setup-sample");
    let out = r.setup(&["--bucket", &bucket, "--prefix", "guardduty"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let verified = run(r
        .gdq()
        .args(["setup", "verify", "--sample-findings", "--timeout", "60s"]));
    assert!(
        verified.status.success(),
        "{}{}",
        stdout(&verified),
        stderr(&verified)
    );
    assert!(
        stdout(&verified).contains("queryable"),
        "{}",
        stdout(&verified)
    );

    let wh = r.warehouse();
    let samples = sql_count(
        &wh,
        "select count(*) from findings where sample and account_id = '123456789012'",
    );
    assert!(samples > 0, "sample findings are rows");
    assert_eq!(
        sql_count(&wh, "select count(*) from findings where not sample"),
        0
    );
    let keys = crate::moto::keys(
        &aws_in(r.name),
        &bucket,
        "guardduty/AWSLogs/123456789012/GuardDuty/ca-central-1/",
    );
    assert_eq!(
        keys.len(),
        1,
        "one export object under the real layout: {keys:?}"
    );

    // The worker, with no flags, reads the queue and key from the setup record; the object
    // the verify ingested is announced there too and must not be added twice.
    let worker = run(r.gdq().args(["worker", "--once"]));
    assert!(worker.status.success(), "{}", stderr(&worker));
    assert!(
        stdout(&worker).contains("1 already committed"),
        "{}",
        stdout(&worker)
    );
    assert_eq!(sql_count(&wh, "select count(*) from findings"), samples);

    // So does a catch-up ingest with no source named.
    let ingest = run(r.gdq().arg("ingest"));
    assert!(ingest.status.success(), "{}", stderr(&ingest));
    assert_eq!(sql_count(&wh, "select count(*) from findings"), samples);
}

#[test]
fn teardown_removes_what_setup_made_and_keeps_detector_key_and_findings() {
    let r = region("sa-east-1");
    let bucket = unique("setup-teardown");
    let args = ["--bucket", &bucket, "--notify-email", "a@example.com"];
    assert!(r.setup(&args).status.success());
    let verified = run(r
        .gdq()
        .args(["setup", "verify", "--sample-findings", "--timeout", "60s"]));
    assert!(verified.status.success(), "{}", stdout(&verified));
    let rec = r.record();
    let objects = crate::moto::keys(&aws_in(r.name), &bucket, "AWSLogs/");
    assert_eq!(objects.len(), 1);

    let planned = run(r.gdq().args(["teardown", "--dry-run"]));
    assert!(planned.status.success(), "{}", stderr(&planned));
    assert!(r.queue_exists("gdq-findings"), "a dry run removes nothing");
    assert!(r.record_path().exists());

    let down = run(r.gdq().arg("teardown"));
    assert!(down.status.success(), "{}", stderr(&down));
    let detector = rec["detector_id"].as_str().unwrap();
    let dests =
        r.rt.block_on(
            r.gd.list_publishing_destinations()
                .detector_id(detector)
                .send(),
        )
        .unwrap();
    assert!(dests.destinations().is_empty(), "destination removed");
    assert!(
        r.notification_queues(&bucket).is_empty(),
        "notification removed"
    );
    assert!(!r.queue_exists("gdq-findings") && !r.queue_exists("gdq-findings-dlq"));
    assert!(
        r.rt.block_on(r.events.describe_rule().name("gdq-alerts").send())
            .is_err()
    );
    let topics = r.rt.block_on(r.sns.list_topics().send()).unwrap();
    assert!(topics.topics().is_empty(), "topic removed");
    assert!(!r.record_path().exists(), "record removed");
    // What stays: the enabled detector, the key, the bucket with the findings and policy.
    assert_eq!(r.detector(detector).status().unwrap().as_str(), "ENABLED");
    assert_eq!(r.key_state(rec["key_arn"].as_str().unwrap()), "Enabled");
    assert_eq!(
        crate::moto::keys(&aws_in(r.name), &bucket, "AWSLogs/"),
        objects
    );

    // Everything, when asked by name.
    assert!(r.setup(&args).status.success());
    let all = run(r.gdq().args([
        "teardown",
        "--disable-detector",
        "--delete-key",
        "--delete-bucket",
    ]));
    assert!(all.status.success(), "{}", stderr(&all));
    assert_eq!(r.detector(detector).status().unwrap().as_str(), "DISABLED");
    assert_eq!(
        r.key_state(rec["key_arn"].as_str().unwrap()),
        "PendingDeletion"
    );
    assert!(
        r.rt.block_on(r.s3.head_bucket().bucket(&bucket).send())
            .is_err()
    );
}

#[test]
fn bad_setup_input_gets_one_clear_line() {
    let r = region("eu-south-1");
    for (args, expect) in [
        (vec![], "--bucket"),
        (
            vec!["--bucket", "Not_A_Bucket"],
            "not a valid S3 bucket name",
        ),
        (
            vec!["--bucket", "ok-bucket", "--frequency", "HOURLY"],
            "FIFTEEN_MINUTES",
        ),
        (
            vec!["--bucket", "ok-bucket", "--features", "TELEPATHY"],
            "--features",
        ),
        (
            vec!["--bucket", "ok-bucket", "--key-alias", "gdq"],
            "alias/",
        ),
        (
            vec!["--bucket", "ok-bucket", "--notify-email", "nobody"],
            "not an e-mail address",
        ),
        (
            vec!["--bucket", "ok-bucket", "--regions", "eu-wst-1"],
            "\"eu-wst-1\" is not a region of partition aws",
        ),
        (
            vec!["--bucket", "ok-bucket", "--regions", "me-south-1"],
            "me-south-1 is an opt-in region not enabled for this account",
        ),
        (
            vec![
                "--bucket",
                "ok-bucket",
                "--organization",
                "--admin-account",
                "123456789012",
            ],
            "is not in an AWS Organization",
        ),
        (
            vec![
                "--bucket",
                "ok-bucket",
                "--organization",
                "--admin-account",
                "12345",
            ],
            "not an AWS account id",
        ),
        (
            vec!["--bucket", "ok-bucket", "--organization"],
            "--admin-account",
        ),
    ] {
        let out = r.setup(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
    }
    assert!(r.detectors().is_empty(), "bad input changes nothing");
    for cmd in [vec!["setup", "verify"], vec!["teardown"]] {
        let out = run(r.gdq().args(&cmd));
        assert_eq!(out.status.code(), Some(2), "{cmd:?}");
        assert!(
            stderr(&out).contains("run gdq setup first"),
            "{}",
            stderr(&out)
        );
    }
    let worker = run(r.gdq().args(["worker", "--once"]));
    assert_eq!(worker.status.code(), Some(2));
    assert!(
        stderr(&worker).contains("--queue-url"),
        "{}",
        stderr(&worker)
    );
}
