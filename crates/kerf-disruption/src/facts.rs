//! What a pass knows about each node before simulating anything: its NodePool and
//! NodeClaim, price, pods, whether it may be disrupted at all, whether it has drifted or
//! expired, and what disrupting it costs.

use std::collections::BTreeMap;

use kerf_model::Pdb;
use kerf_model::labels::{self, ANNOTATION_DO_NOT_DISRUPT, ANNOTATION_POD_DELETION_COST};
use kerf_model::pod::PodKey;
use kerf_model::{Drift, DriftReason, InstanceType, Labels, Node, NodeClaim, NodePool, Pod};

use crate::{Snapshot, render_duration};

/// One node of the snapshot, judged.
#[derive(Clone, Debug)]
pub(crate) struct Facts<'a> {
    pub(crate) node: &'a Node,
    /// The `karpenter.sh/nodepool` label: `None` is unmanaged capacity.
    pub(crate) pool_name: Option<&'a str>,
    pub(crate) pool: Option<&'a NodePool>,
    pub(crate) claim: Option<&'a NodeClaim>,
    pub(crate) instance_type: Option<&'a str>,
    pub(crate) capacity_type: &'a str,
    /// Dollars per hour, when the catalog knows the node's offering.
    pub(crate) price: Option<f64>,
    /// Indices into `World::pods` (initially `Snapshot::bound_pods`).
    pub(crate) pods: Vec<usize>,
    /// The pods a drain would have rescheduled: not DaemonSet pods.
    pub(crate) reschedulable: Vec<usize>,
    pub(crate) initialized: bool,
    /// Being deleted, or already tainted `karpenter.sh/disrupted`.
    pub(crate) deleting: bool,
    /// Counts against budgets as disrupting: deleting or not Ready.
    pub(crate) disrupting: bool,
    /// Why no graceful method may touch it (`do-not-disrupt`, a PDB), if so.
    pub(crate) blocked: Option<Blocker>,
    pub(crate) drift: Option<Drift>,
    /// `Some(age past expireAfter)` once expired.
    pub(crate) expired: Option<String>,
    /// Seconds since the last pod event (or creation), when known.
    pub(crate) since_pod_event: Option<i64>,
    pub(crate) disruption_cost: f64,
}

impl Facts<'_> {
    /// Whether the node belongs to a NodePool (by its label): a node the pass decides
    /// about, and reports on when it leaves it alone.
    pub(crate) fn managed(&self) -> bool {
        self.pool_name.is_some()
    }
}

pub(crate) fn judge<'a>(snapshot: &'a Snapshot, now: i64) -> Vec<Facts<'a>> {
    // Pods by node, and how many pods each PDB selects.
    let node_idx: std::collections::BTreeMap<&str, usize> = snapshot
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    let mut pods_of: Vec<Vec<usize>> = vec![Vec::new(); snapshot.nodes.len()];
    for (p, pod) in snapshot.bound_pods.iter().enumerate() {
        if let Some(&n) = pod.node_name.as_deref().and_then(|n| node_idx.get(n)) {
            pods_of[n].push(p);
        }
    }
    let pdb_index = PdbIndex::new(&snapshot.pdbs);
    let pdb_allowed = pdb_allowed(snapshot, &pdb_index);
    let claim_of = claims_by_node(&snapshot.nodeclaims);
    snapshot
        .nodes
        .iter()
        .zip(pods_of)
        .map(|(node, pods)| {
            let pool_name = node.nodepool();
            let pool = pool_name.and_then(|p| snapshot.nodepools.iter().find(|np| np.name == p));
            let claim = claim_of
                .get(node.name.as_str())
                .map(|&c| &snapshot.nodeclaims[c]);
            let label = |key: &str| {
                node.labels
                    .get(key)
                    .or_else(|| claim.and_then(|c| c.labels.get(key)))
                    .map(String::as_str)
            };
            let instance_type = label(labels::INSTANCE_TYPE);
            let capacity_type =
                label(labels::CAPACITY_TYPE).unwrap_or(labels::CAPACITY_TYPE_ON_DEMAND);
            let zone = label(labels::ZONE);
            let catalog_type =
                instance_type.and_then(|t| snapshot.instance_types.iter().find(|it| it.name == t));
            let price = catalog_type.and_then(|it| price_of(it, zone, capacity_type));
            let reschedulable: Vec<usize> = pods
                .iter()
                .copied()
                .filter(|&p| reschedulable(&snapshot.bound_pods[p]))
                .collect();
            // A node without a NodeClaim is not Karpenter's to disrupt (a candidate must
            // have one), so whether it is initialized never matters.
            let initialized = claim.is_some_and(|c| c.initialized);
            let deleting = is_leaving(node, claim);
            let created_at = claim.and_then(|c| c.created_at).or(node.created_at);
            let expire_after = match claim {
                Some(c) => c.expire_after,
                None => pool.and_then(|p| p.expire_after),
            };
            let expired = match (created_at, expire_after) {
                (Some(created), Some(ttl)) if now - created >= ttl.as_secs() as i64 => {
                    Some(format!(
                        "expired: {} old, expireAfter {}",
                        render_duration(now - created),
                        render_duration(ttl.as_secs() as i64)
                    ))
                }
                _ => None,
            };
            // Karpenter's `status.lastPodEventTime` is when a pod other than a DaemonSet's
            // was last bound to the node (or finished). A cluster dump may not carry it,
            // and a hand-written NodeClaim rarely does: the pods' own bind times say it
            // too, and the later of the two is the one consolidateAfter counts from.
            let last_bind = pods
                .iter()
                .map(|&p| &snapshot.bound_pods[p])
                .filter(|p| !p.is_daemon())
                .filter_map(|p| p.bound_at)
                .max();
            let last_event = claim
                .and_then(|c| c.last_pod_event)
                .max(last_bind)
                .or(created_at);
            let lifetime = match (created_at, expire_after) {
                (Some(created), Some(ttl)) if !ttl.is_zero() => {
                    let total = ttl.as_secs_f64();
                    ((total - (now - created) as f64) / total).clamp(0.0, 1.0)
                }
                _ => 1.0,
            };
            let disruption_cost = pods
                .iter()
                .map(|&p| eviction_cost(&snapshot.bound_pods[p]))
                .sum::<f64>()
                * lifetime;
            let blocked = blocker(
                snapshot,
                &snapshot.bound_pods,
                node,
                claim,
                &pods,
                &pdb_allowed,
                &pdb_index,
                now,
            );
            let drift = pool.and_then(|pool| {
                drifted(
                    snapshot,
                    node,
                    claim,
                    pool,
                    instance_type,
                    catalog_type.is_some(),
                )
            });
            Facts {
                node,
                pool_name,
                pool,
                claim,
                instance_type,
                capacity_type,
                price,
                pods,
                reschedulable,
                initialized,
                deleting,
                disrupting: deleting || !node.ready,
                blocked,
                drift,
                expired,
                since_pod_event: last_event.map(|t| now - t),
                disruption_cost,
            }
        })
        .collect()
}

/// Each node's NodeClaim (index into `claims`), by node name. A claim names its node in
/// `status.nodeName`; one not yet registered may share the node's name.
pub fn claims_by_node(claims: &[NodeClaim]) -> BTreeMap<&str, usize> {
    let mut claim_of = BTreeMap::new();
    for (c, claim) in claims.iter().enumerate() {
        if claim.node_name.is_none() {
            claim_of.entry(claim.name.as_str()).or_insert(c);
        }
    }
    for (c, claim) in claims.iter().enumerate() {
        if let Some(node) = &claim.node_name {
            claim_of.insert(node.as_str(), c);
        }
    }
    claim_of
}

/// Whether the node is already going (Karpenter's `MarkedForDeletion`): its Node or its
/// NodeClaim is being deleted, or a disruption has tainted it `karpenter.sh/disrupted`.
/// Its reschedulable pods need room elsewhere, and it is room for no pod.
pub fn is_leaving(node: &Node, claim: Option<&NodeClaim>) -> bool {
    node.deleting
        || claim.is_some_and(|c| c.deleting)
        || node.taints.iter().any(|t| t.key == labels::TAINT_DISRUPTED)
}

/// Evictions each PDB allows now, in `Snapshot::pdbs` order.
pub(crate) fn pdb_allowed(snapshot: &Snapshot, index: &PdbIndex) -> Vec<i32> {
    let mut selected = vec![0i32; snapshot.pdbs.len()];
    for pod in &snapshot.bound_pods {
        for i in index.matching(&snapshot.pdbs, pod) {
            selected[i] = selected[i].saturating_add(1);
        }
    }
    snapshot
        .pdbs
        .iter()
        .zip(selected)
        .map(|(pdb, n)| pdb.allowed(n))
        .collect()
}

/// PodDisruptionBudgets indexed so that a pod is tested only against those that could
/// select it: the ones of its namespace whose selector requires a label pair the pod
/// has, and the ones requiring none. Testing every PDB against every pod dominated a pass
/// over 2,000 nodes (562 PDBs × 22,035 pods).
#[derive(Clone, Debug, Default)]
pub(crate) struct PdbIndex {
    by_pair: BTreeMap<(String, String, String), Vec<usize>>,
    by_namespace: BTreeMap<String, Vec<usize>>,
}

impl PdbIndex {
    pub(crate) fn new(pdbs: &[Pdb]) -> PdbIndex {
        let mut index = PdbIndex::default();
        for (i, pdb) in pdbs.iter().enumerate() {
            match pdb.selector.required_pair() {
                Some((k, v)) => index
                    .by_pair
                    .entry((pdb.namespace.clone(), k.to_string(), v.to_string()))
                    .or_default()
                    .push(i),
                None => index
                    .by_namespace
                    .entry(pdb.namespace.clone())
                    .or_default()
                    .push(i),
            }
        }
        index
    }

    /// The PDBs (indices, ascending) that select the pod.
    pub(crate) fn matching(&self, pdbs: &[Pdb], pod: &Pod) -> Vec<usize> {
        let ns = &pod.key.namespace;
        let mut out: Vec<usize> = self
            .by_namespace
            .get(ns)
            .into_iter()
            .flatten()
            .copied()
            .collect();
        if !self.by_pair.is_empty() {
            for (k, v) in &pod.labels {
                if let Some(list) = self.by_pair.get(&(ns.clone(), k.clone(), v.clone())) {
                    out.extend(list);
                }
            }
        }
        out.retain(|&i| pdbs[i].selects(ns, &pod.labels));
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// The node's offering price: its zone and capacity type, else the cheapest offering of
/// its capacity type.
pub(crate) fn price_of(it: &InstanceType, zone: Option<&str>, capacity_type: &str) -> Option<f64> {
    let same_type = || {
        it.offerings
            .iter()
            .filter(|o| o.capacity_type == capacity_type)
    };
    same_type()
        .find(|o| Some(o.zone.as_str()) == zone)
        .or_else(|| same_type().min_by(|a, b| a.price.total_cmp(&b.price)))
        .map(|o| o.price)
}

/// Whether a drain would have the pod rescheduled elsewhere: not a DaemonSet pod (its
/// DaemonSet runs one on every node anyway), not a static pod (owned by its Node), and
/// not already terminating (evicted: the pod that replaces it is a pod of its own).
pub fn reschedulable(pod: &Pod) -> bool {
    !pod.is_daemon() && !pod.terminating && pod.owner.as_ref().is_none_or(|o| o.kind != "Node")
}

/// Karpenter's `EvictionCost`: 1, plus pod-deletion-cost / 2^27, plus priority / 2^25,
/// clamped to [-10, 10].
fn eviction_cost(pod: &Pod) -> f64 {
    let mut cost = 1.0;
    if let Some(c) = pod
        .annotations
        .get(ANNOTATION_POD_DELETION_COST)
        .and_then(|c| c.parse::<f64>().ok())
    {
        cost += c / 2f64.powi(27);
    }
    cost += f64::from(pod.priority) / 2f64.powi(25);
    cost.clamp(-10.0, 10.0)
}

/// What forbids graceful disruption of a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Blocker {
    /// The Node's `karpenter.sh/do-not-disrupt: "true"`.
    Node,
    /// The NodeClaim's.
    NodeClaim,
    /// A pod's active `do-not-disrupt`: `"true"` (no `duration`), or a duration from the
    /// pod's start that has not run out.
    Pod {
        pod: PodKey,
        duration: Option<String>,
    },
    /// A pod under more than one PDB (`namespace/name` each): the eviction API refuses it.
    SeveralPdbs { pod: PodKey, pdbs: Vec<String> },
    /// A pod under a PDB (`namespace/name`) that allows no eviction now.
    PdbAllowsNone { pdb: String, pod: PodKey },
}

impl Blocker {
    /// A `karpenter.sh/do-not-disrupt` annotation: the user's own choice, which
    /// Karpenter does not report as `DisruptionBlocked` (a PDB is reported).
    pub fn chosen(&self) -> bool {
        matches!(
            self,
            Blocker::Node | Blocker::NodeClaim | Blocker::Pod { .. }
        )
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Blocker::Node => "node has karpenter.sh/do-not-disrupt",
            Blocker::NodeClaim => "its NodeClaim has karpenter.sh/do-not-disrupt",
            Blocker::Pod { .. } => "pod has karpenter.sh/do-not-disrupt",
            Blocker::SeveralPdbs { .. } => "pod is selected by more than one PDB",
            Blocker::PdbAllowsNone { .. } => "PDB allows 0 disruptions",
        }
    }
}

impl std::fmt::Display for Blocker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Blocker::Node => write!(f, "node has {ANNOTATION_DO_NOT_DISRUPT}"),
            Blocker::NodeClaim => write!(f, "its NodeClaim has {ANNOTATION_DO_NOT_DISRUPT}"),
            Blocker::Pod {
                pod,
                duration: None,
            } => write!(f, "pod {pod} has {ANNOTATION_DO_NOT_DISRUPT}"),
            Blocker::Pod {
                pod,
                duration: Some(value),
            } => write!(
                f,
                "pod {pod} has {ANNOTATION_DO_NOT_DISRUPT}: {value:?}, not yet run out"
            ),
            Blocker::SeveralPdbs { pod, pdbs } => write!(
                f,
                "pod {pod} is selected by more than one PDB ({}); the eviction API refuses it",
                pdbs.join(", ")
            ),
            Blocker::PdbAllowsNone { pdb, pod } => {
                write!(f, "PDB {pdb} allows 0 disruptions (pod {pod})")
            }
        }
    }
}

/// Why no graceful method may disrupt the node, if something forbids it: the node's or
/// its NodeClaim's `karpenter.sh/do-not-disrupt: "true"`, a pod's active
/// `do-not-disrupt` (`Pod::do_not_disrupt_at`), a pod under two PDBs or under one that
/// allows no eviction. As in Karpenter, a node with more of one PDB's pods than it
/// allows at once is not blocked: its drain's evictions are paced by the eviction API.
/// What a group of nodes asks together is counted when groups form (`Pass::group`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn blocker(
    snapshot: &Snapshot,
    all_pods: &[Pod],
    node: &Node,
    claim: Option<&NodeClaim>,
    pods: &[usize],
    pdb_allowed: &[i32],
    pdb_index: &PdbIndex,
    now: i64,
) -> Option<Blocker> {
    // Karpenter reads the node's and the NodeClaim's annotation as a flag: only "true";
    // the duration form is a pod's.
    let annotated = |a: &kerf_model::Labels| {
        a.get(ANNOTATION_DO_NOT_DISRUPT)
            .is_some_and(|v| v == "true")
    };
    if annotated(&node.annotations) {
        return Some(Blocker::Node);
    }
    if claim.is_some_and(|c| annotated(&c.annotations)) {
        return Some(Blocker::NodeClaim);
    }
    for &p in pods {
        let pod = &all_pods[p];
        if pod.do_not_disrupt_at(now) {
            let value = &pod.annotations[ANNOTATION_DO_NOT_DISRUPT];
            return Some(Blocker::Pod {
                pod: pod.key.clone(),
                duration: (value != "true").then(|| value.clone()),
            });
        }
    }
    let name = |i: usize| format!("{}/{}", snapshot.pdbs[i].namespace, snapshot.pdbs[i].name);
    for &p in pods {
        let pod = &all_pods[p];
        let matching = pdb_index.matching(&snapshot.pdbs, pod);
        if matching.len() > 1 {
            return Some(Blocker::SeveralPdbs {
                pod: pod.key.clone(),
                pdbs: matching.into_iter().map(name).collect(),
            });
        }
        if let Some(&i) = matching.first()
            && pdb_allowed[i] == 0
        {
            return Some(Blocker::PdbAllowsNone {
                pdb: name(i),
                pod: pod.key.clone(),
            });
        }
    }
    None
}

/// Evictions a drain of these pods asks of each PDB (index into `Snapshot::pdbs`): the
/// reschedulable ones, each under the one PDB that selects it (a pod under two blocks
/// its node), in PDB order.
pub(crate) fn pdb_asks(
    snapshot: &Snapshot,
    all_pods: &[Pod],
    pods: &[usize],
    pdb_index: &PdbIndex,
) -> Vec<(usize, i32)> {
    let mut asks: BTreeMap<usize, i32> = BTreeMap::new();
    for &p in pods {
        if let [i] = pdb_index.matching(&snapshot.pdbs, &all_pods[p])[..] {
            *asks.entry(i).or_default() += 1;
        }
    }
    asks.into_iter().collect()
}

/// Karpenter's drift causes, in its order: the template hash, the requirements, then the
/// cloud's (the node class's images, the instance type).
fn drifted(
    snapshot: &Snapshot,
    node: &Node,
    claim: Option<&NodeClaim>,
    pool: &NodePool,
    instance_type: Option<&str>,
    type_exists: bool,
) -> Option<Drift> {
    let annotations = claim.map_or(&node.annotations, |c| &c.annotations);
    let version = annotations.get(labels::ANNOTATION_NODEPOOL_HASH_VERSION);
    if version.map(String::as_str) == Some(labels::NODEPOOL_HASH_VERSION)
        && let Some(hash) = annotations.get(labels::ANNOTATION_NODEPOOL_HASH)
        && *hash != pool.template_hash
    {
        let detail = format!(
            "NodePool {}'s template changed (hash {hash}, now {})",
            pool.name, pool.template_hash
        );
        return Some(Drift::new(DriftReason::NodePoolDrifted, detail));
    }
    for (key, requirement) in pool.requirements.iter() {
        let value = node.labels.get(key).map(String::as_str);
        if value.is_none() && labels::is_instance_defined(key) {
            continue;
        }
        if !requirement.admits(value) {
            let detail = match value {
                Some(v) => format!(
                    "label {key}={v} no longer satisfies NodePool {}'s requirement {key} {requirement}",
                    pool.name
                ),
                None => format!(
                    "it lacks label {key}, which NodePool {} now requires ({key} {requirement})",
                    pool.name
                ),
            };
            return Some(Drift::new(DriftReason::RequirementsDrifted, detail));
        }
    }
    if let Some(class) = &pool.node_class
        && class.kind == "EC2NodeClass"
        && let Some(claim) = claim
        && let Some(why) = class_hash_drift(snapshot, &class.name, claim)
    {
        return Some(why);
    }
    if let Some(class) = &pool.node_class
        && class.kind == "EC2NodeClass"
        && let Some(images) = snapshot.node_class_images.get(&class.name)
        && let Some(image) = claim.and_then(|c| c.image_id.as_deref())
        && !images.iter().any(|i| i == image)
    {
        let detail = format!(
            "image {image} is no longer among EC2NodeClass {}'s AMIs ({})",
            class.name,
            images.join(", ")
        );
        return Some(Drift::new(DriftReason::AmiDrift, detail));
    }
    if let Some(why) = claim.and_then(|c| snapshot.cloud_drift.get(&c.name)) {
        return Some(why.clone());
    }
    if let Some(t) = instance_type
        && !type_exists
    {
        let detail = format!("instance type {t} no longer exists");
        return Some(Drift::new(DriftReason::InstanceTypeNotFound, detail));
    }
    None
}

/// Karpenter's `areStaticFieldsDrifted`: the class's hash differs from the claim's,
/// both present under the same hash version.
fn class_hash_drift(snapshot: &Snapshot, class: &str, claim: &NodeClaim) -> Option<Drift> {
    let class_annotations = snapshot.node_class_annotations.get(class)?;
    let of = |a: &'_ Labels| {
        Some((
            a.get(labels::ANNOTATION_EC2NODECLASS_HASH)?.clone(),
            a.get(labels::ANNOTATION_EC2NODECLASS_HASH_VERSION)?.clone(),
        ))
    };
    let (now, version) = of(class_annotations)?;
    let (then, claim_version) = of(&claim.annotations)?;
    (version == claim_version && now != then).then(|| {
        let detail =
            format!("EC2NodeClass {class}'s static fields changed (hash {then}, now {now})");
        Drift::new(DriftReason::NodeClassDrift, detail)
    })
}

#[cfg(test)]
mod tests {
    use kerf_model::{LabelSelector, Labels, Pdb, Pod, Requirement, Resources};

    use super::PdbIndex;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn pdb(ns: &str, name: &str, selector: LabelSelector) -> Pdb {
        Pdb {
            namespace: ns.into(),
            name: name.into(),
            selector,
            min_available: None,
            max_unavailable: None,
            disruptions_allowed: None,
        }
    }

    #[test]
    fn the_index_finds_exactly_the_pdbs_a_brute_force_scan_finds() {
        let mut exists = LabelSelector::everything();
        exists.add(
            "tier",
            Requirement::new(kerf_model::Operator::Exists, Vec::<String>::new()).unwrap(),
        );
        let pdbs = vec![
            pdb(
                "a",
                "web",
                LabelSelector::from_match_labels(&labels(&[("app", "web")])),
            ),
            pdb(
                "a",
                "web-canary",
                LabelSelector::from_match_labels(&labels(&[("app", "web"), ("track", "canary")])),
            ),
            pdb("a", "everything", LabelSelector::everything()),
            pdb("a", "tiered", exists),
            pdb(
                "b",
                "web",
                LabelSelector::from_match_labels(&labels(&[("app", "web")])),
            ),
        ];
        let index = PdbIndex::new(&pdbs);
        for (ns, l) in [
            ("a", labels(&[("app", "web")])),
            (
                "a",
                labels(&[("app", "web"), ("track", "canary"), ("tier", "1")]),
            ),
            ("a", labels(&[("app", "db")])),
            ("b", labels(&[("app", "web")])),
            ("c", labels(&[("app", "web")])),
        ] {
            let mut pod = Pod::new(ns, "p", Resources::new());
            pod.labels = l;
            let brute: Vec<usize> = (0..pdbs.len())
                .filter(|&i| pdbs[i].selects(ns, &pod.labels))
                .collect();
            assert_eq!(index.matching(&pdbs, &pod), brute, "{ns} {:?}", pod.labels);
        }
    }
}
