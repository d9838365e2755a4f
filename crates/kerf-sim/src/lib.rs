//! The simulator: scenario files, the discrete-event engine, and its reports.
//!
//! `run` replays a scenario in virtual time: an in-memory cluster (`cluster.rs`: pods,
//! nodes, NodeClaims, workloads that recreate their pods, PDB-enforcing evictions), a
//! minimal kube-scheduler (`scheduler.rs`), the simulated cloud (`kerf-cloud`), and an
//! autoscaler driven through the `Autoscaler` trait — kerf's control loops, unchanged, or
//! another autoscaler (`baseline.rs`, the node-group baseline) over the same cluster and
//! cloud. Nothing sleeps and nothing reads the clock: the same scenario and seed give the
//! same report.
//! Rendering reports is not here (`render`, `html`).

pub mod baseline;
mod cluster;
mod engine;
pub mod html;
pub mod render;
pub mod report;
pub mod scenario;
mod scheduler;

pub use baseline::NodeGroups;
pub use engine::{Autoscaler, Kerf, Run, RunOptions, run};
pub use report::SimReport;
pub use scenario::{Scenario, ScenarioError};
