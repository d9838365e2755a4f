//! One disruption pass: expiration, then the first of emptiness, drift, multi-node and
//! single-node consolidation that acts; a reason for every managed node left alone.
//!
//! A `Pass` is the pass being run: the world it changes, the candidates and budgets the
//! graceful methods share, and the outcome as it is built. `Pass::run` calls one method
//! per disruption method, in Karpenter's order.

use kerf_model::pod::PodKey;
use kerf_model::{Drift, NodePool};

use crate::budget::{Budgets, Reason, Taken};
use crate::consolidation::Floors;
use crate::facts::{self, Facts};
use crate::kept::{ConsolidateAfter, DriftHold, EmptyHold, KeptReason, NowhereToGo};
use crate::world::{Simulated, World, waits_for_uninitialized};
use crate::{
    ClaimConditions, Command, Config, Decision, Kept, Method, Move, Outcome, Snapshot,
    render_duration,
};

/// Computes one disruption pass over `snapshot` at `now` (Unix seconds, UTC).
pub fn compute_commands(snapshot: &Snapshot, now: i64, config: &Config) -> Outcome {
    Pass::run(snapshot, now, config, None)
}

/// A pass with only `nodes` as candidates for emptiness, drift and consolidation; every
/// other node stays a destination. This is what validating a command needs: as
/// Karpenter's validator, it asks whether this command's own nodes would still be
/// chosen, for the same decision, not whether the whole cluster would choose it again,
/// which costs a simulation per candidate in the cluster. Expiration still covers every
/// node, as it does in a full pass.
pub fn compute_commands_among(
    snapshot: &Snapshot,
    now: i64,
    config: &Config,
    nodes: &[String],
) -> Outcome {
    Pass::run(snapshot, now, config, Some(nodes))
}

/// A node the graceful methods may disrupt: managed, with a NodeClaim, initialized, not
/// nominated for pending pods and not blocked, and with its NodePool.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Candidate<'a> {
    /// Index into the snapshot's nodes, and so into `World::facts`.
    pub(crate) node: usize,
    pub(crate) pool: &'a NodePool,
}

/// One pass as it runs: what it reads, the world its commands change, and the outcome
/// so far. Each step fills in what the later ones read.
pub(crate) struct Pass<'a> {
    pub(crate) snapshot: &'a Snapshot,
    pub(crate) now: i64,
    pub(crate) config: &'a Config,
    /// The cluster as the pass's commands change it, and its simulations.
    pub(crate) world: World<'a>,
    /// Lower bounds on what a consolidation's replacement costs.
    pub(crate) floors: Floors<'a>,
    /// The graceful methods' candidates, cheapest to disrupt first (none until
    /// `choose_candidates`).
    pub(crate) candidates: Vec<Candidate<'a>>,
    /// The pools' budgets, counted once expiration has acted.
    pub(crate) budgets: Budgets<'a>,
    /// Per node: why the pass leaves it alone, once a step has said.
    pub(crate) kept: Vec<Option<KeptReason>>,
    /// Per node: disrupted by a command of this pass.
    pub(crate) in_command: Vec<bool>,
    /// Where the pods of nodes already being deleted are assumed to go.
    pub(crate) assumed_moves: Vec<Move>,
    /// Expiration's commands, one per expired node.
    pub(crate) expirations: Vec<Command>,
    /// The command of the first graceful method that acts: it wins the pass.
    pub(crate) acted: Option<Command>,
    /// A validation pass (`compute_commands_among`): multi-node consolidation judges
    /// its candidates as one group, as Karpenter's validator simulates exactly the
    /// command's nodes, rather than searching their subsets again.
    pub(crate) validating: bool,
}

impl<'a> Pass<'a> {
    fn run(
        snapshot: &'a Snapshot,
        now: i64,
        config: &'a Config,
        among: Option<&[String]>,
    ) -> Outcome {
        let mut pass = Pass::new(snapshot, now, config, among.is_some());
        pass.place_deleting();
        pass.expiration();
        pass.choose_candidates(among);
        pass.emptiness();
        pass.drift();
        let eligible = pass.consolidation_candidates();
        pass.multi_node_consolidation(&eligible);
        pass.single_node_consolidation(&eligible);
        pass.outcome()
    }

    fn new(snapshot: &'a Snapshot, now: i64, config: &'a Config, validating: bool) -> Pass<'a> {
        let facts = facts::judge(snapshot, now);
        let n = facts.len();
        Pass {
            snapshot,
            now,
            config,
            world: World::new(snapshot, facts, now),
            floors: Floors::new(snapshot),
            candidates: Vec::new(),
            budgets: Budgets::default(),
            kept: vec![None; n],
            in_command: vec![false; n],
            assumed_moves: Vec::new(),
            expirations: Vec::new(),
            acted: None,
            validating,
        }
    }

    /// Nodes already being deleted are no destination, and their pods need room on the
    /// nodes that stay: place them first and count them there from then on.
    fn place_deleting(&mut self) {
        let deleting: Vec<usize> = (0..self.world.facts.len())
            .filter(|&i| self.world.facts[i].deleting)
            .collect();
        if deleting.is_empty() {
            return;
        }
        self.assumed_moves = self.world.place(&deleting, false, self.config).moves;
        self.world.apply(&deleting, &self.assumed_moves);
        for &i in &deleting {
            self.kept[i] = Some(KeptReason::AlreadyDeleting);
        }
    }

    /// Expiration: forceful, whatever the budgets say. Node by node, because each expiry
    /// changes the world the next one is simulated in. It expires NodeClaims: a node
    /// without one never expires.
    fn expiration(&mut self) {
        for i in 0..self.world.facts.len() {
            let f = &self.world.facts[i];
            if !f.managed() || f.deleting || f.claim.is_none() {
                continue;
            }
            let Some(why) = f.expired.clone() else {
                continue;
            };
            let sim = self.world.place(&[i], true, self.config);
            let f = &self.world.facts[i];
            let mut notes = Vec::new();
            if let Some(blocked) = &f.blocked {
                let grace = f
                    .claim
                    .and_then(|c| c.termination_grace_period)
                    .or_else(|| f.pool.and_then(|p| p.termination_grace_period));
                notes.push(match grace {
                    Some(g) => format!(
                        "the drain waits while {blocked}, until terminationGracePeriod {} runs out",
                        render_duration(g.as_secs() as i64)
                    ),
                    None => format!(
                        "the drain waits while {blocked}, indefinitely: no terminationGracePeriod is set"
                    ),
                });
            }
            for u in &sim.plan.unschedulable {
                notes.push(NowhereToGo::of(u).to_string());
            }
            self.world.apply(&[i], &sim.moves);
            let command = replacing(Method::Expiration, &self.world.facts[i], why, sim, notes);
            self.expirations.push(command);
            self.in_command[i] = true;
        }
    }

    /// The budgets, then the candidates: every managed node not yet in a command or
    /// left alone, unless something keeps it (each with its reason), cheapest to disrupt
    /// first. With `among`, only those nodes are candidates.
    fn choose_candidates(&mut self, among: Option<&[String]>) {
        self.budgets = Budgets::count(&self.world.facts, &self.in_command, self.now);
        let nominated = self.nominated();
        let mut candidates = Vec::new();
        for (i, nominated) in nominated.iter().enumerate() {
            let f = &self.world.facts[i];
            if !f.managed() || self.in_command[i] || self.kept[i].is_some() {
                continue;
            }
            match self.candidate(i, nominated, among) {
                Ok(candidate) => candidates.push(candidate),
                Err(why) => self.kept[i] = Some(why),
            }
        }
        let facts = &self.world.facts;
        candidates.sort_by(|a, b| {
            let (fa, fb) = (&facts[a.node], &facts[b.node]);
            fa.disruption_cost
                .total_cmp(&fb.disruption_cost)
                .then_with(|| fa.node.name.cmp(&fb.node.name))
        });
        self.candidates = candidates;
    }

    /// Pending pods by the node the scheduler would put them on: those nodes are
    /// nominated, and not disrupted.
    fn nominated(&self) -> Vec<Vec<PodKey>> {
        let mut nominated = vec![Vec::new(); self.world.facts.len()];
        if self.snapshot.pending_pods.is_empty() {
            return nominated;
        }
        let plan = self
            .world
            .solve_pending(self.snapshot.pending_pods.clone(), self.config);
        for e in plan.existing {
            if let Some(i) = self.snapshot.nodes.iter().position(|n| n.name == e.node) {
                nominated[i] = e.pods;
            }
        }
        nominated
    }

    /// Node `i` as a candidate, or why it is not one.
    fn candidate(
        &self,
        i: usize,
        nominated: &[PodKey],
        among: Option<&[String]>,
    ) -> Result<Candidate<'a>, KeptReason> {
        let f = &self.world.facts[i];
        if f.claim.is_none() {
            // Karpenter disrupts only what it launched: a candidate is a Node with a
            // NodeClaim. The label alone may be copied onto any node.
            return Err(KeptReason::NoNodeClaim);
        }
        let Some(pool) = f.pool else {
            return Err(KeptReason::NodePoolMissing {
                nodepool: f.pool_name.unwrap_or("").to_string(),
            });
        };
        if !f.initialized {
            return Err(KeptReason::NotInitialized);
        }
        if among.is_some_and(|among| !among.contains(&f.node.name)) {
            return Err(KeptReason::NotAmongValidated);
        }
        if !nominated.is_empty() {
            return Err(KeptReason::Nominated {
                pods: nominated.to_vec(),
            });
        }
        if let Some(blocker) = &f.blocked {
            return Err(KeptReason::Blocked(blocker.clone()));
        }
        Ok(Candidate { node: i, pool })
    }

    /// Whether the candidate's `consolidateAfter` has elapsed: emptiness and
    /// consolidation wait for it.
    pub(crate) fn settled(&self, c: Candidate) -> Result<(), ConsolidateAfter> {
        settled(c.pool, self.world.facts[c.node].since_pod_event)
    }

    /// Emptiness: every candidate with no pod to reschedule, settled, as far as the
    /// pools' Empty budgets allow, in one command.
    fn emptiness(&mut self) {
        let mut taken = Taken::default();
        let mut nodes = Vec::new();
        for &c in &self.candidates {
            if !self.world.facts[c.node].reschedulable.is_empty() {
                continue;
            }
            let taking = (self.settled(c).map_err(EmptyHold::ConsolidateAfter)).and_then(|()| {
                (taken.take(&self.budgets, c.pool, Reason::Empty)).map_err(EmptyHold::Budget)
            });
            match taking {
                Ok(()) => nodes.push(c.node),
                Err(hold) => self.kept[c.node] = Some(KeptReason::Empty(hold)),
            }
        }
        if !nodes.is_empty() {
            let why = "empty: nothing but DaemonSet or static pods runs there".to_string();
            let command = deleting(&self.world, Method::Emptiness, &nodes, why);
            self.act(command, &nodes);
        }
    }

    /// Drift: the empty drifted candidates all at once, as far as the pools' Drifted
    /// budgets allow; else the first drifted candidate whose pods all have somewhere to
    /// go.
    fn drift(&mut self) {
        let facts = &self.world.facts;
        let drifted: Vec<(Candidate, Drift)> = (self.candidates.iter())
            .filter(|c| !self.in_command[c.node])
            .filter_map(|c| Some((*c, facts[c.node].drift.clone()?)))
            .collect();
        let (empty, busy): (Vec<_>, Vec<_>) = drifted
            .into_iter()
            .partition(|(c, _)| facts[c.node].reschedulable.is_empty());
        let mut taken = Taken::default();
        let mut going = Vec::new();
        for (c, drift) in &empty {
            let hold = match (
                taken.take(&self.budgets, c.pool, Reason::Drifted),
                &self.acted,
            ) {
                (Ok(()), None) => {
                    going.push((c.node, drift));
                    continue;
                }
                (Ok(()), Some(first)) => DriftHold::ActsFirst(first.method),
                (Err(spent), _) => DriftHold::Budget(spent),
            };
            let drift = drift.clone();
            self.kept[c.node] = Some(KeptReason::Drifted { drift, hold });
        }
        if let [(_, first), ..] = going[..]
            && self.acted.is_none()
        {
            let why = format!("drifted: {first}");
            let nodes: Vec<usize> = going.iter().map(|(i, _)| *i).collect();
            let command = deleting(&self.world, Method::Drift, &nodes, why);
            self.act(command, &nodes);
        }
        for (c, drift) in busy {
            match self.drift_one(c, &drift) {
                Ok(command) => self.act(command, &[c.node]),
                Err(hold) => self.kept[c.node] = Some(KeptReason::Drifted { drift, hold }),
            }
        }
    }

    /// A command replacing drifted candidate `c` (one with pods), or what holds it.
    fn drift_one(&self, c: Candidate, drift: &Drift) -> Result<Command, DriftHold> {
        let f = &self.world.facts[c.node];
        let headroom = self.budgets.headroom(c.pool, Reason::Drifted);
        if headroom.available == 0 {
            return Err(DriftHold::Budget(headroom.spent()));
        }
        if let Some(first) = &self.acted {
            return Err(DriftHold::ActsFirst(first.method));
        }
        let sim = self.world.simulate(&[c.node], true, self.config);
        if let Some(waits) = waits_for_uninitialized(&sim.plan) {
            return Err(DriftHold::WaitsForUninitialized(waits));
        }
        if let Some(u) = sim.plan.unschedulable.first() {
            return Err(DriftHold::NowhereToGo(NowhereToGo::of(u)));
        }
        let why = format!("drifted: {drift}");
        Ok(replacing(Method::Drift, f, why, sim, Vec::new()))
    }

    /// The graceful command that wins the pass, and its nodes.
    pub(crate) fn act(&mut self, command: Command, nodes: &[usize]) {
        self.acted = Some(command);
        for &i in nodes {
            self.in_command[i] = true;
        }
    }

    fn outcome(self) -> Outcome {
        let facts = &self.world.facts;
        let mut commands = self.expirations;
        commands.extend(self.acted);
        let kept = (0..facts.len())
            .filter(|&i| facts[i].managed() && !self.in_command[i])
            .map(|i| Kept {
                node: facts[i].node.name.clone(),
                reason: self.kept[i].clone().unwrap_or(KeptReason::NothingToDo),
            })
            .collect();
        let before: f64 = facts.iter().filter_map(|f| f.price).sum();
        let saved: f64 = commands.iter().map(|c| c.savings_per_hour).sum();
        Outcome {
            conditions: conditions(facts),
            assumed_moves: self.assumed_moves,
            commands,
            kept,
            cost_per_hour_before: round(before),
            cost_per_hour_after: round(before - saved),
        }
    }
}

/// Whether `consolidateAfter` of `pool` has run since a node's last pod event, `since`
/// seconds ago (unknown counts as long ago).
fn settled(pool: &NodePool, since: Option<i64>) -> Result<(), ConsolidateAfter> {
    match pool.disruption.consolidate_after {
        None => Err(ConsolidateAfter::Never),
        Some(after) => match since {
            Some(since) if since < after.as_secs() as i64 => Err(ConsolidateAfter::NotElapsed {
                after_secs: after.as_secs() as i64,
                since_secs: since,
            }),
            _ => Ok(()),
        },
    }
}

/// The conditions of each managed node's NodeClaim that has its NodePool.
fn conditions(facts: &[Facts]) -> Vec<ClaimConditions> {
    facts
        .iter()
        .filter(|f| f.managed())
        .filter_map(|f| {
            let (claim, pool) = (f.claim?, f.pool?);
            Some(ClaimConditions {
                claim: claim.name.clone(),
                drifted: f.drift.clone(),
                consolidatable: f.initialized && settled(pool, f.since_pod_event).is_ok(),
            })
        })
        .collect()
}

/// A command that deletes `nodes` and launches nothing.
fn deleting(world: &World, method: Method, nodes: &[usize], why: String) -> Command {
    Command {
        method,
        decision: Decision::Delete,
        nodes: nodes
            .iter()
            .map(|&i| world.facts[i].node.name.clone())
            .collect(),
        why,
        replacements: Vec::new(),
        moves: Vec::new(),
        savings_per_hour: nodes
            .iter()
            .map(|&i| world.facts[i].price.unwrap_or(0.0))
            .sum(),
        notes: Vec::new(),
    }
}

/// A command for one node whose pods go where `sim` puts them, onto new claims if need be.
fn replacing(
    method: Method,
    f: &Facts,
    why: String,
    sim: Simulated,
    notes: Vec<String>,
) -> Command {
    let replacement_price: f64 = sim.plan.new_claims.iter().map(|c| c.launch.price).sum();
    Command {
        method,
        decision: if sim.plan.new_claims.is_empty() {
            Decision::Delete
        } else {
            Decision::Replace
        },
        nodes: vec![f.node.name.clone()],
        why,
        replacements: sim.plan.new_claims,
        moves: sim.moves,
        savings_per_hour: f.price.unwrap_or(0.0) - replacement_price,
        notes,
    }
}

/// Rounds away float noise from sums of prices.
fn round(x: f64) -> f64 {
    let r = (x * 1e6).round() / 1e6;
    if r == 0.0 { 0.0 } else { r }
}
