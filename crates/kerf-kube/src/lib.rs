//! kerf's Kubernetes shell: `kerf controller`. It runs the very loops the simulator runs
//! (`kerf-controllers`) against a real cluster — watches into the `ClusterView`, one task
//! stepping the `Controller` when the view changes or a loop's deadline comes, an
//! executor performing each `Action` through the API server or the cloud provider and
//! reporting outcomes back as `Event`s — with leader election on a Lease, `/healthz`,
//! `/readyz` and `/metrics`, and the `kwok` provider for clusters without a cloud.
//!
//! What it deliberately is not: a decision-maker. Every decision is the core's; this
//! crate only keeps the view true and carries actions out, so what `kerf simulate` shows
//! is what production does. Whatever it keeps beyond the cluster and the cloud
//! (nominations, the in-flight set) is a cache a restart may drop.

pub mod claims;
pub mod events;
pub mod kwok;
pub mod leader;
pub mod metrics;
pub mod nodepools;
pub mod pace;
mod run;
pub mod settings;
pub mod shell;
pub mod state;

pub use run::run;
pub use settings::{ControllerArgs, Settings};

/// Logs as Karpenter's: one line per decision, JSON on request (`LOG_JSON`), at
/// `LOG_LEVEL`. `RUST_LOG` overrides the level per module.
pub fn init_logging(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "{},kube=warn,hyper=warn,tower=warn",
            settings.log_level.as_str().to_ascii_lowercase()
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if settings.log_json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
