//! Karpenter's kwok performance suite (`test/suites/performance`: Basic, Hostname spread,
//! Wide) rebuilt on a real control plane: `kerf-testcluster` starts etcd, kube-apiserver,
//! kube-scheduler, kube-controller-manager and kwok; the real `kerf controller` binary
//! runs as a child process; the workloads are Deployments the controller manager turns
//! into pods and kube-scheduler binds.
//!
//! Every figure is read from the API or the kernel, never from kerf's logs:
//!
//! - **Scale-out**: a watch on the pods stamps when each pod is first seen and first seen
//!   bound (`spec.nodeName`); the figure is from the last pod's creation to the last bind.
//! - **Consolidation**: after the scale-down the NodeClaims (names, and whether deleting)
//!   are polled every second; consolidation has settled once they have not changed for
//!   `quiet` seconds with every pod bound, and the figure is scale-down to last change.
//! - **Utilisation**: requests of the bound pods over the allocatable of the NodePool's
//!   nodes, CPU and memory.
//! - **kerf's cost**: `VmHWM` (peak RSS) and `utime + stime` from `/proc/<pid>`.
//! - **API requests**: the API server's own metric
//!   `apiserver_flowcontrol_dispatched_requests_total` for a FlowSchema that matches only
//!   kerf's user (kerf runs as its own client-certificate user, bound to `cluster-admin`).
//!   `apiserver_request_total` has no label naming the client, so it cannot isolate kerf.
//!   The steady-state rate is taken over the quiet window that ends the consolidation.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kerf_api::crd::NodeClaim;
use kerf_model::Quantity;
use kerf_testcluster::{Options, TestCluster};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;

/// The namespace the workloads run in.
const NAMESPACE: &str = "default";
/// kerf's user on the API server (a client certificate), and the FlowSchema counting it.
const KERF_USER: &str = "kerf-controller";
const FLOW_SCHEMA: &str = "kerf-bench";
/// The NodePool label on the nodes kerf launches.
const NODEPOOL_LABEL: &str = "karpenter.sh/nodepool";

/// One Deployment of a scenario.
#[derive(Debug, Clone)]
pub struct Workload {
    pub name: String,
    /// Replicas at scale-out.
    pub replicas: i32,
    /// Replicas after the scale-down.
    pub scaled: i32,
    pub cpu: String,
    pub memory: String,
    /// A `topologySpreadConstraint` on `kubernetes.io/hostname` (maxSkew 1, DoNotSchedule).
    pub spread_hostname: bool,
}

/// A scenario: its Deployments and kerf's scale-out target for it.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub workloads: Vec<Workload>,
    /// kerf's target from the last pod created to all bound (issue 10: Basic 30 s; the
    /// others carry Karpenter's 2 min).
    pub scale_out_target: Duration,
}

impl Scenario {
    pub fn pods(&self) -> i32 {
        self.workloads.iter().map(|w| w.replicas).sum()
    }

    pub fn pods_after(&self) -> i32 {
        self.workloads.iter().map(|w| w.scaled).sum()
    }

    /// Basic: half the pods at 900m/3100Mi, half at 3500m/28Gi; scaled down to 70 %.
    /// `basic(1000)` is Karpenter's (1,000 pods, then 700).
    pub fn basic(pods: i32) -> Scenario {
        let half = pods / 2;
        let small_after = half * 7 / 10;
        let after = pods * 7 / 10;
        Scenario {
            name: format!("basic-{pods}"),
            workloads: vec![
                Workload {
                    name: "small".into(),
                    replicas: half,
                    scaled: small_after,
                    cpu: "900m".into(),
                    memory: "3100Mi".into(),
                    spread_hostname: false,
                },
                Workload {
                    name: "large".into(),
                    replicas: pods - half,
                    scaled: after - small_after,
                    cpu: "3500m".into(),
                    memory: "28Gi".into(),
                    spread_hostname: false,
                },
            ],
            scale_out_target: Duration::from_secs(30),
        }
    }

    /// Hostname spread: one Deployment of 900m/3100Mi pods spread over nodes (maxSkew 1),
    /// scaled down to 70 %.
    pub fn hostname_spread(pods: i32) -> Scenario {
        Scenario {
            name: format!("hostname-spread-{pods}"),
            workloads: vec![Workload {
                name: "spread".into(),
                replicas: pods,
                scaled: pods * 7 / 10,
                cpu: "900m".into(),
                memory: "3100Mi".into(),
                spread_hostname: true,
            }],
            scale_out_target: Duration::from_secs(120),
        }
    }

    /// Wide: `deployments` Deployments summing to `pods`, requests cycling through six CPU
    /// and five memory sizes (so 30 distinct shapes at 30 Deployments), each scaled to 70 %
    /// with the total exactly 70 % of `pods`.
    pub fn wide(deployments: i32, pods: i32) -> Scenario {
        const CPUS: [&str; 6] = ["250m", "500m", "750m", "1", "1500m", "2"];
        const MEMS: [&str; 5] = ["512Mi", "1Gi", "2Gi", "3Gi", "4Gi"];
        let after_total = pods * 7 / 10;
        let mut workloads = Vec::new();
        let mut after_left = after_total;
        for i in 0..deployments {
            let replicas = pods / deployments + i32::from(i < pods % deployments);
            let last = i == deployments - 1;
            let scaled = if last {
                after_left
            } else {
                (replicas * 7 + 5) / 10
            };
            after_left -= scaled;
            let i = i as usize;
            workloads.push(Workload {
                name: format!("wide-{i:02}"),
                replicas,
                scaled,
                cpu: CPUS[i % CPUS.len()].into(),
                memory: MEMS[(i + i / CPUS.len()) % MEMS.len()].into(),
                spread_hostname: false,
            });
        }
        Scenario {
            name: format!("wide-{deployments}x{pods}"),
            workloads,
            scale_out_target: Duration::from_secs(120),
        }
    }
}

/// How to run a scenario.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The `kerf` binary.
    pub kerf: PathBuf,
    /// No NodeClaim change for this long (with every pod bound) means consolidation settled.
    pub quiet: Duration,
    /// The NodePool's `consolidateAfter`.
    pub consolidate_after: String,
    /// The NodePool's one disruption budget (`nodes`); Karpenter's default is `10%`.
    pub budget: String,
    /// Give up on the scale-out after this long (from the Deployments' creation).
    pub scale_out_timeout: Duration,
    /// Give up on consolidation settling after this long (from the scale-down).
    pub consolidation_timeout: Duration,
    /// `RUST_LOG` for kerf.
    pub rust_log: String,
}

impl Settings {
    pub fn new(kerf: PathBuf) -> Settings {
        Settings {
            kerf,
            quiet: Duration::from_secs(60),
            consolidate_after: "0s".into(),
            budget: "10%".into(),
            scale_out_timeout: Duration::from_secs(600),
            consolidation_timeout: Duration::from_secs(900),
            rust_log: "info".into(),
        }
    }
}

/// Nodes and utilisation at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fleet {
    pub nodes: usize,
    pub nodeclaims: usize,
    /// Requests of bound pods over allocatable, 0–1.
    pub cpu: f64,
    pub memory: f64,
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub scenario: String,
    pub pods: i32,
    pub pods_after: i32,
    pub settings: Settings,
    pub scale_out_target: Duration,
    /// Deployments applied → last pod created (by the controller manager).
    pub pod_creation: Duration,
    /// Last pod created → all pods bound.
    pub scale_out: Duration,
    /// Deployments applied → all pods bound.
    pub scale_out_from_apply: Duration,
    /// Scale-down → last NodeClaim change; `None` if it did not settle in time.
    pub consolidation: Option<Duration>,
    /// NodeClaim changes (created, deleting, gone) seen after the scale-down.
    pub consolidation_changes: usize,
    pub before: Fleet,
    pub after: Fleet,
    /// kerf's peak RSS (VmHWM), bytes.
    pub peak_rss: u64,
    /// kerf's CPU (utime + stime) over the whole run and kerf's wall time.
    pub cpu_seconds: f64,
    pub wall_seconds: f64,
    /// kerf's CPU seconds during the scale-out (apply → all bound).
    pub cpu_seconds_scale_out: f64,
    /// API requests kerf made per minute at steady state (the quiet window), over the
    /// scale-out, and in all.
    pub requests_per_minute_steady: f64,
    pub requests_per_minute_scale_out: f64,
    pub requests_total: f64,
    /// `/proc/loadavg` before and after.
    pub load_before: String,
    pub load_after: String,
}

/// Karpenter's thresholds (`test/suites/performance`).
pub const KARPENTER_SCALE_OUT: Duration = Duration::from_secs(120);
pub const KARPENTER_CONSOLIDATION: Duration = Duration::from_secs(20 * 60);
pub const KARPENTER_RSS: u64 = 260_000_000;
pub const KARPENTER_CPU_CORES: f64 = 0.5;
pub const MIN_CPU_UTILISATION: f64 = 0.53;
pub const MIN_MEMORY_UTILISATION: f64 = 0.65;
/// kerf's targets on the 2-core machine (issue 10).
pub const KERF_CONSOLIDATION: Duration = Duration::from_secs(3 * 60);
pub const KERF_RSS: u64 = 100 << 20;

impl Report {
    /// One line per figure: value, Karpenter's threshold, kerf's target, PASS/FAIL
    /// against the stricter of the two.
    pub fn render(&self) -> String {
        let pass = |ok: bool| if ok { "PASS" } else { "FAIL" };
        let mut out = String::new();
        let s = &self.settings;
        out.push_str(&format!(
            "scenario {}: {} pods, then {} (consolidateAfter {}, budget nodes {}, settled = no NodeClaim change for {} s)\n",
            self.scenario,
            self.pods,
            self.pods_after,
            s.consolidate_after,
            s.budget,
            s.quiet.as_secs()
        ));
        out.push_str(&format!(
            "  load average before: {}   after: {}\n",
            self.load_before, self.load_after
        ));
        out.push_str(&format!(
            "  {:<44} {:>12}  {:<22} {}\n",
            "figure", "value", "target (Karpenter; kerf)", "result"
        ));
        let mut row = |name: &str, value: String, target: String, ok: Option<bool>| {
            out.push_str(&format!(
                "  {name:<44} {value:>12}  {target:<22} {}\n",
                ok.map_or("-", pass)
            ));
        };
        row(
            "pods created (apply -> last pod)",
            format!("{:.1} s", self.pod_creation.as_secs_f64()),
            String::new(),
            None,
        );
        row(
            "scale-out (last pod created -> all bound)",
            format!("{:.1} s", self.scale_out.as_secs_f64()),
            format!(
                "<{} s; <{} s",
                KARPENTER_SCALE_OUT.as_secs(),
                self.scale_out_target.as_secs()
            ),
            Some(self.scale_out < self.scale_out_target.min(KARPENTER_SCALE_OUT)),
        );
        row(
            "scale-out (apply -> all bound)",
            format!("{:.1} s", self.scale_out_from_apply.as_secs_f64()),
            String::new(),
            None,
        );
        let fleet = |f: &Fleet| format!("{} nodes", f.nodes);
        row(
            "nodes after scale-out",
            fleet(&self.before),
            String::new(),
            None,
        );
        let util = |v: f64| format!("{:.1} %", v * 100.0);
        row(
            "CPU utilisation after scale-out",
            util(self.before.cpu),
            format!(">{:.0} %", MIN_CPU_UTILISATION * 100.0),
            Some(self.before.cpu > MIN_CPU_UTILISATION),
        );
        row(
            "memory utilisation after scale-out",
            util(self.before.memory),
            format!(">{:.0} %", MIN_MEMORY_UTILISATION * 100.0),
            Some(self.before.memory > MIN_MEMORY_UTILISATION),
        );
        row(
            "consolidation settled (scale-down -> last)",
            match self.consolidation {
                Some(d) => format!("{:.1} s", d.as_secs_f64()),
                None => "not settled".into(),
            },
            format!(
                "<{} s; <{} s",
                KARPENTER_CONSOLIDATION.as_secs(),
                KERF_CONSOLIDATION.as_secs()
            ),
            Some(self.consolidation.is_some_and(|d| d < KERF_CONSOLIDATION)),
        );
        row(
            "NodeClaim changes during consolidation",
            self.consolidation_changes.to_string(),
            String::new(),
            None,
        );
        row(
            "nodes after consolidation",
            fleet(&self.after),
            String::new(),
            None,
        );
        row(
            "CPU utilisation after consolidation",
            util(self.after.cpu),
            format!(">{:.0} %", MIN_CPU_UTILISATION * 100.0),
            Some(self.after.cpu > MIN_CPU_UTILISATION),
        );
        row(
            "memory utilisation after consolidation",
            util(self.after.memory),
            format!(">{:.0} %", MIN_MEMORY_UTILISATION * 100.0),
            Some(self.after.memory > MIN_MEMORY_UTILISATION),
        );
        row(
            "kerf peak RSS (VmHWM)",
            format!("{:.1} MiB", self.peak_rss as f64 / f64::from(1 << 20)),
            format!("<{} MB; <{} MiB", KARPENTER_RSS / 1_000_000, KERF_RSS >> 20),
            Some(self.peak_rss < KERF_RSS),
        );
        row(
            "kerf CPU seconds, whole run",
            format!("{:.1} s", self.cpu_seconds),
            String::new(),
            None,
        );
        let cores = self.cpu_seconds / self.wall_seconds.max(1e-9);
        row(
            "kerf CPU, average cores over the run",
            format!("{cores:.3}"),
            format!("<{KARPENTER_CPU_CORES}"),
            Some(cores < KARPENTER_CPU_CORES),
        );
        row(
            "kerf CPU seconds during scale-out",
            format!("{:.1} s", self.cpu_seconds_scale_out),
            String::new(),
            None,
        );
        row(
            "kerf API requests/min, steady state",
            format!("{:.1}", self.requests_per_minute_steady),
            String::new(),
            None,
        );
        row(
            "kerf API requests/min, during scale-out",
            format!("{:.1}", self.requests_per_minute_scale_out),
            String::new(),
            None,
        );
        row(
            "kerf API requests, whole run",
            format!("{:.0}", self.requests_total),
            String::new(),
            None,
        );
        out
    }
}

/// Runs one scenario from a fresh control plane to teardown.
pub fn run(scenario: &Scenario, settings: &Settings) -> Result<Report> {
    if !settings.kerf.is_file() {
        bail!(
            "no kerf binary at {} (cargo build --release -p kerf)",
            settings.kerf.display()
        );
    }
    let load_before = loadavg();
    let cluster = TestCluster::start(Options {
        kwok: true,
        ..Options::default()
    })
    .context("starting the control plane")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let client = rt.block_on(client_for(cluster.kubeconfig_path()))?;
    rt.block_on(setup(&client, settings))?;
    let kerf_config = cluster.kubeconfig_for(KERF_USER, None)?;

    let tracker = PodTracker::default();
    rt.spawn(
        tracker
            .clone()
            .watch(Api::namespaced(client.clone(), NAMESPACE)),
    );

    let mut kerf = KerfProcess::start(&settings.kerf, &kerf_config, cluster.log_dir(), settings)?;
    let requests = || kerf_requests(&cluster);
    let requests_start = requests()?;

    // Scale-out.
    let cpu_start = kerf.cpu_seconds()?;
    let applied = Instant::now();
    for w in &scenario.workloads {
        rt.block_on(apply_yaml(&client, &deployment_yaml(w)))?;
    }
    let total = scenario.pods() as usize;
    let (last_created, all_bound) = loop {
        kerf.check_running()?;
        let s = tracker.snapshot();
        if s.live == total && s.bound == total {
            break (s.last_created.unwrap_or(applied), Instant::now());
        }
        if applied.elapsed() > settings.scale_out_timeout {
            bail!(
                "scale-out: {} of {} pods bound ({} exist) after {:?}; kerf's log: {}",
                s.bound,
                total,
                s.live,
                settings.scale_out_timeout,
                kerf.log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let cpu_scale_out = kerf.cpu_seconds()? - cpu_start;
    let requests_scale_out = requests()? - requests_start;
    let scale_out_minutes = all_bound.duration_since(applied).as_secs_f64() / 60.0;
    // Let in-flight launches land before counting nodes (they carry no pods).
    std::thread::sleep(Duration::from_secs(2));
    let before = rt.block_on(fleet(&client))?;

    // Scale-down and consolidation.
    let scaled_at = Instant::now();
    for w in &scenario.workloads {
        rt.block_on(scale(&client, &w.name, w.scaled))?;
    }
    let total_after = scenario.pods_after() as usize;
    let mut signature = rt.block_on(claims_signature(&client))?;
    let mut last_change = scaled_at;
    let mut changes = 0;
    let mut quiet_since = scaled_at;
    // The API-request counter at the start of the quiet window, read on the first poll
    // of the window (so an unbound stretch does not scrape /metrics every second).
    let mut window_start: Option<(Instant, f64)> = None;
    let consolidation = loop {
        std::thread::sleep(Duration::from_secs(1));
        kerf.check_running()?;
        let now = Instant::now();
        if now.duration_since(scaled_at) > settings.consolidation_timeout {
            break None;
        }
        let sig = rt.block_on(claims_signature(&client))?;
        let s = tracker.snapshot();
        let pods_ok = s.live == total_after && s.bound == total_after;
        let changed = sig != signature;
        if changed {
            signature = sig;
            last_change = now;
            changes += 1;
        }
        // The quiet window restarts on a NodeClaim change or while a pod is unbound.
        if changed || !pods_ok {
            quiet_since = now;
            window_start = None;
            continue;
        }
        if window_start.is_none() {
            window_start = Some((Instant::now(), requests()?));
        }
        if now.duration_since(quiet_since) >= settings.quiet {
            break Some(last_change.duration_since(scaled_at));
        }
    };
    let requests_end = requests()?;
    let (window_at, window_requests) = match window_start {
        Some(w) => w,
        None => (Instant::now(), requests_end),
    };
    let quiet_minutes = window_at.elapsed().as_secs_f64() / 60.0;
    let after = rt.block_on(fleet(&client))?;

    let peak_rss = kerf.peak_rss()?;
    let cpu_seconds = kerf.cpu_seconds()?;
    let wall_seconds = kerf.started.elapsed().as_secs_f64();
    kerf.stop();
    drop(rt);
    drop(cluster);
    Ok(Report {
        scenario: scenario.name.clone(),
        pods: scenario.pods(),
        pods_after: scenario.pods_after(),
        settings: settings.clone(),
        scale_out_target: scenario.scale_out_target,
        pod_creation: last_created.duration_since(applied),
        scale_out: all_bound.duration_since(last_created),
        scale_out_from_apply: all_bound.duration_since(applied),
        consolidation,
        consolidation_changes: changes,
        before,
        after,
        peak_rss,
        cpu_seconds,
        wall_seconds,
        cpu_seconds_scale_out: cpu_scale_out,
        requests_per_minute_steady: (requests_end - window_requests) / quiet_minutes.max(1e-9),
        requests_per_minute_scale_out: requests_scale_out / scale_out_minutes.max(1e-9),
        requests_total: requests_end - requests_start,
        load_before,
        load_after: loadavg(),
    })
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

async fn client_for(kubeconfig: &Path) -> Result<Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    Ok(Client::try_from(config)?)
}

/// kerf's CRDs, a KWOKNodeClass and NodePool `default`, kerf's user bound to
/// `cluster-admin`, and the FlowSchema that counts kerf's requests.
async fn setup(client: &Client, settings: &Settings) -> Result<()> {
    let yaml = kerf_api::crd::kwok_crds_yaml()?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let docs: Vec<&str> = yaml
        .split("---\n")
        .filter(|d| !d.trim().is_empty())
        .collect();
    for doc in &docs {
        let crd: CustomResourceDefinition = serde_saphyr::from_str(doc)?;
        crds.create(&PostParams::default(), &crd).await?;
    }
    for doc in &docs {
        let crd: CustomResourceDefinition = serde_saphyr::from_str(doc)?;
        let name = crd.name_any();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let established = crds.get(&name).await.ok().is_some_and(|c| {
                c.status.and_then(|s| s.conditions).is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                })
            });
            if established {
                break;
            }
            if Instant::now() > deadline {
                bail!("CRD {name} not established in 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    apply_yaml_retrying(
        client,
        "apiVersion: karpenter.kwok.sh/v1alpha1\nkind: KWOKNodeClass\nmetadata: {name: default}\n",
    )
    .await?;
    apply_yaml_retrying(client, &nodepool_yaml(settings)).await?;
    apply_yaml_retrying(
        client,
        &format!(
            r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {KERF_USER}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}}
subjects:
- {{apiGroup: rbac.authorization.k8s.io, kind: User, name: {KERF_USER}}}
---
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: FlowSchema
metadata: {{name: {FLOW_SCHEMA}}}
spec:
  matchingPrecedence: 500
  priorityLevelConfiguration: {{name: workload-high}}
  distinguisherMethod: {{type: ByUser}}
  rules:
  - subjects:
    - kind: User
      user: {{name: {KERF_USER}}}
    resourceRules:
    - verbs: ["*"]
      apiGroups: ["*"]
      resources: ["*"]
      clusterScope: true
      namespaces: ["*"]
    nonResourceRules:
    - verbs: ["*"]
      nonResourceURLs: ["*"]
"#
        ),
    )
    .await?;
    Ok(())
}

/// Karpenter's kwok NodePool shape: amd64, on-demand, kwok types below 32 vCPU.
pub fn nodepool_yaml(settings: &Settings) -> String {
    format!(
        r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {{name: default}}
spec:
  template:
    spec:
      nodeClassRef: {{group: karpenter.kwok.sh, kind: KWOKNodeClass, name: default}}
      requirements:
      - {{key: kubernetes.io/arch, operator: In, values: [amd64]}}
      - {{key: karpenter.sh/capacity-type, operator: In, values: [on-demand]}}
      - {{key: {cpu}, operator: Lt, values: ["32"]}}
      expireAfter: Never
  disruption:
    consolidationPolicy: WhenEmptyOrUnderutilized
    consolidateAfter: {after}
    budgets: [{{nodes: "{budget}"}}]
"#,
        cpu = kerf_model::catalog::kwok::INSTANCE_CPU,
        after = settings.consolidate_after,
        budget = settings.budget,
    )
}

pub fn deployment_yaml(w: &Workload) -> String {
    let spread = if w.spread_hostname {
        format!(
            "      topologySpreadConstraints:\n      - {{maxSkew: 1, topologyKey: kubernetes.io/hostname, \
             whenUnsatisfiable: DoNotSchedule, labelSelector: {{matchLabels: {{app: {}}}}}}}\n",
            w.name
        )
    } else {
        String::new()
    };
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {NAMESPACE}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
{spread}      containers:
      - name: app
        image: registry.example/app:1
        resources: {{requests: {{cpu: "{cpu}", memory: "{memory}"}}}}
"#,
        name = w.name,
        replicas = w.replicas,
        cpu = w.cpu,
        memory = w.memory,
    )
}

/// [`apply_yaml`], retried for 30 s: an Established CRD can still be missing from
/// discovery for a moment (404).
async fn apply_yaml_retrying(client: &Client, yaml: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match apply_yaml(client, yaml).await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Server-side applies each document, as `kubectl apply --server-side` would.
async fn apply_yaml(client: &Client, yaml: &str) -> Result<()> {
    use kube::core::{DynamicObject, GroupVersionKind};
    for doc in yaml.split("\n---").filter(|d| !d.trim().is_empty()) {
        let obj: DynamicObject = serde_saphyr::from_str(doc)?;
        let types = obj.types.clone().context("apiVersion and kind")?;
        let (group, version) = match types.api_version.split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), types.api_version.clone()),
        };
        let gvk = GroupVersionKind::gvk(&group, &version, &types.kind);
        let (resource, caps) = kube::discovery::pinned_kind(client, &gvk).await?;
        let api: Api<DynamicObject> = match caps.scope {
            kube::discovery::Scope::Namespaced => Api::namespaced_with(
                client.clone(),
                obj.namespace().as_deref().unwrap_or(NAMESPACE),
                &resource,
            ),
            kube::discovery::Scope::Cluster => Api::all_with(client.clone(), &resource),
        };
        let params = PatchParams::apply("kerf-kwokbench").force();
        api.patch(&obj.name_any(), &params, &Patch::Apply(&obj))
            .await
            .with_context(|| format!("applying {} {}", types.kind, obj.name_any()))?;
    }
    Ok(())
}

async fn scale(client: &Client, deployment: &str, replicas: i32) -> Result<()> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let patch = json!({"spec": {"replicas": replicas}});
    api.patch(deployment, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// The NodeClaims by name, and whether each is being deleted.
async fn claims_signature(client: &Client) -> Result<Vec<(String, bool)>> {
    let api: Api<NodeClaim> = Api::all(client.clone());
    let mut sig: Vec<(String, bool)> = api
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|c| (c.name_any(), c.metadata.deletion_timestamp.is_some()))
        .collect();
    sig.sort();
    Ok(sig)
}

/// The NodePool's nodes and the requests of the pods bound to them over their allocatable.
async fn fleet(client: &Client) -> Result<Fleet> {
    let nodes: Vec<Node> = Api::<Node>::all(client.clone())
        .list(&ListParams::default().labels(NODEPOOL_LABEL))
        .await?
        .items;
    let claims = Api::<NodeClaim>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
        .len();
    let pods: Vec<Pod> = Api::<Pod>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let q =
        |m: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
         key: &str| {
            m.and_then(|m| m.get(key))
                .and_then(|v| Quantity::parse(&v.0).ok())
                .map_or(0.0, |v| v.0 as f64)
        };
    let mut alloc = (0.0, 0.0);
    let mut names = std::collections::BTreeSet::new();
    for n in &nodes {
        let a = n.status.as_ref().and_then(|s| s.allocatable.as_ref());
        alloc.0 += q(a, "cpu");
        alloc.1 += q(a, "memory");
        names.insert(n.name_any());
    }
    let mut used = (0.0, 0.0);
    for p in &pods {
        let Some(spec) = &p.spec else { continue };
        let on_pool = spec.node_name.as_ref().is_some_and(|n| names.contains(n));
        let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
        if !on_pool || matches!(phase, Some("Succeeded" | "Failed")) {
            continue;
        }
        for c in &spec.containers {
            let r = c.resources.as_ref().and_then(|r| r.requests.as_ref());
            used.0 += q(r, "cpu");
            used.1 += q(r, "memory");
        }
    }
    Ok(Fleet {
        nodes: nodes.len(),
        nodeclaims: claims,
        cpu: if alloc.0 > 0.0 { used.0 / alloc.0 } else { 0.0 },
        memory: if alloc.1 > 0.0 { used.1 / alloc.1 } else { 0.0 },
    })
}

/// kerf's requests so far: the API server's
/// `apiserver_flowcontrol_dispatched_requests_total` for kerf's FlowSchema.
fn kerf_requests(cluster: &TestCluster) -> Result<f64> {
    let text = cluster.apiserver_metrics()?;
    Ok(dispatched(&text, FLOW_SCHEMA))
}

/// Sums `apiserver_flowcontrol_dispatched_requests_total{flow_schema="<schema>",…}`.
pub fn dispatched(metrics: &str, schema: &str) -> f64 {
    let label = format!("flow_schema=\"{schema}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with("apiserver_flowcontrol_dispatched_requests_total{"))
        .filter(|l| l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Per live pod (by UID): when it was first seen, and first seen bound.
type PodTimes = BTreeMap<String, (Instant, Option<Instant>)>;

/// When each live pod was first seen and first seen bound, from a watch.
#[derive(Clone, Default)]
struct PodTracker {
    pods: Arc<Mutex<PodTimes>>,
}

struct PodSnapshot {
    live: usize,
    bound: usize,
    last_created: Option<Instant>,
}

impl PodTracker {
    async fn watch(self, api: Api<Pod>) {
        let mut stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(event) = stream.next().await {
            let now = Instant::now();
            let Ok(event) = event else { continue };
            let mut pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
            match event {
                watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                    let uid = p.uid().unwrap_or_default();
                    let gone = p.metadata.deletion_timestamp.is_some()
                        || p.status
                            .as_ref()
                            .and_then(|s| s.phase.as_deref())
                            .is_some_and(|ph| ph == "Succeeded" || ph == "Failed");
                    if gone {
                        pods.remove(&uid);
                        continue;
                    }
                    let bound = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
                    let entry = pods.entry(uid).or_insert((now, None));
                    if bound && entry.1.is_none() {
                        entry.1 = Some(now);
                    }
                }
                watcher::Event::Delete(p) => {
                    pods.remove(&p.uid().unwrap_or_default());
                }
                watcher::Event::Init | watcher::Event::InitDone => {}
            }
        }
    }

    fn snapshot(&self) -> PodSnapshot {
        let pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        PodSnapshot {
            live: pods.len(),
            bound: pods.values().filter(|(_, b)| b.is_some()).count(),
            last_created: pods.values().map(|(c, _)| *c).max(),
        }
    }
}

/// `kerf controller --cloud-provider kwok` as a child process.
struct KerfProcess {
    child: Child,
    log: PathBuf,
    started: Instant,
}

impl KerfProcess {
    fn start(bin: &Path, kubeconfig: &Path, log_dir: &Path, settings: &Settings) -> Result<Self> {
        let log = log_dir.join("kerf.log");
        let file = std::fs::File::create(&log)?;
        let health = free_port()?;
        let child = Command::new(bin)
            .args(["controller", "--cloud-provider", "kwok"])
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", "kerf-bench")
            .env("LEADER_ELECTION_NAMESPACE", "default")
            .env("METRICS_PORT", free_port()?.to_string())
            .env("HEALTH_PROBE_PORT", health.to_string())
            .env("RUST_LOG", &settings.rust_log)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut kerf = KerfProcess {
            child,
            log,
            started: Instant::now(),
        };
        // Ready once its caches are synced (`/readyz`).
        let deadline = Instant::now() + Duration::from_secs(60);
        while !http_ok(health, "/readyz") {
            kerf.check_running()?;
            if Instant::now() > deadline {
                bail!("kerf not ready in 60 s; its log: {}", kerf.log.display());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(kerf)
    }

    fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("kerf exited ({status}); its log: {}", self.log.display());
        }
        Ok(())
    }

    /// `VmHWM` from `/proc/<pid>/status`, bytes.
    fn peak_rss(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .context("VmHWM in /proc/<pid>/status")?;
        Ok(kb * 1024)
    }

    /// `utime + stime` from `/proc/<pid>/stat`, seconds (USER_HZ is 100 on Linux).
    fn cpu_seconds(&self) -> Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        // Fields after the command name, which is in parentheses and may hold spaces:
        // state is field 3, utime 14 and stime 15.
        let rest = stat.rsplit_once(')').context("/proc/<pid>/stat")?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| -> Result<f64> {
            Ok(fields
                .get(i)
                .context("/proc/<pid>/stat field")?
                .parse::<f64>()?)
        };
        Ok((ticks(11)? + ticks(12)?) / 100.0)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for KerfProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A plain `GET` on 127.0.0.1:`port` answers 200.
fn http_ok(port: u16, path: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf).unwrap_or(0);
    buf[..n].starts_with(b"HTTP/1.1 200")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scenarios_have_karpenters_shapes() {
        let b = Scenario::basic(1000);
        assert_eq!((b.pods(), b.pods_after()), (1000, 700));
        let w = Scenario::wide(30, 1000);
        assert_eq!(
            (w.workloads.len(), w.pods(), w.pods_after()),
            (30, 1000, 700)
        );
        let shapes: std::collections::BTreeSet<_> =
            w.workloads.iter().map(|w| (&w.cpu, &w.memory)).collect();
        assert_eq!(shapes.len(), 30);
        let s = Scenario::hostname_spread(1000);
        assert_eq!((s.pods(), s.pods_after()), (1000, 700));
        let smoke = Scenario::basic(20);
        assert_eq!((smoke.pods(), smoke.pods_after()), (20, 14));
    }

    #[test]
    fn dispatched_sums_one_flow_schema() {
        let text = "\
# TYPE apiserver_flowcontrol_dispatched_requests_total counter
apiserver_flowcontrol_dispatched_requests_total{flow_schema=\"kerf-bench\",priority_level=\"workload-high\"} 41
apiserver_flowcontrol_dispatched_requests_total{flow_schema=\"exempt\",priority_level=\"exempt\"} 900
apiserver_flowcontrol_dispatched_requests_total{flow_schema=\"kerf-bench\",priority_level=\"other\"} 1
";
        assert_eq!(dispatched(text, "kerf-bench"), 42.0);
    }
}
