//! The provisioning loop: pods in Karpenter's order, each onto the first existing node,
//! open claim or new claim that takes it, relaxing preferences only when nothing does.

use kerf_model::labels;
use kerf_model::pod::HostPort;
use kerf_model::taints::first_untolerated;
use kerf_model::{Node, Requirements, Resources};

use crate::claim::{ClaimState, Pool};
use crate::dense::{Dense, ResIndex};
use crate::topology::{PodGroups, Topology};
use crate::{Config, Input, Plan};

/// Decides where every pending pod goes. See the crate docs.
pub fn solve(input: &Input, config: &Config) -> Plan {
    let mut solver = Solver::new(input, config);
    solver.run();
    solver.split_claims();
    solver.into_plan()
}

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

struct NodeState {
    remaining: Dense,
    host_ports: Vec<HostPort>,
    usable: bool,
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
    /// The pools' types through the memos: what fit checks, efficiency and rendering ask.
    fn catalog(&self) -> Catalog<'_> {
        Catalog::new(&self.memos, &self.pools, self.facts.input)
    }

    fn run(&mut self) {
        let input = self.facts.input;
        // Karpenter's order: largest CPU, then memory, first; input order breaks ties.
        let mut keyed: Vec<(
            std::cmp::Reverse<(kerf_model::Quantity, kerf_model::Quantity)>,
            usize,
        )> = input
            .pods
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
        let mut queue: Vec<usize> = keyed.into_iter().map(|(_, i)| i).collect();
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
        let class = (self.facts.pod_class[p], relax.key());
        let open = (self.scans).node_or_open_claim(class, &fit, &self.nodes, &self.claims, p, eff);
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

    fn commit(&mut self, p: usize, target: Target) {
        let pod = &self.facts.input.pods[p];
        let (claim_idx, fit) = match target {
            Target::Node(i) => {
                self.nodes[i].remaining.sub(&self.facts.pod_req[p]);
                self.nodes[i]
                    .host_ports
                    .extend(pod.host_ports.iter().cloned());
                self.nodes[i].placed.push(p);
                let node = &self.facts.input.nodes[i];
                record(
                    &mut self.topology,
                    &self.facts.pod_groups[p],
                    |key| node.labels.get(key).cloned(),
                    |spec| node_passes_filter(spec, node),
                );
                return;
            }
            Target::Claim(c, fit) => (c, fit),
            Target::NewClaim(claim, fit) => {
                self.claims.push(*claim);
                (self.claims.len() - 1, fit)
            }
        };
        let pool_idx = self.claims[claim_idx].pool;
        if self.pools[pool_idx].remaining_limits.is_some() {
            // `filter_options` kept only options within the limits' headroom, so whichever
            // of them the claim carries, the pool stays within its limits.
            let reservation = self
                .catalog()
                .reservation(pool_idx, &fit.reqs, &fit.options);
            let limits = self.pools[pool_idx].remaining_limits.as_mut().unwrap();
            limits.add(&self.claims[claim_idx].reservation);
            limits.sub(&reservation);
            self.claims[claim_idx].reservation = reservation;
        }
        let claim = &mut self.claims[claim_idx];
        claim.reqs = fit.reqs;
        claim.options = fit.options;
        claim.max_avail = fit.max_avail;
        claim.cheapest_rank = fit.cheapest_rank;
        claim.requests.add(&self.facts.pod_req[p]);
        claim.host_ports.extend(pod.host_ports.iter().cloned());
        claim.pods.push(p);
        // Only the domain-defining parts are needed; cloning the whole claim (its pod list
        // grows with every commit) would make filling a claim quadratic.
        let hostname = claim.hostname.clone();
        let reqs = claim.reqs.clone();
        // The input outlives the solver's borrow: no copy of the taints per placed pod.
        let input = self.facts.input;
        let taints = &input.nodepools[self.pools[pool_idx].nodepool].taints;
        record(
            &mut self.topology,
            &self.facts.pod_groups[p],
            |key| {
                if key == labels::HOSTNAME {
                    Some(hostname.clone())
                } else {
                    reqs.get(key)
                        .and_then(|r| r.single_value())
                        .map(str::to_string)
                }
            },
            // A spread's node inclusion policies apply to claims as to nodes (Karpenter's
            // `TopologyGroup.Counts`): a pod on a claim the group's filter leaves out does
            // not count in it.
            |spec| claim_passes_filter(spec, &reqs, taints),
        );
    }
}

/// Counts a placed pod in every group that selects it, and as an owner of its required
/// anti-affinity terms.
fn record(
    topology: &mut Topology,
    pg: &PodGroups,
    domain: impl Fn(&str) -> Option<String>,
    passes: impl Fn(&crate::topology::GroupSpec) -> bool,
) {
    for &gi in &pg.selected_by {
        let g = &mut topology.groups[gi];
        if passes(&g.spec)
            && let Some(d) = domain(&g.spec.key)
        {
            *g.counts.entry(d).or_default() += 1;
        }
    }
    for &gi in &pg.anti_affinity {
        let g = &mut topology.groups[gi];
        if let Some(d) = domain(&g.spec.key) {
            *g.owner_counts.entry(d).or_default() += 1;
        }
    }
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

fn node_passes_filter(spec: &crate::topology::GroupSpec, node: &Node) -> bool {
    spec.node_filter
        .as_ref()
        .is_none_or(|f| f.matches_labels(&node.labels))
        && spec
            .taint_filter
            .as_ref()
            .is_none_or(|tols| first_untolerated(&node.taints, tols).is_none())
}

/// Whether a claim with these requirements and taints is among the nodes a spread group
/// counts: its taints tolerated (`nodeTaintsPolicy: Honor`) and its requirements
/// compatible with a term of the pod's node affinity (`nodeAffinityPolicy: Honor`).
fn claim_passes_filter(
    spec: &crate::topology::GroupSpec,
    reqs: &Requirements,
    taints: &[kerf_model::Taint],
) -> bool {
    spec.node_filter.as_ref().is_none_or(|f| {
        f.required.is_empty()
            || f.required
                .iter()
                .any(|term| reqs.conflict_with(term, open_key).is_none())
    }) && spec
        .taint_filter
        .as_ref()
        .is_none_or(|tols| first_untolerated(taints, tols).is_none())
}
