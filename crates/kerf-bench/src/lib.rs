//! Workloads and yardsticks for kerf's benchmark suites (see `BENCHMARKS.md`).
//!
//! The binary (`cargo run --release -p kerf-bench -- <suite>`) runs the suites and prints
//! the tables; this library holds what they are made of, so criterion benches and tests
//! build the same inputs and check the same numbers:
//!
//! - `shape`: Karpenter's scheduling benchmark input, for the `scheduling` suite;
//! - `mix`: realistic pod mixes on the `aws` catalog, for the `cost` suite;
//! - `fleet`: one NodePool's instance types reduced to allocatable-after-DaemonSets and
//!   price, shared by the two yardsticks below;
//! - `lower_bound`: the fluid and configuration (Gilmore–Gomory) LP lower bounds, with
//!   `knapsack` as the configuration bound's exact pricing step;
//! - `reference`: Karpenter's documented packing algorithm, as a baseline to beat;
//! - `case`: the suites' cases and what each reports;
//! - `disruption`: the `disruption` suite — a fragmented cluster, one pass's decision time
//!   and the cost of applying passes to a fixpoint, against the same lower bounds.
//!
//! Nothing here decides anything for kerf (the `disruption` suite calls
//! `kerf_disruption::compute_commands` and only applies what it returns): the yardsticks
//! share no code with the solver, so a solver bug cannot make its own yardstick look good.

pub mod case;
pub mod disruption;
pub mod fleet;
pub mod knapsack;
pub mod lower_bound;
pub mod mix;
pub mod reference;
pub mod shape;

use fleet::Vector;

/// Why a yardstick could not be computed for an input.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the cost yardsticks model exactly one NodePool; the input has {0}")]
    NodePools(usize),
    #[error(
        "pod {pod} requests {resource:?}, which the cost yardsticks do not model (only cpu, memory and pods)"
    )]
    UnmodelledResource { pod: String, resource: String },
    #[error(
        "a pod requesting {request:?} (cpu, memory, pods in milli-units) fits no instance type of NodePool {nodepool:?} after DaemonSet overhead"
    )]
    NoFit { request: Vector, nodepool: String },
    #[error("the LP solver failed on {what}")]
    Lp {
        what: &'static str,
        #[source]
        source: good_lp::ResolutionError,
    },
}
