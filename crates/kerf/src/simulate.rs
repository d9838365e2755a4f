//! `kerf simulate SCENARIO`: run a scenario through kerf's control loops and print the
//! summary; `--baseline node-groups` runs it again under the Cluster Autoscaler-style
//! model and shows both side by side; `--json FILE` and `--html FILE` write the reports.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;

use anyhow::Context as _;

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
    let mut scenario = kerf_sim::scenario::load(&args.scenario)?;
    if let Some(seed) = args.seed {
        scenario.seed = seed;
        scenario.cloud.seed = seed;
    }
    // Check the model's name before spending a run on kerf.
    let baseline = match &args.baseline {
        None => None,
        Some(name) => Some(
            kerf_sim::baseline::by_name(name, &scenario).with_context(|| {
                format!(
                    "unknown --baseline {name:?}; valid models: {}",
                    kerf_sim::baseline::MODELS.join(", ")
                )
            })?,
        ),
    };
    let show_progress = !args.quiet && std::io::stderr().is_terminal();
    let mut reports = Vec::new();
    let mut kerf = kerf_sim::Kerf::for_scenario(&scenario);
    reports.push(run_one(&scenario, &mut kerf, show_progress));
    if let Some(mut baseline) = baseline {
        reports.push(run_one(&scenario, baseline.as_mut(), show_progress));
    }
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

/// One run, with a progress bar on a terminal.
fn run_one(
    scenario: &kerf_sim::Scenario,
    autoscaler: &mut dyn kerf_sim::Autoscaler,
    show_progress: bool,
) -> kerf_sim::SimReport {
    let label = format!("{} ({})", scenario.name, autoscaler.name());
    let mut progress = |now: i64, total: i64| {
        let share = now as f64 / total.max(1) as f64;
        let filled = (share * 30.0) as usize;
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r[{}{}] {:>3.0}% {label}",
            "#".repeat(filled),
            " ".repeat(30 - filled.min(30)),
            share * 100.0,
        );
        let _ = err.flush();
    };
    let options = kerf_sim::RunOptions {
        progress: if show_progress {
            Some(&mut progress)
        } else {
            None
        },
        ..Default::default()
    };
    let outcome = kerf_sim::run(scenario, autoscaler, options);
    if show_progress {
        eprintln!();
    }
    outcome.report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_baseline_names_the_valid_ones() {
        let args = Args {
            scenario: PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../examples/ci-runners.yaml"),
            json: None,
            html: None,
            baseline: Some("cluster-autoscaler".into()),
            seed: None,
            quiet: true,
        };
        let err = format!("{:#}", run(&args).unwrap_err());
        assert_eq!(
            err,
            "unknown --baseline \"cluster-autoscaler\"; valid models: node-groups"
        );
    }
}
