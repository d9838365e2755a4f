//! The `disruption` suite: a fragmented cluster, how long one disruption pass takes to
//! decide, and what repeatedly applying its commands to a fixpoint leaves behind, next to
//! the cost lower bound of the same pods.
//!
//! **The cluster** ([`cluster`]) is drawn from a fixed seed on the `aws` catalog. The pods
//! are a `cost`-suite mix (`mix.rs`) of `20 × nodes` pods, shuffled, and dealt 20 to a
//! node; each node is the smallest size, in a family drawn from [`FAMILIES`], that holds
//! its 20 pods and the two DaemonSets, so the cluster starts full and valid by
//! construction. Then a scale-down: every Deployment loses a share of its replicas drawn
//! from 25–65 % (at least one replica stays), chosen at random, which leaves ~45 % of the
//! pods gone and the nodes fragmented. Every cache Deployment and every other API
//! Deployment with two or more replicas left gets a PDB with `maxUnavailable: 1`, and 1 %
//! of the remaining pods carry `karpenter.sh/do-not-disrupt: "true"`. One NodePool,
//! `NodePool::new("default")`: WhenEmptyOrUnderutilized, `consolidateAfter: 0s` and
//! Karpenter's default budget of 10 % of the nodes; every node has an initialized
//! NodeClaim a week old whose nodepool-hash matches the pool, so nothing drifts or expires.
//!
//! **Decision time** is one `compute_commands` over the starting cluster (the median of
//! `--repeat`, which must all give the same outcome).
//!
//! **The fixpoint** ([`fixpoint`]) applies each pass's commands as a controller would once
//! they finish: disrupted nodes and their NodeClaims go, replacements come up as nodes and
//! initialized NodeClaims of the launched type, zone and capacity type, and displaced pods
//! are bound where the command said. Virtual time advances a minute a pass. It stops when a
//! pass returns no command, or at [`MAX_PASSES`]. After every pass the cluster is checked
//! ([`check_cluster`]): every pod on a node that exists, no node's requests (DaemonSets
//! included) above its allocatable; a command that strands a pod or overcommits a node
//! fails the case. Each pass is also audited against the rules a graceful disruption must
//! keep: no `do-not-disrupt` pod moved, no PDB asked for more evictions in one pass than it
//! allowed at the pass's start.
//!
//! **The yardsticks** are the `cost` suite's lower bounds (`lower_bound::bounds`) over the
//! same pods as pending pods on the same pool, and a *pinned* bound that keeps what no
//! graceful disruption may change: the nodes running a `do-not-disrupt` pod stay at their
//! price, and their spare room is free supply for the fluid LP over every other pod. Both
//! ignore budgets, which slow a fixpoint but do not change where it ends. For context, the
//! report also prices what `kerf_scheduling::solve` would launch for the same pods from
//! scratch.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use kerf_disruption::{Config, Destination, Method, Outcome, Snapshot, compute_commands};
use kerf_model::pod::PodKey;
use kerf_model::{
    InstanceType, IntOrPercent, LabelSelector, Labels, Node, NodeClaim, NodePool, Pdb, Pod,
    Resources, labels,
};
use kerf_scheduling::Input;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::case::{median, peak_rss_mib};
use crate::fleet::{Fleet, Vector, pod_vector};
use crate::lower_bound;
use crate::mix;

/// The suite's clock at the start: 2026-11-24T12:00:00Z.
pub const NOW: i64 = 1_795_521_600;
/// Pods dealt to each node before the scale-down.
pub const PODS_PER_NODE: usize = 20;
/// The fixpoint gives up after this many passes by default (`--max-passes`).
pub const MAX_PASSES: usize = 500;
/// Virtual time between passes: long enough for any command to finish in this model.
pub const PASS_INTERVAL_SECS: i64 = 60;
/// The pool's template hash, stamped on every NodeClaim so nothing drifts.
pub const TEMPLATE_HASH: &str = "kerf-bench-default";
/// Instance families nodes are drawn from: general purpose, compute and memory optimised,
/// Intel, AMD and Graviton — a cluster that grew over time under different NodePools.
pub const FAMILIES: [&str; 8] = ["m7i", "m6a", "m7g", "c7i", "c6a", "c7g", "r7i", "r6a"];
/// The share of each Deployment a scale-down removes is drawn from this range.
const SCALE_DOWN: std::ops::Range<f64> = 0.25..0.65;
/// The chance that a remaining pod carries `karpenter.sh/do-not-disrupt`.
const DO_NOT_DISRUPT_P: f64 = 0.01;
/// The seed (the `cost` mixes' own, shifted so the two suites draw differently).
const SEED: u64 = mix::SEED + 1;

/// Why a case failed: the fixpoint broke the cluster, or a yardstick failed.
#[derive(Debug, thiserror::Error)]
pub enum DisruptionError {
    #[error("case {case}, pass {pass}: a {method} command leaves pod {pod} with nowhere to go")]
    Stranded {
        case: String,
        pass: usize,
        method: &'static str,
        pod: PodKey,
    },
    #[error(
        "case {case}, pass {pass}: pod {pod} was on disrupted node {node} and no command moved it"
    )]
    Abandoned {
        case: String,
        pass: usize,
        pod: PodKey,
        node: String,
    },
    #[error("case {case}, pass {pass}: a replacement launches unknown instance type {name}")]
    UnknownType {
        case: String,
        pass: usize,
        name: String,
    },
    #[error("case {case}, after pass {pass}: pod {pod} is bound to {node:?}, which does not exist")]
    Unplaced {
        case: String,
        pass: usize,
        pod: PodKey,
        node: Option<String>,
    },
    #[error(
        "case {case}, after pass {pass}: node {node} is overcommitted on {resource} ({amounts})"
    )]
    Overcommitted {
        case: String,
        pass: usize,
        node: String,
        resource: String,
        /// `requests …, allocatable …`.
        amounts: String,
    },
    #[error("case {case}: pods went from {before} to {after} over the fixpoint")]
    PodsLost {
        case: String,
        before: usize,
        after: usize,
    },
    #[error("case {case}: repeated passes over the same cluster gave different outcomes")]
    Nondeterministic { case: String },
    #[error(
        "case {case}: the fixpoint costs {cost:.4} $/h, below the lower bound {bound:.4} $/h, so the bound is wrong"
    )]
    BoundAboveCost { case: String, bound: f64, cost: f64 },
    #[error("case {case}")]
    Yardstick {
        case: String,
        #[source]
        source: crate::Error,
    },
}

/// A `disruption` case: a cluster of this many nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DisruptionCase {
    pub nodes: usize,
}

impl DisruptionCase {
    pub fn name(&self) -> String {
        self.nodes.to_string()
    }
}

/// Every `disruption` case, in the order the suite runs them.
pub fn disruption_cases() -> Vec<DisruptionCase> {
    [100, 500, 2_000]
        .into_iter()
        .map(|nodes| DisruptionCase { nodes })
        .collect()
}

/// The starting cluster of `n_nodes` nodes (see the module docs). The same argument gives
/// the same snapshot.
pub fn cluster(n_nodes: usize) -> Snapshot {
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let instance_types =
        kerf_model::catalog::by_name(mix::CATALOG).expect("the aws catalog is built in");
    let daemonsets = mix::daemonsets();
    let mut pool = NodePool::new("default");
    pool.template_hash = TEMPLATE_HASH.to_string();
    let overhead = daemonsets
        .iter()
        .fold(Resources::new(), |sum, d| sum.plus(&d.requests));

    let mut pods = mix::input(n_nodes * PODS_PER_NODE, false).pods;
    pods.shuffle(&mut rng);
    // Deal pods to nodes. A pod that would make its node's pods fit no instance type waits
    // for the next node; any still waiting at the end are left out of the cluster.
    let mut stream = pods.into_iter();
    let mut waiting: Vec<Pod> = Vec::new();
    let mut nodes = Vec::with_capacity(n_nodes);
    let mut nodeclaims = Vec::with_capacity(n_nodes);
    let mut bound_pods: Vec<Pod> = Vec::with_capacity(n_nodes * PODS_PER_NODE);
    for i in 0..n_nodes {
        let name = format!("node-{i:04}");
        let mut need = overhead.clone();
        let mut mine: Vec<Pod> = Vec::with_capacity(PODS_PER_NODE);
        let mut deferred: Vec<Pod> = Vec::new();
        let mut earlier = std::mem::take(&mut waiting).into_iter();
        while mine.len() < PODS_PER_NODE {
            let Some(pod) = earlier.next().or_else(|| stream.next()) else {
                break;
            };
            let with = need.plus(&pod.requests);
            if instance_types.iter().any(|t| t.allocatable().fits(&with)) {
                need = with;
                mine.push(pod);
            } else {
                deferred.push(pod);
            }
        }
        waiting = earlier.collect();
        waiting.extend(deferred);
        let family = FAMILIES[rng.random_range(0..FAMILIES.len())];
        let it = smallest_fitting(&instance_types, Some(family), &need)
            .or_else(|| smallest_fitting(&instance_types, None, &need))
            .expect("every dealt pod set fits some type");
        let zone = kerf_model::catalog::aws::ZONES[rng.random_range(0..3)];
        let (node, claim) = node_and_claim(
            &name,
            &format!("claim-{i:04}"),
            it,
            zone,
            labels::CAPACITY_TYPE_ON_DEMAND,
            &pool,
            NOW - 7 * 86_400,
            NOW - 3_600,
        );
        for mut pod in mine {
            pod.node_name = Some(name.clone());
            bound_pods.push(pod);
        }
        nodes.push(node);
        nodeclaims.push(claim);
    }

    // The scale-down: each Deployment loses a random share of its replicas.
    let mut by_app: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, pod) in bound_pods.iter().enumerate() {
        by_app.entry(app_of(pod).to_string()).or_default().push(i);
    }
    let mut gone = vec![false; bound_pods.len()];
    for replicas in by_app.values() {
        let share = rng.random_range(SCALE_DOWN);
        let remove = ((replicas.len() as f64 * share).round() as usize).min(replicas.len() - 1);
        let mut order = replicas.clone();
        order.shuffle(&mut rng);
        for &i in &order[..remove] {
            gone[i] = true;
        }
    }
    let mut kept = Vec::with_capacity(bound_pods.len());
    for (pod, gone) in bound_pods.into_iter().zip(gone) {
        if !gone {
            kept.push(pod);
        }
    }
    let mut bound_pods = kept;

    // PDBs on cache Deployments and every other API Deployment still replicated.
    let mut replicas: BTreeMap<String, usize> = BTreeMap::new();
    for pod in &bound_pods {
        *replicas.entry(app_of(pod).to_string()).or_default() += 1;
    }
    let mut pdbs = Vec::new();
    let mut api_seen = 0;
    for (app, &n) in &replicas {
        let guarded = if app.starts_with("cache-") {
            true
        } else if app.starts_with("api-") {
            api_seen += 1;
            api_seen % 2 == 1
        } else {
            false
        };
        if guarded && n >= 2 {
            pdbs.push(Pdb {
                namespace: mix::NAMESPACE.to_string(),
                name: app.clone(),
                selector: LabelSelector::from_match_labels(&Labels::from([(
                    "app".to_string(),
                    app.clone(),
                )])),
                min_available: None,
                max_unavailable: Some(IntOrPercent::Int(1)),
                disruptions_allowed: None,
            });
        }
    }
    for pod in &mut bound_pods {
        if rng.random_bool(DO_NOT_DISRUPT_P) {
            pod.annotations.insert(
                labels::ANNOTATION_DO_NOT_DISRUPT.to_string(),
                "true".to_string(),
            );
        }
    }
    bound_pods.sort_by(|a, b| a.key.cmp(&b.key));

    Snapshot {
        nodes,
        nodeclaims,
        bound_pods,
        nodepools: vec![pool],
        pdbs,
        instance_types,
        daemonsets,
        ..Snapshot::default()
    }
}

/// The `app` label every mix pod carries: its Deployment.
fn app_of(pod: &Pod) -> &str {
    pod.labels.get("app").map_or("", String::as_str)
}

/// The smallest type (by allocatable CPU, then price, then name) of `family` (or of any
/// family) whose allocatable holds `need`.
fn smallest_fitting<'a>(
    types: &'a [InstanceType],
    family: Option<&str>,
    need: &Resources,
) -> Option<&'a InstanceType> {
    types
        .iter()
        .filter(|t| family.is_none_or(|f| t.name.split('.').next() == Some(f)))
        .filter(|t| t.allocatable().fits(need))
        .min_by(|a, b| {
            let price = |t: &InstanceType| {
                t.offerings
                    .iter()
                    .map(|o| o.price)
                    .fold(f64::INFINITY, f64::min)
            };
            a.allocatable()
                .get(kerf_model::resources::CPU)
                .cmp(&b.allocatable().get(kerf_model::resources::CPU))
                .then(price(a).total_cmp(&price(b)))
                .then(a.name.cmp(&b.name))
        })
}

/// A node of type `it` and its initialized NodeClaim of `pool`, as Karpenter registers
/// them.
#[allow(clippy::too_many_arguments)]
fn node_and_claim(
    node_name: &str,
    claim_name: &str,
    it: &InstanceType,
    zone: &str,
    capacity_type: &str,
    pool: &NodePool,
    created_at: i64,
    last_pod_event: i64,
) -> (Node, NodeClaim) {
    let mut node_labels: Labels = it.labels.clone();
    node_labels.insert(labels::ZONE.to_string(), zone.to_string());
    node_labels.insert(labels::CAPACITY_TYPE.to_string(), capacity_type.to_string());
    node_labels.insert(labels::NODEPOOL.to_string(), pool.name.clone());
    let mut node = Node::new(node_name, node_labels.clone(), it.allocatable());
    node.created_at = Some(created_at);
    let annotations = Labels::from([
        (
            labels::ANNOTATION_NODEPOOL_HASH_VERSION.to_string(),
            labels::NODEPOOL_HASH_VERSION.to_string(),
        ),
        (
            labels::ANNOTATION_NODEPOOL_HASH.to_string(),
            pool.template_hash.clone(),
        ),
    ]);
    let claim = NodeClaim {
        name: claim_name.to_string(),
        labels: node_labels,
        annotations,
        node_name: Some(node_name.to_string()),
        image_id: None,
        created_at: Some(created_at),
        deleting: false,
        initialized: true,
        last_pod_event: Some(last_pod_event),
        expire_after: pool.expire_after,
        termination_grace_period: pool.termination_grace_period,
    };
    (node, claim)
}

/// What one node costs per hour: its type's offering in its zone and capacity type.
/// `None` for a node whose offering the catalog does not list.
pub fn node_price(snapshot: &Snapshot, node: &Node) -> Option<f64> {
    let get = |k: &str| node.labels.get(k).map(String::as_str);
    let it = snapshot
        .instance_types
        .iter()
        .find(|t| Some(t.name.as_str()) == get(labels::INSTANCE_TYPE))?;
    it.offerings
        .iter()
        .find(|o| {
            Some(o.zone.as_str()) == get(labels::ZONE)
                && Some(o.capacity_type.as_str()) == get(labels::CAPACITY_TYPE)
        })
        .map(|o| o.price)
}

/// The price of every node, dollars per hour.
pub fn cluster_cost(snapshot: &Snapshot) -> f64 {
    snapshot
        .nodes
        .iter()
        .filter_map(|n| node_price(snapshot, n))
        .fold(0.0, |sum, p| sum + p)
}

/// One pass of the fixpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PassRecord {
    /// Wall-clock seconds of `compute_commands`.
    pub seconds: f64,
    /// The winning method (`None` for the pass that found nothing to do).
    pub method: Option<String>,
    pub nodes_disrupted: usize,
    pub replacements: usize,
    pub pods_moved: usize,
}

/// Where the fixpoint ended and how it got there.
#[derive(Clone, Debug)]
pub struct Fixpoint {
    pub snapshot: Snapshot,
    /// Every pass, the last one (which found nothing, unless the cap stopped it) included.
    pub passes: Vec<PassRecord>,
    /// The cap stopped it before a pass found nothing to do.
    pub at_cap: bool,
    /// Moves of `do-not-disrupt` pods, over all passes (a graceful command must make none).
    pub do_not_disrupt_moved: usize,
    /// Moves of pods whose PDB allowed no eviction at the start of their pass (a graceful
    /// command must make none).
    pub pdb_blocked: usize,
    /// Evictions a graceful command asks of a PDB beyond both what it allowed at the
    /// start of the pass and what the command's busiest node asks of it alone, summed
    /// over PDBs, commands and passes: what grouping nodes adds. Must be 0: kerf counts a
    /// group's nodes together, where Karpenter checks each node on its own. (One node's
    /// drain asking more is paced by the eviction API, in both.)
    pub pdb_overdraft: usize,
    /// Why the last pass kept each node, reasons with their numbers taken out, counted.
    pub kept_reasons: BTreeMap<String, usize>,
}

/// Applies passes to `snapshot` from `now` until one returns no command or `max_passes`
/// ran, checking the cluster after each (see the module docs).
pub fn fixpoint(
    case: &str,
    mut snapshot: Snapshot,
    mut now: i64,
    config: &Config,
    max_passes: usize,
) -> Result<Fixpoint, DisruptionError> {
    let mut passes = Vec::new();
    let mut serial = 0;
    let (mut do_not_disrupt_moved, mut pdb_blocked, mut pdb_overdraft) = (0, 0, 0);
    let mut kept_reasons = BTreeMap::new();
    let mut at_cap = true;
    while passes.len() < max_passes {
        let start = Instant::now();
        let outcome = compute_commands(&snapshot, now, config);
        let seconds = start.elapsed().as_secs_f64();
        let pass = passes.len() + 1;
        if outcome.commands.is_empty() {
            passes.push(PassRecord {
                seconds,
                method: None,
                nodes_disrupted: 0,
                replacements: 0,
                pods_moved: 0,
            });
            for k in &outcome.kept {
                *kept_reasons.entry(k.reason.kind()).or_insert(0) += 1;
            }
            at_cap = false;
            break;
        }
        let a = audit(&snapshot, &outcome);
        do_not_disrupt_moved += a.do_not_disrupt;
        pdb_blocked += a.pdb_blocked;
        pdb_overdraft += a.pdb_overdraft;
        passes.push(PassRecord {
            seconds,
            method: Some(
                outcome
                    .commands
                    .iter()
                    .map(|c| c.method.as_str())
                    .collect::<Vec<_>>()
                    .join("+"),
            ),
            nodes_disrupted: outcome.commands.iter().map(|c| c.nodes.len()).sum(),
            replacements: outcome.commands.iter().map(|c| c.replacements.len()).sum(),
            pods_moved: outcome.commands.iter().map(|c| c.moves.len()).sum(),
        });
        apply(case, pass, &mut snapshot, &outcome, now, &mut serial)?;
        check_cluster(case, pass, &snapshot)?;
        now += PASS_INTERVAL_SECS;
    }
    Ok(Fixpoint {
        snapshot,
        passes,
        at_cap,
        do_not_disrupt_moved,
        pdb_blocked,
        pdb_overdraft,
        kept_reasons,
    })
}

/// What the outcome's graceful commands ask that a graceful disruption must not (or, for
/// the last, that the eviction API will make the drain wait for).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Audit {
    /// `do-not-disrupt` pods moved.
    do_not_disrupt: usize,
    /// Pods moved whose PDB allows no eviction at the pass's start.
    pdb_blocked: usize,
    /// Evictions beyond what each PDB allows at the pass's start, summed over PDBs.
    pdb_overdraft: usize,
}

fn audit(snapshot: &Snapshot, outcome: &Outcome) -> Audit {
    let pods: BTreeMap<&PodKey, &Pod> = snapshot.bound_pods.iter().map(|p| (&p.key, p)).collect();
    let moved: Vec<&Pod> = outcome
        .commands
        .iter()
        .filter(|c| c.method != Method::Expiration)
        .flat_map(|c| c.moves.iter())
        .filter_map(|m| pods.get(&m.pod).copied())
        .collect();
    let do_not_disrupt = moved
        .iter()
        .filter(|p| {
            p.annotations
                .get(labels::ANNOTATION_DO_NOT_DISRUPT)
                .is_some_and(|v| v == "true")
        })
        .count();
    let (mut blocked, mut overdraft) = (0, 0);
    for pdb in &snapshot.pdbs {
        let selects = |p: &Pod| pdb.selects(&p.key.namespace, &p.labels);
        let evicted = moved.iter().filter(|p| selects(p)).count();
        if evicted == 0 {
            continue;
        }
        let selected = snapshot.bound_pods.iter().filter(|p| selects(p)).count();
        let allowed =
            usize::try_from(pdb.allowed(i32::try_from(selected).unwrap_or(i32::MAX))).unwrap_or(0);
        if allowed == 0 {
            blocked += evicted;
        }
        // Per command: what its nodes ask together beyond the allowance and beyond what
        // its busiest node asks alone.
        for command in outcome
            .commands
            .iter()
            .filter(|c| c.method != Method::Expiration)
        {
            let mut by_node: BTreeMap<&str, usize> = BTreeMap::new();
            for m in &command.moves {
                if let Some(p) = pods.get(&m.pod).filter(|p| selects(p)) {
                    *by_node
                        .entry(p.node_name.as_deref().unwrap_or(""))
                        .or_default() += 1;
                }
            }
            let asked: usize = by_node.values().sum();
            let alone = by_node.values().copied().max().unwrap_or(0);
            overdraft += asked.saturating_sub(allowed.max(alone));
        }
    }
    Audit {
        do_not_disrupt,
        pdb_blocked: blocked,
        pdb_overdraft: overdraft,
    }
}

/// The outcome's commands, done: disrupted nodes and their claims removed, replacements
/// registered, displaced pods bound to their destinations.
fn apply(
    case: &str,
    pass: usize,
    snapshot: &mut Snapshot,
    outcome: &Outcome,
    now: i64,
    serial: &mut usize,
) -> Result<(), DisruptionError> {
    let mut destination: BTreeMap<PodKey, String> = BTreeMap::new();
    let mut removed: BTreeSet<String> = BTreeSet::new();
    for command in &outcome.commands {
        let mut names = Vec::with_capacity(command.replacements.len());
        for r in &command.replacements {
            let it = snapshot
                .instance_types
                .iter()
                .find(|t| t.name == r.launch.instance_type)
                .ok_or_else(|| DisruptionError::UnknownType {
                    case: case.to_string(),
                    pass,
                    name: r.launch.instance_type.clone(),
                })?;
            let pool = snapshot
                .nodepools
                .iter()
                .find(|p| p.name == r.nodepool)
                .expect("a replacement comes from a pool of the snapshot");
            let name = format!("replacement-{serial:05}");
            *serial += 1;
            let (mut node, claim) = node_and_claim(
                &name,
                &format!("claim-{name}"),
                it,
                &r.launch.zone,
                &r.launch.capacity_type,
                pool,
                now,
                now,
            );
            // Labels the claim promised (pool template labels, pods' requirements) that the
            // type's own do not already give.
            for (k, v) in &r.labels {
                if k != labels::HOSTNAME {
                    node.labels.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
            node.taints = r.taints.clone();
            snapshot.nodes.push(node);
            snapshot.nodeclaims.push(claim);
            names.push(name);
        }
        for m in &command.moves {
            let to = match &m.to {
                Destination::Node(n) => n.clone(),
                Destination::Replacement(i) => names[*i].clone(),
                Destination::Pending => {
                    return Err(DisruptionError::Stranded {
                        case: case.to_string(),
                        pass,
                        method: command.method.as_str(),
                        pod: m.pod.clone(),
                    });
                }
            };
            destination.insert(m.pod.clone(), to);
        }
        removed.extend(command.nodes.iter().cloned());
    }
    let mut touched: BTreeSet<String> = BTreeSet::new();
    for pod in &mut snapshot.bound_pods {
        if let Some(to) = destination.get(&pod.key) {
            pod.node_name = Some(to.clone());
            touched.insert(to.clone());
        } else if let Some(node) = pod.node_name.as_ref().filter(|n| removed.contains(*n))
            && !pod.is_daemon()
        {
            return Err(DisruptionError::Abandoned {
                case: case.to_string(),
                pass,
                pod: pod.key.clone(),
                node: node.clone(),
            });
        }
    }
    // DaemonSet pods (none in the generated clusters) go with their node.
    snapshot
        .bound_pods
        .retain(|p| p.node_name.as_ref().is_none_or(|n| !removed.contains(n)));
    snapshot.nodes.retain(|n| !removed.contains(&n.name));
    snapshot
        .nodeclaims
        .retain(|c| c.node_name.as_ref().is_none_or(|n| !removed.contains(n)));
    for claim in &mut snapshot.nodeclaims {
        if claim
            .node_name
            .as_ref()
            .is_some_and(|n| touched.contains(n))
        {
            claim.last_pod_event = Some(now);
        }
    }
    Ok(())
}

/// Every bound pod is on a node that exists, and no node's pods plus the DaemonSets that
/// would run there (every template: the generated ones select every node) request more
/// than its allocatable.
pub fn check_cluster(case: &str, pass: usize, snapshot: &Snapshot) -> Result<(), DisruptionError> {
    let overhead = snapshot
        .daemonsets
        .iter()
        .fold(Resources::new(), |sum, d| sum.plus(&d.requests));
    let mut used: BTreeMap<&str, Resources> = snapshot
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), overhead.clone()))
        .collect();
    for pod in &snapshot.bound_pods {
        match pod.node_name.as_deref().and_then(|n| used.get_mut(n)) {
            Some(u) => u.add(&pod.requests),
            None => {
                return Err(DisruptionError::Unplaced {
                    case: case.to_string(),
                    pass,
                    pod: pod.key.clone(),
                    node: pod.node_name.clone(),
                });
            }
        }
    }
    for node in &snapshot.nodes {
        let requested = &used[node.name.as_str()];
        if let Some(resource) = node.allocatable.first_exceeded(requested) {
            return Err(DisruptionError::Overcommitted {
                case: case.to_string(),
                pass,
                node: node.name.clone(),
                resource: resource.to_string(),
                amounts: format!(
                    "requests {}, allocatable {}",
                    Resources::render(resource, requested.get(resource)),
                    Resources::render(resource, node.allocatable.get(resource))
                ),
            });
        }
    }
    Ok(())
}

/// The yardsticks for a cluster's pods.
#[derive(Clone, Debug, PartialEq)]
pub struct Yardsticks {
    /// The stronger of the fluid and configuration bounds, dollars per hour.
    pub bound: f64,
    pub fluid: f64,
    pub configuration: f64,
    /// `optimal`, `farley-at-cap` or `farley-pricing` (see `lower_bound::Status`).
    pub configuration_status: String,
    /// Nodes running a `do-not-disrupt` pod kept at their price, the rest fluid.
    pub pinned_bound: f64,
    pub pinned_nodes: usize,
    /// What `kerf_scheduling::solve` launches for the same pods from scratch.
    pub fresh_solve: f64,
}

/// The lower bounds and the from-scratch solve for `snapshot`'s pods on its one pool.
pub fn yardsticks(snapshot: &Snapshot, max_iterations: usize) -> Result<Yardsticks, crate::Error> {
    let pods: Vec<Pod> = snapshot
        .bound_pods
        .iter()
        .filter(|p| !p.is_daemon())
        .map(|p| {
            let mut p = p.clone();
            p.node_name = None;
            p
        })
        .collect();
    let input = Input {
        pods,
        nodepools: snapshot.nodepools.clone(),
        instance_types: snapshot.instance_types.clone(),
        daemonsets: snapshot.daemonsets.clone(),
        namespaces: snapshot.namespaces.clone(),
        ..Input::default()
    };
    let bounds = lower_bound::bounds(&input, max_iterations)?;

    // The pinned bound: do-not-disrupt nodes stay; their spare room is free supply.
    let fleet = Fleet::of(&input)?;
    let pinned: BTreeSet<&str> = snapshot
        .bound_pods
        .iter()
        .filter(|p| {
            p.annotations
                .get(labels::ANNOTATION_DO_NOT_DISRUPT)
                .is_some_and(|v| v == "true")
        })
        .filter_map(|p| p.node_name.as_deref())
        .collect();
    let mut pinned_cost = 0.0;
    let mut free: Vector = [0; 3];
    let mut demand: Vector = [0; 3];
    for node in snapshot
        .nodes
        .iter()
        .filter(|n| pinned.contains(n.name.as_str()))
    {
        pinned_cost += node_price(snapshot, node).unwrap_or(0.0);
        let avail = node
            .labels
            .get(labels::INSTANCE_TYPE)
            .and_then(|t| fleet.types.iter().find(|f| &f.name == t))
            .map_or([0; 3], |t| t.avail);
        let mut room = avail;
        for pod in snapshot
            .bound_pods
            .iter()
            .filter(|p| p.node_name.as_deref() == Some(node.name.as_str()))
        {
            let v = pod_vector(pod)?;
            for r in 0..3 {
                room[r] -= v[r];
            }
        }
        for r in 0..3 {
            free[r] += room[r].max(0);
        }
    }
    for pod in snapshot
        .bound_pods
        .iter()
        .filter(|p| !p.node_name.as_deref().is_some_and(|n| pinned.contains(n)))
    {
        let v = pod_vector(pod)?;
        for r in 0..3 {
            demand[r] += v[r];
        }
    }
    let residual: Vector = std::array::from_fn(|r| (demand[r] - free[r]).max(0));
    let pinned_bound = pinned_cost + lower_bound::fluid(&fleet, &residual)?;

    let plan = kerf_scheduling::solve(&input, &kerf_scheduling::Config::default());
    Ok(Yardsticks {
        bound: bounds.best(),
        fluid: bounds.fluid,
        configuration: bounds.configuration.value,
        configuration_status: bounds.configuration.status.as_str().to_string(),
        pinned_bound,
        pinned_nodes: pinned.len(),
        fresh_solve: plan.cost_per_hour(),
    })
}

/// What a `disruption` case measured. Prices are dollars per hour.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DisruptionReport {
    pub case: String,
    /// Bound pods after the scale-down (they do not change over the fixpoint).
    pub pods: usize,
    pub pdbs: usize,
    pub do_not_disrupt_pods: usize,
    pub nodes_before: usize,
    pub cost_before: f64,
    /// Median wall-clock seconds of one `compute_commands` over the starting cluster.
    pub decision_seconds: f64,
    /// The same with the PDBs dropped from the snapshot: what PDB handling costs.
    pub decision_seconds_without_pdbs: f64,
    pub repeat: usize,
    /// What the first pass does, e.g. `emptiness: 12 node(s)`.
    pub first_pass: String,
    /// Passes that acted (the final pass that found nothing is not counted).
    pub passes: usize,
    /// `fixpoint`, or `cap` when `MAX_PASSES` stopped it.
    pub stopped_by: String,
    pub nodes_after: usize,
    pub cost_after: f64,
    /// Seconds of every `compute_commands` of the fixpoint, the final pass included.
    pub fixpoint_seconds: f64,
    pub slowest_pass_seconds: f64,
    /// Commands by method over the fixpoint.
    pub commands_by_method: BTreeMap<String, usize>,
    pub nodes_disrupted: usize,
    pub replacements: usize,
    pub pods_moved: usize,
    /// Must be 0: graceful commands never move a `do-not-disrupt` pod.
    pub do_not_disrupt_moved: usize,
    /// Must be 0: graceful commands never evict under a PDB that allows none.
    pub pdb_blocked: usize,
    /// Must be 0: evictions a group of nodes asks of a PDB beyond its allowance (see
    /// `Fixpoint`).
    pub pdb_overdraft: usize,
    /// Why the final pass kept each node, counted.
    pub kept_reasons: BTreeMap<String, usize>,
    pub lower_bound: f64,
    pub fluid_bound: f64,
    pub configuration_bound: f64,
    pub configuration_status: String,
    /// `cost_after / lower_bound`.
    pub cost_ratio: f64,
    pub pinned_bound: f64,
    pub pinned_nodes: usize,
    /// `cost_after / pinned_bound`.
    pub pinned_ratio: f64,
    pub fresh_solve_cost: f64,
    /// Through generation, the decision repeats, the yardsticks and the fixpoint.
    pub peak_rss_mib: Option<f64>,
}

/// Runs a `disruption` case: the decision timed `repeat` times, the fixpoint, the
/// yardsticks.
pub fn run_disruption(
    case: &DisruptionCase,
    repeat: usize,
    max_iterations: usize,
    max_passes: usize,
) -> Result<DisruptionReport, DisruptionError> {
    let name = case.name();
    let snapshot = cluster(case.nodes);
    let config = Config::default();
    check_cluster(&name, 0, &snapshot)?;
    let repeat = repeat.max(1);
    let mut seconds = Vec::with_capacity(repeat);
    let mut first: Option<Outcome> = None;
    for _ in 0..repeat {
        let start = Instant::now();
        let outcome = compute_commands(&snapshot, NOW, &config);
        seconds.push(start.elapsed().as_secs_f64());
        match &first {
            None => first = Some(outcome),
            Some(o) if *o != outcome => {
                return Err(DisruptionError::Nondeterministic { case: name });
            }
            Some(_) => {}
        }
    }
    let first = first.expect("at least one pass ran");
    let without_pdbs = Snapshot {
        pdbs: Vec::new(),
        ..snapshot.clone()
    };
    let mut seconds_without_pdbs: Vec<f64> = (0..repeat)
        .map(|_| {
            let start = Instant::now();
            let outcome = compute_commands(&without_pdbs, NOW, &config);
            let elapsed = start.elapsed().as_secs_f64();
            drop(outcome);
            elapsed
        })
        .collect();
    drop(without_pdbs);
    let first_pass = match first.commands.as_slice() {
        [] => "nothing".to_string(),
        commands => commands
            .iter()
            .map(|c| format!("{}: {} node(s)", c.method.as_str(), c.nodes.len()))
            .collect::<Vec<_>>()
            .join(", "),
    };
    let (pods, nodes_before, cost_before) = (
        snapshot.bound_pods.len(),
        snapshot.nodes.len(),
        cluster_cost(&snapshot),
    );
    let (pdbs, do_not_disrupt_pods) = (
        snapshot.pdbs.len(),
        snapshot
            .bound_pods
            .iter()
            .filter(|p| {
                p.annotations
                    .contains_key(labels::ANNOTATION_DO_NOT_DISRUPT)
            })
            .count(),
    );
    let yardstick = |source| DisruptionError::Yardstick {
        case: name.clone(),
        source,
    };
    let marks = yardsticks(&snapshot, max_iterations).map_err(yardstick)?;
    let fix = fixpoint(&name, snapshot, NOW, &config, max_passes)?;
    let peak_rss_mib = peak_rss_mib();
    if fix.snapshot.bound_pods.len() != pods {
        return Err(DisruptionError::PodsLost {
            case: name,
            before: pods,
            after: fix.snapshot.bound_pods.len(),
        });
    }
    let cost_after = cluster_cost(&fix.snapshot);
    if marks.bound > cost_after * (1.0 + 1e-6) {
        return Err(DisruptionError::BoundAboveCost {
            case: name,
            bound: marks.bound,
            cost: cost_after,
        });
    }
    let mut commands_by_method = BTreeMap::new();
    for p in &fix.passes {
        if let Some(m) = &p.method {
            *commands_by_method.entry(m.clone()).or_insert(0) += 1;
        }
    }
    let mut pass_seconds: Vec<f64> = fix.passes.iter().map(|p| p.seconds).collect();
    Ok(DisruptionReport {
        case: name,
        pods,
        pdbs,
        do_not_disrupt_pods,
        nodes_before,
        cost_before,
        decision_seconds: median(&mut seconds),
        decision_seconds_without_pdbs: median(&mut seconds_without_pdbs),
        repeat,
        first_pass,
        passes: fix.passes.iter().filter(|p| p.method.is_some()).count(),
        stopped_by: if fix.at_cap { "cap" } else { "fixpoint" }.to_string(),
        nodes_after: fix.snapshot.nodes.len(),
        cost_after,
        fixpoint_seconds: pass_seconds.iter().sum(),
        slowest_pass_seconds: {
            pass_seconds.sort_by(f64::total_cmp);
            pass_seconds.last().copied().unwrap_or(0.0)
        },
        commands_by_method,
        nodes_disrupted: fix.passes.iter().map(|p| p.nodes_disrupted).sum(),
        replacements: fix.passes.iter().map(|p| p.replacements).sum(),
        pods_moved: fix.passes.iter().map(|p| p.pods_moved).sum(),
        do_not_disrupt_moved: fix.do_not_disrupt_moved,
        pdb_blocked: fix.pdb_blocked,
        pdb_overdraft: fix.pdb_overdraft,
        kept_reasons: fix.kept_reasons,
        lower_bound: marks.bound,
        fluid_bound: marks.fluid,
        configuration_bound: marks.configuration,
        configuration_status: marks.configuration_status,
        cost_ratio: cost_after / marks.bound,
        pinned_bound: marks.pinned_bound,
        pinned_nodes: marks.pinned_nodes,
        pinned_ratio: cost_after / marks.pinned_bound,
        fresh_solve_cost: marks.fresh_solve,
        peak_rss_mib,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_is_valid_fragmented_and_deterministic() {
        let snapshot = cluster(40);
        check_cluster("40", 0, &snapshot).unwrap();
        assert_eq!(snapshot.nodes.len(), 40);
        assert_eq!(snapshot.nodeclaims.len(), 40);
        // The scale-down removed roughly 40–50 % of the 800 pods dealt.
        let pods = snapshot.bound_pods.len();
        assert!((380..=520).contains(&pods), "{pods} pods left of 800");
        assert!(!snapshot.pdbs.is_empty());
        let again = cluster(40);
        assert_eq!(snapshot.bound_pods, again.bound_pods);
        assert_eq!(snapshot.nodes, again.nodes);
        // More than one family, and nothing drifts or expires at the start.
        let types: BTreeSet<&str> = snapshot
            .nodes
            .iter()
            .filter_map(|n| n.labels.get(labels::INSTANCE_TYPE).map(String::as_str))
            .collect();
        assert!(types.len() > 3, "{types:?}");
        let outcome = compute_commands(&snapshot, NOW, &Config::default());
        assert!(
            outcome
                .commands
                .iter()
                .all(|c| !matches!(c.method, Method::Drift | Method::Expiration)),
            "{:?}",
            outcome.commands
        );
    }

    #[test]
    fn a_small_cluster_reaches_a_cheaper_valid_fixpoint_within_the_rules() {
        let snapshot = cluster(20);
        let (pods, cost) = (snapshot.bound_pods.len(), cluster_cost(&snapshot));
        let dnd_before: BTreeMap<PodKey, Option<String>> = snapshot
            .bound_pods
            .iter()
            .filter(|p| {
                p.annotations
                    .contains_key(labels::ANNOTATION_DO_NOT_DISRUPT)
            })
            .map(|p| (p.key.clone(), p.node_name.clone()))
            .collect();
        assert!(!dnd_before.is_empty() || pods < 100);
        let fix = fixpoint("20", snapshot, NOW, &Config::default(), MAX_PASSES).unwrap();
        assert!(!fix.at_cap, "{} passes", fix.passes.len());
        assert!(fix.passes.len() > 1, "nothing consolidated");
        check_cluster("20", fix.passes.len(), &fix.snapshot).unwrap();
        assert_eq!(fix.snapshot.bound_pods.len(), pods);
        let after = cluster_cost(&fix.snapshot);
        assert!(after <= cost + 1e-9, "{after} > {cost}");
        assert!(after < cost, "consolidation saved nothing");
        assert_eq!(fix.do_not_disrupt_moved, 0);
        // No pass evicts under a PDB at 0, nor asks a PDB for more evictions than it
        // allows: kerf counts a command's nodes together (Karpenter, node by node).
        assert_eq!(fix.pdb_blocked, 0);
        assert_eq!(fix.pdb_overdraft, 0);
        for p in &fix.snapshot.bound_pods {
            if let Some(node) = dnd_before.get(&p.key) {
                assert_eq!(&p.node_name, node, "do-not-disrupt pod {} moved", p.key);
            }
        }
        // The final pass really is a fixpoint.
        assert!(
            compute_commands(
                &fix.snapshot,
                NOW + PASS_INTERVAL_SECS * fix.passes.len() as i64,
                &Config::default()
            )
            .commands
            .is_empty()
        );
    }

    #[test]
    fn the_bounds_sit_below_the_starting_cost() {
        let snapshot = cluster(20);
        let marks = yardsticks(&snapshot, 50).unwrap();
        let cost = cluster_cost(&snapshot);
        assert!(
            marks.bound > 0.0 && marks.bound <= cost,
            "{marks:?} vs {cost}"
        );
        assert!(marks.pinned_bound >= marks.fluid - 1e-9, "{marks:?}");
        assert!(marks.pinned_bound <= cost, "{marks:?} vs {cost}");
    }

    /// Karpenter checks PDBs node by node (no pod under a PDB that allows 0), so two
    /// nodes each running one pod of a `maxUnavailable: 1` Deployment could go in one
    /// multi-node command, and the drains would wait on the eviction API. kerf counts a
    /// command's nodes together: only one of the two joins the group.
    #[test]
    fn no_command_asks_a_pdb_for_more_evictions_than_it_allows() {
        let instance_types = kerf_model::catalog::by_name("aws").unwrap();
        let mut pool = NodePool::new("default");
        pool.template_hash = TEMPLATE_HASH.to_string();
        pool.disruption.budgets[0].nodes = kerf_model::nodepool::BudgetNodes::Count(10);
        let it = instance_types
            .iter()
            .find(|t| t.name == "m7i.2xlarge")
            .unwrap();
        let mut snapshot = Snapshot {
            nodepools: vec![pool.clone()],
            pdbs: vec![Pdb {
                namespace: "default".to_string(),
                name: "guarded".to_string(),
                selector: LabelSelector::from_match_labels(&Labels::from([(
                    "app".to_string(),
                    "guarded".to_string(),
                )])),
                min_available: None,
                max_unavailable: Some(IntOrPercent::Int(1)),
                disruptions_allowed: None,
            }],
            ..Snapshot::default()
        };
        for (i, app) in ["guarded", "guarded", "other"].into_iter().enumerate() {
            let name = format!("node-{i}");
            let (node, claim) = node_and_claim(
                &name,
                &format!("claim-{i}"),
                it,
                "us-east-1a",
                labels::CAPACITY_TYPE_ON_DEMAND,
                &pool,
                NOW - 86_400,
                NOW - 3_600,
            );
            let mut requests = Resources::new();
            requests.set(
                kerf_model::resources::CPU,
                kerf_model::Quantity::from_milli(500),
            );
            requests.set(
                kerf_model::resources::MEMORY,
                kerf_model::Quantity::from_units(1 << 30),
            );
            let mut pod = Pod::new("default", &format!("{app}-{i}"), requests);
            pod.labels.insert("app".to_string(), app.to_string());
            pod.node_name = Some(name);
            snapshot.nodes.push(node);
            snapshot.nodeclaims.push(claim);
            snapshot.bound_pods.push(pod);
        }
        snapshot.instance_types = instance_types;
        let outcome = compute_commands(&snapshot, NOW, &Config::default());
        let a = audit(&snapshot, &outcome);
        assert_eq!(outcome.commands.len(), 1, "{outcome:?}");
        assert_eq!(outcome.commands[0].method, Method::MultiNodeConsolidation);
        assert_eq!(outcome.commands[0].nodes, ["node-0", "node-2"]);
        assert_eq!(a.pdb_blocked, 0);
        assert_eq!(a.pdb_overdraft, 0, "{:?}", outcome.commands[0]);
    }
}
