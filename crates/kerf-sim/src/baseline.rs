//! The node-group baseline: a model of Cluster Autoscaler on AWS with Auto Scaling
//! groups, run by the same engine over the same cluster, cloud and report as kerf, so
//! `kerf simulate --baseline node-groups` compares the two on one scenario.
//!
//! **Node groups.** Cluster Autoscaler knows no NodePools; operators give it ASGs of
//! one instance type each. The model derives them from the scenario's NodePools: one
//! group per (NodePool, instance type the pool's requirements allow), at one capacity
//! type (spot if the pool allows it, else on-demand: the same pricing kerf may use, so
//! the comparison measures the autoscalers' decisions, not the price list), spanning the
//! zones the pool allows.
//! A group's node carries the NodePool's template labels and taints plus the well-known
//! labels (`karpenter.sh/nodepool` included), so pods' selectors and tolerations work as
//! they do under kerf. A pool whose `consolidateAfter` is `Never` is taken to be an ASG
//! whose nodes carry `cluster-autoscaler.kubernetes.io/scale-down-disabled`.
//!
//! **Scale-up**, every `scan_interval` (10 s, CA's `--scan-interval`): the pending pods
//! that no ready node and no upcoming node (launched, not yet initialized) can take —
//! decided by `kerf_scheduling::solve` with no NodePools, the same constraints the
//! kube-scheduler model honours — are grouped by owner (equivalence classes). Each group
//! not backed off estimates how many new nodes they need by first-fit-decreasing onto
//! its template node (allocatable less the DaemonSets that would run there; node
//! affinity, taints, and hostname anti-affinity between pods of one class honoured;
//! zone spread and pod affinity not), capped by the NodePool's `limits`. The
//! `least-waste` expander picks one group — least unused CPU fraction of the new nodes,
//! then memory, then the cheaper scale-up, then the group name — and it grows by its
//! estimate. New nodes go zone-balanced: each to the allowed zone where the group has
//! fewest nodes, the other zones after it as fallbacks on insufficient capacity. A
//! group whose node fails to launch or to register within 15 minutes
//! (`max-node-provision-time`) is backed off for 5 minutes.
//!
//! **Scale-down**: a node is unneeded when its non-DaemonSet pods request less than half
//! its allocatable CPU and memory (the larger of the two utilizations below 0.5), none
//! of them is protected (`karpenter.sh/do-not-disrupt: "true"`,
//! `cluster-autoscaler.kubernetes.io/safe-to-evict: "false"`, no controller, a
//! non-DaemonSet `kube-system` pod, more of a PDB's pods than it allows to go), and they
//! all fit on the other ready nodes (`solve` again, earlier candidates' pods already
//! moved). A node unneeded for 10 minutes (`scale-down-unneeded-time`), with no
//! scale-up in the last 10 minutes (`scale-down-delay-after-add`), is removed, one at a
//! time, empty nodes first: tainted `ToBeDeletedByClusterAutoscaler:NoSchedule`, its pods
//! evicted through the PDB-respecting eviction API (retried every 5 s; after 2 minutes,
//! or if a protected pod appears, the drain is given up and the taint removed), then its
//! NodeClaim deleted with reason `scale-down` or `scale-down-empty`.
//!
//! **Mechanics are kerf's.** Each node is a NodeClaim (the ASG's instance record), so
//! launching, adopting after a restart, registering, initializing, the registration
//! timeout, garbage collection, spot interruptions and scheduled maintenance, and
//! terminating a deleted claim are kerf's own lifecycle and termination loops: a
//! `kerf_controllers::Controller` stepped over the slice of the view that is in motion
//! (claims not yet initialized or deleting, orphans, and what events name), with no
//! NodePools and no pending pods in that slice so its provisioner and disruption pass
//! have nothing to act on. Only the decisions — when, which group, how many, which node
//! to remove — are the baseline's.
//!
//! **Restarts** drop everything here; what matters is rebuilt from the view: the last
//! scale-up is the newest claim's creation time, an interrupted drain is untainted (as
//! CA does at startup), unneeded timers and back-offs start afresh (as they do in CA).

use std::collections::{BTreeMap, BTreeSet};

use kerf_cloud::{InstanceState, Offer};
use kerf_controllers::{
    Action, Claim, ClusterView, Controller, DeletionReason, Event, Reason, Subject,
};
use kerf_model::pod::PodKey;
use kerf_model::taints::first_untolerated;
use kerf_model::{Effect, Labels, Node, NodePool, Pod, Quantity, Resources, Taint, labels};

/// The baseline's name: what `--baseline` takes and its reports' `autoscaler`.
pub const NODE_GROUPS: &str = "node-groups";

/// The taint Cluster Autoscaler puts on a node it is removing.
pub const TAINT_TO_BE_DELETED: &str = "ToBeDeletedByClusterAutoscaler";
/// `"false"` keeps a pod's node from being scaled down.
pub const ANNOTATION_SAFE_TO_EVICT: &str = "cluster-autoscaler.kubernetes.io/safe-to-evict";
/// `"true"` on a node keeps it from being scaled down.
pub const ANNOTATION_SCALE_DOWN_DISABLED: &str =
    "cluster-autoscaler.kubernetes.io/scale-down-disabled";
/// The claim annotation naming the node group a node belongs to.
pub const ANNOTATION_NODE_GROUP: &str = "sim.kerf.sh/node-group";

/// Cluster Autoscaler's timings and thresholds, with its defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// `--scan-interval`.
    pub scan_interval_ms: i64,
    /// `--scale-down-unneeded-time`.
    pub scale_down_unneeded_ms: i64,
    /// `--scale-down-delay-after-add`.
    pub scale_down_delay_after_add_ms: i64,
    /// `--scale-down-utilization-threshold`.
    pub scale_down_utilization_threshold: f64,
    /// How long a group that failed to provide a node is not scaled up.
    pub backoff_ms: i64,
    /// `--max-node-provision-time`: a node not registered by then is removed.
    pub max_node_provision_ms: i64,
    /// How long a drain keeps retrying evictions before it is given up.
    pub max_pod_eviction_ms: i64,
    /// How often refused evictions are retried.
    pub eviction_retry_ms: i64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            scan_interval_ms: 10_000,
            scale_down_unneeded_ms: 600_000,
            scale_down_delay_after_add_ms: 600_000,
            scale_down_utilization_threshold: 0.5,
            backoff_ms: 300_000,
            max_node_provision_ms: 900_000,
            max_pod_eviction_ms: 120_000,
            eviction_retry_ms: 5_000,
        }
    }
}

/// The Cluster Autoscaler-style autoscaler, named `node-groups`.
pub struct NodeGroups {
    config: Config,
    state: State,
}

/// Everything the model remembers; all of it may be lost (see the module docs).
struct State {
    /// kerf's loops, for the mechanics of launching and terminating.
    mechanics: Controller,
    started: bool,
    last_scan: Option<i64>,
    /// Groups not to scale up until then.
    backoff: BTreeMap<String, i64>,
    /// Nodes found unneeded, since when.
    unneeded_since: BTreeMap<String, i64>,
    drain: Option<Drain>,
    /// Groups, derived from the NodePools they were derived from.
    groups: Option<(Vec<NodePool>, Vec<Group>)>,
}

/// The node being scaled down.
#[derive(Debug)]
struct Drain {
    node: String,
    claim: String,
    started: i64,
    empty: bool,
    last_evicted: Option<i64>,
    deleted: bool,
}

/// One ASG: a NodePool's instance type at one capacity type, across the pool's zones.
#[derive(Clone, Debug)]
struct Group {
    /// `<nodepool>/<instance-type>/<capacity-type>`.
    name: String,
    pool: String,
    instance_type: String,
    capacity_type: String,
    /// Allowed zones the type is offered in, sorted.
    zones: Vec<String>,
    /// The cheapest offering's price, dollars per hour.
    price: f64,
    /// The node's labels, zone aside.
    labels: Labels,
    taints: Vec<Taint>,
    startup_taints: Vec<Taint>,
    allocatable: Resources,
    capacity: Resources,
    termination_grace_period: Option<std::time::Duration>,
    scale_down_disabled: bool,
}

/// What one group would do for the pods that wait.
struct Estimate {
    group: usize,
    nodes: usize,
    pods: usize,
    cpu_waste: f64,
    memory_waste: f64,
    /// The waiting pods it would take, by index.
    placed: Vec<usize>,
}

impl NodeGroups {
    pub fn new(config: Config) -> NodeGroups {
        NodeGroups {
            config,
            state: State::new(),
        }
    }

    /// The model with Cluster Autoscaler's defaults; the scenario's controller settings
    /// are kerf's and do not apply.
    pub fn for_scenario(_scenario: &crate::Scenario) -> NodeGroups {
        NodeGroups::new(Config::default())
    }
}

impl State {
    fn new() -> State {
        // Kerf's loops, with CA's provisioning timeout. Nothing else in its config
        // matters: the slice of the view it sees has no NodePools and no pending pods.
        let config = kerf_controllers::Config {
            registration_timeout_ms: Config::default().max_node_provision_ms,
            ..kerf_controllers::Config::default()
        };
        State {
            mechanics: Controller::new(config),
            started: false,
            last_scan: None,
            backoff: BTreeMap::new(),
            unneeded_since: BTreeMap::new(),
            drain: None,
            groups: None,
        }
    }
}

impl crate::Autoscaler for NodeGroups {
    fn name(&self) -> &str {
        NODE_GROUPS
    }

    fn step(&mut self, now: i64, view: &ClusterView, events: &[Event]) -> Vec<Action> {
        let mut out = Vec::new();
        if !self.state.started {
            self.state.started = true;
            untaint_after_restart(view, &mut out);
        }
        self.mechanics(now, view, events, &mut out);
        let due = self
            .state
            .last_scan
            .is_none_or(|at| now - at >= self.config.scan_interval_ms);
        if due {
            self.state.last_scan = Some(now);
            self.refresh_groups(view);
            let scaled_up = self.scale_up(now, view, &mut out);
            self.update_unneeded(now, view);
            if !scaled_up {
                self.start_scale_down(now, view, &mut out);
            }
        }
        self.drain(now, view, &mut out);
        out
    }

    fn restart(&mut self) {
        self.state = State::new();
    }
}

// ---- Mechanics: kerf's lifecycle and termination loops ------------------------------

impl NodeGroups {
    /// Step kerf's loops over the part of the view in motion, if any, and keep the
    /// actions that launch, register, initialize and terminate.
    fn mechanics(&mut self, now: i64, view: &ClusterView, events: &[Event], out: &mut Vec<Action>) {
        let events: Vec<Event> = events
            .iter()
            .filter(|e| !matches!(e, Event::PodPending(_) | Event::EvictionRefused { .. }))
            .cloned()
            .collect();
        let Some(slice) = in_motion(view, &events) else {
            return;
        };
        for action in self.state.mechanics.step(now, &slice, &events) {
            match action {
                // The slice has neither NodePools nor pending pods, so these never come;
                // should they, the decisions are not kerf's to make here.
                Action::CreateClaim(_) | Action::Nominate { .. } => {}
                Action::Record {
                    reason: Reason::FailedScheduling,
                    ..
                } => {}
                Action::Launch {
                    claim,
                    options,
                    image_id: _,
                } => {
                    let image_id = view
                        .claims
                        .get(&claim)
                        .map(|c| view.image_for(&c.nodepool))
                        .unwrap_or_else(|| "ami-default".into());
                    out.push(Action::Launch {
                        claim,
                        options,
                        image_id,
                    });
                }
                Action::DeleteClaim { claim, reason } => {
                    let failed = reason.is_launch_failure();
                    if let Some(c) = view.claims.get(&claim)
                        && failed
                        && let Some(group) = group_of(c)
                    {
                        let claim_pool = c.nodepool.clone();
                        self.state
                            .backoff
                            .insert(group.to_string(), now + self.config.backoff_ms);
                        out.push(Action::Record {
                            reason: Reason::ScaleUpFailed,
                            about: Subject::NodePool(claim_pool.clone()),
                            message: format!(
                                "node group {group}: {reason}; backed off for {}s",
                                self.config.backoff_ms / 1000
                            ),
                        });
                    }
                    out.push(Action::DeleteClaim { claim, reason });
                }
                other => out.push(other),
            }
        }
    }
}

/// The slice of the view kerf's loops need to see, or `None` when nothing is in motion:
/// every claim not yet initialized, deleting, or without a running instance, and those
/// events name; instances no claim owns; and the nodes and pods of all of these.
fn in_motion(view: &ClusterView, events: &[Event]) -> Option<ClusterView> {
    let mut claims: BTreeSet<&str> = view
        .claims
        .values()
        .filter(|c| {
            !c.initialized
                || c.deleting_since.is_some()
                || c.provider_id
                    .as_deref()
                    .and_then(|id| view.instances.get(id))
                    .is_none_or(|i| i.state != InstanceState::Running)
        })
        .map(|c| c.name.as_str())
        .collect();
    for event in events {
        match event {
            Event::InsufficientCapacity { claim, .. } | Event::LaunchFailed { claim, .. } => {
                if let Some(c) = view.claims.get(claim) {
                    claims.insert(c.name.as_str());
                }
            }
            Event::SpotInterruption { instance_id }
            | Event::ScheduledMaintenance { instance_id }
            | Event::RebalanceRecommendation { instance_id } => {
                if let Some(c) = view
                    .instances
                    .get(instance_id)
                    .and_then(|i| view.claims.get(&i.claim))
                {
                    claims.insert(c.name.as_str());
                }
            }
            Event::PodPending(_) | Event::EvictionRefused { .. } => {}
        }
    }
    let orphan = |claim: &str| !view.claims.contains_key(claim);
    let instances: BTreeMap<String, kerf_cloud::Instance> = view
        .instances
        .values()
        .filter(|i| claims.contains(i.claim.as_str()) || orphan(&i.claim))
        .map(|i| (i.id.clone(), i.clone()))
        .collect();
    let claimed_nodes: BTreeSet<&str> = claims
        .iter()
        .filter_map(|c| view.claims[*c].node_name.as_deref())
        .collect();
    let node_names: BTreeSet<&str> = view
        .nodes
        .keys()
        .filter(|n| {
            let by_name = claimed_nodes.contains(n.as_str());
            let by_instance = view.node_provider_ids.get(n.as_str()).is_some_and(|id| {
                match view.instances.get(id) {
                    Some(i) => claims.contains(i.claim.as_str()) || orphan(&i.claim),
                    None => true,
                }
            });
            by_name || by_instance
        })
        .map(String::as_str)
        .collect();
    if claims.is_empty() && instances.is_empty() && node_names.is_empty() && events.is_empty() {
        return None;
    }
    let mut slice = ClusterView {
        generation: view.generation,
        claims: claims
            .iter()
            .map(|c| (c.to_string(), view.claims[*c].clone()))
            .collect(),
        instances,
        ..ClusterView::default()
    };
    for name in node_names {
        slice
            .nodes
            .insert(name.to_string(), view.nodes[name].clone());
        if let Some(id) = view.node_provider_ids.get(name) {
            slice.node_provider_ids.insert(name.to_string(), id.clone());
        }
        let draining = view
            .claim_of_node(name)
            .is_some_and(|c| c.deleting_since.is_some());
        if draining {
            for p in view.pods_on(name) {
                slice.insert_pod(p.clone());
            }
        }
    }
    // `insert_pod` bumped it; the slice changes when the view does.
    slice.generation = view.generation;
    Some(slice)
}

/// CA removes its taint from every node at startup: a drain a restart interrupted is
/// given up.
fn untaint_after_restart(view: &ClusterView, out: &mut Vec<Action>) {
    for node in view.nodes.values() {
        let tainted = node.taints.iter().any(|t| t.key == TAINT_TO_BE_DELETED);
        let deleting = view
            .claim_of_node(&node.name)
            .is_some_and(|c| c.deleting_since.is_some());
        if tainted && !deleting {
            out.push(Action::Untaint {
                node: node.name.clone(),
                key: TAINT_TO_BE_DELETED.into(),
            });
        }
    }
}

fn group_of(claim: &Claim) -> Option<&str> {
    claim
        .annotations
        .get(ANNOTATION_NODE_GROUP)
        .map(String::as_str)
}

// ---- Node groups --------------------------------------------------------------------

impl NodeGroups {
    /// Re-derive the groups when the NodePools changed.
    fn refresh_groups(&mut self, view: &ClusterView) {
        if self
            .state
            .groups
            .as_ref()
            .is_some_and(|(pools, _)| *pools == view.nodepools)
        {
            return;
        }
        let groups = view
            .nodepools
            .iter()
            .flat_map(|pool| groups_of(pool, view))
            .collect();
        self.state.groups = Some((view.nodepools.clone(), groups));
    }

    fn groups(&self) -> &[Group] {
        self.state
            .groups
            .as_ref()
            .map_or(&[], |(_, g)| g.as_slice())
    }
}

/// A NodePool's node groups: one per instance type its requirements allow, spot if it
/// allows spot, else on-demand.
fn groups_of(pool: &NodePool, view: &ClusterView) -> Vec<Group> {
    let reqs = pool.template_requirements();
    let allowed = |key: &str, value: &str| reqs.get(key).is_none_or(|r| r.has(value));
    let capacity_type = [labels::CAPACITY_TYPE_SPOT, labels::CAPACITY_TYPE_ON_DEMAND]
        .into_iter()
        .find(|ct| allowed(labels::CAPACITY_TYPE, ct));
    let Some(capacity_type) = capacity_type else {
        return Vec::new();
    };
    let mut groups = Vec::new();
    for it in &view.instance_types {
        // As kerf's catalog: keys the type does not define are the pool's to set.
        if it.requirements().conflict_with(&reqs, |_| true).is_some() {
            continue;
        }
        let offerings: Vec<_> = it
            .offerings
            .iter()
            .filter(|o| o.capacity_type == capacity_type && allowed(labels::ZONE, &o.zone))
            .collect();
        let zones: BTreeSet<String> = offerings.iter().map(|o| o.zone.clone()).collect();
        let Some(price) = offerings.iter().map(|o| o.price).min_by(f64::total_cmp) else {
            continue;
        };
        let mut node_labels = reqs.single_valued_labels();
        node_labels.extend(pool.labels.clone());
        node_labels.extend(it.labels.clone());
        node_labels.insert(labels::NODEPOOL.into(), pool.name.clone());
        node_labels.insert(labels::CAPACITY_TYPE.into(), capacity_type.into());
        node_labels.remove(labels::ZONE);
        groups.push(Group {
            name: format!("{}/{}/{}", pool.name, it.name, capacity_type),
            pool: pool.name.clone(),
            instance_type: it.name.clone(),
            capacity_type: capacity_type.into(),
            zones: zones.into_iter().collect(),
            price,
            labels: node_labels,
            taints: pool.taints.clone(),
            startup_taints: pool.startup_taints.clone(),
            allocatable: it.allocatable(),
            capacity: it.capacity.clone(),
            termination_grace_period: pool.termination_grace_period,
            scale_down_disabled: pool.disruption.consolidate_after.is_none(),
        });
    }
    groups
}

// ---- Scale-up -----------------------------------------------------------------------

impl NodeGroups {
    /// Whether a group was scaled up.
    fn scale_up(&mut self, now: i64, view: &ClusterView, out: &mut Vec<Action>) -> bool {
        if view.pending.is_empty() || self.groups().is_empty() {
            return false;
        }
        let waiting = unhelped(view);
        if waiting.is_empty() {
            return false;
        }
        self.state.backoff.retain(|_, until| *until > now);
        let mut best: Option<Estimate> = None;
        for (i, group) in self.groups().iter().enumerate() {
            if self.state.backoff.contains_key(&group.name) {
                continue;
            }
            let Some(estimate) = estimate(i, group, &waiting, view) else {
                continue;
            };
            let better = best.as_ref().is_none_or(|b| {
                let key = |e: &Estimate| {
                    let g = &self.groups()[e.group];
                    (e.cpu_waste, e.memory_waste, g.price * e.nodes as f64)
                };
                let (a, b_) = (key(&estimate), key(b));
                a.0.total_cmp(&b_.0)
                    .then(a.1.total_cmp(&b_.1))
                    .then(a.2.total_cmp(&b_.2))
                    .is_lt()
            });
            if better {
                best = Some(estimate);
            }
        }
        let Some(best) = best else {
            return false;
        };
        let group = self.groups()[best.group].clone();
        let pods: Vec<&Pod> = best.placed.iter().map(|&i| &waiting[i]).collect();
        let zones = zones_for(&group, best.nodes, &pods, view);
        let n_nodes: usize = zones.iter().map(|(_, n)| n).sum();
        out.push(Action::Record {
            reason: Reason::TriggeredScaleUp,
            about: Subject::NodePool(group.pool.clone()),
            message: format!(
                "node group {}: +{n_nodes} node(s) for {} pod(s) (least-waste: {:.1}% CPU, {:.1}% memory unused)",
                group.name,
                best.pods,
                100.0 * best.cpu_waste,
                100.0 * best.memory_waste
            ),
        });
        let prefix = group.name.replace(['/', '.'], "-");
        let mut n = 0;
        for (zone, count) in &zones {
            // On insufficient capacity the cloud tries the group's other zones, least
            // populated first.
            let mut options = vec![zone.clone()];
            options.extend(group.zones.iter().filter(|z| *z != zone).cloned());
            let options: std::sync::Arc<[Offer]> = options
                .into_iter()
                .map(|zone| Offer {
                    instance_type: group.instance_type.clone(),
                    zone,
                    capacity_type: group.capacity_type.clone(),
                })
                .collect();
            for _ in 0..*count {
                n += 1;
                let mut annotations = Labels::new();
                annotations.insert(ANNOTATION_NODE_GROUP.into(), group.name.clone());
                out.push(Action::CreateClaim(Box::new(Claim {
                    name: format!("{prefix}-{}-{n}", now / 1000),
                    nodepool: group.pool.clone(),
                    labels: group.labels.clone(),
                    annotations,
                    taints: group.taints.clone(),
                    startup_taints: group.startup_taints.clone(),
                    options: options.clone(),
                    created_at: now,
                    // ASG instances have no maximum lifetime here.
                    expire_after: None,
                    termination_grace_period: group.termination_grace_period,
                    provider_id: None,
                    launched: None,
                    image_id: None,
                    node_name: None,
                    initialized: false,
                    deleting_since: None,
                    deletion_reason: None,
                    drifted: None,
                    consolidatable: None,
                })));
            }
        }
        true
    }
}

/// Where `n_nodes` new nodes of `group` should go for `pods`, as (zone, count): as
/// `--balance-similar-node-groups` over one ASG per zone would place them. The pods are
/// placed by `solve` onto template nodes of the group in every zone, the least
/// populated zones' templates first, beside the ready and upcoming nodes, so zone
/// constraints (node affinity, topology spread) pick the zone where they must, and
/// balance picks it where they need not.
fn zones_for(
    group: &Group,
    n_nodes: usize,
    pods: &[&Pod],
    view: &ClusterView,
) -> Vec<(String, usize)> {
    let mut per_zone: BTreeMap<&str, usize> = group.zones.iter().map(|z| (z.as_str(), 0)).collect();
    for claim in view.claims.values() {
        if group_of(claim) == Some(group.name.as_str())
            && claim.deleting_since.is_none()
            && let Some(offer) = claim.launched.as_ref().or(claim.options.first())
            && let Some(n) = per_zone.get_mut(offer.zone.as_str())
        {
            *n += 1;
        }
    }
    let mut order: Vec<(usize, &str)> = per_zone.iter().map(|(z, n)| (*n, *z)).collect();
    order.sort();
    let (mut nodes, mut bound) = capacity(view);
    let mut templates = Vec::new();
    for slot in 0..n_nodes {
        for (_, zone) in &order {
            let name = format!("template-{slot}-{zone}");
            let mut node_labels = group.labels.clone();
            node_labels.insert(labels::ZONE.into(), zone.to_string());
            let mut node = Node::new(&name, node_labels, group.allocatable.clone());
            node.taints = group.taints.clone();
            bound.extend(view.daemon_pods_on(&node));
            templates.push((name, zone.to_string()));
            nodes.push(node);
        }
    }
    let pods = pods.iter().map(|p| (*p).clone()).collect();
    let plan = crate::scheduler::onto_nodes(pods, bound, nodes, view);
    let mut out: BTreeMap<String, usize> = BTreeMap::new();
    for e in &plan.existing {
        if let Some((_, zone)) = templates.iter().find(|(t, _)| *t == e.node) {
            *out.entry(zone.clone()).or_default() += 1;
        }
    }
    if out.is_empty() {
        // Nothing placed with every constraint: balance alone decides, as an ASG would.
        for i in 0..n_nodes {
            *out.entry(order[i % order.len()].1.to_string()).or_default() += 1;
        }
    }
    // Least populated zones first, so launches read in the order balance prefers.
    let mut out: Vec<(String, usize)> = out.into_iter().collect();
    out.sort_by_key(|(z, _)| order.iter().position(|(_, o)| o == z));
    out
}

/// The nodes pods can be placed on now or soon, and the pods bound to them: ready,
/// usable nodes, and the nodes claims in flight will become (with their DaemonSet pods).
fn capacity(view: &ClusterView) -> (Vec<Node>, Vec<Pod>) {
    let mut nodes = Vec::new();
    let mut bound = Vec::new();
    for node in view.nodes.values() {
        let claim = view.claim_of_node(&node.name);
        if claim.is_some_and(|c| !c.initialized || c.deleting_since.is_some()) || !usable(node) {
            continue;
        }
        nodes.push(node.clone());
        bound.extend(view.pods_on(&node.name).map(|p| p.pod.clone()));
    }
    for claim in view.claims.values() {
        if claim.initialized || claim.deleting_since.is_some() {
            continue;
        }
        if let Some(node) = claim.future_node(&view.instance_types) {
            bound.extend(view.daemon_pods_on(&node));
            nodes.push(node);
        }
    }
    (nodes, bound)
}

/// Pending pods that no ready node and no upcoming node can take.
fn unhelped(view: &ClusterView) -> Vec<Pod> {
    let (nodes, bound) = capacity(view);
    let pods: Vec<Pod> = view
        .pending
        .iter()
        .map(|k| view.pods[k].pod.clone())
        .collect();
    if nodes.is_empty() {
        return pods;
    }
    let plan = crate::scheduler::onto_nodes(pods.clone(), bound, nodes, view);
    let left: BTreeSet<&PodKey> = plan.unschedulable.iter().map(|u| &u.pod).collect();
    pods.into_iter().filter(|p| left.contains(&p.key)).collect()
}

/// A ready node pods may be placed on.
fn usable(node: &Node) -> bool {
    node.ready
        && !node.unschedulable
        && !node.deleting
        && !node
            .taints
            .iter()
            .any(|t| t.key == TAINT_TO_BE_DELETED || t.key == labels::TAINT_DISRUPTED)
}

/// How many new nodes `group` needs for the waiting pods it can take: first fit, largest
/// pods first, onto its template node. `None` if it takes none.
fn estimate(index: usize, group: &Group, waiting: &[Pod], view: &ClusterView) -> Option<Estimate> {
    let room_left = room_for_nodes(group, view);
    if room_left == 0 {
        return None;
    }
    // The template node in each zone: pods may select on the zone.
    let zone_labels: Vec<Labels> = group
        .zones
        .iter()
        .map(|z| {
            let mut l = group.labels.clone();
            l.insert(labels::ZONE.into(), z.clone());
            l.insert(labels::HOSTNAME.into(), format!("template-{}", group.name));
            l
        })
        .collect();
    let first = zone_labels.first()?;
    let mut free = group.allocatable.clone();
    for ds in &view.daemonsets {
        if ds.daemon_runs_on(first, &group.taints) {
            free.sub(&ds.requests);
        }
    }
    // Pods by owner (an equivalence class), each class judged once: whether it fits
    // the template node in some zone of the group.
    let mut class_fits: BTreeMap<String, bool> = BTreeMap::new();
    let mut fits: Vec<usize> = Vec::new();
    for (i, pod) in waiting.iter().enumerate() {
        let fit = *class_fits
            .entry(crate::cluster::workload_key(pod))
            .or_insert_with(|| {
                let tolerated = first_untolerated(&group.taints, &pod.tolerations).is_none();
                tolerated
                    && free.fits(&pod.requests)
                    && zone_labels.iter().any(|l| {
                        pod.node_affinity.matches_labels(l) && pod.volume_zone_conflict(l).is_none()
                    })
            });
        if fit {
            fits.push(i);
        }
    }
    if fits.is_empty() {
        return None;
    }
    let cpu = |r: &Resources| r.get("cpu").0;
    let memory = |r: &Resources| r.get("memory").0;
    fits.sort_by_key(|&i| {
        let r = &waiting[i].requests;
        (std::cmp::Reverse(cpu(r)), std::cmp::Reverse(memory(r)), i)
    });
    struct Bin {
        free: Resources,
        one_per_node: BTreeSet<String>,
    }
    let mut bins: Vec<Bin> = Vec::new();
    let mut placed = Vec::new();
    let mut requested = Resources::new();
    for &i in &fits {
        let pod = &waiting[i];
        // Required anti-affinity on the hostname against its own kind: one per node.
        let exclusive = pod
            .anti_affinity
            .iter()
            .any(|t| t.topology_key == labels::HOSTNAME && t.selector.matches(&pod.labels))
            .then(|| crate::cluster::workload_key(pod));
        let slot = bins.iter().position(|b| {
            b.free.fits(&pod.requests)
                && exclusive
                    .as_ref()
                    .is_none_or(|c| !b.one_per_node.contains(c))
        });
        let bin = match slot {
            Some(b) => b,
            None if bins.len() < room_left => {
                bins.push(Bin {
                    free: free.clone(),
                    one_per_node: BTreeSet::new(),
                });
                bins.len() - 1
            }
            None => continue,
        };
        bins[bin].free.sub(&pod.requests);
        if let Some(c) = exclusive {
            bins[bin].one_per_node.insert(c);
        }
        requested.add(&pod.requests);
        placed.push(i);
    }
    if bins.is_empty() {
        return None;
    }
    let n = bins.len() as f64;
    let unused = |req: i64, per_node: i64| {
        if per_node <= 0 {
            0.0
        } else {
            1.0 - req as f64 / (per_node as f64 * n)
        }
    };
    Some(Estimate {
        group: index,
        nodes: bins.len(),
        pods: placed.len(),
        cpu_waste: unused(cpu(&requested), cpu(&group.allocatable)),
        memory_waste: unused(memory(&requested), memory(&group.allocatable)),
        placed,
    })
}

/// How many more nodes of the group its NodePool's `limits` allow (`usize::MAX` if
/// unlimited). Every claim of the pool counts, in flight or not, as Karpenter counts it.
fn room_for_nodes(group: &Group, view: &ClusterView) -> usize {
    let Some(pool) = view.nodepool(&group.pool) else {
        return 0;
    };
    if pool.limits.is_empty() {
        return usize::MAX;
    }
    let mut used = Resources::new();
    for claim in view.claims.values().filter(|c| c.nodepool == group.pool) {
        let Some(offer) = claim.launched.as_ref().or(claim.options.first()) else {
            continue;
        };
        if let Some(it) = view
            .instance_types
            .iter()
            .find(|t| t.name == offer.instance_type)
        {
            used.add(&it.capacity);
        }
        used.set("nodes", used.get("nodes") + Quantity(1000));
    }
    let mut room = usize::MAX;
    for (name, limit) in pool.limits.iter() {
        let per_node = if name == "nodes" {
            1000
        } else {
            group.capacity.get(name).0
        };
        if per_node <= 0 {
            continue;
        }
        let left = (limit.0 - used.get(name).0).max(0);
        room = room.min((left / per_node) as usize);
    }
    room
}

// ---- Scale-down ---------------------------------------------------------------------

impl NodeGroups {
    /// Find the unneeded nodes now, keeping the time each was first found so.
    fn update_unneeded(&mut self, now: i64, view: &ClusterView) {
        let unneeded = unneeded_nodes(
            view,
            self.groups(),
            self.config.scale_down_utilization_threshold,
        );
        let since = &mut self.state.unneeded_since;
        since.retain(|node, _| unneeded.contains_key(node));
        for node in unneeded.keys() {
            since.entry(node.clone()).or_insert(now);
        }
    }

    /// Begin removing one node that has been unneeded long enough, if none is being
    /// removed and no group grew recently.
    fn start_scale_down(&mut self, now: i64, view: &ClusterView, out: &mut Vec<Action>) {
        if self.state.drain.is_some() {
            return;
        }
        let last_scale_up = view.claims.values().map(|c| c.created_at).max();
        if last_scale_up.is_some_and(|at| now - at < self.config.scale_down_delay_after_add_ms) {
            return;
        }
        let ripe = self
            .state
            .unneeded_since
            .iter()
            .filter(|(_, since)| now - **since >= self.config.scale_down_unneeded_ms)
            .map(|(node, _)| node);
        // Empty nodes first, then the least utilized, then by name.
        let choice = ripe
            .map(|node| {
                let pods: Vec<&Pod> = movable_pods(view, node).collect();
                (!pods.is_empty(), utilization(view, node, &pods), node)
            })
            .min_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(b.2)));
        let Some((busy, util, node)) = choice else {
            return;
        };
        let Some(claim) = view.claim_of_node(node) else {
            return;
        };
        out.push(Action::Taint {
            node: node.clone(),
            taint: Taint::new(TAINT_TO_BE_DELETED, "", Effect::NoSchedule),
        });
        out.push(Action::Record {
            reason: Reason::ScaleDown,
            about: Subject::Node(node.clone()),
            message: format!(
                "removing {} node {node} of group {} ({:.0}% utilized, unneeded for {}s)",
                if busy { "under-utilized" } else { "empty" },
                group_of(claim).unwrap_or("?"),
                100.0 * util,
                (now - self.state.unneeded_since[node]) / 1000
            ),
        });
        self.state.drain = Some(Drain {
            node: node.clone(),
            claim: claim.name.clone(),
            started: now,
            empty: !busy,
            last_evicted: None,
            deleted: false,
        });
    }

    /// Move the node being removed along: evict, then delete its claim once empty, or
    /// give up.
    fn drain(&mut self, now: i64, view: &ClusterView, out: &mut Vec<Action>) {
        let Some(mut drain) = self.state.drain.take() else {
            return;
        };
        let claim = view.claims.get(&drain.claim);
        let node = view.nodes.get(&drain.node);
        if drain.deleted || claim.is_none_or(|c| c.deleting_since.is_some()) || node.is_none() {
            // Deleted (by us, or an interruption): termination finishes it. The next
            // node waits until this one is gone.
            if claim.is_none() {
                self.state.unneeded_since.remove(&drain.node);
            } else {
                self.state.drain = Some(drain);
            }
            return;
        }
        let pods: Vec<&Pod> = movable_pods(view, &drain.node).collect();
        if pods.is_empty() {
            out.push(Action::DeleteClaim {
                claim: drain.claim.clone(),
                reason: DeletionReason::ScaleDown { empty: drain.empty },
            });
            drain.deleted = true;
            self.state.drain = Some(drain);
            return;
        }
        let protected = pods.iter().find_map(|p| protection(p));
        let timed_out = now - drain.started >= self.config.max_pod_eviction_ms;
        if protected.is_some() || timed_out {
            out.push(Action::Untaint {
                node: drain.node.clone(),
                key: TAINT_TO_BE_DELETED.into(),
            });
            out.push(Action::Record {
                reason: Reason::ScaleDownFailed,
                about: Subject::Node(drain.node.clone()),
                message: format!(
                    "giving up removing {}: {}",
                    drain.node,
                    protected.unwrap_or("pods could not be evicted in time")
                ),
            });
            self.state.unneeded_since.remove(&drain.node);
            return;
        }
        if drain
            .last_evicted
            .is_none_or(|at| now - at >= self.config.eviction_retry_ms)
        {
            drain.last_evicted = Some(now);
            out.extend(pods.iter().map(|p| Action::Evict { pod: p.key.clone() }));
        }
        self.state.drain = Some(drain);
    }
}

/// Pods a scale-down has to move: all but DaemonSet pods.
fn movable_pods<'a>(view: &'a ClusterView, node: &str) -> impl Iterator<Item = &'a Pod> + 'a {
    view.pods_on(node)
        .map(|p| &p.pod)
        .filter(|p| !p.is_daemon())
}

/// Why a pod keeps its node from being scaled down, if it does.
fn protection(pod: &Pod) -> Option<&'static str> {
    // Cluster Autoscaler does not know the annotation; the baseline honours every value
    // Karpenter reads as protection, a duration for the pod's whole life (the simulator's
    // pods carry no start time, and Karpenter protects those for good too).
    let karpenter_protects = pod
        .annotations
        .get(kerf_model::labels::ANNOTATION_DO_NOT_DISRUPT)
        .is_some_and(|v| {
            kerf_model::pod::DoNotDisrupt::parse(v) != kerf_model::pod::DoNotDisrupt::Invalid
        });
    if karpenter_protects {
        Some("a pod has karpenter.sh/do-not-disrupt")
    } else if pod
        .annotations
        .get(ANNOTATION_SAFE_TO_EVICT)
        .is_some_and(|v| v == "false")
    {
        Some("a pod is not safe to evict")
    } else if pod.owner.is_none() {
        Some("a pod has no controller")
    } else if pod.key.namespace == "kube-system" {
        Some("a kube-system pod is not a DaemonSet's")
    } else {
        None
    }
}

/// The larger of CPU and memory requested (by `pods`) over allocatable.
fn utilization(view: &ClusterView, node: &str, pods: &[&Pod]) -> f64 {
    let Some(node) = view.nodes.get(node) else {
        return 1.0;
    };
    let mut requested = Resources::new();
    for pod in pods {
        requested.add(&pod.requests);
    }
    ["cpu", "memory"]
        .iter()
        .map(|r| {
            let alloc = node.allocatable.get(r).0;
            if alloc <= 0 {
                0.0
            } else {
                requested.get(r).0 as f64 / alloc as f64
            }
        })
        .fold(0.0, f64::max)
}

/// The nodes that could go now, with their utilization: under the threshold, no pod
/// protected, PDBs allowing every pod to go, and every pod fitting elsewhere — with the
/// pods of the candidates found before it already moved, and those candidates no
/// longer destinations.
fn unneeded_nodes(view: &ClusterView, groups: &[Group], threshold: f64) -> BTreeMap<String, f64> {
    let disabled: BTreeSet<&str> = groups
        .iter()
        .filter(|g| g.scale_down_disabled)
        .map(|g| g.name.as_str())
        .collect();
    let mut candidates: Vec<(f64, &str)> = Vec::new();
    for node in view.nodes.values() {
        let Some(claim) = view.claim_of_node(&node.name) else {
            continue;
        };
        let Some(group) = group_of(claim) else {
            continue;
        };
        if !claim.initialized
            || claim.deleting_since.is_some()
            || !usable(node)
            || disabled.contains(group)
            || node
                .annotations
                .get(ANNOTATION_SCALE_DOWN_DISABLED)
                .is_some_and(|v| v == "true")
        {
            continue;
        }
        let pods: Vec<&Pod> = movable_pods(view, &node.name).collect();
        let util = utilization(view, &node.name, &pods);
        if util >= threshold || pods.iter().any(|p| protection(p).is_some()) {
            continue;
        }
        candidates.push((util, node.name.as_str()));
    }
    candidates.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)));
    let mut pdb_left: Vec<i32> = view
        .pdbs
        .iter()
        .map(|pdb| crate::cluster::pdb_allowed(pdb, view))
        .collect();
    let mut gone: BTreeSet<&str> = BTreeSet::new();
    let mut moved: Vec<Pod> = Vec::new();
    let mut out = BTreeMap::new();
    for (util, name) in candidates {
        let pods: Vec<&Pod> = movable_pods(view, name).collect();
        // PDBs: every pod must be allowed to go, on top of the candidates before.
        let mut take = vec![0i32; view.pdbs.len()];
        for pod in &pods {
            for (i, pdb) in view.pdbs.iter().enumerate() {
                if pdb.selects(&pod.key.namespace, &pod.labels) {
                    take[i] += 1;
                }
            }
        }
        // A PDB already below its minimum (negative allowance) only blocks its own pods.
        if take
            .iter()
            .zip(&pdb_left)
            .any(|(t, left)| *t > 0 && t > left)
        {
            continue;
        }
        if !pods.is_empty() {
            let Some(destinations) = fit_elsewhere(view, name, &pods, &gone, &moved) else {
                continue;
            };
            moved.extend(destinations);
        }
        for (left, t) in pdb_left.iter_mut().zip(&take) {
            *left -= t;
        }
        gone.insert(name);
        out.insert(name.to_string(), util);
    }
    out
}

/// Where `pods` of `node` would go on the other usable nodes (not `gone`), as bound
/// copies; `None` if any has nowhere to go.
fn fit_elsewhere(
    view: &ClusterView,
    node: &str,
    pods: &[&Pod],
    gone: &BTreeSet<&str>,
    moved: &[Pod],
) -> Option<Vec<Pod>> {
    let mut nodes = Vec::new();
    let mut bound: Vec<Pod> = Vec::new();
    for other in view.nodes.values() {
        if other.name == node || gone.contains(other.name.as_str()) || !usable(other) {
            continue;
        }
        if view
            .claim_of_node(&other.name)
            .is_some_and(|c| !c.initialized || c.deleting_since.is_some())
        {
            continue;
        }
        nodes.push(other.clone());
        bound.extend(view.pods_on(&other.name).map(|p| p.pod.clone()));
    }
    if nodes.is_empty() {
        return None;
    }
    bound.extend(moved.iter().cloned());
    let pending = pods
        .iter()
        .map(|p| {
            let mut pod = (*p).clone();
            pod.node_name = None;
            pod
        })
        .collect();
    let plan = crate::scheduler::onto_nodes(pending, bound, nodes, view);
    if !plan.unschedulable.is_empty() {
        return None;
    }
    let mut placed = Vec::new();
    for e in plan.existing {
        for key in e.pods {
            if let Some(p) = pods.iter().find(|p| p.key == key) {
                let mut pod = (*p).clone();
                pod.node_name = Some(e.node.clone());
                placed.push(pod);
            }
        }
    }
    Some(placed)
}

/// The baseline models `kerf simulate --baseline` accepts.
pub const MODELS: [&str; 1] = [NODE_GROUPS];

/// The baseline autoscaler called `name`, for `scenario`; `None` for a name not in
/// [`MODELS`].
pub fn by_name(name: &str, scenario: &crate::Scenario) -> Option<Box<dyn crate::Autoscaler>> {
    match name {
        NODE_GROUPS => Some(Box::new(NodeGroups::for_scenario(scenario))),
        _ => None,
    }
}
