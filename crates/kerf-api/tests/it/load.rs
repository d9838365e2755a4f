//! Loading Kubernetes YAML: fixtures in, a compact rendering of the model values out.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use expect_test::{Expect, expect};
use kerf_api::{Error, Manifests, load_paths, load_str};
use kerf_model::pod::{InclusionPolicy, WhenUnsatisfiable};
use kerf_model::{Labels, Pod};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/fixtures")
        .join(name)
}

fn render_pod(out: &mut String, role: &str, pod: &Pod) {
    let owner = pod
        .owner
        .as_ref()
        .map_or("-".to_string(), |o| format!("{}/{}", o.kind, o.name));
    writeln!(
        out,
        "{role} {} owner={owner} priority={} requests: {}",
        pod.key, pod.priority, pod.requests
    )
    .unwrap();
    if let Some(node) = &pod.node_name {
        writeln!(out, "  node: {node}").unwrap();
    }
    if !pod.labels.is_empty() {
        writeln!(out, "  labels: {}", labels(&pod.labels)).unwrap();
    }
    for term in &pod.node_affinity.required {
        writeln!(out, "  required: {term}").unwrap();
    }
    for p in &pod.node_affinity.preferred {
        writeln!(out, "  preferred({}): {}", p.weight, p.term).unwrap();
    }
    for v in &pod.volume_zones {
        writeln!(out, "  volume {}: zone {}", v.claim, v.zones).unwrap();
    }
    for t in &pod.tolerations {
        let effect = t.effect.map_or("*", |e| e.as_str());
        writeln!(
            out,
            "  tolerates: {:?} {:?} {:?} {effect}",
            t.key, t.operator, t.value
        )
        .unwrap();
    }
    for p in &pod.host_ports {
        writeln!(
            out,
            "  host port: {}/{} {:?}",
            p.port, p.protocol, p.host_ip
        )
        .unwrap();
    }
}

fn labels(labels: &Labels) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn render(m: &Manifests) -> String {
    let mut out = String::new();
    for pod in &m.pending_pods {
        render_pod(&mut out, "pending", pod);
    }
    for pod in &m.bound_pods {
        render_pod(&mut out, "bound", pod);
    }
    for pod in &m.daemonsets {
        render_pod(&mut out, "daemonset", pod);
    }
    for node in &m.nodes {
        let taints: Vec<String> = node.taints.iter().map(ToString::to_string).collect();
        writeln!(
            out,
            "node {} ready={} unschedulable={} created_at={:?}\n  labels: {}\n  taints: [{}]\n  capacity: {}\n  allocatable: {}",
            node.name,
            node.ready,
            node.unschedulable,
            node.created_at,
            labels(&node.labels),
            taints.join(", "),
            node.capacity,
            node.allocatable
        )
        .unwrap();
    }
    for (name, l) in &m.namespaces {
        writeln!(out, "namespace {name}: {}", labels(l)).unwrap();
    }
    for w in &m.warnings {
        writeln!(out, "warning: {w}").unwrap();
    }
    out
}

fn check(yaml: &str, expect: Expect) {
    match load_str("test.yaml", yaml) {
        Ok(m) => expect.assert_eq(&render(&m)),
        Err(e) => expect.assert_eq(&format!("error: {e}\n")),
    }
}

fn load_one(yaml: &str) -> Pod {
    let m = load_str("test.yaml", yaml).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.pending_pods.len(), 1, "{}", render(&m));
    m.pending_pods.into_iter().next().unwrap()
}

fn labels_of(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn workloads_expand_into_named_replicas() {
    let m = load_paths(&[fixture("workloads.yaml")]).unwrap();
    expect![[r#"
        pending default/batch-0 owner=Job/batch priority=0 requests: cpu=2, pods=1
        pending default/batch-1 owner=Job/batch priority=0 requests: cpu=2, pods=1
        pending default/default-parallelism-0 owner=Job/default-parallelism priority=0 requests: pods=1
        pending default/legacy-0 owner=ReplicaSet/legacy priority=0 requests: cpu=1, memory=1Gi, pods=1
          labels: app=legacy
        pending payments/web-0 owner=Deployment/web priority=2000000000 requests: cpu=250m, memory=512Mi, pods=1
          labels: app=web,tier=front
        pending payments/web-1 owner=Deployment/web priority=2000000000 requests: cpu=250m, memory=512Mi, pods=1
          labels: app=web,tier=front
        pending payments/web-2 owner=Deployment/web priority=2000000000 requests: cpu=250m, memory=512Mi, pods=1
          labels: app=web,tier=front
        bound default/running owner=ReplicaSet/api-5d8f priority=1000 requests: cpu=100m, pods=1
          node: ip-10-0-1-1.ec2.internal
        daemonset logging/fluent-bit owner=DaemonSet/fluent-bit priority=0 requests: cpu=100m, memory=128Mi, pods=1
          labels: app=fluent-bit
          tolerates: "" Exists "" *
          tolerates: "node.kubernetes.io/not-ready" Exists "" NoExecute
          tolerates: "node.kubernetes.io/unreachable" Exists "" NoExecute
          tolerates: "node.kubernetes.io/disk-pressure" Exists "" NoSchedule
          tolerates: "node.kubernetes.io/memory-pressure" Exists "" NoSchedule
          tolerates: "node.kubernetes.io/pid-pressure" Exists "" NoSchedule
          tolerates: "node.kubernetes.io/unschedulable" Exists "" NoSchedule
          tolerates: "node.kubernetes.io/network-unavailable" Exists "" NoSchedule
          host port: 2020/TCP ""
        namespace default: kubernetes.io/metadata.name=default
        namespace logging: kubernetes.io/metadata.name=logging
        namespace payments: kubernetes.io/metadata.name=payments
    "#]]
    .assert_eq(&render(&m));
    let web = &m.pending_pods[4];
    assert_eq!(
        web.annotations
            .get("karpenter.sh/do-not-disrupt")
            .map(String::as_str),
        Some("true")
    );
}

#[test]
fn a_directory_reads_every_manifest_in_name_order() {
    let m = load_paths(&[fixture("cluster")]).unwrap();
    expect![[r#"
        node cordoned ready=false unschedulable=true created_at=None
          labels: kubernetes.io/hostname=cordoned
          taints: []
          capacity: cpu=4, memory=16Gi, pods=110
          allocatable: cpu=4, memory=16Gi, pods=110
        node ip-10-0-1-1.ec2.internal ready=true unschedulable=false created_at=Some(1714564800)
          labels: karpenter.sh/nodepool=default,kubernetes.io/hostname=ip-10-0-1-1.ec2.internal,node.kubernetes.io/instance-type=m5.large,topology.kubernetes.io/zone=us-east-1a
          taints: [dedicated=infra:NoSchedule]
          capacity: cpu=2, memory=8Gi, pods=29
          allocatable: cpu=1930m, memory=7Gi, pods=29
        namespace payments: kubernetes.io/metadata.name=payments,team=money
        warning: CLUSTER/namespaces.yaml: skipped ConfigMap payments/settings: kerf does not use this kind
        warning: CLUSTER/namespaces.yaml: skipped ClusterRole reader: kerf does not use this kind
    "#]]
    .assert_eq(&render(&m).replace(&fixture("cluster").display().to_string(), "CLUSTER"));
    assert_eq!(
        m.nodes[1]
            .annotations
            .get("karpenter.sh/nodepool-hash")
            .map(String::as_str),
        Some("123")
    );
}

#[test]
fn effective_requests_follow_kube_scheduler() {
    // Containers: app (500m, 256Mi, and a GPU limit that defaults its request).
    // Init containers, in order: setup (200m, 1Gi), the sidecar log (100m, 64Mi), migrate
    // (1, 128Mi), which runs beside the sidecar started before it.
    //   running together: app + log = 600m, 320Mi, 1 GPU
    //   init steps: setup = 200m, 1Gi; log = 100m, 64Mi; migrate + log = 1100m, 192Mi
    //   max = 1100m, 1Gi, 1 GPU; plus 50m overhead = 1150m.
    check(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  overhead: {cpu: 50m}
  initContainers:
  - {name: setup, resources: {requests: {cpu: 200m, memory: 1Gi}}}
  - {name: log, restartPolicy: Always, resources: {requests: {cpu: 100m, memory: 64Mi}}}
  - {name: migrate, resources: {requests: {cpu: "1", memory: 128Mi}}}
  containers:
  - name: app
    resources:
      requests: {cpu: 500m, memory: 256Mi}
      limits: {cpu: "2", nvidia.com/gpu: 1}
"#,
        expect![[r#"
            pending default/p owner=- priority=0 requests: cpu=1150m, memory=1Gi, nvidia.com/gpu=1, pods=1
            namespace default: kubernetes.io/metadata.name=default
        "#]],
    );
    // Two sidecars add up; a late init container stacks on both.
    check(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  initContainers:
  - {name: s1, restartPolicy: Always, resources: {requests: {cpu: 300m}}}
  - {name: s2, restartPolicy: Always, resources: {requests: {cpu: 300m}}}
  - {name: late, resources: {requests: {cpu: 1500m}}}
  containers:
  - {name: app, resources: {requests: {cpu: 100m}}}
"#,
        expect![[r#"
            pending default/p owner=- priority=0 requests: cpu=2100m, pods=1
            namespace default: kubernetes.io/metadata.name=default
        "#]],
    );
}

#[test]
fn a_limit_without_a_request_is_the_request_in_every_container() {
    // A DaemonSet's regular container, init container and sidecar each set only a limit:
    // Kubernetes defaults every such request to its limit, and the daemon's overhead on a
    // node is those requests (max(200Gi + 64Mi, 1Gi + 64Mi) of memory, 100m + 10m cpu).
    check(
        r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: cache, namespace: kube-system}
spec:
  selector: {matchLabels: {app: cache}}
  template:
    metadata: {labels: {app: cache}}
    spec:
      initContainers:
      - {name: seed, resources: {limits: {memory: 1Gi}}}
      - {name: proxy, restartPolicy: Always, resources: {limits: {cpu: 10m, memory: 64Mi}}}
      containers:
      - {name: warmer, resources: {limits: {cpu: 100m, memory: 200Gi}}}
"#,
        expect![[r#"
            daemonset kube-system/cache owner=DaemonSet/cache priority=0 requests: cpu=110m, memory=204864Mi, pods=1
              labels: app=cache
              tolerates: "node.kubernetes.io/not-ready" Exists "" NoExecute
              tolerates: "node.kubernetes.io/unreachable" Exists "" NoExecute
              tolerates: "node.kubernetes.io/disk-pressure" Exists "" NoSchedule
              tolerates: "node.kubernetes.io/memory-pressure" Exists "" NoSchedule
              tolerates: "node.kubernetes.io/pid-pressure" Exists "" NoSchedule
              tolerates: "node.kubernetes.io/unschedulable" Exists "" NoSchedule
            namespace kube-system: kubernetes.io/metadata.name=kube-system
        "#]],
    );
}

#[test]
fn node_selector_merges_into_every_affinity_term() {
    check(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  nodeSelector: {kubernetes.io/arch: arm64}
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
        - matchExpressions:
          - {key: karpenter.k8s.aws/instance-cpu, operator: Gt, values: ["4"]}
          - {key: kubernetes.io/arch, operator: In, values: [arm64, amd64]}
        - matchExpressions:
          - {key: karpenter.sh/capacity-type, operator: NotIn, values: [spot]}
          matchFields:
          - {key: metadata.name, operator: In, values: [node-a]}
      preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 20
        preference:
          matchExpressions: [{key: topology.kubernetes.io/zone, operator: In, values: [us-east-1a]}]
      - weight: 5
        preference: {}
  containers: [{name: app}]
"#,
        expect![[r#"
            pending default/p owner=- priority=0 requests: pods=1
              required: karpenter.k8s.aws/instance-cpu Exists >4, kubernetes.io/arch In [arm64]
              required: karpenter.sh/capacity-type NotIn [spot], kubernetes.io/arch In [arm64], kubernetes.io/hostname In [node-a]
              preferred(20): topology.kubernetes.io/zone In [us-east-1a]
            namespace default: kubernetes.io/metadata.name=default
        "#]],
    );
    // Without affinity, the node selector is the only term.
    check(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  nodeSelector: {kubernetes.io/arch: arm64, karpenter.sh/nodepool: gpu}
  containers: [{name: app}]
"#,
        expect![[r#"
            pending default/p owner=- priority=0 requests: pods=1
              required: karpenter.sh/nodepool In [gpu], kubernetes.io/arch In [arm64]
            namespace default: kubernetes.io/metadata.name=default
        "#]],
    );
}

#[test]
fn tolerations_and_host_ports() {
    check(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  tolerations:
  - {key: gpu, value: "true", effect: NoSchedule}
  - {key: dedicated, operator: Exists}
  initContainers:
  - name: proxy
    restartPolicy: Always
    ports: [{containerPort: 15001, hostPort: 15001, protocol: UDP, hostIP: 10.0.0.1}]
  - name: init
    ports: [{containerPort: 99, hostPort: 99}]
  containers:
  - name: app
    ports: [{containerPort: 8080, hostPort: 80}, {containerPort: 9090}]
"#,
        expect![[r#"
            pending default/p owner=- priority=0 requests: pods=1
              tolerates: "gpu" Equal "true" NoSchedule
              tolerates: "dedicated" Exists "" *
              host port: 80/TCP ""
              host port: 15001/UDP "10.0.0.1"
            namespace default: kubernetes.io/metadata.name=default
        "#]],
    );
}

#[test]
fn topology_spread_folds_match_label_keys() {
    let pod = load_one(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: p
  labels: {app: web, pod-template-hash: abc}
spec:
  containers: [{name: app}]
  topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: DoNotSchedule
    minDomains: 3
    labelSelector: {matchLabels: {app: web}}
    matchLabelKeys: [pod-template-hash, not-on-the-pod]
  - maxSkew: 2
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    nodeAffinityPolicy: Ignore
    nodeTaintsPolicy: Honor
"#,
    );
    let [zone, host] = &pod.topology_spread[..] else {
        panic!("{:?}", pod.topology_spread)
    };
    assert_eq!(
        (zone.max_skew, zone.topology_key.as_str(), zone.min_domains),
        (1, "topology.kubernetes.io/zone", Some(3))
    );
    assert_eq!(zone.when_unsatisfiable, WhenUnsatisfiable::DoNotSchedule);
    assert_eq!(
        (zone.node_affinity_policy, zone.node_taints_policy),
        (InclusionPolicy::Honor, InclusionPolicy::Ignore)
    );
    // The pod's own pod-template-hash narrows the selector; a key the pod lacks is ignored.
    assert!(
        zone.selector
            .matches(&labels_of(&[("app", "web"), ("pod-template-hash", "abc")]))
    );
    assert!(
        !zone
            .selector
            .matches(&labels_of(&[("app", "web"), ("pod-template-hash", "old")]))
    );
    assert!(!zone.selector.matches(&labels_of(&[("app", "web")])));
    assert_eq!(host.when_unsatisfiable, WhenUnsatisfiable::ScheduleAnyway);
    assert_eq!(
        (host.node_affinity_policy, host.node_taints_policy),
        (InclusionPolicy::Ignore, InclusionPolicy::Honor)
    );
    // No labelSelector: the constraint counts no pods.
    assert!(!host.selector.matches(&labels_of(&[("app", "web")])));
    assert!(!host.selector.matches(&Labels::new()));
}

#[test]
fn pod_affinity_scopes_and_label_keys() {
    let pod = load_one(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: p
  namespace: shop
  labels: {app: web, tenant: blue}
spec:
  containers: [{name: app}]
  affinity:
    podAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
      - topologyKey: topology.kubernetes.io/zone
        labelSelector:
          matchExpressions: [{key: app, operator: In, values: [cache]}]
        matchLabelKeys: [tenant]
      preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 50
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector: {matchLabels: {app: db}}
          namespaceSelector: {}
    podAntiAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
      - topologyKey: kubernetes.io/hostname
        labelSelector: {matchLabels: {app: web}}
        mismatchLabelKeys: [tenant]
        namespaces: [other]
        namespaceSelector: {matchLabels: {team: x}}
"#,
    );
    let [affinity] = &pod.affinity[..] else {
        panic!()
    };
    assert!(affinity.namespaces.contains("shop", None));
    assert!(!affinity.namespaces.contains("other", None));
    assert!(
        affinity
            .selector
            .matches(&labels_of(&[("app", "cache"), ("tenant", "blue")]))
    );
    assert!(
        !affinity
            .selector
            .matches(&labels_of(&[("app", "cache"), ("tenant", "red")]))
    );

    let [preferred] = &pod.preferred_affinity[..] else {
        panic!()
    };
    assert_eq!(preferred.weight, 50);
    assert!(preferred.term.namespaces.contains("anything", None));

    let [anti] = &pod.anti_affinity[..] else {
        panic!()
    };
    assert_eq!(anti.topology_key, "kubernetes.io/hostname");
    // Another tenant's web pods repel this one; its own tenant's do not.
    assert!(
        anti.selector
            .matches(&labels_of(&[("app", "web"), ("tenant", "red")]))
    );
    assert!(
        !anti
            .selector
            .matches(&labels_of(&[("app", "web"), ("tenant", "blue")]))
    );
    assert!(anti.namespaces.contains("other", None));
    assert!(!anti.namespaces.contains("shop", None));
    assert!(
        anti.namespaces
            .contains("shop", Some(&labels_of(&[("team", "x")])))
    );
}

#[test]
fn zonal_volumes_pin_the_pods_that_mount_them() {
    let m = load_paths(&[fixture("volumes.yaml")]).unwrap();
    // db-2 has no bound volume yet: its claim will be provisioned wherever it lands.
    expect![[r#"
        pending default/cache-user owner=- priority=0 requests: pods=1
          required: karpenter.sh/capacity-type In [spot], kubernetes.io/arch In [arm64]
          required: karpenter.sh/capacity-type In [on-demand], kubernetes.io/arch In [arm64]
          volume cache: zone In [us-east-1b]
        pending default/db-0 owner=StatefulSet/db priority=0 requests: cpu=1, memory=2Gi, pods=1
          labels: app=db
          volume data-db-0: zone In [us-east-1a]
        pending default/db-1 owner=StatefulSet/db priority=0 requests: cpu=1, memory=2Gi, pods=1
          labels: app=db
          volume data-db-1: zone In [us-east-1c]
        pending default/db-2 owner=StatefulSet/db priority=0 requests: cpu=1, memory=2Gi, pods=1
          labels: app=db
        namespace default: kubernetes.io/metadata.name=default
    "#]]
    .assert_eq(&render(&m));
}

#[test]
fn volumes_declared_after_their_pods_still_pin() {
    check(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: ns}
spec:
  containers: [{name: app}]
  volumes: [{name: scratch, ephemeral: {volumeClaimTemplate: {spec: {accessModes: [ReadWriteOnce]}}}}]
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv}
spec:
  claimRef: {namespace: ns, name: p-scratch}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions: [{key: topology.kubernetes.io/zone, operator: In, values: [a]}]
      - matchExpressions: [{key: topology.kubernetes.io/zone, operator: In, values: [b]}]
"#,
        expect![[r#"
            pending ns/p owner=- priority=0 requests: pods=1
              volume p-scratch: zone In [a,b]
            namespace ns: kubernetes.io/metadata.name=ns
        "#]],
    );
}

#[test]
fn a_volume_in_a_zone_the_pod_excludes_is_named() {
    check(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: ns}
spec:
  nodeSelector: {topology.kubernetes.io/zone: a}
  containers: [{name: app}]
  volumes: [{name: v, persistentVolumeClaim: {claimName: data}}]
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv}
spec:
  claimRef: {namespace: ns, name: data}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions: [{key: topology.kubernetes.io/zone, operator: In, values: [b]}]
"#,
        expect![[r#"
            pending ns/p owner=- priority=0 requests: pods=1
              required: topology.kubernetes.io/zone In [a]
              volume data: zone In [b]
            namespace ns: kubernetes.io/metadata.name=ns
            warning: test.yaml: Pod ns/p: no zone satisfies both its node selector or affinity and its bound volumes' zones (claims "data" (b)): its pods cannot be scheduled
        "#]],
    );
}

#[test]
fn priority_classes_resolve() {
    check(
        r#"
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: high}
value: 1000
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: normal}
value: 10
globalDefault: true
---
apiVersion: v1
kind: Pod
metadata: {name: a}
spec: {priorityClassName: high, containers: [{name: app}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b}
spec: {containers: [{name: app}]}
---
apiVersion: v1
kind: Pod
metadata: {name: c}
spec: {priority: 0, containers: [{name: app}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
spec:
  replicas: 2
  selector: {matchLabels: {app: d}}
  template:
    metadata: {labels: {app: d}}
    spec: {priorityClassName: elsewhere, containers: [{name: app}]}
"#,
        expect![[r#"
            pending default/a owner=- priority=1000 requests: pods=1
            pending default/b owner=- priority=10 requests: pods=1
            pending default/c owner=- priority=0 requests: pods=1
            pending default/d-0 owner=Deployment/d priority=0 requests: pods=1
              labels: app=d
            pending default/d-1 owner=Deployment/d priority=0 requests: pods=1
              labels: app=d
            namespace default: kubernetes.io/metadata.name=default
            warning: test.yaml: Deployment default/d: spec.template.spec.priorityClassName "elsewhere" is not among the PriorityClasses read; using priority 0
        "#]],
    );
}

#[test]
fn invalid_objects_are_all_reported_together() {
    check(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: bad-quantity}
spec:
  containers:
  - name: app
    resources: {requests: {cpu: lots, memory: -1Gi}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: negative, namespace: shop}
spec:
  replicas: -2
  selector: {matchLabels: {app: x}}
  template:
    metadata: {labels: {app: x}}
    spec:
      containers: [{name: app}]
      affinity:
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms:
            - matchExpressions: [{key: zone, operator: Near, values: [a]}]
---
apiVersion: v1
kind: Pod
metadata: {namespace: shop}
spec: {containers: [{name: app}]}
---
apiVersion: v1
kind: Pod
metadata: {name: typed}
spec:
  containers: [{name: app}]
  priority: high
---
kind: Pod
metadata: {name: no-version}
---
apiVersion: apps/v1beta2
kind: Deployment
metadata: {name: old}
---
apiVersion: v1
kind: Pod
metadata: {name: bad-constraints}
spec:
  containers: [{name: app}]
  tolerations: [{value: x}]
  topologySpreadConstraints:
  - {maxSkew: 0, topologyKey: zone, whenUnsatisfiable: Maybe}
  affinity:
    podAntiAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 500
        podAffinityTerm: {topologyKey: "", labelSelector: {matchExpressions: [{key: app, operator: Gt, values: ["1"]}]}}
---
apiVersion: v1
kind: Pod
metadata: {name: bad-quantity}
spec: {containers: [{name: app}]}
"#,
        expect![[r#"
            error: 15 invalid fields:
              test.yaml: Pod default/bad-quantity: spec.containers[0].resources.requests.cpu: "lots" is not a Kubernetes quantity (no number); expected e.g. "500m", "2", "1.5Gi", "512Mi", "1e3"
              test.yaml: Pod default/bad-quantity: spec.containers[0].resources.requests.memory: "-1Gi" is negative; resource quantities must be zero or more
              test.yaml: Deployment shop/negative: spec.replicas: -2 is negative; expected 0 or more
              test.yaml: Deployment shop/negative: spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator: "Near" is not a node selector operator; expected one of In, NotIn, Exists, DoesNotExist, Gt, Lt
              test.yaml: Pod (document 3 at line 26): metadata.name: missing; every object needs a name (or metadata.generateName)
              test.yaml: Pod default/typed: spec.priority: invalid type: string "high", expected an integer
              test.yaml: document 5 at line 38: apiVersion: missing; every Kubernetes object needs a string apiVersion and kind, e.g. apiVersion: v1, kind: Pod
              test.yaml: Deployment default/old: apiVersion: apiVersion apps/v1beta2 is not supported for Deployment; kerf reads apps/v1
              test.yaml: Pod default/bad-constraints: spec.tolerations[0].operator: an empty key needs operator Exists (which tolerates every taint)
              test.yaml: Pod default/bad-constraints: spec.topologySpreadConstraints[0].maxSkew: 0 is not valid; maxSkew must be at least 1
              test.yaml: Pod default/bad-constraints: spec.topologySpreadConstraints[0].whenUnsatisfiable: "Maybe" is not valid; expected DoNotSchedule or ScheduleAnyway
              test.yaml: Pod default/bad-constraints: spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight: 500 is out of range; a preference weight is 1 to 100
              test.yaml: Pod default/bad-constraints: spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm.labelSelector.matchExpressions[0].operator: "Gt" is not a label selector operator; expected one of In, NotIn, Exists, DoesNotExist
              test.yaml: Pod default/bad-constraints: spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm.topologyKey: must not be empty; e.g. kubernetes.io/hostname or topology.kubernetes.io/zone
              test.yaml: Pod default/bad-quantity: metadata.name: defined twice: first in test.yaml document 1 at line 2, again in test.yaml document 8 at line 59
        "#]],
    );
}

#[test]
fn errors_from_several_sources_are_reported_together() {
    // Removed when `tmp` drops, a failing assertion included.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(
        dir.join("b.yaml"),
        "apiVersion: v1\nkind: Node\nmetadata: {name: node-1}\nspec: {taints: [{key: k, effect: Sometimes}]}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("sub/a.json"),
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "2"}}}]}}"#,
    )
    .unwrap();
    std::fs::write(dir.join("ignored.txt"), "not yaml: [").unwrap();
    let result = load_paths(std::slice::from_ref(&dir));
    let Err(Error::Invalid(sources)) = result else {
        panic!("{result:?}")
    };
    let rendered: Vec<String> = sources
        .iter()
        .flat_map(|s| {
            let name = Path::new(&s.source)
                .strip_prefix(&dir)
                .unwrap()
                .display()
                .to_string();
            s.errors.iter().map(move |e| format!("{name}: {e}"))
        })
        .collect();
    expect![[r#"
        [
            "b.yaml: Node node-1: spec.taints[0].effect: \"Sometimes\" is not valid; expected NoSchedule, PreferNoSchedule or NoExecute",
            "sub/a.json: Pod default/p: spec.containers[0].resources.requests.cpu: request 2 is more than the limit 1; a request must not exceed its limit",
        ]
    "#]]
    .assert_debug_eq(&rendered);
}

#[test]
fn yaml_syntax_errors_name_the_location() {
    check(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p\nspec: {}\n",
        expect![[r#"
            error: 1 syntax error:
              test.yaml: not valid YAML: while parsing a flow mapping, did not find expected ',' or '}' at line 4, column 5
        "#]],
    );
    // Parser wording is kerf's: no library options, and JSON errors for JSON.
    check(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: d}\nspec:\n  containers:\n  - name: c\n    resources:\n      requests:\n        cpu: \"1\"\n        cpu: \"8\"\n",
        expect![[r#"
            error: 1 syntax error:
              test.yaml: not valid YAML: key "cpu" appears twice in one mapping at line 10, column 9; a key may appear once (kubectl rejects it too)
        "#]],
    );
    let Err(e) = load_str(
        "pod.json",
        "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\n\"metadata\":{\"name\":\"j\"},,}",
    ) else {
        panic!("invalid JSON loaded")
    };
    expect![[r#"
        1 syntax error:
          pod.json: not valid JSON: key must be a string at line 2, column 25"#]]
    .assert_eq(&e.to_string());
}

#[test]
fn a_syntax_error_hides_no_other_document_or_source() {
    // Removed when `tmp` drops, a failing assertion included.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    std::fs::write(
        dir.join("a.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a\nspec: {containers: [{name: c}]}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("b.yaml"),
        r#"apiVersion: v1
kind: Pod
metadata: {name: b}
spec: {containers: [{name: c, resources: {requests: {cpu: lots}}}]}
---
apiVersion: v1
kind: Pod
metadata: {name: c]
---
# A comment-only document is no document.
---
apiVersion: v1
kind: Pod
metadata: {name: d}
spec: {containers: [{name: c, resources: {requests: {cpu: -1}}}]}
"#,
    )
    .unwrap();
    let result = load_paths(std::slice::from_ref(&dir));
    let e = result.unwrap_err().to_string();
    expect![[r#"
        2 syntax errors and 2 invalid fields:
          DIR/a.yaml: not valid YAML: while parsing a flow mapping, did not find expected ',' or '}' at line 4, column 5
          DIR/b.yaml: not valid YAML: mismatched bracket '{' closed by ']' at line 8, column 11
          DIR/b.yaml: Pod default/b: spec.containers[0].resources.requests.cpu: "lots" is not a Kubernetes quantity (no number); expected e.g. "500m", "2", "1.5Gi", "512Mi", "1e3"
          DIR/b.yaml: Pod default/d: spec.containers[0].resources.requests.cpu: "-1" is negative; resource quantities must be zero or more"#]]
    .assert_eq(&e.replace(&dir.display().to_string(), "DIR"));
}

#[test]
fn inputs_without_objects_are_an_error() {
    // Removed when `tmp` drops, a failing assertion included.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    std::fs::write(dir.join("comments.yaml"), "# nothing yet\n---\n").unwrap();
    let result = load_paths(std::slice::from_ref(&dir));
    expect!["no objects passed: DIR holds no Kubernetes objects (a directory is read for .yaml, .yml and .json files)"]
        .assert_eq(&result.unwrap_err().to_string().replace(&dir.display().to_string(), "DIR"));
    check(
        "apiVersion: v1\nkind: List\nitems: []\n",
        expect![[r#"
            error: no objects passed: test.yaml holds no Kubernetes objects (a directory is read for .yaml, .yml and .json files)
        "#]],
    );
}

#[cfg(unix)]
#[test]
fn symlinked_directories_are_not_followed() {
    // Removed when `tmp` drops, a failing assertion included.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    std::fs::write(
        dir.join("pod.yml"),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: nested}\nspec: {containers: [{name: c}]}\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(&dir, dir.join("self")).unwrap();
    let result = load_paths(std::slice::from_ref(&dir));
    let m = result.unwrap_or_else(|e| panic!("{e}"));
    expect![[r#"
        pending default/nested owner=- priority=0 requests: pods=1
        namespace default: kubernetes.io/metadata.name=default
        warning: DIR/self: skipped: a symlink to a directory; directories are walked without following symlinks, as kubectl does (name the target to read it)
    "#]]
    .assert_eq(&render(&m).replace(&dir.display().to_string(), "DIR"));
}

#[test]
fn a_kind_of_the_same_name_in_another_group_is_skipped_with_the_group_kerf_reads() {
    check(
        "apiVersion: example.com/v1\nkind: NodePool\nmetadata: {name: foreign}\n",
        expect![[r#"
            warning: test.yaml: skipped NodePool foreign: kerf reads NodePool only as karpenter.sh/v1, not example.com/v1 (another API group's kind of the same name)
        "#]],
    );
}

#[test]
fn workload_replicas_take_names_no_pod_has() {
    // The Pod web-1 is not the Deployment's (no ownerReference): both run, and the
    // Deployment's replicas are named around it. Existing pods are never an error.
    check(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: app}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1}
spec: {containers: [{name: app}]}
"#,
        expect![[r#"
            pending default/web-0 owner=Deployment/web priority=0 requests: pods=1
              labels: app=web
            pending default/web-1 owner=- priority=0 requests: pods=1
            pending default/web-2 owner=Deployment/web priority=0 requests: pods=1
              labels: app=web
            namespace default: kubernetes.io/metadata.name=default
        "#]],
    );
}

#[test]
fn a_cluster_dump_adds_only_the_pods_workloads_lack() {
    let pod = |name: &str, owner_kind: &str, owner: &str, extra: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: shop\n  labels: {{app: x{extra}}}\n  ownerReferences: [{{apiVersion: apps/v1, kind: {owner_kind}, name: {owner}, uid: u, controller: true}}]\nspec:\n  nodeName: node-a\n  containers: [{{name: c}}]\nstatus: {{phase: Running}}\n"
        )
    };
    let workload = |kind: &str, name: &str, replicas: u32, extra: &str| {
        let service = if kind == "StatefulSet" {
            "  serviceName: x\n"
        } else {
            ""
        };
        format!(
            "apiVersion: apps/v1\nkind: {kind}\nmetadata:\n  name: {name}\n  namespace: shop\n{extra}spec:\n  replicas: {replicas}\n{service}  selector: {{matchLabels: {{app: x}}}}\n  template:\n    metadata: {{labels: {{app: x}}}}\n    spec: {{containers: [{{name: c}}]}}\n"
        )
    };
    let docs = [
        // A Deployment of 3, its ReplicaSet (in the input) with one pod, and a pod of an
        // older ReplicaSet that is not in the input: one pod is missing.
        workload("Deployment", "web", 3, ""),
        workload(
            "ReplicaSet",
            "web-7d4b9c",
            2,
            "  ownerReferences: [{apiVersion: apps/v1, kind: Deployment, name: web, uid: d, controller: true}]\n",
        ),
        pod("web-7d4b9c-abcde", "ReplicaSet", "web-7d4b9c", ""),
        pod(
            "web-5f6a7b-vwxyz",
            "ReplicaSet",
            "web-5f6a7b",
            ", pod-template-hash: 5f6a7b",
        ),
        // A ReplicaSet of its own (its Deployment is not in the input) of 2, with 2 pods.
        workload(
            "ReplicaSet",
            "api-1a2b3c",
            2,
            "  ownerReferences: [{apiVersion: apps/v1, kind: Deployment, name: api, uid: a, controller: true}]\n",
        ),
        pod("api-1a2b3c-aaaaa", "ReplicaSet", "api-1a2b3c", ""),
        pod("api-1a2b3c-bbbbb", "ReplicaSet", "api-1a2b3c", ""),
        // A StatefulSet of 3 with db-0 and db-2 running: db-1 is missing.
        workload("StatefulSet", "db", 3, ""),
        pod("db-0", "StatefulSet", "db", ""),
        pod("db-2", "StatefulSet", "db", ""),
    ];
    check(
        &docs.join("---\n"),
        expect![[r#"
            pending shop/db-1 owner=StatefulSet/db priority=0 requests: pods=1
              labels: app=x
            pending shop/web-0 owner=Deployment/web priority=0 requests: pods=1
              labels: app=x
            bound shop/api-1a2b3c-aaaaa owner=ReplicaSet/api-1a2b3c priority=0 requests: pods=1
              node: node-a
              labels: app=x
            bound shop/api-1a2b3c-bbbbb owner=ReplicaSet/api-1a2b3c priority=0 requests: pods=1
              node: node-a
              labels: app=x
            bound shop/db-0 owner=StatefulSet/db priority=0 requests: pods=1
              node: node-a
              labels: app=x
            bound shop/db-2 owner=StatefulSet/db priority=0 requests: pods=1
              node: node-a
              labels: app=x
            bound shop/web-5f6a7b-vwxyz owner=ReplicaSet/web-5f6a7b priority=0 requests: pods=1
              node: node-a
              labels: app=x,pod-template-hash=5f6a7b
            bound shop/web-7d4b9c-abcde owner=ReplicaSet/web-7d4b9c priority=0 requests: pods=1
              node: node-a
              labels: app=x
            namespace shop: kubernetes.io/metadata.name=shop
        "#]],
    );
}

#[test]
fn stateful_sets_count_from_their_first_ordinal() {
    check(
        r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  replicas: 3
  ordinals: {start: 5}
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: c}]}
  volumeClaimTemplates: [{metadata: {name: data}}]
---
apiVersion: v1
kind: Pod
metadata: {name: db-5}
spec: {containers: [{name: c}]}
"#,
        expect![[r#"
            pending default/db-5 owner=- priority=0 requests: pods=1
            pending default/db-6 owner=StatefulSet/db priority=0 requests: pods=1
              labels: app=db
            pending default/db-7 owner=StatefulSet/db priority=0 requests: pods=1
              labels: app=db
            namespace default: kubernetes.io/metadata.name=default
        "#]],
    );
}

#[test]
fn jobs_run_what_their_status_leaves_to_do() {
    check(
        r#"
apiVersion: batch/v1
kind: Job
metadata: {name: finished}
spec:
  parallelism: 3
  completions: 3
  template: {spec: {restartPolicy: Never, containers: [{name: c}]}}
status: {succeeded: 3, conditions: [{type: Complete, status: "True"}]}
---
apiVersion: batch/v1
kind: Job
metadata: {name: failed}
spec:
  parallelism: 2
  template: {spec: {restartPolicy: Never, containers: [{name: c}]}}
status: {failed: 6, conditions: [{type: Failed, status: "True"}]}
---
# 10 completions, 8 done, parallelism 4: 2 to go, one of them already running.
apiVersion: batch/v1
kind: Job
metadata: {name: halfway}
spec:
  parallelism: 4
  completions: 10
  template: {spec: {restartPolicy: Never, containers: [{name: c}]}}
status: {succeeded: 8, active: 1}
---
apiVersion: v1
kind: Pod
metadata:
  name: halfway-abcde
  ownerReferences: [{apiVersion: batch/v1, kind: Job, name: halfway, uid: j, controller: true}]
spec: {containers: [{name: c}]}
---
# Without completions, the first success ends the Job.
apiVersion: batch/v1
kind: Job
metadata: {name: queue}
spec:
  parallelism: 3
  template: {spec: {restartPolicy: Never, containers: [{name: c}]}}
status: {succeeded: 1}
"#,
        expect![[r#"
            pending default/halfway-0 owner=Job/halfway priority=0 requests: pods=1
            pending default/halfway-abcde owner=Job/halfway priority=0 requests: pods=1
            namespace default: kubernetes.io/metadata.name=default
        "#]],
    );
}

#[test]
fn pods_karpenter_never_provisions_for_are_skipped_with_a_reason() {
    check(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: gated}
spec:
  schedulingGates: [{name: example.com/wait}]
  containers: [{name: c}]
---
apiVersion: v1
kind: Pod
metadata:
  name: ds-pod-xyz
  namespace: kube-system
  ownerReferences: [{apiVersion: apps/v1, kind: DaemonSet, name: ds, uid: u, controller: true}]
spec: {containers: [{name: c}]}
---
apiVersion: v1
kind: Pod
metadata:
  name: kube-proxy-node-a
  namespace: kube-system
  ownerReferences: [{apiVersion: v1, kind: Node, name: node-a, uid: u, controller: true}]
spec: {containers: [{name: c}]}
---
apiVersion: v1
kind: Pod
metadata:
  name: ds-pod-bound
  namespace: kube-system
  ownerReferences: [{apiVersion: apps/v1, kind: DaemonSet, name: ds, uid: u, controller: true}]
spec: {nodeName: node-a, containers: [{name: c}]}
"#,
        expect![[r#"
            bound kube-system/ds-pod-bound owner=DaemonSet/ds priority=0 requests: pods=1
              node: node-a
            namespace kube-system: kubernetes.io/metadata.name=kube-system
            warning: test.yaml: skipped Pod default/gated: it has schedulingGates (example.com/wait); the scheduler and Karpenter leave it alone until they are removed
            warning: test.yaml: skipped Pod kube-system/ds-pod-xyz: a pod of DaemonSet ds, which the DaemonSet controller places on the node it is for; Karpenter counts DaemonSets as overhead of new nodes, not as pods to launch nodes for
            warning: test.yaml: skipped Pod kube-system/kube-proxy-node-a: a mirror pod of node node-a (a static pod the kubelet runs); no node is launched for it
        "#]],
    );
}

#[test]
fn selectors_must_select_their_template() {
    check(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: app}]}
"#,
        expect![[r#"
            error: 1 invalid field:
              test.yaml: Deployment default/web: spec.selector: does not match spec.template.metadata.labels; the template's pods must carry the labels the selector selects
        "#]],
    );
}

#[test]
fn a_thousand_replicas_expand() {
    let m = load_str(
        "big.yaml",
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: big}
spec:
  replicas: 1000
  selector: {matchLabels: {app: big}}
  template:
    metadata: {labels: {app: big}}
    spec: {containers: [{name: app, resources: {requests: {cpu: 10m}}}]}
"#,
    )
    .unwrap();
    assert_eq!(m.pending_pods.len(), 1000);
    // Sorted by name, as strings.
    assert_eq!(m.pending_pods[0].key.name, "big-0");
    assert_eq!(m.pending_pods[1].key.name, "big-1");
    assert_eq!(m.pending_pods[2].key.name, "big-10");
}

#[test]
fn karpenter_kinds_are_converted_by_the_crd_module() {
    let m = load_paths(&[fixture("karpenter.yaml")]).unwrap();
    let pools: Vec<(&str, i32)> = m
        .nodepools
        .iter()
        .map(|p| (p.name.as_str(), p.weight))
        .collect();
    assert_eq!(pools, [("alpha", 0), ("zeta", 10)]);
    assert_eq!(m.node_classes, ["default"]);
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);

    let Err(e) = load_str(
        "pools.yaml",
        "apiVersion: karpenter.sh/v1beta1\nkind: NodePool\nmetadata: {name: old}\n---\napiVersion: karpenter.sh/v1\nkind: NodePool\nmetadata: {name: bad}\nspec:\n  template:\n    spec:\n      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}\n      requirements: [{key: karpenter.sh/capacity-type, operator: Near, values: [spot]}]\n",
    ) else {
        panic!("an invalid NodePool loaded")
    };
    let rendered = e.to_string();
    assert!(rendered.contains("pools.yaml: NodePool old: apiVersion: apiVersion karpenter.sh/v1beta1 is not supported for NodePool; kerf reads karpenter.sh/v1"), "{rendered}");
    assert!(
        rendered.contains("pools.yaml: NodePool bad: spec.template.spec.requirements"),
        "{rendered}"
    );
}

#[test]
fn the_examples_load() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let m = load_paths(&[examples.join("cluster.yaml")]).unwrap_or_else(|e| panic!("{e}"));
    assert!(!m.nodepools.is_empty() && !m.pending_pods.is_empty());
    let m = load_paths(&[examples.join("large-1000-pods.yaml")]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.pending_pods.len(), 1000);
}

#[test]
fn json_lists_and_flow_yaml_both_read() {
    // `kubectl get -o json` output: a List, read by the JSON parser.
    check(
        r#"{"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}},
            {"apiVersion": "v1", "metadata": {"name": "b"}}
        ]}"#,
        expect![[r#"
            error: 1 invalid field:
              test.yaml: document 1 items[1]: kind: missing; every Kubernetes object needs a string apiVersion and kind, e.g. apiVersion: v1, kind: Pod
        "#]],
    );
    // Flow-style YAML that is not JSON falls through to the YAML parser.
    check(
        "{apiVersion: v1, kind: Namespace, metadata: {name: a, labels: {team: x}}}\n",
        expect![[r#"
            namespace a: kubernetes.io/metadata.name=a,team=x
        "#]],
    );
}

#[test]
fn disruption_objects_load() {
    let m = load_str(
        "test.yaml",
        r#"
apiVersion: karpenter.sh/v1
kind: NodeClaim
metadata:
  name: default-abc
  creationTimestamp: "2026-11-20T00:00:00Z"
  labels: {karpenter.sh/nodepool: default}
  annotations: {karpenter.sh/nodepool-hash: "123", karpenter.sh/nodepool-hash-version: kerf-v1}
spec:
  nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
  requirements: []
  expireAfter: 24h
  terminationGracePeriod: 1h
status:
  nodeName: node-a
  imageID: ami-1
  lastPodEventTime: "2026-11-24T11:00:00Z"
  conditions: [{type: Initialized, status: "True", lastTransitionTime: "2026-11-20T00:01:00Z", reason: Initialized, message: ""}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web, namespace: shop}
spec: {maxUnavailable: "25%", selector: {matchLabels: {app: web}}}
---
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata: {name: default}
spec:
  role: KarpenterNodeRole
  amiSelectorTerms: [{alias: al2023@latest}]
  subnetSelectorTerms: [{tags: {karpenter.sh/discovery: demo}}]
  securityGroupSelectorTerms: [{tags: {karpenter.sh/discovery: demo}}]
status:
  amis: [{id: ami-2, requirements: []}, {id: ami-1, requirements: []}]
---
apiVersion: v1
kind: Node
metadata: {name: node-a, deletionTimestamp: "2026-11-24T11:00:00Z", finalizers: [karpenter.sh/termination]}
"#,
    )
    .unwrap();
    let claim = &m.nodeclaims[0];
    assert_eq!(claim.nodepool(), Some("default"));
    assert_eq!(claim.node_name.as_deref(), Some("node-a"));
    assert_eq!(claim.image_id.as_deref(), Some("ami-1"));
    assert!(claim.initialized && !claim.deleting);
    assert_eq!(
        claim.expire_after,
        Some(std::time::Duration::from_secs(24 * 3600))
    );
    assert_eq!(
        claim.termination_grace_period,
        Some(std::time::Duration::from_secs(3600))
    );
    assert_eq!(claim.last_pod_event, Some(1_795_518_000));
    let pdb = &m.pdbs[0];
    assert_eq!((pdb.namespace.as_str(), pdb.name.as_str()), ("shop", "web"));
    assert_eq!(
        pdb.max_unavailable,
        Some(kerf_model::IntOrPercent::Percent(25))
    );
    // 25% of 5 rounds up to 2, as the disruption controller does.
    assert_eq!(pdb.allowed(5), 2);
    assert_eq!(m.node_class_images["default"], ["ami-1", "ami-2"]);
    assert!(m.nodes[0].deleting);
}

#[test]
fn invalid_disruption_objects_name_the_field() {
    check(
        r#"
apiVersion: karpenter.sh/v1
kind: NodeClaim
metadata: {name: orphan}
spec:
  nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
  requirements: []
  expireAfter: soon
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: both, namespace: shop}
spec: {minAvailable: 1, maxUnavailable: "150%", selector: {matchExpressions: [{key: app, operator: Gt, values: ["1"]}]}}
"#,
        expect![[r#"
            error: 4 invalid fields:
              test.yaml: NodeClaim orphan: metadata.labels: has no karpenter.sh/nodepool label; a NodeClaim names the NodePool that launched it
              test.yaml: NodeClaim orphan: spec.expireAfter: "soon" is not a valid duration: no number before "soon"; expected whole numbers with units h, m, s such as "720h", "1h30m" or "30s", or "Never"
              test.yaml: PodDisruptionBudget shop/both: spec.selector.matchExpressions[0].operator: "Gt" is not a label selector operator; expected one of In, NotIn, Exists, DoesNotExist
              test.yaml: PodDisruptionBudget shop/both: spec.maxUnavailable: "150%" is not valid; use a whole number (2) or a percentage from 0% to 100% ("50%")
        "#]],
    );
}

#[test]
fn nodepool_hash_ignores_requirements_only() {
    let pool = |name: &str, arch: &str, team: &str| {
        format!(
            r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {{name: {name}}}
spec:
  template:
    metadata: {{labels: {{team: {team}}}}}
    spec:
      nodeClassRef: {{group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}}
      requirements: [{{key: kubernetes.io/arch, operator: In, values: [{arch}]}}]
"#
        )
    };
    let m = load_str(
        "test.yaml",
        &[
            pool("a", "amd64", "blue"),
            pool("b", "arm64", "blue"),
            pool("c", "amd64", "green"),
        ]
        .join("---"),
    )
    .unwrap();
    let hash = |i: usize| m.nodepools[i].template_hash.clone();
    assert_eq!(hash(0).len(), 16);
    assert_eq!(hash(0), hash(1), "requirements are not part of the hash");
    assert_ne!(hash(0), hash(2), "template labels are");
    // The hash is stable across runs and releases: claims carry it.
    expect!["d90cd27bf0e62f30"].assert_eq(&hash(0));
}

#[test]
fn unknown_fields_are_errors_with_the_nearest_name() {
    check(
        r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: typo}
spec:
  limit: {cpu: "4"}
  wieght: 10
  template:
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
      requirements:
        - {key: karpenter.sh/capacity-type, operator: In, values: [on-demand], minValue: 3}
---
apiVersion: v1
kind: Pod
metadata: {name: typo, labelz: {app: x}}
spec:
  nodeselector: {disk: ssd}
  containers: [{name: c, image: x, resource: {requests: {cpu: "100"}}}]
  frobnicate: true
"#,
        expect![[r#"
            error: 7 invalid fields:
              test.yaml: NodePool typo: spec.limit: unknown field "spec.limit"; did you mean limits?
              test.yaml: NodePool typo: spec.template.spec.requirements[0].minValue: unknown field "spec.template.spec.requirements[0].minValue"; did you mean minValues?
              test.yaml: NodePool typo: spec.wieght: unknown field "spec.wieght"; did you mean weight?
              test.yaml: Pod default/typo: metadata.labelz: unknown field "metadata.labelz"; did you mean labels?
              test.yaml: Pod default/typo: spec.containers[0].resource: unknown field "spec.containers[0].resource"; did you mean resources?
              test.yaml: Pod default/typo: spec.frobnicate: unknown field "spec.frobnicate"; it is not in the schema kerf reads this kind with
              test.yaml: Pod default/typo: spec.nodeselector: unknown field "spec.nodeselector"; did you mean nodeSelector?
        "#]],
    );
}

#[test]
fn unknown_fields_of_objects_a_cluster_stored_are_warnings() {
    // A uid says the API server accepted the object: a field kerf does not know comes from
    // a newer Kubernetes (1.34's hostnameOverride here), not a typo.
    check(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: newer, namespace: default, uid: 1b2c, resourceVersion: "42"}
spec:
  hostnameOverride: db
  containers: [{name: c, image: x}]
"#,
        expect![[r#"
            pending default/newer owner=- priority=0 requests: pods=1
            namespace default: kubernetes.io/metadata.name=default
            warning: test.yaml: Pod default/newer: spec.hostnameOverride: unknown field "spec.hostnameOverride"; it is not in the schema kerf reads this kind with (ignored: the cluster accepted it)
        "#]],
    );
}

#[test]
fn kubectl_get_output_loads_with_its_status_and_managed_fields() {
    // Status belongs to the API server, and newer servers add to it: never checked.
    let mut text = std::fs::read_to_string(fixture("kubectl-get-pod.yaml")).unwrap();
    text.push_str("  resize: Proposed\n  someFutureField: {x: 1}\n");
    let m = load_str("pod.yaml", &text).unwrap_or_else(|e| panic!("{e}"));
    expect![[r#"
        pending default/web-7d4b9c-abcde owner=- priority=0 requests: cpu=250m, memory=64Mi, pods=1
          labels: app=web
          tolerates: "node.kubernetes.io/not-ready" Exists "" NoExecute
          tolerates: "node.kubernetes.io/unreachable" Exists "" NoExecute
        namespace default: kubernetes.io/metadata.name=default
    "#]]
    .assert_eq(&render(&m));
}

#[test]
fn skipped_kinds_are_one_warning_per_kind_with_a_count() {
    // Argo CD's HA install has dozens of objects kerf does not use: one line per kind,
    // not per object; a kind met once still names its object.
    check(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: a, namespace: argocd}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: b, namespace: argocd}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: reader}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: c, namespace: argocd}
"#,
        expect![[r#"
            warning: test.yaml: skipped 3 ConfigMap objects: kerf does not use this kind
            warning: test.yaml: skipped ClusterRole reader: kerf does not use this kind
        "#]],
    );
}

#[test]
fn an_unbound_claim_of_an_immediate_class_is_planned_in_its_zones_with_a_warning() {
    check(
        r#"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: fast}
provisioner: ebs.csi.aws.com
allowedTopologies:
  - matchLabelExpressions:
      - {key: topology.ebs.csi.aws.com/zone, values: [us-east-1a, us-east-1b]}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: default}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: fast
  resources: {requests: {storage: 10Gi}}
---
apiVersion: v1
kind: Pod
metadata: {name: app, namespace: default}
spec:
  containers: [{name: app, image: app:1}]
  volumes: [{name: data, persistentVolumeClaim: {claimName: data}}]
"#,
        expect![[r#"
            pending default/app owner=- priority=0 requests: pods=1
              volume data: zone In [us-east-1a,us-east-1b]
            namespace default: kubernetes.io/metadata.name=default
            warning: test.yaml: Pod default/app: claim "data" is not bound yet and StorageClass fast binds Immediately: Karpenter waits for its volume before provisioning; kerf plans within the class's zones (us-east-1a, us-east-1b), and the volume may land in another of them
        "#]],
    );
}

#[test]
fn the_newest_default_storage_class_serves_claims_naming_none() {
    // Two classes marked default: admission gives a claim without storageClassName the
    // newest; an ephemeral volume's claim template is read the same way.
    check(
        r#"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: old-default
  creationTimestamp: "2024-01-01T00:00:00Z"
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: ebs.csi.aws.com
volumeBindingMode: WaitForFirstConsumer
allowedTopologies: [{matchLabelExpressions: [{key: topology.kubernetes.io/zone, values: [us-east-1a]}]}]
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: new-default
  creationTimestamp: "2025-01-01T00:00:00Z"
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: ebs.csi.aws.com
volumeBindingMode: WaitForFirstConsumer
allowedTopologies: [{matchLabelExpressions: [{key: topology.kubernetes.io/zone, values: [us-east-1c]}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: app, namespace: default}
spec:
  containers: [{name: app, image: app:1}]
  volumes:
    - name: scratch
      ephemeral:
        volumeClaimTemplate:
          spec:
            accessModes: [ReadWriteOnce]
            resources: {requests: {storage: 1Gi}}
"#,
        expect![[r#"
            pending default/app owner=- priority=0 requests: pods=1
              volume app-scratch: zone In [us-east-1c]
            namespace default: kubernetes.io/metadata.name=default
        "#]],
    );
}

#[test]
fn a_runtime_class_not_read_is_a_warning() {
    check(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: app, namespace: default}
spec:
  runtimeClassName: gvisor
  containers: [{name: app, image: app:1, resources: {requests: {cpu: 100m}}}]
"#,
        expect![[r#"
            pending default/app owner=- priority=0 requests: cpu=100m, pods=1
            namespace default: kubernetes.io/metadata.name=default
            warning: test.yaml: Pod default/app: spec.runtimeClassName "gvisor" is not among the RuntimeClasses read; its overhead is not counted
        "#]],
    );
}

#[test]
fn bound_pods_carry_when_they_were_bound_and_started() {
    let m = load_str(
        "test.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: default, creationTimestamp: "2026-11-24T10:00:00Z"}
spec:
  nodeName: node-a
  containers: [{name: app, image: app:1}]
status:
  startTime: "2026-11-24T10:00:30Z"
  conditions: [{type: PodScheduled, status: "True", lastTransitionTime: "2026-11-24T10:00:10Z"}]
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: default, creationTimestamp: "2026-11-24T10:00:00Z"}
spec:
  nodeName: node-a
  containers: [{name: app, image: app:1}]
"#,
    )
    .unwrap();
    // 2026-11-24T10:00:00Z in Unix seconds.
    let ten = 1_795_514_400;
    let (a, b) = (&m.bound_pods[0], &m.bound_pods[1]);
    assert_eq!(a.bound_at, Some(ten + 10), "the PodScheduled condition");
    assert_eq!(a.started_at, Some(ten + 30));
    assert_eq!(b.bound_at, Some(ten), "no status: the creation time");
    assert_eq!(b.started_at, None);
}
