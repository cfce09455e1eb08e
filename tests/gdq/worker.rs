//! `gdq worker` against moto: real S3 → SQS notifications, SSE-KMS objects, a redrive policy.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    Event, NotificationConfiguration, QueueConfiguration, ServerSideEncryption,
};
use aws_sdk_sqs::types::QueueAttributeName;

use crate::moto::{Aws, aws, aws_env, bucket, unique};
use crate::support::*;

pub const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555";
const OTHER_KEY: &str =
    "arn:aws:kms:us-east-1:123456789012:key/99999999-8888-7777-6666-555555555555";

pub struct Setup {
    pub bucket: String,
    pub queue_url: String,
    pub dlq_url: String,
}

/// A bucket, a queue with a dead-letter queue (`max_receives` before redrive) and, when
/// `notify`, the bucket's ObjectCreated notifications to the queue.
pub fn setup(aws: &Aws, name: &str, visibility_s: u32, max_receives: u32, notify: bool) -> Setup {
    let bucket = unique(name);
    aws.rt.block_on(async {
        let dlq_url = aws
            .sqs
            .create_queue()
            .queue_name(format!("{bucket}-dlq"))
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let dlq_arn = aws
            .sqs
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap()[&QueueAttributeName::QueueArn]
            .clone();
        let redrive =
            format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"{max_receives}"}}"#);
        let queue_url = aws
            .sqs
            .create_queue()
            .queue_name(&bucket)
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                visibility_s.to_string(),
            )
            .attributes(QueueAttributeName::RedrivePolicy, redrive)
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        aws.s3.create_bucket().bucket(&bucket).send().await.unwrap();
        if notify {
            let queue_arn = aws
                .sqs
                .get_queue_attributes()
                .queue_url(&queue_url)
                .attribute_names(QueueAttributeName::QueueArn)
                .send()
                .await
                .unwrap()
                .attributes
                .unwrap()[&QueueAttributeName::QueueArn]
                .clone();
            let config = NotificationConfiguration::builder()
                .queue_configurations(
                    QueueConfiguration::builder()
                        .queue_arn(queue_arn)
                        .events(Event::S3ObjectCreated)
                        .build()
                        .unwrap(),
                )
                .build();
            aws.s3
                .put_bucket_notification_configuration()
                .bucket(&bucket)
                .notification_configuration(config)
                .send()
                .await
                .unwrap();
        }
        Setup {
            bucket,
            queue_url,
            dlq_url,
        }
    })
}

pub enum Sse {
    Kms(&'static str),
    Aes,
    None,
}

pub fn put(aws: &Aws, bucket: &str, key: &str, body: Vec<u8>, sse: Sse) -> String {
    aws.rt.block_on(async {
        let mut req = aws
            .s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(body));
        req = match sse {
            Sse::Kms(k) => req
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(k),
            Sse::Aes => req.server_side_encryption(ServerSideEncryption::Aes256),
            Sse::None => req,
        };
        req.send()
            .await
            .unwrap()
            .e_tag
            .unwrap_or_default()
            .trim_matches('"')
            .to_string()
    })
}

/// Uploads every export under `dir` with its relative key; returns key → ETag.
fn upload(aws: &Aws, bucket: &str, dir: &Path, sse: fn() -> Sse) -> HashMap<String, String> {
    export_files(dir)
        .into_iter()
        .map(|f| {
            let key = f.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            let etag = put(aws, bucket, &key, std::fs::read(&f).unwrap(), sse());
            (key, etag)
        })
        .collect()
}

fn send(aws: &Aws, queue_url: &str, body: &str) {
    aws.rt
        .block_on(
            aws.sqs
                .send_message()
                .queue_url(queue_url)
                .message_body(body)
                .send(),
        )
        .unwrap();
}

/// (visible, in flight) messages of a queue.
fn depth(aws: &Aws, queue_url: &str) -> (u64, u64) {
    let attrs = aws
        .rt
        .block_on(
            aws.sqs
                .get_queue_attributes()
                .queue_url(queue_url)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                .send(),
        )
        .unwrap()
        .attributes
        .unwrap();
    let n = |k: QueueAttributeName| attrs.get(&k).and_then(|v| v.parse().ok()).unwrap_or(0);
    (
        n(QueueAttributeName::ApproximateNumberOfMessages),
        n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    )
}

pub fn worker_cmd(warehouse: &Path, queue_url: &str, args: &[&str]) -> Command {
    let mut cmd = gdq(warehouse);
    aws_env(&mut cmd)
        .args([
            "worker",
            "--queue-url",
            queue_url,
            "--progress-interval",
            "1h",
        ])
        .args(args);
    cmd
}

pub fn drain(warehouse: &Path, queue_url: &str, args: &[&str]) -> Output {
    let mut cmd = worker_cmd(warehouse, queue_url, args);
    cmd.arg("--once");
    run(&mut cmd)
}

fn s3_direct(bucket: &str, key: &str, etag: &str) -> String {
    let encoded: String = key
        .bytes()
        .map(|b| match b {
            b' ' => "+".to_string(),
            b'+' | b'%' | b'/' => format!("%{b:02X}"),
            _ => (b as char).to_string(),
        })
        .collect();
    serde_json::json!({"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": bucket}, "object": {"key": encoded, "eTag": etag, "size": 1}}}]})
    .to_string()
}

#[test]
fn notified_exports_are_ingested_once_and_redeliveries_add_nothing() {
    let aws = aws();
    let s = setup(&aws, "main", 30, 3, true);
    let etags = upload(&aws, &s.bucket, &testdata("exports"), || Sse::Kms(KEY));
    let wh = tempdir();
    let out = drain(wh.path(), &s.queue_url, &["--kms-key-arn", KEY]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("11 ingested"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("1 test events"),
        "moto sends s3:TestEvent first: {}",
        stdout(&out)
    );
    assert_eq!(
        gdq_type_counts(wh.path()),
        oracle_type_counts(&testdata("exports"))
    );
    assert_eq!(depth(&aws, &s.queue_url), (0, 0), "every message deleted");
    let staged = std::fs::read_dir(wh.path().join("_gdq/staging"))
        .unwrap()
        .count();
    assert_eq!(
        staged, 0,
        "a worker that exits leaves no staged batch behind"
    );
    let before = row_fingerprint(wh.path());

    // The same objects notified again, three times over: nothing is fetched or added.
    for _ in 0..3 {
        for (key, etag) in &etags {
            send(&aws, &s.queue_url, &s3_direct(&s.bucket, key, etag));
        }
    }
    let again = drain(wh.path(), &s.queue_url, &["--kms-key-arn", KEY]);
    assert!(again.status.success(), "{}", stderr(&again));
    // moto may hand one message to both of the worker's concurrent receives; either way
    // every delivery is found committed.
    let summary = stdout(&again);
    let committed: u64 = summary
        .split("0 ingested, ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("nothing may be ingested again: {summary}"));
    assert!(committed >= 33, "{summary}");
    assert_eq!(row_fingerprint(wh.path()), before);
    assert_eq!(depth(&aws, &s.queue_url), (0, 0));
}

#[test]
fn every_notification_shape_is_understood() {
    let aws = aws();
    let s = setup(&aws, "shapes", 30, 3, false);
    let body = |id: &str| {
        format!("{{\"id\":\"{id}\",\"type\":\"Recon:EC2/Portscan\",\"updatedAt\":\"2024-01-01T00:00:00Z\"}}\n").into_bytes()
    };
    let prefix = "my prefix/AWSLogs/123456789012/GuardDuty/us-east-1/2024/05/30";
    let keys = [
        format!("{prefix}/direct a+b.jsonl.gz"),
        format!("{prefix}/sns-envelope.jsonl.gz"),
        format!("{prefix}/sns-raw.jsonl.gz"),
        format!("{prefix}/eventbridge c+d.jsonl.gz"),
    ];
    let etags: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| put(&aws, &s.bucket, k, body(&format!("f{i}")), Sse::Kms(KEY)))
        .collect();
    send(
        &aws,
        &s.queue_url,
        &s3_direct(&s.bucket, &keys[0], &etags[0]),
    );
    let envelope = serde_json::json!({"Type": "Notification", "MessageId": "m", "Message": s3_direct(&s.bucket, &keys[1], &etags[1])});
    send(&aws, &s.queue_url, &envelope.to_string());
    send(
        &aws,
        &s.queue_url,
        &s3_direct(&s.bucket, &keys[2], &etags[2]),
    );
    let eventbridge = serde_json::json!({"version": "0", "detail-type": "Object Created", "source": "aws.s3",
        "detail": {"bucket": {"name": s.bucket}, "object": {"key": keys[3], "etag": etags[3], "size": 1}}});
    send(&aws, &s.queue_url, &eventbridge.to_string());
    send(
        &aws,
        &s.queue_url,
        r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}"#,
    );
    let removed = s3_direct(&s.bucket, &keys[0], &etags[0])
        .replace("ObjectCreated:Put", "ObjectRemoved:Delete");
    send(&aws, &s.queue_url, &removed);
    send(
        &aws,
        &s.queue_url,
        &s3_direct(&s.bucket, "not/an/export.txt", "e"),
    );

    let wh = tempdir();
    let out = drain(wh.path(), &s.queue_url, &[]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let summary = stdout(&out);
    assert!(summary.contains("7 received, 7 deleted"), "{summary}");
    assert!(
        summary.contains("4 ingested, 0 already committed, 2 ignored"),
        "{summary}"
    );
    let mut sources: Vec<String> = sql_rows(wh.path(), "select source from findings")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    sources.sort();
    let mut expected: Vec<String> = keys
        .iter()
        .map(|k| format!("s3://{}/{k}", s.bucket))
        .collect();
    expected.sort();
    assert_eq!(sources, expected, "keys with spaces and + decode exactly");
}

#[test]
fn unencrypted_and_wrong_key_objects_are_refused_and_dead_lettered() {
    let aws = aws();
    let s = setup(&aws, "refuse", 1, 1, true);
    let dir = "AWSLogs/123456789012/GuardDuty/us-east-1/2024/05/30";
    let line =
        |id: &str| format!("{{\"id\":\"{id}\",\"type\":\"Recon:EC2/Portscan\"}}\n").into_bytes();
    put(
        &aws,
        &s.bucket,
        &format!("{dir}/plain.jsonl.gz"),
        line("plain"),
        Sse::None,
    );
    put(
        &aws,
        &s.bucket,
        &format!("{dir}/aes.jsonl.gz"),
        line("aes"),
        Sse::Aes,
    );
    put(
        &aws,
        &s.bucket,
        &format!("{dir}/other-key.jsonl.gz"),
        line("other"),
        Sse::Kms(OTHER_KEY),
    );
    put(
        &aws,
        &s.bucket,
        &format!("{dir}/good.jsonl.gz"),
        line("good"),
        Sse::Kms(KEY),
    );

    let wh = tempdir();
    let out = drain(wh.path(), &s.queue_url, &["--kms-key-arn", KEY]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "refusals show in the exit status\n{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("1 ingested") && stdout(&out).contains("3 refused"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        sql_rows(wh.path(), "select id from findings"),
        vec![vec!["good".to_string()]]
    );
    let log = stderr(&out);
    assert!(
        log.contains("not encrypted with SSE-KMS") && log.contains("not the expected"),
        "{log}"
    );

    // Redelivered past maxReceiveCount, the refused messages land in the dead-letter queue.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        std::thread::sleep(Duration::from_millis(1200));
        let _ = drain(wh.path(), &s.queue_url, &["--kms-key-arn", KEY]);
        if depth(&aws, &s.dlq_url).0 == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "refused messages never reached the DLQ: {:?}",
            depth(&aws, &s.dlq_url)
        );
    }
    assert_eq!(sql_rows(wh.path(), "select id from findings").len(), 1);
    let quarantine: String = std::fs::read_dir(wh.path().join("_gdq/quarantine"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    for name in ["plain", "aes", "other-key"] {
        assert!(
            quarantine.contains(&format!("{name}.jsonl.gz")) && quarantine.contains("refused"),
            "{quarantine}"
        );
    }
}

#[test]
fn corrupt_lines_in_an_object_are_quarantined_and_the_rest_committed() {
    let aws = aws();
    let s = setup(&aws, "corrupt", 30, 3, true);
    upload(&aws, &s.bucket, &testdata("corrupt"), || Sse::Kms(KEY));
    let wh = tempdir();
    let out = drain(wh.path(), &s.queue_url, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let good = oracle_findings(&testdata("corrupt")).len() as u64;
    assert_eq!(sql_count(wh.path(), "select count(*) from findings"), good);
    assert_eq!(
        depth(&aws, &s.queue_url),
        (0, 0),
        "objects with bad lines are still done: their messages are deleted"
    );
}

#[test]
fn two_workers_on_one_queue_write_the_table_of_one() {
    let wh = tempdir();
    two_workers_write_the_table_of_one(wh.path());
}

#[test]
fn two_workers_committing_to_one_s3_warehouse_write_the_table_of_one() {
    let url = format!("s3://{}/history", bucket(&aws(), "two-s3-wh"));
    two_workers_write_the_table_of_one(Path::new(&url));
}

fn two_workers_write_the_table_of_one(wh: &Path) {
    let aws = aws();
    let s = setup(&aws, "two", 30, 3, true);
    upload(&aws, &s.bucket, &testdata("exports"), || Sse::Kms(KEY));
    // Duplicate notifications too, so both workers may hold the same object at once.
    let etags = upload(&aws, &s.bucket, &testdata("exports"), || Sse::Kms(KEY));
    for (key, etag) in &etags {
        send(&aws, &s.queue_url, &s3_direct(&s.bucket, key, etag));
    }
    let spawn = || {
        let mut cmd = worker_cmd(wh, &s.queue_url, &["--once", "--concurrency", "4"]);
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    run_both(spawn);
    assert_eq!(
        gdq_type_counts(wh),
        oracle_type_counts(&testdata("exports"))
    );
    assert_eq!(
        sql_count(wh, "select count(distinct source) from findings"),
        11
    );
}

#[test]
fn a_worker_killed_mid_batch_loses_nothing_once_restarted() {
    let aws = aws();
    let s = setup(&aws, "kill", 2, 10, true);
    upload(&aws, &s.bucket, &testdata("exports"), || Sse::Kms(KEY));
    let wh = tempdir();
    let mut child = worker_cmd(
        wh.path(),
        &s.queue_url,
        &[
            "--flush-interval",
            "300ms",
            "--concurrency",
            "2",
            "--wait",
            "1s",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(900));
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let out = drain(wh.path(), &s.queue_url, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        gdq_type_counts(wh.path()),
        oracle_type_counts(&testdata("exports"))
    );
    assert_eq!(
        sql_count(wh.path(), "select count(distinct source) from findings"),
        11
    );
}

#[test]
fn sigterm_commits_what_is_in_hand_and_exits_cleanly() {
    let aws = aws();
    let s = setup(&aws, "term", 30, 3, true);
    upload(&aws, &s.bucket, &testdata("exports"), || Sse::Kms(KEY));
    let wh = tempdir();
    let child = worker_cmd(
        wh.path(),
        &s.queue_url,
        &["--flush-interval", "1h", "--wait", "1s"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Wait until every message is received and held (in flight), none committed yet.
    let deadline = Instant::now() + Duration::from_secs(30);
    while depth(&aws, &s.queue_url) != (0, 12) {
        assert!(
            Instant::now() < deadline,
            "worker never took the messages: {:?}",
            depth(&aws, &s.queue_url)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !wh.path().join("findings").exists()
            || sql_count(wh.path(), "select count(*) from findings") == 0
    );
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        gdq_type_counts(wh.path()),
        oracle_type_counts(&testdata("exports"))
    );
    assert_eq!(depth(&aws, &s.queue_url), (0, 0));
}

#[test]
fn a_burst_of_200_objects_is_drained_completely() {
    let aws = aws();
    let s = setup(&aws, "burst", 30, 3, true);
    let findings = oracle_findings(&testdata("exports"));
    for i in 0..200 {
        let text: String = findings
            .iter()
            .skip(i)
            .step_by(200)
            .map(|f| f.to_string() + "\n")
            .collect();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, text.as_bytes()).unwrap();
        let key =
            format!("AWSLogs/123456789012/GuardDuty/eu-west-1/2024/06/01/burst-{i:04}.jsonl.gz");
        put(&aws, &s.bucket, &key, gz.finish().unwrap(), Sse::Kms(KEY));
    }
    let wh = tempdir();
    let started = Instant::now();
    let out = drain(wh.path(), &s.queue_url, &[]);
    let elapsed = started.elapsed();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("200 ingested"), "{}", stdout(&out));
    assert_eq!(
        sql_count(wh.path(), "select count(*) from findings"),
        findings.len() as u64
    );
    eprintln!(
        "burst: 200 objects, {} findings in {:.2} s",
        findings.len(),
        elapsed.as_secs_f64()
    );
}
