//! The only crate that knows kerf's wire formats: Karpenter v1 CRD types (NodePool,
//! NodeClaim, EC2NodeClass) with their defaults and validation, the CRD manifests kerf
//! serves, and the conversion of ordinary Kubernetes YAML (Pods, workloads, Nodes,
//! volumes, DaemonSets) into `kerf-model` values.
//!
//! Validation happens here, once, at the edge: what leaves this crate is a domain value
//! the core never re-checks. It does no scheduling and talks to no API server.

pub mod cluster;
pub mod crd;
pub mod error;
pub mod load;
mod names;

pub use error::{Error, FieldError};
pub use load::{Manifests, load_paths, load_str};
