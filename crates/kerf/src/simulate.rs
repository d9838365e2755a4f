//! `kerf simulate SCENARIO`: run a scenario through kerf's control loops and print the
//! summary; `--json FILE` writes the reports.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use kerf_sim::SimReport;

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
    if args.html.is_some() {
        bail!("--html is not built yet (the HTML report lands with the renderers)");
    }
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
    Ok(summary(&reports))
}

/// A plain summary, until `kerf_sim::render::summary` (the renderers' work) is merged;
/// then this goes and `run` calls that.
fn summary(reports: &[SimReport]) -> String {
    let mut out = String::new();
    for r in reports {
        let hours = r.duration_secs as f64 / 3600.0;
        let peak_nodes = r
            .samples
            .iter()
            .map(|s| s.nodes.values().sum::<u32>())
            .max()
            .unwrap_or(0);
        let mut util = (0.0, 0.0);
        for s in &r.samples {
            util.0 += s.cpu_requested;
            util.1 += s.cpu_allocatable;
        }
        out.push_str(&format!(
            "{} under {} (seed {}, {})\n",
            r.scenario,
            r.autoscaler,
            r.seed,
            kerf_disruption::render_duration(r.duration_secs)
        ));
        out.push_str(&format!(
            "  cost            ${:.2} total, ${:.2}/hour average\n",
            r.total_cost,
            r.total_cost / hours.max(1e-9)
        ));
        out.push_str(&format!(
            "  nodes           {peak_nodes} at peak; {} launched, {} insufficient-capacity errors\n",
            r.launches, r.insufficient_capacity_errors
        ));
        if util.1 > 0.0 {
            out.push_str(&format!(
                "  cpu requested   {:.0}% of allocatable on average\n",
                100.0 * util.0 / util.1
            ));
        }
        out.push_str(&format!(
            "  pending time    p50 {:.0}s  p95 {:.0}s  p99 {:.0}s  max {:.0}s  ({} pods bound, {} pending at end)\n",
            r.pending.p50, r.pending.p95, r.pending.p99, r.pending.max, r.pending.count, r.pending_at_end
        ));
        let disruptions: Vec<String> = r
            .disruptions
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        out.push_str(&format!(
            "  disruptions     {}\n",
            if disruptions.is_empty() {
                "none".to_string()
            } else {
                disruptions.join(", ")
            }
        ));
        out.push_str(&format!("  evictions       {}\n", r.evictions));
        out.push_str(&format!(
            "  must be zero    PDB violations {}, do-not-disrupt violations {}, leaked instances {}, double launches {}\n",
            r.pdb_violations, r.do_not_disrupt_violations, r.leaked_instances, r.double_launches
        ));
    }
    out
}
