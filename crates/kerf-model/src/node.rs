//! Nodes that already exist in the cluster.

use crate::Resources;
use crate::labels;
use crate::selector::Labels;
use crate::taints::Taint;

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub name: String,
    pub labels: Labels,
    pub annotations: Labels,
    pub taints: Vec<Taint>,
    pub capacity: Resources,
    pub allocatable: Resources,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
    pub ready: bool,
    /// `metadata.creationTimestamp` as seconds since the Unix epoch, when known.
    pub created_at: Option<i64>,
    /// `metadata.deletionTimestamp` is set: the node is already being drained.
    pub deleting: bool,
}

impl Node {
    pub fn new(name: &str, labels: Labels, allocatable: Resources) -> Node {
        let mut labels = labels;
        labels
            .entry(labels::HOSTNAME.to_string())
            .or_insert_with(|| name.to_string());
        Node {
            name: name.to_string(),
            labels,
            annotations: Labels::new(),
            taints: Vec::new(),
            capacity: allocatable.clone(),
            allocatable,
            unschedulable: false,
            ready: true,
            created_at: None,
            deleting: false,
        }
    }

    /// The NodePool that manages this node, if any.
    pub fn nodepool(&self) -> Option<&str> {
        self.labels.get(labels::NODEPOOL).map(String::as_str)
    }

    /// Karpenter's `StateNode.Initialized`: a managed node is initialized once it carries
    /// `karpenter.sh/initialized=true` (its NodeClaim's `Initialized` condition); a node no
    /// NodePool manages has no such lifecycle and always is.
    pub fn is_initialized(&self) -> bool {
        self.nodepool().is_none()
            || self.labels.get(labels::INITIALIZED).map(String::as_str) == Some("true")
    }

    /// The node as Karpenter's provisioning simulation sees it (`StateNode.Taints`). While a
    /// managed node is not `initialized`, the taints it is expected to shed on the way up —
    /// its `startup_taints` and the known ephemeral ones (not ready, unreachable, not yet
    /// initialized or registered) — do not count, and neither does its not being Ready yet:
    /// pods that will fit once it is up wait for it instead of opening another claim. Any
    /// other node, and any other taint, is as it is.
    ///
    /// Only provisioning looks past them: kube-scheduler honours every taint, so a model of
    /// it must read the node itself.
    pub fn for_provisioning(&self, initialized: bool, startup_taints: &[Taint]) -> Node {
        let mut node = self.clone();
        if initialized || self.nodepool().is_none() {
            return node;
        }
        node.taints
            .retain(|t| !t.is_known_ephemeral() && !startup_taints.iter().any(|s| s.matches(t)));
        node.ready = true;
        node
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Effect, Resources};

    fn node(extra_labels: &[(&str, &str)]) -> Node {
        let mut l = Labels::new();
        for (k, v) in extra_labels {
            l.insert(k.to_string(), v.to_string());
        }
        let mut n = Node::new("n1", l, Resources::new());
        n.ready = false;
        n.taints = vec![
            Taint::new("node.kubernetes.io/not-ready", "", Effect::NoSchedule),
            Taint::new(
                "node.cloudprovider.kubernetes.io/uninitialized",
                "true",
                Effect::NoSchedule,
            ),
            Taint::new(labels::TAINT_UNREGISTERED, "", Effect::NoExecute),
            Taint::new("example.com/agent-not-ready", "true", Effect::NoExecute),
            Taint::new("example.com/dedicated", "db", Effect::NoSchedule),
        ];
        n
    }

    fn keys(n: &Node) -> Vec<&str> {
        n.taints.iter().map(|t| t.key.as_str()).collect()
    }

    #[test]
    fn an_initializing_managed_node_is_seen_without_the_taints_it_will_shed() {
        let startup = [Taint::new(
            "example.com/agent-not-ready",
            "",
            Effect::NoExecute,
        )];
        let managed = node(&[(labels::NODEPOOL, "default")]);
        assert!(!managed.is_initialized());
        let seen = managed.for_provisioning(managed.is_initialized(), &startup);
        // The startup taint matches by key and effect, whatever its value.
        assert_eq!(keys(&seen), ["example.com/dedicated"]);
        assert!(seen.ready);

        // Initialized, every taint counts again, and readiness too.
        let up = node(&[(labels::NODEPOOL, "default"), (labels::INITIALIZED, "true")]);
        assert!(up.is_initialized());
        assert_eq!(up.for_provisioning(up.is_initialized(), &startup), up);

        // A node no NodePool manages has no startup to wait out.
        let unmanaged = node(&[]);
        assert!(unmanaged.is_initialized());
        assert_eq!(unmanaged.for_provisioning(false, &startup), unmanaged);

        // Only the ephemeral taints' own effects are ephemeral.
        assert!(
            !Taint::new("node.kubernetes.io/unreachable", "", Effect::NoExecute)
                .is_known_ephemeral()
        );
    }
}
