//! `karpenter.k8s.aws/v1` EC2NodeClass: how nodes are launched on EC2 (AMIs, subnets,
//! security groups, IAM, kubelet, disks, IMDS), and Karpenter's validation rules for it.
//!
//! Field names follow `aws/karpenter-provider-aws` `pkg/apis/v1/ec2nodeclass.go`,
//! including its acronym spellings (`associatePublicIPAddress`, `snapshotID`, …).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::NodeSelectorRequirement;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::validation::Errors;
use crate::FieldError;

/// Launch configuration for nodes on AWS EC2.
// Each `printcolumn(...)` repeats `type_ = ...`, which clippy takes for a duplicated
// attribute; they are separate columns.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "karpenter.k8s.aws",
    version = "v1",
    kind = "EC2NodeClass",
    plural = "ec2nodeclasses",
    category = "karpenter",
    shortname = "ec2nc",
    shortname = "ec2ncs",
    status = "EC2NodeClassStatus",
    derive = "PartialEq",
    doc = "EC2NodeClass is the Schema for the EC2NodeClass API",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Role",
        type_ = "string",
        json_path = ".spec.role",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = super::schema::require_selector_terms)]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "message": "must specify exactly one of ['role', 'instanceProfile']",
        "rule": "(has(self.role) && !has(self.instanceProfile)) || (!has(self.role) && has(self.instanceProfile))"
    },
    {
        "message": "must specify amiFamily if amiSelectorTerms does not contain an alias",
        "rule": "self.amiSelectorTerms.exists(x, has(x.alias)) ? true : has(self.amiFamily)"
    }
]))]
pub struct EC2NodeClassSpec {
    /// Subnet selector terms, ORed; each term's fields are ANDed.
    #[serde(default)]
    #[schemars(length(max = 30))]
    pub subnet_selector_terms: Vec<SubnetSelectorTerm>,
    /// Security group selector terms, ORed; each term's fields are ANDed.
    #[serde(default)]
    #[schemars(length(max = 30))]
    pub security_group_selector_terms: Vec<SecurityGroupSelectorTerm>,
    /// Capacity reservation selector terms, ORed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 30))]
    pub capacity_reservation_selector_terms: Vec<CapacityReservationSelectorTerm>,
    /// Whether instances get public IP addresses.
    #[serde(
        default,
        rename = "associatePublicIPAddress",
        skip_serializing_if = "Option::is_none"
    )]
    pub associate_public_ip_address: Option<bool>,
    /// The number of IPv4 prefixes assigned to the network interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ip_prefix_count: Option<i32>,
    /// AMI selector terms, ORed; an `alias` term must be the only term.
    #[serde(default, rename = "amiSelectorTerms")]
    #[schemars(length(min = 1, max = 30))]
    pub ami_selector_terms: Vec<AMISelectorTerm>,
    /// The UserData format and default block devices: AL2, AL2023, Bottlerocket, Custom,
    /// Windows2019 or Windows2022. Optional with an alias, which implies it.
    #[serde(default, rename = "amiFamily", skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["AL2", "AL2023", "Bottlerocket", "Custom", "Windows2019", "Windows2022"]))]
    pub ami_family: Option<String>,
    /// UserData merged with what Karpenter generates, in the AMI family's format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    /// The IAM role nodes use; exclusive with `instanceProfile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"message": "role cannot be empty", "rule": "self != ''"}]))]
    pub role: Option<String>,
    /// An existing instance profile for nodes; exclusive with `role`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"message": "instanceProfile cannot be empty", "rule": "self != ''"}]))]
    pub instance_profile: Option<String>,
    /// Tags for instances, volumes and launch templates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Kubelet settings for the nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubelet: Option<KubeletConfiguration>,
    /// Block devices for the nodes; at most one may be the root volume.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub block_device_mappings: Vec<BlockDeviceMapping>,
    /// How instance-store disks are used: `RAID0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["RAID0"]))]
    pub instance_store_policy: Option<String>,
    /// Whether detailed CloudWatch monitoring is enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detailed_monitoring: Option<bool>,
    /// Instance Metadata Service exposure; Karpenter defaults to IMDSv2 only, hop limit 1.
    #[serde(default = "default_metadata_options")]
    pub metadata_options: MetadataOptions,
    /// A reserved EC2 field passed through to CreateFleet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Nitro Enclaves on the launched instances (Karpenter v1.15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enclave_options: Option<EnclaveOptions>,
}

/// Whether instances launch with AWS Nitro Enclaves enabled.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnclaveOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

fn default_metadata_options() -> MetadataOptions {
    MetadataOptions {
        http_endpoint: Some("enabled".to_string()),
        http_protocol_ipv6: Some("disabled".to_string()),
        http_put_response_hop_limit: Some(1),
        http_tokens: Some("required".to_string()),
    }
}

impl Default for MetadataOptions {
    fn default() -> MetadataOptions {
        default_metadata_options()
    }
}

/// Selects subnets by tags, ID or CIDR.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubnetSelectorTerm {
    /// Tags to match; `*` matches any value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 20))]
    pub tags: BTreeMap<String, String>,
    /// A subnet ID, `subnet-…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "subnet-[0-9a-z]+"))]
    pub id: Option<String>,
    /// The subnet's CIDR block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
}

/// Selects security groups by tags, ID or name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecurityGroupSelectorTerm {
    /// Tags to match; `*` matches any value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 20))]
    pub tags: BTreeMap<String, String>,
    /// A security group ID, `sg-…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "sg-[0-9a-z]+"))]
    pub id: Option<String>,
    /// The security group's name (not its Name tag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Selects capacity reservations by tags, ID, owner or match criteria.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CapacityReservationSelectorTerm {
    /// Tags to match; `*` matches any value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 20))]
    pub tags: BTreeMap<String, String>,
    /// A capacity reservation ID, `cr-…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^cr-[0-9a-z]+$"))]
    pub id: Option<String>,
    /// The owning AWS account ID.
    #[serde(default, rename = "ownerID", skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^[0-9]{12}$"))]
    pub owner_id: Option<String>,
    /// How instances match reservations: `open` or `targeted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["open", "targeted"]))]
    pub instance_match_criteria: Option<String>,
}

/// Selects AMIs by alias, tags, ID, name and owner, or SSM parameter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AMISelectorTerm {
    /// An EKS-optimized AMI as `family@version`, e.g. `al2023@latest` or
    /// `bottlerocket@v1.10.0`; Windows families only take `latest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 30))]
    pub alias: Option<String>,
    /// Tags to match; `*` matches any value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 20))]
    pub tags: BTreeMap<String, String>,
    /// An AMI ID, `ami-…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "ami-[0-9a-z]+"))]
    pub id: Option<String>,
    /// The AMI's name (not its Name tag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The AMI owner: account IDs, `self`, `amazon` or `aws-marketplace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The name or ARN of an SSM parameter holding the image ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssm_parameter: Option<String>,
}

/// A subset of the kubelet's configuration, with its field names.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubeletConfiguration {
    /// IP addresses of the cluster DNS server.
    #[serde(default, rename = "clusterDNS", skip_serializing_if = "Vec::is_empty")]
    pub cluster_dns: Vec<String>,
    /// Overrides the maximum number of pods per node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_pods: Option<i32>,
    /// Pods per CPU core, capped by `maxPods`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub pods_per_core: Option<i32>,
    /// Resources reserved for OS daemons: cpu, memory, ephemeral-storage, pid.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub system_reserved: BTreeMap<String, String>,
    /// Resources reserved for Kubernetes components: cpu, memory, ephemeral-storage, pid.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub kube_reserved: BTreeMap<String, String>,
    /// Hard eviction thresholds by signal.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub eviction_hard: BTreeMap<String, String>,
    /// Soft eviction thresholds by signal.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub eviction_soft: BTreeMap<String, String>,
    /// Grace periods (durations) for each soft eviction signal.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub eviction_soft_grace_period: BTreeMap<String, String>,
    /// The longest grace period, in seconds, for pods evicted by soft thresholds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eviction_max_pod_grace_period: Option<i32>,
    /// Disk usage percent above which image garbage collection always runs.
    #[serde(
        default,
        rename = "imageGCHighThresholdPercent",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 0, max = 100))]
    pub image_gc_high_threshold_percent: Option<i32>,
    /// Disk usage percent below which image garbage collection never runs.
    #[serde(
        default,
        rename = "imageGCLowThresholdPercent",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 0, max = 100))]
    pub image_gc_low_threshold_percent: Option<i32>,
    /// Whether CPU CFS quota is enforced for containers with CPU limits.
    #[serde(
        default,
        rename = "cpuCFSQuota",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpu_cfs_quota: Option<bool>,
}

/// Instance Metadata Service settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetadataOptions {
    /// `enabled` or `disabled`.
    #[serde(
        default,
        rename = "httpEndpoint",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(extend("enum" = ["enabled", "disabled"], "default" = "enabled"))]
    pub http_endpoint: Option<String>,
    /// `enabled` or `disabled`.
    #[serde(
        default,
        rename = "httpProtocolIPv6",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(extend("enum" = ["enabled", "disabled"], "default" = "disabled"))]
    pub http_protocol_ipv6: Option<String>,
    /// How many network hops an IMDS PUT response may travel, 1-64.
    #[serde(
        default,
        rename = "httpPutResponseHopLimit",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 1, max = 64), extend("default" = 1))]
    pub http_put_response_hop_limit: Option<i64>,
    /// `required` (IMDSv2 only) or `optional`.
    #[serde(
        default,
        rename = "httpTokens",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(extend("enum" = ["required", "optional"], "default" = "required"))]
    pub http_tokens: Option<String>,
}

/// One block device for a node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlockDeviceMapping {
    /// The device name, e.g. `/dev/xvda`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_name: Option<String>,
    /// EBS volume parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ebs: Option<BlockDevice>,
    /// Whether this device holds the kubelet root directory.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub root_volume: bool,
}

/// An EBS volume.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlockDevice {
    /// Whether the volume is deleted when the instance terminates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_on_termination: Option<bool>,
    /// Whether the volume is encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted: Option<bool>,
    /// Provisioned IOPS (io1, io2, gp3).
    #[serde(default, rename = "iops", skip_serializing_if = "Option::is_none")]
    pub iops: Option<i64>,
    /// The KMS key for encryption.
    #[serde(default, rename = "kmsKeyID", skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    /// The snapshot to create the volume from.
    #[serde(
        default,
        rename = "snapshotID",
        skip_serializing_if = "Option::is_none"
    )]
    pub snapshot_id: Option<String>,
    /// Throughput in MiB/s (gp3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<i64>,
    /// Volume initialization rate in MiB/s, 100-300; needs a snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 100, max = 300))]
    pub volume_initialization_rate: Option<i32>,
    /// The size, in `Gi`, `G`, `Ti` or `T`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^((?:[1-9][0-9]{0,3}|[1-4][0-9]{4}|[5][0-8][0-9]{3}|59000)Gi|(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|[6][0-3][0-9]{3}|64000)G|([1-9]||[1-5][0-7]|58)Ti|([1-9]||[1-5][0-9]|6[0-3]|64)T)$"
    ))]
    pub volume_size: Option<String>,
    /// standard, io1, io2, gp2, sc1, st1 or gp3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["standard", "io1", "io2", "gp2", "sc1", "st1", "gp3"]))]
    pub volume_type: Option<String>,
}

/// What Karpenter resolved the selectors to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EC2NodeClassStatus {
    /// Subnets matching the subnet selectors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<Subnet>,
    /// Security groups matching the security group selectors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<SecurityGroup>,
    /// AMIs matching the AMI selectors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amis: Vec<AMI>,
    /// The instance profile resolved for the role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_profile: Option<String>,
    /// Signals for health and readiness: AMIsReady, SubnetsReady, SecurityGroupsReady,
    /// InstanceProfileReady, Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A resolved subnet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Subnet {
    /// The subnet ID.
    pub id: String,
    /// Its availability zone.
    pub zone: String,
    /// Its availability zone ID.
    #[serde(default, rename = "zoneID", skip_serializing_if = "Option::is_none")]
    pub zone_id: Option<String>,
}

/// A resolved security group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecurityGroup {
    /// The security group ID.
    pub id: String,
    /// Its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A resolved AMI and the instance types it suits.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AMI {
    /// The AMI ID.
    pub id: String,
    /// Whether the AMI is deprecated.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deprecated: bool,
    /// Its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Requirements an instance type must meet to use this AMI.
    pub requirements: Vec<NodeSelectorRequirement>,
}

const ALIAS_FAMILIES: [(&str, &str); 5] = [
    ("al2", "AL2"),
    ("al2023", "AL2023"),
    ("bottlerocket", "Bottlerocket"),
    ("windows2019", "Windows2019"),
    ("windows2022", "Windows2022"),
];
const AMI_FAMILIES: [&str; 6] = [
    "AL2",
    "AL2023",
    "Bottlerocket",
    "Custom",
    "Windows2019",
    "Windows2022",
];
const EVICTION_SIGNALS: [&str; 6] = [
    "memory.available",
    "nodefs.available",
    "nodefs.inodesFree",
    "imagefs.available",
    "imagefs.inodesFree",
    "pid.available",
];
const RESERVED_RESOURCES: [&str; 4] = ["cpu", "memory", "ephemeral-storage", "pid"];

/// Checks an EC2NodeClass against Karpenter's rules (its CRD's CEL rules and patterns),
/// returning every problem found; empty means valid.
pub fn validate_ec2nodeclass(nc: &EC2NodeClass) -> Vec<FieldError> {
    let name = nc.metadata.name.clone().unwrap_or_default();
    let mut errs = Errors::new(format!("EC2NodeClass {name}"));
    if name.is_empty() {
        errs.push("metadata.name", "required: every EC2NodeClass needs a name");
    }
    let spec = &nc.spec;
    validate_ami_terms(spec, &mut errs);
    validate_subnet_terms(&spec.subnet_selector_terms, &mut errs);
    validate_security_group_terms(&spec.security_group_selector_terms, &mut errs);
    for (i, term) in spec.capacity_reservation_selector_terms.iter().enumerate() {
        let at = format!("spec.capacityReservationSelectorTerms[{i}]");
        validate_selector_tags(&term.tags, &at, &mut errs);
        if term.tags.is_empty() && term.id.is_none() && term.instance_match_criteria.is_none() {
            errs.push(
                &at,
                "expected at least one of ['tags', 'id', 'instanceMatchCriteria'], got none",
            );
        }
        if term.id.is_some()
            && (!term.tags.is_empty()
                || term.owner_id.is_some()
                || term.instance_match_criteria.is_some())
        {
            errs.push(
                &at,
                "'id' is mutually exclusive, cannot be set along with other fields in a \
                 capacity reservation selector term",
            );
        }
        pattern_check(term.id.as_deref(), "cr-", &format!("{at}.id"), &mut errs);
    }

    match (&spec.role, &spec.instance_profile) {
        (Some(_), Some(_)) | (None, None) => errs.push(
            "spec",
            "must specify exactly one of ['role', 'instanceProfile']",
        ),
        _ => {}
    }
    if spec.role.as_deref() == Some("") {
        errs.push("spec.role", "role cannot be empty");
    }
    if spec.instance_profile.as_deref() == Some("") {
        errs.push("spec.instanceProfile", "instanceProfile cannot be empty");
    }

    for key in spec.tags.keys() {
        let field = format!("spec.tags[{key}]");
        if key.is_empty() {
            errs.push(field, "empty tag keys aren't supported");
        } else if key == "eks:eks-cluster-name"
            || key.starts_with("kubernetes.io/cluster")
            || key == "karpenter.sh/nodepool"
            || key == "karpenter.sh/nodeclaim"
            || key == "karpenter.k8s.aws/ec2nodeclass"
        {
            errs.push(
                field,
                format!("tag {key:?} is restricted: Karpenter sets it on the resources it creates"),
            );
        }
    }

    if let Some(kubelet) = &spec.kubelet {
        validate_kubelet(kubelet, &mut errs);
    }

    if spec.block_device_mappings.len() > 50 {
        errs.push(
            "spec.blockDeviceMappings",
            format!(
                "{} mappings; at most 50 are allowed",
                spec.block_device_mappings.len()
            ),
        );
    }
    let n_roots = spec
        .block_device_mappings
        .iter()
        .filter(|b| b.root_volume)
        .count();
    if n_roots > 1 {
        errs.push(
            "spec.blockDeviceMappings",
            format!("must have only one blockDeviceMappings with rootVolume, got {n_roots}"),
        );
    }
    for (i, bdm) in spec.block_device_mappings.iter().enumerate() {
        let Some(ebs) = &bdm.ebs else { continue };
        let at = format!("spec.blockDeviceMappings[{i}].ebs");
        if ebs.snapshot_id.is_none() && ebs.volume_size.is_none() {
            errs.push(&at, "snapshotID or volumeSize must be defined");
        }
        if ebs.volume_initialization_rate.is_some()
            && ebs.snapshot_id.as_deref().is_none_or(str::is_empty)
        {
            errs.push(
                &at,
                "snapshotID must be set when volumeInitializationRate is set",
            );
        }
        if let Some(rate) = ebs.volume_initialization_rate
            && !(100..=300).contains(&rate)
        {
            errs.push(
                format!("{at}.volumeInitializationRate"),
                format!("{rate} is out of range: must be 100-300 MiB/s"),
            );
        }
        if let Some(size) = &ebs.volume_size
            && !valid_volume_size(size)
        {
            errs.push(
                format!("{at}.volumeSize"),
                format!(
                    "{size:?} is not a volume size: use a whole number of Gi or G (up to \
                     64000G) or Ti or T (up to 64T), e.g. \"100Gi\""
                ),
            );
        }
        enum_check(
            ebs.volume_type.as_deref(),
            &["standard", "io1", "io2", "gp2", "sc1", "st1", "gp3"],
            &format!("{at}.volumeType"),
            &mut errs,
        );
    }

    enum_check(
        spec.instance_store_policy.as_deref(),
        &["RAID0"],
        "spec.instanceStorePolicy",
        &mut errs,
    );
    let md = &spec.metadata_options;
    enum_check(
        md.http_endpoint.as_deref(),
        &["enabled", "disabled"],
        "spec.metadataOptions.httpEndpoint",
        &mut errs,
    );
    enum_check(
        md.http_protocol_ipv6.as_deref(),
        &["enabled", "disabled"],
        "spec.metadataOptions.httpProtocolIPv6",
        &mut errs,
    );
    enum_check(
        md.http_tokens.as_deref(),
        &["required", "optional"],
        "spec.metadataOptions.httpTokens",
        &mut errs,
    );
    if let Some(hops) = md.http_put_response_hop_limit
        && !(1..=64).contains(&hops)
    {
        errs.push(
            "spec.metadataOptions.httpPutResponseHopLimit",
            format!("{hops} is out of range: must be 1-64"),
        );
    }
    errs.list
}

fn validate_ami_terms(spec: &EC2NodeClassSpec, errs: &mut Errors) {
    let terms = &spec.ami_selector_terms;
    if terms.is_empty() {
        errs.push(
            "spec.amiSelectorTerms",
            "required: at least one term, e.g. [{alias: al2023@latest}]",
        );
    }
    if terms.len() > 30 {
        errs.push(
            "spec.amiSelectorTerms",
            format!("{} terms; at most 30 are allowed", terms.len()),
        );
    }
    let mut alias_family = None;
    for (i, term) in terms.iter().enumerate() {
        let at = format!("spec.amiSelectorTerms[{i}]");
        validate_selector_tags(&term.tags, &at, errs);
        if term.alias.is_none()
            && term.tags.is_empty()
            && term.id.is_none()
            && term.name.is_none()
            && term.ssm_parameter.is_none()
        {
            errs.push(
                &at,
                "expected at least one of ['tags', 'id', 'name', 'alias', 'ssmParameter'], got \
                 none",
            );
        }
        let others = !term.tags.is_empty() || term.name.is_some() || term.owner.is_some();
        if term.id.is_some() && (term.alias.is_some() || others) {
            errs.push(
                &at,
                "'id' is mutually exclusive, cannot be set with a combination of other fields \
                 in amiSelectorTerms",
            );
        }
        pattern_check(term.id.as_deref(), "ami-", &format!("{at}.id"), errs);
        let Some(alias) = &term.alias else { continue };
        if term.id.is_none() && others {
            errs.push(
                &at,
                "'alias' is mutually exclusive, cannot be set with a combination of other \
                 fields in amiSelectorTerms",
            );
        }
        if terms.len() != 1 {
            errs.push(
                format!("{at}.alias"),
                "'alias' is mutually exclusive, cannot be set with a combination of other \
                 amiSelectorTerms",
            );
        }
        let field = format!("{at}.alias");
        if alias.len() > 30 {
            errs.push(&field, format!("{alias:?} is longer than 30 characters"));
        }
        let Some((family, version)) = alias.split_once('@').filter(|(f, v)| {
            !f.is_empty() && f.chars().all(|c| c.is_ascii_alphanumeric()) && !v.is_empty()
        }) else {
            errs.push(
                &field,
                format!(
                    "{alias:?} is improperly formatted, must match the format 'family@version' \
                     (e.g. al2023@latest or bottlerocket@v1.10.0)"
                ),
            );
            continue;
        };
        match ALIAS_FAMILIES.iter().find(|(f, _)| *f == family) {
            None => errs.push(
                &field,
                format!(
                    "family {family:?} is not supported, must be one of the following: 'al2', \
                     'al2023', 'bottlerocket', 'windows2019', 'windows2022'"
                ),
            ),
            Some((_, ami_family)) => {
                if family.starts_with("windows") && version != "latest" {
                    errs.push(
                        &field,
                        format!(
                            "windows families may only specify version 'latest', got {version:?}"
                        ),
                    );
                }
                alias_family = Some(*ami_family);
            }
        }
    }
    match (&spec.ami_family, alias_family) {
        (Some(family), _) if !AMI_FAMILIES.contains(&family.as_str()) => errs.push(
            "spec.amiFamily",
            format!(
                "{family:?} is not an AMI family; use one of {}",
                AMI_FAMILIES.join(", ")
            ),
        ),
        (Some(family), Some(implied)) if family != implied && family != "Custom" => errs.push(
            "spec.amiFamily",
            format!(
                "if set, amiFamily must be '{implied}' or 'Custom' when using an {implied} alias, \
                 got {family:?}"
            ),
        ),
        (None, None) if terms.iter().all(|t| t.alias.is_none()) && !terms.is_empty() => errs.push(
            "spec.amiFamily",
            "must specify amiFamily if amiSelectorTerms does not contain an alias",
        ),
        _ => {}
    }
}

fn validate_subnet_terms(terms: &[SubnetSelectorTerm], errs: &mut Errors) {
    if terms.is_empty() {
        errs.push(
            "spec.subnetSelectorTerms",
            "subnetSelectorTerms cannot be empty: add a term, e.g. [{tags: \
             {karpenter.sh/discovery: my-cluster}}]",
        );
    }
    if terms.len() > 30 {
        errs.push(
            "spec.subnetSelectorTerms",
            format!("{} terms; at most 30 are allowed", terms.len()),
        );
    }
    for (i, term) in terms.iter().enumerate() {
        let at = format!("spec.subnetSelectorTerms[{i}]");
        validate_selector_tags(&term.tags, &at, errs);
        if term.tags.is_empty() && term.id.is_none() && term.cidr.is_none() {
            errs.push(
                &at,
                "expected at least one of ['tags', 'id', 'cidr'], got none",
            );
        }
        if term.id.is_some() && !term.tags.is_empty() {
            errs.push(
                &at,
                "'id' is mutually exclusive, cannot be set with a combination of other fields \
                 in a subnet selector term",
            );
        }
        pattern_check(term.id.as_deref(), "subnet-", &format!("{at}.id"), errs);
    }
}

fn validate_security_group_terms(terms: &[SecurityGroupSelectorTerm], errs: &mut Errors) {
    if terms.is_empty() {
        errs.push(
            "spec.securityGroupSelectorTerms",
            "securityGroupSelectorTerms cannot be empty: add a term, e.g. [{tags: \
             {karpenter.sh/discovery: my-cluster}}]",
        );
    }
    if terms.len() > 30 {
        errs.push(
            "spec.securityGroupSelectorTerms",
            format!("{} terms; at most 30 are allowed", terms.len()),
        );
    }
    for (i, term) in terms.iter().enumerate() {
        let at = format!("spec.securityGroupSelectorTerms[{i}]");
        validate_selector_tags(&term.tags, &at, errs);
        if term.tags.is_empty() && term.id.is_none() && term.name.is_none() {
            errs.push(
                &at,
                "expected at least one of ['tags', 'id', 'name'], got none",
            );
        }
        if term.id.is_some() && (!term.tags.is_empty() || term.name.is_some()) {
            errs.push(
                &at,
                "'id' is mutually exclusive, cannot be set with a combination of other fields \
                 in a security group selector term",
            );
        } else if term.name.is_some() && !term.tags.is_empty() {
            errs.push(
                &at,
                "'name' is mutually exclusive, cannot be set with a combination of other fields \
                 in a security group selector term",
            );
        }
        pattern_check(term.id.as_deref(), "sg-", &format!("{at}.id"), errs);
    }
}

fn validate_selector_tags(tags: &BTreeMap<String, String>, at: &str, errs: &mut Errors) {
    if tags.len() > 20 {
        errs.push(
            format!("{at}.tags"),
            format!("{} tags; at most 20 are allowed", tags.len()),
        );
    }
    for (k, v) in tags {
        if k.is_empty() || v.is_empty() {
            errs.push(
                format!("{at}.tags[{k}]"),
                "empty tag keys or values aren't supported (use \"*\" to match any value)",
            );
        }
    }
}

/// Karpenter's ID patterns (`subnet-[0-9a-z]+`, …) are unanchored except for reservations,
/// so only the prefix and a lowercase alphanumeric body are checked.
fn pattern_check(id: Option<&str>, prefix: &str, field: &str, errs: &mut Errors) {
    let Some(id) = id else { return };
    let ok = id.strip_prefix(prefix).is_some_and(|body| {
        !body.is_empty()
            && body
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    });
    if !ok {
        errs.push(
            field,
            format!(
                "{id:?} is not an ID of the form {prefix} followed by lowercase letters and digits"
            ),
        );
    }
}

fn enum_check(value: Option<&str>, allowed: &[&str], field: &str, errs: &mut Errors) {
    if let Some(v) = value
        && !allowed.contains(&v)
    {
        errs.push(
            field,
            format!("{v:?} is not allowed; use one of {}", allowed.join(", ")),
        );
    }
}

/// `NNNGi`, `NNNG`, `NNTi` or `NNT` within EBS's size limits (64 TiB / 64 TB).
fn valid_volume_size(size: &str) -> bool {
    let limits = [("Gi", 59_000), ("G", 64_000), ("Ti", 58), ("T", 64)];
    limits.iter().any(|(unit, max)| {
        size.strip_suffix(unit).is_some_and(|n| {
            !n.starts_with('0')
                && n.chars().all(|c| c.is_ascii_digit())
                && n.parse::<u32>().is_ok_and(|v| (1..=*max).contains(&v))
        })
    })
}

fn validate_kubelet(k: &KubeletConfiguration, errs: &mut Errors) {
    for (field, map) in [
        ("systemReserved", &k.system_reserved),
        ("kubeReserved", &k.kube_reserved),
    ] {
        for (key, value) in map {
            let at = format!("spec.kubelet.{field}[{key}]");
            if !RESERVED_RESOURCES.contains(&key.as_str()) {
                errs.push(
                    &at,
                    format!(
                        "valid keys for {field} are ['cpu','memory','ephemeral-storage','pid']"
                    ),
                );
            }
            if value.starts_with('-') {
                errs.push(
                    &at,
                    format!("{field} value cannot be a negative resource quantity"),
                );
            } else if let Err(e) = kerf_model::Quantity::parse(value) {
                errs.push(&at, e.to_string());
            }
        }
    }
    for (field, map) in [
        ("evictionHard", &k.eviction_hard),
        ("evictionSoft", &k.eviction_soft),
        ("evictionSoftGracePeriod", &k.eviction_soft_grace_period),
    ] {
        for key in map.keys() {
            if !EVICTION_SIGNALS.contains(&key.as_str()) {
                errs.push(
                    format!("spec.kubelet.{field}[{key}]"),
                    format!("valid keys for {field} are {}", EVICTION_SIGNALS.join(", ")),
                );
            }
        }
    }
    for key in k.eviction_soft.keys() {
        if !k.eviction_soft_grace_period.contains_key(key) {
            errs.push(
                format!("spec.kubelet.evictionSoft[{key}]"),
                "evictionSoft key does not have a matching evictionSoftGracePeriod",
            );
        }
    }
    for (key, grace) in &k.eviction_soft_grace_period {
        if !k.eviction_soft.contains_key(key) {
            errs.push(
                format!("spec.kubelet.evictionSoftGracePeriod[{key}]"),
                "evictionSoftGracePeriod key does not have a matching evictionSoft",
            );
        }
        if let Err(e) = super::duration::parse(grace) {
            errs.push(
                format!("spec.kubelet.evictionSoftGracePeriod[{key}]"),
                e.to_string(),
            );
        }
    }
    if let (Some(high), Some(low)) = (
        k.image_gc_high_threshold_percent,
        k.image_gc_low_threshold_percent,
    ) && high <= low
    {
        errs.push(
            "spec.kubelet",
            format!(
                "imageGCHighThresholdPercent ({high}) must be greater than \
                 imageGCLowThresholdPercent ({low})"
            ),
        );
    }
    for (field, value) in [
        (
            "imageGCHighThresholdPercent",
            k.image_gc_high_threshold_percent,
        ),
        (
            "imageGCLowThresholdPercent",
            k.image_gc_low_threshold_percent,
        ),
    ] {
        if let Some(v) = value
            && !(0..=100).contains(&v)
        {
            errs.push(
                format!("spec.kubelet.{field}"),
                format!("{v} is out of range: must be 0-100"),
            );
        }
    }
    for (field, value) in [("maxPods", k.max_pods), ("podsPerCore", k.pods_per_core)] {
        if let Some(v) = value
            && v < 0
        {
            errs.push(format!("spec.kubelet.{field}"), format!("{v} is negative"));
        }
    }
}
