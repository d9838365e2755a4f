//! `kerf simulate SCENARIO`: run a scenario through kerf's control loops and print the
//! summary; `--json FILE` writes the reports.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;

use anyhow::{Context as _, bail};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The scenario file (YAML; see docs/simulate.md).
    pub scenario: PathBuf,
    /// Write the reports as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write an HTML report with charts to this file.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Also run the scenario under another autoscaler and compare (`node-groups`: a
    /// Cluster Autoscaler-style model).
    #[arg(long, value_name = "MODEL")]
    pub baseline: Option<String>,
    /// Override the scenario's seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(args: &Args) -> anyhow::Result<String> {
    if let Some(b) = &args.baseline {
        bail!("--baseline {b} is not built yet; the node-groups baseline lands separately");
    }
    let mut scenario = kerf_sim::scenario::load(&args.scenario)?;
    if let Some(seed) = args.seed {
        scenario.seed = seed;
        scenario.cloud.seed = seed;
    }
    let show_progress = !args.quiet && std::io::stderr().is_terminal();
    let mut progress = |now: i64, total: i64| {
        let share = now as f64 / total.max(1) as f64;
        let filled = (share * 30.0) as usize;
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r[{}{}] {:>3.0}% {}",
            "#".repeat(filled),
            " ".repeat(30 - filled.min(30)),
            share * 100.0,
            scenario.name
        );
        let _ = err.flush();
    };
    let mut autoscaler = kerf_sim::Kerf::for_scenario(&scenario);
    let options = kerf_sim::RunOptions {
        progress: if show_progress {
            Some(&mut progress)
        } else {
            None
        },
        ..Default::default()
    };
    let outcome = kerf_sim::run(&scenario, &mut autoscaler, options);
    if show_progress {
        eprintln!();
    }
    let reports = vec![outcome.report];
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&reports).context("serializing the report")?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.html {
        std::fs::write(path, kerf_sim::html::render(&reports))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(kerf_sim::render::summary(&reports))
}
