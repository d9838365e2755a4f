//! The suites' cases and what each reports. Running one case is a plain function; the
//! binary runs each in its own process so peak memory is the case's own.

use std::time::Instant;

use kerf_scheduling::validate::validate;
use kerf_scheduling::{Config, Input, Plan, PreferencePolicy, solve};
use serde::{Deserialize, Serialize};

use crate::lower_bound::{self, Bounds};
use crate::{mix, reference, shape};

/// A case that ran but whose plan cannot be trusted, or whose yardstick failed.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    #[error("case {case}: {count} pod(s) left unscheduled by {by}, e.g. {example}")]
    Unscheduled {
        case: String,
        by: &'static str,
        count: usize,
        example: String,
    },
    #[error("case {case}: the plan breaks {count} rule(s) of the validator; first: {first}")]
    Invalid {
        case: String,
        count: usize,
        first: String,
    },
    #[error("case {case}: repeated solves of the same input gave different plans")]
    Nondeterministic { case: String },
    #[error(
        "case {case}: the lower bound {bound:.4} $/h exceeds the {by} plan's {cost:.4} $/h, so the bound is wrong"
    )]
    BoundAboveCost {
        case: String,
        by: &'static str,
        bound: f64,
        cost: f64,
    },
    #[error("case {case}: unknown case; this suite has: {known}")]
    Unknown { case: String, known: String },
    #[error("case {case}")]
    Yardstick {
        case: String,
        #[source]
        source: crate::Error,
    },
}

/// A `scheduling` case: Karpenter's benchmark shape at a pod count, optionally with soft
/// constraints under a preference policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedulingCase {
    pub pods: usize,
    /// `None`: hard constraints only. `Some(policy)`: the shape's preference variant.
    pub preferences: Option<PreferencePolicy>,
}

impl SchedulingCase {
    pub fn name(&self) -> String {
        match self.preferences {
            None => self.pods.to_string(),
            Some(PreferencePolicy::Respect) => format!("{}-prefs-respect", self.pods),
            Some(PreferencePolicy::Ignore) => format!("{}-prefs-ignore", self.pods),
        }
    }
}

/// Every `scheduling` case, in the order the suite runs them.
pub fn scheduling_cases() -> Vec<SchedulingCase> {
    let plain = [1, 100, 1_000, 5_000, 10_000, 20_000, 100_000].map(|pods| SchedulingCase {
        pods,
        preferences: None,
    });
    let prefs = [PreferencePolicy::Respect, PreferencePolicy::Ignore].map(|p| SchedulingCase {
        pods: 4_000,
        preferences: Some(p),
    });
    plain.into_iter().chain(prefs).collect()
}

/// A `cost` case: a mix of `pods` pods, with or without zone spread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CostCase {
    pub pods: usize,
    pub spread: bool,
}

impl CostCase {
    pub fn name(&self) -> String {
        if self.spread {
            format!("{}-spread", self.pods)
        } else {
            self.pods.to_string()
        }
    }
}

/// Every `cost` case, in the order the suite runs them.
pub fn cost_cases() -> Vec<CostCase> {
    [1_000, 2_000, 5_000, 10_000, 20_000]
        .into_iter()
        .flat_map(|pods| [false, true].map(|spread| CostCase { pods, spread }))
        .collect()
}

/// What a `scheduling` case measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SchedulingReport {
    pub case: String,
    pub pods: usize,
    /// NodeClaims the plan launches.
    pub nodes: usize,
    /// Median wall-clock seconds of one `solve` (input generation excluded).
    pub seconds: f64,
    pub pods_per_sec: f64,
    /// Solves the median is taken over.
    pub repeat: usize,
    /// The case process's peak resident set (`VmHWM`) through input generation and the
    /// solves, read before validation; `None` where `/proc` is unavailable.
    pub peak_rss_mib: Option<f64>,
}

/// What a `cost` case measured. Prices are dollars per hour.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CostReport {
    pub case: String,
    pub pods: usize,
    /// NodeClaims kerf's plan launches.
    pub nodes: usize,
    /// Wall-clock seconds of kerf's one `solve`.
    pub seconds: f64,
    pub cost_per_hour: f64,
    /// The strongest valid lower bound: the larger of the two below.
    pub lower_bound_per_hour: f64,
    /// `cost_per_hour / lower_bound_per_hour`.
    pub cost_ratio: f64,
    pub fluid_bound_per_hour: f64,
    pub configuration_bound_per_hour: f64,
    /// `optimal` when column generation converged, `farley-at-cap` when the iteration cap
    /// stopped it (the value is then Farley's bound, still valid).
    pub configuration_bound: String,
    pub configuration_iterations: usize,
    /// A real packing (resources only: no spread) priced from the configuration LP's
    /// solution rounded up; the resource-only optimum lies between `lower_bound_per_hour`
    /// and this.
    pub rounded_lp_plan_per_hour: f64,
    pub karpenter_style_cost_per_hour: f64,
    pub karpenter_style_nodes: usize,
    pub karpenter_style_cost_ratio: f64,
    /// As for `scheduling`: through input generation and kerf's solve.
    pub peak_rss_mib: Option<f64>,
}

/// One line of `--json` output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "suite", rename_all = "lowercase")]
pub enum Report {
    Scheduling(SchedulingReport),
    Cost(CostReport),
    /// Boxed: it is much the largest report.
    Disruption(Box<crate::disruption::DisruptionReport>),
}

/// Runs a `scheduling` case: `repeat` solves of the same input, the median timed, the first
/// plan validated and every later one required to equal it.
pub fn run_scheduling(case: &SchedulingCase, repeat: usize) -> Result<SchedulingReport, CaseError> {
    let name = case.name();
    let input = shape::input(case.pods, case.preferences.is_some());
    let config = Config {
        preference_policy: case.preferences.unwrap_or_default(),
        ..Config::default()
    };
    let repeat = repeat.max(1);
    let mut seconds = Vec::with_capacity(repeat);
    let mut first: Option<Plan> = None;
    for _ in 0..repeat {
        let start = Instant::now();
        let plan = solve(&input, &config);
        seconds.push(start.elapsed().as_secs_f64());
        match &first {
            None => first = Some(plan),
            Some(p) if *p != plan => return Err(CaseError::Nondeterministic { case: name }),
            Some(_) => {}
        }
    }
    // Read before validating: the validator materialises the whole cluster, and its memory
    // is not the solver's.
    let peak_rss_mib = peak_rss_mib();
    let plan = first.expect("at least one solve ran");
    check_plan(&name, &input, &plan)?;
    let median = median(&mut seconds);
    Ok(SchedulingReport {
        case: name,
        pods: case.pods,
        nodes: plan.new_claims.len(),
        seconds: median,
        pods_per_sec: case.pods as f64 / median,
        repeat,
        peak_rss_mib,
    })
}

/// Runs a `cost` case: one kerf solve (validated), both lower bounds and the reference
/// packer; fails if any plan leaves a pod behind or costs less than the bound.
pub fn run_cost(case: &CostCase, max_iterations: usize) -> Result<CostReport, CaseError> {
    let name = case.name();
    let input = mix::input(case.pods, case.spread);
    let start = Instant::now();
    let plan = solve(&input, &Config::default());
    let seconds = start.elapsed().as_secs_f64();
    let peak_rss_mib = peak_rss_mib();
    check_plan(&name, &input, &plan)?;
    let yardstick = |source| CaseError::Yardstick {
        case: name.clone(),
        source,
    };
    let Bounds {
        fluid,
        configuration,
    } = lower_bound::bounds(&input, max_iterations).map_err(yardstick)?;
    let bound = fluid.max(configuration.value);
    let karpenter = reference::pack(&input).map_err(yardstick)?;
    if let Some(&p) = karpenter.unschedulable.first() {
        return Err(CaseError::Unscheduled {
            case: name,
            by: "the reference packer",
            count: karpenter.unschedulable.len(),
            example: input.pods[p].key.to_string(),
        });
    }
    let cost = plan.cost_per_hour();
    let karpenter_cost = karpenter.cost_per_hour();
    // A bound above a real plan's cost is a bug in the bound; the slack covers LP tolerance.
    for (by, c) in [("kerf", cost), ("reference", karpenter_cost)] {
        if bound > c * (1.0 + 1e-6) {
            return Err(CaseError::BoundAboveCost {
                case: name,
                by,
                bound,
                cost: c,
            });
        }
    }
    Ok(CostReport {
        case: name,
        pods: case.pods,
        nodes: plan.new_claims.len(),
        seconds,
        cost_per_hour: cost,
        lower_bound_per_hour: bound,
        cost_ratio: cost / bound,
        fluid_bound_per_hour: fluid,
        configuration_bound_per_hour: configuration.value,
        configuration_bound: configuration.status.as_str().to_string(),
        configuration_iterations: configuration.iterations,
        rounded_lp_plan_per_hour: configuration.rounded_up,
        karpenter_style_cost_per_hour: karpenter_cost,
        karpenter_style_nodes: karpenter.claims.len(),
        karpenter_style_cost_ratio: karpenter_cost / bound,
        peak_rss_mib,
    })
}

/// Every pod placed and no rule broken, by the same validator the property tests use.
fn check_plan(case: &str, input: &Input, plan: &Plan) -> Result<(), CaseError> {
    if let Some(u) = plan.unschedulable.first() {
        return Err(CaseError::Unscheduled {
            case: case.to_string(),
            by: "kerf",
            count: plan.unschedulable.len(),
            example: format!("{}: {}", u.pod, u.reason),
        });
    }
    let violations = validate(input, plan);
    if let Some(v) = violations.first() {
        return Err(CaseError::Invalid {
            case: case.to_string(),
            count: violations.len(),
            first: v.to_string(),
        });
    }
    Ok(())
}

/// This process's peak resident set (`VmHWM` in `/proc/self/status`), in MiB. Each case
/// runs in its own process (see the binary), so this is the case's own peak.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// The median; the mean of the middle two for an even count.
pub(crate) fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_names_are_unique_and_the_issue_cases_are_all_there() {
        let names: Vec<String> = scheduling_cases().iter().map(|c| c.name()).collect();
        for want in ["1", "100", "1000", "5000", "10000", "20000", "100000"] {
            assert!(names.contains(&want.to_string()), "{want}");
        }
        assert!(names.contains(&"4000-prefs-respect".to_string()));
        assert!(names.contains(&"4000-prefs-ignore".to_string()));
        let cost: Vec<String> = cost_cases().iter().map(|c| c.name()).collect();
        assert!(cost.contains(&"1000".to_string()));
        assert!(cost.contains(&"20000-spread".to_string()));
        // Names are unique within a suite (the two suites may share one, e.g. `1000`).
        for mut suite in [names, cost] {
            let n = suite.len();
            suite.sort();
            suite.dedup();
            assert_eq!(suite.len(), n);
        }
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn a_small_scheduling_case_runs_and_reports() {
        let r = run_scheduling(
            &SchedulingCase {
                pods: 100,
                preferences: None,
            },
            2,
        )
        .unwrap();
        assert_eq!(r.pods, 100);
        assert!(r.nodes > 0 && r.seconds > 0.0);
    }

    #[test]
    fn a_report_round_trips_through_json_with_its_suite_tag() {
        let r = Report::Scheduling(SchedulingReport {
            case: "1".into(),
            pods: 1,
            nodes: 1,
            seconds: 0.5,
            pods_per_sec: 2.0,
            repeat: 1,
            peak_rss_mib: Some(3.0),
        });
        let line = serde_json::to_string(&r).unwrap();
        assert!(
            line.starts_with(r#"{"suite":"scheduling","case":"1""#),
            "{line}"
        );
        assert_eq!(serde_json::from_str::<Report>(&line).unwrap(), r);
    }
}
