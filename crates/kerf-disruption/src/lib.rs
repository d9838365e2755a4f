//! Disruption decisions: `compute_commands(&Snapshot, now, &Config) -> Outcome`.
//!
//! Given the nodes that exist (with their NodeClaims), the pods bound to them, the
//! NodePools, PodDisruptionBudgets, resolved node-class images and the instance catalog,
//! it decides which nodes to remove or replace in one pass, as Karpenter v1's disruption
//! controller would: expired nodes always (expiration is forceful and ignores budgets),
//! then the first of emptiness, drift, multi-node consolidation and single-node
//! consolidation that finds something to do. Every managed node it leaves alone comes
//! back with the reason.
//!
//! Where pods would go is decided by `kerf_scheduling::solve`, the same function that
//! provisions, over the cluster without the candidates. It is a pure function: `now` is a
//! parameter (Unix seconds), there is no I/O and no randomness, and the same snapshot
//! gives the same outcome. It neither taints, drains nor deletes anything: a controller
//! executes the commands.

mod budget;
pub mod check;
mod consolidation;
mod facts;
mod kept;
mod pass;
mod world;

use std::collections::BTreeMap;

use kerf_model::pod::PodKey;
use kerf_model::{Drift, InstanceType, Labels, Node, NodeClaim, NodePool, Pdb, Pod};
use kerf_scheduling::NewClaim;

pub use budget::{Allowance, BudgetSpent, Reason, Schedule, allowance};
pub use consolidation::{NoCheaper, NoConsolidation};
pub use facts::{Blocker, claims_by_node, is_leaving, reschedulable};
pub use kept::{
    ConsolidateAfter, DriftHold, EmptyHold, Held, Kept, KeptReason, NowhereToGo,
    WaitsForUninitialized,
};
pub use pass::{compute_commands, compute_commands_among};

/// Everything a disruption pass looks at.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub nodes: Vec<Node>,
    /// NodeClaims, matched to nodes by `status.nodeName` (or, failing that, by name).
    /// A managed node without one is judged from its own labels and annotations.
    pub nodeclaims: Vec<NodeClaim>,
    /// Pods bound to nodes (`node_name` set).
    pub bound_pods: Vec<Pod>,
    /// Pods not yet bound. Nodes the scheduler would place them on are nominated, and
    /// so are not disrupted in this pass.
    pub pending_pods: Vec<Pod>,
    pub nodepools: Vec<NodePool>,
    pub pdbs: Vec<Pdb>,
    /// Image IDs each EC2NodeClass resolved to (`status.amis`), by class name. A class
    /// absent here has not resolved its images, and no node drifts on images because of it.
    pub node_class_images: BTreeMap<String, Vec<String>>,
    /// Annotations of each node class, by name. An EC2NodeClass's
    /// `karpenter.k8s.aws/ec2nodeclass-hash` is compared with the one each of its
    /// NodeClaims launched under, when both carry the same hash version.
    pub node_class_annotations: BTreeMap<String, Labels>,
    /// What the cloud provider found drifted on a NodeClaim's instance (an image, subnet or
    /// security groups its node class no longer resolves to), by NodeClaim name.
    pub cloud_drift: BTreeMap<String, Drift>,
    /// What the cloud offers now; an instance type missing here no longer exists.
    pub instance_types: Vec<InstanceType>,
    pub daemonsets: Vec<Pod>,
    pub namespaces: BTreeMap<String, Labels>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// How simulations schedule the displaced pods.
    pub scheduling: kerf_scheduling::Config,
    /// Karpenter's `SpotToSpotConsolidation` feature gate (off by default there too):
    /// whether spot nodes may be replaced by cheaper spot nodes.
    pub spot_to_spot: bool,
}

/// Which disruption method produced a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Method {
    Expiration,
    Emptiness,
    Drift,
    MultiNodeConsolidation,
    SingleNodeConsolidation,
}

impl Method {
    pub const ALL: [Method; 5] = [
        Method::Expiration,
        Method::Emptiness,
        Method::Drift,
        Method::MultiNodeConsolidation,
        Method::SingleNodeConsolidation,
    ];

    /// The method `as_str` names.
    pub fn parse(s: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Expiration => "expiration",
            Method::Emptiness => "emptiness",
            Method::Drift => "drift",
            Method::MultiNodeConsolidation => "multi-node-consolidation",
            Method::SingleNodeConsolidation => "single-node-consolidation",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The nodes go and nothing is launched.
    Delete,
    /// Replacements launch (and become ready) before the nodes are drained.
    Replace,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Delete => "delete",
            Decision::Replace => "replace",
        }
    }
}

/// Where a displaced pod goes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Destination {
    /// An existing node that stays.
    Node(String),
    /// The command's replacement with this index.
    Replacement(usize),
    /// Nowhere the scheduler can find (expiration only: it drains regardless).
    Pending,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Move {
    pub pod: PodKey,
    pub to: Destination,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    pub method: Method,
    pub decision: Decision,
    /// The nodes disrupted, in disruption-cost order.
    pub nodes: Vec<String>,
    /// Why, in a sentence: `drifted: image ami-1 is no longer …`, `empty`, …
    pub why: String,
    /// NodeClaims to launch, as the scheduler would launch them.
    pub replacements: Vec<NewClaim>,
    /// Every displaced pod and its destination, by pod.
    pub moves: Vec<Move>,
    /// Price of the nodes less price of the replacements (negative when a forced
    /// replacement costs more).
    pub savings_per_hour: f64,
    /// What the drain will wait for (expiration honours PDBs and `do-not-disrupt` until
    /// `terminationGracePeriod`), and pods with nowhere to go.
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    /// Where the pass assumes the pods of nodes already being deleted go (onto nodes
    /// that stay; `Pending` when none has room): they take that room in every
    /// simulation, as Karpenter reserves it. Not commands: those nodes are already going.
    pub assumed_moves: Vec<Move>,
    pub commands: Vec<Command>,
    /// Every managed node not in a command, by name.
    pub kept: Vec<Kept>,
    /// Price of every node whose price is known.
    pub cost_per_hour_before: f64,
    /// The same after the commands.
    pub cost_per_hour_after: f64,
    /// The `Drifted` and `Consolidatable` conditions of every managed node's NodeClaim
    /// whose NodePool exists, in node order, whatever the pass decided about the node.
    pub conditions: Vec<ClaimConditions>,
}

/// What a NodeClaim's `Drifted` and `Consolidatable` conditions say, as Karpenter's
/// NodeClaim disruption controller (`nodeclaim/disruption`) writes them: each is True or
/// absent (Karpenter removes a condition that no longer holds; it never writes False).
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimConditions {
    pub claim: String,
    /// `Drifted`, with Karpenter's reason: the claim has drifted, whether or not drift
    /// may disrupt it in this pass.
    pub drifted: Option<Drift>,
    /// `Consolidatable`: the claim is initialized and its NodePool's `consolidateAfter`
    /// (not `Never`) has run since its last pod event, on the clock emptiness and
    /// consolidation wait on.
    pub consolidatable: bool,
}

/// `1h30m`, `2m10s`, `45s`: the way Kubernetes durations are written.
pub fn render_duration(secs: i64) -> String {
    if secs <= 0 {
        return "0s".to_string();
    }
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}
