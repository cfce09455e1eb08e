//! `findings_ocsf`: golden OCSF documents for a Runtime, an EKS, an S3, an IAM and an
//! attack-sequence finding, and the shape of every document of the bundled exports (and of
//! the public samples in ../shared when present) against the raw findings.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use crate::support::*;

fn ocsf_documents(warehouse: &Path, sql: &str) -> Vec<Value> {
    let out = run(gdq(warehouse).args(["--format", "ndjson", sql]));
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one JSON document"))
        .collect()
}

fn exports_warehouse() -> tempfile::TempDir {
    let wh = tempdir();
    let out = ingest(wh.path(), &[&testdata("exports")]);
    assert!(out.status.success(), "{}", stderr(&out));
    wh
}

#[test]
fn golden_documents_for_runtime_eks_s3_iam_and_attack_sequence_findings() {
    let wh = exports_warehouse();
    for (name, id) in [
        ("runtime", "27660faa4c0b1dd3940f310ae5add4e9"),
        ("eks", "c29fb4cf863c3770958ccab9645dbc25"),
        ("s3", "32a57cb33349855f31bd308a5d7a44f6"),
        ("iam", "2d06d3d9d9e62a98f969bdb4ef3ce782"),
        ("attack-sequence", "8c258d654378414b9bc26f61a93eb816"),
    ] {
        let docs = ocsf_documents(
            wh.path(),
            &format!("select * from findings_ocsf where finding_info.uid_alt = '{id}'"),
        );
        assert_eq!(docs.len(), 1, "{name}: one document per finding id");
        let mut doc = docs.into_iter().next().unwrap();
        // The two fields that are not the finding's: when gdq committed it, and its text.
        assert!(
            doc["metadata"]["processed_time"].as_i64().is_some(),
            "{name}"
        );
        doc["metadata"]["processed_time"] = "${PROCESSED_TIME}".into();
        let raw: Value = serde_json::from_str(doc["raw_data"].as_str().unwrap()).unwrap();
        assert_eq!(raw["id"], id, "{name}: raw_data is the finding");
        doc["raw_data"] = "${RAW_DATA}".into();
        let path = repo().join(format!("tests/golden/ocsf/{name}.json"));
        let golden: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(doc, golden, "{name}: differs from {}", path.display());
    }
}

/// The shape every document must have, checked against its raw finding.
fn check_shape(doc: &Value, raw_versions: &HashMap<String, Vec<Value>>) {
    let id = doc["finding_info"]["uid_alt"]
        .as_str()
        .expect("uid_alt is the finding id");
    let versions = &raw_versions[id];
    let raw: Value = serde_json::from_str(doc["raw_data"].as_str().unwrap()).unwrap();
    assert!(
        versions.contains(&raw),
        "{id}: raw_data is one of its exported versions"
    );
    assert_eq!(doc["class_uid"], 2004);
    assert_eq!(doc["category_uid"], 2);
    let activity = doc["activity_id"].as_i64().unwrap();
    assert_eq!(activity, if versions.len() > 1 { 2 } else { 1 }, "{id}");
    assert_eq!(doc["type_uid"].as_i64(), Some(200400 + activity));
    let severity = raw["severity"].as_f64().unwrap();
    let want = if severity >= 9.0 {
        5
    } else if severity >= 7.0 {
        4
    } else if severity >= 4.0 {
        3
    } else {
        2
    };
    assert_eq!(doc["severity_id"].as_i64(), Some(want), "{id}");
    let archived = raw["service"]["archived"].as_bool().unwrap_or(false);
    assert_eq!(
        doc["status_id"].as_i64(),
        Some(if archived { 3 } else { 1 }),
        "{id}"
    );
    assert_eq!(doc["cloud"]["provider"], "AWS");
    assert_eq!(doc["cloud"]["account"]["uid"], raw["accountId"]);
    assert_eq!(doc["cloud"]["region"], raw["region"]);
    assert_eq!(doc["metadata"]["product"]["name"], "GuardDuty");
    assert_eq!(doc["metadata"]["version"], "1.6.0");
    assert_eq!(doc["finding_info"]["types"][0], raw["type"]);
    assert_eq!(doc["finding_info"]["title"], raw["title"]);
    assert_eq!(doc["time"], doc["finding_info"]["modified_time"]);
    if let Some(arn) = raw["arn"].as_str() {
        assert_eq!(doc["finding_info"]["uid"], arn);
    }
    let resources = doc["resources"].as_array().expect("resources[]");
    assert!(!resources.is_empty(), "{id}");
    for r in resources {
        assert!(r["type"].is_string() && r["uid"].is_string(), "{id}: {r}");
    }
    let buckets = raw["resource"]["s3BucketDetails"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(
        resources
            .iter()
            .filter(|r| r["type"] == "AWS::S3::Bucket")
            .count(),
        buckets,
        "{id}: one resource per bucket"
    );
    if let Some(api) = raw["service"]["action"]["awsApiCallAction"]["api"].as_str() {
        assert!(
            doc["evidences"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["api"]["operation"] == api),
            "{id}"
        );
    }
}

fn versions_by_id(dir: &Path) -> HashMap<String, Vec<Value>> {
    let mut out: HashMap<String, Vec<Value>> = HashMap::new();
    for f in oracle_findings(dir) {
        out.entry(f["id"].as_str().unwrap().to_string())
            .or_default()
            .push(f);
    }
    out
}

#[test]
fn every_document_has_the_detection_finding_shape_one_per_finding_id() {
    let wh = exports_warehouse();
    let raw = versions_by_id(&testdata("exports"));
    let docs = ocsf_documents(wh.path(), "select * from findings_ocsf");
    assert_eq!(docs.len(), raw.len(), "one row per finding id");
    for doc in &docs {
        check_shape(doc, &raw);
    }
    assert!(
        docs.iter().any(|d| d["activity_id"] == 1) && docs.iter().any(|d| d["activity_id"] == 2)
    );
    assert!(
        docs.iter().any(|d| d["status_id"] == 3),
        "archived findings are Suppressed"
    );

    // Nested fields are columns to query, not only to print.
    let rows = sql_rows(
        wh.path(),
        "select r.type, count(*) from (select unnest(resources) as r from findings_ocsf) group by 1 order by 1",
    );
    assert!(
        rows.iter().any(|r| r[0] == "AWS::EC2::Instance"),
        "{rows:?}"
    );
}

#[test]
fn public_samples_have_the_detection_finding_shape() {
    let Some(shared) = shared_findings() else {
        return;
    };
    let wh = tempdir();
    let out = ingest(wh.path(), &[&shared]);
    assert!(
        out.status.code() == Some(0) || out.status.code() == Some(3),
        "{}",
        stderr(&out)
    );
    let raw = versions_by_id(&shared);
    let docs = ocsf_documents(wh.path(), "select * from findings_ocsf");
    assert_eq!(docs.len(), raw.len());
    for doc in &docs {
        check_shape(doc, &raw);
    }
    let types: Vec<&str> = docs
        .iter()
        .flat_map(|d| d["resources"].as_array().unwrap())
        .filter_map(|r| r["type"].as_str())
        .collect();
    for t in [
        "AWS::EKS::Cluster",
        "AWS::S3::Bucket",
        "AWS::IAM::AccessKey",
        "AWS::RDS::DBInstance",
        "Container",
    ] {
        assert!(types.contains(&t), "{t} in {types:?}");
    }
}
