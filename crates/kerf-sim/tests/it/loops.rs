//! One loop at a time, on small scenarios.

use rand::{Rng, SeedableRng};

use crate::{assert_clean, deployment, pool, run, run_with, scenario};

fn cluster(pool_extra: &str, workloads: &str) -> String {
    let body = format!("{}{}", pool(pool_extra), workloads);
    let indented: String = body.lines().map(|l| format!("  {l}\n")).collect();
    format!("cluster: |\n{indented}")
}

#[test]
fn provisioning_batches_pending_pods_into_claims_and_binds_them() {
    let s = scenario(&format!(
        "duration: 10m\nseed: 1\n{}",
        cluster("", &deployment("web", 20, "1", ""))
    ));
    let run = run(&s);
    assert_clean(&run);
    let r = &run.report;
    assert_eq!((r.pending.count, r.pending_at_end), (20, 0));
    // One batch, one solve: the claims it made, launched once each.
    assert!(
        r.launches >= 1 && r.launches <= 3,
        "{} launches",
        r.launches
    );
    // Batch (1 s idle) + launch + registration (30–90 s) + ready.
    assert!(r.pending.max <= 120.0, "{:?}", r.pending);
    for claim in run.end.claims.values() {
        assert!(claim.initialized, "{} not initialized", claim.name);
        assert!(claim.annotations.contains_key("karpenter.sh/nodepool-hash"));
    }
}

#[test]
fn nodepool_labels_and_taints_reach_the_node() {
    let extra = "      taints: [{key: team, value: a, effect: NoSchedule}]\n";
    let s = scenario(&format!(
        "duration: 5m\n{}",
        cluster(
            &extra.replace("      taints", "        taints"),
            &deployment("web", 2, "1", "").replace(
                "        containers:",
                "        tolerations: [{key: team, operator: Exists}]\n        containers:"
            )
        )
    ));
    let run = run(&s);
    assert_eq!(run.report.pending_at_end, 0);
    let node = run.end.nodes.values().next().expect("a node");
    assert!(
        node.taints.iter().any(|t| t.key == "team"),
        "{:?}",
        node.taints
    );
    assert_eq!(
        node.labels.get("karpenter.sh/nodepool").map(String::as_str),
        Some("default")
    );
    assert_eq!(
        node.labels
            .get("karpenter.sh/initialized")
            .map(String::as_str),
        Some("true")
    );
    assert!(
        !node
            .taints
            .iter()
            .any(|t| t.key == "karpenter.sh/unregistered")
    );
}

#[test]
fn registration_timeout_deletes_the_claim_and_its_instance() {
    let s = scenario(&format!(
        "duration: 40m\ncloud:\n  registration: {{min: 20m, max: 20m}}\n{}",
        cluster("", &deployment("web", 2, "1", ""))
    ));
    let run = run(&s);
    assert_clean(&run);
    assert!(
        run.claim_deletions
            .get("registration-timeout")
            .copied()
            .unwrap_or(0)
            >= 1
    );
    assert!(run.end.nodes.is_empty());
    assert_eq!(run.report.pending_at_end, 2);
}

#[test]
fn insufficient_capacity_falls_back_to_the_next_offering() {
    let s = scenario(&format!(
        "duration: 10m\ncloud:\n  shortages: [{{zone: us-east-1a}}]\n{}",
        cluster("", &deployment("web", 6, "1", ""))
    ));
    let run = run(&s);
    assert_clean(&run);
    assert!(run.report.insufficient_capacity_errors > 0);
    assert_eq!(run.report.pending_at_end, 0);
    for claim in run.end.claims.values() {
        let zone = &claim.launched.as_ref().unwrap().zone;
        assert_ne!(zone, "us-east-1a");
    }
}

#[test]
fn a_claim_with_no_offering_left_is_deleted_and_its_pods_provisioned_again() {
    // Every on-demand offering is out for five minutes.
    let s = scenario(&format!(
        "duration: 20m\ncloud:\n  shortages: [{{capacity_type: on-demand, from: 0s, for: 5m}}]\n{}",
        cluster("", &deployment("web", 3, "1", ""))
    ));
    let run = run(&s);
    assert_clean(&run);
    assert!(
        run.claim_deletions
            .get("insufficient-capacity")
            .copied()
            .unwrap_or(0)
            >= 1
    );
    assert_eq!(run.report.pending_at_end, 0);
}

#[test]
fn expiration_drains_through_pdbs_one_pod_at_a_time() {
    let s = scenario(&format!(
        "duration: 40m\n{}",
        cluster(
            "      expireAfter: 15m\n",
            &(deployment("web", 4, "1", "")
                + r#"
  ---
  apiVersion: policy/v1
  kind: PodDisruptionBudget
  metadata: {name: web, namespace: default}
  spec:
    maxUnavailable: 1
    selector: {matchLabels: {app: web}}
"#)
        )
        .replace("      expireAfter", "        expireAfter")
    ));
    let run = run(&s);
    assert_clean(&run);
    assert!(
        run.report
            .disruptions
            .get("expiration")
            .copied()
            .unwrap_or(0)
            >= 1
    );
    assert!(run.report.evictions >= 4);
    assert_eq!(run.report.pending_at_end, 0);
    // Never more than one pod down at once.
    for s in &run.report.samples {
        if s.t >= 300 {
            assert!(
                s.pending_pods <= 1,
                "{} pending at t={}",
                s.pending_pods,
                s.t
            );
        }
    }
}

#[test]
fn a_pdb_that_allows_nothing_blocks_the_drain() {
    let s = scenario(&format!(
        "duration: 40m\nsample_interval: 1m\n{}",
        cluster(
            "        expireAfter: 15m\n",
            &(deployment("web", 2, "1", "")
                + r#"
  ---
  apiVersion: policy/v1
  kind: PodDisruptionBudget
  metadata: {name: web, namespace: default}
  spec:
    maxUnavailable: 0
    selector: {matchLabels: {app: web}}
"#)
        )
    ));
    let run = run(&s);
    assert_clean(&run);
    assert_eq!(run.report.evictions, 0);
    // The expired claims are still draining, their pods still running.
    assert!(run.end.claims.values().any(|c| c.deleting_since.is_some()));
    assert_eq!(run.report.samples.last().unwrap().running_pods, 2);
}

#[test]
fn do_not_disrupt_pods_wait_until_the_grace_period_forces_them() {
    let s = scenario(&format!(
        "duration: 28m\n{}",
        cluster(
            "        expireAfter: 15m\n        terminationGracePeriod: 10m\n",
            &deployment("batch", 1, "1", "karpenter.sh/do-not-disrupt: \"true\"")
        )
    ));
    let run = run(&s);
    assert_clean(&run);
    assert_eq!(
        run.report.evictions, 0,
        "do-not-disrupt pods are not evicted"
    );
    assert!(
        run.report
            .disruptions
            .get("expiration")
            .copied()
            .unwrap_or(0)
            >= 1
    );
    // Forced at the deadline and recreated on the replacement.
    assert_eq!(run.report.pending.count, 2);
    assert_eq!(run.report.pending_at_end, 0);
}

#[test]
fn spot_interruptions_drain_and_replace() {
    let s = scenario(&format!(
        "duration: 30m\ntimeline:\n  - at: 10m\n    interrupt: {{count: 2, capacity_type: spot}}\n{}",
        cluster("", &deployment("web", 8, "1", ""))
            .replace("values: [on-demand]", "values: [spot]")
    ));
    let run = run(&s);
    assert_clean(&run);
    assert_eq!(run.report.disruptions.get("interruption").copied(), Some(2));
    assert_eq!(run.report.pending_at_end, 0);
}

#[test]
fn scheduled_maintenance_drains_the_node() {
    let s = scenario(&format!(
        "duration: 20m\ntimeline:\n  - at: 8m\n    maintenance: {{count: 1}}\n{}",
        cluster("", &deployment("web", 4, "1", ""))
    ));
    let run = run(&s);
    assert_clean(&run);
    assert_eq!(
        run.claim_deletions.get("scheduled-maintenance").copied(),
        Some(1)
    );
    assert_eq!(run.report.pending_at_end, 0);
}

#[test]
fn consolidation_replaces_then_drains() {
    // Ten pods, then two: the extra capacity is consolidated away.
    let s = scenario(&format!(
        "duration: 40m\ntimeline:\n  - at: 10m\n    scale: {{workload: web, replicas: 2}}\n{}",
        cluster(
            "    disruption: {consolidationPolicy: WhenEmptyOrUnderutilized, consolidateAfter: 1m}\n",
            &deployment("web", 10, "2", "")
        )
    ));
    let run = run(&s);
    assert_clean(&run);
    let r = &run.report;
    let removed: u64 = r.disruptions.values().sum();
    assert!(removed >= 1, "{:?}", r.disruptions);
    assert_eq!(r.pending_at_end, 0);
    let first = r.samples.iter().find(|s| s.t == 600).unwrap().cost_per_hour;
    let last = r.samples.last().unwrap().cost_per_hour;
    assert!(last < first, "cost/hour {first} -> {last}");
}

#[test]
fn restarting_the_controller_at_random_times_leaks_nothing_and_launches_nothing_twice() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/spot-storm.yaml");
    let s = kerf_sim::scenario::load(&path).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(99);
    let restarts: Vec<i64> = (0..60)
        .map(|_| rng.random_range(0..s.duration_ms))
        .collect();
    let run = run_with(
        &s,
        kerf_sim::RunOptions {
            restarts,
            ..Default::default()
        },
    );
    assert_clean(&run);
    assert_eq!(run.report.pending_at_end, 0);
    // Nothing is left tainted by a command a restart forgot.
    for node in run.end.nodes.values() {
        let claim = run.end.claim_of_node(&node.name);
        if claim.is_some_and(|c| c.deleting_since.is_none()) {
            assert!(
                !node
                    .taints
                    .iter()
                    .any(|t| t.key == "karpenter.sh/disrupted"),
                "{} still tainted",
                node.name
            );
        }
    }
}

#[test]
fn a_replacement_that_cannot_launch_untaints_the_node_and_gives_up() {
    // One big node, then one small pod: consolidation wants a smaller replacement, but
    // no on-demand capacity is left by then.
    let s = scenario(&format!(
        "duration: 30m\ncloud:\n  shortages: [{{capacity_type: on-demand, from: 10m}}]\ntimeline:\n  - at: 10m\n    scale: {{workload: web, replicas: 1}}\n{}",
        cluster(
            "    disruption: {consolidationPolicy: WhenEmptyOrUnderutilized, consolidateAfter: 1m}\n",
            &deployment("web", 6, "2", "")
        )
    ));
    let run = run(&s);
    assert_clean(&run);
    assert!(
        run.recorded.contains_key("DisruptionBlocked"),
        "{:?} {:?}",
        run.recorded,
        run.report.disruptions
    );
    assert_eq!(run.report.pending_at_end, 0);
    for node in run.end.nodes.values() {
        assert!(
            !node
                .taints
                .iter()
                .any(|t| t.key == "karpenter.sh/disrupted")
        );
    }
}

#[test]
fn registration_that_takes_fourteen_minutes_does_not_time_out() {
    // Karpenter's registration timeout is 15 minutes: a node 14 minutes late still joins,
    // and the only other timeout case (20 minutes) would pass with any timeout up to 20.
    let s = scenario(&format!(
        "duration: 30m\ncloud:\n  registration: {{min: 14m, max: 14m}}\n{}",
        cluster("", &deployment("web", 2, "1", ""))
    ));
    let run = run(&s);
    assert_clean(&run);
    assert_eq!(
        run.claim_deletions.get("registration-timeout"),
        None,
        "{:?}",
        run.claim_deletions
    );
    assert_eq!(run.report.pending_at_end, 0);
    assert!(!run.end.claims.is_empty());
    assert!(run.end.claims.values().all(|c| c.initialized));
}

#[test]
fn a_restart_one_tick_after_a_launch_launches_nothing_twice() {
    let s = scenario(&format!(
        "duration: 10m\nseed: 1\n{}",
        cluster("", &deployment("web", 20, "1", ""))
    ));
    let once = run(&s);
    // A restart at each of the first ten seconds: one of them falls one tick after the
    // batch's launches, while their claims have an instance but no providerID yet.
    let restarted = run_with(
        &s,
        kerf_sim::RunOptions {
            restarts: (1..=10).map(|t| t * 1000).collect(),
            ..Default::default()
        },
    );
    assert_clean(&restarted);
    assert_eq!(restarted.report.launches, once.report.launches);
    assert_eq!(restarted.report.pending_at_end, 0);
}
