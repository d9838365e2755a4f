//! Why a pass leaves a managed node alone, as data: renderers print it (`Display` gives
//! the sentence `kerf disrupt` shows), the controller tells Karpenter's events from it
//! (`KeptReason::held`), and counters group it (`KeptReason::kind`).

use std::fmt;

use kerf_model::Drift;
use kerf_model::pod::PodKey;

use crate::budget::{BudgetSpent, plural};
use crate::consolidation::NoConsolidation;
use crate::facts::Blocker;
use crate::{Method, render_duration};

/// A managed node the pass leaves alone.
#[derive(Clone, Debug, PartialEq)]
pub struct Kept {
    pub node: String,
    pub reason: KeptReason,
}

impl Kept {
    /// What Karpenter would tell the node's owner about it.
    pub fn held(&self) -> Held {
        self.reason.held()
    }
}

/// How Karpenter reports a node its disruption leaves alone (on the Node and its
/// NodeClaim, `pkg/controllers/disruption/events`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    /// Not a candidate, for a reason Karpenter reports as `DisruptionBlocked`: the node's
    /// state (not initialized, nominated for pending pods, its NodePool missing) or its
    /// pods' (a PDB that allows no eviction, a pod under two PDBs).
    Blocked,
    /// A candidate single-node consolidation evaluated and could neither delete nor
    /// replace more cheaply: `Unconsolidatable`.
    Unconsolidatable,
    /// Nothing reported: nothing to do, `consolidateAfter` not elapsed, a budget, a
    /// `do-not-disrupt` annotation (the user's choice, which Karpenter does not report),
    /// not evaluated because another command acts, or not Karpenter's (no NodeClaim).
    Quiet,
}

/// Why the pass leaves a node alone, in the order the pass finds out.
#[derive(Clone, Debug, PartialEq)]
pub enum KeptReason {
    /// A candidate no method had anything to do with.
    NothingToDo,
    /// Its Node or NodeClaim is being deleted, or a disruption has tainted it.
    AlreadyDeleting,
    /// It carries a NodePool label but has no NodeClaim: Karpenter did not launch it.
    NoNodeClaim,
    /// The NodePool its `karpenter.sh/nodepool` label names does not exist.
    NodePoolMissing { nodepool: String },
    /// Its NodeClaim has not initialized.
    NotInitialized,
    /// Not among the nodes a validation pass (`compute_commands_among`) looks at.
    NotAmongValidated,
    /// The scheduler would put these pending pods on it.
    Nominated { pods: Vec<PodKey> },
    /// Something forbids graceful disruption.
    Blocked(Blocker),
    /// Empty, but emptiness may not take it yet.
    Empty(EmptyHold),
    /// Drifted (`drift` says how), but drift may not take it in this pass.
    Drifted { drift: Drift, hold: DriftHold },
    /// Its NodePool consolidates only empty nodes, and it runs `pods` pods.
    WhenEmpty { pods: u32 },
    /// Consolidation waits for `consolidateAfter`.
    ConsolidateAfter(ConsolidateAfter),
    /// Its NodePool's Underutilized budget has no room for it.
    Budget(BudgetSpent),
    /// Another method's command wins the pass before it is evaluated.
    NotEvaluated { first: Method },
    /// Single-node consolidation evaluated it and could neither delete nor replace it
    /// more cheaply.
    Unconsolidatable(NoConsolidation),
}

/// What keeps emptiness from an empty node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EmptyHold {
    ConsolidateAfter(ConsolidateAfter),
    Budget(BudgetSpent),
}

/// What keeps drift from a drifted node in this pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DriftHold {
    Budget(BudgetSpent),
    WaitsForUninitialized(WaitsForUninitialized),
    NowhereToGo(NowhereToGo),
    /// A command of this method acts first; drift waits for a later pass.
    ActsFirst(Method),
}

/// A NodePool's `consolidateAfter` not yet satisfied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsolidateAfter {
    Never,
    /// `since_secs` since the last pod event, short of `after_secs`.
    NotElapsed {
        after_secs: i64,
        since_secs: i64,
    },
}

/// Karpenter's "Not all pods would schedule, <pod> => would schedule against
/// uninitialized …": a pod of the simulation waits for a node that is not up yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitsForUninitialized {
    pub pod: PodKey,
    /// The scheduler's words (`would schedule against uninitialized nodeclaim/…, node/…`).
    pub reason: String,
}

/// A pod the simulation can place nowhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NowhereToGo {
    pub pod: PodKey,
    /// The scheduler's reason.
    pub reason: String,
}

impl KeptReason {
    /// Seconds until the node's `consolidateAfter` has elapsed, when that is what keeps
    /// it: the pass's answer for it may change then on a view that did not.
    pub fn consolidate_after_left_secs(&self) -> Option<i64> {
        match self {
            KeptReason::ConsolidateAfter(ConsolidateAfter::NotElapsed {
                after_secs,
                since_secs,
            })
            | KeptReason::Empty(EmptyHold::ConsolidateAfter(ConsolidateAfter::NotElapsed {
                after_secs,
                since_secs,
            })) => Some((after_secs - since_secs).max(1)),
            _ => None,
        }
    }

    /// What Karpenter would tell the node's owner about it.
    pub fn held(&self) -> Held {
        match self {
            KeptReason::NodePoolMissing { .. }
            | KeptReason::NotInitialized
            | KeptReason::Nominated { .. } => Held::Blocked,
            KeptReason::Blocked(blocker) if !blocker.chosen() => Held::Blocked,
            KeptReason::Unconsolidatable(_) => Held::Unconsolidatable,
            _ => Held::Quiet,
        }
    }

    /// The reason without its particulars (nodes, pods, numbers), so that alike reasons
    /// count together: `consolidateAfter not elapsed`, `no cheaper placement`.
    pub fn kind(&self) -> String {
        match self {
            KeptReason::NothingToDo => "nothing to do".to_string(),
            KeptReason::AlreadyDeleting => "already being deleted".to_string(),
            KeptReason::NoNodeClaim => "no NodeClaim".to_string(),
            KeptReason::NodePoolMissing { .. } => "its NodePool does not exist".to_string(),
            KeptReason::NotInitialized => "not initialized yet".to_string(),
            KeptReason::NotAmongValidated => "not among the nodes being validated".to_string(),
            KeptReason::Nominated { .. } => "nominated for pending pods".to_string(),
            KeptReason::Blocked(blocker) => blocker.kind().to_string(),
            KeptReason::Empty(EmptyHold::ConsolidateAfter(c)) => format!("empty, but {}", c.kind()),
            KeptReason::Empty(EmptyHold::Budget(b)) => format!("empty, but {}", b.kind()),
            KeptReason::Drifted { hold, .. } => match hold {
                DriftHold::Budget(b) => format!("drifted, but {}", b.kind()),
                DriftHold::WaitsForUninitialized(_) => {
                    "drifted, but not all pods would schedule".to_string()
                }
                DriftHold::NowhereToGo(_) => "drifted, but a pod has nowhere to go".to_string(),
                DriftHold::ActsFirst(_) => "drifted; waits for a later pass".to_string(),
            },
            KeptReason::WhenEmpty { .. } => "consolidationPolicy WhenEmpty".to_string(),
            KeptReason::ConsolidateAfter(c) => c.kind().to_string(),
            KeptReason::Budget(b) => b.kind().to_string(),
            KeptReason::NotEvaluated { .. } => "not evaluated in this pass".to_string(),
            KeptReason::Unconsolidatable(n) => n.kind().to_string(),
        }
    }
}

impl ConsolidateAfter {
    fn kind(self) -> &'static str {
        match self {
            ConsolidateAfter::Never => "consolidateAfter is Never",
            ConsolidateAfter::NotElapsed { .. } => "consolidateAfter not elapsed",
        }
    }
}

impl fmt::Display for KeptReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeptReason::NothingToDo => f.write_str("nothing to do"),
            KeptReason::AlreadyDeleting => f.write_str("already being deleted"),
            KeptReason::NoNodeClaim => f.write_str(
                "no NodeClaim: Karpenter disrupts only nodes it launched, each with a NodeClaim (the karpenter.sh/nodepool label alone does not make it one)",
            ),
            KeptReason::NodePoolMissing { nodepool } => write!(
                f,
                "its NodePool {nodepool:?} (label karpenter.sh/nodepool) does not exist"
            ),
            KeptReason::NotInitialized => f.write_str("not initialized yet"),
            KeptReason::NotAmongValidated => f.write_str("not among the nodes being validated"),
            KeptReason::Nominated { pods } => {
                f.write_str("nominated for pending pods (")?;
                for (i, pod) in pods.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{pod}")?;
                }
                f.write_str(")")
            }
            KeptReason::Blocked(blocker) => write!(f, "{blocker}"),
            KeptReason::Empty(hold) => write!(f, "empty, but {hold}"),
            KeptReason::Drifted {
                drift,
                hold: DriftHold::ActsFirst(first),
            } => write!(
                f,
                "drifted ({drift}); waits for a later pass: {} acts first",
                first.as_str()
            ),
            KeptReason::Drifted { drift, hold } => write!(f, "drifted ({drift}), but {hold}"),
            KeptReason::WhenEmpty { pods } => write!(
                f,
                "consolidationPolicy WhenEmpty and it runs {}",
                plural(*pods, "pod")
            ),
            KeptReason::ConsolidateAfter(c) => write!(f, "{c}"),
            KeptReason::Budget(b) => write!(f, "{b}"),
            KeptReason::NotEvaluated { first } => write!(
                f,
                "not evaluated in this pass: {} acts first",
                first.as_str()
            ),
            KeptReason::Unconsolidatable(n) => write!(f, "{n}"),
        }
    }
}

impl fmt::Display for EmptyHold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmptyHold::ConsolidateAfter(c) => write!(f, "{c}"),
            EmptyHold::Budget(b) => write!(f, "{b}"),
        }
    }
}

impl fmt::Display for DriftHold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriftHold::Budget(b) => write!(f, "{b}"),
            DriftHold::WaitsForUninitialized(w) => write!(f, "{w}"),
            DriftHold::NowhereToGo(n) => write!(f, "{n}"),
            DriftHold::ActsFirst(first) => {
                write!(f, "waits for a later pass: {} acts first", first.as_str())
            }
        }
    }
}

impl fmt::Display for ConsolidateAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ConsolidateAfter::Never => f.write_str("consolidateAfter is Never"),
            ConsolidateAfter::NotElapsed {
                after_secs,
                since_secs,
            } => write!(
                f,
                "consolidateAfter {} not elapsed ({} since last pod event)",
                render_duration(after_secs),
                render_duration(since_secs)
            ),
        }
    }
}

impl NowhereToGo {
    pub(crate) fn of(u: &kerf_scheduling::Unschedulable) -> NowhereToGo {
        NowhereToGo {
            pod: u.pod.clone(),
            reason: u.reason.clone(),
        }
    }
}

impl fmt::Display for WaitsForUninitialized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "not all pods would schedule, {} => {}",
            self.pod, self.reason
        )
    }
}

impl fmt::Display for NowhereToGo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pod {} has nowhere to go: {}", self.pod, self.reason)
    }
}

#[cfg(test)]
mod tests {
    use kerf_model::pod::PodKey;

    use super::{ConsolidateAfter, EmptyHold, KeptReason};
    use crate::budget::{BudgetSpent, Reason};
    use crate::facts::Blocker;

    #[test]
    fn a_kind_leaves_out_the_particulars() {
        let not_elapsed = ConsolidateAfter::NotElapsed {
            after_secs: 300,
            since_secs: 120,
        };
        assert_eq!(
            KeptReason::ConsolidateAfter(not_elapsed).to_string(),
            "consolidateAfter 5m not elapsed (2m since last pod event)"
        );
        assert_eq!(
            KeptReason::ConsolidateAfter(not_elapsed).kind(),
            "consolidateAfter not elapsed"
        );
        let spent = BudgetSpent {
            nodepool: "default".to_string(),
            reason: Reason::Empty,
            allowance: "0 nodes".to_string(),
            allows_none: true,
        };
        let empty = KeptReason::Empty(EmptyHold::Budget(spent));
        assert_eq!(
            empty.to_string(),
            "empty, but budget of nodepool default (0 nodes) allows no Empty disruptions now"
        );
        assert_eq!(empty.kind(), "empty, but budget allows no disruptions now");
        let pod = KeptReason::Blocked(Blocker::Pod {
            pod: PodKey {
                namespace: "default".to_string(),
                name: "web-1-3".to_string(),
            },
            duration: None,
        });
        assert_eq!(
            pod.to_string(),
            "pod default/web-1-3 has karpenter.sh/do-not-disrupt"
        );
        assert_eq!(pod.kind(), "pod has karpenter.sh/do-not-disrupt");
    }
}
