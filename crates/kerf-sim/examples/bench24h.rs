//! The speed case: a day of a 500-node, 10,000-pod cluster with hourly churn.
//!
//!     cargo run --release -p kerf-sim --example bench24h [-- HOURS [DEPLOYMENTS]]
//!
//! Prints the wall time of the run (scenario construction excluded) and the summary
//! figures. 50 Deployments of 200 pods (100m–300m CPU, 256Mi) on one general NodePool; every hour a
//! fifth of them scale between 160 and 240 replicas, and a 200-pod Job runs for 20 minutes.

use std::fmt::Write as _;
use std::time::Instant;

fn main() {
    let hours: u32 = std::env::args()
        .nth(1)
        .and_then(|h| h.parse().ok())
        .unwrap_or(24);
    // 200 pods each: 50 is the 10,000-pod case.
    let deployments: usize = std::env::args()
        .nth(2)
        .and_then(|d| d.parse().ok())
        .unwrap_or(50);
    let mut yaml =
        format!("name: bench24h\nduration: {hours}h\nseed: 1\nsample_interval: 10m\ncluster: |\n");
    let mut cluster = String::from(
        r#"apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: general}
spec:
  template:
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
      requirements:
        - {key: karpenter.sh/capacity-type, operator: In, values: [on-demand]}
        - {key: karpenter.k8s.aws/instance-category, operator: In, values: [m]}
        - {key: karpenter.k8s.aws/instance-size, operator: In, values: [xlarge]}
  disruption:
    consolidationPolicy: WhenEmptyOrUnderutilized
    consolidateAfter: 5m
---
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata: {name: default}
spec:
  role: R
  amiSelectorTerms: [{alias: al2023@latest}]
  subnetSelectorTerms: [{tags: {k: v}}]
  securityGroupSelectorTerms: [{tags: {k: v}}]
"#,
    );
    let cpus = ["100m", "150m", "200m", "250m", "300m"];
    for d in 0..deployments {
        let cpu = cpus[d % cpus.len()];
        write!(
            cluster,
            "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app-{d}, namespace: bench}}\nspec:\n  replicas: 200\n  selector: {{matchLabels: {{app: app-{d}}}}}\n  template:\n    metadata: {{labels: {{app: app-{d}}}}}\n    spec:\n      containers: [{{name: c, image: x, resources: {{requests: {{cpu: \"{cpu}\", memory: 256Mi}}}}}}]\n"
        )
        .unwrap();
    }
    for line in cluster.lines() {
        writeln!(yaml, "  {line}").unwrap();
    }
    yaml.push_str("timeline:\n");
    let job = 4 * deployments;
    for h in 1..hours {
        for k in 0..deployments.div_ceil(5) {
            let d = (h as usize * 7 + k * 5) % deployments;
            let replicas = if (h + k as u32).is_multiple_of(2) {
                240
            } else {
                160
            };
            writeln!(
                yaml,
                "  - at: {h}h\n    scale: {{workload: bench/app-{d}, replicas: {replicas}}}"
            )
            .unwrap();
        }
        writeln!(
            yaml,
            "  - at: {h}h\n    apply: |\n      apiVersion: batch/v1\n      kind: Job\n      metadata: {{name: hourly-{h}, namespace: bench}}\n      spec:\n        parallelism: {job}\n        completions: {job}\n        template:\n          metadata: {{annotations: {{sim.kerf.sh/duration: 20m}}}}\n          spec:\n            restartPolicy: Never\n            containers: [{{name: c, image: x, resources: {{requests: {{cpu: 500m, memory: 1Gi}}}}}}]"
        )
        .unwrap();
    }
    let scenario = kerf_sim::scenario::parse(
        "bench24h.yaml",
        "bench24h",
        std::path::Path::new("."),
        &yaml,
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let mut kerf = kerf_sim::Kerf::for_scenario(&scenario);
    let started = Instant::now();
    let run = kerf_sim::run(&scenario, &mut kerf, kerf_sim::RunOptions::default());
    let elapsed = started.elapsed();
    let r = &run.report;
    let peak_nodes = r
        .samples
        .iter()
        .map(|s| s.nodes.values().sum::<u32>())
        .max()
        .unwrap_or(0);
    let peak_pods = r.samples.iter().map(|s| s.running_pods).max().unwrap_or(0);
    println!(
        "bench24h: {deployments} deployments x 200 pods, {hours}h simulated in {:.1}s; peak {peak_nodes} nodes, {peak_pods} running pods; {} launches; {} pods bound (p99 wait {:.0}s); disruptions {:?}; cost ${:.2}; violations/leaks/double launches {}/{}/{}/{}",
        elapsed.as_secs_f64(),
        r.launches,
        r.pending.count,
        r.pending.p99,
        r.disruptions,
        r.total_cost,
        r.pdb_violations,
        r.do_not_disrupt_violations,
        r.leaked_instances,
        r.double_launches
    );
}
