//! Karpenter v1 CRDs: real manifests from Karpenter's docs parse and convert with
//! Karpenter's defaults; invalid ones report every problem at once; the served CRDs match
//! the files committed under `config/crd/`.

use std::fmt::Write as _;
use std::path::PathBuf;

use expect_test::{Expect, expect};
use kerf_api::FieldError;
use kerf_api::crd::{
    EC2NodeClass, NodeClaim, NodePool, crd_file_name, crd_yaml, crds, nodepool_to_model,
    validate_ec2nodeclass,
};

/// The NodePool from Karpenter's v1 getting-started guide.
const GETTING_STARTED_NODEPOOL: &str = r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata:
  name: default
spec:
  template:
    spec:
      requirements:
        - key: kubernetes.io/arch
          operator: In
          values: ["amd64"]
        - key: kubernetes.io/os
          operator: In
          values: ["linux"]
        - key: karpenter.sh/capacity-type
          operator: In
          values: ["on-demand"]
        - key: karpenter.k8s.aws/instance-category
          operator: In
          values: ["c", "m", "r"]
        - key: karpenter.k8s.aws/instance-generation
          operator: Gt
          values: ["2"]
      nodeClassRef:
        group: karpenter.k8s.aws
        kind: EC2NodeClass
        name: default
      expireAfter: 720h # 30 * 24h = 720h
  limits:
    cpu: 1000
  disruption:
    consolidationPolicy: WhenEmptyOrUnderutilized
    consolidateAfter: 1m
"#;

/// The EC2NodeClass from the same guide, with the shell variables filled in.
const GETTING_STARTED_EC2NODECLASS: &str = r#"
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata:
  name: default
spec:
  role: "KarpenterNodeRole-my-cluster"
  amiSelectorTerms:
    - alias: "al2023@v20240807"
  subnetSelectorTerms:
    - tags:
        karpenter.sh/discovery: "my-cluster"
  securityGroupSelectorTerms:
    - tags:
        karpenter.sh/discovery: "my-cluster"
"#;

fn nodepool(yaml: &str) -> NodePool {
    serde_saphyr::from_str(yaml).expect("test NodePool is valid YAML of the right shape")
}

fn ec2nodeclass(yaml: &str) -> EC2NodeClass {
    serde_saphyr::from_str(yaml).expect("test EC2NodeClass is valid YAML of the right shape")
}

/// A model NodePool as one line per field, for comparing with expectations.
fn render_model(np: &kerf_model::NodePool) -> String {
    let mut out = String::new();
    let d = &np.disruption;
    let _ = writeln!(out, "name: {}", np.name);
    let _ = writeln!(out, "weight: {}", np.weight);
    let _ = writeln!(out, "requirements: [{}]", np.requirements);
    for (key, req) in np.requirements.iter() {
        if let Some(m) = req.min_values {
            let _ = writeln!(out, "  minValues {key}: {m}");
        }
    }
    let _ = writeln!(out, "labels: {:?}", np.labels);
    let taints: Vec<String> = np.taints.iter().map(ToString::to_string).collect();
    let startup: Vec<String> = np.startup_taints.iter().map(ToString::to_string).collect();
    let _ = writeln!(out, "taints: {taints:?} startup: {startup:?}");
    let _ = writeln!(out, "limits: [{}]", np.limits);
    let _ = writeln!(out, "nodeClass: {:?}", np.node_class);
    let _ = writeln!(
        out,
        "consolidation: {:?} after {:?}",
        d.consolidation_policy, d.consolidate_after
    );
    for b in &d.budgets {
        let _ = writeln!(
            out,
            "budget: {:?} schedule {:?} for {:?} reasons {:?}",
            b.nodes, b.schedule, b.duration, b.reasons
        );
    }
    let _ = writeln!(out, "expireAfter: {:?}", np.expire_after);
    let _ = writeln!(
        out,
        "terminationGracePeriod: {:?}",
        np.termination_grace_period
    );
    out
}

fn check_nodepool(yaml: &str, expect: Expect) {
    let actual = match nodepool_to_model(&nodepool(yaml)) {
        Ok(model) => render_model(&model),
        Err(errors) => render_errors(&errors),
    };
    expect.assert_eq(&actual);
}

fn render_errors(errors: &[FieldError]) -> String {
    errors.iter().map(|e| format!("{e}\n")).collect()
}

#[test]
fn getting_started_nodepool_converts() {
    check_nodepool(
        GETTING_STARTED_NODEPOOL,
        expect![[r#"
            name: default
            weight: 0
            requirements: [karpenter.k8s.aws/instance-category In [c,m,r], karpenter.k8s.aws/instance-generation Exists >2, karpenter.sh/capacity-type In [on-demand], kubernetes.io/arch In [amd64], kubernetes.io/os In [linux]]
            labels: {}
            taints: [] startup: []
            limits: [cpu=1000]
            nodeClass: Some(NodeClassRef { group: "karpenter.k8s.aws", kind: "EC2NodeClass", name: "default" })
            consolidation: WhenEmptyOrUnderutilized after Some(60s)
            budget: Percent(10) schedule None for None reasons []
            expireAfter: Some(2592000s)
            terminationGracePeriod: None
        "#]],
    );
}

#[test]
fn omitted_fields_take_karpenters_defaults() {
    let minimal = r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata:
  name: minimal
spec:
  template:
    spec:
      requirements: []
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
"#;
    let np = nodepool(minimal);
    // The wire type carries the defaults the API server would fill in from the schema.
    assert_eq!(np.spec.template.spec.expire_after, "720h");
    assert_eq!(
        np.spec.disruption.consolidation_policy,
        "WhenEmptyOrUnderutilized"
    );
    assert_eq!(np.spec.disruption.consolidate_after.as_deref(), Some("0s"));
    assert_eq!(np.spec.disruption.budgets.len(), 1);
    assert_eq!(np.spec.disruption.budgets[0].nodes, "10%");
    check_nodepool(
        minimal,
        expect![[r#"
            name: minimal
            weight: 0
            requirements: []
            labels: {}
            taints: [] startup: []
            limits: []
            nodeClass: Some(NodeClassRef { group: "karpenter.k8s.aws", kind: "EC2NodeClass", name: "default" })
            consolidation: WhenEmptyOrUnderutilized after Some(0ns)
            budget: Percent(10) schedule None for None reasons []
            expireAfter: Some(2592000s)
            terminationGracePeriod: None
        "#]],
    );
}

#[test]
fn zero_limits_are_kept_as_caps() {
    // `cpu: "0"` stops the pool launching anything; dropped, it would lift the cap.
    let np = nodepool(
        r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata:
  name: paused
spec:
  limits:
    cpu: "0"
    nodes: 0m
  template:
    spec:
      requirements: []
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
"#,
    );
    let model = nodepool_to_model(&np).expect("valid NodePool");
    assert_eq!(model.limits.to_string(), "cpu=0, nodes=0");
    assert_eq!(model.limits.get("cpu"), Some(kerf_model::Quantity::ZERO));
}

#[test]
fn full_nodepool_converts() {
    check_nodepool(
        r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata:
  name: gpu
spec:
  weight: 50
  limits:
    cpu: "1000"
    memory: 1000Gi
    nvidia.com/gpu: 8
    nodes: 20
  template:
    metadata:
      labels:
        team: ml
        node.kubernetes.io/lifecycle: spot
      annotations:
        example.com/owner: ml-platform
    spec:
      requirements:
        - key: node.kubernetes.io/instance-type
          operator: In
          values: [g5.xlarge, g5.2xlarge, g5.4xlarge]
          minValues: 2
        - key: beta.kubernetes.io/arch
          operator: In
          values: [amd64]
        - key: karpenter.k8s.aws/instance-family
          operator: Exists
          minValues: 1
        - key: topology.kubernetes.io/zone
          operator: NotIn
          values: [us-west-2d]
        - key: karpenter.k8s.aws/instance-memory
          operator: Lte
          values: ["131072"]
      taints:
        - key: nvidia.com/gpu
          value: "true"
          effect: NoSchedule
      startupTaints:
        - key: example.com/not-ready
          effect: NoExecute
      nodeClassRef:
        group: karpenter.k8s.aws
        kind: EC2NodeClass
        name: gpu
      expireAfter: Never
      terminationGracePeriod: 48h
  disruption:
    consolidationPolicy: WhenEmpty
    consolidateAfter: 1h30m
    budgets:
      - nodes: "0"
        schedule: "0 9 * * mon-fri"
        duration: 8h
        reasons: [Underutilized, Drifted]
      - nodes: "20%"
"#,
        expect![[r#"
            name: gpu
            weight: 50
            requirements: [karpenter.k8s.aws/instance-family Exists, karpenter.k8s.aws/instance-memory Exists <131073, kubernetes.io/arch In [amd64], node.kubernetes.io/instance-type In [g5.2xlarge,g5.4xlarge,g5.xlarge], topology.kubernetes.io/zone NotIn [us-west-2d]]
              minValues karpenter.k8s.aws/instance-family: 1
              minValues node.kubernetes.io/instance-type: 2
            labels: {"node.kubernetes.io/lifecycle": "spot", "team": "ml"}
            taints: ["nvidia.com/gpu=true:NoSchedule"] startup: ["example.com/not-ready:NoExecute"]
            limits: [cpu=1000, memory=1000Gi, nodes=20, nvidia.com/gpu=8]
            nodeClass: Some(NodeClassRef { group: "karpenter.k8s.aws", kind: "EC2NodeClass", name: "gpu" })
            consolidation: WhenEmpty after Some(5400s)
            budget: Count(0) schedule Some("0 9 * * mon-fri") for Some(28800s) reasons ["Underutilized", "Drifted"]
            budget: Percent(20) schedule None for None reasons []
            expireAfter: None
            terminationGracePeriod: Some(172800s)
        "#]],
    );
}

#[test]
fn invalid_nodepool_reports_every_error() {
    check_nodepool(
        r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata:
  name: broken
spec:
  weight: 0
  limits:
    cpu: lots
  template:
    metadata:
      labels:
        karpenter.sh/nodepool: mine
        kubernetes.io/hostname: x
        team: "bad value!"
    spec:
      requirements:
        - key: karpenter.sh/capacity-type
          operator: In
          values: []
        - key: example.com/Bad Key
          operator: Exists
        - key: kubernetes.io/arch
          operator: Equals
          values: [amd64]
        - key: karpenter.k8s.aws/instance-cpu
          operator: Gt
          values: ["4", "8"]
        - key: karpenter.k8s.aws/instance-family
          operator: In
          values: [m5, c5]
          minValues: 3
        - key: topology.kubernetes.io/zone
          operator: NotIn
          values: [us-west-2a]
          minValues: 1
        - key: kubernetes.io/os
          operator: DoesNotExist
          values: [linux]
        - key: karpenter.k8s.aws/instance-size
          operator: In
          values: [large]
          minValues: 51
      taints:
        - key: dedicated
          value: gpu
          effect: NoWhere
      startupTaints:
        - key: dedicated
          effect: NoWhere
      nodeClassRef:
        group: karpenter.k8s.aws/v1
        kind: EC2NodeClass
        name: ""
      expireAfter: 30d
      terminationGracePeriod: Never
  disruption:
    consolidationPolicy: WhenIdle
    consolidateAfter: soon
    budgets:
      - nodes: "150%"
        schedule: "0 9 * *"
      - nodes: "-1"
        duration: 10s
        reasons: [Expired]
"#,
        expect![[r#"
            NodePool broken: spec.template.metadata.labels[karpenter.sh/nodepool]: label "karpenter.sh/nodepool" is restricted; use a well-known label (kubernetes.io/arch, kubernetes.io/os, node.kubernetes.io/instance-type, topology.kubernetes.io/zone, topology.kubernetes.io/region, karpenter.sh/capacity-type, karpenter.k8s.aws/instance-*) or a custom key outside the kubernetes.io, k8s.io, karpenter.sh and karpenter.k8s.aws domains
            NodePool broken: spec.template.metadata.labels[kubernetes.io/hostname]: label "kubernetes.io/hostname" is restricted; use a well-known label (kubernetes.io/arch, kubernetes.io/os, node.kubernetes.io/instance-type, topology.kubernetes.io/zone, topology.kubernetes.io/region, karpenter.sh/capacity-type, karpenter.k8s.aws/instance-*) or a custom key outside the kubernetes.io, k8s.io, karpenter.sh and karpenter.k8s.aws domains
            NodePool broken: spec.template.metadata.labels[team]: "bad value!" is not a label value: use alphanumerics, '-', '_' or '.', starting and ending alphanumeric
            NodePool broken: spec.template.spec.requirements[0].values: operator In needs at least one value
            NodePool broken: spec.template.spec.requirements[1].key: "example.com/Bad Key" is not a qualified name; a qualified name is an optional DNS subdomain prefix and '/', then 1-63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric (e.g. "example.com/my-key")
            NodePool broken: spec.template.spec.requirements[2].operator: "Equals" is not an operator; use one of In, NotIn, Exists, DoesNotExist, Gt, Lt, Gte, Lte
            NodePool broken: spec.template.spec.requirements[3].values: operator Gt needs exactly one non-negative integer value, got ["4", "8"]
            NodePool broken: spec.template.spec.requirements[4].minValues: minValues is 3 but only 2 values are listed; list at least 3
            NodePool broken: spec.template.spec.requirements[6].values: operator DoesNotExist takes no values, got 1
            NodePool broken: spec.template.spec.requirements[7].minValues: 51 is out of range: must be 1-50
            NodePool broken: spec.template.spec.taints[0].effect: "NoWhere" is not a taint effect; use NoSchedule, PreferNoSchedule or NoExecute
            NodePool broken: spec.template.spec.startupTaints[0].effect: "NoWhere" is not a taint effect; use NoSchedule, PreferNoSchedule or NoExecute
            NodePool broken: spec.template.spec.startupTaints[0]: duplicate taint key/effect pair dedicated:NoWhere (also at spec.template.spec.taints[0])
            NodePool broken: spec.template.spec.nodeClassRef.name: required: must not be empty
            NodePool broken: spec.template.spec.nodeClassRef.group: "karpenter.k8s.aws/v1" contains '/': give the API group only (e.g. karpenter.k8s.aws), not group/version
            NodePool broken: spec.template.spec.expireAfter: "30d" is not a valid duration: unit "d" is not allowed; expected whole numbers with units h, m, s such as "720h", "1h30m" or "30s", or "Never"
            NodePool broken: spec.template.spec.terminationGracePeriod: "Never" is not a valid duration: no number before "Never"; expected whole numbers with units h, m, s such as "720h", "1h30m" or "30s"; Never is not allowed here (leave it unset to wait indefinitely)
            NodePool broken: spec.disruption.consolidationPolicy: "WhenIdle" is not a policy; use WhenEmpty, WhenEmptyOrUnderutilized or Balanced
            NodePool broken: spec.disruption.consolidateAfter: "soon" is not a valid duration: no number before "soon"; expected whole numbers with units h, m, s such as "720h", "1h30m" or "30s", or "Never"
            NodePool broken: spec.disruption.budgets[0].nodes: "150%" is not a node count or percentage; use a whole number ("5") or a percentage from 0% to 100% ("10%")
            NodePool broken: spec.disruption.budgets[0]: 'schedule' must be set with 'duration': set both for a scheduled budget, or neither for one that is always active
            NodePool broken: spec.disruption.budgets[0].schedule: "0 9 * *" has 4 fields; a cron schedule has 5 (minute hour day-of-month month day-of-week, e.g. "0 9 * * mon-fri") or is a macro such as @daily
            NodePool broken: spec.disruption.budgets[1].nodes: "-1" is not a node count or percentage; use a whole number ("5") or a percentage from 0% to 100% ("10%")
            NodePool broken: spec.disruption.budgets[1].reasons[0]: "Expired" is not a disruption reason; use Underutilized, Empty or Drifted
            NodePool broken: spec.disruption.budgets[1]: 'schedule' must be set with 'duration': set both for a scheduled budget, or neither for one that is always active
            NodePool broken: spec.disruption.budgets[1].duration: "10s" is not a valid duration: unit "s" is not allowed; expected whole numbers with units h, m such as "720h", "1h30m" or "30s"; a budget window is in hours and minutes, e.g. "8h" or "1h30m"
            NodePool broken: spec.limits[cpu]: "lots" is not a Kubernetes quantity (no number); expected e.g. "500m", "2", "1.5Gi", "512Mi", "1e3"
            NodePool broken: spec.weight: 0 is out of range: must be 1-100, or unset for 0
        "#]],
    );
}

#[test]
fn missing_required_fields_are_reported_together() {
    check_nodepool(
        r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {}
spec:
  template:
    spec: {}
  disruption:
    consolidationPolicy: WhenEmpty
"#,
        expect![[r#"
            NodePool : metadata.name: required: every NodePool needs a name
            NodePool : spec.template.spec.requirements: required: list the node requirements (an empty list allows everything)
            NodePool : spec.template.spec.nodeClassRef: required: set {group, kind, name}, e.g. {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
            NodePool : spec.disruption.consolidateAfter: required when disruption is set: a duration such as "30s" or "0s", or "Never"
        "#]],
    );
}

fn check_ec2nodeclass(yaml: &str, expect: Expect) {
    expect.assert_eq(&render_errors(&validate_ec2nodeclass(&ec2nodeclass(yaml))));
}

#[test]
fn getting_started_ec2nodeclass_is_valid_with_defaults() {
    let nc = ec2nodeclass(GETTING_STARTED_EC2NODECLASS);
    assert_eq!(validate_ec2nodeclass(&nc), Vec::new());
    // Karpenter's IMDS default: IMDSv2 only, one hop.
    let md = &nc.spec.metadata_options;
    assert_eq!(md.http_endpoint.as_deref(), Some("enabled"));
    assert_eq!(md.http_protocol_ipv6.as_deref(), Some("disabled"));
    assert_eq!(md.http_put_response_hop_limit, Some(1));
    assert_eq!(md.http_tokens.as_deref(), Some("required"));
}

#[test]
fn full_ec2nodeclass_is_valid() {
    check_ec2nodeclass(
        r#"
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata:
  name: custom
spec:
  amiFamily: AL2023
  amiSelectorTerms:
    - tags: {karpenter.sh/discovery: my-cluster}
      owner: self
    - id: ami-0123456789abcdef0
    - ssmParameter: /aws/service/eks/optimized-ami/1.31/amazon-linux-2023/x86_64/standard/recommended/image_id
  subnetSelectorTerms:
    - id: subnet-0123abcd
    - tags: {Name: "*private*"}
  securityGroupSelectorTerms:
    - name: my-cluster-node
    - id: sg-0123abcd
  instanceProfile: KarpenterNodeInstanceProfile
  associatePublicIPAddress: false
  tags:
    team: ml
  kubelet:
    maxPods: 110
    systemReserved: {cpu: 100m, memory: 100Mi}
    evictionHard: {memory.available: 5%}
    evictionSoft: {memory.available: 10%}
    evictionSoftGracePeriod: {memory.available: 1m}
    imageGCHighThresholdPercent: 85
    imageGCLowThresholdPercent: 80
  blockDeviceMappings:
    - deviceName: /dev/xvda
      rootVolume: true
      ebs: {volumeSize: 100Gi, volumeType: gp3, encrypted: true, deleteOnTermination: true}
  instanceStorePolicy: RAID0
  detailedMonitoring: true
  enclaveOptions: {enabled: true}
  metadataOptions:
    httpEndpoint: enabled
    httpProtocolIPv6: disabled
    httpPutResponseHopLimit: 2
    httpTokens: required
  userData: |
    echo hello
"#,
        expect![""],
    );
}

#[test]
fn invalid_ec2nodeclass_reports_every_error() {
    check_ec2nodeclass(
        r#"
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata:
  name: broken
spec:
  amiFamily: Ubuntu
  amiSelectorTerms:
    - alias: ubuntu@latest
    - alias: windows2022@v1
      id: ami-123
    - {}
  subnetSelectorTerms:
    - id: subnet-abc
      tags: {Name: ""}
  securityGroupSelectorTerms: []
  role: KarpenterNodeRole
  instanceProfile: KarpenterNodeInstanceProfile
  tags:
    kubernetes.io/cluster/my-cluster: owned
  kubelet:
    kubeReserved: {gpu: "1", cpu: "-1"}
    evictionSoft: {memory.available: 10%}
    imageGCHighThresholdPercent: 50
    imageGCLowThresholdPercent: 60
  blockDeviceMappings:
    - rootVolume: true
      ebs: {volumeType: gp9}
    - rootVolume: true
      ebs: {volumeSize: 100Gb}
  metadataOptions:
    httpPutResponseHopLimit: 65
    httpTokens: sometimes
"#,
        expect![[r#"
            EC2NodeClass broken: spec.amiSelectorTerms[0].alias: 'alias' is mutually exclusive, cannot be set with a combination of other amiSelectorTerms
            EC2NodeClass broken: spec.amiSelectorTerms[0].alias: family "ubuntu" is not supported, must be one of the following: 'al2', 'al2023', 'bottlerocket', 'windows2019', 'windows2022'
            EC2NodeClass broken: spec.amiSelectorTerms[1]: 'id' is mutually exclusive, cannot be set with a combination of other fields in amiSelectorTerms
            EC2NodeClass broken: spec.amiSelectorTerms[1].alias: 'alias' is mutually exclusive, cannot be set with a combination of other amiSelectorTerms
            EC2NodeClass broken: spec.amiSelectorTerms[1].alias: windows families may only specify version 'latest', got "v1"
            EC2NodeClass broken: spec.amiSelectorTerms[2]: expected at least one of ['tags', 'id', 'name', 'alias', 'ssmParameter'], got none
            EC2NodeClass broken: spec.amiFamily: "Ubuntu" is not an AMI family; use one of AL2, AL2023, Bottlerocket, Custom, Windows2019, Windows2022
            EC2NodeClass broken: spec.subnetSelectorTerms[0].tags[Name]: empty tag keys or values aren't supported (use "*" to match any value)
            EC2NodeClass broken: spec.subnetSelectorTerms[0]: 'id' is mutually exclusive, cannot be set with a combination of other fields in a subnet selector term
            EC2NodeClass broken: spec.securityGroupSelectorTerms: securityGroupSelectorTerms cannot be empty: add a term, e.g. [{tags: {karpenter.sh/discovery: my-cluster}}]
            EC2NodeClass broken: spec: must specify exactly one of ['role', 'instanceProfile']
            EC2NodeClass broken: spec.tags[kubernetes.io/cluster/my-cluster]: tag "kubernetes.io/cluster/my-cluster" is restricted: Karpenter sets it on the resources it creates
            EC2NodeClass broken: spec.kubelet.kubeReserved[cpu]: kubeReserved value cannot be a negative resource quantity
            EC2NodeClass broken: spec.kubelet.kubeReserved[gpu]: valid keys for kubeReserved are ['cpu','memory','ephemeral-storage','pid']
            EC2NodeClass broken: spec.kubelet.evictionSoft[memory.available]: evictionSoft key does not have a matching evictionSoftGracePeriod
            EC2NodeClass broken: spec.kubelet: imageGCHighThresholdPercent (50) must be greater than imageGCLowThresholdPercent (60)
            EC2NodeClass broken: spec.blockDeviceMappings: must have only one blockDeviceMappings with rootVolume, got 2
            EC2NodeClass broken: spec.blockDeviceMappings[0].ebs: snapshotID or volumeSize must be defined
            EC2NodeClass broken: spec.blockDeviceMappings[0].ebs.volumeType: "gp9" is not allowed; use one of standard, io1, io2, gp2, sc1, st1, gp3
            EC2NodeClass broken: spec.blockDeviceMappings[1].ebs.volumeSize: "100Gb" is not a volume size: use a whole number of Gi or G (up to 64000G) or Ti or T (up to 64T), e.g. "100Gi"
            EC2NodeClass broken: spec.metadataOptions.httpTokens: "sometimes" is not allowed; use one of required, optional
            EC2NodeClass broken: spec.metadataOptions.httpPutResponseHopLimit: 65 is out of range: must be 1-64
        "#]],
    );
}

#[test]
fn ec2nodeclass_alias_rules() {
    let with_ami = |family: &str, terms: &str| {
        format!(
            "apiVersion: karpenter.k8s.aws/v1\nkind: EC2NodeClass\nmetadata: {{name: alias}}\n\
             spec:\n  {family}\n  amiSelectorTerms: {terms}\n  subnetSelectorTerms: [{{tags: {{a: b}}}}]\n  \
             securityGroupSelectorTerms: [{{tags: {{a: b}}}}]\n  role: r\n"
        )
    };
    // An alias implies its family; amiFamily may only repeat it or say Custom.
    check_ec2nodeclass(&with_ami("", "[{alias: al2023@latest}]"), expect![""]);
    check_ec2nodeclass(
        &with_ami("amiFamily: Custom", "[{alias: bottlerocket@v1.20.0}]"),
        expect![""],
    );
    check_ec2nodeclass(
        &with_ami("amiFamily: Bottlerocket", "[{alias: al2023@latest}]"),
        expect![[r#"
            EC2NodeClass alias: spec.amiFamily: if set, amiFamily must be 'AL2023' or 'Custom' when using an AL2023 alias, got "Bottlerocket"
        "#]],
    );
    check_ec2nodeclass(
        &with_ami(
            "amiFamily: AL2023",
            "[{alias: al2023}, {alias: \"@latest\"}]",
        ),
        expect![[r#"
            EC2NodeClass alias: spec.amiSelectorTerms[0].alias: 'alias' is mutually exclusive, cannot be set with a combination of other amiSelectorTerms
            EC2NodeClass alias: spec.amiSelectorTerms[0].alias: "al2023" is improperly formatted, must match the format 'family@version' (e.g. al2023@latest or bottlerocket@v1.10.0)
            EC2NodeClass alias: spec.amiSelectorTerms[1].alias: 'alias' is mutually exclusive, cannot be set with a combination of other amiSelectorTerms
            EC2NodeClass alias: spec.amiSelectorTerms[1].alias: "@latest" is improperly formatted, must match the format 'family@version' (e.g. al2023@latest or bottlerocket@v1.10.0)
        "#]],
    );
    // Without an alias nothing implies the family, so it must be given.
    check_ec2nodeclass(
        &with_ami("", "[{name: my-ami-*, owner: self}]"),
        expect![[r#"
            EC2NodeClass alias: spec.amiFamily: must specify amiFamily if amiSelectorTerms does not contain an alias
        "#]],
    );
}

#[test]
fn served_crds_have_karpenters_names_and_columns() {
    let mut out = String::new();
    for crd in crds() {
        let names = &crd.spec.names;
        let _ = writeln!(
            out,
            "{} kind={} scope={} shortNames={:?} categories={:?}",
            crd.metadata.name.as_deref().unwrap_or(""),
            names.kind,
            crd.spec.scope,
            names.short_names.clone().unwrap_or_default(),
            names.categories.clone().unwrap_or_default(),
        );
        for version in &crd.spec.versions {
            let status = version
                .subresources
                .as_ref()
                .is_some_and(|s| s.status.is_some());
            let _ = writeln!(
                out,
                "  {} served={} storage={} status={status}",
                version.name, version.served, version.storage
            );
            for col in version.additional_printer_columns.iter().flatten() {
                let _ = writeln!(
                    out,
                    "    {} {} {} priority={}",
                    col.name,
                    col.type_,
                    col.json_path,
                    col.priority.unwrap_or(0)
                );
            }
        }
    }
    expect![[r#"
        nodepools.karpenter.sh kind=NodePool scope=Cluster shortNames=[] categories=["karpenter"]
          v1 served=true storage=true status=true
            NodeClass string .spec.template.spec.nodeClassRef.name priority=0
            Nodes string .status.resources.nodes priority=0
            Ready string .status.conditions[?(@.type=="Ready")].status priority=0
            Age date .metadata.creationTimestamp priority=0
            Weight integer .spec.weight priority=1
            CPU string .status.resources.cpu priority=1
            Memory string .status.resources.memory priority=1
        nodeclaims.karpenter.sh kind=NodeClaim scope=Cluster shortNames=[] categories=["karpenter"]
          v1 served=true storage=true status=true
            Type string .metadata.labels.node\.kubernetes\.io/instance-type priority=0
            Capacity string .metadata.labels.karpenter\.sh/capacity-type priority=0
            Zone string .metadata.labels.topology\.kubernetes\.io/zone priority=0
            Node string .status.nodeName priority=0
            Ready string .status.conditions[?(@.type=="Ready")].status priority=0
            Age date .metadata.creationTimestamp priority=0
            ID string .status.providerID priority=1
            NodePool string .metadata.labels.karpenter\.sh/nodepool priority=1
            NodeClass string .spec.nodeClassRef.name priority=1
        ec2nodeclasses.karpenter.k8s.aws kind=EC2NodeClass scope=Cluster shortNames=["ec2nc", "ec2ncs"] categories=["karpenter"]
          v1 served=true storage=true status=true
            Ready string .status.conditions[?(@.type=="Ready")].status priority=0
            Age date .metadata.creationTimestamp priority=0
            Role string .spec.role priority=1
    "#]]
    .assert_eq(&out);
}

/// The CRD files committed under `config/crd/`.
fn crd_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config/crd")
}

#[test]
fn committed_crds_are_up_to_date() {
    let update = std::env::var_os("UPDATE_CRDS").is_some();
    let mut stale = Vec::new();
    for crd in crds() {
        let path = crd_dir().join(crd_file_name(&crd));
        let yaml = crd_yaml(&crd).expect("CRDs render as YAML");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed == yaml {
            continue;
        }
        if update {
            std::fs::create_dir_all(crd_dir()).expect("config/crd can be created");
            std::fs::write(&path, &yaml).expect("CRD file can be written");
        } else {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "these committed CRDs differ from what kerf serves: {stale:?}\n\
         regenerate them with: UPDATE_CRDS=1 cargo test -p kerf-api --test it crds::committed_crds_are_up_to_date"
    );
}

#[test]
fn crds_round_trip_through_yaml() {
    // What `kerf crds` prints must read back as the same CRDs.
    let yaml = kerf_api::crd::crds_yaml().expect("CRDs render as YAML");
    assert_eq!(yaml.matches("\n---\n").count() + 1, 3);
    for (doc, crd) in yaml.split("---\n").filter(|d| !d.is_empty()).zip(crds()) {
        let parsed: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
            serde_saphyr::from_str(doc).expect("rendered CRD parses");
        assert_eq!(parsed, crd);
    }
}

#[test]
fn nodeclaim_parses_with_status() {
    let nc: NodeClaim = serde_saphyr::from_str(
        r#"
apiVersion: karpenter.sh/v1
kind: NodeClaim
metadata:
  name: default-abcde
  labels: {karpenter.sh/nodepool: default}
spec:
  requirements:
    - {key: node.kubernetes.io/instance-type, operator: In, values: [m5.large]}
  resources:
    requests: {cpu: 1500m, memory: 3Gi, pods: 5}
  nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
status:
  providerID: aws:///us-west-2a/i-0123456789abcdef0
  nodeName: ip-10-0-1-2.us-west-2.compute.internal
  imageID: ami-0123456789abcdef0
  capacity: {cpu: "2", memory: 7910Mi, pods: "29"}
  allocatable: {cpu: 1930m, memory: 7220Mi, pods: "29"}
  conditions:
    - type: Ready
      status: "True"
      reason: Ready
      message: ""
      lastTransitionTime: "2024-08-01T10:00:00Z"
"#,
    )
    .expect("NodeClaim parses");
    assert_eq!(nc.spec.expire_after, "720h");
    assert_eq!(nc.spec.resources.requests.len(), 3);
    let status = nc.status.expect("status is read");
    assert_eq!(
        status.provider_id.as_deref(),
        Some("aws:///us-west-2a/i-0123456789abcdef0")
    );
    assert_eq!(status.conditions[0].type_, "Ready");
}
