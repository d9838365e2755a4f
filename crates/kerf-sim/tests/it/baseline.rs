//! The node-group baseline (`kerf_sim::NodeGroups`) on small scenarios: which group a
//! scale-up picks, when and how nodes are scaled down, what protects a node, restarts.

use kerf_controllers::{Action, ClusterView, Event};
use kerf_sim::baseline::TAINT_TO_BE_DELETED;
use kerf_sim::{Autoscaler, NodeGroups, Run, RunOptions, Scenario};
use rand::{Rng, SeedableRng};

use crate::{assert_clean, deployment, scenario};

/// The baseline, watched: the times it began removing each node, and a check after
/// every step that at most one node is being removed.
struct Watched {
    inner: NodeGroups,
    scale_downs: Vec<(i64, String)>,
    most_removing: usize,
}

impl Autoscaler for Watched {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn step(&mut self, now: i64, view: &ClusterView, events: &[Event]) -> Vec<Action> {
        let removing = view
            .nodes
            .values()
            .filter(|n| {
                n.taints.iter().any(|t| t.key == TAINT_TO_BE_DELETED)
                    || view.claim_of_node(&n.name).is_some_and(|c| {
                        matches!(
                            c.deletion_reason,
                            Some(kerf_controllers::DeletionReason::ScaleDown { .. })
                        )
                    })
            })
            .count();
        self.most_removing = self.most_removing.max(removing);
        let actions = self.inner.step(now, view, events);
        for a in &actions {
            if let Action::Taint { node, taint } = a
                && taint.key == TAINT_TO_BE_DELETED
            {
                self.scale_downs.push((now, node.clone()));
            }
        }
        actions
    }

    fn restart(&mut self) {
        self.inner.restart();
    }
}

fn run_watched(s: &Scenario, options: RunOptions<'_>) -> (Run, Watched) {
    let mut watched = Watched {
        inner: NodeGroups::for_scenario(s),
        scale_downs: Vec::new(),
        most_removing: 0,
    };
    let run = kerf_sim::run(s, &mut watched, options);
    (run, watched)
}

fn baseline(s: &Scenario) -> Run {
    run_watched(s, RunOptions::default()).0
}

/// A NodePool of on-demand instances of the given types, and `workloads`.
fn cluster(types: &str, workloads: &str) -> String {
    let body = format!(
        r#"
  apiVersion: karpenter.sh/v1
  kind: NodePool
  metadata: {{name: default}}
  spec:
    template:
      spec:
        nodeClassRef: {{group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}}
        requirements:
          - {{key: karpenter.sh/capacity-type, operator: In, values: [on-demand]}}
          - {{key: node.kubernetes.io/instance-type, operator: In, values: [{types}]}}
  ---
  apiVersion: karpenter.k8s.aws/v1
  kind: EC2NodeClass
  metadata: {{name: default}}
  spec:
    role: KarpenterNodeRole
    amiSelectorTerms: [{{alias: al2023@latest}}]
    subnetSelectorTerms: [{{tags: {{k: v}}}}]
    securityGroupSelectorTerms: [{{tags: {{k: v}}}}]
{workloads}"#
    );
    let indented: String = body.lines().map(|l| format!("  {l}\n")).collect();
    format!("cluster: |\n{indented}")
}

fn instance_types(view: &ClusterView) -> Vec<&str> {
    view.nodes
        .values()
        .filter_map(|n| {
            n.labels
                .get("node.kubernetes.io/instance-type")
                .map(String::as_str)
        })
        .collect()
}

#[test]
fn scale_up_picks_the_least_waste_group() {
    // Seven 1-CPU pods: on m6i.2xlarge they fill one node (little CPU unused); on
    // m6i.large each needs a node of its own (half of each unused).
    let s = scenario(&format!(
        "duration: 5m\n{}",
        cluster("m6i.large, m6i.2xlarge", &deployment("web", 7, "1", ""))
    ));
    let run = baseline(&s);
    assert_clean(&run);
    assert_eq!(run.report.pending_at_end, 0);
    assert_eq!(instance_types(&run.end), ["m6i.2xlarge"]);
    assert_eq!(run.recorded.get("TriggeredScaleUp"), Some(&1));

    // Three 1.5-CPU pods: one per m6i.large wastes less than three on an m6i.2xlarge.
    let s = scenario(&format!(
        "duration: 5m\n{}",
        cluster("m6i.large, m6i.2xlarge", &deployment("web", 3, "1500m", ""))
    ));
    let run = baseline(&s);
    assert_clean(&run);
    assert_eq!(run.report.pending_at_end, 0);
    assert_eq!(
        instance_types(&run.end),
        ["m6i.large", "m6i.large", "m6i.large"]
    );
    assert_eq!(run.recorded.get("TriggeredScaleUp"), Some(&1));
}

#[test]
fn under_utilized_nodes_go_after_ten_minutes_one_at_a_time() {
    // Nine 600m pods fill three m6i.large (three each); at 20m only two remain, so two
    // nodes are unneeded. Neither may go before 30m (ten minutes unneeded), and they go
    // one after the other.
    let s = scenario(&format!(
        "duration: 1h\ntimeline:\n  - at: 20m\n    scale: {{workload: web, replicas: 2}}\n{}",
        cluster("m6i.large", &deployment("web", 9, "600m", ""))
    ));
    let (run, watched) = run_watched(&s, RunOptions::default());
    assert_clean(&run);
    assert_eq!(run.report.pending_at_end, 0);
    assert_eq!(run.report.launches, 3);
    let r = &run.report;
    let removed = r.disruptions.get("scale-down").copied().unwrap_or(0)
        + r.disruptions.get("scale-down-empty").copied().unwrap_or(0);
    assert_eq!(removed, 2, "{:?}", r.disruptions);
    assert_eq!(run.end.nodes.len(), 1);
    assert_eq!(watched.scale_downs.len(), 2, "{:?}", watched.scale_downs);
    for (at, node) in &watched.scale_downs {
        assert!(*at >= 30 * 60_000, "{node} removed at {}s", at / 1000);
    }
    assert_eq!(watched.most_removing, 1, "nodes removed together");
}

/// Three 600m pods of `a` fill an m6i.large, three of `b` (applied at 2m) a second;
/// at 5m each keeps one pod, so both nodes are under-utilized and either's pod would
/// fit on the other.
fn shrinking(annotations: &str, more: &str) -> Scenario {
    let b: String = deployment("b", 3, "600m", annotations)
        .lines()
        .map(|l| format!("      {l}\n"))
        .collect();
    scenario(&format!(
        "duration: 40m\ntimeline:\n  - at: 2m\n    apply: |\n{b}  - at: 5m\n    scale: {{workload: a, replicas: 1}}\n  - at: 5m\n    scale: {{workload: b, replicas: 1}}\n{}",
        cluster(
            "m6i.large",
            &format!("{}{more}", deployment("a", 3, "600m", annotations))
        )
    ))
}

#[test]
fn an_unprotected_under_utilized_node_is_drained() {
    // The control for the two tests below: nothing protects the pods.
    let (run, watched) = run_watched(&shrinking("", ""), RunOptions::default());
    assert_one_scaled_down(&run, &watched);
    assert_eq!(run.report.evictions, 1);
}

/// The run scaled down exactly one of `shrinking`'s two nodes, cleanly.
fn assert_one_scaled_down(run: &Run, watched: &Watched) {
    assert_clean(run);
    assert_eq!(
        run.report.disruptions.get("scale-down"),
        Some(&1),
        "{:?}",
        run.report.disruptions
    );
    assert_eq!(run.end.nodes.len(), 1);
    assert_eq!(watched.scale_downs.len(), 1);
}

/// The run kept both of `shrinking`'s nodes: nothing evicted, nothing disrupted.
fn assert_both_kept(run: &Run, watched: &Watched) {
    assert_clean(run);
    assert_eq!(run.report.evictions, 0);
    assert!(
        run.report.disruptions.is_empty(),
        "{:?}",
        run.report.disruptions
    );
    assert!(watched.scale_downs.is_empty());
    assert_eq!(run.end.nodes.len(), 2);
}

#[test]
fn a_node_whose_pods_a_pdb_protects_is_not_drained() {
    let pdb = "
  ---
  apiVersion: policy/v1
  kind: PodDisruptionBudget
  metadata: {name: web, namespace: default}
  spec:
    maxUnavailable: 0
    selector: {}
";
    let (run, watched) = run_watched(&shrinking("", pdb), RunOptions::default());
    assert_both_kept(&run, &watched);
}

#[test]
fn a_pdb_below_its_minimum_blocks_only_its_own_pods() {
    // The PDB selects no running pod, so it allows -1 disruptions: it must not stand in
    // the way of draining nodes whose pods it does not select.
    let pdb = "
  ---
  apiVersion: policy/v1
  kind: PodDisruptionBudget
  metadata: {name: ghost, namespace: default}
  spec:
    minAvailable: 1
    selector: {matchLabels: {app: ghost}}
";
    let (run, watched) = run_watched(&shrinking("", pdb), RunOptions::default());
    assert_one_scaled_down(&run, &watched);
}

#[test]
fn do_not_disrupt_pods_protect_their_node() {
    let (run, watched) = run_watched(
        &shrinking("karpenter.sh/do-not-disrupt: \"true\"", ""),
        RunOptions::default(),
    );
    assert_both_kept(&run, &watched);
}

#[test]
fn restarts_leak_nothing_and_launch_nothing_twice() {
    // Scale up, down and up again while the baseline restarts at random moments.
    let s = scenario(&format!(
        "duration: 3h\ntimeline:\n  - at: 30m\n    scale: {{workload: web, replicas: 3}}\n  - at: 1h30m\n    scale: {{workload: web, replicas: 14}}\n  - at: 2h\n    scale: {{workload: web, replicas: 2}}\n{}",
        cluster("m6i.large, m6i.xlarge", &deployment("web", 12, "600m", ""))
    ));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let restarts: Vec<i64> = (0..80)
        .map(|_| rng.random_range(0..s.duration_ms))
        .collect();
    let (run, _) = run_watched(
        &s,
        RunOptions {
            restarts,
            ..Default::default()
        },
    );
    assert_clean(&run);
    assert_eq!(run.report.pending_at_end, 0);
    let removed: u64 = run
        .report
        .disruptions
        .iter()
        .filter(|(k, _)| k.starts_with("scale-down"))
        .map(|(_, v)| v)
        .sum();
    assert!(removed > 0, "{:?}", run.report.disruptions);
    // No drain a restart interrupted is left tainted.
    for node in run.end.nodes.values() {
        if run
            .end
            .claim_of_node(&node.name)
            .is_some_and(|c| c.deleting_since.is_none())
        {
            assert!(
                !node.taints.iter().any(|t| t.key == TAINT_TO_BE_DELETED),
                "{} still tainted",
                node.name
            );
        }
    }
}
