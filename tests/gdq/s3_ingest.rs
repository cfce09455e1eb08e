//! `gdq ingest s3://…` against moto: an export bucket with several accounts, regions and
//! days; filters select exactly the right objects and list only their folders; nothing is
//! committed twice, whether by a rerun or after the worker; gap repair after lost messages.

use std::collections::BTreeSet;
use std::path::Path;

use crate::moto::{Aws, aws, aws_env};
use crate::support::*;
use crate::worker::{KEY, Sse, drain, put, setup};

const ACCOUNTS: [&str; 2] = ["111111111111", "222222222222"];
const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];
const DAYS: [&str; 4] = ["2024/03/30", "2024/03/31", "2024/04/01", "2024/04/02"];

fn export_key(prefix: &str, account: &str, region: &str, day: &str, n: u32) -> String {
    format!("{prefix}AWSLogs/{account}/GuardDuty/{region}/{day}/export-{n}.jsonl.gz")
}

/// Two findings per object, with ids unique to the object.
fn export_body(key: &str, account: &str) -> Vec<u8> {
    let lines: String = (0..2)
        .map(|i| {
            serde_json::json!({"id": format!("{key}#{i}"), "type": "Recon:EC2/PortProbeUnprotectedPort",
                "accountId": account, "severity": 2, "updatedAt": "2024-03-31T10:00:00.000Z"})
            .to_string()
                + "\n"
        })
        .collect();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, lines.as_bytes()).unwrap();
    enc.finish().unwrap()
}

/// Uploads two exports per account, region and day under `prefix`; returns their keys.
fn populate(aws: &Aws, bucket: &str, prefix: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for account in ACCOUNTS {
        for region in REGIONS {
            for day in DAYS {
                for n in 0..2 {
                    let key = export_key(prefix, account, region, day, n);
                    put(aws, bucket, &key, export_body(&key, account), Sse::Kms(KEY));
                    keys.push(key);
                }
            }
        }
    }
    // Not in the export layout: never listed as an export.
    put(
        aws,
        bucket,
        &format!("{prefix}AWSLogs/{}/CloudTrail/x.json.gz", ACCOUNTS[0]),
        vec![1],
        Sse::Kms(KEY),
    );
    keys
}

/// gdq with the emulator's AWS settings (the source bucket is in S3).
fn gdq_aws(wh: &Path) -> std::process::Command {
    let mut cmd = gdq(wh);
    aws_env(&mut cmd);
    cmd
}

fn sources(wh: &Path) -> BTreeSet<String> {
    sql_rows(wh, "select distinct source from findings")
        .into_iter()
        .map(|r| r[0].clone())
        .collect()
}

#[test]
fn filters_select_exactly_the_right_objects_and_list_only_their_folders() {
    let aws = aws();
    let s = setup(&aws, "s3-filters", 30, 3, false);
    let all = populate(&aws, &s.bucket, "org/");
    let wh = tempdir();
    let url = format!("s3://{}/org", s.bucket);
    let filters = [
        "--since",
        "2024-03-31",
        "--until",
        "2024-04-01",
        "--account",
        ACCOUNTS[0],
        "--region",
        REGIONS[1],
    ];
    let plan = run(gdq_aws(wh.path())
        .args(["ingest", "--dry-run"])
        .args(filters)
        .arg(&url));
    assert!(plan.status.success(), "{}", stderr(&plan));
    let expected: BTreeSet<String> = all
        .iter()
        .filter(|k| {
            k.contains(ACCOUNTS[0])
                && k.contains(REGIONS[1])
                && (k.contains("2024/03/31") || k.contains("2024/04/01"))
        })
        .map(|k| format!("s3://{}/{k}", s.bucket))
        .collect();
    assert_eq!(expected.len(), 4);
    let planned: BTreeSet<String> = stdout(&plan)
        .lines()
        .filter(|l| l.starts_with("s3://"))
        .map(|l| l.split('\t').next().unwrap().to_string())
        .collect();
    assert_eq!(planned, expected);
    let log = stderr(&plan);
    let listed: Vec<String> = log
        .lines()
        .filter_map(|l| l.strip_prefix("gdq: listed "))
        .map(str::to_string)
        .collect();
    let base = format!("org/AWSLogs/{}/GuardDuty/{}/", ACCOUNTS[0], REGIONS[1]);
    assert_eq!(
        listed,
        [
            base.clone(),
            format!("{base}2024/"),
            format!("{base}2024/03/"),
            format!("{base}2024/03/31/"),
            format!("{base}2024/04/"),
            format!("{base}2024/04/01/"),
        ],
        "accounts and regions are named, not listed; other days are never listed"
    );
    assert!(
        !wh.path().join("_gdq").exists(),
        "a dry run writes nothing to the warehouse"
    );

    let out = run(gdq_aws(wh.path()).arg("ingest").args(filters).arg(&url));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(sources(wh.path()), expected);
    assert_eq!(sql_count(wh.path(), "select count(*) from findings"), 8);

    // Without dates: every day of every account and region, the CloudTrail key ignored.
    let everything = run(gdq_aws(wh.path()).arg("ingest").arg(&url));
    assert!(everything.status.success(), "{}", stderr(&everything));
    assert!(
        stdout(&everything).contains("28 ingested, 4 already in the warehouse"),
        "{}",
        stdout(&everything)
    );
    assert_eq!(sql_count(wh.path(), "select count(*) from findings"), 64);
    let again = run(gdq_aws(wh.path()).arg("ingest").arg(&url));
    assert!(stdout(&again).contains("0 ingested, 32 already in the warehouse"));
    assert_eq!(sql_count(wh.path(), "select count(*) from findings"), 64);
}

#[test]
fn a_prefix_inside_the_layout_and_relative_dates_narrow_the_walk() {
    let aws = aws();
    let s = setup(&aws, "s3-deep", 30, 3, false);
    populate(&aws, &s.bucket, "");
    let wh = tempdir();
    let url = format!(
        "s3://{}/AWSLogs/{}/GuardDuty/{}/2024/04",
        s.bucket, ACCOUNTS[1], REGIONS[0]
    );
    let plan = run(gdq_aws(wh.path()).args(["ingest", "--dry-run", &url]));
    assert!(plan.status.success(), "{}", stderr(&plan));
    assert!(
        stdout(&plan).contains("dry run: 4 new objects"),
        "{}",
        stdout(&plan)
    );
    let recent = run(gdq_aws(wh.path()).args(["ingest", "--dry-run", "--since", "1d", &url]));
    assert!(
        stdout(&recent).contains("dry run: 0 new objects"),
        "{}",
        stdout(&recent)
    );
    let bad = run(gdq_aws(wh.path()).args(["ingest", "--since", "yesterday-ish", &url]));
    assert_eq!(bad.status.code(), Some(2));
    assert_eq!(stderr(&bad).trim().lines().count(), 1, "{}", stderr(&bad));
}

#[test]
fn unencrypted_objects_are_refused_and_the_run_says_so() {
    let aws = aws();
    let s = setup(&aws, "s3-refuse", 30, 3, false);
    let good = export_key("", ACCOUNTS[0], REGIONS[0], DAYS[0], 0);
    let plain = export_key("", ACCOUNTS[0], REGIONS[0], DAYS[0], 1);
    put(
        &aws,
        &s.bucket,
        &good,
        export_body(&good, ACCOUNTS[0]),
        Sse::Kms(KEY),
    );
    put(
        &aws,
        &s.bucket,
        &plain,
        export_body(&plain, ACCOUNTS[0]),
        Sse::None,
    );
    let wh = tempdir();
    let out = run(gdq_aws(wh.path()).args(["ingest", &format!("s3://{}", s.bucket)]));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("1 ingested, 0 already in the warehouse, 1 refused"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        sources(wh.path()),
        BTreeSet::from([format!("s3://{}/{good}", s.bucket)])
    );
    let quarantine = std::fs::read_dir(wh.path().join("_gdq/quarantine"))
        .unwrap()
        .count();
    assert_eq!(quarantine, 1);
}

#[test]
fn after_a_worker_outage_ingest_picks_up_exactly_the_missing_objects() {
    let aws = aws();
    let s = setup(&aws, "s3-gap", 30, 3, true);
    let wh = tempdir();
    let key = |n| export_key("", ACCOUNTS[0], REGIONS[0], DAYS[1], n);
    for n in 0..3 {
        put(
            &aws,
            &s.bucket,
            &key(n),
            export_body(&key(n), ACCOUNTS[0]),
            Sse::Kms(KEY),
        );
    }
    let worker = drain(wh.path(), &s.queue_url, &[]);
    assert!(worker.status.success(), "{}", stderr(&worker));
    // The outage: notifications of the next objects expire before any worker sees them.
    for n in 3..5 {
        put(
            &aws,
            &s.bucket,
            &key(n),
            export_body(&key(n), ACCOUNTS[0]),
            Sse::Kms(KEY),
        );
    }
    aws.rt
        .block_on(aws.sqs.purge_queue().queue_url(&s.queue_url).send())
        .unwrap();
    let repair = run(gdq_aws(wh.path()).args([
        "ingest",
        &format!("s3://{}", s.bucket),
        "--since",
        "2024-03-31",
    ]));
    assert!(repair.status.success(), "{}", stderr(&repair));
    assert!(
        stdout(&repair).contains("5 found: 2 ingested, 3 already in the warehouse"),
        "{}",
        stdout(&repair)
    );
    assert_eq!(sql_count(wh.path(), "select count(*) from findings"), 10);
    assert_eq!(sources(wh.path()).len(), 5);
}

/// The ListObjectsV2 calls of `gdq ingest --dry-run ARGS` through a counting proxy.
fn list_calls(proxy: &crate::proxy::Proxy, wh: &Path, args: &[&str]) -> usize {
    proxy.take_seen();
    let out = run(gdq_aws(wh)
        .env("AWS_ENDPOINT_URL", &proxy.endpoint)
        .args(["ingest", "--dry-run"])
        .args(args));
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    proxy
        .take_seen()
        .iter()
        .filter(|s| s.method == "GET" && s.path.contains("list-type=2"))
        .count()
}

/// An organization's bucket: 20 accounts × 17 regions × 3 days. The walk names the accounts,
/// regions and days asked for instead of listing them, so the calls follow the question.
/// The numbers are the README's (docs/commands.md, "Listing").
#[test]
fn listing_an_organization_bucket_costs_calls_in_proportion_to_the_filter() {
    const DAYS: [&str; 3] = ["2026/11/28", "2026/11/29", "2026/11/30"];
    let aws = aws();
    let bucket = crate::moto::bucket(&aws, "s3-org-shape");
    let accounts: Vec<String> = (0..20).map(|i| format!("3000000000{i:02}")).collect();
    let regions = [
        "us-east-1",
        "us-east-2",
        "us-west-1",
        "us-west-2",
        "ca-central-1",
        "eu-west-1",
        "eu-west-2",
        "eu-west-3",
        "eu-central-1",
        "eu-north-1",
        "ap-south-1",
        "ap-northeast-1",
        "ap-northeast-2",
        "ap-northeast-3",
        "ap-southeast-1",
        "ap-southeast-2",
        "sa-east-1",
    ];
    let keys: Vec<String> = accounts
        .iter()
        .flat_map(|a| regions.iter().map(move |r| (a, r)))
        .flat_map(|(a, r)| DAYS.iter().map(move |d| export_key("", a, r, d, 0)))
        .collect();
    // Four uploaders at once: moto answers one request per thread.
    std::thread::scope(|scope| {
        for chunk in keys.chunks(keys.len().div_ceil(4)) {
            let bucket = &bucket;
            scope.spawn(move || {
                let aws = crate::moto::aws();
                for key in chunk {
                    put(&aws, bucket, key, vec![0], Sse::None);
                }
            });
        }
    });
    let proxy = crate::proxy::Proxy::start(&crate::moto::moto().endpoint);
    let wh = tempdir();
    let url = format!("s3://{bucket}");
    // Everything: the account folder, each account's region folder, then per account and
    // region its region, year and month folders and its three days (1 + 20 + 340 × 6).
    let everything = list_calls(&proxy, wh.path(), &[&url]);
    assert_eq!(everything, 1 + 20 + 340 * 6);
    // One account: its regions, then each region's folders.
    let one_account = list_calls(&proxy, wh.path(), &["--account", &accounts[3], &url]);
    assert_eq!(one_account, 1 + 17 * 6);
    // One account and region: that folder only.
    let one = list_calls(
        &proxy,
        wh.path(),
        &["--account", &accounts[3], "--region", "eu-west-1", &url],
    );
    assert_eq!(one, 6);
    eprintln!(
        "list calls over 20 accounts x 17 regions x 3 days: all {everything}, one account \
         {one_account}, one account and region {one}"
    );
}
