//! PodDisruptionBudgets: how many of a set of pods may be evicted at once.

use crate::selector::{LabelSelector, Labels};

/// An absolute number or a percentage, as in `minAvailable: 2` or `maxUnavailable: 10%`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntOrPercent {
    Int(i32),
    Percent(i32),
}

impl IntOrPercent {
    /// The value scaled against `total`, rounding a percentage up as Kubernetes'
    /// disruption controller does for both `minAvailable` and `maxUnavailable`.
    pub fn scaled_up(self, total: i32) -> i32 {
        match self {
            IntOrPercent::Int(n) => n,
            IntOrPercent::Percent(p) => ((i64::from(p) * i64::from(total) + 99) / 100) as i32,
        }
    }
}

/// A `policy/v1` PodDisruptionBudget.
#[derive(Clone, Debug, PartialEq)]
pub struct Pdb {
    pub namespace: String,
    pub name: String,
    /// `spec.selector`; Kubernetes' empty selector matches every pod in the namespace.
    pub selector: LabelSelector,
    pub min_available: Option<IntOrPercent>,
    pub max_unavailable: Option<IntOrPercent>,
    /// `status.disruptionsAllowed`, when the input carries a status (read back from a
    /// cluster). When present it is what the eviction API enforces, so it wins.
    pub disruptions_allowed: Option<i32>,
}

impl Pdb {
    /// Whether the budget covers a pod with these namespace and labels.
    pub fn selects(&self, namespace: &str, labels: &Labels) -> bool {
        self.namespace == namespace && self.selector.matches(labels)
    }

    /// Evictions allowed now, given how many pods it selects (all counted healthy: the
    /// input has bound pods, not their readiness). Without a status this is what the
    /// disruption controller would compute: `healthy - minAvailable`, or
    /// `maxUnavailable - unhealthy`; with neither field set, unlimited.
    pub fn allowed(&self, n_selected: i32) -> i32 {
        if let Some(allowed) = self.disruptions_allowed {
            return allowed.max(0);
        }
        match (self.min_available, self.max_unavailable) {
            (_, Some(max)) => max.scaled_up(n_selected).max(0),
            (Some(min), None) => (n_selected - min.scaled_up(n_selected)).max(0),
            (None, None) => i32::MAX,
        }
    }
}
