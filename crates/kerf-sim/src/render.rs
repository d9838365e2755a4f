//! The terminal summary of one or more simulated runs, one column per autoscaler.
//!
//! The figures are computed once, by [`summary_table`], as rows of already formatted
//! cells; the terminal summary lays them out in columns and the HTML report
//! (`crate::html`) puts the very same cells in a table, so the two can never disagree.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::baseline::NODE_GROUPS;
use crate::report::SimReport;

/// Figures derived from a report's samples, shared by every renderer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Figures {
    /// `total_cost` over the run's length in hours: the time-weighted mean of $/hour.
    /// `None` for a run of zero length.
    pub average_cost_per_hour: Option<f64>,
    /// The highest sampled $/hour.
    pub peak_cost_per_hour: f64,
    /// The most nodes (all NodePools and capacity types together) in one sample.
    pub peak_nodes: u32,
    /// Requested over allocatable vCPU, summed over all samples: the share of the
    /// vCPU-time paid for that pods asked for. `None` when no sample had allocatable CPU.
    pub cpu_utilization: Option<f64>,
    /// Likewise for memory.
    pub memory_utilization: Option<f64>,
}

impl Figures {
    /// The figures of one run.
    pub fn of(report: &SimReport) -> Figures {
        let hours = report.duration_secs as f64 / 3600.0;
        let ratio =
            |requested: f64, allocatable: f64| (allocatable > 0.0).then(|| requested / allocatable);
        let samples = &report.samples;
        Figures {
            average_cost_per_hour: (hours > 0.0).then(|| report.total_cost / hours),
            peak_cost_per_hour: samples.iter().map(|s| s.cost_per_hour).fold(0.0, f64::max),
            peak_nodes: samples
                .iter()
                .map(|s| s.nodes.values().sum())
                .max()
                .unwrap_or(0),
            cpu_utilization: ratio(
                samples.iter().map(|s| s.cpu_requested).sum(),
                samples.iter().map(|s| s.cpu_allocatable).sum(),
            ),
            memory_utilization: ratio(
                samples.iter().map(|s| s.memory_requested_gib).sum(),
                samples.iter().map(|s| s.memory_allocatable_gib).sum(),
            ),
        }
    }
}

/// One line of the summary table.
#[derive(Clone, Debug, PartialEq)]
pub enum Row {
    /// A heading over the rows that follow.
    Section(&'static str),
    /// A labelled figure, one cell per report.
    Figure { label: String, cells: Vec<Cell> },
}

/// One report's value for a figure.
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    /// The value as shown, units included: `$1.87`, `76.9%`, `38.0s`, `4`.
    pub text: String,
    /// A must-be-zero counter that is not zero.
    pub violation: bool,
}

impl Cell {
    fn plain(text: String) -> Cell {
        Cell {
            text,
            violation: false,
        }
    }
}

/// The summary figures of `reports`, one cell per report in each row, in the order given.
pub fn summary_table(reports: &[SimReport]) -> Vec<Row> {
    let figures: Vec<Figures> = reports.iter().map(Figures::of).collect();
    let mut rows = Vec::new();
    let figure = |label: &str, cell: &dyn Fn(usize) -> String| Row::Figure {
        label: label.to_owned(),
        cells: (0..reports.len()).map(|i| Cell::plain(cell(i))).collect(),
    };

    rows.push(Row::Section("cost"));
    rows.push(figure("total", &|i| dollars(reports[i].total_cost)));
    rows.push(figure("average $/h", &|i| {
        figures[i]
            .average_cost_per_hour
            .map_or_else(|| "n/a".to_owned(), dollars)
    }));
    rows.push(figure("peak $/h", &|i| {
        dollars(figures[i].peak_cost_per_hour)
    }));

    rows.push(Row::Section("nodes"));
    rows.push(figure("peak nodes", &|i| figures[i].peak_nodes.to_string()));
    rows.push(figure("instances launched", &|i| {
        reports[i].launches.to_string()
    }));
    rows.push(figure("insufficient capacity", &|i| {
        reports[i].insufficient_capacity_errors.to_string()
    }));

    rows.push(Row::Section("utilization (requested / allocatable)"));
    rows.push(figure("cpu", &|i| percent(figures[i].cpu_utilization)));
    rows.push(figure("memory", &|i| {
        percent(figures[i].memory_utilization)
    }));

    rows.push(Row::Section("pod pending time"));
    rows.push(figure("pods bound", &|i| {
        reports[i].pending.count.to_string()
    }));
    rows.push(figure("p50", &|i| seconds(reports[i].pending.p50)));
    rows.push(figure("p95", &|i| seconds(reports[i].pending.p95)));
    rows.push(figure("p99", &|i| seconds(reports[i].pending.p99)));
    rows.push(figure("max", &|i| seconds(reports[i].pending.max)));
    rows.push(figure("still pending at end", &|i| {
        reports[i].pending_at_end.to_string()
    }));

    rows.push(Row::Section("disruptions"));
    let reasons: BTreeSet<&str> = reports
        .iter()
        .flat_map(|r| r.disruptions.keys().map(String::as_str))
        .collect();
    for reason in reasons {
        rows.push(figure(reason, &|i| {
            reports[i]
                .disruptions
                .get(reason)
                .copied()
                .unwrap_or(0)
                .to_string()
        }));
    }
    rows.push(figure("pods evicted", &|i| {
        reports[i].evictions.to_string()
    }));

    rows.push(Row::Section("must be zero"));
    for (label, count) in MUST_BE_ZERO {
        rows.push(Row::Figure {
            label: label.to_owned(),
            cells: reports
                .iter()
                .map(|r| Cell {
                    text: count(r).to_string(),
                    violation: count(r) != 0,
                })
                .collect(),
        });
    }
    rows
}

type Counter = fn(&SimReport) -> u64;

/// The counters a correct autoscaler keeps at zero, with their labels.
pub const MUST_BE_ZERO: [(&str, Counter); 4] = [
    ("PDB violations", |r| r.pdb_violations),
    ("do-not-disrupt violations", |r| r.do_not_disrupt_violations),
    ("leaked instances", |r| r.leaked_instances),
    ("double launches", |r| r.double_launches),
];

/// What each report got wrong among the must-be-zero counters, e.g.
/// `kerf: PDB violations = 2, leaked instances = 1`; empty when every counter is zero.
pub fn violations(reports: &[SimReport]) -> Vec<String> {
    reports
        .iter()
        .filter_map(|r| {
            let broken: Vec<String> = MUST_BE_ZERO
                .iter()
                .filter(|(_, count)| count(r) != 0)
                .map(|(label, count)| format!("{label} = {}", count(r)))
                .collect();
            (!broken.is_empty()).then(|| format!("{}: {}", r.autoscaler, broken.join(", ")))
        })
        .collect()
}

/// How the first run other than the baseline compares in total cost with the
/// `node-groups` baseline, as a sentence; `None` without both.
pub fn cost_verdict(reports: &[SimReport]) -> Option<String> {
    let baseline = reports.iter().find(|r| r.autoscaler == NODE_GROUPS)?;
    let candidate = reports.iter().find(|r| r.autoscaler != NODE_GROUPS)?;
    let difference = baseline.total_cost - candidate.total_cost;
    let share = if baseline.total_cost > 0.0 {
        format!(" ({:.1}%)", 100.0 * difference.abs() / baseline.total_cost)
    } else {
        String::new()
    };
    let name = &candidate.autoscaler;
    // Both are rounded to cents before comparing, so the sentence never says
    // "saves $0.00".
    Some(if dollars(difference.abs()) == dollars(0.0) {
        format!("{name} costs the same as the {NODE_GROUPS} baseline.")
    } else if difference > 0.0 {
        format!(
            "{name} saves {}{share} versus the {NODE_GROUPS} baseline ({} instead of {}).",
            dollars(difference),
            dollars(candidate.total_cost),
            dollars(baseline.total_cost),
        )
    } else {
        format!(
            "{name} costs {}{share} more than the {NODE_GROUPS} baseline ({} instead of {}).",
            dollars(-difference),
            dollars(candidate.total_cost),
            dollars(baseline.total_cost),
        )
    })
}

/// The run the reports describe, e.g. `e-commerce: 24h, seed 7, sampled every 60s`.
/// A note is added when the reports are not of the same scenario, seed and length,
/// since comparing them side by side would then mislead.
pub fn heading(reports: &[SimReport]) -> String {
    let Some(first) = reports.first() else {
        return "no simulation reports".to_owned();
    };
    let mut line = format!(
        "{}: {}, seed {}, sampled every {}",
        first.scenario,
        duration(first.duration_secs),
        first.seed,
        duration(first.sample_interval_secs),
    );
    let same_run = reports.iter().all(|r| {
        (&r.scenario, r.seed, r.duration_secs) == (&first.scenario, first.seed, first.duration_secs)
    });
    if !same_run {
        line.push_str(" (note: the reports are of different scenarios, seeds or lengths)");
    }
    line
}

/// The terminal summary: the run, one column per report, the cost comparison with the
/// baseline when there is one, and a loud line for every must-be-zero counter that isn't.
pub fn summary(reports: &[SimReport]) -> String {
    let mut out = format!("kerf simulate {}\n", heading(reports));
    if reports.is_empty() {
        return out;
    }
    let rows = summary_table(reports);
    let label_width = rows
        .iter()
        .filter_map(|row| match row {
            // A heading has a line to itself, so it need not fit the label column.
            Row::Section(_) => None,
            Row::Figure { label, .. } => Some(2 + label.chars().count()),
        })
        .max()
        .unwrap_or(0);
    // A violation is marked after its number, outside the column, so the numbers stay
    // aligned.
    const MARK: &str = " <-- MUST BE 0";
    let column_widths: Vec<usize> = (0..reports.len())
        .map(|i| {
            let cells = rows.iter().filter_map(|row| match row {
                Row::Figure { cells, .. } => Some(cells[i].text.chars().count()),
                Row::Section(_) => None,
            });
            cells
                .chain([reports[i].autoscaler.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();

    out.push('\n');
    let mut header = " ".repeat(label_width);
    for (report, width) in reports.iter().zip(&column_widths) {
        let _ = write!(header, "  {:>width$}", report.autoscaler);
    }
    out.push_str(header.trim_end());
    out.push('\n');
    for row in &rows {
        let line = match row {
            Row::Section(title) => title.to_string(),
            Row::Figure { label, cells } => {
                let mut line = format!("  {label:<width$}", width = label_width - 2);
                for (cell, width) in cells.iter().zip(&column_widths) {
                    let _ = write!(line, "  {:>width$}", cell.text);
                }
                if cells.iter().any(|c| c.violation) {
                    line.push_str(MARK);
                }
                line
            }
        };
        out.push_str(line.trim_end());
        out.push('\n');
    }

    if let Some(verdict) = cost_verdict(reports) {
        let _ = write!(out, "\n{verdict}\n");
    }
    let broken = violations(reports);
    if !broken.is_empty() {
        out.push('\n');
        for line in broken {
            let _ = writeln!(out, "!! MUST-BE-ZERO COUNTERS ARE NOT ZERO: {line}");
        }
    }
    out
}

/// Dollars with cents, e.g. `$1234.50`.
pub fn dollars(amount: f64) -> String {
    format!("${amount:.2}")
}

fn percent(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "n/a".to_owned(), |r| format!("{:.1}%", 100.0 * r))
}

/// Seconds with one decimal, e.g. `12.5s`.
fn seconds(secs: f64) -> String {
    format!("{secs:.1}s")
}

/// A length of time in the largest units that keep it exact, e.g. `1h 30m`, `90s`, `2d`.
pub fn duration(secs: i64) -> String {
    if secs <= 0 {
        return format!("{secs}s");
    }
    let parts = [
        (secs / 86_400, "d"),
        (secs / 3600 % 24, "h"),
        (secs / 60 % 60, "m"),
        (secs % 60, "s"),
    ];
    parts
        .iter()
        .filter(|(n, _)| *n != 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use expect_test::expect;

    use super::*;
    use crate::report::{PendingStats, Sample};

    fn sample(t: i64, cost_per_hour: f64, nodes: &[(&str, u32)], cpu: (f64, f64)) -> Sample {
        Sample {
            t,
            cost_per_hour,
            nodes: nodes.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
            cpu_requested: cpu.0,
            cpu_allocatable: cpu.1,
            memory_requested_gib: cpu.0 * 3.0,
            memory_allocatable_gib: cpu.1 * 4.0,
            pending_pods: 0,
            running_pods: (cpu.0 * 2.0) as u32,
        }
    }

    /// A two-hour e-commerce day in miniature, under kerf and under the baseline.
    pub(crate) fn ecommerce_pair() -> Vec<SimReport> {
        let kerf = SimReport {
            scenario: "e-commerce".to_owned(),
            autoscaler: "kerf".to_owned(),
            seed: 7,
            duration_secs: 7200,
            sample_interval_secs: 1800,
            samples: vec![
                sample(0, 0.384, &[("default/on-demand", 2)], (3.0, 7.8)),
                sample(
                    1800,
                    1.152,
                    &[("default/on-demand", 2), ("default/spot", 4)],
                    (20.0, 23.4),
                ),
                sample(
                    3600,
                    1.536,
                    &[("default/on-demand", 2), ("default/spot", 6)],
                    (28.0, 31.2),
                ),
                sample(
                    5400,
                    0.768,
                    &[("default/on-demand", 2), ("default/spot", 2)],
                    (12.0, 15.6),
                ),
                sample(7200, 0.384, &[("default/on-demand", 2)], (3.0, 7.8)),
            ],
            total_cost: 1.87,
            pending: PendingStats {
                count: 412,
                p50: 38.0,
                p95: 71.5,
                p99: 90.0,
                max: 104.0,
            },
            disruptions: BTreeMap::from([
                ("emptiness".to_owned(), 4),
                ("single-node-consolidation".to_owned(), 2),
            ]),
            evictions: 31,
            launches: 10,
            insufficient_capacity_errors: 1,
            ..SimReport::default()
        };
        let baseline = SimReport {
            autoscaler: NODE_GROUPS.to_owned(),
            samples: vec![
                sample(0, 0.768, &[("general/on-demand", 2)], (3.0, 7.8)),
                sample(1800, 2.304, &[("general/on-demand", 6)], (20.0, 23.4)),
                sample(3600, 3.072, &[("general/on-demand", 8)], (28.0, 31.2)),
                sample(5400, 3.072, &[("general/on-demand", 8)], (12.0, 31.2)),
                sample(7200, 1.536, &[("general/on-demand", 4)], (3.0, 15.6)),
            ],
            total_cost: 4.61,
            pending: PendingStats {
                count: 412,
                p50: 95.0,
                p95: 180.0,
                p99: 212.0,
                max: 240.5,
            },
            disruptions: BTreeMap::from([("scale-down".to_owned(), 4)]),
            evictions: 12,
            launches: 8,
            insufficient_capacity_errors: 0,
            ..kerf.clone()
        };
        vec![kerf, baseline]
    }

    #[test]
    fn kerf_against_the_baseline() {
        expect![[r#"
            kerf simulate e-commerce: 2h, seed 7, sampled every 30m

                                           kerf  node-groups
            cost
              total                       $1.87        $4.61
              average $/h                 $0.94        $2.31
              peak $/h                    $1.54        $3.07
            nodes
              peak nodes                      8            8
              instances launched             10            8
              insufficient capacity           1            0
            utilization (requested / allocatable)
              cpu                         76.9%        60.4%
              memory                      57.7%        45.3%
            pod pending time
              pods bound                    412          412
              p50                         38.0s        95.0s
              p95                         71.5s       180.0s
              p99                         90.0s       212.0s
              max                        104.0s       240.5s
              still pending at end            0            0
            disruptions
              emptiness                       4            0
              scale-down                      0            4
              single-node-consolidation       2            0
              pods evicted                   31           12
            must be zero
              PDB violations                  0            0
              do-not-disrupt violations       0            0
              leaked instances                0            0
              double launches                 0            0

            kerf saves $2.74 (59.4%) versus the node-groups baseline ($1.87 instead of $4.61).
        "#]]
        .assert_eq(&summary(&ecommerce_pair()));
    }

    #[test]
    fn violations_are_loud() {
        let mut reports = ecommerce_pair();
        reports[0].pdb_violations = 2;
        reports[0].double_launches = 1;
        reports[1].leaked_instances = 3;
        reports[1].total_cost = 1.5;
        let text = summary(&reports);
        let tail: Vec<&str> = text.lines().skip_while(|l| *l != "must be zero").collect();
        expect![[r#"
            must be zero
              PDB violations                  2            0 <-- MUST BE 0
              do-not-disrupt violations       0            0
              leaked instances                0            3 <-- MUST BE 0
              double launches                 1            0 <-- MUST BE 0

            kerf costs $0.37 (24.7%) more than the node-groups baseline ($1.87 instead of $1.50).

            !! MUST-BE-ZERO COUNTERS ARE NOT ZERO: kerf: PDB violations = 2, double launches = 1
            !! MUST-BE-ZERO COUNTERS ARE NOT ZERO: node-groups: leaked instances = 3"#]]
        .assert_eq(&tail.join("\n"));
    }

    #[test]
    fn a_single_run_of_zero_length() {
        let report = SimReport {
            scenario: "empty".to_owned(),
            autoscaler: "kerf".to_owned(),
            sample_interval_secs: 60,
            ..SimReport::default()
        };
        expect![[r#"
            kerf simulate empty: 0s, seed 0, sampled every 1m

                                          kerf
            cost
              total                      $0.00
              average $/h                  n/a
              peak $/h                   $0.00
            nodes
              peak nodes                     0
              instances launched             0
              insufficient capacity          0
            utilization (requested / allocatable)
              cpu                          n/a
              memory                       n/a
            pod pending time
              pods bound                     0
              p50                         0.0s
              p95                         0.0s
              p99                         0.0s
              max                         0.0s
              still pending at end           0
            disruptions
              pods evicted                   0
            must be zero
              PDB violations                 0
              do-not-disrupt violations      0
              leaked instances               0
              double launches                0
        "#]]
        .assert_eq(&summary(&[report]));
        assert_eq!(summary(&[]), "kerf simulate no simulation reports\n");
    }

    #[test]
    fn different_runs_are_noted() {
        let mut reports = ecommerce_pair();
        reports[1].seed = 8;
        assert!(
            heading(&reports)
                .ends_with("(note: the reports are of different scenarios, seeds or lengths)")
        );
    }

    #[test]
    fn durations() {
        let shown: Vec<String> = [0, 45, 90, 3600, 5400, 86_400 + 61].map(duration).to_vec();
        assert_eq!(shown, ["0s", "45s", "1m 30s", "1h", "1h 30m", "1d 1m 1s"]);
    }
}
