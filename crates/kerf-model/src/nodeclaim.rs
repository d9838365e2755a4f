//! NodeClaims that already exist: what Karpenter (or kerf) asked the cloud to launch, and
//! the facts about that launch disruption decisions need.

use std::time::Duration;

use crate::selector::Labels;

/// An existing `karpenter.sh/v1` NodeClaim, converted once by `kerf-api`.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeClaim {
    pub name: String,
    /// `metadata.labels` (the NodePool, instance type, zone and capacity type live here).
    pub labels: Labels,
    /// `metadata.annotations`, e.g. `karpenter.sh/nodepool-hash`.
    pub annotations: Labels,
    /// `status.nodeName`: the Node this claim became, once registered.
    pub node_name: Option<String>,
    /// `status.imageID`: the image the instance was launched with.
    pub image_id: Option<String>,
    /// `metadata.creationTimestamp`, seconds since the Unix epoch.
    pub created_at: Option<i64>,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// The `Initialized` condition is `True`.
    pub initialized: bool,
    /// `status.lastPodEventTime`, seconds since the Unix epoch.
    pub last_pod_event: Option<i64>,
    /// `spec.expireAfter`, copied from the NodePool at launch; `None` is `Never`.
    pub expire_after: Option<Duration>,
    /// `spec.terminationGracePeriod`.
    pub termination_grace_period: Option<Duration>,
}

impl NodeClaim {
    /// The NodePool that launched this claim, if labelled.
    pub fn nodepool(&self) -> Option<&str> {
        self.labels.get(crate::labels::NODEPOOL).map(String::as_str)
    }
}
