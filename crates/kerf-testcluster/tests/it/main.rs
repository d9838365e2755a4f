//! End-to-end tests of the control plane itself: kwok's node goes Ready, the scheduler
//! and controller manager run a Deployment's pods on it, RBAC denies a non-admin user,
//! the apiserver comes back after a SIGKILL, and clusters side by side neither collide
//! nor outlive their `TestCluster` (dropped normally or by a panic).

use std::future::Future;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::json;

use kerf_testcluster::{Options, TestCluster};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn client(kubeconfig: &Path) -> Client {
    let kc = Kubeconfig::read_from(kubeconfig).unwrap();
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// Polls `f` every 200 ms until it returns `Some`, panicking after `timeout`.
async fn eventually<T, Fut: Future<Output = Option<T>>>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Fut,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn fake_node(name: &str) -> Node {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": { "kwok.x-k8s.io/node": "fake", "kubernetes.io/hostname": name },
            "annotations": { "kwok.x-k8s.io/node": "fake" },
        },
        "status": {
            "capacity": { "cpu": "8", "memory": "32Gi", "pods": "110" },
            "allocatable": { "cpu": "8", "memory": "32Gi", "pods": "110" },
        },
    }))
    .unwrap()
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{
                    "name": "app",
                    "image": "registry.invalid/app:1",
                    "resources": { "requests": { "cpu": "100m", "memory": "64Mi" } },
                }] },
            },
        },
    }))
    .unwrap()
}

fn is_ready(node: &Node) -> bool {
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

#[test]
fn kwok_runs_scheduled_pods_rbac_holds_and_apiserver_restarts() {
    let mut cluster = TestCluster::start(Options {
        audit: true,
        ..Options::default()
    })
    .unwrap();
    let rt = runtime();
    let admin = rt.block_on(client(cluster.kubeconfig_path()));
    let nodes: Api<Node> = Api::all(admin.clone());

    rt.block_on(async {
        nodes
            .create(&PostParams::default(), &fake_node("kwok-0"))
            .await
            .unwrap();
        eventually(
            "kwok to make the node Ready",
            Duration::from_secs(30),
            || async { nodes.get("kwok-0").await.ok().filter(is_ready) },
        )
        .await;

        let deployments: Api<Deployment> = Api::default_namespaced(admin.clone());
        deployments
            .create(&PostParams::default(), &deployment("web", 2))
            .await
            .unwrap();
        let pods: Api<Pod> = Api::default_namespaced(admin.clone());
        eventually(
            "2 pods Running on kwok-0",
            Duration::from_secs(30),
            || async {
                let list = pods
                    .list(&ListParams::default().labels("app=web"))
                    .await
                    .ok()?;
                let running = list.items.iter().filter(|p| {
                    let on_node =
                        p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("kwok-0");
                    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
                    on_node && phase == Some("Running")
                });
                (running.count() == 2).then_some(())
            },
        )
        .await;
    });

    // RBAC is on: a user outside system:masters is forbidden until a role is bound.
    let alice_config = cluster.kubeconfig_for("alice", Some("kerf-e2e")).unwrap();
    rt.block_on(async {
        let alice = client(&alice_config).await;
        let alice_nodes: Api<Node> = Api::all(alice);
        match alice_nodes.list(&ListParams::default()).await {
            Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
            other => panic!("alice listed nodes without a role: {other:?}"),
        }
        let role: ClusterRole = serde_json::from_value(json!({
            "metadata": { "name": "node-reader" },
            "rules": [{ "apiGroups": [""], "resources": ["nodes"], "verbs": ["list"] }],
        }))
        .unwrap();
        let binding: ClusterRoleBinding = serde_json::from_value(json!({
            "metadata": { "name": "node-reader" },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "node-reader" },
            "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "kerf-e2e" }],
        }))
        .unwrap();
        Api::<ClusterRole>::all(admin.clone()).create(&PostParams::default(), &role).await.unwrap();
        Api::<ClusterRoleBinding>::all(admin.clone())
            .create(&PostParams::default(), &binding)
            .await
            .unwrap();
        eventually("the binding to let alice list nodes", Duration::from_secs(10), || async {
            alice_nodes.list(&ListParams::default()).await.ok()
        })
        .await;
    });

    let metrics = cluster.apiserver_metrics().unwrap();
    assert!(
        metrics.contains("apiserver_request_total{"),
        "no apiserver_request_total"
    );
    let audit = cluster.audit_log_path().unwrap().to_path_buf();
    let denied = || {
        std::fs::read_to_string(&audit)
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains(r#""username":"alice""#) && l.contains(r#""code":403"#))
    };
    rt.block_on(eventually(
        "alice's 403 in the audit log",
        Duration::from_secs(5),
        || async { denied().then_some(()) },
    ));

    cluster.restart_apiserver().unwrap();
    rt.block_on(async {
        let list = eventually(
            "the same client after the restart",
            Duration::from_secs(10),
            || {
                let nodes = nodes.clone();
                async move { nodes.list(&ListParams::default()).await.ok() }
            },
        )
        .await;
        assert_eq!(list.items.len(), 1, "etcd kept the node");
    });
}

#[test]
fn side_by_side_clusters_are_isolated_and_gone_after_drop_or_panic() {
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| {
            TestCluster::start(Options {
                kwok: false,
                ..Options::default()
            })
        });
        let b = s.spawn(|| {
            let labels = Some("kwok-partition=a".to_string());
            TestCluster::start(Options {
                kwok_manage_label_selector: labels,
                ..Options::default()
            })
        });
        (a.join().unwrap().unwrap(), b.join().unwrap().unwrap())
    });
    assert_ne!(a.server_url(), b.server_url());

    let rt = runtime();
    rt.block_on(async {
        let admin_a = client(a.kubeconfig_path()).await;
        let admin_b = client(b.kubeconfig_path()).await;
        let cm: ConfigMap =
            serde_json::from_value(json!({ "metadata": { "name": "only-in-a" } })).unwrap();
        let in_a: Api<ConfigMap> = Api::default_namespaced(admin_a);
        in_a.create(&PostParams::default(), &cm).await.unwrap();
        assert!(in_a.get_opt("only-in-a").await.unwrap().is_some());
        let in_b: Api<ConfigMap> = Api::default_namespaced(admin_b.clone());
        assert!(in_b.get_opt("only-in-a").await.unwrap().is_none());

        // b's kwok manages nodes by label (as Karpenter's kwok provider labels them).
        let mut node = fake_node("partitioned");
        node.metadata.annotations = None;
        node.metadata.labels = Some([("kwok-partition".to_string(), "a".to_string())].into());
        let nodes: Api<Node> = Api::all(admin_b);
        nodes.create(&PostParams::default(), &node).await.unwrap();
        eventually(
            "kwok to make the labelled node Ready",
            Duration::from_secs(30),
            || async { nodes.get("partitioned").await.ok().filter(is_ready) },
        )
        .await;
    });

    let addr = |c: &TestCluster| c.server_url().trim_start_matches("https://").to_string();
    let (addr_a, logs_a) = (addr(&a), a.log_dir().to_path_buf());
    drop(a);
    assert!(
        TcpStream::connect(&addr_a).is_err(),
        "apiserver of a still listening"
    );
    assert!(!logs_a.exists(), "directory of a not removed");

    let (addr_b, logs_b) = (addr(&b), b.log_dir().to_path_buf());
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _b = b;
        panic!("a failing test (expected: this checks teardown on unwind)");
    }));
    assert!(panicked.is_err());
    assert!(
        TcpStream::connect(&addr_b).is_err(),
        "apiserver of b survived the panic"
    );
    assert!(!logs_b.exists(), "directory of b not removed");
}
