//! Data-driven scheduling scenarios: each `tests/scenarios/*.yaml` is a cluster as a user
//! writes it; the plan kerf makes for it is rendered compactly and compared with the
//! `.plan` file beside it. `UPDATE_EXPECT=1 cargo test -p kerf` rewrites the `.plan` files
//! (review the diff before committing).
//!
//! A scenario's leading comment lines may set options: `# catalog: kwok`,
//! `# preferences: ignore`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use kerf_scheduling::{Config, Plan, PreferencePolicy};

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios")
}

/// A compact, complete rendering: every pod, every claim's narrowed requirements.
fn render(plan: &Plan) -> String {
    let mut out = String::new();
    for (i, c) in plan.new_claims.iter().enumerate() {
        let l = &c.launch;
        let _ = writeln!(
            out,
            "claim {i}: nodepool={} {} {} {} ${:.5}/h ({} option{})",
            c.nodepool,
            l.instance_type,
            l.zone,
            l.capacity_type,
            l.price,
            c.instance_type_options.len(),
            if c.instance_type_options.len() == 1 {
                ""
            } else {
                "s"
            },
        );
        let pods: Vec<String> = c.pods.iter().map(|p| p.to_string()).collect();
        let _ = writeln!(out, "  pods: {}", pods.join(" "));
        let _ = writeln!(out, "  requests: {}", c.requests);
        if !c.requirements.is_empty() {
            let _ = writeln!(out, "  requirements: {}", c.requirements);
        }
        if !c.taints.is_empty() {
            let taints: Vec<String> = c.taints.iter().map(|t| t.to_string()).collect();
            let _ = writeln!(out, "  taints: {}", taints.join(" "));
        }
    }
    for e in &plan.existing {
        let pods: Vec<String> = e.pods.iter().map(|p| p.to_string()).collect();
        let _ = writeln!(out, "existing {}: {}", e.node, pods.join(" "));
    }
    for u in &plan.unschedulable {
        let _ = writeln!(out, "unschedulable {}: {}", u.pod, u.reason);
    }
    let _ = writeln!(out, "cost: ${:.5}/h", plan.cost_per_hour());
    out
}

fn run_scenario(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let mut catalog = "aws".to_string();
    let mut config = Config::default();
    for line in text.lines().take_while(|l| l.starts_with('#')) {
        if let Some(v) = line.strip_prefix("# catalog:") {
            catalog = v.trim().to_string();
        }
        if line.trim() == "# preferences: ignore" {
            config.preference_policy = PreferencePolicy::Ignore;
        }
    }
    let manifests = match kerf_api::load_str(&path.display().to_string(), &text) {
        Ok(m) => m,
        Err(e) => return format!("error: {e}\n"),
    };
    let types = kerf_model::catalog::by_name(&catalog).unwrap();
    let input = kerf::plan::input(manifests, types);
    let plan = kerf_scheduling::solve(&input, &config);
    let violations = kerf_scheduling::validate::validate(&input, &plan);
    assert!(
        violations.is_empty(),
        "{}: the plan breaks Kubernetes rules:\n{}",
        path.display(),
        violations
            .iter()
            .map(|v| format!("  {v}\n"))
            .collect::<String>()
    );
    // The same input must give the same plan.
    assert_eq!(
        plan,
        kerf_scheduling::solve(&input, &config),
        "{}: not deterministic",
        path.display()
    );
    render(&plan)
}

#[test]
fn scenarios() {
    crate::check_golden_files(&scenarios_dir(), "plan", run_scenario);
}
