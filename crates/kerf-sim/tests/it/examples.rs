//! The committed examples: each runs clean, and the behaviour it exists to show happens.

use std::path::Path;

use kerf_sim::NodeGroups;

use crate::{assert_clean, run};

/// The scenario under the node-group baseline.
fn baseline(scenario: &kerf_sim::Scenario) -> kerf_sim::Run {
    kerf_sim::run(
        scenario,
        &mut NodeGroups::for_scenario(scenario),
        kerf_sim::RunOptions::default(),
    )
}

fn example(name: &str) -> kerf_sim::Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name);
    kerf_sim::scenario::load(&path).unwrap_or_else(|e| panic!("{e:#}"))
}

#[test]
fn ecommerce_day_serves_every_pod_and_consolidates() {
    let scenario = example("ecommerce-day.yaml");
    let run = run(&scenario);
    assert_clean(&run);
    let r = &run.report;
    assert_eq!(r.pending_at_end, 0);
    assert!(r.pending.count > 100, "{:?}", r.pending);
    // The diurnal curve falls after the afternoon peak: nodes are consolidated away.
    let consolidated: u64 = r
        .disruptions
        .iter()
        .filter(|(k, _)| k.contains("consolidation") || *k == "emptiness")
        .map(|(_, v)| v)
        .sum();
    assert!(consolidated > 0, "{:?}", r.disruptions);
    let peak = r
        .samples
        .iter()
        .map(|s| s.nodes.values().sum::<u32>())
        .max()
        .unwrap();
    let last = r.samples.last().unwrap().nodes.values().sum::<u32>();
    assert!(last < peak, "{last} nodes at the end, {peak} at peak");

    // The same day under the node-group baseline: clean, every pod served, nodes scaled
    // down after the peak — and dearer than kerf, as the summary says.
    let node_groups = baseline(&scenario);
    assert_clean(&node_groups);
    let b = &node_groups.report;
    assert_eq!(b.pending_at_end, 0);
    assert!(
        b.disruptions.keys().any(|k| k.starts_with("scale-down")),
        "{:?}",
        b.disruptions
    );
    assert!(
        r.total_cost < b.total_cost,
        "kerf ${:.2}, node groups ${:.2}",
        r.total_cost,
        b.total_cost
    );
    let verdict = kerf_sim::render::cost_verdict(&[run.report.clone(), b.clone()]).unwrap();
    assert!(
        verdict.starts_with("kerf saves $") && verdict.contains("versus the node-groups baseline"),
        "{verdict}"
    );
}

#[test]
fn the_other_examples_run_clean_under_the_node_group_baseline() {
    for name in ["ci-runners.yaml", "ami-rollout.yaml", "spot-storm.yaml"] {
        let run = baseline(&example(name));
        assert_clean(&run);
        assert_eq!(run.report.pending_at_end, 0, "{name}");
        assert!(run.report.launches > 0, "{name}");
    }
}

#[test]
fn ci_runner_pool_is_only_ever_emptied() {
    let run = run(&example("ci-runners.yaml"));
    assert_clean(&run);
    assert_eq!(run.report.pending_at_end, 0);
    let ci = run.deletions_by_pool.get("ci").cloned().unwrap_or_default();
    assert!(ci.get("emptiness").copied().unwrap_or(0) > 0, "{ci:?}");
    assert!(
        ci.keys().all(|reason| !reason.contains("consolidation")),
        "the WhenEmpty pool was consolidated: {ci:?}"
    );
    assert_eq!(run.report.evictions, 0, "runner pods are never evicted");
}

#[test]
fn ami_rollout_replaces_every_node_by_drift() {
    let run = run(&example("ami-rollout.yaml"));
    assert_clean(&run);
    let r = &run.report;
    assert_eq!(r.pending_at_end, 0);
    assert!(
        r.disruptions.get("drift").copied().unwrap_or(0) >= 3,
        "{:?}",
        r.disruptions
    );
    let images: Vec<&str> = run
        .end
        .claims
        .values()
        .filter_map(|c| c.image_id.as_deref())
        .collect();
    assert!(!images.is_empty());
    assert!(
        images.iter().all(|i| *i == "ami-al2023-20261201"),
        "old images remain: {images:?}"
    );
    // Traffic continued: no sample after the start has fewer running pods than the PDB
    // allows (30 replicas, maxUnavailable 2).
    for s in r.samples.iter().filter(|s| s.t >= 600) {
        assert!(
            s.running_pods >= 28,
            "{} running at t={}",
            s.running_pods,
            s.t
        );
    }
}

#[test]
fn spot_storm_falls_back_when_capacity_runs_out() {
    let run = run(&example("spot-storm.yaml"));
    assert_clean(&run);
    let r = &run.report;
    assert_eq!(r.pending_at_end, 0);
    assert!(r.insufficient_capacity_errors > 0);
    assert!(
        r.disruptions.get("interruption").copied().unwrap_or(0) >= 5,
        "{:?}",
        r.disruptions
    );
    assert!(run.recorded.contains_key("InsufficientCapacityError"));
}

/// Each example again with kerf stepped only as `kerf controller` steps it (on a change,
/// an event, or its own `next_wake`), not every second: a deadline the loops forget to
/// ask for shows as pods left pending, work not done, or a dearer day.
#[test]
fn the_examples_run_the_same_when_kerf_steps_only_when_it_asks() {
    for name in [
        "ecommerce-day.yaml",
        "ci-runners.yaml",
        "ami-rollout.yaml",
        "spot-storm.yaml",
    ] {
        let scenario = example(name);
        let ticked = run(&scenario);
        let woken = crate::run_with(
            &scenario,
            kerf_sim::RunOptions {
                wake_driven: true,
                ..Default::default()
            },
        );
        assert_clean(&woken);
        let (t, w) = (&ticked.report, &woken.report);
        eprintln!(
            "{name}: cost {:.2} ticked, {:.2} woken; disruptions {:?} / {:?}; pending p99 {:?} / {:?}",
            t.total_cost, w.total_cost, t.disruptions, w.disruptions, t.pending, w.pending
        );
        eprintln!(
            "{name}: {} steps ticked, {} woken",
            ticked.steps, woken.steps
        );
        assert!(
            woken.steps * 2 < ticked.steps,
            "{name}: {} steps when asked, {} every second",
            woken.steps,
            ticked.steps
        );
        assert_eq!(w.pending_at_end, 0, "{name}");
        assert!(
            (w.total_cost - t.total_cost).abs() <= 0.02 * t.total_cost,
            "{name}: ${:.2} stepped when asked, ${:.2} every second",
            w.total_cost,
            t.total_cost
        );
        let kinds = |r: &kerf_sim::SimReport| r.disruptions.keys().cloned().collect::<Vec<_>>();
        assert_eq!(kinds(w), kinds(t), "{name}");
    }
}
