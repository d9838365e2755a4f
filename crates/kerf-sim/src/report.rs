//! What one simulated run measured. The engine fills a `SimReport`; the renderers
//! (terminal summary, JSON, HTML with charts) only read it, so a baseline autoscaler run
//! over the same scenario is shown the same way, side by side.

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SimReport {
    /// The scenario's name (its file stem unless it names itself).
    pub scenario: String,
    /// Which autoscaler ran: `kerf`, or `node-groups` for the Cluster Autoscaler-style
    /// baseline.
    pub autoscaler: String,
    pub seed: u64,
    pub duration_secs: i64,
    /// Seconds between `samples`.
    pub sample_interval_secs: i64,
    /// The cluster every `sample_interval_secs`, from t = 0.
    pub samples: Vec<Sample>,
    /// Dollars spent on instances over the run (each instance billed per second from
    /// launch until terminated, at its offering's price).
    pub total_cost: f64,
    /// How long pods waited from creation to binding.
    pub pending: PendingStats,
    /// Nodes disrupted, by reason: `emptiness`, `drift`, `expiration`,
    /// `single-node-consolidation`, `multi-node-consolidation`, `interruption`,
    /// `scale-down` and `scale-down-empty` (the node-group baseline), ...
    pub disruptions: BTreeMap<String, u64>,
    /// Pods evicted through the eviction API (PDB-respecting).
    pub evictions: u64,
    /// Evictions or deletions that left a PodDisruptionBudget below its allowance.
    /// Must be zero.
    pub pdb_violations: u64,
    /// Pods with `karpenter.sh/do-not-disrupt` evicted before their node's
    /// `terminationGracePeriod` ran out. Must be zero.
    pub do_not_disrupt_violations: u64,
    /// Instances still running at the end with no NodeClaim (or node group) owning them.
    /// Must be zero.
    pub leaked_instances: u64,
    /// Instances launched for a NodeClaim that already had one. Must be zero.
    pub double_launches: u64,
    /// Instances launched, and launch attempts refused for lack of capacity.
    pub launches: u64,
    pub insufficient_capacity_errors: u64,
    /// Pods still pending when the run ended.
    pub pending_at_end: u64,
}

/// The cluster at one instant.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds since the start of the run.
    pub t: i64,
    /// Sum of the hourly prices of the instances running.
    pub cost_per_hour: f64,
    /// Nodes by `<nodepool>/<capacity-type>` (the baseline's nodes carry their NodePool's
    /// label too).
    pub nodes: BTreeMap<String, u32>,
    /// vCPUs requested by bound pods (DaemonSet pods included) and allocatable on ready nodes.
    pub cpu_requested: f64,
    pub cpu_allocatable: f64,
    /// GiB requested and allocatable, likewise.
    pub memory_requested_gib: f64,
    pub memory_allocatable_gib: f64,
    pub pending_pods: u32,
    pub running_pods: u32,
}

/// Percentiles of pod pending time, in seconds (nearest-rank).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PendingStats {
    /// Pods that were bound during the run.
    pub count: u64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl PendingStats {
    /// Nearest-rank percentiles of the given waits (seconds), in any order.
    pub fn from_waits(mut waits: Vec<f64>) -> PendingStats {
        if waits.is_empty() {
            return PendingStats::default();
        }
        waits.sort_by(f64::total_cmp);
        let rank = |q: f64| {
            let i = ((q * waits.len() as f64).ceil() as usize).clamp(1, waits.len());
            waits[i - 1]
        };
        PendingStats {
            count: waits.len() as u64,
            p50: rank(0.50),
            p95: rank(0.95),
            p99: rank(0.99),
            max: waits[waits.len() - 1],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s = PendingStats::from_waits((1..=100).rev().map(f64::from).collect());
        assert_eq!(
            (s.count, s.p50, s.p95, s.p99, s.max),
            (100, 50.0, 95.0, 99.0, 100.0)
        );
        assert_eq!(PendingStats::from_waits(vec![]), PendingStats::default());
        let one = PendingStats::from_waits(vec![3.0]);
        assert_eq!((one.p50, one.p99), (3.0, 3.0));
    }
}
