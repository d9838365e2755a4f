//! `kerf controller` end to end, on a real control plane: kube-apiserver with RBAC,
//! kube-scheduler binding the pods, kube-controller-manager running Deployments, and kwok
//! playing the kubelets of the nodes kerf's kwok provider writes. No part of the API is
//! mocked; a missing control-plane binary fails these tests.

mod env;

use std::collections::BTreeSet;
use std::time::Duration;

use env::{Env, Kerf, running};
use kerf_model::labels;
use kube::ResourceExt;

const NODEPOOL: &str = r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: default}
spec:
  template:
    spec:
      nodeClassRef: {group: karpenter.kwok.sh, kind: KWOKNodeClass, name: default}
      requirements:
      - {key: kubernetes.io/arch, operator: In, values: [amd64]}
      - {key: karpenter.sh/capacity-type, operator: In, values: [on-demand]}
      - {key: karpenter.kwok.sh/instance-cpu, operator: Lt, values: ["17"]}
      expireAfter: Never
  disruption:
    consolidationPolicy: WhenEmptyOrUnderutilized
    consolidateAfter: 5s
    budgets: [{nodes: "100%"}]
"#;

fn deployment(name: &str, replicas: i32, cpu: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: default}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - name: app
        image: registry.example/app:1
        resources: {{requests: {{cpu: "{cpu}", memory: 256Mi}}}}
"#
    )
}

fn condition(nc: &kerf_api::crd::NodeClaim, type_: &str) -> Option<(String, String)> {
    nc.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

fn all_running(env: &Env, app: &str, n: usize) -> bool {
    let pods: Vec<_> = env
        .pods("default")
        .into_iter()
        .filter(|p| p.labels().get("app").map(String::as_str) == Some(app))
        .collect();
    pods.len() == n && pods.iter().all(running)
}

#[test]
fn provisions_nodes_for_pending_pods_and_removes_them_when_empty() {
    let env = Env::start();
    env.apply_yaml(NODEPOOL);
    let mut kerf = Kerf::start(&env, "kerf-0", &[]);
    env.apply_yaml(&deployment("web", 10, "1"));
    env.wait(
        Duration::from_secs(120),
        "10 web pods bound and running",
        |env| all_running(env, "web", 10),
    );
    assert!(kerf.exited().is_none(), "kerf exited:\n{}", kerf.log_text());

    // Every pod is on a node kerf launched, and each such node is what Karpenter makes.
    let nodes = env.nodes();
    let managed: Vec<_> = nodes
        .iter()
        .filter(|n| n.labels().get(labels::NODEPOOL).map(String::as_str) == Some("default"))
        .collect();
    assert!(!managed.is_empty());
    let managed_names: BTreeSet<String> = managed.iter().map(|n| n.name_any()).collect();
    for pod in env.pods("default") {
        let node = pod.spec.unwrap().node_name.unwrap();
        assert!(
            managed_names.contains(&node),
            "pod on unmanaged node {node}"
        );
    }
    for node in &managed {
        let l = node.labels();
        assert_eq!(l.get(labels::REGISTERED).map(String::as_str), Some("true"));
        assert_eq!(l.get(labels::INITIALIZED).map(String::as_str), Some("true"));
        assert_eq!(
            l.get(labels::CAPACITY_TYPE).map(String::as_str),
            Some("on-demand")
        );
        assert!(l.contains_key(labels::INSTANCE_TYPE) && l.contains_key(labels::ZONE));
        assert!(
            node.finalizers()
                .iter()
                .any(|f| f == labels::FINALIZER_TERMINATION)
        );
        assert!(
            node.owner_references()
                .iter()
                .any(|o| o.kind == "NodeClaim")
        );
        let taints = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        assert!(
            !taints.iter().any(|t| t.key == labels::TAINT_UNREGISTERED),
            "unregistered taint left on {}",
            node.name_any()
        );
    }
    let claims = env.nodeclaims();
    assert_eq!(claims.len(), managed.len(), "one NodeClaim per node");
    for nc in &claims {
        assert!(nc.name_any().starts_with("default-"));
        assert!(
            nc.finalizers()
                .iter()
                .any(|f| f == labels::FINALIZER_TERMINATION)
        );
        assert!(
            nc.owner_references()
                .iter()
                .any(|o| o.kind == "NodePool" && o.name == "default")
        );
        for type_ in ["Launched", "Registered", "Initialized", "Ready"] {
            assert_eq!(
                condition(nc, type_).map(|c| c.0),
                Some("True".to_string()),
                "{} {type_}: {:?}",
                nc.name_any(),
                nc.status
            );
        }
        let annotations = nc.annotations();
        assert!(annotations.contains_key(labels::ANNOTATION_NODEPOOL_HASH));
        assert_eq!(
            annotations
                .get(labels::ANNOTATION_NODEPOOL_HASH_VERSION)
                .map(String::as_str),
            Some(labels::NODEPOOL_HASH_VERSION)
        );
        let status = nc.status.as_ref().unwrap();
        assert!(
            status
                .provider_id
                .as_deref()
                .is_some_and(|p| p.starts_with("kwok://"))
        );
        assert!(status.node_name.is_some());
    }

    // Scale to zero: the nodes empty, emptiness removes them, nothing is left behind.
    env.scale("default", "web", 0);
    env.wait(
        Duration::from_secs(120),
        "every NodeClaim and node gone",
        |env| {
            env.nodeclaims().is_empty()
                && !env
                    .nodes()
                    .iter()
                    .any(|n| n.labels().contains_key(labels::NODEPOOL))
        },
    );
    assert!(kerf.exited().is_none(), "kerf exited:\n{}", kerf.log_text());
    assert!(kerf.terminate().success(), "kerf stops cleanly on SIGTERM");
}

/// Nodes kerf manages and NodeClaims come to match one to one (a launch or a
/// termination may be under way when this is called): nothing leaked either way.
fn assert_consistent(env: &Env) {
    env.wait(
        Duration::from_secs(60),
        "managed nodes and NodeClaims to match",
        |env| {
            let claims = env.nodeclaims();
            let managed = env
                .nodes()
                .iter()
                .filter(|n| n.labels().contains_key(labels::NODEPOOL))
                .count();
            claims.len() == managed
                && claims
                    .iter()
                    .all(|c| c.status.as_ref().is_some_and(|s| s.node_name.is_some()))
        },
    );
    let claims = env.nodeclaims();
    let nodes = env.nodes();
    let managed: BTreeSet<String> = nodes
        .iter()
        .filter(|n| n.labels().contains_key(labels::NODEPOOL))
        .map(|n| n.name_any())
        .collect();
    let claimed: BTreeSet<String> = claims
        .iter()
        .filter_map(|c| c.status.as_ref().and_then(|s| s.node_name.clone()))
        .collect();
    assert_eq!(
        managed, claimed,
        "managed nodes and NodeClaims' nodes differ"
    );
    assert_eq!(claims.len(), managed.len(), "a NodeClaim without a node");
}

fn lease_holder(env: &Env) -> Option<String> {
    use k8s_openapi::api::coordination::v1::Lease;
    let api: kube::Api<Lease> = kube::Api::namespaced(env.client.clone(), "default");
    env.rt
        .block_on(api.get_opt("karpenter-leader-election"))
        .ok()
        .flatten()
        .and_then(|l| l.spec.and_then(|s| s.holder_identity))
        .filter(|h| !h.is_empty())
}

#[test]
fn killed_at_any_point_it_recovers_without_leaks_or_double_launches() {
    let env = Env::start();
    env.apply_yaml(NODEPOOL);
    // Kill points through a scale-up, then through a drain; fixed seeds, varied offsets.
    let offsets_ms = [700u64, 2_300, 4_100];
    let mut kerf = Kerf::start(&env, "kerf-0", &[]);
    for (round, offset) in offsets_ms.iter().enumerate() {
        let replicas = 4 + 3 * round as i32;
        env.apply_yaml(&deployment("web", replicas, "1500m"));
        std::thread::sleep(Duration::from_millis(*offset));
        kerf.kill9();
        kerf = Kerf::start(&env, "kerf-0", &[]);
        env.wait(
            Duration::from_secs(120),
            &format!("{replicas} pods running after a kill at +{offset}ms"),
            |env| all_running(env, "web", replicas as usize),
        );
        env.wait(
            Duration::from_secs(60),
            "nodes and claims consistent",
            |env| {
                let claims = env.nodeclaims();
                claims
                    .iter()
                    .all(|c| c.status.as_ref().is_some_and(|s| s.node_name.is_some()))
                    && claims.len()
                        == env
                            .nodes()
                            .iter()
                            .filter(|n| n.labels().contains_key(labels::NODEPOOL))
                            .count()
            },
        );
        assert_consistent(&env);
    }
    // Drain: scale to zero, and kill as soon as the first node is disrupted (tainted or
    // its claim deleting), in the middle of termination.
    env.scale("default", "web", 0);
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        let disrupting = env.nodes().iter().any(|n| {
            n.spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .is_some_and(|t| t.iter().any(|t| t.key == labels::TAINT_DISRUPTED))
        }) || env
            .nodeclaims()
            .iter()
            .any(|c| c.metadata.deletion_timestamp.is_some());
        if disrupting {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    kerf.kill9();
    kerf = Kerf::start(&env, "kerf-0", &[]);
    env.wait(
        Duration::from_secs(120),
        "every NodeClaim and managed node gone",
        |env| {
            env.nodeclaims().is_empty()
                && !env
                    .nodes()
                    .iter()
                    .any(|n| n.labels().contains_key(labels::NODEPOOL))
        },
    );
    assert!(kerf.exited().is_none(), "kerf exited:\n{}", kerf.log_text());
}

#[test]
fn only_the_leader_acts_and_a_standby_takes_over() {
    let env = Env::start();
    env.apply_yaml(NODEPOOL);
    let mut a = Kerf::start(&env, "kerf-a", &[]);
    env.wait(Duration::from_secs(30), "kerf-a leads", |env| {
        lease_holder(env).as_deref() == Some("kerf-a")
    });
    let mut b = Kerf::start(&env, "kerf-b", &[]);
    env.apply_yaml(&deployment("web", 4, "1"));
    env.wait(Duration::from_secs(120), "4 pods running", |env| {
        all_running(env, "web", 4)
    });
    assert!(
        !b.log_text().contains("created nodeclaim"),
        "the standby acted:\n{}",
        b.log_text()
    );
    assert_eq!(lease_holder(&env).as_deref(), Some("kerf-a"));
    a.kill9();
    let killed = std::time::Instant::now();
    env.wait(Duration::from_secs(40), "kerf-b takes the lease", |env| {
        lease_holder(env).as_deref() == Some("kerf-b")
    });
    let takeover = killed.elapsed();
    // A 15 s lease, observed by the standby from its own clock, tried every 2 s.
    assert!(
        takeover < Duration::from_secs(25),
        "took over after {takeover:?}"
    );
    env.scale("default", "web", 8);
    env.wait(Duration::from_secs(120), "8 pods running", |env| {
        all_running(env, "web", 8)
    });
    assert!(b.log_text().contains("created nodeclaim"));
    assert_consistent(&env);
    // A clean stop releases the lease at once.
    assert!(b.terminate().success());
    assert_eq!(lease_holder(&env), None, "the lease is released on SIGTERM");
}

#[test]
fn an_invalid_nodepool_is_refused_by_the_api_server_and_kerf_keeps_running() {
    let env = Env::start();
    env.apply_yaml(NODEPOOL);
    let mut kerf = Kerf::start(&env, "kerf-0", &[]);
    let bad = NODEPOOL
        .replace("name: default}", "name: bad}")
        .replace("consolidateAfter: 5s", "consolidateAfter: soon");
    let err = env
        .try_apply_yaml(&bad)
        .expect_err("the API server refuses it");
    let text = err.to_string();
    assert!(text.contains("consolidateAfter"), "{text}");
    env.apply_yaml(&deployment("web", 2, "1"));
    env.wait(Duration::from_secs(120), "2 pods running", |env| {
        all_running(env, "web", 2)
    });
    assert!(kerf.exited().is_none());
}
