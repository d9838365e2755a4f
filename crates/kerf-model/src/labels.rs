//! Well-known label, taint and annotation keys, spelled exactly as Kubernetes and
//! Karpenter v1 spell them.

pub const HOSTNAME: &str = "kubernetes.io/hostname";
pub const ARCH: &str = "kubernetes.io/arch";
pub const OS: &str = "kubernetes.io/os";
pub const INSTANCE_TYPE: &str = "node.kubernetes.io/instance-type";
pub const ZONE: &str = "topology.kubernetes.io/zone";
pub const REGION: &str = "topology.kubernetes.io/region";

pub const NODEPOOL: &str = "karpenter.sh/nodepool";
pub const CAPACITY_TYPE: &str = "karpenter.sh/capacity-type";
pub const INITIALIZED: &str = "karpenter.sh/initialized";
pub const REGISTERED: &str = "karpenter.sh/registered";
pub const NODECLASS_EC2: &str = "karpenter.k8s.aws/ec2nodeclass";

pub const INSTANCE_CATEGORY: &str = "karpenter.k8s.aws/instance-category";
pub const INSTANCE_FAMILY: &str = "karpenter.k8s.aws/instance-family";
pub const INSTANCE_GENERATION: &str = "karpenter.k8s.aws/instance-generation";
pub const INSTANCE_SIZE: &str = "karpenter.k8s.aws/instance-size";
pub const INSTANCE_CPU: &str = "karpenter.k8s.aws/instance-cpu";
pub const INSTANCE_CPU_MANUFACTURER: &str = "karpenter.k8s.aws/instance-cpu-manufacturer";
pub const INSTANCE_MEMORY: &str = "karpenter.k8s.aws/instance-memory";
pub const INSTANCE_HYPERVISOR: &str = "karpenter.k8s.aws/instance-hypervisor";
pub const INSTANCE_NETWORK_BANDWIDTH: &str = "karpenter.k8s.aws/instance-network-bandwidth";
pub const INSTANCE_CPU_SUSTAINED_CLOCK_SPEED_MHZ: &str =
    "karpenter.k8s.aws/instance-cpu-sustained-clock-speed-mhz";
pub const INSTANCE_EBS_BANDWIDTH: &str = "karpenter.k8s.aws/instance-ebs-bandwidth";
pub const INSTANCE_ENCRYPTION_IN_TRANSIT_SUPPORTED: &str =
    "karpenter.k8s.aws/instance-encryption-in-transit-supported";
pub const INSTANCE_LOCAL_NVME: &str = "karpenter.k8s.aws/instance-local-nvme";
pub const INSTANCE_GPU_NAME: &str = "karpenter.k8s.aws/instance-gpu-name";
pub const INSTANCE_GPU_MANUFACTURER: &str = "karpenter.k8s.aws/instance-gpu-manufacturer";
pub const INSTANCE_GPU_COUNT: &str = "karpenter.k8s.aws/instance-gpu-count";
pub const INSTANCE_GPU_MEMORY: &str = "karpenter.k8s.aws/instance-gpu-memory";
pub const INSTANCE_ACCELERATOR_NAME: &str = "karpenter.k8s.aws/instance-accelerator-name";
pub const INSTANCE_ACCELERATOR_MANUFACTURER: &str =
    "karpenter.k8s.aws/instance-accelerator-manufacturer";
pub const INSTANCE_ACCELERATOR_COUNT: &str = "karpenter.k8s.aws/instance-accelerator-count";
pub const INSTANCE_CAPABILITY_FLEX: &str = "karpenter.k8s.aws/instance-capability-flex";

/// The `karpenter.k8s.aws` labels the AWS provider registers as well known: the only keys
/// of that domain a NodePool may name (its template labels and requirements).
pub const AWS_WELL_KNOWN: [&str; 21] = [
    INSTANCE_CATEGORY,
    INSTANCE_FAMILY,
    INSTANCE_GENERATION,
    INSTANCE_SIZE,
    INSTANCE_CPU,
    INSTANCE_CPU_MANUFACTURER,
    INSTANCE_CPU_SUSTAINED_CLOCK_SPEED_MHZ,
    INSTANCE_MEMORY,
    INSTANCE_HYPERVISOR,
    INSTANCE_NETWORK_BANDWIDTH,
    INSTANCE_EBS_BANDWIDTH,
    INSTANCE_ENCRYPTION_IN_TRANSIT_SUPPORTED,
    INSTANCE_LOCAL_NVME,
    INSTANCE_GPU_NAME,
    INSTANCE_GPU_MANUFACTURER,
    INSTANCE_GPU_COUNT,
    INSTANCE_GPU_MEMORY,
    INSTANCE_ACCELERATOR_NAME,
    INSTANCE_ACCELERATOR_MANUFACTURER,
    INSTANCE_ACCELERATOR_COUNT,
    INSTANCE_CAPABILITY_FLEX,
];

pub const CAPACITY_TYPE_ON_DEMAND: &str = "on-demand";
pub const CAPACITY_TYPE_SPOT: &str = "spot";
pub const CAPACITY_TYPE_RESERVED: &str = "reserved";

pub const ANNOTATION_DO_NOT_DISRUPT: &str = "karpenter.sh/do-not-disrupt";
pub const ANNOTATION_NODEPOOL_HASH: &str = "karpenter.sh/nodepool-hash";
pub const ANNOTATION_NODEPOOL_HASH_VERSION: &str = "karpenter.sh/nodepool-hash-version";
/// The `karpenter.sh/nodepool-hash-version` kerf writes. kerf cannot reproduce the bytes
/// of Karpenter's Go `hashstructure` hash, so it versions its own: a claim whose hash was
/// written under another version (Karpenter's `v3`) is not drifted by hash, exactly as
/// Karpenter treats a hash-version change (it re-stamps the claim instead).
pub const NODEPOOL_HASH_VERSION: &str = "kerf-v1";
/// On an EC2NodeClass, the hash of its static fields (those not resolved through
/// selectors); on a NodeClaim, the hash its class had when it launched. They differ:
/// the claim has drifted (`NodeClassDrift`), when both carry the same
/// `karpenter.k8s.aws/ec2nodeclass-hash-version`.
pub const ANNOTATION_EC2NODECLASS_HASH: &str = "karpenter.k8s.aws/ec2nodeclass-hash";
pub const ANNOTATION_EC2NODECLASS_HASH_VERSION: &str =
    "karpenter.k8s.aws/ec2nodeclass-hash-version";
/// The class annotations drift reads.
pub const EC2NODECLASS_HASH_ANNOTATIONS: [&str; 2] = [
    ANNOTATION_EC2NODECLASS_HASH,
    ANNOTATION_EC2NODECLASS_HASH_VERSION,
];
/// On a NodeClaim: the instance profile its instance was launched with.
pub const ANNOTATION_INSTANCE_PROFILE_NAME: &str = "karpenter.k8s.aws/instance-profile-name";
/// On a replacement NodeClaim kerf launched for a disruption command:
/// `<method>/<replacements>: <claim>,<claim>`, the command's method, how many
/// replacements it launched and the NodeClaims it replaces. Karpenter keeps commands in
/// memory only and forgets them on a restart, leaving their replacements as orphans the
/// next pass may empty and launch again; with this a restarted kerf resumes the command.
pub const ANNOTATION_REPLACES: &str = "kerf.sh/replaces";
pub const ANNOTATION_POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";
pub const TAINT_DISRUPTED: &str = "karpenter.sh/disrupted";
pub const TAINT_UNREGISTERED: &str = "karpenter.sh/unregistered";
pub const FINALIZER_TERMINATION: &str = "karpenter.sh/termination";

/// Karpenter's aliases for well-known labels (`NormalizedLabels`): the deprecated beta keys
/// mean the current ones, in NodePools and in pods' node selectors and affinity alike.
pub fn normalized(key: &str) -> &str {
    match key {
        "failure-domain.beta.kubernetes.io/zone" => ZONE,
        "failure-domain.beta.kubernetes.io/region" => REGION,
        "beta.kubernetes.io/arch" => ARCH,
        "beta.kubernetes.io/os" => OS,
        "beta.kubernetes.io/instance-type" => INSTANCE_TYPE,
        other => other,
    }
}

/// Labels whose value is set by the instance type or offering a claim launches with,
/// rather than by the NodePool. A pod may require one of these even if a NodePool does not
/// mention it; the instance types decide (Karpenter's `AllowUndefinedWellKnownLabels`).
pub fn is_instance_defined(key: &str) -> bool {
    matches!(
        key,
        HOSTNAME | ARCH | OS | INSTANCE_TYPE | ZONE | REGION | CAPACITY_TYPE
    ) || key.starts_with("karpenter.k8s.aws/instance-")
        || key.starts_with("karpenter.kwok.sh/instance-")
}

/// Label domains Karpenter forbids in NodePool template labels and requirements
/// (`karpenter.sh/v1` restricted labels): the `kubernetes.io`, `k8s.io` and `karpenter.sh`
/// domains, and the AWS provider's `karpenter.k8s.aws`, except the well-known keys it
/// allows and the domains it exempts (`node.kubernetes.io`,
/// `node-restriction.kubernetes.io`, `kops.k8s.io`).
pub fn is_restricted_label(key: &str) -> bool {
    const RESTRICTED_EXACT: [&str; 4] = [NODEPOOL, HOSTNAME, INITIALIZED, REGISTERED];
    if RESTRICTED_EXACT.contains(&key) {
        return true;
    }
    let domain = key.split_once('/').map(|(d, _)| d).unwrap_or("");
    let in_domain = |d: &str| domain == d || domain.ends_with(&format!(".{d}"));
    let allowed = matches!(
        key,
        ARCH | OS | INSTANCE_TYPE | ZONE | REGION | CAPACITY_TYPE
    ) || AWS_WELL_KNOWN.contains(&key)
        || in_domain("node.kubernetes.io")
        || in_domain("node-restriction.kubernetes.io")
        || in_domain("kops.k8s.io");
    !allowed
        && (in_domain("kubernetes.io")
            || in_domain("k8s.io")
            || in_domain("karpenter.sh")
            || in_domain("karpenter.k8s.aws"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restricted_labels_follow_karpenter() {
        for ok in [
            ZONE,
            ARCH,
            CAPACITY_TYPE,
            "node.kubernetes.io/lifecycle",
            "kops.k8s.io/group",
            INSTANCE_FAMILY,
            "karpenter.k8s.aws/instance-gpu-count",
            "team",
            "example.com/x",
        ] {
            assert!(!is_restricted_label(ok), "{ok}");
        }
        for bad in [
            NODEPOOL,
            HOSTNAME,
            "kubernetes.io/custom",
            "karpenter.sh/anything",
            "foo.k8s.io/x",
            "karpenter.k8s.aws/foo",
            NODECLASS_EC2,
            // Not a well-known label: AWS's zone ID is `topology.k8s.aws/zone-id`.
            "topology.kubernetes.io/zone-id",
        ] {
            assert!(is_restricted_label(bad), "{bad}");
        }
    }
}
