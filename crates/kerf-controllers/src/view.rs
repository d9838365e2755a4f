//! The cluster as a shell reports it: the objects the loops read. A shell owns one
//! `ClusterView` and keeps it true (the simulator mutates it in place; the Kubernetes
//! shell fills it from watch caches); the loops only read it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use kerf_cloud::{Instance, Offer};
use kerf_model::pod::PodKey;
use kerf_model::{InstanceType, Labels, Node, NodeClaim, NodePool, Pdb, Pod, Taint, labels};

/// A pod and what the shell knows about it beyond its spec.
#[derive(Clone, Debug)]
pub struct PodState {
    /// The pod; `node_name` is set once bound.
    pub pod: Pod,
    /// Milliseconds of the shell's clock.
    pub created_at: i64,
    /// The NodeClaim the provisioner nominated it to (`status.nominatedNodeName`).
    pub nominated: Option<String>,
}

/// A `karpenter.sh/v1` NodeClaim: spec and status.
#[derive(Clone, Debug, PartialEq)]
pub struct Claim {
    pub name: String,
    pub nodepool: String,
    /// Labels the node will carry; the launched offering's are added at launch.
    pub labels: Labels,
    pub annotations: Labels,
    pub taints: Vec<Taint>,
    pub startup_taints: Vec<Taint>,
    /// Offerings to try, cheapest first. Shared: the claims of one launch, and every
    /// claim a shell reads with the same requirements, hold one list.
    pub options: Arc<[Offer]>,
    pub created_at: i64,
    pub expire_after: Option<Duration>,
    pub termination_grace_period: Option<Duration>,
    /// Status: the instance, once launched.
    pub provider_id: Option<String>,
    pub launched: Option<Offer>,
    pub image_id: Option<String>,
    /// Status: the Node, once registered.
    pub node_name: Option<String>,
    pub initialized: bool,
    /// `metadata.deletionTimestamp`, milliseconds.
    pub deleting_since: Option<i64>,
    /// Why it is being deleted.
    pub deletion_reason: Option<crate::DeletionReason>,
    /// Status: the `Drifted` condition, when the claim has one.
    pub drifted: Option<crate::conditions::Shown>,
    /// Status: the `Consolidatable` condition, when the claim has one.
    pub consolidatable: Option<crate::conditions::Shown>,
}

impl Claim {
    /// The claim as the disruption pass reads it; `epoch` is Unix seconds at time 0.
    pub fn to_model(&self, epoch: i64) -> NodeClaim {
        NodeClaim {
            name: self.name.clone(),
            labels: self.labels.clone(),
            annotations: self.annotations.clone(),
            node_name: self.node_name.clone(),
            image_id: self.image_id.clone(),
            created_at: Some(epoch + self.created_at / 1000),
            deleting: self.deleting_since.is_some(),
            initialized: self.initialized,
            last_pod_event: None,
            expire_after: self.expire_after,
            termination_grace_period: self.termination_grace_period,
        }
    }

    /// The Node this claim becomes when launched on `offer`: named as the claim (its
    /// hostname too, unless the claim's labels set one), with the instance type's labels,
    /// capacity and allocatable, the claim's labels, the offering's zone and capacity
    /// type, and the claim's taints. `None` when the type is not in `instance_types`.
    ///
    /// The one place that says what a launched claim's node looks like: the loops count
    /// in-flight claims as these nodes, and a shell registering the node starts from it.
    pub fn node_on(&self, offer: &Offer, instance_types: &[InstanceType]) -> Option<Node> {
        let it = instance_types
            .iter()
            .find(|t| t.name == offer.instance_type)?;
        let mut node_labels = it.labels.clone();
        node_labels.extend(self.labels.clone());
        node_labels.insert(labels::ZONE.into(), offer.zone.clone());
        node_labels.insert(labels::CAPACITY_TYPE.into(), offer.capacity_type.clone());
        let mut node = Node::new(&self.name, node_labels, it.allocatable());
        node.capacity = it.capacity.clone();
        node.taints = self.taints.clone();
        Some(node)
    }

    /// The node a claim in flight will become: on the offering it launched with, or
    /// else on its first option.
    pub fn future_node(&self, instance_types: &[InstanceType]) -> Option<Node> {
        let offer = self.launched.as_ref().or(self.options.first())?;
        self.node_on(offer, instance_types)
    }

    /// When forced termination begins, if the claim is deleting with a grace period.
    pub fn grace_deadline(&self) -> Option<i64> {
        let since = self.deleting_since?;
        let tgp = self.termination_grace_period?;
        Some(since + tgp.as_millis() as i64)
    }
}

/// Everything the loops look at. Iteration is ordered by name everywhere.
#[derive(Clone, Debug, Default)]
pub struct ClusterView {
    /// Bumped by the shell on every change, so a loop can skip work on an unchanged view.
    pub generation: u64,
    pub pods: BTreeMap<PodKey, PodState>,
    /// Pods not bound to a node.
    pub pending: BTreeSet<PodKey>,
    /// Bound pods by node name.
    pub pods_by_node: BTreeMap<String, BTreeSet<PodKey>>,
    pub nodes: BTreeMap<String, Node>,
    /// `spec.providerID` of each node that has one.
    pub node_provider_ids: BTreeMap<String, String>,
    pub claims: BTreeMap<String, Claim>,
    /// What the cloud lists, by provider ID.
    pub instances: BTreeMap<String, Instance>,
    pub nodepools: Vec<NodePool>,
    pub pdbs: Vec<Pdb>,
    /// One template pod per DaemonSet.
    pub daemonsets: Vec<Pod>,
    pub namespaces: BTreeMap<String, Labels>,
    pub instance_types: Vec<InstanceType>,
    /// Image IDs each node class resolves to now, newest first.
    pub node_class_images: BTreeMap<String, Vec<String>>,
    /// The drift-relevant annotations of each node class (its hash and hash version).
    pub node_class_annotations: BTreeMap<String, Labels>,
}

impl ClusterView {
    pub fn nodepool(&self, name: &str) -> Option<&NodePool> {
        self.nodepools.iter().find(|p| p.name == name)
    }

    /// The image a pool's claims launch with: its node class's newest.
    pub fn image_for(&self, nodepool: &str) -> String {
        self.nodepool(nodepool)
            .and_then(|p| p.node_class.as_ref())
            .and_then(|c| self.node_class_images.get(&c.name))
            .and_then(|images| images.first())
            .cloned()
            .unwrap_or_else(|| "ami-default".to_string())
    }

    /// The claim a node belongs to: by `status.nodeName`, else through its instance's tag.
    pub fn claim_of_node(&self, node: &str) -> Option<&Claim> {
        let by_instance = self
            .node_provider_ids
            .get(node)
            .and_then(|id| self.instances.get(id))
            .and_then(|i| self.claims.get(&i.claim));
        by_instance.or_else(|| {
            self.claims
                .values()
                .find(|c| c.node_name.as_deref() == Some(node))
        })
    }

    /// The pods of the DaemonSets that would run on `node`, a node not there yet (a
    /// claim in flight, a template): named `<daemonset>-<node>` and bound to it.
    pub fn daemon_pods_on(&self, node: &Node) -> Vec<Pod> {
        (self.daemonsets.iter())
            .filter(|ds| ds.daemon_runs_on(&node.labels, &node.taints))
            .map(|ds| {
                let mut pod = ds.clone();
                pod.key.name = format!("{}-{}", ds.key.name, node.name);
                pod.node_name = Some(node.name.clone());
                pod
            })
            .collect()
    }

    pub fn pods_on<'a>(&'a self, node: &str) -> impl Iterator<Item = &'a PodState> + 'a {
        self.pods_by_node
            .get(node)
            .into_iter()
            .flatten()
            .filter_map(|k| self.pods.get(k))
    }

    // The mutators below are for shells: each keeps the indexes true and bumps
    // `generation`.

    pub fn insert_pod(&mut self, state: PodState) {
        let key = state.pod.key.clone();
        match &state.pod.node_name {
            Some(node) => {
                self.pods_by_node
                    .entry(node.clone())
                    .or_default()
                    .insert(key.clone());
            }
            None => {
                self.pending.insert(key.clone());
            }
        }
        self.pods.insert(key, state);
        self.generation += 1;
    }

    pub fn remove_pod(&mut self, key: &PodKey) -> Option<PodState> {
        let state = self.pods.remove(key)?;
        match &state.pod.node_name {
            Some(node) => {
                if let Some(set) = self.pods_by_node.get_mut(node) {
                    set.remove(key);
                }
            }
            None => {
                self.pending.remove(key);
            }
        }
        self.generation += 1;
        Some(state)
    }

    pub fn bind_pod(&mut self, key: &PodKey, node: &str) {
        let Some(state) = self.pods.get_mut(key) else {
            return;
        };
        if state.pod.node_name.is_some() {
            return;
        }
        state.pod.node_name = Some(node.to_string());
        state.nominated = None;
        self.pending.remove(key);
        self.pods_by_node
            .entry(node.to_string())
            .or_default()
            .insert(key.clone());
        self.generation += 1;
    }
}
