//! Simulations in virtual time: each control loop on a small scenario, the committed
//! examples, and the controller-restart test. Nothing sleeps.

mod baseline;
mod examples;
mod loops;

use std::path::Path;

use kerf_sim::{Kerf, Run, RunOptions, Scenario};

/// A scenario from inline YAML.
pub fn scenario(yaml: &str) -> Scenario {
    kerf_sim::scenario::parse("test.yaml", "test", Path::new("."), yaml)
        .unwrap_or_else(|e| panic!("{e:#}"))
}

pub fn run(scenario: &Scenario) -> Run {
    run_with(scenario, RunOptions::default())
}

pub fn run_with(scenario: &Scenario, options: RunOptions<'_>) -> Run {
    let mut kerf = Kerf::for_scenario(scenario);
    kerf_sim::run(scenario, &mut kerf, options)
}

/// The four figures that must be zero in every run.
pub fn assert_clean(run: &Run) {
    let r = &run.report;
    assert_eq!(
        (
            r.pdb_violations,
            r.do_not_disrupt_violations,
            r.leaked_instances,
            r.double_launches
        ),
        (0, 0, 0, 0),
        "PDB violations, do-not-disrupt violations, leaked instances, double launches"
    );
}

/// The NodePool and EC2NodeClass most loop tests use: on-demand m-family, consolidation
/// after `consolidate_after`.
pub fn pool(extra_spec: &str) -> String {
    format!(
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
          - {{key: karpenter.k8s.aws/instance-category, operator: In, values: [m]}}
{extra_spec}
  ---
  apiVersion: karpenter.k8s.aws/v1
  kind: EC2NodeClass
  metadata: {{name: default}}
  spec:
    role: KarpenterNodeRole
    amiSelectorTerms: [{{alias: al2023@latest}}]
    subnetSelectorTerms: [{{tags: {{k: v}}}}]
    securityGroupSelectorTerms: [{{tags: {{k: v}}}}]
"#
    )
}

/// A Deployment of `replicas` pods of `cpu` each, labelled `app: <name>`.
pub fn deployment(name: &str, replicas: u32, cpu: &str, annotations: &str) -> String {
    format!(
        r#"
  ---
  apiVersion: apps/v1
  kind: Deployment
  metadata: {{name: {name}, namespace: default}}
  spec:
    replicas: {replicas}
    selector: {{matchLabels: {{app: {name}}}}}
    template:
      metadata: {{labels: {{app: {name}}}, annotations: {{{annotations}}}}}
      spec:
        containers:
          - {{name: c, image: x, resources: {{requests: {{cpu: "{cpu}", memory: 1Gi}}}}}}
"#
    )
}
