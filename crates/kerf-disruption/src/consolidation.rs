//! Consolidation: which candidates may be consolidated, the multi-node and single-node
//! searches over them, and Karpenter's `computeConsolidation` for one group — delete it
//! when its pods fit on the nodes that stay, else replace it with one cheaper node — with
//! the bounds that let most groups fail without a simulation.

use std::collections::BTreeMap;
use std::fmt;

use kerf_model::nodepool::ConsolidationPolicy;
use kerf_model::pod::PodKey;
use kerf_model::{Requirement, labels};
use kerf_scheduling::{Launch, NewClaim};

use crate::budget::{Reason, Taken};
use crate::kept::{KeptReason, WaitsForUninitialized};
use crate::pass::{Candidate, Pass};
use crate::world::{World, waits_for_uninitialized};
use crate::{Command, Decision, Destination, Method, Move, Snapshot};

/// Karpenter's MinInstanceTypesForSpotToSpotConsolidation: a single spot node is only
/// replaced when at least 15 cheaper types exist, and the launch keeps the 15 cheapest,
/// so the replacement is not itself the next candidate.
const MIN_SPOT_OPTIONS: usize = 15;

/// A consolidation that works.
pub(crate) struct Consolidation {
    pub(crate) decision: Decision,
    pub(crate) replacement: Option<NewClaim>,
    pub(crate) moves: Vec<Move>,
    pub(crate) savings: f64,
}

/// Why a group of candidates cannot be consolidated.
#[derive(Clone, Debug, PartialEq)]
pub enum NoConsolidation {
    /// A node's offering is not in the catalog, so nothing can be shown to cost less.
    PriceUnknown {
        capacity_type: String,
        instance_type: Option<String>,
    },
    WaitsForUninitialized(WaitsForUninitialized),
    /// Neither deleting nor one cheaper replacement works. The group's pods ask
    /// `need_cpu` milli-CPU elsewhere; the nodes that would stay have `free_cpu` free.
    NoCheaperPlacement {
        need_cpu: i64,
        free_cpu: i64,
        why: NoCheaper,
    },
    /// `consolidationPolicy: Balanced`: it would save `saved` of its pools' cost for
    /// `disrupted` of their disruption cost (shares), a `score` below 0.5.
    Unbalanced {
        saved: f64,
        disrupted: f64,
        score: f64,
    },
}

/// Why no cheaper placement exists for a group's pods.
#[derive(Clone, Debug, PartialEq)]
pub enum NoCheaper {
    /// There is room, but not every pod fits, and no node any NodePool could launch for
    /// them costs less than the group's `price`.
    NotEveryPodFits {
        price: f64,
    },
    /// No type the group's NodePools offer holds the `leftover_cpu` (milli-CPU) the other
    /// nodes cannot take.
    NoTypeHoldsLeftover {
        leftover_cpu: i64,
    },
    /// A node for the leftover costs at least `floor`, not less than `price`.
    LeftoverCostsMore {
        leftover_cpu: i64,
        floor: f64,
        price: f64,
    },
    PodFitsNoNewNode {
        pod: PodKey,
        reason: String,
    },
    /// Consolidation launches at most one node.
    NeedsNewNodes {
        nodes: usize,
    },
    /// Spot replacing spot, with spot-to-spot consolidation off.
    SpotToSpotOff,
    /// `node`, of the group, has a type among the cheaper options: a replacement would
    /// have to cost less than its `price`, and none does.
    KeepInstead {
        node: String,
        instance_type: String,
        price: f64,
        cheapest_other: Option<(String, f64)>,
    },
    /// No option cheaper than the group's `price`; the `cheapest` there is, if any.
    NotCheaper {
        cheapest: Option<(String, f64)>,
        price: f64,
    },
    /// The cheaper options span fewer values of `key` than its `minValues`.
    MinValues {
        key: String,
        options: usize,
        values: usize,
        min: u32,
    },
    /// A single spot node, with fewer than `MIN_SPOT_OPTIONS` cheaper types.
    SpotFlexibility {
        found: usize,
    },
}

impl NoConsolidation {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            NoConsolidation::PriceUnknown { .. } => "its price is unknown",
            NoConsolidation::WaitsForUninitialized(_) => "not all pods would schedule",
            NoConsolidation::NoCheaperPlacement { .. } => "no cheaper placement",
            NoConsolidation::Unbalanced { .. } => "consolidationPolicy Balanced",
        }
    }
}

impl fmt::Display for NoConsolidation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (need_cpu, free_cpu, why) = match self {
            NoConsolidation::PriceUnknown {
                capacity_type,
                instance_type,
            } => {
                return write!(
                    f,
                    "its price is unknown: the catalog has no {capacity_type} offering of {}",
                    instance_type
                        .as_deref()
                        .unwrap_or("(no instance type label)")
                );
            }
            NoConsolidation::WaitsForUninitialized(waits) => return write!(f, "{waits}"),
            NoConsolidation::Unbalanced {
                saved,
                disrupted,
                score,
            } => {
                return write!(
                    f,
                    "consolidationPolicy Balanced: it would save {:.0}% of the pool's cost for {:.0}% of its disruption cost (score {score:.2}, needs 0.50)",
                    saved * 100.0,
                    disrupted * 100.0
                );
            }
            NoConsolidation::NoCheaperPlacement {
                need_cpu,
                free_cpu,
                why,
            } => (*need_cpu, *free_cpu, why),
        };
        let cores = |m: i64| m as f64 / 1000.0;
        write!(
            f,
            "no cheaper placement: its pods need {:.1} vCPU elsewhere, {:.1} free",
            cores(need_cpu),
            cores(free_cpu)
        )?;
        match why {
            NoCheaper::NotEveryPodFits { price } => write!(
                f,
                ", but not every pod fits on them, and no node any NodePool could launch for them costs less than ${price:.4}/h"
            ),
            NoCheaper::NoTypeHoldsLeftover { leftover_cpu } => write!(
                f,
                ", and no instance type its NodePool offers holds the {:.1} vCPU left over",
                cores(*leftover_cpu)
            ),
            NoCheaper::LeftoverCostsMore {
                leftover_cpu,
                floor,
                price,
            } => write!(
                f,
                "; a node for the {:.1} vCPU left over costs at least ${floor:.4}/h, not less than ${price:.4}/h",
                cores(*leftover_cpu)
            ),
            NoCheaper::PodFitsNoNewNode { pod, reason } => {
                write!(f, ", and pod {pod} fits no new node either: {reason}")
            }
            NoCheaper::NeedsNewNodes { nodes } => write!(
                f,
                "; they would need {nodes} new nodes, and consolidation launches at most one"
            ),
            NoCheaper::SpotToSpotOff => f.write_str(
                "; replacing spot with spot needs spot-to-spot consolidation, which is off (--spot-to-spot)",
            ),
            NoCheaper::KeepInstead {
                node,
                instance_type,
                price,
                cheapest_other,
            } => {
                write!(
                    f,
                    "; a replacement would have to cost less than {node}'s {instance_type} (${price:.4}/h), whose type is among its options: keeping that node and deleting the others saves more and moves fewer pods"
                )?;
                match cheapest_other {
                    Some((name, p)) => write!(f, "; the cheapest other type, {name}, costs ${p:.4}/h"),
                    None => Ok(()),
                }
            }
            NoCheaper::NotCheaper {
                cheapest: Some((name, p)),
                price,
            } => write!(
                f,
                "; the cheapest replacement, {name} at ${p:.4}/h, is not cheaper than ${price:.4}/h"
            ),
            NoCheaper::NotCheaper { cheapest: None, .. } => {
                f.write_str("; no replacement instance type has a launchable offering")
            }
            NoCheaper::MinValues {
                key,
                options,
                values,
                min,
            } => write!(
                f,
                "; the {options} cheaper instance types span {values} value{} of {key}, fewer than its minValues {min}",
                if *values == 1 { "" } else { "s" }
            ),
            NoCheaper::SpotFlexibility { found } => write!(
                f,
                "; spot-to-spot needs {MIN_SPOT_OPTIONS} cheaper instance types to keep launch flexibility, found {found}"
            ),
        }
    }
}

/// For each NodePool, the allocatable (CPU, memory) and cheapest offering of every type
/// it could launch: a lower bound on any replacement's price.
pub(crate) struct Floors<'a>(BTreeMap<&'a str, Vec<(i64, i64, f64)>>);

impl<'a> Floors<'a> {
    pub(crate) fn new(snapshot: &'a Snapshot) -> Floors<'a> {
        Floors(
            snapshot
                .nodepools
                .iter()
                .map(|pool| {
                    let reqs = pool.template_requirements();
                    let floors = snapshot
                        .instance_types
                        .iter()
                        .filter(|it| {
                            it.requirements()
                                .conflict_with(&reqs, |k| !labels::is_instance_defined(k))
                                .is_none()
                        })
                        .filter_map(|it| {
                            let cheapest = it.cheapest_offering(&reqs)?.price;
                            let a = it.allocatable();
                            Some((a.get("cpu").0, a.get("memory").0, cheapest))
                        })
                        .collect();
                    (pool.name.as_str(), floors)
                })
                .collect(),
        )
    }

    /// The types any NodePool could launch.
    fn any_pool(&self) -> impl Iterator<Item = &(i64, i64, f64)> {
        self.0.values().flatten()
    }

    /// The types the group's NodePools could launch.
    fn of<'g>(&'g self, group: &'g [Candidate]) -> impl Iterator<Item = &'g (i64, i64, f64)> {
        (group.iter())
            .filter_map(|c| self.0.get(c.pool.name.as_str()))
            .flatten()
    }
}

/// The cheapest of `types` that holds `(cpu, memory)` milli-units.
fn cheapest<'t>(
    types: impl Iterator<Item = &'t (i64, i64, f64)>,
    (cpu, memory): (i64, i64),
) -> Option<f64> {
    types
        .filter(|(c, m, _)| *c >= cpu && *m >= memory)
        .map(|(_, _, p)| *p)
        .min_by(f64::total_cmp)
}

impl<'a> Pass<'a> {
    /// The candidates consolidation may act on: those no step has kept or disrupted,
    /// whose NodePool consolidates more than empty nodes, settled.
    pub(crate) fn consolidation_candidates(&mut self) -> Vec<Candidate<'a>> {
        let mut eligible = Vec::new();
        for &c in &self.candidates {
            if self.in_command[c.node] || self.kept[c.node].is_some() {
                continue;
            }
            if c.pool.disruption.consolidation_policy == ConsolidationPolicy::WhenEmpty {
                let pods = self.world.facts[c.node].reschedulable.len() as u32;
                self.kept[c.node] = Some(KeptReason::WhenEmpty { pods });
                continue;
            }
            match self.settled(c) {
                Ok(()) => eligible.push(c),
                Err(wait) => self.kept[c.node] = Some(KeptReason::ConsolidateAfter(wait)),
            }
        }
        eligible
    }

    /// Balanced (Karpenter v1.14): a consolidation acts only when the share of its
    /// pools' cost it saves is at least half the share of their disruption cost it
    /// causes.
    fn balanced(&self, group: &[Candidate], savings: f64) -> Result<(), NoConsolidation> {
        let balanced =
            |c: &Candidate| c.pool.disruption.consolidation_policy == ConsolidationPolicy::Balanced;
        if !group.iter().any(balanced) {
            return Ok(());
        }
        let facts = &self.world.facts;
        let pools: Vec<&str> = group.iter().map(|c| c.pool.name.as_str()).collect();
        let (mut total_cost, mut total_disruption) = (0.0, 0.0);
        for (i, f) in facts.iter().enumerate() {
            if !self.world.gone[i] && f.pool_name.is_some_and(|p| pools.contains(&p)) {
                total_cost += f.price.unwrap_or(0.0);
                total_disruption += f.disruption_cost;
            }
        }
        let disruption: f64 = group.iter().map(|c| facts[c.node].disruption_cost).sum();
        if total_cost <= 0.0 || total_disruption <= 0.0 || disruption <= 0.0 {
            return Ok(());
        }
        let (saved, disrupted) = (savings / total_cost, disruption / total_disruption);
        let score = saved / disrupted;
        if score >= 0.5 {
            Ok(())
        } else {
            Err(NoConsolidation::Unbalanced {
                saved,
                disrupted,
                score,
            })
        }
    }

    /// Multi-node consolidation: every budget-allowed prefix of the candidates in two
    /// orders — disruption cost (Karpenter's), and least utilized first (where packing
    /// gains hide) — keeping the group that saves most; ties go to the first found.
    /// Validating a command, only the whole group of its nodes is judged: a subset that
    /// would now save more does not make the command wrong (Karpenter's validator
    /// simulates the command's nodes and nothing else), and rejecting it for that costs
    /// a validation before the subset is chosen.
    pub(crate) fn multi_node_consolidation(&mut self, eligible: &[Candidate<'a>]) {
        if self.acted.is_some() {
            return;
        }
        let found = if self.validating {
            self.whole_group(eligible)
        } else {
            self.best_group(eligible)
        };
        if let Some((nodes, c)) = found {
            let command =
                consolidation_command(&self.world, Method::MultiNodeConsolidation, &nodes, c);
            self.act(command, &nodes);
        }
    }

    /// Multi-node consolidation's search: the prefix of `eligible` (in disruption-cost
    /// order, then in utilisation order) of two nodes or more that saves the most.
    fn best_group(&self, eligible: &[Candidate<'a>]) -> Option<(Vec<usize>, Consolidation)> {
        let world = &self.world;
        let utilization = |c: &Candidate| {
            let f = &world.facts[c.node];
            let alloc = f.node.allocatable.get("cpu").0.max(1) as f64;
            let used: i64 = f
                .reschedulable
                .iter()
                .map(|&p| world.pods[p].requests.get("cpu").0)
                .sum();
            used as f64 / alloc
        };
        let mut by_utilization = eligible.to_vec();
        by_utilization.sort_by(|a, b| utilization(a).total_cmp(&utilization(b)));
        let largest_cpu = (self.snapshot.instance_types.iter())
            .map(|it| it.allocatable().get("cpu").0 as f64 / 1000.0)
            .fold(0.0, f64::max);
        let mut best: Option<(Vec<usize>, Consolidation)> = None;
        for order in [eligible, by_utilization.as_slice()] {
            let group = self.group(order);
            let nodes: Vec<usize> = group.iter().map(|c| c.node).collect();
            // Largest group first: a group can save at most its nodes' price, which only
            // shrinks as the group does, so the search stops once that bound cannot beat
            // the best found.
            for k in (2..=group.len()).rev() {
                let prefix = &nodes[..k];
                let bound: f64 = prefix
                    .iter()
                    .map(|&i| world.facts[i].price.unwrap_or(0.0))
                    .sum();
                if best
                    .as_ref()
                    .is_some_and(|(_, b)| bound <= b.savings + 1e-9)
                {
                    break;
                }
                let (need, free) = world.cpu_need_and_free(prefix);
                if need > free + largest_cpu {
                    continue;
                }
                if let Ok(c) = self.consolidate(&group[..k])
                    && self.balanced(&group[..k], c.savings).is_ok()
                    && best
                        .as_ref()
                        .is_none_or(|(_, b)| c.savings > b.savings + 1e-9)
                {
                    best = Some((prefix.to_vec(), c));
                }
            }
        }
        best
    }

    /// The candidates, all of them, as one group of two or more, if it consolidates.
    fn whole_group(&self, eligible: &[Candidate<'a>]) -> Option<(Vec<usize>, Consolidation)> {
        let group = self.group(eligible);
        if group.len() < 2 {
            return None;
        }
        let c = self.consolidate(&group).ok()?;
        self.balanced(&group, c.savings).ok()?;
        Some((group.iter().map(|c| c.node).collect(), c))
    }

    /// The candidates of `order` that may go together, in that order: within their
    /// pools' Underutilized budgets, and asking no PDB for more than it allows.
    fn group(&self, order: &[Candidate<'a>]) -> Vec<Candidate<'a>> {
        let mut taken = Taken::default();
        // A group asks each PDB for the evictions of all its nodes' pods at once: a node
        // joins only while every PDB still allows them, or no more than one of its nodes
        // asks on its own. Karpenter checks PDBs node by node, so two nodes each with one
        // pod of a `maxUnavailable: 1` Deployment could go together; one node's drain
        // asking more than its PDB allows is paced by the eviction API, as in Karpenter
        // (blocking such nodes would stall drift). Per PDB: evictions asked so far, and
        // the most one node asked.
        let mut pdb_used: BTreeMap<usize, (i32, i32)> = BTreeMap::new();
        (order.iter().copied())
            .filter(|&c| {
                // Past the budget nothing joins: skip the PDB count.
                let headroom = self.budgets.headroom(c.pool, Reason::Underutilized);
                if taken.used(c.pool) >= headroom.available {
                    return false;
                }
                let asks = self.world.pdb_asks(c.node);
                let over = asks.iter().any(|&(pdb, n)| {
                    let (total, most) = pdb_used.get(&pdb).copied().unwrap_or((0, 0));
                    total + n > self.world.pdb_allowed[pdb].max(most.max(n))
                });
                if over
                    || taken
                        .take(&self.budgets, c.pool, Reason::Underutilized)
                        .is_err()
                {
                    return false;
                }
                for (pdb, n) in asks {
                    let entry = pdb_used.entry(pdb).or_default();
                    entry.0 += n;
                    entry.1 = entry.1.max(n);
                }
                true
            })
            .collect()
    }

    /// Single-node consolidation: candidates in disruption-cost order, each evaluated
    /// (for its reason) until one works and acts.
    pub(crate) fn single_node_consolidation(&mut self, eligible: &[Candidate<'a>]) {
        // Candidates that cannot be consolidated alone, found on the way.
        let mut skipped: Vec<usize> = Vec::new();
        for &c in eligible {
            if self.in_command[c.node] {
                continue;
            }
            // As in Karpenter, nothing more is simulated once a command has won the pass.
            if let Some(first) = &self.acted {
                self.kept[c.node] = Some(KeptReason::NotEvaluated {
                    first: first.method,
                });
                continue;
            }
            let headroom = self.budgets.headroom(c.pool, Reason::Underutilized);
            if headroom.available == 0 {
                self.kept[c.node] = Some(KeptReason::Budget(headroom.spent()));
                continue;
            }
            let consolidation = self
                .consolidate(&[c])
                .and_then(|k| self.balanced(&[c], k.savings).map(|()| k));
            match consolidation {
                Err(why) => {
                    self.kept[c.node] = Some(KeptReason::Unconsolidatable(why));
                    skipped.push(c.node);
                }
                Ok(k) => {
                    // Multi-node's prefixes all began with the nodes skipped here, which
                    // cannot go alone: a group without them may save more than this
                    // node does on its own (else each such node costs a pass and a
                    // validation of its own).
                    if !skipped.is_empty() {
                        let rest: Vec<Candidate<'a>> = (eligible.iter().copied())
                            .filter(|r| !skipped.contains(&r.node) && !self.in_command[r.node])
                            .collect();
                        if let Some((nodes, group)) = self.best_group(&rest)
                            && group.savings > k.savings + 1e-9
                        {
                            let command = consolidation_command(
                                &self.world,
                                Method::MultiNodeConsolidation,
                                &nodes,
                                group,
                            );
                            self.act(command, &nodes);
                            if !self.in_command[c.node] {
                                self.kept[c.node] = Some(KeptReason::NotEvaluated {
                                    first: Method::MultiNodeConsolidation,
                                });
                            }
                            continue;
                        }
                    }
                    let command = consolidation_command(
                        &self.world,
                        Method::SingleNodeConsolidation,
                        &[c.node],
                        k,
                    );
                    self.act(command, &[c.node]);
                }
            }
        }
    }

    /// Karpenter's `computeConsolidation` for a group: delete when the pods fit on the
    /// nodes that stay; else replace with exactly one claim whose cheapest launchable
    /// option is cheaper than the group. `Err` is the reason it cannot.
    fn consolidate(&self, group: &[Candidate]) -> Result<Consolidation, NoConsolidation> {
        let (world, config) = (&self.world, self.config);
        let candidates: &[usize] = &group.iter().map(|c| c.node).collect::<Vec<_>>();
        let mut price = 0.0;
        for &i in candidates {
            let f = &world.facts[i];
            match f.price {
                Some(p) => price += p,
                None => {
                    return Err(NoConsolidation::PriceUnknown {
                        capacity_type: f.capacity_type.to_string(),
                        instance_type: f.instance_type.map(str::to_string),
                    });
                }
            }
        }
        let room = world.need_and_free(candidates);
        let (need, free) = (room.need, room.free);
        let no_cheaper = |why: NoCheaper| NoConsolidation::NoCheaperPlacement {
            need_cpu: need.0,
            free_cpu: free.0,
            why,
        };
        // Where no pod has an inter-pod term, only the free room of nodes that hold at
        // least the smallest pod is of use to them.
        let free = if world.plain {
            world.usable_free(candidates)
        } else {
            free
        };
        // Without the room, no packing can delete: skip that simulation.
        let fits = need.0 <= free.0 && need.1 <= free.1 && room.stuck == (0, 0);
        if fits {
            let delete = world.simulate(candidates, false, config);
            if let Some(waits) = waits_for_uninitialized(&delete.plan) {
                return Err(NoConsolidation::WaitsForUninitialized(waits));
            }
            if delete.plan.unschedulable.is_empty() {
                return Ok(Consolidation {
                    decision: Decision::Delete,
                    replacement: None,
                    moves: delete.moves,
                    savings: price,
                });
            }
            // A replacement holds at least one of the pods, so it costs at least the
            // cheapest type any NodePool could launch that holds the smallest of them.
            // Where that is not cheaper, no simulation can find one: in a packed cluster
            // of one instance type that is every candidate, and a pass saved a solve each.
            let smallest = world.smallest_request(candidates);
            let floor = cheapest(self.floors.any_pool(), smallest);
            if floor.is_none_or(|floor| floor >= price - 1e-9) {
                return Err(no_cheaper(NoCheaper::NotEveryPodFits { price }));
            }
        } else {
            // A replacement must hold at least what the other nodes cannot: if the
            // cheapest type its pools could launch that large is not cheaper, no
            // simulation can find one.
            let deficit = (
                (need.0 - free.0).max(room.stuck.0),
                (need.1 - free.1).max(room.stuck.1),
            );
            let floor = cheapest(self.floors.of(group), deficit);
            match floor {
                None => {
                    return Err(no_cheaper(NoCheaper::NoTypeHoldsLeftover {
                        leftover_cpu: deficit.0,
                    }));
                }
                Some(floor) if floor >= price - 1e-9 => {
                    return Err(no_cheaper(NoCheaper::LeftoverCostsMore {
                        leftover_cpu: deficit.0,
                        floor,
                        price,
                    }));
                }
                Some(_) => {}
            }
        }
        let replace = world.simulate(candidates, true, config);
        if let Some(waits) = waits_for_uninitialized(&replace.plan) {
            return Err(NoConsolidation::WaitsForUninitialized(waits));
        }
        if let Some(u) = replace.plan.unschedulable.first() {
            return Err(no_cheaper(NoCheaper::PodFitsNoNewNode {
                pod: u.pod.clone(),
                reason: u.reason.clone(),
            }));
        }
        if replace.plan.new_claims.len() > 1 {
            return Err(no_cheaper(NoCheaper::NeedsNewNodes {
                nodes: replace.plan.new_claims.len(),
            }));
        }
        let Some(claim) = replace.plan.new_claims.first() else {
            // Launching allowed nothing new but moved everything: count it as a delete.
            return Ok(Consolidation {
                decision: Decision::Delete,
                replacement: None,
                moves: replace.moves,
                savings: price,
            });
        };
        let all_spot = candidates
            .iter()
            .all(|&i| world.facts[i].capacity_type == labels::CAPACITY_TYPE_SPOT);
        let mut requirements = claim.requirements.clone();
        let ct = requirements.get(labels::CAPACITY_TYPE).cloned();
        let spot_possible = ct
            .as_ref()
            .is_none_or(|r| r.has(labels::CAPACITY_TYPE_SPOT));
        let spot_to_spot = all_spot && spot_possible;
        if spot_to_spot && !config.spot_to_spot {
            return Err(no_cheaper(NoCheaper::SpotToSpotOff));
        }
        // A replacement that could be spot or on-demand is priced as spot, so it must
        // launch as spot: on-demand might not be cheaper (Karpenter does the same).
        if spot_to_spot
            || ct.as_ref().is_some_and(|r| {
                r.has(labels::CAPACITY_TYPE_SPOT) && r.has(labels::CAPACITY_TYPE_ON_DEMAND)
            })
        {
            requirements.add(
                labels::CAPACITY_TYPE,
                Requirement::single(labels::CAPACITY_TYPE_SPOT),
            );
        }
        let candidate_types: Vec<&str> = candidates
            .iter()
            .filter_map(|&i| world.facts[i].instance_type)
            .collect();
        let mut cheapest_seen: Option<(String, f64)> = None;
        // Every option cheaper than the group, as Karpenter's price filter leaves them.
        let mut cheaper: Vec<(f64, &str, Launch)> = Vec::new();
        for name in &claim.instance_type_options {
            let Some(it) = world.instance_type(name) else {
                continue;
            };
            let Some(offering) = it.cheapest_offering(&requirements) else {
                continue;
            };
            if cheapest_seen
                .as_ref()
                .is_none_or(|(_, p)| offering.price < *p)
            {
                cheapest_seen = Some((name.clone(), offering.price));
            }
            if offering.price >= price - 1e-9 {
                continue;
            }
            cheaper.push((
                offering.price,
                name,
                Launch {
                    instance_type: name.clone(),
                    zone: offering.zone.clone(),
                    capacity_type: offering.capacity_type.clone(),
                    price: offering.price,
                    price_is_estimate: offering.price_is_estimate,
                },
            ));
        }
        // Karpenter's filterOutSameInstanceType, for groups: where the type of a node in
        // the group is itself among the cheaper options, the replacement must cost less
        // than that node. Otherwise keeping it and deleting the others saves more and
        // moves fewer pods (two c6g.large at $0.068 do not become one c7g.large at
        // $0.0725).
        let keep_instead = if candidates.len() > 1 {
            candidates
                .iter()
                .filter_map(|&i| {
                    let f = &world.facts[i];
                    let t = f.instance_type?;
                    cheaper.iter().any(|o| o.1 == t).then_some((f.price?, i))
                })
                .min_by(|a, b| a.0.total_cmp(&b.0))
        } else {
            None
        };
        let cap = keep_instead.map_or(price, |(p, _)| p.min(price));
        let mut options: Vec<(f64, &str, Launch)> = cheaper
            .iter()
            // Never the same instance type again: that is churn, not savings.
            .filter(|o| !candidate_types.contains(&o.1) && o.0 < cap - 1e-9)
            .cloned()
            .collect();
        options.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1)));
        if options.is_empty()
            && let Some((p, i)) = keep_instead
        {
            let f = &world.facts[i];
            let cheapest_other = cheaper
                .iter()
                .filter(|o| !candidate_types.contains(&o.1))
                .min_by(|a, b| a.0.total_cmp(&b.0))
                .map(|o| (o.1.to_string(), o.0));
            return Err(no_cheaper(NoCheaper::KeepInstead {
                node: f.node.name.clone(),
                instance_type: f.instance_type.unwrap_or("").to_string(),
                price: p,
                cheapest_other,
            }));
        }
        if options.is_empty() {
            return Err(no_cheaper(NoCheaper::NotCheaper {
                cheapest: cheapest_seen,
                price,
            }));
        }
        // Karpenter's RemoveInstanceTypeOptionsByPriceAndMinValues: the cheaper options
        // must still span each requirement's minValues.
        for (key, requirement) in requirements.iter() {
            let Some(min) = requirement.min_values else {
                continue;
            };
            let distinct: std::collections::BTreeSet<&str> = options
                .iter()
                .filter_map(|o| {
                    world
                        .instance_type(o.1)?
                        .labels
                        .get(key)
                        .map(String::as_str)
                })
                .collect();
            if distinct.len() < min as usize {
                return Err(no_cheaper(NoCheaper::MinValues {
                    key: key.to_string(),
                    options: options.len(),
                    values: distinct.len(),
                    min,
                }));
            }
        }
        if spot_to_spot {
            if candidates.len() == 1 && options.len() < MIN_SPOT_OPTIONS {
                return Err(no_cheaper(NoCheaper::SpotFlexibility {
                    found: options.len(),
                }));
            }
            // Karpenter keeps a multi-node spot replacement's options whole.
            if candidates.len() == 1 {
                options.truncate(MIN_SPOT_OPTIONS);
            }
        }
        let launch = options[0].2.clone();
        let savings = price - launch.price;
        let mut replacement = claim.clone();
        replacement.instance_type_options = options.iter().map(|o| o.1.to_string()).collect();
        // A claim carries the labels of the type it launches (as `solve` writes them):
        // swap the solver's choice for the cheaper launch.
        let type_named = |n: &str| world.instance_type(n);
        if let Some(old) = type_named(&claim.launch.instance_type) {
            for key in old.labels.keys() {
                replacement.labels.remove(key);
            }
        }
        if let Some(new) = type_named(&launch.instance_type) {
            replacement.labels.extend(new.labels.clone());
        }
        replacement
            .labels
            .insert(labels::ZONE.to_string(), launch.zone.clone());
        replacement.labels.insert(
            labels::CAPACITY_TYPE.to_string(),
            launch.capacity_type.clone(),
        );
        replacement.requirements = requirements;
        replacement.launch = launch;
        Ok(Consolidation {
            decision: Decision::Replace,
            replacement: Some(replacement),
            moves: replace.moves,
            savings,
        })
    }
}

fn consolidation_command(
    world: &World,
    method: Method,
    nodes: &[usize],
    c: Consolidation,
) -> Command {
    let names: Vec<String> = nodes
        .iter()
        .map(|&i| world.facts[i].node.name.clone())
        .collect();
    let why = match c.decision {
        Decision::Delete => "underutilized: its pods fit on the other nodes".to_string(),
        Decision::Replace => {
            "underutilized: its pods fit on the other nodes and one cheaper node".to_string()
        }
    };
    let moves = c.moves;
    debug_assert!(moves.iter().all(|m| m.to != Destination::Pending));
    Command {
        method,
        decision: c.decision,
        nodes: names,
        why,
        replacements: c.replacement.into_iter().collect(),
        moves,
        savings_per_hour: c.savings,
        notes: Vec::new(),
    }
}
