//! The cluster as kerf-kube knows it: the `ClusterView` the loops read, kept true from
//! the API server's watches and from the answers to kerf's own writes, plus the stored
//! objects kerf needs to write back (a NodeClaim's conditions, a Node's taints, a
//! NodePool's uid).
//!
//! Both sources go through one `apply_*` per kind, which keeps an object only if its
//! `resourceVersion` is not older than the one already held: a write's answer takes
//! effect at once (the next step sees it, so an action is never repeated for want of
//! the watch catching up), and a watch event that arrives later with the same or an
//! older version changes nothing. resourceVersions are etcd revisions here; they are
//! compared as integers only between versions of one object, and an unparsable one is
//! taken as newer.
//!
//! Every object is converted to the model once per change (`kerf_api::cluster`), not
//! once per step; `ClusterView::generation` moves only when what the loops read moved,
//! so status-only churn (kwok's heartbeats) does not wake the disruption pass.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kerf_api::FieldError;
use kerf_api::cluster::{self, ClusterPod};
use kerf_api::crd;
use kerf_cloud::Instance;
use kerf_controllers::{ClusterView, Event, PodState};
use kerf_model::pod::PodKey;
use kerf_model::{InstanceType, labels};
use kube::ResourceExt;

use crate::claims;

/// The kinds kerf watches; each must have synced before the loops may step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Pod,
    Node,
    NodePool,
    NodeClaim,
    NodeClass,
    DaemonSet,
    Pdb,
    Namespace,
    /// The cloud provider's instance list.
    Instances,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::Pod,
        Kind::Node,
        Kind::NodePool,
        Kind::NodeClaim,
        Kind::NodeClass,
        Kind::DaemonSet,
        Kind::Pdb,
        Kind::Namespace,
        Kind::Instances,
    ];
}

/// The stored objects kerf writes back, by name.
#[derive(Default)]
pub struct Stored {
    pub nodeclaims: BTreeMap<String, crd::NodeClaim>,
    pub nodes: BTreeMap<String, Node>,
    pub nodepools: BTreeMap<String, crd::NodePool>,
    pub node_classes: BTreeSet<String>,
    /// The uid of each pod in the view, for the events kerf publishes about it.
    pub pod_uids: BTreeMap<PodKey, String>,
}

pub struct State {
    pub view: ClusterView,
    pub stored: Stored,
    versions: BTreeMap<(Kind, String), u64>,
    synced: BTreeSet<Kind>,
    /// Keys seen since a watch (re)started listing, per kind, to drop what vanished.
    relisting: BTreeMap<Kind, BTreeSet<String>>,
    /// Objects refused by the conversion, with why, so each problem is reported once.
    pub refused: BTreeMap<String, Vec<FieldError>>,
    /// Events for the loops' next step (a pod became pending).
    pub events: Vec<Event>,
    pools: BTreeMap<String, kerf_model::NodePool>,
    daemonsets: BTreeMap<String, kerf_model::Pod>,
    pdbs: BTreeMap<String, kerf_model::Pdb>,
    /// The node class group and kind NodePools must reference for this provider.
    node_class_kind: (String, String),
    offer_lists: claims::OfferLists,
}

fn version<K: kube::Resource>(obj: &K) -> u64 {
    obj.meta()
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX)
}

fn ns_key<K: kube::Resource>(obj: &K) -> String {
    format!(
        "{}/{}",
        obj.meta().namespace.as_deref().unwrap_or_default(),
        obj.meta().name.as_deref().unwrap_or_default()
    )
}

/// Whether kube-scheduler has tried the pod and found no node (Karpenter's
/// `FailedToSchedule`): only such pods are provisioned for, so kerf never races the
/// scheduler for a pod an existing node can take.
fn unschedulable(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter().any(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
            })
        })
}

/// A Pod as a watch hands it to the step loop: converted to the model already, with
/// the few other fields the loop reads. The conversion runs on the watch's own task, so
/// neither the queue to the step loop (thousands of changes wait there while a long
/// step runs) nor the loop holds whole Pod objects, which with their status are several
/// kilobytes each.
pub struct SeenPod {
    /// `namespace/name`.
    pub key: String,
    pub version: u64,
    pub uid: Option<String>,
    /// `metadata.creationTimestamp`, Unix milliseconds (0 when unset).
    pub created_at: i64,
    converted: Result<ClusterPod, Vec<FieldError>>,
    /// kube-scheduler tried the pod and found no node.
    unschedulable: bool,
    /// When the `PodScheduled` and `Ready` conditions turned True, Unix milliseconds.
    pub scheduled_at: Option<i64>,
    pub ready_at: Option<i64>,
}

impl SeenPod {
    pub fn of(pod: &Pod) -> SeenPod {
        let since = |type_: &str| {
            pod.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == type_ && c.status == "True"))
                .and_then(|c| c.last_transition_time.as_ref())
                .map(|t| t.0.as_millisecond())
        };
        SeenPod {
            key: ns_key(pod),
            version: version(pod),
            uid: pod.metadata.uid.clone(),
            created_at: pod
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or(0, claims::ms),
            converted: cluster::pod(pod),
            unschedulable: unschedulable(pod),
            scheduled_at: since("PodScheduled"),
            ready_at: since("Ready"),
        }
    }
}

/// A Node as a watch (or a write's answer) hands it to the step loop: the model, and the
/// object to write back without what no write reads (`status`, `managedFields`). A
/// Node's status is a subresource, so no write kerf makes could send it anyway.
pub struct SeenNode {
    node: Node,
    model: Result<kerf_model::Node, Vec<FieldError>>,
}

/// Whether a live Node's `Ready` condition is `True`.
pub(crate) fn node_ready(node: &Node) -> bool {
    (node.status.as_ref())
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

impl SeenNode {
    pub fn of(node: &Node) -> SeenNode {
        let model = cluster::node(node).map(|mut model| {
            // A live node without a Ready condition has not reported yet: not ready (the
            // loader's reading, ready unless said otherwise, is for hand-written YAML).
            model.ready = node_ready(node);
            model
        });
        let mut kept = Node {
            metadata: node.metadata.clone(),
            spec: node.spec.clone(),
            status: None,
        };
        kept.metadata.managed_fields = None;
        SeenNode { node: kept, model }
    }

    pub fn name(&self) -> String {
        self.node.name_any()
    }
}

impl State {
    pub fn new(instance_types: Vec<InstanceType>, node_class_kind: (&str, &str)) -> State {
        let view = ClusterView {
            instance_types,
            ..ClusterView::default()
        };
        State {
            view,
            stored: Stored::default(),
            versions: BTreeMap::new(),
            synced: BTreeSet::new(),
            relisting: BTreeMap::new(),
            refused: BTreeMap::new(),
            events: Vec::new(),
            pools: BTreeMap::new(),
            daemonsets: BTreeMap::new(),
            pdbs: BTreeMap::new(),
            node_class_kind: (node_class_kind.0.into(), node_class_kind.1.into()),
            offer_lists: claims::OfferLists::default(),
        }
    }

    pub fn synced(&self) -> bool {
        Kind::ALL.iter().all(|k| self.synced.contains(k))
    }

    pub fn unsynced(&self) -> Vec<Kind> {
        Kind::ALL
            .iter()
            .copied()
            .filter(|k| !self.synced.contains(k))
            .collect()
    }

    /// A watch of `kind` started listing again: it is not synced until the list ends.
    pub fn relist_started(&mut self, kind: Kind) {
        self.synced.remove(&kind);
        self.relisting.insert(kind, BTreeSet::new());
    }

    fn seen(&mut self, kind: Kind, key: &str) {
        if let Some(keys) = self.relisting.get_mut(&kind) {
            keys.insert(key.to_string());
        }
    }

    /// The list ended: objects of `kind` it did not contain are gone.
    pub fn relist_done(&mut self, kind: Kind) {
        let seen = self.relisting.remove(&kind).unwrap_or_default();
        let held: Vec<String> = self
            .versions
            .keys()
            .filter(|(k, key)| *k == kind && !seen.contains(key))
            .map(|(_, key)| key.clone())
            .collect();
        for key in held {
            self.delete(kind, &key);
        }
        self.synced.insert(kind);
    }

    /// Whether an object at this version is news; records it if so.
    fn newer(&mut self, kind: Kind, key: &str, version: u64) -> bool {
        self.seen(kind, key);
        let entry = self.versions.entry((kind, key.to_string())).or_insert(0);
        if version < *entry {
            return false;
        }
        *entry = version;
        true
    }

    fn refuse(&mut self, key: String, errors: Vec<FieldError>) {
        for e in &errors {
            tracing::warn!(object = %e.object, field = %e.field, "{}", e.message);
        }
        self.refused.insert(key, errors);
    }

    /// The object is gone.
    pub fn delete(&mut self, kind: Kind, key: &str) {
        self.versions.remove(&(kind, key.to_string()));
        self.refused.remove(key);
        let view = &mut self.view;
        match kind {
            Kind::Pod => self.remove_pod(key),
            Kind::Node => {
                self.stored.nodes.remove(key);
                view.node_provider_ids.remove(key);
                if view.nodes.remove(key).is_some() {
                    view.generation += 1;
                }
            }
            Kind::NodeClaim => {
                self.stored.nodeclaims.remove(key);
                if view.claims.remove(key).is_some() {
                    view.generation += 1;
                }
                // Pods nominated to a claim that is gone wait again.
                for pod in view.pods.values_mut() {
                    if pod.nominated.as_deref() == Some(key) {
                        pod.nominated = None;
                    }
                }
            }
            Kind::NodePool => {
                self.stored.nodepools.remove(key);
                self.pools.remove(key);
                self.publish_pools();
            }
            Kind::NodeClass => {
                self.stored.node_classes.remove(key);
                if view.node_class_annotations.remove(key).is_some() {
                    view.generation += 1;
                }
                self.publish_pools();
            }
            Kind::DaemonSet => {
                if self.daemonsets.remove(key).is_some() {
                    view.daemonsets = self.daemonsets.values().cloned().collect();
                    view.generation += 1;
                }
            }
            Kind::Pdb => {
                if self.pdbs.remove(key).is_some() {
                    view.pdbs = self.pdbs.values().cloned().collect();
                    view.generation += 1;
                }
            }
            Kind::Namespace => {
                if view.namespaces.remove(key).is_some() {
                    view.generation += 1;
                }
            }
            Kind::Instances => {}
        }
    }

    pub fn apply_pod(&mut self, pod: &SeenPod) {
        let key = &pod.key;
        if !self.newer(Kind::Pod, key, pod.version) {
            return;
        }
        let model = match &pod.converted {
            Err(errors) => {
                self.refuse(key.clone(), errors.clone());
                self.remove_pod(key);
                return;
            }
            Ok(ClusterPod::Bound(p)) => p,
            Ok(ClusterPod::Pending(p)) if pod.unschedulable => p,
            Ok(ClusterPod::Pending(_) | ClusterPod::Finished | ClusterPod::NotProvisionable(_)) => {
                self.remove_pod(key);
                return;
            }
        };
        let old = self.view.pods.get(&model.key);
        if old.is_some_and(|o| &o.pod == model) {
            return;
        }
        let nominated = old
            .filter(|o| o.pod.node_name.is_none() && model.node_name.is_none())
            .and_then(|o| o.nominated.clone());
        let newly_pending =
            model.node_name.is_none() && old.is_none_or(|o| o.pod.node_name.is_some());
        let pod_key = model.key.clone();
        if let Some(uid) = &pod.uid {
            self.stored.pod_uids.insert(pod_key.clone(), uid.clone());
        }
        self.view.remove_pod(&pod_key);
        self.view.insert_pod(PodState {
            pod: model.clone(),
            created_at: pod.created_at,
            nominated,
        });
        if newly_pending {
            self.events.push(Event::PodPending(pod_key));
        }
    }

    /// Takes the pod `namespace/name` out of the view (it is gone, or not one the loops
    /// read: finished, not provisionable, not yet tried by the scheduler).
    fn remove_pod(&mut self, key: &str) {
        if let Some((ns, name)) = key.split_once('/') {
            let key = PodKey {
                namespace: ns.into(),
                name: name.into(),
            };
            self.stored.pod_uids.remove(&key);
            self.view.remove_pod(&key);
        }
    }
    pub fn apply_node(&mut self, seen: &SeenNode) {
        let node = &seen.node;
        let key = node.name_any();
        if !self.newer(Kind::Node, &key, version(node)) {
            return;
        }
        self.stored.nodes.insert(key.clone(), node.clone());
        match node.spec.as_ref().and_then(|s| s.provider_id.clone()) {
            Some(id) if !id.is_empty() => {
                self.view.node_provider_ids.insert(key.clone(), id);
            }
            _ => {
                self.view.node_provider_ids.remove(&key);
            }
        }
        let model = match &seen.model {
            Ok(n) => n,
            Err(errors) => {
                self.refuse(key.clone(), errors.clone());
                if self.view.nodes.remove(&key).is_some() {
                    self.view.generation += 1;
                }
                return;
            }
        };
        if self.view.nodes.get(&key) != Some(model) {
            self.view.nodes.insert(key, model.clone());
            self.view.generation += 1;
        }
    }

    pub fn apply_nodeclaim(&mut self, nc: &crd::NodeClaim) {
        let key = nc.name_any();
        if !self.newer(Kind::NodeClaim, &key, version(nc)) {
            return;
        }
        self.stored
            .nodeclaims
            .insert(key.clone(), without_managed_fields(nc));
        let claim = claims::from_nodeclaim(nc, &self.view.instance_types, &mut self.offer_lists);
        if self.view.claims.get(&key) != Some(&claim) {
            let deleting = claim.deleting_since.is_some();
            self.view.claims.insert(key.clone(), claim);
            self.view.generation += 1;
            if deleting {
                // Pods waiting for a claim being deleted wait again (as the simulator's
                // cluster clears their nominations).
                let waiting: Vec<PodKey> = self
                    .view
                    .pods
                    .values()
                    .filter(|p| p.nominated.as_deref() == Some(key.as_str()))
                    .map(|p| p.pod.key.clone())
                    .collect();
                for pod in waiting {
                    if let Some(p) = self.view.pods.get_mut(&pod) {
                        p.nominated = None;
                    }
                    self.events.push(Event::PodPending(pod));
                }
            }
        }
    }

    pub fn apply_nodepool(&mut self, pool: &crd::NodePool) {
        let key = pool.name_any();
        if !self.newer(Kind::NodePool, &key, version(pool)) {
            return;
        }
        self.stored
            .nodepools
            .insert(key.clone(), without_managed_fields(pool));
        match crd::nodepool_to_model(pool) {
            Ok(model) => {
                self.refused.remove(&key);
                self.pools.insert(key, model);
            }
            Err(errors) => {
                self.refuse(key.clone(), errors);
                self.pools.remove(&key);
            }
        }
        self.publish_pools();
    }

    /// A node class exists, with these annotations; the drift-relevant ones (the
    /// EC2NodeClass hash and its version) are kept for the disruption pass.
    pub fn apply_node_class(
        &mut self,
        name: &str,
        resource_version: u64,
        annotations: &BTreeMap<String, String>,
    ) {
        if !self.newer(Kind::NodeClass, name, resource_version) {
            return;
        }
        let kept: kerf_model::Labels = annotations
            .iter()
            .filter(|(k, _)| labels::EC2NODECLASS_HASH_ANNOTATIONS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if self.view.node_class_annotations.get(name) != Some(&kept) {
            self.view
                .node_class_annotations
                .insert(name.to_string(), kept);
            self.view.generation += 1;
        }
        if self.stored.node_classes.insert(name.to_string()) {
            self.publish_pools();
        }
    }

    /// The node class group and kind this provider reads.
    pub fn node_class_kind(&self) -> (&str, &str) {
        (&self.node_class_kind.0, &self.node_class_kind.1)
    }

    /// Why the stored NodePool `name` was refused, if it was.
    pub fn nodepool_errors(&self, name: &str) -> Option<&[FieldError]> {
        if self.pools.contains_key(name) {
            return None;
        }
        self.refused.get(name).map(Vec::as_slice)
    }

    /// Why a valid NodePool cannot launch now, if it cannot: its node class is of
    /// another provider, or does not exist.
    pub fn pool_blocked(&self, pool: &kerf_model::NodePool) -> Option<String> {
        let (group, kind) = &self.node_class_kind;
        let Some(class) = &pool.node_class else {
            return Some("it names no nodeClassRef".into());
        };
        if &class.group != group || &class.kind != kind {
            return Some(format!(
                "nodeClassRef is {}/{}, but this controller's cloud provider reads {group}/{kind}",
                class.group, class.kind
            ));
        }
        if !self.stored.node_classes.contains(&class.name) {
            return Some(format!("{kind} {:?} does not exist", class.name));
        }
        None
    }

    fn publish_pools(&mut self) {
        let pools: Vec<kerf_model::NodePool> = self
            .pools
            .values()
            .filter(|p| self.pool_blocked(p).is_none())
            .cloned()
            .collect();
        if pools != self.view.nodepools {
            self.view.nodepools = pools;
            self.view.generation += 1;
        }
    }

    pub fn apply_daemonset(&mut self, ds: &DaemonSet) {
        let key = ns_key(ds);
        if !self.newer(Kind::DaemonSet, &key, version(ds)) {
            return;
        }
        let converted = match cluster::daemonset(ds) {
            Ok(Some(pod)) => Some(pod),
            Ok(None) => None,
            Err(errors) => {
                self.refuse(key.clone(), errors);
                None
            }
        };
        let changed = match converted {
            Some(pod) => self.daemonsets.insert(key, pod.clone()) != Some(pod),
            None => self.daemonsets.remove(&key).is_some(),
        };
        if changed {
            self.view.daemonsets = self.daemonsets.values().cloned().collect();
            self.view.generation += 1;
        }
    }

    pub fn apply_pdb(&mut self, pdb: &PodDisruptionBudget) {
        let key = ns_key(pdb);
        if !self.newer(Kind::Pdb, &key, version(pdb)) {
            return;
        }
        let changed = match cluster::pdb(pdb) {
            Ok(model) => self.pdbs.insert(key, model.clone()) != Some(model),
            Err(errors) => {
                self.refuse(key.clone(), errors);
                self.pdbs.remove(&key).is_some()
            }
        };
        if changed {
            self.view.pdbs = self.pdbs.values().cloned().collect();
            self.view.generation += 1;
        }
    }

    pub fn apply_namespace(&mut self, ns: &Namespace) {
        let key = ns.name_any();
        if !self.newer(Kind::Namespace, &key, version(ns)) {
            return;
        }
        let labels = cluster::namespace(ns);
        if self.view.namespaces.get(&key) != Some(&labels) {
            self.view.namespaces.insert(key, labels);
            self.view.generation += 1;
        }
    }

    /// What the cloud listed. Instances kerf launched or terminated after the list
    /// began (`since`) are kept as kerf last saw them: a list that started before a
    /// launch finished must not hide that launch from the loops (they would launch again).
    pub fn apply_instances(&mut self, listed: Vec<Instance>, recent: &RecentCloud) {
        let mut instances: BTreeMap<String, Instance> =
            listed.into_iter().map(|i| (i.id.clone(), i)).collect();
        for (id, instance) in &recent.launched {
            instances
                .entry(id.clone())
                .or_insert_with(|| instance.clone());
        }
        for id in &recent.terminated {
            instances.remove(id);
        }
        if instances != self.view.instances {
            self.view.instances = instances;
            self.view.generation += 1;
        }
        self.synced.insert(Kind::Instances);
    }

    pub fn instance_launched(&mut self, instance: Instance) {
        self.view.instances.insert(instance.id.clone(), instance);
        self.view.generation += 1;
    }

    pub fn instance_terminated(&mut self, id: &str) {
        if self.view.instances.remove(id).is_some() {
            self.view.generation += 1;
        }
    }
}

/// Launches and terminations kerf made while a list call was out.
#[derive(Default, Debug)]
pub struct RecentCloud {
    pub launched: BTreeMap<String, Instance>,
    pub terminated: BTreeSet<String>,
}

/// A copy to keep, without `metadata.managedFields`: the watches drop them as objects
/// arrive, but a write's answer carries them (often half of a Node), and no loop reads
/// them nor does any write send them back.
fn without_managed_fields<K: kube::Resource + Clone>(object: &K) -> K {
    let mut kept = object.clone();
    kept.meta_mut().managed_fields = None;
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta};

    #[test]
    fn a_write_answer_is_kept_without_its_managed_fields() {
        let catalog = kerf_model::catalog::by_name("kwok").unwrap();
        let mut state = State::new(catalog, ("karpenter.kwok.sh", "KWOKNodeClass"));
        let node = Node {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                resource_version: Some("7".into()),
                managed_fields: Some(vec![ManagedFieldsEntry {
                    manager: Some("kubelet".into()),
                    ..ManagedFieldsEntry::default()
                }]),
                ..ObjectMeta::default()
            },
            ..Node::default()
        };
        state.apply_node(&SeenNode::of(&node));
        let kept = &state.stored.nodes["n1"];
        assert_eq!(kept.metadata.managed_fields, None);
        assert_eq!(kept.metadata.resource_version.as_deref(), Some("7"));
    }
}
