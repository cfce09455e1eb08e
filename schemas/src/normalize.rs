//! One finding JSON → one row of the `findings` table.

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, ListBuilder, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::ArrowError;

use crate::finding_type::FindingType;
use crate::lenient::Text;
use crate::raw::{Action, RawFinding, RemoteIpDetails, Resource, Service};
use crate::severity::severity_label;

/// Why a line cannot become a row. Each variant is a quarantine reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LineError {
    #[error("not UTF-8 (invalid byte at offset {0})")]
    NotUtf8(usize),
    #[error("not valid JSON: {0}")]
    NotJson(String),
    /// The text ends inside a JSON value (a truncated line, or a value spread over lines).
    #[error("incomplete JSON value: {0}")]
    Incomplete(String),
    /// A complete value followed by more text (several values on one line, or garbage).
    #[error("text after the JSON value: {0}")]
    TrailingText(String),
    #[error("not a JSON object")]
    NotObject,
    #[error("no `id` string")]
    MissingId,
    #[error("no `type` string")]
    MissingType,
}

/// A finding parsed from its JSON text, borrowing from it.
#[derive(Debug)]
pub struct ParsedFinding<'a> {
    json: &'a str,
    raw: RawFinding<'a>,
}

impl<'a> ParsedFinding<'a> {
    pub fn id(&self) -> &str {
        self.raw.id.get().unwrap_or_default()
    }

    pub fn finding_type(&self) -> &str {
        self.raw.finding_type.get().unwrap_or_default()
    }

    /// `accountId`, when it is a string or number.
    pub fn account_id(&self) -> Option<&str> {
        self.raw.account_id.get()
    }

    /// `updatedAt` as epoch milliseconds.
    pub fn updated_at_ms(&self) -> Option<i64> {
        self.raw.updated_at.0
    }

    /// The JSON text the finding was parsed from.
    pub fn json(&self) -> &'a str {
        self.json
    }
}

/// Parses one JSON value (one finding) into the fields gdq lifts into columns. Fails only when
/// the text is not a JSON object or lacks a non-empty string `id` or `type`: every other
/// oddity (wrong types, nulls, unknown fields) normalizes to nulls.
pub fn parse_finding(json: &str) -> Result<ParsedFinding<'_>, LineError> {
    if !json.trim_start().starts_with('{') {
        return match serde_json::from_str::<serde::de::IgnoredAny>(json) {
            Ok(_) => Err(LineError::NotObject),
            Err(e) => Err(classify(e)),
        };
    }
    let raw: RawFinding = serde_json::from_str(json).map_err(classify)?;
    if raw.id.get().is_none_or(|s| s.is_empty()) {
        return Err(LineError::MissingId);
    }
    if raw.finding_type.get().is_none_or(|s| s.is_empty()) {
        return Err(LineError::MissingType);
    }
    Ok(ParsedFinding { json, raw })
}

fn classify(e: serde_json::Error) -> LineError {
    if e.is_eof() {
        LineError::Incomplete(e.to_string())
    } else if e.to_string().starts_with("trailing characters") {
        LineError::TrailingText(e.to_string())
    } else {
        LineError::NotJson(e.to_string())
    }
}

/// Arrow builders for a batch of rows of the `findings` table (all of one type, usually).
/// [`FindingRows::finish`] yields a batch with exactly [`crate::findings_schema`].
pub struct FindingRows {
    ingested_at_ms: i64,
    len: usize,
    bytes: usize,
    id: StringBuilder,
    arn: StringBuilder,
    account_id: StringBuilder,
    region: StringBuilder,
    aws_partition: StringBuilder,
    schema_version: StringBuilder,
    threat_purpose: StringBuilder,
    resource_type_affected: StringBuilder,
    threat_family: StringBuilder,
    detection_mechanism: StringBuilder,
    artifact: StringBuilder,
    severity: Float64Builder,
    severity_label: StringBuilder,
    title: StringBuilder,
    description: StringBuilder,
    created_at: TimestampMillisecondBuilder,
    updated_at: TimestampMillisecondBuilder,
    event_first_seen: TimestampMillisecondBuilder,
    event_last_seen: TimestampMillisecondBuilder,
    count: Int64Builder,
    archived: BooleanBuilder,
    sample: BooleanBuilder,
    feature_name: StringBuilder,
    resource_role: StringBuilder,
    detector_id: StringBuilder,
    resource_type: StringBuilder,
    instance_id: StringBuilder,
    access_key_id: StringBuilder,
    principal_id: StringBuilder,
    user_name: StringBuilder,
    user_type: StringBuilder,
    bucket_names: ListBuilder<StringBuilder>,
    eks_cluster_name: StringBuilder,
    ecs_cluster_name: StringBuilder,
    container_image: StringBuilder,
    lambda_function_name: StringBuilder,
    rds_instance_id: StringBuilder,
    action_type: StringBuilder,
    api: StringBuilder,
    api_service_name: StringBuilder,
    connection_direction: StringBuilder,
    protocol: StringBuilder,
    remote_ip: StringBuilder,
    remote_country: StringBuilder,
    remote_org: StringBuilder,
    remote_asn: StringBuilder,
    local_port: Int32Builder,
    remote_port: Int32Builder,
    dns_domain: StringBuilder,
    finding: StringBuilder,
    source: StringBuilder,
    ingested_at: TimestampMillisecondBuilder,
}

fn text(b: &mut StringBuilder, v: &Text<'_>) {
    b.append_option(v.get());
}

fn port(v: Option<i64>) -> Option<i32> {
    v.and_then(|p| i32::try_from(p).ok())
}

fn remote_ip_details<'r, 'a>(action: &'r Action<'a>) -> Option<&'r RemoteIpDetails<'a>> {
    action
        .aws_api_call_action
        .get()
        .and_then(|a| a.remote_ip_details.get())
        .or_else(|| {
            action
                .network_connection_action
                .get()
                .and_then(|a| a.remote_ip_details.get())
        })
        .or_else(|| {
            action
                .kubernetes_api_call_action
                .get()
                .and_then(|a| a.remote_ip_details.get())
        })
        .or_else(|| {
            action
                .rds_login_attempt_action
                .get()
                .and_then(|a| a.remote_ip_details.get())
        })
        .or_else(|| {
            action
                .port_probe_action
                .get()
                .and_then(|a| a.port_probe_details.get())
                .and_then(|d| d.remote_ip_details.get())
        })
}

fn container_image<'r>(resource: &'r Resource<'_>) -> Option<&'r str> {
    resource
        .container_details
        .get()
        .and_then(|c| c.image.get())
        .or_else(|| {
            resource
                .kubernetes_details
                .get()
                .and_then(|k| k.kubernetes_workload_details.get())
                .and_then(|w| w.containers.get())
                .and_then(|c| c.image.get())
        })
        .or_else(|| {
            resource
                .ecs_cluster_details
                .get()
                .and_then(|e| e.task_details.get())
                .and_then(|t| t.containers.get())
                .and_then(|c| c.image.get())
        })
}

impl FindingRows {
    /// Empty builders; every row gets `ingested_at_ms` as its `ingested_at`.
    pub fn new(ingested_at_ms: i64) -> Self {
        // Builders start empty: arrow's default capacity (1024 values per column, ~0.3 MB
        // for 53 columns) would be held by every type of every thread.
        let utc = || TimestampMillisecondBuilder::with_capacity(0).with_timezone("UTC");
        FindingRows {
            ingested_at_ms,
            len: 0,
            bytes: 0,
            id: StringBuilder::with_capacity(0, 0),
            arn: StringBuilder::with_capacity(0, 0),
            account_id: StringBuilder::with_capacity(0, 0),
            region: StringBuilder::with_capacity(0, 0),
            aws_partition: StringBuilder::with_capacity(0, 0),
            schema_version: StringBuilder::with_capacity(0, 0),
            threat_purpose: StringBuilder::with_capacity(0, 0),
            resource_type_affected: StringBuilder::with_capacity(0, 0),
            threat_family: StringBuilder::with_capacity(0, 0),
            detection_mechanism: StringBuilder::with_capacity(0, 0),
            artifact: StringBuilder::with_capacity(0, 0),
            severity: Float64Builder::with_capacity(0),
            severity_label: StringBuilder::with_capacity(0, 0),
            title: StringBuilder::with_capacity(0, 0),
            description: StringBuilder::with_capacity(0, 0),
            created_at: utc(),
            updated_at: utc(),
            event_first_seen: utc(),
            event_last_seen: utc(),
            count: Int64Builder::with_capacity(0),
            archived: BooleanBuilder::with_capacity(0),
            sample: BooleanBuilder::with_capacity(0),
            feature_name: StringBuilder::with_capacity(0, 0),
            resource_role: StringBuilder::with_capacity(0, 0),
            detector_id: StringBuilder::with_capacity(0, 0),
            resource_type: StringBuilder::with_capacity(0, 0),
            instance_id: StringBuilder::with_capacity(0, 0),
            access_key_id: StringBuilder::with_capacity(0, 0),
            principal_id: StringBuilder::with_capacity(0, 0),
            user_name: StringBuilder::with_capacity(0, 0),
            user_type: StringBuilder::with_capacity(0, 0),
            bucket_names: ListBuilder::with_capacity(StringBuilder::with_capacity(0, 0), 0),
            eks_cluster_name: StringBuilder::with_capacity(0, 0),
            ecs_cluster_name: StringBuilder::with_capacity(0, 0),
            container_image: StringBuilder::with_capacity(0, 0),
            lambda_function_name: StringBuilder::with_capacity(0, 0),
            rds_instance_id: StringBuilder::with_capacity(0, 0),
            action_type: StringBuilder::with_capacity(0, 0),
            api: StringBuilder::with_capacity(0, 0),
            api_service_name: StringBuilder::with_capacity(0, 0),
            connection_direction: StringBuilder::with_capacity(0, 0),
            protocol: StringBuilder::with_capacity(0, 0),
            remote_ip: StringBuilder::with_capacity(0, 0),
            remote_country: StringBuilder::with_capacity(0, 0),
            remote_org: StringBuilder::with_capacity(0, 0),
            remote_asn: StringBuilder::with_capacity(0, 0),
            local_port: Int32Builder::with_capacity(0),
            remote_port: Int32Builder::with_capacity(0),
            dns_domain: StringBuilder::with_capacity(0, 0),
            finding: StringBuilder::with_capacity(0, 0),
            source: StringBuilder::with_capacity(0, 0),
            ingested_at: utc(),
        }
    }

    /// Gives the raw `finding` buffer room for `bytes` of JSON, when no row is buffered.
    /// Grown by doubling instead, a batch of a few MB is copied once more on the way and
    /// each step above the allocator's largest size class takes fresh pages from the
    /// kernel. Untouched room costs address space, not memory.
    pub fn reserve_finding_bytes(&mut self, bytes: usize) {
        if self.len == 0 && self.finding.values_capacity() < bytes {
            self.finding = StringBuilder::with_capacity(0, bytes);
        }
    }

    /// Rows appended since the last [`FindingRows::finish`].
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Approximate bytes held: the JSON text of the rows plus a fixed per-row overhead.
    pub fn approx_bytes(&self) -> usize {
        self.bytes
    }

    /// Appends one finding; `source` is the URI of the object it came from.
    pub fn append(&mut self, finding: &ParsedFinding<'_>, source: &str) {
        let f = &finding.raw;
        self.id.append_option(f.id.get());
        text(&mut self.arn, &f.arn);
        text(&mut self.account_id, &f.account_id);
        text(&mut self.region, &f.region);
        text(&mut self.aws_partition, &f.partition);
        text(&mut self.schema_version, &f.schema_version);

        let t = FindingType::parse(finding.finding_type());
        self.threat_purpose.append_option(t.threat_purpose);
        self.resource_type_affected
            .append_option(t.resource_type_affected);
        self.threat_family.append_option(t.threat_family);
        self.detection_mechanism
            .append_option(t.detection_mechanism);
        self.artifact.append_option(t.artifact);

        self.severity.append_option(f.severity.0);
        self.severity_label
            .append_option(f.severity.0.and_then(severity_label));
        text(&mut self.title, &f.title);
        text(&mut self.description, &f.description);
        self.created_at.append_option(f.created_at.0);
        self.updated_at.append_option(f.updated_at.0);

        self.append_service(f.service.get());
        self.append_resource(f.resource.get());

        self.finding.append_value(finding.json);
        self.source.append_value(source);
        self.ingested_at.append_value(self.ingested_at_ms);
        self.len += 1;
        self.bytes += finding.json.len() + source.len() + 256;
    }

    fn append_service(&mut self, service: Option<&Service<'_>>) {
        let empty = Service::default();
        let s = service.unwrap_or(&empty);
        self.event_first_seen.append_option(s.event_first_seen.0);
        self.event_last_seen.append_option(s.event_last_seen.0);
        self.count.append_option(s.count.0);
        self.archived.append_option(s.archived.0);
        // Only sample findings carry the flag; absence means a real finding.
        self.sample.append_value(
            s.additional_info
                .get()
                .and_then(|a| a.sample.0)
                .unwrap_or(false),
        );
        text(&mut self.feature_name, &s.feature_name);
        text(&mut self.resource_role, &s.resource_role);
        text(&mut self.detector_id, &s.detector_id);

        let empty_action = Action::default();
        let a = s.action.get().unwrap_or(&empty_action);
        text(&mut self.action_type, &a.action_type);
        let api_call = a.aws_api_call_action.get();
        self.api.append_option(api_call.and_then(|c| c.api.get()));
        self.api_service_name
            .append_option(api_call.and_then(|c| c.service_name.get()));
        let net = a.network_connection_action.get();
        self.connection_direction
            .append_option(net.and_then(|n| n.connection_direction.get()));
        let dns = a.dns_request_action.get();
        self.protocol.append_option(
            net.and_then(|n| n.protocol.get())
                .or_else(|| dns.and_then(|d| d.protocol.get())),
        );

        let ip = remote_ip_details(a);
        self.remote_ip.append_option(
            ip.and_then(|i| i.ip_address_v4.get().or_else(|| i.ip_address_v6.get())),
        );
        self.remote_country.append_option(
            ip.and_then(|i| i.country.get())
                .and_then(|c| c.country_name.get()),
        );
        let org = ip.and_then(|i| i.organization.get());
        self.remote_org.append_option(org.and_then(|o| o.org.get()));
        self.remote_asn.append_option(org.and_then(|o| o.asn.get()));

        let probe = a
            .port_probe_action
            .get()
            .and_then(|p| p.port_probe_details.get());
        let local = net
            .and_then(|n| n.local_port_details.get())
            .or_else(|| probe.and_then(|p| p.local_port_details.get()))
            .and_then(|p| port(p.port.0));
        self.local_port.append_option(local);
        self.remote_port.append_option(
            net.and_then(|n| n.remote_port_details.get())
                .and_then(|p| port(p.port.0)),
        );
        self.dns_domain
            .append_option(dns.and_then(|d| d.domain.get()));
    }

    fn append_resource(&mut self, resource: Option<&Resource<'_>>) {
        let empty = Resource::default();
        let r = resource.unwrap_or(&empty);
        text(&mut self.resource_type, &r.resource_type);
        self.instance_id
            .append_option(r.instance_details.get().and_then(|i| i.instance_id.get()));
        let key = r.access_key_details.get();
        self.access_key_id
            .append_option(key.and_then(|k| k.access_key_id.get()));
        self.principal_id
            .append_option(key.and_then(|k| k.principal_id.get()));
        self.user_name
            .append_option(key.and_then(|k| k.user_name.get()));
        self.user_type
            .append_option(key.and_then(|k| k.user_type.get()));
        if r.s3_bucket_details.0.is_empty() {
            self.bucket_names.append_null();
        } else {
            for bucket in &r.s3_bucket_details.0 {
                self.bucket_names.values().append_option(bucket.name.get());
            }
            self.bucket_names.append(true);
        }
        self.eks_cluster_name
            .append_option(r.eks_cluster_details.get().and_then(|e| e.name.get()));
        self.ecs_cluster_name
            .append_option(r.ecs_cluster_details.get().and_then(|e| e.name.get()));
        self.container_image.append_option(container_image(r));
        self.lambda_function_name
            .append_option(r.lambda_details.get().and_then(|l| l.function_name.get()));
        self.rds_instance_id.append_option(
            r.rds_db_instance_details
                .get()
                .and_then(|d| d.db_instance_identifier.get()),
        );
    }

    /// Takes the rows appended so far as one batch and resets the builders.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.id.finish()),
            Arc::new(self.arn.finish()),
            Arc::new(self.account_id.finish()),
            Arc::new(self.region.finish()),
            Arc::new(self.aws_partition.finish()),
            Arc::new(self.schema_version.finish()),
            Arc::new(self.threat_purpose.finish()),
            Arc::new(self.resource_type_affected.finish()),
            Arc::new(self.threat_family.finish()),
            Arc::new(self.detection_mechanism.finish()),
            Arc::new(self.artifact.finish()),
            Arc::new(self.severity.finish()),
            Arc::new(self.severity_label.finish()),
            Arc::new(self.title.finish()),
            Arc::new(self.description.finish()),
            Arc::new(self.created_at.finish()),
            Arc::new(self.updated_at.finish()),
            Arc::new(self.event_first_seen.finish()),
            Arc::new(self.event_last_seen.finish()),
            Arc::new(self.count.finish()),
            Arc::new(self.archived.finish()),
            Arc::new(self.sample.finish()),
            Arc::new(self.feature_name.finish()),
            Arc::new(self.resource_role.finish()),
            Arc::new(self.detector_id.finish()),
            Arc::new(self.resource_type.finish()),
            Arc::new(self.instance_id.finish()),
            Arc::new(self.access_key_id.finish()),
            Arc::new(self.principal_id.finish()),
            Arc::new(self.user_name.finish()),
            Arc::new(self.user_type.finish()),
            Arc::new(self.bucket_names.finish()),
            Arc::new(self.eks_cluster_name.finish()),
            Arc::new(self.ecs_cluster_name.finish()),
            Arc::new(self.container_image.finish()),
            Arc::new(self.lambda_function_name.finish()),
            Arc::new(self.rds_instance_id.finish()),
            Arc::new(self.action_type.finish()),
            Arc::new(self.api.finish()),
            Arc::new(self.api_service_name.finish()),
            Arc::new(self.connection_direction.finish()),
            Arc::new(self.protocol.finish()),
            Arc::new(self.remote_ip.finish()),
            Arc::new(self.remote_country.finish()),
            Arc::new(self.remote_org.finish()),
            Arc::new(self.remote_asn.finish()),
            Arc::new(self.local_port.finish()),
            Arc::new(self.remote_port.finish()),
            Arc::new(self.dns_domain.finish()),
            Arc::new(self.finding.finish()),
            Arc::new(self.source.finish()),
            Arc::new(self.ingested_at.finish()),
        ];
        self.len = 0;
        self.bytes = 0;
        RecordBatch::try_new(crate::findings_schema(), columns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_lines_that_are_not_findings() {
        assert!(matches!(
            parse_finding("{\"id\":"),
            Err(LineError::Incomplete(_))
        ));
        assert!(matches!(
            parse_finding("{\"id\":x}"),
            Err(LineError::NotJson(_))
        ));
        assert!(matches!(
            parse_finding("{\"id\":\"a\",\"type\":\"t\"} {}"),
            Err(LineError::TrailingText(_))
        ));
        assert_eq!(parse_finding("[1,2]").err(), Some(LineError::NotObject));
        assert_eq!(parse_finding("\"text\"").err(), Some(LineError::NotObject));
        assert_eq!(
            parse_finding(r#"{"type":"A:B/C"}"#).err(),
            Some(LineError::MissingId)
        );
        assert_eq!(
            parse_finding(r#"{"id":"","type":"A:B/C"}"#).err(),
            Some(LineError::MissingId)
        );
        assert_eq!(
            parse_finding(r#"{"id":"x","type":7}"#).err(),
            Some(LineError::MissingType)
        );
        assert_eq!(
            parse_finding(r#"{"id":12,"type":"A:B/C"}"#).err(),
            Some(LineError::MissingId)
        );
        assert_eq!(
            parse_finding(r#"{"id":"x"}"#).err(),
            Some(LineError::MissingType)
        );
    }

    #[test]
    fn finish_matches_the_declared_schema() {
        let mut rows = FindingRows::new(0);
        let f = parse_finding(r#"{"id":"a","type":"Recon:EC2/Portscan","severity":5,"resource":[],"service":{"action":{}}}"#).unwrap();
        rows.append(&f, "file:///x");
        let batch = rows.finish().unwrap();
        assert_eq!(batch.schema(), crate::findings_schema());
        assert_eq!(batch.num_rows(), 1);
        assert_eq!(rows.len(), 0);
    }

    #[test]
    fn room_for_the_raw_json_is_made_only_between_batches() {
        use arrow_array::cast::AsArray;
        let line = r#"{"id":"a","type":"Recon:EC2/Portscan"}"#;
        let f = parse_finding(line).unwrap();
        let mut rows = FindingRows::new(0);
        rows.reserve_finding_bytes(1 << 20);
        assert!(rows.finding.values_capacity() >= 1 << 20);
        rows.append(&f, "file:///x");
        let before = rows.finding.values_capacity();
        // With a row buffered, a new buffer would lose it: nothing changes.
        rows.reserve_finding_bytes(4 << 20);
        assert_eq!(rows.finding.values_capacity(), before);
        rows.append(&f, "file:///x");
        let batch = rows.finish().unwrap();
        let finding = batch.column_by_name("finding").unwrap().as_string::<i32>();
        assert_eq!(arrow_array::Array::len(finding), 2);
        assert!(finding.iter().all(|v| v == Some(line)));
    }
}
