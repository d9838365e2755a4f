//! The disruption queue. Every `disruption_interval_ms` a pass runs
//! `kerf_disruption::compute_commands` over the view; a command it returns waits
//! `disruption_validation_ms` and is re-validated by a fresh pass over its own nodes
//! (`compute_commands_among`: those nodes must still be chosen, for the same decision)
//! before anything happens. Then its nodes are
//! tainted `karpenter.sh/disrupted:NoSchedule`, its replacements are created, and once
//! every replacement is initialized the nodes' claims are deleted (termination drains
//! them). If a replacement fails, the nodes are untainted and the command given up.
//!
//! Expiration commands are left to the lifecycle loop, which deletes expired claims
//! directly, as Karpenter v1's expiration controller does.
//!
//! Up to six commands wait for validation at once (`MAX_PENDING`): a pass that finds
//! a command is followed at once by another, which counts the waiting commands' nodes
//! as leaving (against their budgets, and no room for other pods), so commands smaller
//! than the budget validate together rather than one whole validation each in turn.
//! Karpenter's disruption loop waits out each validation before it looks again; each
//! command's validation here still re-checks its own nodes on the view of its time, with
//! the commands decided before it (started by then) leaving and those decided after it
//! (which assumed it would go) not. Several commands may be in flight, as
//! Karpenter's orchestration queue holds every started command while the disruption
//! loop looks for the next: once a command's nodes are tainted and its replacements
//! created, the next pass runs as soon as those nodes have left the view or one
//! interval has passed (Karpenter's runs at once; see `Queue::step`), and passes go on
//! every interval while replacements launch. A node of a command in flight is tainted `karpenter.sh/disrupted`,
//! so every later pass treats it as leaving (its pods need room elsewhere; it is no
//! candidate and counts against its pool's budget), and commands in flight never share
//! a node or exceed a budget together. A step in which a command finishes or gives up
//! runs no pass: its deletions and untaints are not in the view yet.
//!
//! A pass whose view has not changed since the last
//! pass (same `generation`) and that found nothing is not repeated for up to
//! `disruption_idle_recheck_ms` (five minutes, as Karpenter marks the cluster
//! "consolidated" and skips consolidation until it changes or five minutes pass): the
//! pass is a pure function of the view and the time, and only time-based rules can
//! change its answer on an unchanged view. The first moment a node it kept for
//! `consolidateAfter` has waited long enough is one of them, and a pass runs then (in
//! Karpenter that moment writes the NodeClaim's `Consolidatable` condition, a cluster
//! change that ends the "consolidated" state). The others (expiry of the
//! unavailable-offerings cache, budget schedules) may act up to the recheck later.
//!
//! Each full pass tells the owners of the nodes it leaves alone what Karpenter tells
//! them: `DisruptionBlocked` for a node that is no candidate (not initialized, nominated,
//! a PDB that allows no eviction; a `do-not-disrupt` annotation is the user's choice and
//! is not reported) and `Unconsolidatable` for one single-node consolidation could not
//! improve, on the Node and its NodeClaim. Each node is told once per the reason's
//! dedupe window (2 and 15 minutes, Karpenter's), or again when its reason changes, so
//! a quiet cluster does not record an event per node per pass.
//!
//! After a restart the commands in flight are rebuilt from the cluster: each replacement
//! carries `kerf.sh/replaces` (the command's method, how many replacements it launched,
//! the NodeClaims it replaces), so a command whose nodes are still tainted and whose
//! replacements all exist is resumed where it stood, and no replacement is launched
//! twice. Nodes still tainted `karpenter.sh/disrupted` that no command resumes, and
//! whose claims are not deleting, are untainted, as Karpenter does at startup (its
//! commands live in memory only; their replacements stay as ordinary capacity, which the
//! next pass may find empty and remove while it launches another).
//!
//! The taint is kept level-triggered, not only at startup: each step, a node of a
//! command in flight that lacks it is tainted again and a node in no command (its claim
//! not deleting) that carries it is untainted, so a write that failed is retried.

use std::collections::{BTreeMap, BTreeSet};

use kerf_cloud::Offer;
use kerf_disruption::{Command, Decision, Destination, Held, Kept, Method, Snapshot};
use kerf_model::pod::PodKey;
use kerf_model::{Effect, Node, Pod, Taint, labels};

use crate::provisioner::{Namer, catalog_now, claim_for};
use crate::record::method_reason;
use crate::termination;
use crate::{Action, Claim, ClusterView, Config, Reason, Stopwatch, Subject, Work};

/// Commands decided and waiting for their validation at once, at most. Karpenter's
/// disruption loop waits out each command's validation before it looks for the next;
/// kerf looks on while they wait (their nodes counted as leaving), so commands smaller
/// than the budget do not each cost a whole validation in turn.
const MAX_PENDING: usize = 6;

#[derive(Debug, Default)]
pub(crate) struct Queue {
    last_pass_at: Option<i64>,
    last_generation: u64,
    last_found_nothing: bool,
    /// When the last full pass's answer next changes on the same view: the first
    /// moment a node it kept for `consolidateAfter` has waited long enough.
    rule_changes_at: Option<i64>,
    /// Commands waiting out their validation, in the order they were decided.
    pending: Vec<(Command, i64)>,
    /// The last full pass found a command and there is room for another: the next step
    /// passes again at once, so the next command validates alongside it.
    again: bool,
    /// The nodes of the command started last, while they are still in the view: the
    /// next pass waits for them to go, or for one interval, whichever comes first.
    leaving: Vec<String>,
    /// Commands whose nodes are tainted and whose replacements are launching.
    active: Vec<Active>,
    /// Commands whose nodes are draining, in their first `LARGEST_FIRST_MS`.
    drains: Vec<Drain>,
    /// Nodes told they are held: the reason, its message and when.
    told: BTreeMap<String, (Reason, String, i64)>,
    /// NodePools told a budget blocks a disruption reason, and when.
    pools_told: BTreeMap<(String, kerf_disruption::Reason), i64>,
}

#[derive(Debug)]
struct Active {
    method: Method,
    nodes: Vec<String>,
    replacements: Vec<String>,
    /// Empty for a command resumed after a restart.
    moves: Moves,
}

/// The displaced pods a command's pass placed on its replacements, and those it placed
/// on nodes that stay.
#[derive(Debug, Default)]
struct Moves {
    onto_new: Vec<PodKey>,
    onto_staying: Vec<PodKey>,
}

impl Moves {
    fn of(command: &Command) -> Moves {
        let mut moves = Moves::default();
        for m in &command.moves {
            match m.to {
                Destination::Replacement(_) => moves.onto_new.push(m.pod.clone()),
                Destination::Node(_) => moves.onto_staying.push(m.pod.clone()),
                Destination::Pending => {}
            }
        }
        moves
    }
}

/// A command's drain, in its first `termination::LARGEST_FIRST_MS`: while any drain's
/// pods bound for its replacements are landing (still on their nodes, or any pod
/// pending), the pods every drain's pass placed on nodes that stay are held back.
///
/// kube-scheduler does not know the plan. By its default scoring it binds each pod to
/// the emptiest node that fits, and a replacement just launched is the emptiest: pods
/// meant for the gaps on staying nodes, evicted alongside the rest, took the
/// replacement's room, and the pods meant for it then fit nowhere (in a run of
/// kerf-kwokbench's Wide, one replacement got one of the twelve pods planned for it,
/// and six that were not). Evicted first, the replacement's own pods fill it; the rest
/// then find the gaps they were planned for, the replacement being no longer the
/// emptiest. A delete command's pods are held as well when its drain, still going
/// largest first, overlaps a replacement coming up: in Wide they took its room too.
/// Replacements that come up together still share each other's pods.
#[derive(Debug)]
struct Drain {
    nodes: Vec<String>,
    since: i64,
    /// `onto_new` is emptied once those pods have landed.
    moves: Moves,
}

/// What a step did with a command in flight.
enum Advance {
    /// Its replacements are still initializing.
    Waiting,
    /// A replacement failed; the nodes are untainted.
    Failed,
    /// Its nodes are being deleted.
    Deleting,
}

impl Queue {
    /// On the first step after a start: resume the commands whose replacements say what
    /// they replace. The disrupted nodes no command resumes are untainted by the step's
    /// `reconcile_taints`.
    pub(crate) fn resume(&mut self, view: &ClusterView) {
        let mut commands: BTreeMap<&str, Vec<&Claim>> = BTreeMap::new();
        for claim in view.claims.values() {
            if let Some(replaces) = claim.annotations.get(labels::ANNOTATION_REPLACES) {
                commands.entry(replaces.as_str()).or_default().push(claim);
            }
        }
        let tainted = |node: &str| {
            view.nodes
                .get(node)
                .is_some_and(|n| n.taints.iter().any(|t| t.key == labels::TAINT_DISRUPTED))
        };
        for (replaces, replacements) in commands {
            let Some((method, count, claims)) = parse_replaces(replaces) else {
                continue;
            };
            if replacements.len() != count
                || replacements.iter().any(|r| r.deleting_since.is_some())
            {
                continue;
            }
            let nodes: Option<Vec<String>> = claims
                .iter()
                .map(|name| {
                    let claim = view.claims.get(*name)?;
                    let node = claim.node_name.as_deref()?;
                    (claim.deleting_since.is_none() && tainted(node)).then(|| node.to_string())
                })
                .collect();
            let Some(nodes) = nodes else {
                continue;
            };
            self.active.push(Active {
                method,
                nodes,
                replacements: replacements.iter().map(|r| r.name.clone()).collect(),
                moves: Moves::default(),
            });
        }
        // Two commands naming one node: one of them is stale (its replacements were
        // left over from a command killed before its taints landed). Resume neither:
        // the nodes are untainted and the replacements stay as ordinary capacity, as in
        // Karpenter, rather than drained on an old decision.
        let mut named: BTreeMap<&str, usize> = BTreeMap::new();
        for node in self.active.iter().flat_map(|a| &a.nodes) {
            *named.entry(node.as_str()).or_default() += 1;
        }
        let shared: Vec<String> = (named.into_iter())
            .filter(|&(_, n)| n > 1)
            .map(|(node, _)| node.to_string())
            .collect();
        self.active
            .retain(|a| !a.nodes.iter().any(|n| shared.contains(n)));
    }

    /// Level-triggered, each step: a node of a command in flight carries the
    /// `karpenter.sh/disrupted` taint, and a node in none (whose claim is not deleting:
    /// termination keeps those tainted) does not. So a taint write that failed, a
    /// command killed before its taint landed, or one the restart could not resume are
    /// all put right on the next step rather than left until the next restart.
    fn reconcile_taints(&self, view: &ClusterView, out: &mut Vec<Action>) {
        let in_flight = |node: &str| {
            self.active
                .iter()
                .any(|a| a.nodes.iter().any(|n| n == node))
        };
        for node in view.nodes.values() {
            if view
                .claim_of_node(&node.name)
                .is_none_or(|c| c.deleting_since.is_some())
            {
                continue;
            }
            let tainted = node.taints.iter().any(|t| t.key == labels::TAINT_DISRUPTED);
            match (tainted, in_flight(&node.name)) {
                (false, true) => out.push(Action::Taint {
                    node: node.name.clone(),
                    taint: Taint::new(labels::TAINT_DISRUPTED, "", Effect::NoSchedule),
                }),
                (true, false) => out.push(Action::Untaint {
                    node: node.name.clone(),
                    key: labels::TAINT_DISRUPTED.into(),
                }),
                _ => {}
            }
        }
    }

    // The step's inputs, its one `Namer` (shared with the provisioner) and its output:
    // bundling them would only hide which of them the queue reads.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn step(
        &mut self,
        now: i64,
        view: &ClusterView,
        config: &Config,
        unavailable: &BTreeMap<Offer, i64>,
        namer: &mut Namer,
        stopwatch: &mut dyn Stopwatch,
        out: &mut Vec<Action>,
    ) {
        let in_flight = self.active.len();
        let drains = &mut self.drains;
        self.active.retain_mut(|a| match advance(a, view, out) {
            Advance::Waiting => true,
            Advance::Failed => false,
            Advance::Deleting => {
                drains.push(Drain {
                    nodes: std::mem::take(&mut a.nodes),
                    since: now,
                    moves: std::mem::take(&mut a.moves),
                });
                false
            }
        });
        if self.active.len() < in_flight {
            return;
        }
        self.reconcile_taints(view, out);
        let due = (self.pending.iter())
            .take_while(|(_, decided_at)| now - decided_at >= config.disruption_validation_ms)
            .count();
        if due > 0 {
            let mut started: Vec<String> = Vec::new();
            for (command, _) in self.pending.drain(..due).collect::<Vec<_>>() {
                // Those decided before it and started in this step (not in the view
                // yet) are leaving for its validation, as they were for its decision;
                // those decided after it are not: they assumed it would go.
                let outcome = self.pass(
                    now,
                    view,
                    config,
                    unavailable,
                    Some(&command.nodes),
                    &started,
                );
                match validated(&command, &outcome.commands) {
                    Some(command) => {
                        self.execute(now, view, unavailable, namer, &command, out);
                        started.extend(command.nodes.iter().cloned());
                    }
                    None => reject(view, config, &command, &outcome, out),
                }
            }
            // Karpenter requeues at once after starting a command. kerf waits until the
            // command's nodes have left the view, or one interval at most: until they
            // go, they hold their pools' budgets, so a pass at once finds room for a
            // node or two (a command costing a whole validation), and their pods have
            // not landed yet (an empty node the scheduler then fills fails validation).
            // A delete command's nodes go in seconds; a replacement's wait for it, and
            // the next pass runs after the interval, while the replacements launch.
            self.last_pass_at = Some(now);
            self.leaving = started;
            self.again = false;
            // A pass that found nothing while these waited found nothing around them:
            // rejected, they hold no budget now, though the view has not changed.
            self.last_found_nothing = false;
            return;
        }
        let gone =
            !self.leaving.is_empty() && self.leaving.iter().all(|n| !view.nodes.contains_key(n));
        let due = self.again
            || gone
            || self
                .last_pass_at
                .is_none_or(|at| now - at >= config.disruption_interval_ms);
        let idle = self.last_found_nothing
            && view.generation == self.last_generation
            && self
                .last_pass_at
                .is_some_and(|at| now - at < config.disruption_idle_recheck_ms)
            && self.rule_changes_at.is_none_or(|at| now < at);
        if !due || idle || self.pending.len() >= MAX_PENDING {
            return;
        }
        // A pass run at once after one that found a command continues its look: what it
        // finds is due with the first command of that look, so the look's commands
        // validate in one step, each with those before it leaving, as they were decided.
        // Split over steps a few milliseconds apart, a later one would be validated
        // after the shell had created the earlier ones' replacements; its pods would then
        // land on a node not yet initialized, and it would be rejected.
        let decided_at = match self.pending.last() {
            Some(&(_, at)) if self.again => at,
            _ => now,
        };
        // The nodes of the commands waiting for validation are leaving, for this pass:
        // they count against their pools' budgets and are no room for other pods.
        let held: Vec<String> = (self.pending.iter())
            .flat_map(|(c, _)| c.nodes.iter().cloned())
            .collect();
        stopwatch.start();
        let outcome = self.pass(now, view, config, unavailable, None, &held);
        stopwatch.stop(Work::DisruptionPass {
            decided: outcome.commands.first().map(|c| c.method),
        });
        stopwatch.disruption_pass(&outcome);
        self.rule_changes_at = (outcome.kept.iter())
            .filter_map(|k| k.reason.consolidate_after_left_secs())
            .min()
            .map(|secs| now + secs * 1000);
        self.tell(now, view, &outcome.kept, out);
        self.tell_pools(now, view, config, out);
        crate::conditions::reconcile(view, &outcome.conditions, out);
        let command = outcome
            .commands
            .into_iter()
            .find(|c| c.method != Method::Expiration);
        self.last_found_nothing = command.is_none();
        self.again = false;
        if let Some(command) = command {
            self.pending.push((command, decided_at));
            self.again = self.pending.len() < MAX_PENDING;
        }
    }

    /// `DisruptionBlocked` and `Unconsolidatable` for the nodes a full pass kept, each
    /// node at most once per its reason's dedupe window unless what it is told changes.
    fn tell(&mut self, now: i64, view: &ClusterView, kept: &[Kept], out: &mut Vec<Action>) {
        let mut told = BTreeMap::new();
        for k in kept {
            let reason = match k.held() {
                Held::Blocked => Reason::DisruptionBlocked,
                Held::Unconsolidatable => Reason::Unconsolidatable,
                Held::Quiet => continue,
            };
            let message = sentence(&k.reason.to_string());
            let fresh = match self.told.remove(&k.node) {
                Some((r, m, at))
                    if r == reason && m == message && now - at < reason.dedupe_ms() =>
                {
                    told.insert(k.node.clone(), (r, m, at));
                    false
                }
                _ => true,
            };
            if fresh {
                record_on_nodes(view, std::slice::from_ref(&k.node), reason, &message, out);
                told.insert(k.node.clone(), (reason, message, now));
            }
        }
        // Nodes no longer held (or gone) are forgotten.
        self.told = told;
    }

    /// Karpenter's `DisruptionBlocked` on a NodePool whose budgets allow no disruption for
    /// a reason right now ("No allowed disruptions for disruption reason Underutilized due
    /// to blocking budget"), at most once a minute per pool and reason. Unlike Karpenter,
    /// a pool with no node is not told (it has nothing to disrupt; a percentage of zero
    /// nodes is zero).
    fn tell_pools(&mut self, now: i64, view: &ClusterView, config: &Config, out: &mut Vec<Action>) {
        use kerf_disruption::Reason as Why;
        let now_secs = config.epoch_secs + now / 1000;
        let mut told = BTreeMap::new();
        for pool in &view.nodepools {
            let n_nodes = view
                .claims
                .values()
                .filter(|c| c.nodepool == pool.name && c.initialized && c.node_name.is_some())
                .count() as u32;
            if n_nodes == 0 {
                continue;
            }
            for why in [Why::Empty, Why::Drifted, Why::Underutilized] {
                let allowance =
                    kerf_disruption::allowance(&pool.disruption.budgets, why, n_nodes, now_secs);
                if allowance.limit != Some(0) {
                    continue;
                }
                let key = (pool.name.clone(), why);
                let at = match self.pools_told.get(&key) {
                    Some(&at) if now - at < 60_000 => at,
                    _ => {
                        out.push(Action::Record {
                            reason: Reason::DisruptionBlocked,
                            about: Subject::NodePool(pool.name.clone()),
                            message: format!(
                                "No allowed disruptions for disruption reason {} due to blocking budget",
                                why.as_str()
                            ),
                        });
                        now
                    }
                };
                told.insert(key, at);
            }
        }
        self.pools_told = told;
    }

    /// The pods drains hold back this step (see [`Drain`]): while any drain's pods bound
    /// for its replacements are landing, every drain's pods bound for staying nodes, each
    /// drain's for `termination::LARGEST_FIRST_MS` at most. A drain's replacement pods
    /// have landed for good once they have left its nodes and no pod waits to be
    /// scheduled.
    pub(crate) fn held_back(&mut self, now: i64, view: &ClusterView) -> BTreeSet<PodKey> {
        (self.drains).retain(|d| now - d.since < termination::LARGEST_FIRST_MS);
        for d in &mut self.drains {
            let on_its_nodes = |pod: &PodKey| {
                let node = view.pods.get(pod).and_then(|p| p.pod.node_name.as_ref());
                node.is_some_and(|n| d.nodes.contains(n))
            };
            if view.pending.is_empty() && !d.moves.onto_new.iter().any(on_its_nodes) {
                d.moves.onto_new.clear();
            }
        }
        if self.drains.iter().all(|d| d.moves.onto_new.is_empty()) {
            return BTreeSet::new();
        }
        (self.drains.iter())
            .flat_map(|d| d.moves.onto_staying.iter().cloned())
            .collect()
    }

    /// When the queue next acts without the view changing: a pending command's
    /// validation or a drain's hold running out, else the next pass (commands in flight
    /// advance on view changes); a pass that found nothing on this very view is not
    /// repeated before the idle recheck.
    pub(crate) fn next_wake(&self, view: &ClusterView, config: &Config) -> i64 {
        let held = (self.drains.iter())
            .map(|d| d.since + termination::LARGEST_FIRST_MS)
            .min()
            .unwrap_or(i64::MAX);
        let validation = (self.pending.first()).map_or(i64::MAX, |(_, decided_at)| {
            decided_at + config.disruption_validation_ms
        });
        if self.pending.len() >= MAX_PENDING {
            return validation.min(held);
        }
        let Some(at) = self.last_pass_at else {
            return i64::MIN;
        };
        let pass = if self.again {
            at
        } else if self.last_found_nothing && view.generation == self.last_generation {
            let recheck = at + config.disruption_idle_recheck_ms;
            let rule = self.rule_changes_at.unwrap_or(i64::MAX);
            recheck.min(rule).max(at + config.disruption_interval_ms)
        } else {
            at + config.disruption_interval_ms
        };
        pass.min(validation).min(held)
    }

    /// A pass over the view; `among`, when validating a command, limits the candidates
    /// to its nodes.
    fn pass(
        &mut self,
        now: i64,
        view: &ClusterView,
        config: &Config,
        unavailable: &BTreeMap<Offer, i64>,
        among: Option<&[String]>,
        held: &[String],
    ) -> kerf_disruption::Outcome {
        self.last_pass_at = Some(now);
        self.last_generation = view.generation;
        self.leaving.clear();
        let mut snapshot = snapshot(view, config, unavailable);
        for node in snapshot.nodes.iter_mut() {
            if held.contains(&node.name)
                && !node.taints.iter().any(|t| t.key == labels::TAINT_DISRUPTED)
            {
                let taint = Taint::new(labels::TAINT_DISRUPTED, "", Effect::NoSchedule);
                node.taints.push(taint);
            }
        }
        let now_secs = config.epoch_secs + now / 1000;
        match among {
            Some(nodes) => kerf_disruption::compute_commands_among(
                &snapshot,
                now_secs,
                &config.disruption,
                nodes,
            ),
            None => kerf_disruption::compute_commands(&snapshot, now_secs, &config.disruption),
        }
    }

    fn execute(
        &mut self,
        now: i64,
        view: &ClusterView,
        unavailable: &BTreeMap<Offer, i64>,
        namer: &mut Namer,
        command: &Command,
        out: &mut Vec<Action>,
    ) {
        out.push(Action::Disrupting {
            method: command.method,
            decision: command.decision,
            nodes: command.nodes.clone(),
            savings_per_hour: command.savings_per_hour,
        });
        for node in &command.nodes {
            out.push(Action::Taint {
                node: node.clone(),
                taint: Taint::new(labels::TAINT_DISRUPTED, "", Effect::NoSchedule),
            });
        }
        if command.decision == Decision::Delete || command.replacements.is_empty() {
            delete_nodes(view, command.method, &command.nodes, out);
            self.drains.push(Drain {
                nodes: command.nodes.clone(),
                since: now,
                moves: Moves::of(command),
            });
            return;
        }
        let types = catalog_now(view, unavailable);
        let mut replacements = Vec::new();
        let replaced: Vec<&str> = (command.nodes.iter())
            .filter_map(|n| Some(view.claim_of_node(n)?.name.as_str()))
            .collect();
        let replaces = format!(
            "{}/{}: {}",
            command.method.as_str(),
            command.replacements.len(),
            replaced.join(",")
        );
        for new in &command.replacements {
            let mut claim = claim_for(now, view, &types, new, namer.next(&new.nodepool));
            (claim.annotations).insert(labels::ANNOTATION_REPLACES.into(), replaces.clone());
            replacements.push(claim.name.clone());
            let name = claim.name.clone();
            out.push(Action::CreateClaim(Box::new(claim)));
            out.push(Action::Record {
                reason: Reason::DisruptionLaunching,
                about: Subject::NodeClaim(name),
                message: format!("Launching NodeClaim: {}", method_reason(command.method)),
            });
        }
        self.active.push(Active {
            method: command.method,
            nodes: command.nodes.clone(),
            replacements,
            moves: Moves::of(command),
        });
    }
}

/// What of `command` its validation pass still chooses: the same nodes for the same
/// decision, or, for emptiness, those still empty and within budget (Karpenter's
/// emptiness validator goes on with them; only a command with none left fails).
fn validated(command: &Command, found: &[Command]) -> Option<Command> {
    let sorted = |nodes: &[String]| {
        let mut nodes = nodes.to_vec();
        nodes.sort();
        nodes
    };
    found
        .iter()
        .find(|c| {
            if command.method == Method::Emptiness {
                c.method == Method::Emptiness
                    && !c.nodes.is_empty()
                    && c.nodes.iter().all(|n| command.nodes.contains(n))
            } else {
                c.decision == command.decision && sorted(&c.nodes) == sorted(&command.nodes)
            }
        })
        .cloned()
}

/// Karpenter's consolidation rejects a command that fails validation; a drift command
/// that no longer holds is blocked. The message says what the validation pass found
/// instead: the first of the command's nodes it kept, and why, or the command it chose.
fn reject(
    view: &ClusterView,
    config: &Config,
    command: &Command,
    validation: &kerf_disruption::Outcome,
    out: &mut Vec<Action>,
) {
    let reason = if command.method == Method::Drift {
        Reason::DisruptionBlocked
    } else {
        Reason::ConsolidationRejected
    };
    let kept = (validation.kept.iter()).find(|k| command.nodes.contains(&k.node));
    let chosen = (validation.commands.iter()).find(|c| c.method != Method::Expiration);
    let why = match (kept, chosen) {
        (Some(k), _) => format!("{}: {}", k.node, k.reason),
        (None, Some(c)) => format!(
            "now {} {} of {}",
            c.method.as_str(),
            c.decision.as_str(),
            c.nodes.join(", ")
        ),
        (None, None) => "nothing chosen".into(),
    };
    let message = format!(
        "{} of {} no longer valid after {}s ({why})",
        command.method.as_str(),
        command.nodes.join(", "),
        config.disruption_validation_ms / 1000
    );
    record_on_nodes(view, &command.nodes, reason, &message, out);
}

/// A command in flight, one step on.
fn advance(active: &Active, view: &ClusterView, out: &mut Vec<Action>) -> Advance {
    let failed = active.replacements.iter().any(|r| {
        view.claims
            .get(r)
            .is_none_or(|c| c.deleting_since.is_some())
    });
    if failed {
        for node in &active.nodes {
            out.push(Action::Untaint {
                node: node.clone(),
                key: labels::TAINT_DISRUPTED.into(),
            });
        }
        let message = format!(
            "{} of {}: a replacement failed to launch; nodes untainted",
            active.method.as_str(),
            active.nodes.join(", ")
        );
        record_on_nodes(
            view,
            &active.nodes,
            Reason::DisruptionBlocked,
            &message,
            out,
        );
        return Advance::Failed;
    }
    let mut waiting = false;
    for name in &active.replacements {
        if view.claims.get(name).is_some_and(|c| !c.initialized) {
            waiting = true;
            out.push(Action::Record {
                reason: Reason::DisruptionWaitingReadiness,
                about: Subject::NodeClaim(name.clone()),
                message: "Waiting on readiness to continue disruption".into(),
            });
        }
    }
    if waiting {
        return Advance::Waiting;
    }
    delete_nodes(view, active.method, &active.nodes, out);
    Advance::Deleting
}

/// `kerf.sh/replaces`: the method, the number of replacements and the replaced claims.
fn parse_replaces(value: &str) -> Option<(Method, usize, Vec<&str>)> {
    let (head, claims) = value.split_once(": ")?;
    let (method, count) = head.split_once('/')?;
    let method = Method::parse(method)?;
    let claims: Vec<&str> = claims.split(',').filter(|c| !c.is_empty()).collect();
    (!claims.is_empty()).then_some((method, count.parse().ok()?, claims))
}

/// Karpenter's `pretty.Sentence`: the first letter capitalised.
fn sentence(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// An event on each node and on its NodeClaim, as Karpenter publishes disruption events.
fn record_on_nodes(
    view: &ClusterView,
    nodes: &[String],
    reason: Reason,
    message: &str,
    out: &mut Vec<Action>,
) {
    for node in nodes {
        out.push(Action::Record {
            reason,
            about: Subject::Node(node.clone()),
            message: message.to_string(),
        });
        if let Some(claim) = view.claim_of_node(node) {
            out.push(Action::Record {
                reason,
                about: Subject::NodeClaim(claim.name.clone()),
                message: message.to_string(),
            });
        }
    }
}

fn delete_nodes(view: &ClusterView, method: Method, nodes: &[String], out: &mut Vec<Action>) {
    let why = method_reason(method);
    for node in nodes {
        if let Some(claim) = view.claim_of_node(node) {
            out.push(Action::Record {
                reason: Reason::DisruptionTerminating,
                about: Subject::Node(node.clone()),
                message: format!("Disrupting Node: {why}"),
            });
            out.push(Action::Record {
                reason: Reason::DisruptionTerminating,
                about: Subject::NodeClaim(claim.name.clone()),
                message: format!("Disrupting NodeClaim: {why}"),
            });
            out.push(Action::DeleteClaim {
                claim: claim.name.clone(),
                reason: crate::DeletionReason::Disruption(method),
            });
        }
    }
}

/// The disruption pass's snapshot of the view.
pub fn snapshot(
    view: &ClusterView,
    config: &Config,
    unavailable: &BTreeMap<Offer, i64>,
) -> Snapshot {
    let instance_types = catalog_now(view, unavailable);
    let mut nodes: Vec<Node> = view
        .nodes
        .values()
        .map(|n| {
            let mut node = n.clone();
            if let Some(claim) = view.claim_of_node(&n.name) {
                node.deleting |= claim.deleting_since.is_some();
                node.created_at = Some(config.epoch_secs + claim.created_at / 1000);
            }
            node
        })
        .collect();
    // In key order, which is each node's order too: one walk of the pods, not a lookup
    // per bound pod.
    let mut bound_pods: Vec<Pod> = view
        .pods
        .values()
        .filter(|p| p.pod.node_name.is_some())
        .map(|p| p.pod.clone())
        .collect();
    // A NodeClaim with no Node yet (launching, or booting) is the node it will be, named
    // as the claim, with the DaemonSet pods it will run: Karpenter's cluster state counts
    // an in-flight NodeClaim as a node. It has not initialized, so the pods of nodes
    // already leaving (a command in flight, whose replacement it may be) may go there,
    // and those of a new command may not (`World::refuse_uninitialized`).
    for claim in view.claims.values() {
        if claim.initialized
            || claim.deleting_since.is_some()
            || claim.node_name.is_some()
            || view.nodes.contains_key(&claim.name)
        {
            continue;
        }
        let Some(mut node) = claim.future_node(&instance_types) else {
            continue;
        };
        node.created_at = Some(config.epoch_secs + claim.created_at / 1000);
        bound_pods.extend(view.daemon_pods_on(&node));
        nodes.push(node);
    }
    Snapshot {
        nodes,
        nodeclaims: view
            .claims
            .values()
            .map(|c| c.to_model(config.epoch_secs))
            .collect(),
        bound_pods,
        pending_pods: view
            .pending
            .iter()
            .map(|k| view.pods[k].pod.clone())
            .collect(),
        nodepools: view.nodepools.clone(),
        pdbs: view.pdbs.clone(),
        node_class_images: view.node_class_images.clone(),
        node_class_annotations: view.node_class_annotations.clone(),
        cloud_drift: view
            .claims
            .values()
            .filter_map(|c| {
                let why = view.instances.get(c.provider_id.as_ref()?)?.drift.clone()?;
                Some((c.name.clone(), why))
            })
            .collect(),
        instance_types,
        daemonsets: view.daemonsets.clone(),
        namespaces: view.namespaces.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kerf_model::{NodePool, Resources};

    fn key(name: &str) -> PodKey {
        PodKey {
            namespace: "default".into(),
            name: name.into(),
        }
    }

    fn place(view: &mut ClusterView, name: &str, node: Option<&str>) {
        view.remove_pod(&key(name));
        let cpu = Resources::parse([("cpu", "100m")]).unwrap();
        let mut pod = Pod::new("default", name, cpu);
        pod.node_name = node.map(String::from);
        view.insert_pod(crate::PodState {
            pod,
            created_at: 0,
            nominated: None,
        });
    }

    /// While a replace drain's pods bound for its replacement land, the pods bound for
    /// staying nodes wait, a concurrent delete drain's included; once they have landed
    /// the hold ends for good, and no drain holds longer than `LARGEST_FIRST_MS`.
    #[test]
    fn pods_for_staying_nodes_wait_while_a_replacements_pods_land() {
        let mut view = ClusterView::default();
        place(&mut view, "to-new", Some("n1"));
        place(&mut view, "to-stay", Some("n1"));
        place(&mut view, "deleted", Some("n2"));
        let mut queue = Queue::default();
        queue.drains.push(Drain {
            nodes: vec!["n1".into()],
            since: 1_000,
            moves: Moves {
                onto_new: vec![key("to-new")],
                onto_staying: vec![key("to-stay")],
            },
        });
        queue.drains.push(Drain {
            nodes: vec!["n2".into()],
            since: 0,
            moves: Moves {
                onto_new: Vec::new(),
                onto_staying: vec![key("deleted")],
            },
        });
        let held = |queue: &mut Queue, now: i64, view: &ClusterView| -> Vec<String> {
            let held = queue.held_back(now, view);
            held.into_iter().map(|k| k.name).collect()
        };
        assert_eq!(held(&mut queue, 1_000, &view), ["deleted", "to-stay"]);
        // Evicted: its ReplicaSet's new pod waits to be scheduled.
        view.remove_pod(&key("to-new"));
        place(&mut view, "to-new-2", None);
        assert_eq!(held(&mut queue, 2_000, &view), ["deleted", "to-stay"]);
        // The delete drain's own window has run out; the other still holds.
        assert_eq!(held(&mut queue, 5_000, &view), ["to-stay"]);
        // Bound: the rest go, and a pod pending later holds nothing back again.
        place(&mut view, "to-new-2", Some("r1"));
        assert!(held(&mut queue, 5_100, &view).is_empty());
        place(&mut view, "other", None);
        assert!(held(&mut queue, 5_200, &view).is_empty());
    }

    #[test]
    fn a_claim_without_a_node_is_in_the_pass_as_the_node_it_will_be() {
        let catalog = kerf_model::catalog::by_name("aws").unwrap();
        let it = catalog.iter().find(|t| t.name == "m6i.large").unwrap();
        let allocatable = it.allocatable();
        let offer = Offer {
            instance_type: "m6i.large".into(),
            zone: "us-east-1a".into(),
            capacity_type: "on-demand".into(),
        };
        let mut view = ClusterView {
            nodepools: vec![NodePool::new("default")],
            instance_types: catalog.clone(),
            ..ClusterView::default()
        };
        let mut claim = crate::Claim {
            name: "default-abc".into(),
            nodepool: "default".into(),
            labels: [(labels::NODEPOOL.to_string(), "default".to_string())].into(),
            annotations: Default::default(),
            taints: Vec::new(),
            startup_taints: Vec::new(),
            options: vec![offer.clone()].into(),
            created_at: 0,
            expire_after: None,
            termination_grace_period: None,
            provider_id: Some("i-1".into()),
            launched: Some(offer),
            image_id: None,
            node_name: None,
            initialized: false,
            deleting_since: None,
            deletion_reason: None,
            drifted: None,
            consolidatable: None,
        };
        view.claims.insert(claim.name.clone(), claim.clone());
        let cpu = Resources::parse([("cpu", "100m")]).unwrap();
        view.daemonsets
            .push(Pod::new("kube-system", "agent", cpu.clone()));
        let config = Config::default();

        let snap = snapshot(&view, &config, &BTreeMap::new());
        let node = (snap.nodes.iter().find(|n| n.name == "default-abc"))
            .expect("the launching claim is a node of the pass");
        assert_eq!(node.allocatable, allocatable);
        assert_eq!(node.labels[labels::ZONE], "us-east-1a");
        let on_it: Vec<&str> = (snap.bound_pods.iter())
            .filter(|p| p.node_name.as_deref() == Some("default-abc"))
            .map(|p| p.key.name.as_str())
            .collect();
        assert_eq!(on_it, vec!["agent-default-abc"]);

        // Once its Node is there, that Node stands for it: no second node.
        claim.node_name = Some("n1".into());
        view.claims.insert(claim.name.clone(), claim);
        let mut labels_n1 = it.labels.clone();
        labels_n1.insert(labels::NODEPOOL.into(), "default".into());
        view.nodes
            .insert("n1".into(), Node::new("n1", labels_n1, allocatable));
        let snap = snapshot(&view, &config, &BTreeMap::new());
        let names: Vec<&str> = snap.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, vec!["n1"]);
        // Nor one for a claim being deleted.
        let deleting = view.claims.get_mut("default-abc").unwrap();
        (deleting.node_name, deleting.deleting_since) = (None, Some(1));
        view.nodes.clear();
        assert!(snapshot(&view, &config, &BTreeMap::new()).nodes.is_empty());
    }
}
