//! `kerf-kwokbench`: Karpenter's kwok performance suite on a real control plane.
//!
//! ```text
//! cargo build --release -p kerf -p kerf-kwokbench
//! flock /tmp/kerf-e2e.lock target/release/kerf-kwokbench basic
//! ```

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use kerf_kwokbench::{Scenario, Settings, run};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Which {
    /// 1,000 pods (500 at 900m/3100Mi, 500 at 3500m/28Gi), then 700.
    Basic,
    /// 1,000 pods spread over hostnames (maxSkew 1), then 700.
    Spread,
    /// 30 Deployments summing to 1,000 pods with varied requests, then 700.
    Wide,
    /// Basic at 20 pods, then 14: checks the harness end to end in well under a minute.
    Smoke,
}

#[derive(Parser, Debug)]
#[command(about = "Karpenter's kwok performance suite on a real control plane")]
struct Args {
    /// Scenarios to run, one after another, each on a fresh control plane.
    #[arg(required = true)]
    scenarios: Vec<Which>,
    /// The kerf binary; default: `kerf` next to this binary (target/release/kerf).
    #[arg(long)]
    kerf: Option<PathBuf>,
    /// Pods in Basic and Hostname spread, and in all of Wide.
    #[arg(long, default_value_t = 1000)]
    pods: i32,
    /// Consolidation has settled after this many seconds without a NodeClaim change.
    #[arg(long, default_value_t = 60)]
    quiet: u64,
    /// The NodePool's consolidateAfter.
    #[arg(long, default_value = "0s")]
    consolidate_after: String,
    /// The NodePool's disruption budget (nodes); Karpenter's default is 10%.
    #[arg(long, default_value = "10%")]
    budget: String,
    /// RUST_LOG for kerf (its log is in the cluster directory; KERF_KEEP_CLUSTER=1 keeps it).
    #[arg(long, default_value = "info")]
    rust_log: String,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let kerf = match args.kerf {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .context("this binary's directory")?
            .join("kerf"),
    };
    let mut settings = Settings::new(kerf);
    settings.quiet = Duration::from_secs(args.quiet);
    settings.consolidate_after = args.consolidate_after;
    settings.budget = args.budget;
    settings.rust_log = args.rust_log;
    for which in args.scenarios {
        let scenario = match which {
            Which::Basic => Scenario::basic(args.pods),
            Which::Spread => Scenario::hostname_spread(args.pods),
            Which::Wide => Scenario::wide(30, args.pods),
            Which::Smoke => Scenario::basic(20),
        };
        let mut s = settings.clone();
        if matches!(which, Which::Smoke) {
            s.quiet = s.quiet.min(Duration::from_secs(5));
        }
        eprintln!("kerf-kwokbench: running {} ...", scenario.name);
        let report = run(&scenario, &s)?;
        print!("{}", report.render());
    }
    Ok(())
}
