//! The end-to-end environment: a real control plane (`kerf-testcluster`: etcd,
//! kube-apiserver, kube-scheduler, kube-controller-manager, kwok), kerf's CRDs installed
//! through the API server, and `kerf controller` run as the real binary in a child
//! process, so a test can kill it with SIGKILL wherever it is.
//!
//! Tests run one at a time (`serial`): each has a cluster of its own, and two control
//! planes and two controllers on two cores would make every deadline a coin toss.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kerf_api::crd::NodeClaim;
use kerf_testcluster::{Options, TestCluster};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

static SERIAL: Mutex<()> = Mutex::new(());

pub struct Env {
    _serial: MutexGuard<'static, ()>,
    pub cluster: TestCluster,
    pub rt: tokio::runtime::Runtime,
    pub client: Client,
}

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

impl Env {
    /// A fresh cluster with kerf's kwok CRDs and a KWOKNodeClass `default`.
    pub fn start() -> Env {
        Env::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> Env {
        let env = Env::start_bare(options, &kerf_api::crd::kwok_crds_yaml().unwrap());
        env.apply_yaml(
            "apiVersion: karpenter.kwok.sh/v1alpha1\nkind: KWOKNodeClass\nmetadata: {name: default}\n",
        );
        env
    }

    /// A fresh cluster with the CRDs `kerf crds` prints for AWS (NodePool, NodeClaim,
    /// EC2NodeClass) and no node class yet.
    pub fn start_aws() -> Env {
        Env::start_aws_with(Options::default())
    }

    pub fn start_aws_with(options: Options) -> Env {
        Env::start_bare(options, &kerf_api::crd::crds_yaml().unwrap())
    }

    fn start_bare(options: Options, crds: &str) -> Env {
        let serial = serial();
        let started = Instant::now();
        let cluster = TestCluster::start(options).expect("the control plane starts");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let kubeconfig = cluster.kubeconfig_path().to_path_buf();
        let client = rt.block_on(client_for(&kubeconfig));
        let env = Env {
            _serial: serial,
            cluster,
            rt,
            client,
        };
        env.install_crds(crds);
        eprintln!(
            "e2e: control plane and CRDs ready in {:?}",
            started.elapsed()
        );
        env
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.cluster.kubeconfig_path().to_path_buf()
    }

    fn install_crds(&self, yaml: &str) {
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        self.rt.block_on(async {
            for doc in yaml.split("---\n").filter(|d| !d.trim().is_empty()) {
                let crd: CustomResourceDefinition = serde_saphyr::from_str(doc).unwrap();
                api.create(&PostParams::default(), &crd).await.unwrap();
            }
            for doc in yaml.split("---\n").filter(|d| !d.trim().is_empty()) {
                let crd: CustomResourceDefinition = serde_saphyr::from_str(doc).unwrap();
                let name = crd.name_any();
                wait_async(
                    Duration::from_secs(30),
                    &format!("CRD {name} established"),
                    || {
                        let api = api.clone();
                        let name = name.clone();
                        async move {
                            api.get(&name).await.ok().is_some_and(|c| {
                                c.status.and_then(|s| s.conditions).is_some_and(|cs| {
                                    cs.iter()
                                        .any(|c| c.type_ == "Established" && c.status == "True")
                                })
                            })
                        }
                    },
                )
                .await;
            }
        });
    }

    /// Server-side applies each document, as `kubectl apply --server-side` would. A CRD
    /// can be `Established` a moment before its resource is served (a 404 from the
    /// discovery of its kind): that is tried again for up to 10 s.
    pub fn apply_yaml(&self, yaml: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.rt.block_on(apply_yaml(&self.client, yaml)) {
                Err(kube::Error::Api(s)) if s.code == 404 && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(250));
                }
                result => return result.unwrap(),
            }
        }
    }

    pub fn try_apply_yaml(&self, yaml: &str) -> Result<(), kube::Error> {
        self.rt.block_on(apply_yaml(&self.client, yaml))
    }

    fn list<K>(&self, api: Api<K>) -> Vec<K>
    where
        K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        self.rt
            .block_on(api.list(&ListParams::default()))
            .unwrap()
            .items
    }

    pub fn pods(&self, namespace: &str) -> Vec<Pod> {
        self.list(Api::namespaced(self.client.clone(), namespace))
    }

    pub fn nodes(&self) -> Vec<Node> {
        self.list(Api::all(self.client.clone()))
    }

    pub fn nodeclaims(&self) -> Vec<NodeClaim> {
        self.list(Api::all(self.client.clone()))
    }

    /// Every event in the cluster (events.k8s.io/v1, as kube-runtime's recorder writes).
    pub fn events(&self) -> Vec<k8s_openapi::api::events::v1::Event> {
        self.list(Api::all(self.client.clone()))
    }

    pub fn nodepool(&self, name: &str) -> kerf_api::crd::NodePool {
        let api: Api<kerf_api::crd::NodePool> = Api::all(self.client.clone());
        self.rt.block_on(api.get(name)).unwrap()
    }

    /// `kubectl delete node <name>`: the API delete a user makes.
    pub fn delete_node(&self, name: &str) {
        let api: Api<Node> = Api::all(self.client.clone());
        self.rt
            .block_on(api.delete(name, &kube::api::DeleteParams::default()))
            .unwrap();
    }

    pub fn scale(&self, namespace: &str, deployment: &str, replicas: i32) {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
        let patch = json!({"spec": {"replicas": replicas}});
        self.rt
            .block_on(api.patch(deployment, &PatchParams::default(), &Patch::Merge(&patch)))
            .unwrap();
    }

    /// Polls `check` every 500 ms until it is true, failing with `what` after `timeout`.
    pub fn wait(&self, timeout: Duration, what: &str, mut check: impl FnMut(&Env) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if check(self) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for: {what}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

pub async fn client_for(kubeconfig: &Path) -> Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

async fn apply_yaml(client: &Client, yaml: &str) -> Result<(), kube::Error> {
    use kube::core::{DynamicObject, GroupVersionKind};
    use kube::discovery::ApiResource;
    for doc in yaml.split("\n---").filter(|d| !d.trim().is_empty()) {
        let obj: DynamicObject = serde_saphyr::from_str(doc).expect("valid YAML");
        let types = obj.types.clone().expect("apiVersion and kind");
        let (group, version) = match types.api_version.split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), types.api_version.clone()),
        };
        let gvk = GroupVersionKind::gvk(&group, &version, &types.kind);
        let (resource, caps) = kube::discovery::pinned_kind(client, &gvk).await?;
        let _: ApiResource = resource.clone();
        let api: Api<DynamicObject> = match (&caps.scope, obj.namespace()) {
            (kube::discovery::Scope::Namespaced, ns) => Api::namespaced_with(
                client.clone(),
                ns.as_deref().unwrap_or("default"),
                &resource,
            ),
            (kube::discovery::Scope::Cluster, _) => Api::all_with(client.clone(), &resource),
        };
        let params = PatchParams::apply("kerf-e2e").force();
        api.patch(&obj.name_any(), &params, &Patch::Apply(&obj))
            .await?;
    }
    Ok(())
}

pub async fn wait_async<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `kerf controller --cloud-provider kwok`, the real binary, in a child process with its
/// log in the cluster's log directory.
pub struct Kerf {
    child: Child,
    pub log: PathBuf,
    pub metrics_port: u16,
}

impl Kerf {
    pub fn start(env: &Env, name: &str, extra: &[(&str, &str)]) -> Kerf {
        Kerf::start_on(env, "kwok", name, extra)
    }

    /// `kerf controller --cloud-provider <provider>`.
    pub fn start_on(env: &Env, provider: &str, name: &str, extra: &[(&str, &str)]) -> Kerf {
        let log = env.cluster.log_dir().join(format!("kerf-{name}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let metrics_port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_kerf"));
        command
            .args(["controller", "--cloud-provider", provider])
            .env("KUBECONFIG", env.kubeconfig())
            .env("POD_NAME", name)
            .env("LEADER_ELECTION_NAMESPACE", "default")
            // Ports of their own, so two replicas and other tests never collide.
            .env("METRICS_PORT", metrics_port.to_string())
            .env("HEALTH_PROBE_PORT", free_port().to_string())
            .env("LOG_LEVEL", "debug")
            .env("RUST_LOG", "info,kerf_kube=debug")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        for (k, v) in extra {
            command.env(k, v);
        }
        let child = command.spawn().expect("kerf starts");
        Kerf {
            child,
            log,
            metrics_port,
        }
    }

    /// `GET /metrics`: the Prometheus text kerf serves.
    pub fn scrape(&self) -> String {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port))
            .expect("kerf's metrics port answers");
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        assert!(
            head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
            "{head}"
        );
        body.to_string()
    }

    /// SIGKILL: no cleanup of any kind, as a crashed or OOM-killed pod.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return self.child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of the log, newest first, for a failure message.
    pub fn log_tail(&self, n: usize) -> String {
        let text = self.log_text();
        text.lines().rev().take(n).collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Kerf {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A pod is bound and Running (kwok runs it).
pub fn running(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_some()
        && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}
