//! kerf's AWS cloud provider, on the AWS SDK for Rust.
//!
//! - [`resolve`]: an EC2NodeClass's selectors → subnets, security groups, AMIs and the
//!   instance profile, as `EC2NodeClassStatus` with its conditions; [`status`] writes
//!   that status back every minute.
//! - [`provider`]: [`kerf_cloud::Provider`] over EC2 — launch templates named by a hash
//!   of their content, `CreateFleet` (instant, one instance), idempotent per claim through
//!   the `karpenter.sh/nodeclaim` tag, insufficient-capacity errors cached for 3 minutes,
//!   `TerminateInstances`, `DescribeInstances` by the cluster's tags. The claim lookups
//!   before launches and the terminations of many claims go out together ([`batcher`],
//!   Karpenter's windows); CreateFleet does not (one per claim, so each instance carries
//!   its claim's tag from the start).
//! - [`catalog`] and [`pricing`]: the instance types the scheduler sees, from
//!   `DescribeInstanceTypes`/`DescribeInstanceTypeOfferings` by the embedded catalog's
//!   rules, priced by the Pricing API and `DescribeSpotPriceHistory` over a committed
//!   fallback, refreshed every 12 hours ([`controller`] runs the refresh).
//! - [`drift`]: the class hash (`karpenter.k8s.aws/ec2nodeclass-hash`) and the image,
//!   subnet and security-group drift of an instance, as Karpenter's `IsDrifted`.
//! - [`interruption`]: the five EventBridge message kinds and the SQS long-poll loop.
//! - [`tagging`]: after registration, the instance's `Name` tag and the claim's
//!   `karpenter.k8s.aws/tagged` annotation.
//! - [`termination`]: the EC2NodeClass finalizer, `karpenter.k8s.aws/termination`: waits
//!   for the class's NodeClaims, deletes its launch templates and managed instance
//!   profile, then lets the class go.
//!
//! Endpoints, region and credentials come from the SDK's standard chain
//! (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, IRSA, Pod Identity…): nothing
//! kerf-specific points it at a test endpoint such as moto.

pub mod ami;
pub mod batcher;
pub mod catalog;
pub mod clients;
pub mod controller;
pub mod drift;
pub mod filters;
pub mod ice;
pub mod interruption;
pub mod launch;
pub mod pricing;
pub mod provider;
pub mod resolve;
pub mod status;
pub mod tagging;
pub mod termination;
pub mod userdata;

pub use clients::Clients;
pub use provider::{AwsProvider, ClusterInfo};

/// Tags and labels Karpenter (and so kerf) puts on what it creates.
pub mod tags {
    pub const NODEPOOL: &str = "karpenter.sh/nodepool";
    pub const NODECLAIM: &str = "karpenter.sh/nodeclaim";
    pub const NODECLASS: &str = "karpenter.k8s.aws/ec2nodeclass";
    pub const EKS_CLUSTER: &str = "eks:eks-cluster-name";
    pub const REGION: &str = "topology.kubernetes.io/region";
    /// `kubernetes.io/cluster/<name>` = `owned`.
    pub fn cluster_owned(cluster: &str) -> String {
        format!("kubernetes.io/cluster/{cluster}")
    }
}

/// Merges `annotations` (a JSON object) into NodeClaim `name`'s; a claim already gone
/// is no error (its lifecycle is over).
pub(crate) async fn annotate_claim(
    claims: &kube::Api<kerf_api::crd::NodeClaim>,
    name: &str,
    annotations: serde_json::Value,
) -> Result<(), kube::Error> {
    let patch = serde_json::json!({"metadata": {"annotations": annotations}});
    let params = kube::api::PatchParams::default();
    match claims
        .patch(name, &params, &kube::api::Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// `aws:///<zone>/<instance id>`.
pub fn provider_id(zone: &str, instance_id: &str) -> String {
    format!("aws:///{zone}/{instance_id}")
}

/// The instance ID at the end of a provider ID (or the ID itself).
pub fn instance_id(provider_id: &str) -> &str {
    provider_id.rsplit('/').next().unwrap_or(provider_id)
}
