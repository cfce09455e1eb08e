//! Every public sample finding normalizes; golden values for one finding of each shape.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use crate::support::*;

/// One warehouse of the shared samples for all golden tests (ingested once per test binary).
fn shared_warehouse() -> Option<&'static Path> {
    static WAREHOUSE: OnceLock<Option<tempfile::TempDir>> = OnceLock::new();
    WAREHOUSE
        .get_or_init(|| {
            let shared = shared_findings()?;
            let wh = tempdir();
            ingest_ok(wh.path(), &shared);
            Some(wh)
        })
        .as_ref()
        .map(|wh| wh.path())
}

fn ingest_ok(warehouse: &Path, dir: &Path) {
    let out = ingest(warehouse, &[dir]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
}

/// The row of one finding as column → value (CSV text; empty = null).
fn row(warehouse: &Path, finding_type: &str) -> BTreeMap<String, String> {
    let out = run(gdq(warehouse).args([
        "--format",
        "csv",
        &format!("select * from findings where type = '{finding_type}' limit 1"),
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    let mut rows = parse_csv(&stdout(&out)).into_iter();
    let header = rows.next().unwrap();
    let values = rows
        .next()
        .unwrap_or_else(|| panic!("no row of type {finding_type}"));
    header.into_iter().zip(values).collect()
}

fn assert_fields(row: &BTreeMap<String, String>, expected: &[(&str, &str)]) {
    for (column, value) in expected {
        assert_eq!(
            row.get(*column).map(String::as_str),
            Some(*value),
            "column {column}"
        );
    }
}

#[test]
fn every_shared_sample_finding_normalizes() {
    let (Some(shared), Some(wh)) = (shared_findings(), shared_warehouse()) else {
        return;
    };
    assert_eq!(gdq_type_counts(wh), oracle_type_counts(&shared));
    // Nothing fell to null that the JSON has: every row has its severity, times and id.
    let missing = sql_count(
        wh,
        "select count(*) from findings where severity is null or updated_at is null or created_at is null or account_id is null or severity_label is null",
    );
    assert_eq!(missing, 0);
}

#[test]
fn golden_runtime_finding() {
    let Some(wh) = shared_warehouse() else {
        return;
    };
    let r = row(wh, "PrivilegeEscalation:Runtime/DockerSocketAccessed");
    assert_fields(
        &r,
        &[
            ("id", "abcd1234"),
            ("account_id", "123456789"),
            ("threat_purpose", "PrivilegeEscalation"),
            ("resource_type_affected", "Runtime"),
            ("threat_family", "DockerSocketAccessed"),
            ("detection_mechanism", ""),
            ("severity", "5.0"),
            ("severity_label", "Medium"),
            ("created_at", "2024-07-24T04:06:10.359Z"),
            ("updated_at", "2024-10-04T04:09:13.066Z"),
            ("event_first_seen", "2024-07-24T04:03:51.666Z"),
            ("count", "9"),
            ("sample", "false"),
            ("feature_name", "RuntimeMonitoring"),
            ("resource_type", "Container"),
            ("instance_id", "i-abcd1234"),
            ("action_type", ""),
        ],
    );
    assert!(r["container_image"].contains("infrastructure-bundle:2.8.37"));
    assert!(
        r["finding"].contains("\"runtimeDetails\""),
        "the raw JSON keeps fields gdq has no column for"
    );
}

#[test]
fn golden_eks_finding() {
    let Some(wh) = shared_warehouse() else {
        return;
    };
    let r = row(wh, "Persistence:Kubernetes/SuccessfulAnonymousAccess");
    assert_fields(
        &r,
        &[
            ("id", "250023a9abcdefabcdef12345678"),
            ("account_id", "123412341234"),
            ("severity", "8.0"),
            ("severity_label", "High"),
            ("resource_type", "EKSCluster"),
            ("eks_cluster_name", "GeneratedFindingEKSClusterName"),
            ("action_type", "KUBERNETES_API_CALL"),
            ("remote_ip", "175.16.199.1"),
            ("sample", "true"),
            ("count", "2"),
            ("updated_at", "2022-11-22T12:22:20.935Z"),
        ],
    );
}

#[test]
fn golden_s3_finding() {
    let Some(wh) = shared_warehouse() else {
        return;
    };
    let r = row(wh, "Impact:S3/MaliciousIPCaller");
    assert_fields(
        &r,
        &[
            ("id", "02bf27df0ab318783b0a8f63569dfd68"),
            ("account_id", "973743533182"),
            ("resource_type", "S3Bucket"),
            ("bucket_names", "[bucketName]"),
            ("access_key_id", "GeneratedFindingAccessKeyId"),
            ("action_type", "AWS_API_CALL"),
            ("api", "GeneratedFindingAPIName"),
            ("api_service_name", "GeneratedFindingAPIServiceName"),
            ("remote_ip", "81.2.69.144"),
            ("severity_label", "High"),
        ],
    );
}

#[test]
fn golden_network_finding_with_ports() {
    let Some(wh) = shared_warehouse() else {
        return;
    };
    let r = row(wh, "UnauthorizedAccess:EC2/SSHBruteForce");
    assert_fields(
        &r,
        &[
            ("instance_id", "i-081de1d7604b11e4a"),
            ("action_type", "NETWORK_CONNECTION"),
            ("remote_ip", "151.80.19.228"),
            ("remote_country", "France"),
            ("remote_org", "OVH SAS"),
            ("remote_asn", "16276"),
            ("local_port", "22"),
            ("remote_port", "32938"),
            ("protocol", "TCP"),
            ("severity_label", "Low"),
        ],
    );
}

#[test]
fn golden_attack_sequence_finding_from_bundled_samples() {
    let wh = tempdir();
    ingest_ok(wh.path(), &testdata("exports/AWSLogs/123456789012"));
    let r = row(wh.path(), "AttackSequence:S3/CompromisedData");
    assert_fields(
        &r,
        &[
            ("id", "b174b38d16e34da0a4c66012083bd8f7"),
            ("threat_purpose", "AttackSequence"),
            ("resource_type_affected", "S3"),
            ("threat_family", "CompromisedData"),
            ("severity", "9.0"),
            ("severity_label", "Critical"),
            // Panther's normalized form: space separator, no zone (UTC).
            ("updated_at", "2025-02-25T20:40:06.765Z"),
            ("sample", "true"),
            ("feature_name", "Correlation"),
            ("resource_type", "AttackSequence"),
        ],
    );
}
