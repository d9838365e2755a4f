//! The kerf domain model: quantities and resource lists, the node-requirements algebra,
//! taints and tolerations, pods and their scheduling constraints, nodes and NodeClaims,
//! instance types and offerings, NodePools, PodDisruptionBudgets, and the simulated instance catalogs.
//!
//! Everything here is plain data with pure functions over it. It knows no wire format
//! (that is `kerf-api`'s job), does no I/O and reads no clock.

pub mod catalog;
pub mod drift;
pub mod instance_type;
pub mod labels;
pub mod node;
pub mod nodeclaim;
pub mod nodepool;
pub mod pdb;
pub mod pod;
pub mod quantity;
pub mod requirements;
pub mod resources;
pub mod selector;
pub mod taints;

pub use drift::{Drift, DriftReason};
pub use instance_type::{InstanceType, Offering};
pub use node::Node;
pub use nodeclaim::NodeClaim;
pub use nodepool::{Limits, NodePool};
pub use pdb::{IntOrPercent, Pdb};
pub use pod::Pod;
pub use quantity::{Quantity, QuantityError};
pub use requirements::{Operator, Requirement, Requirements};
pub use resources::Resources;
pub use selector::{LabelSelector, Labels};
pub use taints::{Effect, Taint, Toleration, TolerationOperator};

/// 64-bit FNV-1a: tiny and stable across platforms and releases, for the hashes kerf
/// prints or derives decisions from (spot prices, NodePool and pod template hashes).
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(PRIME)
    })
}
