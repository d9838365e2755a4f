//! The cluster as a pass changes it, and simulations over it: "if these nodes went, where
//! would their pods go?", answered by `kerf_scheduling::solve`.

use std::cell::RefCell;
use std::collections::BTreeMap;

use kerf_model::{InstanceType, Pod};
use kerf_scheduling::{Input, Plan};

use crate::facts::Facts;
use crate::kept::WaitsForUninitialized;
use crate::{Config, Destination, Move, Snapshot};

pub(crate) struct World<'a> {
    pub(crate) snapshot: &'a Snapshot,
    pub(crate) facts: Vec<Facts<'a>>,
    /// Nodes no longer available as destinations: deleting, or removed by a command.
    pub(crate) gone: Vec<bool>,
    /// Every bound pod (`Snapshot::bound_pods`), by index. Where a pod is now is the
    /// nodes' `Facts::pods`: a pod a command moves to a node that stays is listed there,
    /// one moved to a replacement or nowhere is listed nowhere. Its own `node_name` is
    /// the snapshot's, and is not read.
    pub(crate) pods: &'a [Pod],
    /// Evictions each PDB allows, in `Snapshot::pdbs` order.
    pub(crate) pdb_allowed: Vec<i32>,
    pub(crate) pdb_index: crate::facts::PdbIndex,
    /// The time of the pass (Unix seconds), for `do-not-disrupt` durations.
    now: i64,
    /// Catalog index by instance type name.
    pub(crate) type_idx: BTreeMap<&'a str, usize>,
    /// Per pod in `pods`: whether a simulation's solve must see it as a bound pod. A pod
    /// that no simulated pod's constraints can look at is folded into its node's
    /// allocatable instead (see `rebuild`).
    visible: Vec<bool>,
    /// No pod has a topology spread or pod (anti-)affinity term: nodes only matter to a
    /// solve one by one, so a simulation may leave out nodes none of its pods fits.
    pub(crate) plain: bool,
    /// Some NodePool sets `limits`, which the solve counts against existing nodes.
    limited: bool,
    /// Managed nodes whose NodeClaim has not initialized, by name: a simulation sees them
    /// as they will be once up, but may not count on them (see `refuse_uninitialized`).
    uninitialized: BTreeMap<&'a str, &'a str>,
    /// The scheduling input for "everything that stays", built once per change to the
    /// world; a simulation lifts its candidates' nodes and pods out and puts them back,
    /// rather than cloning the cluster each time (cloning was most of a pass's time).
    scratch: RefCell<Scratch>,
}

#[derive(Default)]
struct Scratch {
    input: Input,
    /// Position in `input.nodes` of each snapshot node still there.
    node_pos: Vec<Option<usize>>,
    /// The range of `input.bound_pods` bound to each `input.nodes` position.
    pod_range: Vec<(usize, usize)>,
    /// Unrequested (CPU, memory) in milli-units of each snapshot node that can take pods,
    /// and their sum: bounds that let a consolidation fail without a simulation.
    free: Vec<(i64, i64)>,
    free_total: (i64, i64),
    /// Snapshot node indices by free CPU, then by free memory, most first.
    by_free_cpu: Vec<usize>,
    by_free_mem: Vec<usize>,
}

/// Room for a group's pods on the nodes that would stay, in milli-units (CPU, memory).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Room {
    pub(crate) need: (i64, i64),
    pub(crate) free: (i64, i64),
    /// Requests of pods larger than any single remaining node's free room.
    pub(crate) stuck: (i64, i64),
}

/// A simulation's answer for a group of candidates.
pub(crate) struct Simulated {
    pub(crate) plan: Plan,
    pub(crate) moves: Vec<Move>,
}

impl<'a> World<'a> {
    pub(crate) fn new(snapshot: &'a Snapshot, facts: Vec<Facts<'a>>, now: i64) -> World<'a> {
        let uninitialized = facts
            .iter()
            .filter(|f| !f.initialized)
            .filter_map(|f| Some((f.node.name.as_str(), f.claim?.name.as_str())))
            .collect();
        let n = facts.len();
        let pdb_index = crate::facts::PdbIndex::new(&snapshot.pdbs);
        let world = World {
            snapshot,
            facts,
            gone: vec![false; n],
            pods: &snapshot.bound_pods,
            pdb_allowed: crate::facts::pdb_allowed(snapshot, &pdb_index),
            pdb_index,
            now,
            type_idx: snapshot
                .instance_types
                .iter()
                .enumerate()
                .map(|(i, it)| (it.name.as_str(), i))
                .collect(),
            // Every pod a simulation reschedules is one of the bound pods, and the pending
            // pods are solved once for nominations: their constraints are all the ones a
            // solve over this world looks with.
            visible: {
                let visibility = kerf_scheduling::Visibility::new(
                    snapshot.bound_pods.iter().chain(&snapshot.pending_pods),
                );
                snapshot
                    .bound_pods
                    .iter()
                    .map(|p| visibility.sees(p))
                    .collect()
            },
            plain: !snapshot.bound_pods.iter().any(Pod::has_inter_pod_terms),
            limited: snapshot.nodepools.iter().any(|np| !np.limits.is_empty()),
            uninitialized,
            scratch: RefCell::new(Scratch::default()),
        };
        world.rebuild();
        world
    }

    pub(crate) fn instance_type(&self, name: &str) -> Option<&'a InstanceType> {
        let snapshot: &'a Snapshot = self.snapshot;
        self.type_idx
            .get(name)
            .map(|&i| &snapshot.instance_types[i])
    }

    /// Rebuilds the scratch input from the nodes that have not gone, each followed by its
    /// visible pods (so a node's pods are one range). The other pods are folded into their
    /// node: its allocatable is lowered by their requests. To the solver that is the same
    /// node (a pod's requests include its `pods: 1`), and a simulation's cost no longer
    /// grows with every pod in the cluster, only with the nodes and the visible pods.
    pub(crate) fn rebuild(&self) {
        let snapshot = self.snapshot;
        let mut scratch = Scratch {
            node_pos: vec![None; snapshot.nodes.len()],
            free: vec![(0, 0); snapshot.nodes.len()],
            ..Scratch::default()
        };
        for (i, f) in self.facts.iter().enumerate() {
            if self.gone[i] {
                continue;
            }
            if !f.node.unschedulable {
                let (mut cpu, mut mem) = (
                    f.node.allocatable.get("cpu").0,
                    f.node.allocatable.get("memory").0,
                );
                for &p in &f.pods {
                    cpu -= self.pods[p].requests.get("cpu").0;
                    mem -= self.pods[p].requests.get("memory").0;
                }
                scratch.free[i] = (cpu.max(0), mem.max(0));
                scratch.free_total.0 += cpu.max(0);
                scratch.free_total.1 += mem.max(0);
            }
            scratch.node_pos[i] = Some(scratch.input.nodes.len());
            // As Karpenter's disruption simulation sees a node (`StateNode.Taints`): one
            // still initializing without the startup and ephemeral taints it will shed.
            let mut node = if self.uninitialized.contains_key(f.node.name.as_str()) {
                let startup = f.pool.map_or(&[][..], |p| &p.startup_taints[..]);
                snapshot.nodes[i].for_provisioning(false, startup)
            } else {
                snapshot.nodes[i].clone()
            };
            for &p in f.pods.iter().filter(|&&p| !self.visible[p]) {
                node.allocatable.sub(&self.pods[p].requests);
            }
            scratch.input.nodes.push(node);
            let start = scratch.input.bound_pods.len();
            scratch
                .input
                .bound_pods
                .extend(f.pods.iter().filter(|&&p| self.visible[p]).map(|&p| {
                    let mut pod = self.pods[p].clone();
                    pod.node_name = Some(f.node.name.clone());
                    pod
                }));
            scratch
                .pod_range
                .push((start, scratch.input.bound_pods.len()));
        }
        let mut order: Vec<usize> = (0..snapshot.nodes.len())
            .filter(|&i| scratch.free[i] != (0, 0))
            .collect();
        order.sort_by_key(|&i| std::cmp::Reverse(scratch.free[i].0));
        scratch.by_free_cpu = order.clone();
        order.sort_by_key(|&i| std::cmp::Reverse(scratch.free[i].1));
        scratch.by_free_mem = order;
        // The per-pass parts of the input carry over from the last build; the first
        // takes them from the snapshot.
        let mut old = self.scratch.borrow_mut();
        if old.node_pos.is_empty() {
            old.input.nodepools = snapshot.nodepools.clone();
            old.input.instance_types = snapshot.instance_types.clone();
            old.input.daemonsets = snapshot.daemonsets.clone();
            old.input.namespaces = snapshot.namespaces.clone();
        }
        scratch.input.nodepools = std::mem::take(&mut old.input.nodepools);
        scratch.input.instance_types = std::mem::take(&mut old.input.instance_types);
        scratch.input.daemonsets = std::mem::take(&mut old.input.daemonsets);
        scratch.input.namespaces = std::mem::take(&mut old.input.namespaces);
        *old = scratch;
    }

    /// Where `pods` (not bound, not the world's) would go in the world as it stands:
    /// onto the nodes that stay, or onto new claims.
    pub(crate) fn solve_pending(&self, pods: Vec<Pod>, config: &Config) -> Plan {
        let mut scratch = self.scratch.borrow_mut();
        scratch.input.pods = pods;
        let plan = kerf_scheduling::solve(&scratch.input, &simulation(config));
        scratch.input.pods.clear();
        plan
    }

    /// Where the reschedulable pods of `candidates` would go if those nodes went:
    /// onto the nodes that stay, and, with `launch`, onto new claims from the NodePools.
    /// A pod it would put on a node that has not initialized does not schedule
    /// (`refuse_uninitialized`): this is the simulation a graceful disruption is decided by.
    pub(crate) fn simulate(
        &self,
        candidates: &[usize],
        launch: bool,
        config: &Config,
    ) -> Simulated {
        self.simulate_counting(candidates, launch, config, false)
    }

    /// `simulate` for pods that go whatever the simulation says (their node is already
    /// being deleted, or expires): they land on a node still coming up once it is up, so
    /// that placement counts.
    pub(crate) fn place(&self, candidates: &[usize], launch: bool, config: &Config) -> Simulated {
        self.simulate_counting(candidates, launch, config, true)
    }

    fn simulate_counting(
        &self,
        candidates: &[usize],
        launch: bool,
        config: &Config,
        count_uninitialized: bool,
    ) -> Simulated {
        let pods: Vec<Pod> = candidates
            .iter()
            .flat_map(|&i| self.facts[i].reschedulable.iter())
            .map(|&p| {
                let mut pod = self.pods[p].clone();
                pod.node_name = None;
                pod
            })
            .collect();
        // Without inter-pod terms a node no pod fits in changes nothing in a solve
        // (unless NodePool limits count it): leave those out. In a well-packed cluster
        // that is most of them. Only the placements are the same, though: a pod left
        // unschedulable would be explained without the nodes left out, so where the
        // reason is shown (launching simulations) it is solved again over every node.
        let plan = if self.plain && !(launch && self.limited) {
            let plan = self.solve_narrowed(candidates, pods.clone(), launch, config);
            // Every debug build (the tests) checks the claim against the full solve.
            #[cfg(debug_assertions)]
            {
                let full = self.solve_lifted(candidates, pods.clone(), launch, config);
                debug_assert_eq!(plan.existing, full.existing, "narrowed simulation differs");
                debug_assert_eq!(
                    plan.new_claims, full.new_claims,
                    "narrowed simulation differs"
                );
                let stuck = |p: &Plan| {
                    p.unschedulable
                        .iter()
                        .map(|u| u.pod.clone())
                        .collect::<Vec<_>>()
                };
                debug_assert_eq!(stuck(&plan), stuck(&full), "narrowed simulation differs");
            }
            if launch && !plan.unschedulable.is_empty() {
                self.solve_lifted(candidates, pods, launch, config)
            } else {
                plan
            }
        } else {
            self.solve_lifted(candidates, pods, launch, config)
        };
        let plan = if count_uninitialized {
            plan
        } else {
            self.refuse_uninitialized(plan)
        };
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

    /// Karpenter's `SimulateScheduling`: a pod the simulation puts on a node whose
    /// NodeClaim has not initialized is a pod that does not schedule ("would schedule
    /// against uninitialized nodeclaim/…, node/…"). A disruption may not count on a node
    /// that is not up yet; it waits for it instead of replacing or deleting around it.
    fn refuse_uninitialized(&self, mut plan: Plan) -> Plan {
        if self.uninitialized.is_empty() {
            return plan;
        }
        let unschedulable = &mut plan.unschedulable;
        plan.existing.retain_mut(|e| {
            let Some(claim) = self.uninitialized.get(e.node.as_str()) else {
                return true;
            };
            let reason = format!("{UNINITIALIZED} nodeclaim/{claim}, node/{}", e.node);
            unschedulable.extend(e.pods.drain(..).map(|pod| kerf_scheduling::Unschedulable {
                pod,
                reason: reason.clone(),
            }));
            false
        });
        plan
    }

    /// Solves `pods` over the nodes that stay, with room for at least the smallest of
    /// them in CPU and memory (`free` is an upper bound on what the solve finds free, so
    /// no node left out could have taken a pod).
    fn solve_narrowed(
        &self,
        candidates: &[usize],
        pods: Vec<Pod>,
        launch: bool,
        config: &Config,
    ) -> Plan {
        let mut guard = self.scratch.borrow_mut();
        let scratch = &mut *guard;
        let smallest = kerf_scheduling::smallest_request(&pods);
        let mut sorted = candidates.to_vec();
        sorted.sort_unstable();
        let input = &mut scratch.input;
        let mut narrowed = Input {
            pods,
            daemonsets: std::mem::take(&mut input.daemonsets),
            namespaces: std::mem::take(&mut input.namespaces),
            ..Input::default()
        };
        if launch {
            narrowed.nodepools = std::mem::take(&mut input.nodepools);
            narrowed.instance_types = std::mem::take(&mut input.instance_types);
        }
        for (i, pos) in scratch.node_pos.iter().enumerate() {
            let Some(pos) = *pos else { continue };
            let (cpu, mem) = scratch.free[i];
            if cpu < smallest.0 || mem < smallest.1 || sorted.binary_search(&i).is_ok() {
                continue;
            }
            narrowed.nodes.push(input.nodes[pos].clone());
            let (start, end) = scratch.pod_range[pos];
            narrowed
                .bound_pods
                .extend_from_slice(&input.bound_pods[start..end]);
        }
        let plan = kerf_scheduling::solve(&narrowed, &simulation(config));
        input.daemonsets = narrowed.daemonsets;
        input.namespaces = narrowed.namespaces;
        if launch {
            input.nodepools = narrowed.nodepools;
            input.instance_types = narrowed.instance_types;
        }
        plan
    }

    /// Solves `pods` over every node that stays: the candidates' nodes and pods are
    /// lifted out of the scratch input and put back.
    fn solve_lifted(
        &self,
        candidates: &[usize],
        pods: Vec<Pod>,
        launch: bool,
        config: &Config,
    ) -> Plan {
        let mut guard = self.scratch.borrow_mut();
        let scratch = &mut *guard;
        let mut positions: Vec<usize> = candidates
            .iter()
            .filter_map(|&i| scratch.node_pos[i])
            .collect();
        positions.sort_unstable();
        positions.dedup();
        // Lift the candidates out, last first so earlier positions stay valid; they go
        // back in the reverse order, which restores the input exactly.
        let input = &mut scratch.input;
        let mut lifted_pods = Vec::with_capacity(positions.len());
        let mut lifted_nodes = Vec::with_capacity(positions.len());
        for &p in positions.iter().rev() {
            let (start, end) = scratch.pod_range[p];
            lifted_pods.push((
                start,
                input.bound_pods.drain(start..end).collect::<Vec<_>>(),
            ));
            lifted_nodes.push((p, input.nodes.remove(p)));
        }
        input.pods = pods;
        let (pools, types) = if launch {
            (Vec::new(), Vec::new())
        } else {
            (
                std::mem::take(&mut input.nodepools),
                std::mem::take(&mut input.instance_types),
            )
        };
        let plan = kerf_scheduling::solve(input, &simulation(config));
        if !launch {
            input.nodepools = pools;
            input.instance_types = types;
        }
        input.pods.clear();
        for ((p, node), (start, pods)) in lifted_nodes
            .into_iter()
            .rev()
            .zip(lifted_pods.into_iter().rev())
        {
            input.nodes.insert(p, node);
            input.bound_pods.splice(start..start, pods);
        }
        plan
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
            self.facts[dest].pods.push(p);
            if crate::facts::reschedulable(&self.pods[p]) {
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
                self.pods,
                f.node,
                f.claim,
                &f.pods,
                &self.pdb_allowed,
                &self.pdb_index,
                self.now,
            );
            self.facts[dest].blocked = blocked;
        }
        self.rebuild();
    }

    /// Evictions a drain of node `i` asks of each PDB, as `(index into Snapshot::pdbs,
    /// pods)`.
    pub(crate) fn pdb_asks(&self, i: usize) -> Vec<(usize, i32)> {
        crate::facts::pdb_asks(
            self.snapshot,
            self.pods,
            &self.facts[i].reschedulable,
            &self.pdb_index,
        )
    }

    /// (CPU, memory) the candidates' reschedulable pods ask for, what is free on the
    /// nodes that would stay, and what of the pods can go to none of those nodes because
    /// it is larger than any one node's free room, in milli-units.
    pub(crate) fn need_and_free(&self, candidates: &[usize]) -> Room {
        let scratch = self.scratch.borrow();
        let mut sorted = candidates.to_vec();
        sorted.sort_unstable();
        let outside = |i: &&usize| sorted.binary_search(i).is_err();
        let max_cpu = scratch
            .by_free_cpu
            .iter()
            .find(outside)
            .map_or(0, |&i| scratch.free[i].0);
        let max_mem = scratch
            .by_free_mem
            .iter()
            .find(outside)
            .map_or(0, |&i| scratch.free[i].1);
        let mut room = Room::default();
        for &i in candidates {
            for &p in &self.facts[i].reschedulable {
                let (cpu, mem) = (
                    self.pods[p].requests.get("cpu").0,
                    self.pods[p].requests.get("memory").0,
                );
                room.need.0 += cpu;
                room.need.1 += mem;
                if cpu > max_cpu || mem > max_mem {
                    room.stuck.0 += cpu;
                    room.stuck.1 += mem;
                }
            }
        }
        room.free = scratch.free_total;
        for &i in candidates {
            room.free.0 -= scratch.free[i].0;
            room.free.1 -= scratch.free[i].1;
        }
        room
    }

    /// The smallest CPU and memory a pod of the candidates asks for.
    pub(crate) fn smallest_request(&self, candidates: &[usize]) -> (i64, i64) {
        kerf_scheduling::smallest_request(
            candidates
                .iter()
                .flat_map(|&i| &self.facts[i].reschedulable)
                .map(|&p| &self.pods[p]),
        )
    }

    /// Free (CPU, memory) on the nodes that would stay and have room for at least the
    /// candidates' smallest pod. Where no pod has an inter-pod term that is all the room
    /// a simulation can use: the rest is fragments no pod of theirs fits in.
    pub(crate) fn usable_free(&self, candidates: &[usize]) -> (i64, i64) {
        let smallest = self.smallest_request(candidates);
        let mut sorted = candidates.to_vec();
        sorted.sort_unstable();
        let scratch = self.scratch.borrow();
        let mut total = (0, 0);
        for (i, &(cpu, mem)) in scratch.free.iter().enumerate() {
            if scratch.node_pos[i].is_some()
                && cpu >= smallest.0
                && mem >= smallest.1
                && sorted.binary_search(&i).is_err()
            {
                total.0 += cpu;
                total.1 += mem;
            }
        }
        total
    }

    /// CPU the candidates' pods ask for, and CPU free on the nodes that would stay, in
    /// cores: for "needs 14.2 vCPU elsewhere, 3.1 free".
    pub(crate) fn cpu_need_and_free(&self, candidates: &[usize]) -> (f64, f64) {
        let room = self.need_and_free(candidates);
        (room.need.0 as f64 / 1000.0, room.free.0 as f64 / 1000.0)
    }
}

/// The start of the reason `refuse_uninitialized` gives, Karpenter's words.
const UNINITIALIZED: &str = "would schedule against uninitialized";

/// Karpenter's "Not all pods would schedule, <pod> => would schedule against
/// uninitialized …", when a pod of the plan waits for a node that is not up yet.
pub(crate) fn waits_for_uninitialized(plan: &Plan) -> Option<WaitsForUninitialized> {
    (plan.unschedulable.iter())
        .find(|u| u.reason.starts_with(UNINITIALIZED))
        .map(|u| WaitsForUninitialized {
            pod: u.pod.clone(),
            reason: u.reason.clone(),
        })
}

/// The scheduling config of a simulation: a pass runs hundreds, and shows the reason of
/// a few unplaceable pods, so the existing nodes are counted rather than each explained.
/// Claims are never split: a consolidation replaces its nodes with one claim, as
/// Karpenter's does, and the provisioner's split of one big claim into several cheaper
/// ones would turn "one node holds them" into "needs N new nodes" (five 900m pods: one
/// c-8x, or five c-1x at less).
fn simulation(config: &Config) -> kerf_scheduling::Config {
    kerf_scheduling::Config {
        node_reasons: kerf_scheduling::NodeReasons::Count,
        split_claims: kerf_scheduling::SplitClaims::Never,
        ..config.scheduling
    }
}
