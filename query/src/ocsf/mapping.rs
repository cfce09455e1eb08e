//! One GuardDuty finding as an OCSF 1.6 Detection Finding (class 2004), following the shape
//! AWS Security Hub emits for GuardDuty; docs/ocsf.md gives the mapping field by field and
//! says where gdq chooses. Pure: JSON in, JSON out, so the goldens test it directly.

use serde_json::{Map, Value, json};

/// The OCSF version the documents declare.
pub const OCSF_VERSION: &str = "1.6.0";

/// What the mapping needs beyond the finding itself.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    /// How many versions of this finding id the warehouse holds (1: Create, more: Update).
    pub versions: i64,
    /// When gdq committed this version (UTC ms): `metadata.processed_time`.
    pub ingested_at_ms: Option<i64>,
}

fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, k| v.get(k).unwrap_or(&Value::Null))
}

fn text(v: &Value, path: &[&str]) -> Option<String> {
    match at(v, path) {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// OCSF `timestamp_t`: milliseconds since the epoch, from GuardDuty's ISO (or epoch) times.
fn time(v: &Value, path: &[&str]) -> Option<i64> {
    match at(v, path) {
        Value::String(s) => gdq_schemas::parse_timestamp_ms(s),
        Value::Number(n) => n.as_f64().map(|f| {
            // Epoch seconds (GuardDuty's API) or milliseconds.
            if f < 1e11 {
                (f * 1000.0) as i64
            } else {
                f as i64
            }
        }),
        _ => None,
    }
}

/// Severity label and OCSF severity_id: Low 2, Medium 3, High 4, Critical 5.
fn severity(score: Option<f64>) -> (i64, &'static str) {
    match score {
        Some(s) if s >= 9.0 => (5, "Critical"),
        Some(s) if s >= 7.0 => (4, "High"),
        Some(s) if s >= 4.0 => (3, "Medium"),
        Some(_) => (2, "Low"),
        None => (0, "Unknown"),
    }
}

/// Drops nulls, empty objects and empty arrays, as Security Hub's documents leave out
/// what a finding does not have.
fn prune(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let kept: Map<String, Value> = m
                .into_iter()
                .map(|(k, v)| (k, prune(v)))
                .filter(|(_, v)| !is_empty(v))
                .collect();
            Value::Object(kept)
        }
        Value::Array(a) => {
            Value::Array(a.into_iter().map(prune).filter(|v| !is_empty(v)).collect())
        }
        other => other,
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

fn role(f: &Value) -> (Option<&'static str>, Option<i64>) {
    match at(f, &["service", "resourceRole"]).as_str() {
        Some(r) if r.eq_ignore_ascii_case("TARGET") => (Some("Target"), Some(1)),
        Some(r) if r.eq_ignore_ascii_case("ACTOR") => (Some("Actor"), Some(2)),
        _ => (None, None),
    }
}

fn resource(f: &Value, kind: &str, uid: Option<String>, name: Option<String>) -> Value {
    let (role, role_id) = role(f);
    json!({
        "type": kind,
        "uid": uid,
        "name": name,
        "region": text(f, &["region"]),
        "cloud_partition": text(f, &["partition"]),
        "owner": { "account": { "uid": text(f, &["accountId"]), "type": "AWS Account", "type_id": 10 } },
        "role": role,
        "role_id": role_id,
    })
}

/// The instance's `Name` tag, which Security Hub shows as its name.
fn name_tag(details: &Value) -> Option<String> {
    details["tags"].as_array()?.iter().find_map(|t| {
        (t["key"] == "Name" || t["Key"] == "Name")
            .then(|| {
                t["value"]
                    .as_str()
                    .or(t["Value"].as_str())
                    .map(str::to_string)
            })
            .flatten()
    })
}

fn resources(f: &Value) -> Vec<Value> {
    let r = &f["resource"];
    let mut out = Vec::new();
    let instance = &r["instanceDetails"];
    if let Some(id) = text(instance, &["instanceId"]) {
        out.push(resource(
            f,
            "AWS::EC2::Instance",
            Some(id),
            name_tag(instance),
        ));
    }
    if let Some(id) = text(r, &["accessKeyDetails", "accessKeyId"]) {
        out.push(resource(
            f,
            "AWS::IAM::AccessKey",
            Some(id),
            text(r, &["accessKeyDetails", "userName"]),
        ));
    }
    for bucket in r["s3BucketDetails"].as_array().into_iter().flatten() {
        out.push(resource(
            f,
            "AWS::S3::Bucket",
            text(bucket, &["arn"]).or_else(|| text(bucket, &["name"])),
            text(bucket, &["name"]),
        ));
    }
    let eks = &r["eksClusterDetails"];
    if let Some(name) = text(eks, &["name"]) {
        out.push(resource(
            f,
            "AWS::EKS::Cluster",
            text(eks, &["arn"]).or(Some(name.clone())),
            Some(name),
        ));
    }
    let ecs = &r["ecsClusterDetails"];
    if let Some(name) = text(ecs, &["name"]) {
        out.push(resource(
            f,
            "AWS::ECS::Cluster",
            text(ecs, &["arn"]).or(Some(name.clone())),
            Some(name),
        ));
    }
    let container = &r["containerDetails"];
    if let Some(id) = text(container, &["id"]).or_else(|| text(container, &["name"])) {
        out.push(resource(
            f,
            "Container",
            Some(id),
            text(container, &["name"]),
        ));
    }
    let lambda = &r["lambdaDetails"];
    if let Some(name) = text(lambda, &["functionName"]) {
        out.push(resource(
            f,
            "AWS::Lambda::Function",
            text(lambda, &["functionArn"]).or(Some(name.clone())),
            Some(name),
        ));
    }
    let rds = &r["rdsDbInstanceDetails"];
    if let Some(id) = text(rds, &["dbInstanceIdentifier"]) {
        out.push(resource(
            f,
            "AWS::RDS::DBInstance",
            text(rds, &["dbInstanceArn"]).or(Some(id.clone())),
            Some(id),
        ));
    }
    if out.is_empty() {
        // Attack sequences and findings without details: the account is what is affected.
        out.push(resource(f, "AWS::::Account", text(f, &["accountId"]), None));
    }
    out
}

fn endpoint(remote: &Value, port: Option<&Value>) -> Value {
    json!({
        "ip": text(remote, &["ipAddressV4"]).or_else(|| text(remote, &["ipAddressV6"])),
        "port": port.and_then(Value::as_i64),
        "location": {
            "country": text(remote, &["country", "countryName"]),
            "city": text(remote, &["city", "cityName"]),
        },
        "autonomous_system": {
            "number": at(remote, &["organization", "asn"]).as_str().and_then(|s| s.parse::<i64>().ok())
                .or_else(|| at(remote, &["organization", "asn"]).as_i64()),
            "name": text(remote, &["organization", "asnOrg"]).or_else(|| text(remote, &["organization", "org"])),
        },
    })
}

fn direction(d: Option<&str>) -> (Option<&'static str>, i64) {
    match d {
        Some("INBOUND") => (Some("Inbound"), 1),
        Some("OUTBOUND") => (Some("Outbound"), 2),
        _ => (Some("Unknown"), 0),
    }
}

fn evidences(f: &Value) -> Vec<Value> {
    let action = &f["service"]["action"];
    let mut out = Vec::new();
    let api = &action["awsApiCallAction"];
    if api.is_object() {
        out.push(json!({
            "api": { "operation": text(api, &["api"]), "service": { "name": text(api, &["serviceName"]) } },
            "src_endpoint": endpoint(&api["remoteIpDetails"], None),
        }));
    }
    let net = &action["networkConnectionAction"];
    if net.is_object() {
        let (dir, dir_id) = direction(net["connectionDirection"].as_str());
        let remote = endpoint(
            &net["remoteIpDetails"],
            net["remotePortDetails"].get("port"),
        );
        let local = json!({
            "ip": text(net, &["localIpDetails", "ipAddressV4"]),
            "port": net["localPortDetails"].get("port").and_then(Value::as_i64),
        });
        // The remote end is the source of an inbound connection, the destination otherwise.
        let (src, dst) = if dir_id == 1 {
            (remote, local)
        } else {
            (local, remote)
        };
        out.push(json!({
            "connection_info": { "direction": dir, "direction_id": dir_id, "protocol_name": text(net, &["protocol"]) },
            "src_endpoint": src,
            "dst_endpoint": dst,
        }));
    }
    for probe in action["portProbeAction"]["portProbeDetails"]
        .as_array()
        .into_iter()
        .flatten()
    {
        out.push(json!({
            "connection_info": { "direction": "Inbound", "direction_id": 1 },
            "src_endpoint": endpoint(&probe["remoteIpDetails"], None),
            "dst_endpoint": { "port": probe["localPortDetails"].get("port").and_then(Value::as_i64) },
        }));
    }
    let dns = &action["dnsRequestAction"];
    if dns.is_object() {
        out.push(json!({
            "query": { "hostname": text(dns, &["domain"]) },
            "connection_info": { "protocol_name": text(dns, &["protocol"]) },
        }));
    }
    let k8s = &action["kubernetesApiCallAction"];
    if k8s.is_object() {
        out.push(json!({
            "api": { "operation": text(k8s, &["verb"]), "request": { "uid": text(k8s, &["requestUri"]) } },
            "src_endpoint": endpoint(&k8s["remoteIpDetails"], None),
        }));
    }
    let rds = &action["rdsLoginAttemptAction"];
    if rds.is_object() {
        out.push(json!({ "src_endpoint": endpoint(&rds["remoteIpDetails"], None) }));
    }
    let process = &f["service"]["runtimeDetails"]["process"];
    if process.is_object() {
        out.push(json!({
            "process": {
                "name": text(process, &["name"]),
                "pid": process["pid"].as_i64(),
                "file": {
                    "path": text(process, &["executablePath"]),
                    "hashes": text(process, &["executableSha256"]).map(|h| vec![json!({
                        "algorithm": "SHA-256", "algorithm_id": 3, "value": h
                    })]),
                },
                "user": { "name": text(process, &["user"]), "uid": text(process, &["userId"]) },
            },
        }));
    }
    out
}

fn observables(f: &Value, evidences: &[Value], resources: &[Value]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let mut push = |name: &str, kind: &str, type_id: i64, value: Option<String>| {
        if let Some(value) = value {
            let o = json!({ "name": name, "type": kind, "type_id": type_id, "value": value });
            if !out.contains(&o) {
                out.push(o);
            }
        }
    };
    for e in evidences {
        for end in ["src_endpoint", "dst_endpoint"] {
            push(
                &format!("evidences.{end}.ip"),
                "IP Address",
                2,
                text(e, &[end, "ip"]),
            );
        }
        push(
            "evidences.query.hostname",
            "Hostname",
            1,
            text(e, &["query", "hostname"]),
        );
    }
    push(
        "resources.user_name",
        "User Name",
        4,
        text(f, &["resource", "accessKeyDetails", "userName"]),
    );
    for r in resources {
        push("resources.uid", "Resource UID", 10, text(r, &["uid"]));
    }
    out
}

/// The OCSF Detection Finding for `f`, whose exported text is `raw`.
pub fn detection_finding(f: &Value, raw: &str, cx: Context) -> Value {
    let activity_id = if cx.versions > 1 { 2 } else { 1 };
    let activity = if activity_id == 1 { "Create" } else { "Update" };
    let (severity_id, severity_name) = severity(at(f, &["severity"]).as_f64());
    let archived = at(f, &["service", "archived"]).as_bool().unwrap_or(false);
    let (status_id, status) = if archived {
        (3, "Suppressed")
    } else {
        (1, "New")
    };
    let resources = resources(f);
    let evidences = evidences(f);
    let observables = observables(f, &evidences, &resources);
    let doc = json!({
        "activity_id": activity_id,
        "activity_name": activity,
        "category_uid": 2,
        "category_name": "Findings",
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "type_uid": 200400 + activity_id,
        "type_name": format!("Detection Finding: {activity}"),
        "severity_id": severity_id,
        "severity": severity_name,
        "status_id": status_id,
        "status": status,
        "time": time(f, &["updatedAt"]),
        "count": at(f, &["service", "count"]).as_i64(),
        "confidence_score": at(f, &["confidence"]).as_f64().map(|c| c.round() as i64),
        "message": text(f, &["title"]),
        "cloud": {
            "provider": "AWS",
            "region": text(f, &["region"]),
            "cloud_partition": text(f, &["partition"]),
            "account": { "uid": text(f, &["accountId"]), "type": "AWS Account", "type_id": 10 },
        },
        "metadata": {
            "product": { "name": "GuardDuty", "vendor_name": "AWS" },
            "version": OCSF_VERSION,
            "uid": text(f, &["arn"]).or_else(|| text(f, &["id"])),
            "processed_time": cx.ingested_at_ms,
            "profiles": ["cloud"],
        },
        "finding_info": {
            "uid": text(f, &["arn"]).or_else(|| text(f, &["id"])),
            "uid_alt": text(f, &["id"]),
            "title": text(f, &["title"]),
            "desc": text(f, &["description"]),
            "types": [text(f, &["type"])],
            "created_time": time(f, &["createdAt"]),
            "modified_time": time(f, &["updatedAt"]),
            "first_seen_time": time(f, &["service", "eventFirstSeen"]),
            "last_seen_time": time(f, &["service", "eventLastSeen"]),
            "analytic": {
                "uid": text(f, &["type"]),
                "name": text(f, &["type"]),
                "type": "Rule",
                "type_id": 1,
                "category": text(f, &["service", "featureName"]),
            },
        },
        "resources": resources,
        "evidences": evidences,
        "observables": observables,
    });
    let mut doc = prune(doc);
    // raw_data is the finding byte for byte as exported, a string as OCSF defines it.
    if let Value::Object(m) = &mut doc {
        m.insert("raw_data".into(), Value::String(raw.to_string()));
    }
    doc
}
