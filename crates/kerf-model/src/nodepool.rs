//! NodePools as the core uses them: validated once by `kerf-api`, never re-checked here.

use std::time::Duration;

use crate::Resources;
use crate::requirements::Requirements;
use crate::selector::Labels;
use crate::taints::Taint;

#[derive(Clone, Debug, PartialEq)]
pub struct NodePool {
    pub name: String,
    /// Higher weights are tried first; Karpenter's default is 0 when unset.
    pub weight: i32,
    /// Template requirements, including `minValues`.
    pub requirements: Requirements,
    /// Template labels, added to every node.
    pub labels: Labels,
    pub taints: Vec<Taint>,
    /// Taints present only while the node starts; they do not block scheduling.
    pub startup_taints: Vec<Taint>,
    /// Caps on the pool's total capacity; `nodes` caps the node count. Empty = unlimited.
    pub limits: Resources,
    pub node_class: Option<NodeClassRef>,
    pub disruption: Disruption,
    /// `None` is `Never`.
    pub expire_after: Option<Duration>,
    pub termination_grace_period: Option<Duration>,
    /// A stable hash of the template without its requirements (see `kerf-api`'s
    /// `nodepool_hash`): a NodeClaim annotated with a different one has drifted.
    pub template_hash: String,
}

impl NodePool {
    /// A pool with no constraints, for tests and the embedded default.
    pub fn new(name: &str) -> NodePool {
        NodePool {
            name: name.to_string(),
            weight: 0,
            requirements: Requirements::new(),
            labels: Labels::new(),
            taints: Vec::new(),
            startup_taints: Vec::new(),
            limits: Resources::new(),
            node_class: None,
            disruption: Disruption::default(),
            expire_after: Some(Duration::from_secs(720 * 3600)),
            termination_grace_period: None,
            template_hash: String::new(),
        }
    }

    /// Requirements plus the template labels and `karpenter.sh/nodepool`, each as
    /// `In [value]`: everything a node of this pool is known to satisfy before an instance
    /// type is chosen (Karpenter's `NewNodeClaimTemplate`). A pool that says nothing about
    /// `karpenter.sh/capacity-type` launches on-demand, as Karpenter does: spot must be
    /// asked for.
    pub fn template_requirements(&self) -> Requirements {
        let mut reqs = self
            .requirements
            .intersection(&Requirements::from_labels(&self.labels));
        reqs.add(
            crate::labels::NODEPOOL,
            crate::Requirement::single(&self.name),
        );
        if reqs.get(crate::labels::CAPACITY_TYPE).is_none() {
            reqs.add(
                crate::labels::CAPACITY_TYPE,
                crate::Requirement::single(crate::labels::CAPACITY_TYPE_ON_DEMAND),
            );
        }
        reqs
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeClassRef {
    pub group: String,
    pub kind: String,
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConsolidationPolicy {
    WhenEmpty,
    WhenEmptyOrUnderutilized,
    /// Karpenter v1.14: like `WhenEmptyOrUnderutilized`, but a consolidation acts only
    /// when its share of the pool's cost saved is at least half its share of the pool's
    /// disruption cost.
    Balanced,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Disruption {
    pub consolidation_policy: ConsolidationPolicy,
    /// `None` is `Never`.
    pub consolidate_after: Option<Duration>,
    pub budgets: Vec<Budget>,
}

impl Default for Disruption {
    fn default() -> Disruption {
        Disruption {
            consolidation_policy: ConsolidationPolicy::WhenEmptyOrUnderutilized,
            consolidate_after: Some(Duration::ZERO),
            budgets: vec![Budget {
                nodes: BudgetNodes::Percent(10),
                schedule: None,
                duration: None,
                reasons: Vec::new(),
            }],
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BudgetNodes {
    Count(u32),
    Percent(u32),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Budget {
    pub nodes: BudgetNodes,
    /// A cron expression, in UTC.
    pub schedule: Option<String>,
    pub duration: Option<Duration>,
    /// `Underutilized`, `Empty`, `Drifted`; empty means every reason.
    pub reasons: Vec<String>,
}
