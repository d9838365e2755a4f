//! NodePools as the core uses them: validated once by `kerf-api`, never re-checked here.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::requirements::Requirements;
use crate::selector::Labels;
use crate::taints::Taint;
use crate::{Quantity, QuantityError, Resources};

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
    pub limits: Limits,
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
            limits: Limits::new(),
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

/// A NodePool's `limits`: a cap per resource, `nodes` capping the node count. Unlike
/// [`Resources`], where a missing name means zero, a limit of zero is kept: it is a cap
/// that lets the pool launch nothing (as in Karpenter), not the absence of a cap.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits(BTreeMap<String, Quantity>);

impl Limits {
    pub fn new() -> Limits {
        Limits::default()
    }

    /// Builds from `(name, quantity string)` pairs; for tests.
    pub fn parse<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Limits, QuantityError> {
        let mut l = Limits::new();
        for (name, q) in pairs {
            l.set(name, Quantity::parse(q)?);
        }
        Ok(l)
    }

    /// Caps `name` at `q`, zero included.
    pub fn set(&mut self, name: &str, q: Quantity) {
        self.0.insert(name.to_string(), q);
    }

    /// The cap on `name`, if there is one.
    pub fn get(&self, name: &str) -> Option<Quantity> {
        self.0.get(name).copied()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// No resource is capped.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, Quantity)> {
        self.0.iter().map(|(k, v)| (k.as_str(), *v))
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// What each capped resource has left once `used` is taken (negative where the cap is
    /// already exceeded). Uncapped resources are absent, as zero.
    pub fn remaining(&self, used: &Resources) -> Resources {
        let mut left = Resources::new();
        for (name, cap) in self.iter() {
            left.set(name, cap - used.get(name));
        }
        left
    }
}

impl fmt::Display for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{k}={}", Resources::render(k, v))?;
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_limit_is_a_cap_not_its_absence() {
        let limits = Limits::parse([("cpu", "0"), ("nodes", "0m")]).unwrap();
        assert!(!limits.is_empty());
        assert_eq!(limits.get("cpu"), Some(Quantity::ZERO));
        assert!(limits.contains("nodes"));
        assert_eq!(limits.get("memory"), None);
        assert_eq!(limits.to_string(), "cpu=0, nodes=0");
        let used = Resources::parse([("cpu", "2"), ("memory", "4Gi")]).unwrap();
        assert_eq!(
            limits.remaining(&used),
            Resources::parse([("cpu", "-2")]).unwrap()
        );
    }
}
