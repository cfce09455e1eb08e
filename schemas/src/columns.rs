//! The columns of the `findings` table, defined once: name, type, where the value comes
//! from in the finding JSON, and what it means. The Arrow schema, `gdq schema` and the
//! documentation are all rendered from [`COLUMNS`].

use std::sync::{Arc, LazyLock};

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Arrow type family of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    Text,
    TextList,
    Float,
    Int64,
    Int32,
    Bool,
    /// `Timestamp(Millisecond, "UTC")`.
    Timestamp,
}

impl ColumnKind {
    pub fn data_type(self) -> DataType {
        match self {
            ColumnKind::Text => DataType::Utf8,
            ColumnKind::TextList => {
                DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)))
            }
            ColumnKind::Float => DataType::Float64,
            ColumnKind::Int64 => DataType::Int64,
            ColumnKind::Int32 => DataType::Int32,
            ColumnKind::Bool => DataType::Boolean,
            ColumnKind::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        }
    }

    fn sql_name(self) -> &'static str {
        match self {
            ColumnKind::Text => "string",
            ColumnKind::TextList => "list<string>",
            ColumnKind::Float => "double",
            ColumnKind::Int64 => "bigint",
            ColumnKind::Int32 => "int",
            ColumnKind::Bool => "boolean",
            ColumnKind::Timestamp => "timestamp(ms, UTC)",
        }
    }
}

/// One column of the table contract.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub kind: ColumnKind,
    /// Where the value comes from (a JSON path in the finding, or how gdq derives it).
    pub source: &'static str,
    pub meaning: &'static str,
}

const fn col(
    name: &'static str,
    kind: ColumnKind,
    source: &'static str,
    meaning: &'static str,
) -> Column {
    Column {
        name,
        kind,
        source,
        meaning,
    }
}

use ColumnKind::*;

/// Every column stored in the Parquet files, in file order. The partition column `type`
/// comes from the directory name and is not stored in the files (DESIGN §3).
pub const COLUMNS: &[Column] = &[
    col(
        "id",
        Text,
        "id",
        "Finding id; stays the same across re-exported versions",
    ),
    col("arn", Text, "arn", "Finding ARN"),
    col(
        "account_id",
        Text,
        "accountId",
        "Account the finding belongs to (may differ from the export's account)",
    ),
    col("region", Text, "region", "AWS Region of the finding"),
    col(
        "aws_partition",
        Text,
        "partition",
        "AWS partition (aws, aws-cn, aws-us-gov)",
    ),
    col(
        "schema_version",
        Text,
        "schemaVersion",
        "GuardDuty finding schema version",
    ),
    col(
        "threat_purpose",
        Text,
        "type (before `:`)",
        "Threat purpose, e.g. Backdoor, Recon, UnauthorizedAccess",
    ),
    col(
        "resource_type_affected",
        Text,
        "type (between `:` and `/`)",
        "Resource type in the type name, e.g. EC2, IAMUser, S3",
    ),
    col(
        "threat_family",
        Text,
        "type (after `/`, before `.` or `!`)",
        "Threat family name, e.g. C&CActivity",
    ),
    col(
        "detection_mechanism",
        Text,
        "type (after the first `.`)",
        "Detection mechanism, e.g. B",
    ),
    col("artifact", Text, "type (after `!`)", "Artifact, e.g. DNS"),
    col(
        "severity",
        Float,
        "severity",
        "Severity, 1.0 to 10.0 (int or float in the JSON)",
    ),
    col(
        "severity_label",
        Text,
        "derived from severity",
        "Low (1.0–3.9), Medium (4.0–6.9), High (7.0–8.9), Critical (9.0–10.0)",
    ),
    col("title", Text, "title", "Finding title"),
    col("description", Text, "description", "Finding description"),
    col(
        "created_at",
        Timestamp,
        "createdAt",
        "When GuardDuty created the finding",
    ),
    col(
        "updated_at",
        Timestamp,
        "updatedAt",
        "When this version of the finding was last updated",
    ),
    col(
        "event_first_seen",
        Timestamp,
        "service.eventFirstSeen",
        "First occurrence of the activity",
    ),
    col(
        "event_last_seen",
        Timestamp,
        "service.eventLastSeen",
        "Last occurrence of the activity",
    ),
    col(
        "count",
        Int64,
        "service.count",
        "Number of times GuardDuty saw the activity; grows with each version",
    ),
    col(
        "archived",
        Bool,
        "service.archived",
        "Whether the finding was archived when exported",
    ),
    col(
        "sample",
        Bool,
        "service.additionalInfo.sample",
        "True for sample findings (CreateSampleFindings); false when absent",
    ),
    col(
        "feature_name",
        Text,
        "service.featureName",
        "GuardDuty feature that produced the finding",
    ),
    col(
        "resource_role",
        Text,
        "service.resourceRole",
        "TARGET or ACTOR",
    ),
    col(
        "detector_id",
        Text,
        "service.detectorId",
        "Detector that produced the finding",
    ),
    col(
        "resource_type",
        Text,
        "resource.resourceType",
        "Instance, AccessKey, S3Bucket, EKSCluster, Container, ECSCluster, Lambda, RDSDBInstance, …",
    ),
    col(
        "instance_id",
        Text,
        "resource.instanceDetails.instanceId",
        "EC2 instance id",
    ),
    col(
        "access_key_id",
        Text,
        "resource.accessKeyDetails.accessKeyId",
        "Access key id",
    ),
    col(
        "principal_id",
        Text,
        "resource.accessKeyDetails.principalId",
        "Principal id",
    ),
    col(
        "user_name",
        Text,
        "resource.accessKeyDetails.userName",
        "IAM user or role name",
    ),
    col(
        "user_type",
        Text,
        "resource.accessKeyDetails.userType",
        "IAMUser, AssumedRole, Root, FederatedUser, …",
    ),
    col(
        "bucket_names",
        TextList,
        "resource.s3BucketDetails[].name",
        "Names of the S3 buckets involved",
    ),
    col(
        "eks_cluster_name",
        Text,
        "resource.eksClusterDetails.name",
        "EKS cluster name",
    ),
    col(
        "ecs_cluster_name",
        Text,
        "resource.ecsClusterDetails.name",
        "ECS cluster name",
    ),
    col(
        "container_image",
        Text,
        "resource.containerDetails.image, else the first container of kubernetesDetails.kubernetesWorkloadDetails or ecsClusterDetails.taskDetails",
        "Container image",
    ),
    col(
        "lambda_function_name",
        Text,
        "resource.lambdaDetails.functionName",
        "Lambda function name",
    ),
    col(
        "rds_instance_id",
        Text,
        "resource.rdsDbInstanceDetails.dbInstanceIdentifier",
        "RDS DB instance identifier",
    ),
    col(
        "action_type",
        Text,
        "service.action.actionType",
        "AWS_API_CALL, NETWORK_CONNECTION, PORT_PROBE, DNS_REQUEST, KUBERNETES_API_CALL, RDS_LOGIN_ATTEMPT, …",
    ),
    col(
        "api",
        Text,
        "service.action.awsApiCallAction.api",
        "API called",
    ),
    col(
        "api_service_name",
        Text,
        "service.action.awsApiCallAction.serviceName",
        "Service of the API called",
    ),
    col(
        "connection_direction",
        Text,
        "service.action.networkConnectionAction.connectionDirection",
        "INBOUND, OUTBOUND or UNKNOWN",
    ),
    col(
        "protocol",
        Text,
        "service.action.{networkConnectionAction,dnsRequestAction}.protocol",
        "Network protocol",
    ),
    col(
        "remote_ip",
        Text,
        "remoteIpDetails.ipAddressV4 (else V6) of the action: awsApiCall, networkConnection, kubernetesApiCall, rdsLoginAttempt, or the first portProbeDetails entry",
        "Remote IP address",
    ),
    col(
        "remote_country",
        Text,
        "same remoteIpDetails.country.countryName",
        "Country of the remote IP",
    ),
    col(
        "remote_org",
        Text,
        "same remoteIpDetails.organization.org",
        "Organization of the remote IP",
    ),
    col(
        "remote_asn",
        Text,
        "same remoteIpDetails.organization.asn",
        "ASN of the remote IP",
    ),
    col(
        "local_port",
        Int32,
        "networkConnectionAction.localPortDetails.port, else the first portProbeDetails[].localPortDetails.port",
        "Local port",
    ),
    col(
        "remote_port",
        Int32,
        "networkConnectionAction.remotePortDetails.port",
        "Remote port",
    ),
    col(
        "dns_domain",
        Text,
        "service.action.dnsRequestAction.domain",
        "Domain queried",
    ),
    col(
        "finding",
        Text,
        "the whole line",
        "The original finding JSON, byte for byte: every field, including ones gdq has no column for yet",
    ),
    col(
        "source",
        Text,
        "gdq",
        "URI of the export object the row came from (s3://… or file://…)",
    ),
    col(
        "ingested_at",
        Timestamp,
        "gdq",
        "When gdq committed the row",
    ),
];

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let fields: Vec<Field> = COLUMNS
        .iter()
        .map(|c| Field::new(c.name, c.kind.data_type(), c.name != "finding"))
        .collect();
    let metadata = [(
        "gdq.schema_version".to_string(),
        crate::SCHEMA_VERSION.to_string(),
    )]
    .into();
    Arc::new(Schema::new_with_metadata(fields, metadata))
});

/// Arrow schema of the columns stored in each Parquet file (without the `type` partition).
/// Every column but `finding` is nullable: a finding may lack any field.
pub fn findings_schema() -> SchemaRef {
    SCHEMA.clone()
}

/// The column table as Markdown: the `type` partition first, then [`COLUMNS`].
pub fn schema_markdown() -> String {
    let mut out = String::from("| column | type | from | meaning |\n|---|---|---|---|\n");
    out.push_str(
        "| `type` | string (partition) | type | Finding type, e.g. `Backdoor:EC2/C&CActivity.B!DNS`; the directory `type=<percent-encoded>` |\n",
    );
    for c in COLUMNS {
        out.push_str(&format!(
            "| `{}` | {} | `{}` | {} |\n",
            c.name,
            c.kind.sql_name(),
            c.source,
            c.meaning
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_names_are_unique_and_never_type() {
        let mut names: Vec<_> = COLUMNS.iter().map(|c| c.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), COLUMNS.len());
        assert!(!names.contains(&crate::PARTITION_COLUMN));
    }

    #[test]
    fn the_schema_page_is_current() {
        let page = include_str!("../../docs/schema.md");
        assert!(
            page.contains(&schema_markdown()),
            "docs/schema.md is out of date: paste the output of `gdq schema --markdown`"
        );
    }
}
