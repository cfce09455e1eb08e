//! `gdq setup --regions` and `--organization` against moto: three regions from a clean
//! account, a no-op second run, a dry run that touches nothing, one region's destination
//! broken and repaired, samples from every region, teardown of every region; and an
//! organization with a management account, a delegated administrator and two members.
//! Regions here are used by no other test (one detector per account and region).

use std::collections::BTreeSet;

use serde_json::Value;

use crate::moto::{Account, Aws, assume, aws_as, aws_env, aws_in, unique};
use crate::setup::{changed_lines, region};
use crate::support::{run, sql_rows, stderr, stdout, tempdir};

const HOME: &str = "eu-central-1";
const OTHERS: [&str; 2] = ["ap-northeast-1", "ap-south-1"];

fn detector_arns(rec: &Value) -> Vec<String> {
    rec["regions"]
        .as_array()
        .expect("the record lists the regions")
        .iter()
        .map(|r| {
            format!(
                "arn:aws:guardduty:{}:{}:detector/{}",
                r["region"].as_str().unwrap(),
                rec["account"].as_str().unwrap(),
                r["detector_id"].as_str().unwrap()
            )
        })
        .collect()
}

fn source_arns(policy: &Value, sid: &str) -> Vec<String> {
    let statement = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == sid)
        .unwrap_or_else(|| panic!("{sid} in {policy}"));
    match &statement["Condition"]["StringEquals"]["aws:SourceArn"] {
        Value::Array(list) => list
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect(),
        Value::String(one) => vec![one.clone()],
        other => panic!("SourceArn {other}"),
    }
}

#[test]
fn three_regions_from_a_clean_account_then_verify_repair_samples_and_teardown() {
    let home = region(HOME);
    let others: Vec<_> = OTHERS.iter().map(|r| region(r)).collect();
    let bucket = unique("setup-regions");
    let regions = OTHERS.join(",");
    let args = [
        "--bucket",
        &bucket,
        "--regions",
        &regions,
        "--frequency",
        "ONE_HOUR",
        "--notify-email",
        "secops@example.com",
    ];

    // The dry run plans every region and touches none.
    let mut dry: Vec<&str> = args.to_vec();
    dry.push("--dry-run");
    let plan = home.setup(&dry);
    assert!(plan.status.success(), "{}", stderr(&plan));
    let text = stdout(&plan);
    for r in [HOME, OTHERS[0], OTHERS[1]] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("detector") && l.contains(&format!("would    {r}: create"))),
            "the plan creates a detector in {r}: {text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("destination") && l.contains(&format!("{r}: export"))),
            "{text}"
        );
    }
    assert!(text.contains("forwarding role trust policy"), "{text}");
    assert!(home.detectors().is_empty() && others.iter().all(|r| r.detectors().is_empty()));
    assert!(!home.record_path().exists());

    let first = home.setup(&args);
    assert!(first.status.success(), "{}", stderr(&first));
    let out = stdout(&first);
    let rec = home.record();
    let recorded: Vec<&str> = rec["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["region"].as_str().unwrap())
        .collect();
    assert_eq!(recorded, [HOME, OTHERS[0], OTHERS[1]], "{out}");

    // Each region: one detector, as asked, exporting to the home bucket with the home key.
    for (r, part) in std::iter::once(&home)
        .chain(&others)
        .zip(rec["regions"].as_array().unwrap())
    {
        let id = part["detector_id"].as_str().unwrap();
        assert_eq!(r.detectors(), [id], "{}", r.name);
        let d = r.detector(id);
        assert_eq!(d.status().unwrap().as_str(), "ENABLED");
        assert_eq!(
            d.finding_publishing_frequency().unwrap().as_str(),
            "ONE_HOUR"
        );
        let dest =
            r.rt.block_on(
                r.gd.describe_publishing_destination()
                    .detector_id(id)
                    .destination_id(part["destination_id"].as_str().unwrap())
                    .send(),
            )
            .unwrap();
        let props = dest.destination_properties().unwrap();
        assert_eq!(
            props.destination_arn(),
            Some(format!("arn:aws:s3:::{bucket}").as_str())
        );
        assert_eq!(props.kms_key_arn(), rec["key_arn"].as_str());
        assert!(
            rec["key_arn"]
                .as_str()
                .unwrap()
                .contains(&format!(":kms:{HOME}:"))
        );
        assert_eq!(dest.status().unwrap().as_str(), "PUBLISHING", "{}", r.name);
    }
    // The key and bucket policies name every detector, and only them.
    let arns: BTreeSet<String> = detector_arns(&rec).into_iter().collect();
    let key_id = rec["key_arn"].as_str().unwrap().rsplit('/').next().unwrap();
    let key_policy = home.key_policy(key_id);
    assert_eq!(
        source_arns(&key_policy, "gdqGuardDutyEncryptsExports")
            .into_iter()
            .collect::<BTreeSet<_>>(),
        arns
    );
    let bucket_policy = home.bucket_policy(&bucket);
    for sid in ["gdqGuardDutyGetBucketLocation", "gdqGuardDutyPutObject"] {
        assert_eq!(
            source_arns(&bucket_policy, sid)
                .into_iter()
                .collect::<BTreeSet<_>>(),
            arns
        );
    }
    // Alerts: the other regions forward to the home bus through gdq's role.
    let role = rec["alerts"]["forward_role_arn"]
        .as_str()
        .expect("a forwarding role");
    for r in &others {
        let targets =
            r.rt.block_on(r.events.list_targets_by_rule().rule("gdq-alerts").send())
                .unwrap();
        let t = &targets.targets()[0];
        assert_eq!(
            t.arn(),
            format!("arn:aws:events:{HOME}:123456789012:event-bus/default")
        );
        assert_eq!(t.role_arn(), Some(role));
    }

    // A second run changes nothing.
    let second = home.setup(&args);
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(
        changed_lines(&stdout(&second)).is_empty(),
        "{}",
        stdout(&second)
    );
    assert!(stdout(&second).contains("nothing to change"));

    // verify: a region × link table, every cell ok.
    let verified = run(home.gdq().args(["setup", "verify"]));
    assert!(verified.status.success(), "{}", stdout(&verified));
    let table = stdout(&verified);
    let header = table.lines().next().unwrap();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["link", HOME, OTHERS[0], OTHERS[1]]
    );
    let destination_row = table
        .lines()
        .find(|l| l.starts_with("destination"))
        .unwrap();
    assert_eq!(
        destination_row
            .split_whitespace()
            .filter(|c| *c == "ok")
            .count(),
        3
    );

    // One region's destination deleted: verify names that region, setup repairs it.
    let broken = &others[1];
    let part = &rec["regions"][2];
    broken
        .rt
        .block_on(
            broken
                .gd
                .delete_publishing_destination()
                .detector_id(part["detector_id"].as_str().unwrap())
                .destination_id(part["destination_id"].as_str().unwrap())
                .send(),
        )
        .unwrap();
    let failed = run(home.gdq().args(["setup", "verify"]));
    assert_eq!(failed.status.code(), Some(1), "{}", stdout(&failed));
    let text = stdout(&failed);
    let detail: Vec<&str> = text.lines().filter(|l| l.starts_with("BROKEN ")).collect();
    assert_eq!(detail.len(), 1, "{text}");
    assert!(
        detail[0].starts_with(&format!("BROKEN {} destination:", OTHERS[1])),
        "{text}"
    );
    assert!(
        stderr(&failed).contains(&format!("destination in {}", OTHERS[1])),
        "{}",
        stderr(&failed)
    );
    let repaired = home.setup(&args);
    assert!(repaired.status.success(), "{}", stderr(&repaired));
    let changes = changed_lines(&stdout(&repaired))
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert!(changes[0].contains(&format!("{}: export findings", OTHERS[1])));
    assert!(run(home.gdq().args(["setup", "verify"])).status.success());

    // Samples from every region become queryable rows of their region.
    let samples =
        run(home
            .gdq()
            .args(["setup", "verify", "--sample-findings", "--timeout", "60s"]));
    assert!(
        samples.status.success(),
        "{}{}",
        stdout(&samples),
        stderr(&samples)
    );
    for r in [HOME, OTHERS[0], OTHERS[1]] {
        assert!(
            stdout(&samples).contains(&format!("sample findings from {r}:")),
            "{}",
            stdout(&samples)
        );
    }
    let rows = sql_rows(
        &home.warehouse(),
        "select region, count(distinct id) from findings where sample group by region order by region",
    );
    let by_region: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    let mut expected = vec![HOME, OTHERS[0], OTHERS[1]];
    expected.sort();
    assert_eq!(by_region, expected);

    // Teardown removes every region's part and keeps the detectors.
    let down = run(home.gdq().arg("teardown"));
    assert!(down.status.success(), "{}", stderr(&down));
    for (r, part) in std::iter::once(&home)
        .chain(&others)
        .zip(rec["regions"].as_array().unwrap())
    {
        let id = part["detector_id"].as_str().unwrap();
        let listed =
            r.rt.block_on(r.gd.list_publishing_destinations().detector_id(id).send())
                .unwrap();
        assert!(
            listed.destinations().is_empty(),
            "{}: destination removed",
            r.name
        );
        assert_eq!(r.detector(id).status().unwrap().as_str(), "ENABLED");
        assert!(
            r.rt.block_on(r.events.describe_rule().name("gdq-alerts").send())
                .is_err(),
            "{}: alert rule removed",
            r.name
        );
    }
    let iam = aws_sdk_iam::Client::new(&aws_in(HOME).config);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert!(
        rt.block_on(iam.get_role().role_name("gdq-alerts-forward").send())
            .is_err(),
        "forwarding role removed"
    );
    assert!(!home.record_path().exists());
}

#[test]
fn regions_all_plans_every_region_enabled_for_the_account() {
    let account = assume("210000000007");
    let dir = tempdir();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_gdq"));
    aws_env(&mut cmd)
        .env("AWS_REGION", "eu-west-1")
        .env("GDQ_CONFIG", dir.path().join("setup.json"));
    account.env(&mut cmd);
    let bucket = unique("setup-all");
    let out = run(cmd.args([
        "setup",
        "--bucket",
        &bucket,
        "--regions",
        "all",
        "--dry-run",
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    // Independently: the regions EC2 says are enabled, in the caller's partition.
    let aws = aws_as("eu-west-1", &account);
    let ec2 = aws_sdk_ec2::Client::new(&aws.config);
    let described = aws
        .rt
        .block_on(ec2.describe_regions().all_regions(true).send())
        .unwrap();
    let enabled: BTreeSet<String> = described
        .regions()
        .iter()
        .filter(|r| r.opt_in_status() != Some("not-opted-in"))
        .filter_map(|r| r.region_name())
        .filter(|n| !n.starts_with("cn-") && !n.starts_with("us-gov-") && !n.starts_with("us-iso"))
        .map(str::to_string)
        .collect();
    assert!(enabled.len() >= 15, "{enabled:?}");
    let planned: BTreeSet<String> = text
        .lines()
        .filter(|l| l.starts_with("detector"))
        .filter_map(|l| l.split_whitespace().nth(2))
        .map(|r| r.trim_end_matches(':').to_string())
        .collect();
    assert_eq!(planned, enabled, "{text}");
    assert!(!dir.path().join("setup.json").exists());
}

/// Two findings of `account` in `region`, as GuardDuty exports them.
fn member_export(account: &str, region: &str) -> Vec<u8> {
    let lines: String = (0..2)
        .map(|i| {
            serde_json::json!({"id": format!("{account}-{region}-{i}"),
                "type": "Recon:EC2/PortProbeUnprotectedPort", "accountId": account,
                "region": region, "severity": 5, "updatedAt": "2026-11-30T10:00:00.000Z"})
            .to_string()
                + "\n"
        })
        .collect();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, lines.as_bytes()).unwrap();
    enc.finish().unwrap()
}

fn gdq_as(account: &Account, region: &str, dir: &std::path::Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_gdq"));
    aws_env(&mut cmd)
        .env("AWS_REGION", region)
        .env("GDQ_CONFIG", dir.join("setup.json"))
        .env("GDQ_WAREHOUSE", dir.join("wh"));
    account.env(&mut cmd);
    cmd
}

fn organization_configuration(aws: &Aws, detector: &str) -> (String, Vec<(String, String)>) {
    let gd = aws_sdk_guardduty::Client::new(&aws.config);
    let got = aws
        .rt
        .block_on(
            gd.describe_organization_configuration()
                .detector_id(detector)
                .send(),
        )
        .unwrap();
    (
        got.auto_enable_organization_members()
            .map(|a| a.as_str().to_string())
            .unwrap_or_default(),
        got.features()
            .iter()
            .map(|f| {
                (
                    f.name().map(|n| n.as_str().to_string()).unwrap_or_default(),
                    f.auto_enable()
                        .map(|a| a.as_str().to_string())
                        .unwrap_or_default(),
                )
            })
            .collect(),
    )
}

#[test]
fn organization_mode_delegates_enables_members_and_their_exports_become_rows() {
    const REGIONS: [&str; 2] = ["us-east-2", "eu-west-3"];
    let management = assume("210000000001");
    let mgmt = aws_as(REGIONS[0], &management);
    let orgs = aws_sdk_organizations::Client::new(&mgmt.config);
    mgmt.rt
        .block_on(
            orgs.create_organization()
                .feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All)
                .send(),
        )
        .unwrap();
    let mut ids = Vec::new();
    for name in ["security", "member-a", "member-b"] {
        let created = mgmt
            .rt
            .block_on(
                orgs.create_account()
                    .account_name(name)
                    .email(format!("{name}@example.com"))
                    .send(),
            )
            .unwrap();
        ids.push(
            created
                .create_account_status()
                .and_then(|s| s.account_id())
                .expect("moto creates the account at once")
                .to_string(),
        );
    }
    let (admin_id, members) = (ids[0].clone(), [ids[1].clone(), ids[2].clone()]);
    let admin = assume(&admin_id);
    let bucket = unique("setup-org");
    let args = [
        "setup",
        "--organization",
        "--admin-account",
        &admin_id,
        "--bucket",
        &bucket,
        "--regions",
        REGIONS[1],
        "--features",
        "S3_DATA_EVENTS",
    ];

    // From the management account: the delegation, in every region, and nothing else.
    let dir = tempdir();
    let delegated = run(gdq_as(&management, REGIONS[0], dir.path()).args(args));
    assert!(delegated.status.success(), "{}", stderr(&delegated));
    let text = stdout(&delegated);
    assert_eq!(
        changed_lines(&text)
            .iter()
            .filter(|l| l.contains(&format!(
                "make {admin_id} GuardDuty's delegated administrator"
            )))
            .count(),
        2,
        "{text}"
    );
    assert!(
        text.contains(&format!("with the credentials of account {admin_id}")),
        "{text}"
    );
    assert!(
        !dir.path().join("setup.json").exists(),
        "no export path in the management account"
    );
    for r in REGIONS {
        let gd = aws_sdk_guardduty::Client::new(&aws_as(r, &management).config);
        let listed = mgmt
            .rt
            .block_on(gd.list_organization_admin_accounts().send())
            .unwrap();
        assert_eq!(
            listed.admin_accounts()[0].admin_account_id(),
            Some(admin_id.as_str()),
            "{r}"
        );
    }
    let again = run(gdq_as(&management, REGIONS[0], dir.path()).args(args));
    assert!(
        changed_lines(&stdout(&again)).is_empty(),
        "{}",
        stdout(&again)
    );

    // From the administrator: the export path, and every member auto-enabled everywhere.
    let built = run(gdq_as(&admin, REGIONS[0], dir.path()).args(args));
    assert!(built.status.success(), "{}", stderr(&built));
    let rec: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("setup.json")).unwrap())
            .unwrap();
    assert_eq!(rec["account"], admin_id.as_str());
    assert_eq!(rec["organization"]["admin_account"], admin_id.as_str());
    assert_eq!(rec["organization"]["management_account"], "210000000001");
    for (r, part) in REGIONS.iter().zip(rec["regions"].as_array().unwrap()) {
        let (members_state, features) =
            organization_configuration(&aws_as(r, &admin), part["detector_id"].as_str().unwrap());
        assert_eq!(members_state, "ALL", "{r}");
        assert_eq!(
            features,
            [("S3_DATA_EVENTS".to_string(), "ALL".to_string())],
            "{r}"
        );
    }
    let second = run(gdq_as(&admin, REGIONS[0], dir.path()).args(args));
    assert!(
        changed_lines(&stdout(&second)).is_empty(),
        "{}",
        stdout(&second)
    );
    let verified = run(gdq_as(&admin, REGIONS[0], dir.path()).args(["setup", "verify"]));
    assert!(verified.status.success(), "{}", stdout(&verified));
    let org_row = stdout(&verified)
        .lines()
        .find(|l| l.starts_with("organization"))
        .map(str::to_string)
        .unwrap_or_default();
    assert_eq!(
        org_row.split_whitespace().filter(|c| *c == "ok").count(),
        2,
        "{org_row}"
    );

    // Members' exports, placed as the administrator's destination writes them, become rows
    // with their own accounts.
    let s3 = aws_as(REGIONS[0], &admin);
    let key_arn = rec["key_arn"].as_str().unwrap();
    for (member, region) in members.iter().zip(REGIONS) {
        let key = format!("AWSLogs/{member}/GuardDuty/{region}/2026/11/30/export.jsonl.gz");
        s3.rt
            .block_on(
                s3.s3
                    .put_object()
                    .bucket(&bucket)
                    .key(&key)
                    .body(member_export(member, region).into())
                    .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
                    .ssekms_key_id(key_arn)
                    .send(),
            )
            .unwrap();
    }
    let ingested = run(gdq_as(&admin, REGIONS[0], dir.path()).arg("ingest"));
    assert!(ingested.status.success(), "{}", stderr(&ingested));
    let by_account = run(gdq_as(&admin, REGIONS[0], dir.path())
        .args(["status", "--by", "account", "--format", "csv"]));
    assert!(by_account.status.success(), "{}", stderr(&by_account));
    let rows = crate::support::parse_csv(&stdout(&by_account));
    let got: BTreeSet<(String, String, String)> = rows[1..]
        .iter()
        .map(|r| (r[0].clone(), r[1].clone(), r[2].clone()))
        .collect();
    let expected: BTreeSet<(String, String, String)> = members
        .iter()
        .zip(REGIONS)
        .map(|(m, r)| (m.clone(), r.to_string(), "2".to_string()))
        .collect();
    assert_eq!(got, expected, "{}", stdout(&by_account));

    // A member is neither account: one line, exit 2, nothing changed.
    let member = assume(&members[0]);
    let refused = run(gdq_as(&member, REGIONS[0], tempdir().path()).args(args));
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert_eq!(stderr(&refused).lines().count(), 1, "{}", stderr(&refused));
    assert!(stderr(&refused).contains("neither"), "{}", stderr(&refused));
    let gd = aws_sdk_guardduty::Client::new(&aws_as(REGIONS[0], &member).config);
    let none = mgmt.rt.block_on(gd.list_detectors().send()).unwrap();
    assert!(
        none.detector_ids().is_empty(),
        "the member was asked for nothing"
    );
}
