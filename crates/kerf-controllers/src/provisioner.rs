//! The provisioner: on a closed batch, solve against the current cluster — ready nodes,
//! NodeClaims still in flight (as nodes carrying the pods nominated to them), and the pods
//! of deleting nodes, which need a home before their drain ends — then nominate pods and
//! create NodeClaims for what the plan opens.

use std::collections::BTreeMap;

use kerf_cloud::Offer;
use kerf_model::labels;
use kerf_model::pod::PodKey;
use kerf_model::{InstanceType, Node, Pod, Requirements};
use kerf_scheduling::{Input, NewClaim};

use crate::{Action, Claim, ClusterView, Config, Reason, Subject};

pub(crate) fn provision(
    now: i64,
    view: &ClusterView,
    config: &Config,
    unavailable: &BTreeMap<Offer, i64>,
    namer: &mut Namer,
    out: &mut Vec<Action>,
) {
    let instance_types = catalog_now(view, unavailable);
    let (nodes, bound_pods, in_flight) = capacity(view, &instance_types, true);
    let mut pods: Vec<Pod> = Vec::new();
    for key in &view.pending {
        let state = &view.pods[key];
        let waits_in_flight = state
            .nominated
            .as_ref()
            .is_some_and(|c| in_flight.contains_key(c.as_str()));
        if !waits_in_flight {
            pods.push(state.pod.clone());
        }
    }
    let n_pending = pods.len();
    // Pods of nodes that are going away: a replacement should exist before they are
    // evicted.
    for claim in view.claims.values() {
        let Some(node) = claim.node_name.as_deref() else {
            continue;
        };
        let leaving = claim.deleting_since.is_some()
            || view
                .nodes
                .get(node)
                .is_some_and(|n| n.taints.iter().any(|t| t.key == labels::TAINT_DISRUPTED));
        if leaving {
            // Not the terminating ones: their controllers' new pods are pending already.
            let moving = view
                .pods_on(node)
                .filter(|p| kerf_disruption::reschedulable(&p.pod));
            pods.extend(moving.map(|p| {
                let mut pod = p.pod.clone();
                pod.node_name = None;
                pod
            }));
        }
    }
    if pods.is_empty() {
        return;
    }
    no_compatible_types(view, &instance_types, out);
    let input = Input {
        pods,
        bound_pods,
        nodes,
        nodepools: view.nodepools.clone(),
        instance_types,
        daemonsets: view.daemonsets.clone(),
        namespaces: view.namespaces.clone(),
    };
    let plan = kerf_scheduling::solve(&input, &config.scheduling);
    let pending: std::collections::BTreeSet<&PodKey> =
        input.pods[..n_pending].iter().map(|p| &p.key).collect();
    for placement in &plan.existing {
        if in_flight.contains_key(placement.node.as_str()) {
            for pod in placement.pods.iter().filter(|p| pending.contains(p)) {
                out.push(Action::Nominate {
                    pod: pod.clone(),
                    claim: placement.node.clone(),
                });
            }
        }
    }
    for new in &plan.new_claims {
        let claim = claim_for(
            now,
            view,
            &input.instance_types,
            new,
            namer.next(&new.nodepool),
        );
        let nominations: Vec<Action> = new
            .pods
            .iter()
            .filter(|p| pending.contains(p))
            .map(|pod| Action::Nominate {
                pod: pod.clone(),
                claim: claim.name.clone(),
            })
            .collect();
        out.push(Action::CreateClaim(Box::new(claim)));
        out.extend(nominations);
    }
    // One event per pod, as Karpenter's; its recorder (and the shell's) keeps a pod that
    // stays unschedulable batch after batch to one event per five minutes.
    for failed in &plan.unschedulable {
        out.push(Action::Record {
            reason: Reason::FailedScheduling,
            about: Subject::Pod(failed.pod.clone()),
            message: format!("Failed to schedule pod, {}", failed.reason),
        });
    }
}

/// Karpenter's `NoCompatibleInstanceTypes`, on each NodePool whose requirements leave it
/// no instance type with an available offering (none exists, or every one is marked
/// unavailable after a capacity error): it can launch nothing, and its owner should know
/// why rather than read it off each pod's `FailedScheduling`.
fn no_compatible_types(view: &ClusterView, instance_types: &[InstanceType], out: &mut Vec<Action>) {
    for pool in &view.nodepools {
        let reqs = pool.template_requirements();
        let launchable = instance_types.iter().any(|it| {
            it.requirements().conflict_with(&reqs, |_| true).is_none()
                && it.offerings.iter().any(|o| o.available && o.matches(&reqs))
        });
        if !launchable {
            out.push(Action::Record {
                reason: Reason::NoCompatibleInstanceTypes,
                about: Subject::NodePool(pool.name.clone()),
                message:
                    "NodePool requirements filtered out all compatible available instance types"
                        .into(),
            });
        }
    }
}

/// Claim names: `<nodepool>-<seconds>-<n>` on a clock of whole seconds (the simulator's
/// ticks), `<nodepool>-<milliseconds>-<n>` otherwise (a real shell steps several times a
/// second). Unique across restarts without remembering a counter, since no two steps
/// share a `now`; within a step, one `Namer` names every claim the loops create (the
/// provisioner's and every disruption command's), so `n` never repeats. A name used
/// twice would be fatal: the shell takes a create refused with 409 for its own answer
/// lost, so the second command would count the first's replacement as its own.
pub(crate) struct Namer {
    now: i64,
    n: u32,
}

impl Namer {
    pub(crate) fn new(now: i64) -> Namer {
        Namer { now, n: 0 }
    }

    pub(crate) fn next(&mut self, nodepool: &str) -> String {
        self.n += 1;
        if self.now % 1000 == 0 {
            format!("{nodepool}-{}-{}", self.now / 1000, self.n)
        } else {
            format!("{nodepool}-{}-{}", self.now, self.n)
        }
    }
}

/// The catalog the decisions see: the instance types some NodePool could launch, or some
/// node or claim already runs (the disruption pass prices them), with the offerings
/// that recently ran out of capacity marked unavailable. Leaving out types no pool can
/// use changes no decision and saves the solver from judging them on every pass.
pub(crate) fn catalog_now(
    view: &ClusterView,
    unavailable: &BTreeMap<Offer, i64>,
) -> Vec<InstanceType> {
    let pools: Vec<Requirements> = view
        .nodepools
        .iter()
        .map(|p| p.template_requirements())
        .collect();
    let running: std::collections::BTreeSet<&str> = view
        .claims
        .values()
        .filter_map(|c| c.launched.as_ref().map(|o| o.instance_type.as_str()))
        .chain(
            view.nodes
                .values()
                .filter_map(|n| n.labels.get(labels::INSTANCE_TYPE).map(String::as_str)),
        )
        .collect();
    let mut types: Vec<InstanceType> = view
        .instance_types
        .iter()
        .filter(|it| {
            running.contains(it.name.as_str()) || {
                let reqs = it.requirements();
                pools
                    .iter()
                    .any(|p| reqs.conflict_with(p, |_| true).is_none())
            }
        })
        .cloned()
        .collect();
    if unavailable.is_empty() {
        return types;
    }
    for it in &mut types {
        for o in &mut it.offerings {
            let offer = Offer {
                instance_type: it.name.clone(),
                zone: o.zone.clone(),
                capacity_type: o.capacity_type.clone(),
            };
            if unavailable.contains_key(&offer) {
                o.available = false;
            }
        }
    }
    types
}

/// The nodes a solve may place onto, the pods bound to them, and the claims still in
/// flight (named as their node in the input). Ready, initialized nodes appear as they
/// are; a claim not yet initialized appears as the node it will be, with its nominated
/// pods bound and its DaemonSet pods counted, and without the taints (startup, not ready,
/// unregistered, …) its node is expected to shed. Deleting and disrupted nodes are left out
/// when `exclude_leaving`.
pub(crate) fn capacity<'a>(
    view: &'a ClusterView,
    instance_types: &[InstanceType],
    exclude_leaving: bool,
) -> (Vec<Node>, Vec<Pod>, BTreeMap<&'a str, ()>) {
    let mut nodes = Vec::new();
    let mut bound = Vec::new();
    let mut in_flight = BTreeMap::new();
    for node in view.nodes.values() {
        let claim = view.claim_of_node(&node.name);
        let managed = node.nodepool().is_some();
        if managed && !claim.is_some_and(|c| c.initialized) {
            continue;
        }
        let leaving = node.deleting
            || claim.is_some_and(|c| c.deleting_since.is_some())
            || node.taints.iter().any(|t| t.key == labels::TAINT_DISRUPTED);
        if !node.ready || (exclude_leaving && leaving) {
            continue;
        }
        nodes.push(node.clone());
        bound.extend(view.pods_on(&node.name).map(|p| p.pod.clone()));
    }
    for claim in view.claims.values() {
        if claim.initialized || claim.deleting_since.is_some() {
            continue;
        }
        let Some(mut node) = claim.future_node(instance_types) else {
            continue;
        };
        // Once registered, the node's own taints count (another agent may have added
        // one), less those it is expected to shed on the way up, as Karpenter reads an
        // uninitialized node (`StateNode.Taints`).
        if let Some(registered) = claim.node_name.as_deref().and_then(|n| view.nodes.get(n)) {
            node.taints = registered
                .for_provisioning(false, &claim.startup_taints)
                .taints;
        }
        bound.extend(view.daemon_pods_on(&node));
        in_flight.insert(claim.name.as_str(), ());
        nodes.push(node);
    }
    for key in &view.pending {
        let state = &view.pods[key];
        if let Some(c) = state.nominated.as_deref()
            && in_flight.contains_key(c)
        {
            let mut pod = state.pod.clone();
            pod.node_name = Some(c.to_string());
            bound.push(pod);
        }
    }
    (nodes, bound, in_flight)
}

/// A NodeClaim for a claim the plan (or a disruption command) opened.
pub(crate) fn claim_for(
    now: i64,
    view: &ClusterView,
    instance_types: &[InstanceType],
    new: &NewClaim,
    name: String,
) -> Claim {
    let pool = view.nodepool(&new.nodepool);
    let mut labels = new.labels.clone();
    labels.insert(labels::NODEPOOL.into(), new.nodepool.clone());
    if let Some(pool) = pool {
        labels.extend(pool.labels.clone());
    }
    let mut annotations = kerf_model::Labels::new();
    if let Some(pool) = pool {
        annotations.insert(
            labels::ANNOTATION_NODEPOOL_HASH.into(),
            pool.template_hash.clone(),
        );
        annotations.insert(
            labels::ANNOTATION_NODEPOOL_HASH_VERSION.into(),
            labels::NODEPOOL_HASH_VERSION.into(),
        );
    }
    Claim {
        name,
        nodepool: new.nodepool.clone(),
        labels,
        annotations,
        taints: new.taints.clone(),
        startup_taints: pool.map(|p| p.startup_taints.clone()).unwrap_or_default(),
        options: options(new, &new.requirements, instance_types).into(),
        created_at: now,
        expire_after: pool.and_then(|p| p.expire_after),
        termination_grace_period: pool.and_then(|p| p.termination_grace_period),
        provider_id: None,
        launched: None,
        image_id: None,
        node_name: None,
        initialized: false,
        deleting_since: None,
        deletion_reason: None,
        drifted: None,
        consolidatable: None,
    }
}

/// Every available offering of the claim's instance types that its requirements allow,
/// cheapest first, the plan's chosen offering leading.
fn options(new: &NewClaim, requirements: &Requirements, types: &[InstanceType]) -> Vec<Offer> {
    let chosen = (new.instance_type_options.iter())
        .filter_map(|name| types.iter().find(|t| &t.name == name));
    let priced =
        kerf_cloud::offers_cheapest_first(chosen, |_, o| o.available && o.matches(requirements));
    let first = Offer {
        instance_type: new.launch.instance_type.clone(),
        zone: new.launch.zone.clone(),
        capacity_type: new.launch.capacity_type.clone(),
    };
    let mut out = vec![first.clone()];
    out.extend(priced.into_iter().filter(|o| *o != first));
    out.truncate(100);
    out
}
