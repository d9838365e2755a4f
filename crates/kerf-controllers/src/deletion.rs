//! Why a NodeClaim is deleted: a value the loops decide and every consumer matches —
//! the simulator's counters, the shells' `DisruptionReason` condition, metrics and event
//! messages — instead of prose split on `:` and compared by prefix.
//!
//! `Display` is the kebab-case name the reports, logs and the condition's message carry
//! (`emptiness`, `launch-failed: <message>`, ...); `FromStr` reads it back, which is how
//! a restarted controller learns why a claim it finds deleting was deleted.

use std::fmt;
use std::str::FromStr;

use kerf_disruption::Method;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeletionReason {
    /// A disruption command's method; `Expiration` also when the lifecycle loop expires
    /// a claim directly.
    Disruption(Method),
    /// A spot interruption warning.
    Interruption,
    /// The cloud announced maintenance of the instance (scheduled change, stop).
    ScheduledMaintenance,
    /// No offering of the claim had capacity.
    InsufficientCapacity,
    /// The cloud refused the launch, with its message.
    LaunchFailed(String),
    /// The claim's instance is gone.
    InstanceTerminated,
    /// The node did not register in time.
    RegistrationTimeout,
    /// Someone deleted the claim's Node.
    NodeDeleted,
    /// The node-group baseline (Cluster Autoscaler) removed an unneeded node; `empty`
    /// when it had no pods to move.
    ScaleDown { empty: bool },
}

impl DeletionReason {
    /// The name without detail: what reports count by.
    pub fn kind(&self) -> &'static str {
        match self {
            DeletionReason::Disruption(m) => m.as_str(),
            DeletionReason::Interruption => "interruption",
            DeletionReason::ScheduledMaintenance => "scheduled-maintenance",
            DeletionReason::InsufficientCapacity => "insufficient-capacity",
            DeletionReason::LaunchFailed(_) => "launch-failed",
            DeletionReason::InstanceTerminated => "instance-terminated",
            DeletionReason::RegistrationTimeout => "registration-timeout",
            DeletionReason::NodeDeleted => "node-deleted",
            DeletionReason::ScaleDown { empty: false } => "scale-down",
            DeletionReason::ScaleDown { empty: true } => "scale-down-empty",
        }
    }

    /// Whether the deletion takes away a working node (a disruption in the reports), as
    /// opposed to cleaning up a claim that never became one.
    pub fn is_disruption(&self) -> bool {
        matches!(
            self,
            DeletionReason::Disruption(_)
                | DeletionReason::Interruption
                | DeletionReason::ScheduledMaintenance
                | DeletionReason::ScaleDown { .. }
        )
    }

    /// Whether the claim failed to become a node (the baseline backs its group off).
    pub fn is_launch_failure(&self) -> bool {
        matches!(
            self,
            DeletionReason::InsufficientCapacity
                | DeletionReason::LaunchFailed(_)
                | DeletionReason::RegistrationTimeout
        )
    }

    /// Karpenter's `DisruptionReason` (`Empty`, `Drifted`, `Underutilized`, `Expired`,
    /// `Interrupted`), for the NodeClaim condition, event messages and metric labels;
    /// `None` for deletions Karpenter does not call a disruption.
    pub fn karpenter(&self) -> Option<&'static str> {
        Some(match self {
            DeletionReason::Disruption(Method::Emptiness) => "Empty",
            DeletionReason::Disruption(Method::Drift) => "Drifted",
            DeletionReason::Disruption(
                Method::MultiNodeConsolidation | Method::SingleNodeConsolidation,
            ) => "Underutilized",
            DeletionReason::Disruption(Method::Expiration) => "Expired",
            DeletionReason::Interruption => "Interrupted",
            _ => return None,
        })
    }
}

impl fmt::Display for DeletionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeletionReason::LaunchFailed(message) => write!(f, "launch-failed: {message}"),
            other => f.write_str(other.kind()),
        }
    }
}

impl FromStr for DeletionReason {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(message) = s.strip_prefix("launch-failed: ") {
            return Ok(DeletionReason::LaunchFailed(message.to_string()));
        }
        if let Some(m) = Method::parse(s) {
            return Ok(DeletionReason::Disruption(m));
        }
        Ok(match s {
            "interruption" => DeletionReason::Interruption,
            "scheduled-maintenance" => DeletionReason::ScheduledMaintenance,
            "insufficient-capacity" => DeletionReason::InsufficientCapacity,
            "launch-failed" => DeletionReason::LaunchFailed(String::new()),
            "instance-terminated" => DeletionReason::InstanceTerminated,
            "registration-timeout" => DeletionReason::RegistrationTimeout,
            "node-deleted" => DeletionReason::NodeDeleted,
            "scale-down" => DeletionReason::ScaleDown { empty: false },
            "scale-down-empty" => DeletionReason::ScaleDown { empty: true },
            other => return Err(format!("unknown NodeClaim deletion reason {other:?}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_reads_back_from_what_it_prints() {
        let all = [
            DeletionReason::Disruption(Method::Expiration),
            DeletionReason::Disruption(Method::Emptiness),
            DeletionReason::Disruption(Method::Drift),
            DeletionReason::Disruption(Method::MultiNodeConsolidation),
            DeletionReason::Disruption(Method::SingleNodeConsolidation),
            DeletionReason::Interruption,
            DeletionReason::ScheduledMaintenance,
            DeletionReason::InsufficientCapacity,
            DeletionReason::LaunchFailed("InvalidParameter: no: such".into()),
            DeletionReason::InstanceTerminated,
            DeletionReason::RegistrationTimeout,
            DeletionReason::NodeDeleted,
            DeletionReason::ScaleDown { empty: false },
            DeletionReason::ScaleDown { empty: true },
        ];
        for r in &all {
            assert_eq!(r.to_string().parse::<DeletionReason>().as_ref(), Ok(r));
        }
        assert!("made-up".parse::<DeletionReason>().is_err());
        assert_eq!(
            DeletionReason::Disruption(Method::SingleNodeConsolidation).karpenter(),
            Some("Underutilized")
        );
        assert_eq!(DeletionReason::NodeDeleted.karpenter(), None);
    }
}
