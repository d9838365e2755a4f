//! `kerf-bench`: runs a benchmark suite and prints a table, or one JSON object per case.
//!
//! Each case runs in a child process (this binary re-executed with the hidden
//! `--one-case`), so the peak resident set a case reports is its own and not the largest
//! of the cases before it.

use std::io::Write;
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use kerf_bench::case::{
    self, CostCase, CostReport, Report, SchedulingCase, SchedulingReport, cost_cases,
    scheduling_cases,
};
use kerf_bench::disruption::{self, DisruptionCase, DisruptionReport, disruption_cases};
use kerf_bench::lower_bound::DEFAULT_MAX_ITERATIONS;

#[derive(Parser, Debug)]
#[command(
    name = "kerf-bench",
    about = "kerf's benchmark suites: scheduling speed in Karpenter's benchmark shape, and fleet cost against LP lower bounds and a Karpenter-style packer",
    after_help = "Every case's plan is checked by kerf_scheduling::validate; a case that leaves a pod unscheduled or breaks a rule fails the run (exit code 1)."
)]
struct Cli {
    suite: Suite,
    /// Comma-separated case names to run instead of the whole suite, e.g. `1,100,1000` or
    /// `1000,1000-spread`.
    #[arg(long, value_delimiter = ',')]
    cases: Option<Vec<String>>,
    /// Solves per `scheduling` case, or first passes per `disruption` case; the time
    /// reported is their median.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Master-LP iterations before column generation for the configuration bound stops.
    #[arg(long, default_value_t = DEFAULT_MAX_ITERATIONS)]
    max_iterations: usize,
    /// Passes a `disruption` fixpoint may take before it gives up (reported as `cap`).
    #[arg(long, default_value_t = disruption::MAX_PASSES)]
    max_passes: usize,
    /// One JSON object per case, one per line, instead of the table.
    #[arg(long)]
    json: bool,
    /// Run one case in this process and print its report as JSON (used by the parent).
    #[arg(long, hide = true)]
    one_case: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Suite {
    /// Karpenter's scheduling benchmark shape: pods per second and peak memory.
    Scheduling,
    /// Realistic mixes on the aws catalog: cost against lower bounds and a Karpenter-style packer.
    Cost,
    /// Fragmented clusters on the aws catalog: one disruption pass's decision time, and the
    /// cost after applying passes to a fixpoint against the pods' lower bound.
    Disruption,
}

impl Suite {
    fn name(self) -> &'static str {
        match self {
            Suite::Scheduling => "scheduling",
            Suite::Cost => "cost",
            Suite::Disruption => "disruption",
        }
    }

    fn case_names(self) -> Vec<String> {
        match self {
            Suite::Scheduling => scheduling_cases()
                .iter()
                .map(SchedulingCase::name)
                .collect(),
            Suite::Cost => cost_cases().iter().map(CostCase::name).collect(),
            Suite::Disruption => disruption_cases()
                .iter()
                .map(DisruptionCase::name)
                .collect(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.one_case {
        Some(name) => run_one(&cli, name),
        None => run_suite(&cli),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kerf-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The child's side: run one case, print its report as one JSON line.
fn run_one(cli: &Cli, name: &str) -> anyhow::Result<ExitCode> {
    let unknown = || case::CaseError::Unknown {
        case: name.to_string(),
        known: cli.suite.case_names().join(", "),
    };
    let report = match cli.suite {
        Suite::Scheduling => {
            let c = scheduling_cases()
                .into_iter()
                .find(|c| c.name() == name)
                .ok_or_else(unknown)?;
            Report::Scheduling(case::run_scheduling(&c, cli.repeat)?)
        }
        Suite::Cost => {
            let c = cost_cases()
                .into_iter()
                .find(|c| c.name() == name)
                .ok_or_else(unknown)?;
            Report::Cost(case::run_cost(&c, cli.max_iterations)?)
        }
        Suite::Disruption => {
            let c = disruption_cases()
                .into_iter()
                .find(|c| c.name() == name)
                .ok_or_else(unknown)?;
            Report::Disruption(Box::new(disruption::run_disruption(
                &c,
                cli.repeat,
                cli.max_iterations,
                cli.max_passes,
            )?))
        }
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(ExitCode::SUCCESS)
}

/// The parent's side: each case in a child process, rows printed as cases finish.
fn run_suite(cli: &Cli) -> anyhow::Result<ExitCode> {
    let known = cli.suite.case_names();
    let names = match &cli.cases {
        Some(wanted) => {
            for w in wanted {
                if !known.contains(w) {
                    bail!(
                        "unknown {} case {w:?}; expected some of: {}",
                        cli.suite.name(),
                        known.join(", ")
                    );
                }
            }
            wanted.clone()
        }
        None => known,
    };
    let exe = std::env::current_exe().context("locating the kerf-bench binary to re-run")?;
    let table = Table::new(cli.suite);
    if !cli.json {
        table.header();
    }
    let mut reports = Vec::new();
    let mut failures = Vec::new();
    for name in &names {
        let output = Command::new(&exe)
            .arg(cli.suite.name())
            .args(["--one-case", name])
            .args(["--repeat", &cli.repeat.to_string()])
            .args(["--max-iterations", &cli.max_iterations.to_string()])
            .args(["--max-passes", &cli.max_passes.to_string()])
            .output()
            .with_context(|| format!("running case {name}"))?;
        if !output.status.success() {
            let why = String::from_utf8_lossy(&output.stderr).trim().to_string();
            eprintln!("FAILED {name}: {why}");
            failures.push(name.clone());
            continue;
        }
        let line = String::from_utf8(output.stdout).context("case output is not UTF-8")?;
        let report: Report = serde_json::from_str(line.trim())
            .with_context(|| format!("case {name} printed {line:?}, not a report"))?;
        if cli.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            table.row(&report);
        }
        std::io::stdout().flush()?;
        reports.push(report);
    }
    if !cli.json {
        for line in details(&reports).into_iter().chain(targets(&reports)) {
            println!("{line}");
        }
    }
    if failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "kerf-bench: {} case(s) failed: {}",
            failures.len(),
            failures.join(", ")
        );
        Ok(ExitCode::FAILURE)
    }
}

/// A fixed-width table, printed a row at a time.
struct Table {
    suite: Suite,
}

impl Table {
    fn new(suite: Suite) -> Table {
        Table { suite }
    }

    fn header(&self) {
        match self.suite {
            Suite::Scheduling => println!(
                "{:<20} {:>8} {:>7} {:>10} {:>11} {:>9}",
                "case", "pods", "nodes", "seconds", "pods/s", "peak MiB"
            ),
            Suite::Cost => {
                // Two header lines: what the columns measure, then their units.
                let line = |c: [&str; 15]| {
                    println!(
                        "{:<14} {:>6} | {:>6} {:>10} {:>6} | {:>6} {:>10} {:>6} | {:>10} {:>10} {:>10} {:<14} | {:>10} | {:>8} {:>8}",
                        c[0],
                        c[1],
                        c[2],
                        c[3],
                        c[4],
                        c[5],
                        c[6],
                        c[7],
                        c[8],
                        c[9],
                        c[10],
                        c[11],
                        c[12],
                        c[13],
                        c[14]
                    )
                };
                line([
                    "", "", "kerf", "", "", "karp.", "", "", "lower", "fluid", "config.", "",
                    "LP plan", "solve", "peak",
                ]);
                line([
                    "case",
                    "pods",
                    "nodes",
                    "$/h",
                    "ratio",
                    "nodes",
                    "$/h",
                    "ratio",
                    "bound $/h",
                    "$/h",
                    "$/h",
                    "status",
                    "$/h",
                    "seconds",
                    "MiB",
                ]);
            }
            Suite::Disruption => {
                // Two header lines, as for `cost`.
                let line = |c: [&str; 17]| {
                    println!(
                        "{:<6} {:>6} | {:>6} {:>9} {:>8} | {:>6} {:>6} {:>9} {:>8} {:>8} | {:>9} {:>6} | {:>9} {:>6} {:>6} | {:>9} | {:>5}",
                        c[0],
                        c[1],
                        c[2],
                        c[3],
                        c[4],
                        c[5],
                        c[6],
                        c[7],
                        c[8],
                        c[9],
                        c[10],
                        c[11],
                        c[12],
                        c[13],
                        c[14],
                        c[15],
                        c[16]
                    )
                };
                line([
                    "", "", "start", "", "1st pass", "fixpt", "", "", "total", "slowest", "lower",
                    "", "pinned", "", "pinned", "fresh", "peak",
                ]);
                line([
                    "case",
                    "pods",
                    "nodes",
                    "$/h",
                    "seconds",
                    "passes",
                    "nodes",
                    "$/h",
                    "seconds",
                    "pass s",
                    "bound $/h",
                    "ratio",
                    "bound $/h",
                    "ratio",
                    "nodes",
                    "solve $/h",
                    "MiB",
                ]);
            }
        }
    }

    fn row(&self, report: &Report) {
        let mib = |m: Option<f64>| m.map_or_else(|| "-".to_string(), |m| format!("{m:.0}"));
        match report {
            Report::Scheduling(r) => {
                let SchedulingReport {
                    case,
                    pods,
                    nodes,
                    seconds,
                    pods_per_sec,
                    peak_rss_mib,
                    ..
                } = r;
                println!(
                    "{case:<20} {pods:>8} {nodes:>7} {seconds:>10.4} {pods_per_sec:>11.0} {:>9}",
                    mib(*peak_rss_mib)
                );
            }
            Report::Cost(r) => {
                let CostReport {
                    case,
                    pods,
                    nodes,
                    seconds,
                    cost_per_hour,
                    lower_bound_per_hour,
                    cost_ratio,
                    fluid_bound_per_hour,
                    configuration_bound_per_hour,
                    configuration_bound,
                    rounded_lp_plan_per_hour,
                    karpenter_style_cost_per_hour,
                    karpenter_style_nodes,
                    karpenter_style_cost_ratio,
                    peak_rss_mib,
                    ..
                } = r;
                println!(
                    "{case:<14} {pods:>6} | {nodes:>6} {cost_per_hour:>10.4} {cost_ratio:>6.4} | {karpenter_style_nodes:>6} {karpenter_style_cost_per_hour:>10.4} {karpenter_style_cost_ratio:>6.4} | {lower_bound_per_hour:>10.4} {fluid_bound_per_hour:>10.4} {configuration_bound_per_hour:>10.4} {configuration_bound:<14} | {rounded_lp_plan_per_hour:>10.4} | {seconds:>8.2} {:>8}",
                    mib(*peak_rss_mib)
                );
            }
            Report::Disruption(r) => {
                let DisruptionReport {
                    case,
                    pods,
                    nodes_before,
                    cost_before,
                    decision_seconds,
                    passes,
                    stopped_by,
                    nodes_after,
                    cost_after,
                    fixpoint_seconds,
                    slowest_pass_seconds,
                    lower_bound,
                    cost_ratio,
                    pinned_bound,
                    pinned_ratio,
                    pinned_nodes,
                    fresh_solve_cost,
                    peak_rss_mib,
                    ..
                } = r.as_ref();
                let passes = if stopped_by == "cap" {
                    format!("{passes}+")
                } else {
                    passes.to_string()
                };
                println!(
                    "{case:<6} {pods:>6} | {nodes_before:>6} {cost_before:>9.3} {decision_seconds:>8.3} | {passes:>6} {nodes_after:>6} {cost_after:>9.3} {fixpoint_seconds:>8.2} {slowest_pass_seconds:>8.3} | {lower_bound:>9.3} {cost_ratio:>6.3} | {pinned_bound:>9.3} {pinned_ratio:>6.3} {pinned_nodes:>6} | {fresh_solve_cost:>9.3} | {:>5}",
                    mib(*peak_rss_mib)
                );
            }
        }
    }
}

/// What a row cannot hold: for `disruption`, how the fixpoint got there and what stopped
/// it.
fn details(reports: &[Report]) -> Vec<String> {
    let count = |m: &std::collections::BTreeMap<String, usize>| {
        m.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = Vec::new();
    for r in reports {
        if let Report::Disruption(d) = r {
            out.push(format!(
                "{}: {} PDBs, {} do-not-disrupt pods; 1st pass {} ({:.3} s without PDBs); stopped by {}; commands: {}; {} nodes disrupted, {} replacements, {} pods moved; PDB evictions a group asks beyond allowance: {}; configuration bound {:.3} ({}); kept at the end: {}",
                d.case,
                d.pdbs,
                d.do_not_disrupt_pods,
                d.first_pass,
                d.decision_seconds_without_pdbs,
                d.stopped_by,
                count(&d.commands_by_method),
                d.nodes_disrupted,
                d.replacements,
                d.pods_moved,
                d.pdb_overdraft,
                d.configuration_bound,
                d.configuration_status,
                if d.kept_reasons.is_empty() {
                    "-".to_string()
                } else {
                    count(&d.kept_reasons)
                },
            ));
        }
    }
    out
}

/// The targets, checked against the cases that ran. Missing a target is reported,
/// not a failure: the suite measures, `BENCHMARKS.md` explains.
fn targets(reports: &[Report]) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |ok: bool, what: String| {
        out.push(format!(
            "target {}: {what}",
            if ok { "met   " } else { "MISSED" }
        ));
    };
    let sched = |name: &str| {
        reports.iter().find_map(|r| match r {
            Report::Scheduling(s) if s.case == name => Some(s),
            _ => None,
        })
    };
    if let Some(s) = sched("20000") {
        check(
            s.pods_per_sec >= 50_000.0,
            format!(
                "20,000 pods at {:.0} pods/s (want >= 50,000)",
                s.pods_per_sec
            ),
        );
    }
    if let Some(s) = sched("100000") {
        check(
            s.seconds < 5.0,
            format!("100,000 pods in {:.2} s (want < 5)", s.seconds),
        );
        if let Some(rss) = s.peak_rss_mib {
            check(
                rss < 1024.0,
                format!("100,000 pods peak RSS {rss:.0} MiB (want < 1024)"),
            );
        }
        if let Some(k) = sched("1000") {
            check(
                s.pods_per_sec >= k.pods_per_sec / 2.0,
                format!(
                    "pods/s at 100,000 is {:.0}% of pods/s at 1,000 (want >= 50%)",
                    100.0 * s.pods_per_sec / k.pods_per_sec
                ),
            );
        }
    }
    for r in reports {
        if let Report::Disruption(d) = r {
            if d.case == "2000" {
                check(
                    d.decision_seconds < 1.0,
                    format!(
                        "disruption 2000: one pass in {:.3} s (want < 1)",
                        d.decision_seconds
                    ),
                );
            }
            check(
                d.cost_ratio <= 1.10,
                format!(
                    "disruption {}: fixpoint at {:.4} x the lower bound, {:.4} x the bound with do-not-disrupt nodes pinned (want <= 1.10)",
                    d.case, d.cost_ratio, d.pinned_ratio
                ),
            );
            check(
                d.do_not_disrupt_moved == 0 && d.pdb_blocked == 0 && d.pdb_overdraft == 0,
                format!(
                    "disruption {}: {} do-not-disrupt pod(s) moved, {} eviction(s) under a PDB at 0, {} asked by a group beyond a PDB's allowance (want 0, 0, 0)",
                    d.case, d.do_not_disrupt_moved, d.pdb_blocked, d.pdb_overdraft
                ),
            );
        }
        if let Report::Cost(c) = r {
            let limit = if c.case.ends_with("-spread") {
                1.10
            } else {
                1.05
            };
            check(
                c.cost_ratio <= limit,
                format!(
                    "cost {}: ratio {:.4} (want <= {limit:.2})",
                    c.case, c.cost_ratio
                ),
            );
            check(
                c.cost_per_hour <= c.karpenter_style_cost_per_hour * (1.0 + 1e-9),
                format!(
                    "cost {}: kerf {:.4} $/h vs Karpenter-style {:.4} $/h (want kerf <=)",
                    c.case, c.cost_per_hour, c.karpenter_style_cost_per_hour
                ),
            );
        }
    }
    out
}
