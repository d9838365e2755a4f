//! The cluster as a pass changes it, and simulations over it: "if these nodes went, where
//! would their pods go?", answered by `kerf_scheduling::solve`.

use kerf_model::labels;
use kerf_model::{Pod, Quantity, Requirement};
use kerf_scheduling::{Input, Launch, NewClaim, Plan};

use crate::facts::Facts;
use crate::{Config, Decision, Destination, Move, Snapshot};

pub(crate) struct World<'a> {
    pub(crate) snapshot: &'a Snapshot,
    pub(crate) facts: Vec<Facts<'a>>,
    /// Nodes no longer available as destinations: deleting, or removed by a command.
    pub(crate) gone: Vec<bool>,
    /// Every bound pod, `Snapshot::bound_pods` at first; a pod a command moves to a node
    /// that stays is rebound there (and listed in that node's facts), one moved to a
    /// replacement or nowhere is unbound.
    pub(crate) pods: Vec<Pod>,
    /// Evictions each PDB allows, in `Snapshot::pdbs` order.
    pub(crate) pdb_allowed: Vec<i32>,
}

/// A simulation's answer for a group of candidates.
pub(crate) struct Simulated {
    pub(crate) plan: Plan,
    pub(crate) moves: Vec<Move>,
}

/// A consolidation that works.
pub(crate) struct Consolidation {
    pub(crate) decision: Decision,
    pub(crate) replacement: Option<NewClaim>,
    pub(crate) moves: Vec<Move>,
    pub(crate) savings: f64,
}

impl<'a> World<'a> {
    /// Where the reschedulable pods of `candidates` would go if those nodes went:
    /// onto the nodes that stay, and, with `launch`, onto new claims from the NodePools.
    pub(crate) fn simulate(
        &self,
        candidates: &[usize],
        launch: bool,
        config: &Config,
    ) -> Simulated {
        let snapshot = self.snapshot;
        let stays = |i: usize| !self.gone[i] && !candidates.contains(&i);
        let nodes = (0..snapshot.nodes.len())
            .filter(|&i| stays(i))
            .map(|i| snapshot.nodes[i].clone())
            .collect();
        let bound_pods: Vec<Pod> = (0..snapshot.nodes.len())
            .filter(|&i| stays(i))
            .flat_map(|i| self.facts[i].pods.iter().map(|&p| self.pods[p].clone()))
            .collect();
        let pods = candidates
            .iter()
            .flat_map(|&i| self.facts[i].reschedulable.iter())
            .map(|&p| {
                let mut pod = self.pods[p].clone();
                pod.node_name = None;
                pod
            })
            .collect();
        let input = Input {
            pods,
            bound_pods,
            nodes,
            nodepools: if launch {
                snapshot.nodepools.clone()
            } else {
                Vec::new()
            },
            instance_types: if launch {
                snapshot.instance_types.clone()
            } else {
                Vec::new()
            },
            daemonsets: snapshot.daemonsets.clone(),
            namespaces: snapshot.namespaces.clone(),
        };
        let plan = kerf_scheduling::solve(&input, &config.scheduling);
        let mut moves = Vec::new();
        for e in &plan.existing {
            moves.extend(e.pods.iter().map(|p| Move {
                pod: p.clone(),
                to: Destination::Node(e.node.clone()),
            }));
        }
        for (i, c) in plan.new_claims.iter().enumerate() {
            moves.extend(c.pods.iter().map(|p| Move {
                pod: p.clone(),
                to: Destination::Replacement(i),
            }));
        }
        for u in &plan.unschedulable {
            moves.push(Move {
                pod: u.pod.clone(),
                to: Destination::Pending,
            });
        }
        moves.sort_by(|a, b| a.pod.cmp(&b.pod));
        Simulated { plan, moves }
    }

    /// Removes the nodes and binds their moved pods where the moves say. Pods bound for
    /// replacements are not tracked further: later commands in the pass do not count on
    /// a replacement's spare room.
    pub(crate) fn apply(&mut self, nodes: &[usize], moves: &[Move]) {
        let mut displaced: Vec<usize> = Vec::new();
        for &i in nodes {
            self.gone[i] = true;
            displaced.append(&mut self.facts[i].pods);
            self.facts[i].reschedulable.clear();
        }
        for &p in &displaced {
            self.pods[p].node_name = None;
        }
        let mut touched = Vec::new();
        for m in moves {
            let Destination::Node(to) = &m.to else {
                continue;
            };
            let Some(&p) = displaced.iter().find(|&&p| self.pods[p].key == m.pod) else {
                continue;
            };
            let Some(dest) = self.snapshot.nodes.iter().position(|n| &n.name == to) else {
                continue;
            };
            self.pods[p].node_name = Some(to.clone());
            self.facts[dest].pods.push(p);
            if !self.pods[p].is_daemon() {
                self.facts[dest].reschedulable.push(p);
            }
            touched.push(dest);
        }
        // A node that received a do-not-disrupt pod (or one under an exhausted PDB) is
        // now protected too.
        for dest in touched {
            let f = &self.facts[dest];
            let blocked = crate::facts::blocker(
                self.snapshot,
                &self.pods,
                f.node,
                f.claim,
                &f.pods,
                &self.pdb_allowed,
            );
            self.facts[dest].blocked = blocked;
        }
    }

    /// CPU the candidates' pods ask for, and CPU free on the nodes that would stay, in
    /// cores: for "needs 14.2 vCPU elsewhere, 3.1 free".
    pub(crate) fn cpu_need_and_free(&self, candidates: &[usize]) -> (f64, f64) {
        let cpu = |q: Quantity| q.0 as f64 / 1000.0;
        let need: f64 = candidates
            .iter()
            .flat_map(|&i| self.facts[i].reschedulable.iter())
            .map(|&p| cpu(self.pods[p].requests.get("cpu")))
            .sum();
        let mut free = 0.0;
        for (i, f) in self.facts.iter().enumerate() {
            if self.gone[i] || candidates.contains(&i) || f.node.unschedulable {
                continue;
            }
            let used: f64 = f
                .pods
                .iter()
                .map(|&p| cpu(self.pods[p].requests.get("cpu")))
                .sum();
            free += (cpu(f.node.allocatable.get("cpu")) - used).max(0.0);
        }
        (need, free)
    }

    /// Karpenter's `computeConsolidation` for a group: delete when the pods fit on the
    /// nodes that stay; else replace with exactly one claim whose cheapest launchable
    /// option is cheaper than the group. `Err` is the reason it cannot.
    pub(crate) fn consolidate(
        &self,
        candidates: &[usize],
        config: &Config,
    ) -> Result<Consolidation, String> {
        let mut price = 0.0;
        for &i in candidates {
            let f = &self.facts[i];
            match f.price {
                Some(p) => price += p,
                None => {
                    return Err(format!(
                        "its price is unknown: the catalog has no {} offering of {}",
                        f.capacity_type,
                        f.instance_type.unwrap_or("(no instance type label)")
                    ));
                }
            }
        }
        let delete = self.simulate(candidates, false, config);
        if delete.plan.unschedulable.is_empty() {
            return Ok(Consolidation {
                decision: Decision::Delete,
                replacement: None,
                moves: delete.moves,
                savings: price,
            });
        }
        let (need, free) = self.cpu_need_and_free(candidates);
        let short = format!("its pods need {need:.1} vCPU elsewhere, {free:.1} free");
        let replace = self.simulate(candidates, true, config);
        if let Some(u) = replace.plan.unschedulable.first() {
            return Err(format!(
                "no cheaper placement: {short}, and pod {} fits no new node either: {}",
                u.pod, u.reason
            ));
        }
        if replace.plan.new_claims.len() > 1 {
            return Err(format!(
                "no cheaper placement: {short}; they would need {} new nodes, and consolidation launches at most one",
                replace.plan.new_claims.len()
            ));
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
            .all(|&i| self.facts[i].capacity_type == labels::CAPACITY_TYPE_SPOT);
        let mut requirements = claim.requirements.clone();
        let ct = requirements.get(labels::CAPACITY_TYPE).cloned();
        let spot_possible = ct
            .as_ref()
            .is_none_or(|r| r.has(labels::CAPACITY_TYPE_SPOT));
        let spot_to_spot = all_spot && spot_possible;
        if spot_to_spot && !config.spot_to_spot {
            return Err(format!(
                "no cheaper placement: {short}; replacing spot with spot needs spot-to-spot consolidation, which is off (--spot-to-spot)"
            ));
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
            .filter_map(|&i| self.facts[i].instance_type)
            .collect();
        let mut cheapest_seen: Option<(String, f64)> = None;
        let mut options: Vec<(f64, &str, Launch)> = Vec::new();
        for name in &claim.instance_type_options {
            let Some(it) = self
                .snapshot
                .instance_types
                .iter()
                .find(|it| &it.name == name)
            else {
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
            // Never the same instance type again: that is churn, not savings.
            if candidate_types.contains(&name.as_str()) || offering.price >= price - 1e-9 {
                continue;
            }
            options.push((
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
        options.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1)));
        if options.is_empty() {
            let cheapest = match cheapest_seen {
                Some((name, p)) => format!(
                    "the cheapest replacement, {name} at ${p:.4}/h, is not cheaper than ${price:.4}/h"
                ),
                None => "no replacement instance type has a launchable offering".to_string(),
            };
            return Err(format!("no cheaper placement: {short}; {cheapest}"));
        }
        if spot_to_spot {
            // Karpenter's MinInstanceTypesForSpotToSpotConsolidation: a single spot node is
            // only replaced when at least 15 cheaper types exist, and the launch keeps
            // the 15 cheapest, so the replacement is not itself the next candidate.
            const MIN_SPOT_OPTIONS: usize = 15;
            if candidates.len() == 1 && options.len() < MIN_SPOT_OPTIONS {
                return Err(format!(
                    "no cheaper placement: {short}; spot-to-spot needs {MIN_SPOT_OPTIONS} cheaper instance types to keep launch flexibility, found {}",
                    options.len()
                ));
            }
            options.truncate(MIN_SPOT_OPTIONS);
        }
        let launch = options[0].2.clone();
        let savings = price - launch.price;
        let mut replacement = claim.clone();
        replacement.instance_type_options = options.iter().map(|o| o.1.to_string()).collect();
        // A claim carries the labels of the type it launches (as `solve` writes them):
        // swap the solver's choice for the cheaper launch.
        let type_named = |n: &str| self.snapshot.instance_types.iter().find(|it| it.name == n);
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
