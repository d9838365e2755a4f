//! Provisioning scheduling: `solve(&Input, &Config) -> Plan`.
//!
//! Given pending pods, the nodes that exist (with the pods bound to them), the NodePools
//! and the instance types a cloud offers, `solve` decides where every pod goes: onto an
//! existing node, onto a NodeClaim it opens, or nowhere — with a reason a person can act
//! on. It follows Kubernetes semantics (every placement is one kube-scheduler would
//! accept on that node) and Karpenter's provisioning order: existing nodes first, then
//! claims already opened in this solve, then new claims from NodePools by weight.
//!
//! It is a pure function: no I/O, no clock, no randomness, and the same input gives the
//! same plan. It does not launch anything and records no metrics; the caller does.

mod claim;
mod dense;
mod explain;
mod fold;
mod solve;
mod topology;
pub mod validate;

use std::collections::BTreeMap;

use kerf_model::pod::PodKey;
use kerf_model::{InstanceType, Labels, Node, NodePool, Pod, Requirements, Resources, Taint};

pub use fold::{Visibility, fold_bound_pods, smallest_request};
pub use solve::solve;

/// Everything `solve` looks at: a snapshot of the cluster and the cloud.
#[derive(Clone, Debug, Default)]
pub struct Input {
    /// Pods to place.
    pub pods: Vec<Pod>,
    /// Pods already running, with `node_name` set; they use capacity and count for
    /// topology spread and (anti-)affinity.
    pub bound_pods: Vec<Pod>,
    pub nodes: Vec<Node>,
    pub nodepools: Vec<NodePool>,
    /// Every instance type the cloud offers; each NodePool's requirements select from it.
    pub instance_types: Vec<InstanceType>,
    /// One template pod per DaemonSet: its requests are overhead on every node it would
    /// land on.
    pub daemonsets: Vec<Pod>,
    /// Namespace labels, for affinity terms with a `namespaceSelector`.
    pub namespaces: BTreeMap<String, Labels>,
}

/// How soft constraints are treated, as Karpenter's `--preference-policy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PreferencePolicy {
    /// Treat preferences as required, relaxing them one step at a time only for pods that
    /// cannot otherwise be placed.
    #[default]
    Respect,
    /// Ignore preferred affinities and `ScheduleAnyway` spreads from the start.
    Ignore,
}

/// How `minValues` is enforced, as Karpenter's `--min-values-policy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MinValuesPolicy {
    /// A claim that cannot keep `minValues` distinct values open does not take the pod.
    #[default]
    Strict,
    /// Keep as many as possible.
    BestEffort,
}

/// How an unplaceable pod's reason speaks of the existing nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NodeReasons {
    /// Why each node refused it (few nodes), or each kind of refusal with a count (many).
    #[default]
    Each,
    /// Only how many nodes there were: for callers that solve again and again and show
    /// few of the reasons (a disruption pass's simulations, the simulator's scheduler).
    Count,
}

/// Whether a claim greedy packing grew past a price step is re-packed onto a cheaper
/// set of claims (see `solve/split.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SplitClaims {
    /// When the set is strictly cheaper: provisioning buys the cheapest fleet.
    #[default]
    WhenCheaper,
    /// Never: a consolidation replaces its nodes with exactly one claim, so it must know
    /// whether one claim holds their pods, not how cheaply several would.
    Never,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub preference_policy: PreferencePolicy,
    pub min_values_policy: MinValuesPolicy,
    pub node_reasons: NodeReasons,
    pub split_claims: SplitClaims,
}

/// What `solve` decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Claims to launch, in the order they were opened.
    pub new_claims: Vec<NewClaim>,
    /// Existing nodes that receive pending pods, in input node order.
    pub existing: Vec<ExistingPlacement>,
    /// Pods that cannot be placed, in input pod order.
    pub unschedulable: Vec<Unschedulable>,
}

impl Plan {
    /// Dollars per hour of every claim to launch.
    pub fn cost_per_hour(&self) -> f64 {
        // Folded from +0.0: an empty f64 sum is -0.0, which would print as "-0".
        self.new_claims
            .iter()
            .fold(0.0, |sum, c| sum + c.launch.price)
    }
}

/// The offering a claim launches with.
#[derive(Clone, Debug, PartialEq)]
pub struct Launch {
    pub instance_type: String,
    pub zone: String,
    pub capacity_type: String,
    pub price: f64,
    pub price_is_estimate: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewClaim {
    pub nodepool: String,
    /// The cheapest offering that fits every pod.
    pub launch: Launch,
    /// The instance types that would fit, cheapest first: the flexibility a launch keeps.
    /// At most 60 (Karpenter's `MaxInstanceTypes`), unless a requirement sets `minValues`.
    pub instance_type_options: Vec<String>,
    /// NodePool requirements narrowed by the pods' requirements and topology.
    pub requirements: Requirements,
    /// Every label the node will carry that pods can select on.
    pub labels: Labels,
    pub taints: Vec<Taint>,
    pub pods: Vec<PodKey>,
    /// The pods' requests plus daemonset overhead.
    pub requests: Resources,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ExistingPlacement {
    pub node: String,
    pub pods: Vec<PodKey>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Unschedulable {
    pub pod: PodKey,
    pub reason: String,
}
