//! The provisioning loop: pods in Karpenter's order, each onto the first existing node,
//! open claim or new claim that takes it, relaxing preferences only when nothing does.
//!
//! This file is the loop and the state it threads; each part of an attempt lives in its
//! own module and borrows only what it reads:
//!
//! - `setup`: `Solver::new` — the `Facts` fixed for the whole solve, the nodes' free
//!   capacity, the pools and their options, the topology groups with bound pods counted.
//! - `relax`: `Relax`, how far a pod's preferences are given up, and `Effective`, what
//!   the pod asks of a target at that level.
//! - `scan`: per pod class and level, the nodes and open claims that refused it for good,
//!   skipped on later attempts; first fit over the rest.
//! - `fit`: `FitCheck`, whether a node, open claim or new claim takes a pod, and why not
//!   (read-only: the facts, the memos, the topology counts).
//! - `memo`: `Memos` and `Catalog`, a pool's types under a requirement set, memoized.
//! - `efficiency`: when a claim stops growing onto a dearer type.
//! - `commit`: the only code that changes state as a pod is placed.
//! - `split`: after the loop, claims re-packed where strictly cheaper.
//! - `render`: the `Plan` the caller sees.

use kerf_model::labels;
use kerf_model::pod::HostPort;
use kerf_model::{Pod, Requirements, Resources};

use crate::claim::{ClaimState, Pool};
use crate::dense::{Dense, ResIndex};
use crate::topology::{PodGroups, Topology};
use crate::{Config, Input, Plan, SplitClaims};

mod commit;
mod efficiency;
mod fit;
mod memo;
mod relax;
mod render;
mod scan;
mod setup;
mod split;

use fit::{FitCheck, Target};
use memo::{Catalog, Memos};
use relax::{Effective, Relax};
use scan::Scans;

/// Decides where every pending pod goes. See the crate docs.
pub fn solve(input: &Input, config: &Config) -> Plan {
    let mut solver = Solver::new(input, config);
    solver.run();
    if config.split_claims == SplitClaims::WhenCheaper {
        solver.split_claims();
    }
    solver.into_plan()
}

/// An existing node as the solve fills it.
struct NodeState {
    /// Allocatable less the requests of its bound pods, DaemonSets and placed pods.
    remaining: Dense,
    host_ports: Vec<HostPort>,
    /// Ready, schedulable and not being deleted: Karpenter places only onto such nodes.
    usable: bool,
    /// Pending pods placed on it.
    placed: Vec<usize>,
}

/// What one solve knows from its input once set up; nothing changes it afterwards.
struct Facts<'a> {
    input: &'a Input,
    config: &'a Config,
    res: ResIndex,
    /// Each pending pod's requests as a dense vector.
    pod_req: Vec<Dense>,
    /// Per pending pod: its class, shared by pods with identical constraints and requests.
    pod_class: Vec<usize>,
    /// Per pending pod: the topology groups it owns, is counted in and must avoid.
    pod_groups: Vec<PodGroups>,
    /// Preferred node-affinity terms per pod, heaviest first.
    node_preferences: Vec<Vec<Requirements>>,
}

/// One solve: the facts it reads, and what placing pods changes.
struct Solver<'a> {
    facts: Facts<'a>,
    memos: Memos,
    /// Only each pool's `remaining_limits` changes, as claims reserve against it.
    pools: Vec<Pool>,
    /// Only the counts change, as pods are placed.
    topology: Topology,
    nodes: Vec<NodeState>,
    claims: Vec<ClaimState>,
    /// (class, relaxation level) → what scans of nodes and of claims learned.
    scans: Scans,
    unschedulable: Vec<(usize, String)>,
}

/// Keys a claim may take from a pod's requirements: those its NodePool defines, and the
/// ones an instance type or offering defines (never the hostname: a claim has none yet).
fn open_key(key: &str) -> bool {
    key != labels::HOSTNAME && labels::is_instance_defined(key)
}

impl Solver<'_> {
    /// The pools' types through the memos, for committing and rendering.
    fn catalog(&self) -> Catalog<'_> {
        Catalog::new(&self.memos, &self.pools, self.facts.input)
    }

    fn run(&mut self) {
        let mut queue = karpenter_order(&self.facts.input.pods);
        // Pods that fail are retried while others still succeed: a pod whose affinity
        // target comes later in the order gets another chance once it is placed.
        loop {
            let mut failed = Vec::new();
            let mut progress = false;
            for &p in &queue {
                match self.place(p) {
                    Ok(()) => progress = true,
                    Err(reason) => failed.push((p, reason)),
                }
            }
            if failed.is_empty() || !progress {
                self.unschedulable = failed;
                break;
            }
            queue = failed.into_iter().map(|(p, _)| p).collect();
        }
        self.unschedulable.sort_by_key(|(p, _)| *p);
    }

    /// Places a pod at the least relaxed level that works, or explains why none does.
    fn place(&mut self, p: usize) -> Result<(), String> {
        let pod = &self.facts.input.pods[p];
        let mut relax = Relax::initial(
            pod,
            &self.facts.pod_groups[p],
            self.facts.config.preference_policy,
        );
        loop {
            let eff = relax.effective(
                pod,
                &self.facts.pod_groups[p],
                &self.facts.node_preferences[p],
                &self.topology,
            );
            match self.find_target(p, relax, &eff) {
                Ok(target) => {
                    self.commit(p, target);
                    return Ok(());
                }
                Err(reason) => match relax.next(pod) {
                    Some(r) => relax = r,
                    None => return Err(reason),
                },
            }
        }
    }

    /// The first existing node, then the first open claim, that takes the pod, else a
    /// new claim from the first NodePool (by weight) that can make one.
    fn find_target(&mut self, p: usize, relax: Relax, eff: &Effective) -> Result<Target, String> {
        let fit = FitCheck::new(&self.facts, &self.memos, &self.pools, &self.topology);
        let key = (self.facts.pod_class[p], relax.key());
        let open = self
            .scans
            .node_or_open_claim(key, &fit, &self.nodes, &self.claims, p, eff);
        if let Some(t) = open {
            return Ok(t);
        }
        fit.new_claim(p, eff, self.claims.len()).map_err(|reasons| {
            // Each node's refusal is worked out only for the reason that is shown: the
            // last relaxation level's (earlier levels' reasons are dropped when the pod
            // relaxes).
            let shown = relax.next(&self.facts.input.pods[p]).is_none();
            fit.unschedulable(p, eff, &self.nodes, &reasons, shown)
        })
    }
}

/// Pod indices in the order they are placed, Karpenter's: largest CPU, then memory,
/// first; input order breaks ties.
fn karpenter_order(pods: &[Pod]) -> Vec<usize> {
    let mut keyed: Vec<(
        std::cmp::Reverse<(kerf_model::Quantity, kerf_model::Quantity)>,
        usize,
    )> = pods
        .iter()
        .enumerate()
        .map(|(i, pod)| {
            let r = &pod.requests;
            let size = (
                r.get(kerf_model::resources::CPU),
                r.get(kerf_model::resources::MEMORY),
            );
            (std::cmp::Reverse(size), i)
        })
        .collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, i)| i).collect()
}

fn nodes_one() -> Resources {
    let mut r = Resources::new();
    r.set(
        kerf_model::resources::NODES,
        kerf_model::Quantity::from_units(1),
    );
    r
}

fn ports_conflict(used: &[HostPort], wanted: &[HostPort]) -> bool {
    wanted.iter().any(|w| used.iter().any(|u| u.conflicts(w)))
}
