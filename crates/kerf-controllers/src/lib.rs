//! kerf's control loops, written once and sans-IO: each takes `now` (milliseconds of the
//! shell's clock), the cluster as the shell reports it (`ClusterView`) and notification
//! `Event`s, and returns `Action`s for the shell to perform. No loop calls Kubernetes or a
//! cloud, reads a clock or spawns anything; the simulator is the first shell that runs
//! them, the Kubernetes shell will be the second.
//!
//! The loops are level-triggered: everything they remember (the open batch, the
//! disruption command awaiting validation or replacements, the three-minute cache of
//! offerings that ran out of capacity) is either rebuilt from the view or harmless to
//! lose. A fresh `Controller` built in the middle of a run picks up where the last one
//! stopped — the simulator's restart test drops it at random times to prove it.
//!
//! Decisions come from the pure functions: `kerf_scheduling::solve` for provisioning and
//! `kerf_disruption::compute_commands` for disruption. The loops only sequence them.

mod batcher;
pub mod conditions;
pub mod deletion;
mod disruption;
mod lifecycle;
mod provisioner;
pub mod record;
mod termination;
pub mod view;

use std::collections::BTreeMap;

use kerf_cloud::Offer;
use kerf_model::Taint;
use kerf_model::pod::PodKey;

pub use conditions::{ConditionType, Shown};
pub use deletion::DeletionReason;
pub use record::{Reason, Severity, Subject};
pub use view::{Claim, ClusterView, PodState};

/// The work of a step a shell may time: Karpenter's
/// `scheduler_scheduling_duration_seconds` and
/// `voluntary_disruption_decision_evaluation_duration_seconds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    /// The provisioner's scheduling simulation over the pending pods.
    Scheduling,
    /// A full disruption pass, with the method of the first command it decided on.
    DisruptionPass {
        decided: Option<kerf_disruption::Method>,
    },
}

/// Told where measured work begins and ends, and what each full disruption pass found
/// (for a shell's debug log: why nothing, or so little, was disrupted). The simulator
/// measures nothing (`()`).
pub trait Stopwatch {
    fn start(&mut self);
    fn stop(&mut self, work: Work);
    fn disruption_pass(&mut self, _outcome: &kerf_disruption::Outcome) {}
}

impl Stopwatch for () {
    fn start(&mut self) {}
    fn stop(&mut self, _: Work) {}
}

/// Timings and switches, with Karpenter's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Unix seconds at the shell's time 0: the disruption pass wants wall-clock seconds.
    pub epoch_secs: i64,
    /// `BATCH_IDLE_DURATION`.
    pub batch_idle_ms: i64,
    /// `BATCH_MAX_DURATION`.
    pub batch_max_ms: i64,
    /// A launched claim whose node has not registered by then is deleted.
    pub registration_timeout_ms: i64,
    /// How long an offering that ran out of capacity is not tried again.
    pub unavailable_offering_ms: i64,
    /// How often the disruption pass runs.
    pub disruption_interval_ms: i64,
    /// How long a disruption command waits before it is re-validated and acts.
    pub disruption_validation_ms: i64,
    /// An unchanged view is not re-examined by the disruption pass for up to this long
    /// (see `disruption.rs`); five minutes, as Karpenter's consolidation state.
    pub disruption_idle_recheck_ms: i64,
    /// Instances with no NodeClaim older than this are terminated.
    pub gc_grace_ms: i64,
    pub disruption: kerf_disruption::Config,
    pub scheduling: kerf_scheduling::Config,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            epoch_secs: 0,
            batch_idle_ms: 1_000,
            batch_max_ms: 10_000,
            registration_timeout_ms: 15 * 60_000,
            unavailable_offering_ms: 3 * 60_000,
            disruption_interval_ms: 10_000,
            disruption_validation_ms: 15_000,
            disruption_idle_recheck_ms: 300_000,
            gc_grace_ms: 30_000,
            disruption: kerf_disruption::Config::default(),
            scheduling: kerf_scheduling::Config::default(),
        }
    }
}

/// What a shell tells the loops, besides the view.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A pod became pending (created, or recreated after an eviction).
    PodPending(PodKey),
    /// A launch was refused for lack of capacity on these offerings (the claim may still
    /// have launched on a later option).
    InsufficientCapacity {
        claim: String,
        offers: Vec<Offer>,
    },
    /// A launch failed for another reason.
    LaunchFailed {
        claim: String,
        message: String,
    },
    /// EC2 spot interruption warning: the instance goes in two minutes.
    SpotInterruption {
        instance_id: String,
    },
    RebalanceRecommendation {
        instance_id: String,
    },
    ScheduledMaintenance {
        instance_id: String,
    },
    EvictionRefused {
        pod: PodKey,
        reason: String,
    },
}

/// What the loops ask a shell to do. A shell performs them in order and ignores any that
/// no longer apply (the object is gone).
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    CreateClaim(Box<Claim>),
    /// Record that the pod waits for this claim (`status.nominatedNodeName`).
    Nominate {
        pod: PodKey,
        claim: String,
    },
    /// Ask the cloud for an instance, trying the options in order.
    Launch {
        claim: String,
        options: Vec<Offer>,
        image_id: String,
    },
    /// Copy the instance the cloud lists for the claim into its status.
    MarkLaunched {
        claim: String,
        instance_id: String,
    },
    /// The node joined: link it, sync labels and taints, drop `karpenter.sh/unregistered`.
    Register {
        claim: String,
        node: String,
    },
    /// The node is ready and its startup taints are gone.
    Initialize {
        claim: String,
    },
    /// Write one of the claim's disruption conditions (see `conditions.rs`): `Some`, as
    /// shown there; `None`, removed.
    SetCondition {
        claim: String,
        condition: ConditionType,
        to: Option<Shown>,
    },
    /// Set the deletion timestamp; termination takes it from there.
    DeleteClaim {
        claim: String,
        reason: DeletionReason,
    },
    Taint {
        node: String,
        taint: Taint,
    },
    Untaint {
        node: String,
        key: String,
    },
    /// Evict through the eviction API, which refuses what a PDB does not allow.
    Evict {
        pod: PodKey,
    },
    /// Delete without asking (the grace period ran out).
    ForceDelete {
        pod: PodKey,
    },
    TerminateInstance {
        instance_id: String,
    },
    RemoveNode {
        node: String,
    },
    /// Drop the termination finalizer: the claim goes.
    RemoveClaim {
        claim: String,
    },
    /// A disruption command begins (for metrics: Karpenter's decision counters and
    /// kerf's savings). The taints, launches and deletions it needs follow as actions of
    /// their own.
    Disrupting {
        method: kerf_disruption::Method,
        decision: kerf_disruption::Decision,
        nodes: Vec<String>,
        /// Price of the nodes less price of the replacements, dollars per hour.
        savings_per_hour: f64,
    },
    /// A Kubernetes event, for people: a reason of Karpenter's about one object.
    Record {
        reason: Reason,
        about: Subject,
        message: String,
    },
}

/// The control loops, together. Everything here may be dropped at any time.
#[derive(Debug)]
pub struct Controller {
    config: Config,
    started: bool,
    batch: batcher::Batcher,
    /// Offerings that ran out of capacity, until when (milliseconds). Losing it costs one
    /// more refused launch per offering.
    unavailable: BTreeMap<Offer, i64>,
    disruption: disruption::Queue,
    /// The view generation the lifecycle loop last saw, and when a time-based rule of
    /// it next falls due on that view.
    lifecycle_seen: Option<(u64, i64)>,
}

impl Controller {
    pub fn new(config: Config) -> Controller {
        Controller {
            config,
            started: false,
            batch: batcher::Batcher::default(),
            unavailable: BTreeMap::new(),
            disruption: disruption::Queue::default(),
            lifecycle_seen: None,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Something the shell holds back on its own (a launch's retry delay) has run out:
    /// the lifecycle loop runs on the next step even if the view has not changed.
    pub fn recheck_lifecycle(&mut self) {
        self.lifecycle_seen = None;
    }

    /// One pass of every loop.
    pub fn step(&mut self, now: i64, view: &ClusterView, events: &[Event]) -> Vec<Action> {
        self.step_measured(now, view, events, &mut ())
    }

    /// [`Controller::step`], telling `stopwatch` where its scheduling simulation and its
    /// disruption pass begin and end, so a shell can time them (the loops read no clock).
    pub fn step_measured(
        &mut self,
        now: i64,
        view: &ClusterView,
        events: &[Event],
        stopwatch: &mut dyn Stopwatch,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let mut namer = provisioner::Namer::new(now);
        self.unavailable.retain(|_, until| *until > now);
        if !self.started {
            self.started = true;
            self.disruption.resume(view);
        }
        for event in events {
            self.on_event(now, view, event, &mut out);
        }
        // Level-triggered, but on an unchanged view only time can make it act: skip it
        // until then (it runs every step of a large cluster otherwise).
        let unchanged = self
            .lifecycle_seen
            .is_some_and(|(generation, due)| generation == view.generation && now < due);
        if !unchanged || !events.is_empty() {
            let due = lifecycle::reconcile(now, view, &self.config, &self.unavailable, &mut out);
            self.lifecycle_seen = Some((view.generation, due));
        }
        let held = self.disruption.held_back(now, view);
        termination::reconcile(now, self.config.epoch_secs, view, &held, &mut out);
        if self.batch.ready(now, view, events, &self.config) {
            stopwatch.start();
            provisioner::provision(
                now,
                view,
                &self.config,
                &self.unavailable,
                &mut namer,
                &mut out,
            );
            stopwatch.stop(Work::Scheduling);
            self.batch.solved(now, view);
        }
        self.disruption.step(
            now,
            view,
            &self.config,
            &self.unavailable,
            &mut namer,
            stopwatch,
            &mut out,
        );
        out
    }

    /// The earliest time after `now` at which a step could act on the same view: the
    /// batch window closing, the disruption pass or a validation falling due, a
    /// lifecycle rule (expiry, a registration timeout, the garbage-collection grace), a
    /// drain's grace deadline, or an unavailable offering coming back. A shell that
    /// wakes on every change of the view and at this time misses nothing.
    pub fn next_wake(&self, now: i64, view: &ClusterView) -> i64 {
        let mut wake = self
            .batch
            .next_wake(view, &self.config)
            .min(self.disruption.next_wake(view, &self.config))
            .min(self.lifecycle_seen.map_or(now, |(_, due)| due));
        for until in self.unavailable.values() {
            wake = wake.min(*until);
        }
        // A deadline already past has been acted on (termination runs every step).
        for claim in view.claims.values() {
            if let Some(deadline) = claim.grace_deadline().filter(|d| *d > now) {
                wake = wake.min(deadline);
            }
            // A drain evicts the rest of its pods at once when its largest-first
            // stretch ends.
            if let Some(since) = claim.deleting_since {
                let at = since + termination::LARGEST_FIRST_MS;
                if at > now {
                    wake = wake.min(at);
                }
            }
            // A draining node's pod whose `do-not-disrupt` duration runs out is evicted
            // then.
            if claim.deleting_since.is_some()
                && let Some(node) = &claim.node_name
            {
                for pod in view.pods_on(node) {
                    if let Some(until) = pod.pod.do_not_disrupt_until() {
                        let at = (until - self.config.epoch_secs) * 1000;
                        if at > now {
                            wake = wake.min(at);
                        }
                    }
                }
            }
        }
        // Pods still waiting are solved again at least once a minute (the batcher).
        wake.min(now + 60_000).max(now + 1)
    }

    fn on_event(&mut self, now: i64, view: &ClusterView, event: &Event, out: &mut Vec<Action>) {
        let until = now + self.config.unavailable_offering_ms;
        match event {
            Event::PodPending(_) | Event::EvictionRefused { .. } => {}
            Event::InsufficientCapacity { claim, offers } => {
                for offer in offers {
                    self.unavailable.insert(offer.clone(), until);
                }
                out.push(Action::Record {
                    reason: Reason::InsufficientCapacityError,
                    about: Subject::NodeClaim(claim.clone()),
                    message: format!(
                        "NodeClaim {claim}: {} offering(s) out of capacity, marked unavailable for 3m",
                        offers.len()
                    ),
                });
            }
            Event::LaunchFailed { claim, message } => out.push(Action::DeleteClaim {
                claim: claim.clone(),
                reason: DeletionReason::LaunchFailed(message.clone()),
            }),
            Event::SpotInterruption { instance_id }
            | Event::ScheduledMaintenance { instance_id } => {
                let Some(instance) = view.instances.get(instance_id) else {
                    return;
                };
                let spot = matches!(event, Event::SpotInterruption { .. });
                if spot {
                    self.unavailable.insert(instance.offer.clone(), until);
                }
                if let Some(claim) = view.claims.get(&instance.claim)
                    && claim.deleting_since.is_none()
                {
                    out.push(Action::DeleteClaim {
                        claim: claim.name.clone(),
                        reason: if spot {
                            DeletionReason::Interruption
                        } else {
                            DeletionReason::ScheduledMaintenance
                        },
                    });
                }
            }
            Event::RebalanceRecommendation { instance_id } => {
                // On the instance's NodeClaim, and its Node once it has one (Karpenter's
                // interruption controller publishes on both).
                let Some(claim) = view
                    .instances
                    .get(instance_id)
                    .and_then(|i| view.claims.get(&i.claim))
                else {
                    return;
                };
                let message = format!("instance {instance_id} received a rebalance recommendation");
                if let Some(node) = &claim.node_name {
                    out.push(Action::Record {
                        reason: Reason::SpotRebalanceRecommendation,
                        about: Subject::Node(node.clone()),
                        message: message.clone(),
                    });
                }
                out.push(Action::Record {
                    reason: Reason::SpotRebalanceRecommendation,
                    about: Subject::NodeClaim(claim.name.clone()),
                    message,
                });
            }
        }
    }
}
