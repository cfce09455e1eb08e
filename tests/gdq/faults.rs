//! Faults of the AWS calls a commit makes, reproduced with a loopback proxy in front of the
//! emulator (`crate::proxy`): a commit write held longer than any lease while another writer
//! commits the same objects, a commit write that times out at its writer and lands later,
//! throttled writes. Two writers on one `s3://` warehouse, 60 export objects, 3,000
//! findings: whatever happens, 3,000 rows, each once.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::moto::{Aws, aws, bucket};
use crate::proxy::{Fault, Gate, Proxy};
use crate::support::*;
use crate::worker::{KEY, Setup, Sse, put, setup, worker_cmd};

const OBJECTS: usize = 60;
const PER_OBJECT: usize = 50;
const TYPES: [&str; 3] = [
    "Backdoor:EC2/C&CActivity.B!DNS",
    "Recon:EC2/PortProbeUnprotectedPort",
    "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS",
];

/// 60 exports of 50 findings each (ids unique per export) in `bucket`.
fn populate(aws: &Aws, bucket: &str) {
    for n in 0..OBJECTS {
        let key = format!(
            "AWSLogs/123456789012/GuardDuty/us-east-1/2024/04/{:02}/export-{n:03}.jsonl.gz",
            1 + n % 28
        );
        let lines: String = (0..PER_OBJECT)
            .map(|i| {
                serde_json::json!({"id": format!("f{n}-{i}"), "type": TYPES[(n + i) % 3],
                    "accountId": "123456789012", "severity": 5,
                    "updatedAt": format!("2024-04-{:02}T10:00:{:02}.000Z", 1 + n % 28, i % 60)})
                .to_string()
                    + "\n"
            })
            .collect();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, lines.as_bytes()).unwrap();
        put(aws, bucket, &key, enc.finish().unwrap(), Sse::Kms(KEY));
    }
}

/// A command of gdq whose AWS calls all go through the proxy.
fn through(proxy: &Proxy, mut cmd: Command) -> Command {
    cmd.env("AWS_ENDPOINT_URL", &proxy.endpoint);
    cmd
}

fn catch_up(wh: &Path, exports: &str) -> Command {
    let mut cmd = gdq(wh);
    cmd.args(["ingest", &format!("s3://{exports}")]);
    cmd
}

/// An S3 warehouse with its (empty) table created, so the commit a test holds is a batch's.
fn warehouse(aws: &Aws) -> String {
    let url = format!("s3://{}/wh", bucket(aws, "faults-wh"));
    let created = run(gdq(Path::new(&url)).arg("vacuum"));
    assert!(created.status.success(), "{}", stderr(&created));
    url
}

fn assert_each_finding_once(wh: &Path) {
    let total = (OBJECTS * PER_OBJECT) as u64;
    assert_eq!(sql_count(wh, "select count(*) from findings"), total);
    assert_eq!(
        sql_count(wh, "select count(distinct id) from findings"),
        total
    );
    assert_eq!(delta_rows(wh), total, "Delta readers see each once too");
    assert_eq!(status_json(wh)["objects"], OBJECTS);
}

#[test]
fn a_commit_held_past_any_lease_while_another_writer_commits_the_same_objects_doubles_nothing() {
    let aws = aws();
    let Setup {
        bucket: exports,
        queue_url,
        ..
    } = setup(&aws, "faults-held", 600, 5, true);
    populate(&aws, &exports);
    let url = warehouse(&aws);
    let wh = Path::new(&url);
    let proxy = Proxy::start(&crate::moto::moto().endpoint);
    let gate = Gate::new();
    let held = proxy.rule(
        "PUT",
        &["/wh/findings/_delta_log/", ".json"],
        Fault::Hold(gate.clone()),
        1,
    );

    // The worker drains the queue; its commit write is held at the proxy ...
    let worker = through(&proxy, worker_cmd(wh, &queue_url, &["--once"]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    held.wait_held();
    // ... far longer than any lease would last, while a catch-up ingest commits the same
    // 60 objects.
    let ingest = run(&mut catch_up(wh, &exports));
    assert!(ingest.status.success(), "{}", stderr(&ingest));
    assert!(
        stdout(&ingest).contains(&format!("{OBJECTS} ingested")),
        "{}",
        stdout(&ingest)
    );
    gate.open();
    let worker = worker.wait_with_output().unwrap();
    assert!(worker.status.success(), "{}", stderr(&worker));
    // The held write reached S3 and was refused: that version was taken.
    held.wait_answered(1);
    assert_eq!(*held.statuses.lock().unwrap(), [412]);
    assert_each_finding_once(wh);
    // The worker read the winner's ledger, committed nothing, and its messages are gone.
    assert_eq!(queue_depth(&aws, &queue_url), 0);
}

#[test]
fn a_commit_that_times_out_at_its_writer_and_lands_later_is_not_committed_twice() {
    let aws = aws();
    let exports = bucket(&aws, "faults-late");
    populate(&aws, &exports);
    let url = warehouse(&aws);
    let wh = Path::new(&url);
    let proxy = Proxy::start(&crate::moto::moto().endpoint);
    let gate = Gate::new();
    let late = proxy.rule(
        "PUT",
        &["/wh/findings/_delta_log/", ".json"],
        Fault::Hold(gate.clone()),
        1,
    );

    // The writer gives up on its commit write after 2 s, without retrying ...
    let gave_up = run(through(&proxy, catch_up(wh, &exports))
        .env("GDQ_S3_TIMEOUT", "2s")
        .env("GDQ_S3_RETRIES", "0"));
    assert_eq!(gave_up.status.code(), Some(1), "{}", stderr(&gave_up));
    assert!(
        stderr(&gave_up).contains("not confirmed"),
        "{}",
        stderr(&gave_up)
    );
    assert_eq!(sql_count(wh, "select count(*) from findings"), 0);
    // ... and the write lands on the server after it exited.
    gate.open();
    late.wait_answered(1);
    assert_eq!(*late.statuses.lock().unwrap(), [200]);
    assert_each_finding_once(wh);
    // The next run finds every object committed, and the late commit's files in the table.
    let next = run(&mut catch_up(wh, &exports));
    assert!(next.status.success(), "{}", stderr(&next));
    assert!(
        stdout(&next).contains(&format!("0 ingested, {OBJECTS} already")),
        "{}",
        stdout(&next)
    );
    assert_each_finding_once(wh);
    assert_eq!(status_json(wh)["unreferenced_files"], 0);
}

#[test]
fn a_timed_out_commit_that_lands_after_another_writer_committed_is_refused() {
    let aws = aws();
    let exports = bucket(&aws, "faults-late-lost");
    populate(&aws, &exports);
    let url = warehouse(&aws);
    let wh = Path::new(&url);
    let proxy = Proxy::start(&crate::moto::moto().endpoint);
    let gate = Gate::new();
    let late = proxy.rule(
        "PUT",
        &["/wh/findings/_delta_log/", ".json"],
        Fault::Hold(gate.clone()),
        1,
    );
    let gave_up = run(through(&proxy, catch_up(wh, &exports))
        .env("GDQ_S3_TIMEOUT", "2s")
        .env("GDQ_S3_RETRIES", "0"));
    assert_eq!(gave_up.status.code(), Some(1), "{}", stderr(&gave_up));
    // Another writer commits the same objects first; then the late write arrives.
    let other = run(&mut catch_up(wh, &exports));
    assert!(
        stdout(&other).contains(&format!("{OBJECTS} ingested")),
        "{}",
        stdout(&other)
    );
    gate.open();
    late.wait_answered(1);
    assert_eq!(*late.statuses.lock().unwrap(), [412]);
    assert_each_finding_once(wh);
    // The first writer's uploads are debris: no commit names them, a vacuum removes them.
    assert!(status_json(wh)["unreferenced_files"].as_u64().unwrap() > 0);
    let vacuum = run(gdq(wh).arg("vacuum").env("GDQ_STAGING_TTL_SECS", "0"));
    assert!(vacuum.status.success(), "{}", stderr(&vacuum));
    assert_eq!(status_json(wh)["unreferenced_files"], 0);
    assert_each_finding_once(wh);
}

#[test]
fn throttled_uploads_and_commit_writes_are_retried_and_commit_once() {
    let aws = aws();
    let exports = bucket(&aws, "faults-throttled");
    populate(&aws, &exports);
    let url = warehouse(&aws);
    let wh = Path::new(&url);
    let proxy = Proxy::start(&crate::moto::moto().endpoint);
    let commit = proxy.rule(
        "PUT",
        &["/wh/findings/_delta_log/", ".json"],
        Fault::Fail(503),
        2,
    );
    // Keys as they travel: `type=` is `type%3D` in the request path.
    let upload = proxy.rule("PUT", &["/wh/findings/type%3D"], Fault::Fail(503), 2);
    let slow = proxy.rule(
        "GET",
        &["/wh/findings/_delta_log/"],
        Fault::Delay(Duration::from_secs(1)),
        3,
    );
    let out = run(&mut through(&proxy, catch_up(wh, &exports)));
    assert!(out.status.success(), "{}", stderr(&out));
    // Each fault happened: two throttled commit writes, two throttled uploads, slow reads.
    assert_eq!(*commit.statuses.lock().unwrap(), [503, 503]);
    assert_eq!(*upload.statuses.lock().unwrap(), [503, 503]);
    assert_eq!(slow.matched.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert_each_finding_once(wh);
}

fn queue_depth(aws: &Aws, queue_url: &str) -> u64 {
    use aws_sdk_sqs::types::QueueAttributeName;
    aws.rt
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
        .unwrap()
        .values()
        .map(|v| v.parse::<u64>().unwrap())
        .sum()
}

/// Three exports: the middle one has good findings on both sides of a bad line.
fn exports_with_a_bad_line_in_the_middle() -> Vec<(String, Vec<u8>)> {
    let finding = |object: &str, i: usize| {
        serde_json::json!({"id": format!("{object}-{i}"), "type": TYPES[0],
            "updatedAt": "2024-04-01T00:00:00.000Z"})
        .to_string()
            + "\n"
    };
    ["a", "b", "c"]
        .iter()
        .map(|object| {
            let mut text: String = (0..10).map(|i| finding(object, i)).collect();
            if *object == "b" {
                text.push_str("{\"id\": \"broken\"\n");
                text.extend((10..20).map(|i| finding(object, i)));
            }
            let key =
                format!("AWSLogs/123456789012/GuardDuty/us-east-1/2024/04/01/{object}.jsonl.gz");
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut enc, text.as_bytes()).unwrap();
            (key, enc.finish().unwrap())
        })
        .collect()
}

#[test]
fn an_object_failing_mid_decode_contributes_no_rows_and_its_retry_adds_it_once() {
    let dir = tempdir();
    for (key, bytes) in exports_with_a_bad_line_in_the_middle() {
        let path = dir.path().join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    let wh = tempdir();
    // Recording b's bad line fails after b's first ten rows went to the batch's writers.
    let failed = run(gdq(wh.path())
        .arg("ingest")
        .arg(dir.path())
        .env("GDQ_FAIL_AT", "quarantine-record"));
    assert_eq!(failed.status.code(), Some(1), "{}", stderr(&failed));
    assert!(
        stderr(&failed).contains("b.jsonl.gz"),
        "{}",
        stderr(&failed)
    );
    assert!(
        stdout(&failed).contains("2 ingested"),
        "{}",
        stdout(&failed)
    );
    assert_eq!(
        sql_count(
            wh.path(),
            "select count(*) from findings where id like 'b-%'"
        ),
        0,
        "none of b's rows committed"
    );
    assert_eq!(sql_count(wh.path(), "select count(*) from findings"), 20);
    let retry = ingest(wh.path(), &[dir.path()]);
    assert_eq!(retry.status.code(), Some(3), "b's bad line is quarantined");
    assert!(
        stdout(&retry).contains("1 ingested, 2 already"),
        "{}",
        stdout(&retry)
    );
    assert_eq!(sql_count(wh.path(), "select count(*) from findings"), 40);
    assert_eq!(
        sql_count(wh.path(), "select count(distinct id) from findings"),
        40
    );
}

#[test]
fn a_worker_whose_object_fails_mid_decode_leaves_its_message_and_commits_it_once_later() {
    let aws = aws();
    let Setup {
        bucket: exports,
        queue_url,
        ..
    } = setup(&aws, "faults-mid-decode", 2, 10, true);
    for (key, bytes) in exports_with_a_bad_line_in_the_middle() {
        put(&aws, &exports, &key, bytes, Sse::Kms(KEY));
    }
    let wh = tempdir();
    let failed =
        run(worker_cmd(wh.path(), &queue_url, &["--once"]).env("GDQ_FAIL_AT", "quarantine-record"));
    assert_eq!(
        failed.status.code(),
        Some(1),
        "a failed object is a failure, as in ingest\n{}",
        stderr(&failed)
    );
    assert!(
        stderr(&failed).contains("decoding failed"),
        "{}",
        stderr(&failed)
    );
    assert_eq!(sql_count(wh.path(), "select count(*) from findings"), 20);
    assert_eq!(
        sql_count(
            wh.path(),
            "select count(*) from findings where id like 'b-%'"
        ),
        0
    );
    // b's message came back after its visibility timeout; now it goes through.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while sql_count(wh.path(), "select count(*) from findings") < 40 {
        assert!(
            std::time::Instant::now() < deadline,
            "b was not redelivered"
        );
        let drained = run(&mut worker_cmd(wh.path(), &queue_url, &["--once"]));
        assert!(drained.status.code().is_some(), "{}", stderr(&drained));
    }
    assert_eq!(sql_count(wh.path(), "select count(*) from findings"), 40);
    assert_eq!(
        sql_count(wh.path(), "select count(distinct id) from findings"),
        40
    );
}

/// Requests by kind (LIST, GET, HEAD, PUT, DELETE, POST) to the warehouse bucket.
fn request_kinds(
    seen: &[crate::proxy::Seen],
    bucket: &str,
) -> std::collections::BTreeMap<&'static str, usize> {
    let mut kinds = std::collections::BTreeMap::new();
    for s in seen
        .iter()
        .filter(|s| s.path.starts_with(&format!("/{bucket}")))
    {
        let kind = match s.method.as_str() {
            "GET" if s.path.contains("list-type=2") => "LIST",
            "GET" => "GET",
            "HEAD" => "HEAD",
            "PUT" => "PUT",
            "DELETE" => "DELETE",
            _ => "POST",
        };
        *kinds.entry(kind).or_insert(0) += 1;
    }
    kinds
}

/// S3 requests of one commit and of queries on an S3 warehouse, counted at the proxy and
/// printed (`cargo test s3_requests -- --nocapture`); `GDQ_TEST_BINARY` runs another gdq
/// (an older build) for comparison, without the bounds.
#[test]
fn s3_requests_per_commit_and_per_query_are_few() {
    let aws = aws();
    let bucket = bucket(&aws, "requests");
    let url = format!("s3://{bucket}/wh");
    let wh = Path::new(&url);
    let exports = export_files(&testdata("exports"));
    let (first, last) = exports.split_at(exports.len() - 1);
    let first: Vec<&Path> = first.iter().map(|p| p.as_path()).collect();
    assert!(ingest(wh, &first).status.success());
    let proxy = Proxy::start(&crate::moto::moto().endpoint);
    let counted = |args: &[&str]| {
        let mut cmd = gdq(wh);
        cmd.args(args);
        let out = run(&mut through(&proxy, cmd));
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        request_kinds(&proxy.take_seen(), &bucket)
    };
    let last = last[0].display().to_string();
    let commit = counted(&["ingest", &last]);
    let count = counted(&["select count(*) from findings"]);
    let by_type = counted(&["select type, count(*) from findings group by type"]);
    let id = sql_rows(wh, "select min(id) from findings")
        .remove(0)
        .remove(0);
    let lookup = counted(&[&format!("select * from findings where id = '{id}'")]);
    let total = |k: &std::collections::BTreeMap<&str, usize>| k.values().sum::<usize>();
    eprintln!("S3 requests: one commit {} {commit:?}", total(&commit));
    eprintln!("S3 requests: count(*) {} {count:?}", total(&count));
    eprintln!("S3 requests: group by type {} {by_type:?}", total(&by_type));
    eprintln!("S3 requests: lookup by id {} {lookup:?}", total(&lookup));
    if std::env::var_os("GDQ_TEST_BINARY").is_none() {
        // A query reads the log (no listing of the partition folders) and only the files
        // it needs; count(*) is answered from the commits' statistics.
        assert!(count.get("LIST").copied().unwrap_or(0) <= 2, "{count:?}");
        assert!(total(&count) <= 10, "{count:?}");
        assert!(total(&lookup) <= 16, "{lookup:?}");
        // A PUT per data file (34 types) is the floor; the rest is the log and the ledger.
        assert!(total(&commit) <= 60, "{commit:?}");
    }
}

/// `ingest s3://` of 60 exports in a fresh bucket, with one object's GETs answered by
/// `fault`; returns the run, the exports bucket, the warehouse, and how many GETs matched.
fn catch_up_with_one_object_failing(
    name: &str,
    object: &str,
    fault: Fault,
) -> (std::process::Output, String, tempfile::TempDir, usize) {
    let aws = aws();
    let exports = bucket(&aws, name);
    populate(&aws, &exports);
    let proxy = Proxy::start(&crate::moto::moto().endpoint);
    let rule = proxy.rule("GET", &[object], fault, usize::MAX);
    let wh = tempdir();
    let mut cmd = catch_up(wh.path(), &exports);
    crate::moto::aws_env(&mut cmd);
    let out = run(&mut through(&proxy, cmd));
    let matched = rule.matched.load(std::sync::atomic::Ordering::SeqCst);
    (out, exports, wh, matched)
}

/// An AWS error keeps its kind to the user: the call, the object, AWS's code and what to do.
#[test]
fn an_access_denied_object_names_the_call_the_object_and_the_permission_to_grant() {
    let (out, exports, wh, refused) = catch_up_with_one_object_failing(
        "faults-denied",
        "/export-007.jsonl.gz",
        Fault::Refuse(403, "AccessDenied"),
    );
    assert!(refused >= 1, "no GET was refused: {}", stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let log = stderr(&out);
    let line = log
        .lines()
        .find(|l| l.contains("export-007.jsonl.gz"))
        .unwrap_or_else(|| panic!("no line names the object: {log}"));
    assert!(
        line.contains(&format!("s3:GetObject on s3://{exports}/AWSLogs/"))
            && line.contains("export-007.jsonl.gz failed: AccessDenied"),
        "{line}"
    );
    assert!(line.contains("hint: grant s3:GetObject on s3://"), "{line}");
    // The other 59 objects are in, once.
    assert_eq!(
        sql_count(wh.path(), "select count(*) from findings"),
        ((OBJECTS - 1) * PER_OBJECT) as u64
    );
}

#[test]
fn throttling_past_the_retries_says_so() {
    let (out, _, _wh, throttled) = catch_up_with_one_object_failing(
        "faults-throttled",
        "/export-003.jsonl.gz",
        Fault::Fail(503),
    );
    // The SDK retried (its standard mode makes 3 attempts) before giving up.
    assert!(throttled >= 3, "{throttled} GETs: {}", stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let log = stderr(&out);
    assert!(
        log.lines().any(|l| l.contains("export-003.jsonl.gz")
            && l.contains("SlowDown")
            && l.contains("hint: AWS throttled past the SDK's retries")),
        "{log}"
    );
}
