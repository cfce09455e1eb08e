//! The parts of a GuardDuty finding that gdq lifts into typed columns, as borrowed serde
//! structs. Field names follow the export's camelCase JSON; unknown fields are skipped, and
//! every leaf is lenient (see `lenient`).

use serde::Deserialize;

use crate::lenient::{Flag, Instant, Integer, Number, Object, Objects, StrictText, Text};

#[derive(Deserialize, Default, Debug)]
#[serde(default, rename_all = "camelCase")]
pub struct RawFinding<'a> {
    #[serde(borrow)]
    pub schema_version: Text<'a>,
    #[serde(borrow)]
    pub account_id: Text<'a>,
    #[serde(borrow)]
    pub region: Text<'a>,
    #[serde(borrow)]
    pub partition: Text<'a>,
    #[serde(borrow)]
    pub id: StrictText<'a>,
    #[serde(borrow)]
    pub arn: Text<'a>,
    #[serde(borrow, rename = "type")]
    pub finding_type: StrictText<'a>,
    #[serde(borrow)]
    pub title: Text<'a>,
    #[serde(borrow)]
    pub description: Text<'a>,
    pub severity: Number,
    pub created_at: Instant,
    pub updated_at: Instant,
    #[serde(borrow)]
    pub resource: Object<Resource<'a>>,
    #[serde(borrow)]
    pub service: Object<Service<'a>>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default, rename_all = "camelCase")]
pub struct Resource<'a> {
    #[serde(borrow)]
    pub resource_type: Text<'a>,
    #[serde(borrow)]
    pub instance_details: Object<InstanceDetails<'a>>,
    #[serde(borrow)]
    pub access_key_details: Object<AccessKeyDetails<'a>>,
    #[serde(borrow)]
    pub s3_bucket_details: Objects<Named<'a>>,
    #[serde(borrow)]
    pub eks_cluster_details: Object<Named<'a>>,
    #[serde(borrow)]
    pub ecs_cluster_details: Object<EcsClusterDetails<'a>>,
    #[serde(borrow)]
    pub container_details: Object<Container<'a>>,
    #[serde(borrow)]
    pub kubernetes_details: Object<KubernetesDetails<'a>>,
    #[serde(borrow)]
    pub lambda_details: Object<LambdaDetails<'a>>,
    #[serde(borrow)]
    pub rds_db_instance_details: Object<RdsDbInstanceDetails<'a>>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default, rename_all = "camelCase")]
pub struct InstanceDetails<'a> {
    #[serde(borrow)]
    pub instance_id: Text<'a>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default, rename_all = "camelCase")]
pub struct AccessKeyDetails<'a> {
    #[serde(borrow)]
    pub access_key_id: Text<'a>,
    #[serde(borrow)]
    pub principal_id: Text<'a>,
    #[serde(borrow)]
    pub user_name: Text<'a>,
    #[serde(borrow)]
    pub user_type: Text<'a>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub struct Named<'a> {
    #[serde(borrow)]
    pub name: Text<'a>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default, rename_all = "camelCase")]
pub struct EcsClusterDetails<'a> {
    #[serde(borrow)]
    pub name: Text<'a>,
    #[serde(borrow)]
    pub task_details: Object<WithContainers<'a>>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub struct WithContainers<'a> {
    #[serde(borrow)]
    pub containers: Object<Container<'a>>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub struct Container<'a> {
    #[serde(borrow)]
    pub image: Text<'a>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default, rename_all = "camelCase")]
pub struct KubernetesDetails<'a> {
    #[serde(borrow)]
    pub kubernetes_workload_details: Object<WithContainers<'a>>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default, rename_all = "camelCase")]
pub struct LambdaDetails<'a> {
    #[serde(borrow)]
    pub function_name: Text<'a>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default, rename_all = "camelCase")]
pub struct RdsDbInstanceDetails<'a> {
    #[serde(borrow)]
    pub db_instance_identifier: Text<'a>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default, rename_all = "camelCase")]
pub struct Service<'a> {
    #[serde(borrow)]
    pub detector_id: Text<'a>,
    #[serde(borrow)]
    pub action: Object<Action<'a>>,
    pub archived: Flag,
    pub count: Integer,
    pub event_first_seen: Instant,
    pub event_last_seen: Instant,
    #[serde(borrow)]
    pub resource_role: Text<'a>,
    #[serde(borrow)]
    pub feature_name: Text<'a>,
    pub additional_info: Object<AdditionalInfo>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub struct AdditionalInfo {
    pub sample: Flag,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default, rename_all = "camelCase")]
pub struct Action<'a> {
    #[serde(borrow)]
    pub action_type: Text<'a>,
    #[serde(borrow)]
    pub aws_api_call_action: Object<AwsApiCallAction<'a>>,
    #[serde(borrow)]
    pub network_connection_action: Object<NetworkConnectionAction<'a>>,
    #[serde(borrow)]
    pub port_probe_action: Object<PortProbeAction<'a>>,
    #[serde(borrow)]
    pub dns_request_action: Object<DnsRequestAction<'a>>,
    #[serde(borrow)]
    pub kubernetes_api_call_action: Object<WithRemoteIp<'a>>,
    #[serde(borrow)]
    pub rds_login_attempt_action: Object<WithRemoteIp<'a>>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default, rename_all = "camelCase")]
pub struct AwsApiCallAction<'a> {
    #[serde(borrow)]
    pub api: Text<'a>,
    #[serde(borrow)]
    pub service_name: Text<'a>,
    #[serde(borrow)]
    pub remote_ip_details: Object<RemoteIpDetails<'a>>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default, rename_all = "camelCase")]
pub struct NetworkConnectionAction<'a> {
    #[serde(borrow)]
    pub connection_direction: Text<'a>,
    #[serde(borrow)]
    pub protocol: Text<'a>,
    #[serde(borrow)]
    pub remote_ip_details: Object<RemoteIpDetails<'a>>,
    pub remote_port_details: Object<PortDetails>,
    pub local_port_details: Object<PortDetails>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default, rename_all = "camelCase")]
pub struct PortProbeAction<'a> {
    /// Only the first probe is lifted into columns; all are in `finding`.
    #[serde(borrow)]
    pub port_probe_details: Object<PortProbeDetail<'a>>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default, rename_all = "camelCase")]
pub struct PortProbeDetail<'a> {
    pub local_port_details: Object<PortDetails>,
    #[serde(borrow)]
    pub remote_ip_details: Object<RemoteIpDetails<'a>>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default, rename_all = "camelCase")]
pub struct DnsRequestAction<'a> {
    #[serde(borrow)]
    pub domain: Text<'a>,
    #[serde(borrow)]
    pub protocol: Text<'a>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default, rename_all = "camelCase")]
pub struct WithRemoteIp<'a> {
    #[serde(borrow)]
    pub remote_ip_details: Object<RemoteIpDetails<'a>>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub struct PortDetails {
    pub port: Integer,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default, rename_all = "camelCase")]
pub struct RemoteIpDetails<'a> {
    #[serde(borrow, rename = "ipAddressV4")]
    pub ip_address_v4: Text<'a>,
    #[serde(borrow, rename = "ipAddressV6")]
    pub ip_address_v6: Text<'a>,
    #[serde(borrow)]
    pub country: Object<Country<'a>>,
    #[serde(borrow)]
    pub organization: Object<Organization<'a>>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default, rename_all = "camelCase")]
pub struct Country<'a> {
    #[serde(borrow)]
    pub country_name: Text<'a>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default, rename_all = "camelCase")]
pub struct Organization<'a> {
    #[serde(borrow)]
    pub asn: Text<'a>,
    #[serde(borrow)]
    pub org: Text<'a>,
}
