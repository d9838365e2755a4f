//! What the loops tell people: Kubernetes events, with Karpenter's reasons
//! (`pkg/events/reason.go`), on the object each is about. A reason is a value, not prose:
//! shells publish it, counters `match` it, and nothing parses a message back.
//!
//! The facts Karpenter attaches to each reason — Normal or Warning, and how long an
//! identical event is suppressed (`pkg/events/recorder.go`: two minutes unless the event
//! says otherwise) — live here too, so every shell treats a reason the same way.

use std::fmt;

use kerf_model::pod::PodKey;

/// Why an event was recorded. Karpenter's names, except the node-group baseline's, which
/// are Cluster Autoscaler's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// A pending pod waits for a NodeClaim (pod).
    Nominated,
    /// No NodePool can launch a node for the pod (pod).
    FailedScheduling,
    /// A launch was refused for lack of capacity (NodeClaim).
    InsufficientCapacityError,
    /// A NodePool's requirements leave no instance type with an available offering
    /// (NodePool).
    NoCompatibleInstanceTypes,
    /// A disruption command's replacement is being launched (NodeClaim).
    DisruptionLaunching,
    /// A disruption command waits for its replacements to initialize (NodeClaim).
    DisruptionWaitingReadiness,
    /// A node is being disrupted: its NodeClaim is deleted (Node and NodeClaim).
    DisruptionTerminating,
    /// A disruption cannot go ahead (Node, NodeClaim or NodePool).
    DisruptionBlocked,
    /// A consolidation decided on no longer held when it was validated (Node, NodeClaim).
    ConsolidationRejected,
    /// Single-node consolidation found no cheaper way to run the node's pods (Node,
    /// NodeClaim).
    Unconsolidatable,
    /// A pod was evicted by a drain (pod).
    Evicted,
    /// The eviction API refused a drain's eviction, e.g. for a PodDisruptionBudget (Node).
    FailedDraining,
    /// A pod was deleted at its node's termination grace deadline (pod).
    Disrupted,
    /// A draining node's remaining pods will be deleted at its deadline (Node, NodeClaim).
    TerminationGracePeriodExpiring,
    /// AWS: the instance received a rebalance recommendation (Node, NodeClaim).
    SpotRebalanceRecommendation,
    /// Baseline (Cluster Autoscaler): a node group scales up (NodePool).
    TriggeredScaleUp,
    /// Baseline: a node group's scale-up failed and is backed off (NodePool).
    ScaleUpFailed,
    /// Baseline: an unneeded node is removed (Node).
    ScaleDown,
    /// Baseline: removing a node was given up (Node).
    ScaleDownFailed,
}

/// The Kubernetes event type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Normal,
    Warning,
}

impl Reason {
    /// The event's `reason`, as Karpenter writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Nominated => "Nominated",
            Reason::FailedScheduling => "FailedScheduling",
            Reason::InsufficientCapacityError => "InsufficientCapacityError",
            Reason::NoCompatibleInstanceTypes => "NoCompatibleInstanceTypes",
            Reason::DisruptionLaunching => "DisruptionLaunching",
            Reason::DisruptionWaitingReadiness => "DisruptionWaitingReadiness",
            Reason::DisruptionTerminating => "DisruptionTerminating",
            Reason::DisruptionBlocked => "DisruptionBlocked",
            Reason::ConsolidationRejected => "ConsolidationRejected",
            Reason::Unconsolidatable => "Unconsolidatable",
            Reason::Evicted => "Evicted",
            Reason::FailedDraining => "FailedDraining",
            Reason::Disrupted => "Disrupted",
            Reason::TerminationGracePeriodExpiring => "TerminationGracePeriodExpiring",
            Reason::SpotRebalanceRecommendation => "SpotRebalanceRecommendation",
            Reason::TriggeredScaleUp => "TriggeredScaleUp",
            Reason::ScaleUpFailed => "ScaleUpFailed",
            Reason::ScaleDown => "ScaleDown",
            Reason::ScaleDownFailed => "ScaleDownFailed",
        }
    }

    /// Karpenter's event type for the reason.
    pub fn severity(self) -> Severity {
        match self {
            Reason::FailedScheduling
            | Reason::InsufficientCapacityError
            | Reason::NoCompatibleInstanceTypes
            | Reason::TerminationGracePeriodExpiring
            | Reason::FailedDraining
            | Reason::ScaleUpFailed
            | Reason::ScaleDownFailed => Severity::Warning,
            _ => Severity::Normal,
        }
    }

    /// How long an identical event (same reason, same object, same dedupe values) is not
    /// published again, in milliseconds: Karpenter's per-event `DedupeTimeout`, else its
    /// recorder's two minutes.
    pub fn dedupe_ms(self) -> i64 {
        match self {
            Reason::FailedScheduling => 5 * 60_000,
            Reason::Unconsolidatable => 15 * 60_000,
            Reason::NoCompatibleInstanceTypes => 60_000,
            _ => 2 * 60_000,
        }
    }
}

impl Reason {
    /// The dedupe window for this reason about `subject`: Karpenter's budget events on a
    /// NodePool (`DisruptionBlocked`, one per disruption reason) last one minute, because
    /// a budget can change every minute; otherwise `dedupe_ms`.
    pub fn dedupe_ms_about(self, subject: &Subject) -> i64 {
        match (self, subject) {
            (Reason::DisruptionBlocked, Subject::NodePool(_)) => 60_000,
            _ => self.dedupe_ms(),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The object an event is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Subject {
    Pod(PodKey),
    Node(String),
    NodeClaim(String),
    NodePool(String),
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Pod(key) => write!(f, "pod/{key}"),
            Subject::Node(name) => write!(f, "node/{name}"),
            Subject::NodeClaim(name) => write!(f, "nodeclaim/{name}"),
            Subject::NodePool(name) => write!(f, "nodepool/{name}"),
        }
    }
}

/// `Drifted`, `Underutilized`, `Empty`: a disruption method as Karpenter's event messages
/// name it (its `DisruptionReason`, title-cased).
pub fn method_reason(method: kerf_disruption::Method) -> &'static str {
    use kerf_disruption::Method;
    match method {
        Method::Expiration => "Expired",
        Method::Emptiness => "Empty",
        Method::Drift => "Drifted",
        Method::MultiNodeConsolidation | Method::SingleNodeConsolidation => "Underutilized",
    }
}
