//! Data-driven disruption scenarios: each `tests/disrupt/*.yaml` is a cluster as a user
//! writes it; the pass `kerf disrupt` computes for it is rendered as the table users see
//! and compared with the `.out` file beside it. `UPDATE_EXPECT=1 cargo test -p kerf`
//! rewrites them (review the diff before committing).
//!
//! Leading comment lines set options: `# now: 2026-11-24T12:00:00Z` (required),
//! `# catalog: kwok`, `# spot-to-spot: true`.
//!
//! Every command is also replayed through the scheduler's independent validator, and the
//! pass must be deterministic.

use std::path::{Path, PathBuf};

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/disrupt")
}

fn run_scenario(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let mut catalog = "aws".to_string();
    let mut now = None;
    let mut config = kerf_disruption::Config::default();
    for line in text.lines().take_while(|l| l.starts_with('#')) {
        if let Some(v) = line.strip_prefix("# catalog:") {
            catalog = v.trim().to_string();
        }
        if let Some(v) = line.strip_prefix("# now:") {
            now = Some(v.trim().parse::<jiff::Timestamp>().unwrap().as_second());
        }
        if line.trim() == "# spot-to-spot: true" {
            config.spot_to_spot = true;
        }
    }
    let now = now.unwrap_or_else(|| panic!("{}: no `# now:` line", path.display()));
    let manifests = match kerf_api::load_str(&path.display().to_string(), &text) {
        Ok(m) => m,
        Err(e) => return format!("error: {e}\n"),
    };
    let types = kerf_model::catalog::by_name(&catalog).unwrap();
    let snapshot = kerf::disrupt::snapshot(manifests, types);
    let outcome = kerf_disruption::compute_commands(&snapshot, now, &config);
    let early = kerf_disruption::check::onto_uninitialized(&snapshot, &outcome);
    assert!(
        early.is_empty(),
        "{}: moves onto uninitialized nodes: {early:?}",
        path.display()
    );
    for (i, (input, plan)) in kerf_disruption::check::replay(&snapshot, &outcome)
        .iter()
        .enumerate()
    {
        let violations = kerf_scheduling::validate::validate(input, plan);
        assert!(
            violations.is_empty(),
            "{}: command {i} breaks Kubernetes rules:\n{}",
            path.display(),
            violations
                .iter()
                .map(|v| format!("  {v}\n"))
                .collect::<String>()
        );
    }
    assert_eq!(
        outcome,
        kerf_disruption::compute_commands(&snapshot, now, &config),
        "{}: not deterministic",
        path.display()
    );
    kerf::disrupt::render_table(&outcome)
}

#[test]
fn disrupt_scenarios() {
    crate::check_golden_files(&scenarios_dir(), "out", run_scenario);
}

/// The JSON shape is a contract (`kerf disrupt -o json`); the example a newcomer runs
/// pins it.
#[test]
fn example_json_shape() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/disrupt.yaml");
    let manifests = kerf_api::load_paths(&[path]).unwrap();
    let types = kerf_model::catalog::by_name("aws").unwrap();
    let snapshot = kerf::disrupt::snapshot(manifests, types);
    let now = "2026-11-24T12:00:00Z"
        .parse::<jiff::Timestamp>()
        .unwrap()
        .as_second();
    let outcome =
        kerf_disruption::compute_commands(&snapshot, now, &kerf_disruption::Config::default());
    expect_test::expect![[r#"
        {
          "commands": [
            {
              "method": "multi-node-consolidation",
              "decision": "replace",
              "nodes": [
                "node-a",
                "node-b"
              ],
              "replacements": [
                {
                  "nodepool": "default",
                  "instance_type": "m6a.xlarge",
                  "capacity_type": "on-demand",
                  "zone": "us-east-1a",
                  "price": 0.1728
                }
              ],
              "moves": [
                {
                  "pod": "default/etl-0",
                  "to": "replacement-0"
                },
                {
                  "pod": "default/web-0",
                  "to": "node-c"
                }
              ],
              "savings_per_hour": 0.8352
            }
          ],
          "kept": [
            {
              "node": "node-c",
              "reason": "pod default/batch-0 has karpenter.sh/do-not-disrupt"
            },
            {
              "node": "node-d",
              "reason": "PDB default/db allows 0 disruptions (pod default/db-0)"
            }
          ],
          "cost_per_hour_before": 1.4112,
          "cost_per_hour_after": 0.576
        }
    "#]]
    .assert_eq(&kerf::disrupt::render_json(&outcome));
}
