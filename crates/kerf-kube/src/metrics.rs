//! Karpenter's metrics, by Karpenter's names, types and labels
//! (`../shared/reference/karpenter-edges.md` §5), so its dashboards and alerts read kerf
//! unchanged. kerf's own additions carry the `kerf_` prefix.
//!
//! Two kinds of metric live here:
//! - **Counters, histograms and summaries** are recorded where the thing happens (a claim
//!   created, an instance terminated, an eviction answered), through the `metrics`
//!   facade: a recorder that is not installed (the simulator, unit tests) makes them
//!   free no-ops.
//! - **State gauges** (`nodes_allocatable`, `pods_state`, `nodepools_usage`, ...) are
//!   read off the [`ClusterView`] by [`Gauges::refresh`], at most every
//!   [`REFRESH_EVERY_MS`], and set anew. A series whose object went (a node deleted) is
//!   no longer set and the exporter drops it after [`GAUGE_IDLE`], as Karpenter's
//!   metrics store deletes the series of a deleted object.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kerf_controllers::{ClusterView, DeletionReason};
use kerf_disruption::{Decision, Method};
use kerf_model::{Resources, labels};
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;

use crate::state::SeenPod;

/// How often the state gauges are read off the view.
pub const REFRESH_EVERY_MS: i64 = 5_000;
/// A gauge not set for this long is dropped (three refreshes missed).
pub const GAUGE_IDLE: Duration = Duration::from_secs(15);

/// Karpenter's summaries (`pods_startup_duration_seconds`,
/// `nodes_termination_duration_seconds`) report these quantiles.
const QUANTILES: [f64; 5] = [0.0, 0.5, 0.9, 0.99, 1.0];

/// Buckets of Karpenter's duration histograms (`metrics.DurationBuckets()`): 5 ms to
/// 10 min.
const DURATION_BUCKETS: [f64; 23] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 1.75,
    2.0, 2.5, 3.0, 5.0, 10.0, 600.0,
];

/// Buckets of Karpenter's AWS batch-size histogram (`pkg/batcher/metrics.go
/// SizeBuckets`): 1 to 1,000 requests.
const SIZE_BUCKETS: [f64; 34] = [
    1.0, 2.0, 4.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0,
    125.0, 150.0, 175.0, 200.0, 225.0, 250.0, 275.0, 300.0, 350.0, 400.0, 450.0, 500.0, 550.0,
    600.0, 700.0, 800.0, 900.0, 1000.0,
];

/// Every histogram kerf exports, with its buckets (the rest of the `metrics`
/// histograms are summaries).
const HISTOGRAMS: [(&str, &[f64]); 8] = [
    (
        "karpenter_scheduler_scheduling_duration_seconds",
        &DURATION_BUCKETS,
    ),
    (
        "karpenter_cloudprovider_duration_seconds",
        &DURATION_BUCKETS,
    ),
    (
        "karpenter_nodeclaims_termination_duration_seconds",
        &DURATION_BUCKETS,
    ),
    (
        "karpenter_voluntary_disruption_decision_evaluation_duration_seconds",
        &DURATION_BUCKETS,
    ),
    ("karpenter_pods_bound_duration_seconds", &DURATION_BUCKETS),
    // Recorded by kerf-aws's interruption queue.
    (
        "karpenter_interruption_message_queue_duration_seconds",
        &DURATION_BUCKETS,
    ),
    // Recorded by kerf-aws's batchers (`pkg/batcher/metrics.go`).
    (
        "karpenter_cloudprovider_batcher_batch_time_seconds",
        &DURATION_BUCKETS,
    ),
    ("karpenter_cloudprovider_batcher_batch_size", &SIZE_BUCKETS),
];

/// The exporter, configured as Karpenter's metrics are.
pub fn builder() -> PrometheusBuilder {
    let mut b = PrometheusBuilder::new()
        .set_quantiles(&QUANTILES)
        .expect("the quantiles are fixed and valid")
        // Summaries over a 10-minute window, as the Go client's default MaxAge.
        .set_bucket_duration(Duration::from_secs(120))
        .expect("non-zero")
        .set_bucket_count(std::num::NonZeroU32::new(5).expect("non-zero"))
        .idle_timeout(MetricKindMask::GAUGE, Some(GAUGE_IDLE));
    for (name, buckets) in HISTOGRAMS {
        b = b
            .set_buckets_for_metric(Matcher::Full(name.to_string()), buckets)
            .expect("the buckets are fixed and valid");
    }
    b
}

/// Installs the process-wide recorder; `/metrics` renders the handle.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = builder()
        .install_recorder()
        .map_err(|e| anyhow::anyhow!("installing the metrics recorder: {e}"))?;
    describe();
    Ok(handle)
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        "karpenter_build_info",
        "A metric with a constant '1' value labeled by version from which kerf was built."
    );
    describe_counter!(
        "karpenter_nodeclaims_created_total",
        "Number of nodeclaims created in total by Karpenter. Labeled by reason the nodeclaim was created and the owning nodepool."
    );
    describe_counter!(
        "karpenter_nodeclaims_terminated_total",
        "Number of nodeclaims terminated in total by Karpenter. Labeled by the owning nodepool."
    );
    describe_counter!(
        "karpenter_nodeclaims_disrupted_total",
        "Number of nodeclaims disrupted in total by Karpenter. Labeled by reason the nodeclaim was disrupted and the owning nodepool."
    );
    describe_counter!(
        "karpenter_nodes_created_total",
        "Number of nodes created in total by Karpenter. Labeled by owning nodepool."
    );
    describe_counter!(
        "karpenter_nodes_terminated_total",
        "Number of nodes terminated in total by Karpenter. Labeled by owning nodepool."
    );
    describe_counter!(
        "karpenter_nodes_drained_total",
        "The total number of nodes drained by Karpenter"
    );
    describe_histogram!(
        "karpenter_nodes_termination_duration_seconds",
        "The time taken between a node's deletion request and the removal of its finalizer"
    );
    describe_histogram!(
        "karpenter_nodeclaims_termination_duration_seconds",
        "Duration of NodeClaim termination in seconds."
    );
    describe_counter!(
        "karpenter_pods_eviction_requests_total",
        "The number of eviction requests made by Karpenter, by response code"
    );
    describe_histogram!(
        "karpenter_pods_startup_duration_seconds",
        "The time from pod creation until the pod is running."
    );
    describe_histogram!(
        "karpenter_pods_bound_duration_seconds",
        "The time from pod creation until the pod is bound."
    );
    describe_histogram!(
        "karpenter_cloudprovider_batcher_batch_time_seconds",
        "Duration of the batching window per batcher"
    );
    describe_histogram!(
        "karpenter_cloudprovider_batcher_batch_size",
        "Size of the request batch per batcher"
    );
    describe_histogram!(
        "karpenter_scheduler_scheduling_duration_seconds",
        "Duration of scheduling simulations used for deprovisioning and provisioning in seconds."
    );
    describe_histogram!(
        "karpenter_voluntary_disruption_decision_evaluation_duration_seconds",
        "Duration of the disruption decision evaluation process in seconds."
    );
    describe_counter!(
        "karpenter_voluntary_disruption_decisions_total",
        "Number of disruption decisions performed. Labeled by disruption decision, reason, and consolidation type."
    );
    describe_histogram!(
        "karpenter_cloudprovider_duration_seconds",
        "Duration of cloud provider method calls. Labeled by the controller, method name and provider."
    );
    describe_counter!(
        "karpenter_cloudprovider_errors_total",
        "Total number of errors returned from CloudProvider calls."
    );
    describe_gauge!(
        "karpenter_nodepools_usage",
        "The amount of resources that have been provisioned for a nodepool."
    );
    describe_gauge!(
        "karpenter_nodepools_limit",
        "Limits specified on the nodepool that restrict the quantity of resources provisioned."
    );
    describe_gauge!(
        "karpenter_pods_state",
        "Pod state is the current state of pods. This metric can be used several ways as it is labeled by the pod name, namespace, owner, node, nodepool name, zone, architecture, capacity type, instance type and pod phase."
    );
    describe_gauge!(
        "karpenter_cluster_state_node_count",
        "Current count of nodes in cluster state"
    );
    describe_gauge!(
        "karpenter_cluster_state_synced",
        "Returns 1 if cluster state is synced and 0 otherwise."
    );
    describe_gauge!(
        "karpenter_cluster_utilization_percent",
        "Utilization of allocatable resources by pod requests"
    );
    describe_gauge!(
        "karpenter_scheduler_unschedulable_pods_count",
        "The number of unschedulable Pods."
    );
    describe_gauge!(
        "kerf_nodepool_cost_per_hour",
        "What the NodePool's launched instances cost, US dollars per hour, by capacity type."
    );
    describe_gauge!(
        "kerf_disruption_savings_per_hour_total",
        "Dollars per hour saved by the disruption commands kerf executed (price of the nodes less price of the replacements), by NodePool and method."
    );
}

/// Karpenter's `resource_type` label: the resource name, lower case, with `_` for every
/// character Prometheus does not take (`ephemeral-storage` → `ephemeral_storage`).
pub fn resource_type(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// A quantity in base units, as Prometheus reports it (cores, bytes, pods).
fn units(q: kerf_model::Quantity) -> f64 {
    q.0 as f64 / 1000.0
}

/// Karpenter's `reason` label of a claim deleted for `reason` (a disruption method,
/// `interruption`, ...): its `DisruptionReason`, lower case (`empty`, `underutilized`,
/// `drifted`, ...); `None` for deletions that are no disruption.
///
/// Interruptions are labelled as Karpenter's interruption controller labels them, by the
/// message's kind: the loops' interruption is the spot interruption warning
/// (`spot_interrupted`), their scheduled maintenance an AWS Health scheduled change
/// (`scheduled_change`).
pub fn disruption_reason_label(reason: &DeletionReason) -> Option<String> {
    match reason {
        DeletionReason::Interruption => Some("spot_interrupted".into()),
        DeletionReason::ScheduledMaintenance => Some("scheduled_change".into()),
        other => other.karpenter().map(str::to_ascii_lowercase),
    }
}

/// Karpenter's `consolidation_type` label: `empty`, `single`, `multi`, `""` otherwise.
fn consolidation_type(method: Method) -> &'static str {
    match method {
        Method::Emptiness => "empty",
        Method::SingleNodeConsolidation => "single",
        Method::MultiNodeConsolidation => "multi",
        Method::Drift | Method::Expiration => "",
    }
}

pub fn build_info() {
    gauge!(
        "karpenter_build_info",
        "version" => env!("CARGO_PKG_VERSION"),
        "goversion" => "",
        "goarch" => std::env::consts::ARCH,
        "commit" => option_env!("KERF_COMMIT").unwrap_or(""),
    )
    .set(1.0);
}

/// Registers the histograms kerf will record, at zero, so the first observation is an
/// increase `rate()` can see (a series that appears with its first sample shows none).
pub fn register(provider: &'static str) {
    for (controller, method) in [
        ("nodeclaim.lifecycle", "Create"),
        ("nodeclaim.termination", "Delete"),
        ("nodeclaim.garbagecollection", "List"),
    ] {
        let _ = histogram!(
            "karpenter_cloudprovider_duration_seconds",
            "controller" => controller,
            "method" => method,
            "provider" => provider,
        );
    }
    let _ = histogram!("karpenter_scheduler_scheduling_duration_seconds", "controller" => "provisioner");
    let _ = histogram!(
        "karpenter_voluntary_disruption_decision_evaluation_duration_seconds",
        "reason" => "",
        "consolidation_type" => "",
    );
    let _ = histogram!("karpenter_pods_bound_duration_seconds");
}

pub fn claim_created(nodepool: &str, reason: &str) {
    let _ = histogram!("karpenter_nodeclaims_termination_duration_seconds", "nodepool" => nodepool.to_string());
    counter!(
        "karpenter_nodeclaims_created_total",
        "reason" => reason.to_string(),
        "nodepool" => nodepool.to_string(),
        "min_values_relaxed" => "false",
    )
    .increment(1);
}

pub fn claim_terminated(nodepool: &str, capacity_type: &str, zone: &str, seconds: Option<f64>) {
    counter!(
        "karpenter_nodeclaims_terminated_total",
        "nodepool" => nodepool.to_string(),
        "capacity_type" => capacity_type.to_string(),
        "zone" => zone.to_string(),
    )
    .increment(1);
    if let Some(s) = seconds {
        histogram!("karpenter_nodeclaims_termination_duration_seconds", "nodepool" => nodepool.to_string())
            .record(s);
    }
}

/// A claim deleted for `reason`; deletions that are no disruption are not counted.
pub fn claim_disrupted(reason: &DeletionReason, nodepool: &str, capacity_type: &str) {
    let Some(reason) = disruption_reason_label(reason) else {
        return;
    };
    counter!(
        "karpenter_nodeclaims_disrupted_total",
        "reason" => reason,
        "nodepool" => nodepool.to_string(),
        "capacity_type" => capacity_type.to_string(),
    )
    .increment(1);
}

/// One disruption command begun.
pub fn disruption_decided(method: Method, decision: Decision) {
    counter!(
        "karpenter_voluntary_disruption_decisions_total",
        "decision" => decision.as_str(),
        "reason" => disruption_reason_label(&DeletionReason::Disruption(method)).unwrap_or_default(),
        "consolidation_type" => consolidation_type(method),
    )
    .increment(1);
}

pub fn node_created(nodepool: &str, zone: &str) {
    counter!(
        "karpenter_nodes_created_total",
        "nodepool" => nodepool.to_string(),
        "zone" => zone.to_string(),
    )
    .increment(1);
}

pub fn node_terminated(nodepool: &str, zone: &str, seconds: Option<f64>) {
    counter!(
        "karpenter_nodes_terminated_total",
        "nodepool" => nodepool.to_string(),
        "zone" => zone.to_string(),
    )
    .increment(1);
    counter!("karpenter_nodes_drained_total", "nodepool" => nodepool.to_string()).increment(1);
    if let Some(s) = seconds {
        histogram!("karpenter_nodes_termination_duration_seconds", "nodepool" => nodepool.to_string())
            .record(s);
    }
}

/// An eviction request's answer: `200`, `429`, `404`, ... (`error` for no answer).
pub fn eviction_request(code: &str) {
    counter!("karpenter_pods_eviction_requests_total", "code" => code.to_string()).increment(1);
}

/// A call into the cloud provider and how it ended.
pub fn cloudprovider_call(
    provider: &'static str,
    controller: &'static str,
    method: &'static str,
    seconds: f64,
    error: Option<&'static str>,
) {
    histogram!(
        "karpenter_cloudprovider_duration_seconds",
        "controller" => controller,
        "method" => method,
        "provider" => provider,
    )
    .record(seconds);
    if let Some(error) = error {
        counter!(
            "karpenter_cloudprovider_errors_total",
            "controller" => controller,
            "method" => method,
            "provider" => provider,
            "error" => error,
        )
        .increment(1);
    }
}

/// Times the work a step of the loops reports: each scheduling simulation into
/// `scheduler_scheduling_duration_seconds`, each full disruption pass into
/// `voluntary_disruption_decision_evaluation_duration_seconds`, labelled by the method
/// that decided (Karpenter times each method it tries; kerf's pass tries them all in
/// one go, so a pass that decides nothing is labelled `""`).
#[derive(Default)]
pub struct StepTimer {
    started: Option<std::time::Instant>,
}

impl kerf_controllers::Stopwatch for StepTimer {
    fn start(&mut self) {
        self.started = Some(std::time::Instant::now());
    }

    /// At debug, one line per full pass: the commands it decided and how many nodes it
    /// kept for each kind of reason (`budget of nodepool default (10%) already used: 80`).
    fn disruption_pass(&mut self, outcome: &kerf_disruption::Outcome) {
        if !tracing::enabled!(target: "kerf_kube::shell", tracing::Level::DEBUG) {
            return;
        }
        let commands: Vec<String> = (outcome.commands.iter())
            .map(|c| {
                format!(
                    "{} {} of {}",
                    c.method.as_str(),
                    c.decision.as_str(),
                    c.nodes.len()
                )
            })
            .collect();
        let mut kept: BTreeMap<String, usize> = BTreeMap::new();
        for k in &outcome.kept {
            *kept.entry(k.reason.kind()).or_default() += 1;
        }
        tracing::debug!(target: "kerf_kube::shell", ?commands, ?kept, "disruption pass");
    }

    fn stop(&mut self, work: kerf_controllers::Work) {
        let Some(started) = self.started.take() else {
            return;
        };
        let seconds = started.elapsed().as_secs_f64();
        match work {
            kerf_controllers::Work::Scheduling => {
                histogram!("karpenter_scheduler_scheduling_duration_seconds", "controller" => "provisioner")
                    .record(seconds);
            }
            kerf_controllers::Work::DisruptionPass { decided } => {
                let (reason, consolidation_type) = match decided {
                    Some(method) => (
                        disruption_reason_label(&DeletionReason::Disruption(method))
                            .unwrap_or_default(),
                        consolidation_type(method),
                    ),
                    None => (String::new(), ""),
                };
                histogram!(
                    "karpenter_voluntary_disruption_decision_evaluation_duration_seconds",
                    "reason" => reason,
                    "consolidation_type" => consolidation_type,
                )
                .record(seconds);
            }
        }
    }
}

pub fn pod_bound(seconds: f64) {
    histogram!("karpenter_pods_bound_duration_seconds").record(seconds);
}

pub fn pod_started(seconds: f64) {
    histogram!("karpenter_pods_startup_duration_seconds").record(seconds);
}

/// Which pods' binding and startup were already measured (by UID), so a pod counts
/// once; pods bound or ready before this process started are not measured.
#[derive(Default)]
pub struct PodStartup {
    measured: BTreeSet<String>,
    bound: BTreeSet<String>,
    since_ms: i64,
}

impl PodStartup {
    pub fn new(since_ms: i64) -> PodStartup {
        PodStartup {
            measured: BTreeSet::new(),
            bound: BTreeSet::new(),
            since_ms,
        }
    }

    /// A pod as a watch saw it: measured once it is Ready, from its creation.
    pub fn observe(&mut self, pod: &SeenPod) {
        let Some(uid) = pod.uid.as_deref() else {
            return;
        };
        if pod.created_at == 0 {
            return;
        }
        // `karpenter_pods_bound_duration_seconds`: creation to `PodScheduled`.
        if !self.bound.contains(uid)
            && let Some(bound_ms) = pod.scheduled_at
        {
            self.bound.insert(uid.to_string());
            if bound_ms >= self.since_ms {
                pod_bound((bound_ms - pod.created_at).max(0) as f64 / 1000.0);
            }
        }
        if self.measured.contains(uid) {
            return;
        }
        let Some(ready_ms) = pod.ready_at else {
            return;
        };
        self.measured.insert(uid.to_string());
        if ready_ms < self.since_ms {
            return;
        }
        let seconds = (ready_ms - pod.created_at).max(0) as f64 / 1000.0;
        pod_started(seconds);
    }

    pub fn forget(&mut self, pod: &SeenPod) {
        if let Some(uid) = pod.uid.as_deref() {
            self.measured.remove(uid);
            self.bound.remove(uid);
        }
    }
}

/// The state gauges, refreshed from the view, and kerf's running savings total.
#[derive(Default)]
pub struct Gauges {
    last_refresh_ms: Option<i64>,
    nodes: NodeTable,
    /// Dollars per hour saved, by `(nodepool, method)`, since the process started.
    savings: BTreeMap<(String, String), f64>,
}

impl Gauges {
    /// Gauges whose per-node table is `nodes` (the one `/metrics` renders).
    pub fn new(nodes: NodeTable) -> Gauges {
        Gauges {
            nodes,
            ..Gauges::default()
        }
    }

    /// A disruption command's savings (price of its nodes less its replacements'), by
    /// the NodePool of each node. The facade's counters count integers, so the running
    /// total is kept here and exported as a gauge that only grows: `increase()` and
    /// `rate()` read it as they read a counter.
    pub fn saved(&mut self, nodepool: &str, method: &str, dollars_per_hour: f64) {
        let total = self
            .savings
            .entry((nodepool.to_string(), method.to_string()))
            .or_default();
        *total += dollars_per_hour;
        set_savings(nodepool, method, *total);
    }

    /// Sets every state gauge from `view`, unless it was done less than
    /// [`REFRESH_EVERY_MS`] ago (then false). `now_ms` is Unix milliseconds.
    pub fn refresh(&mut self, view: &ClusterView, synced: bool, now_ms: i64) -> bool {
        if self
            .last_refresh_ms
            .is_some_and(|at| now_ms - at < REFRESH_EVERY_MS)
        {
            return false;
        }
        self.last_refresh_ms = Some(now_ms);
        build_info();
        gauge!("karpenter_cluster_state_synced").set(if synced { 1.0 } else { 0.0 });
        gauge!("karpenter_cluster_state_node_count").set(view.nodes.len() as f64);
        gauge!("karpenter_scheduler_unschedulable_pods_count", "controller" => "provisioner")
            .set(view.pending.len() as f64);
        refresh_nodes(view, now_ms, &self.nodes);
        refresh_pods(view);
        refresh_nodepools(view);
        for ((pool, method), total) in &self.savings {
            set_savings(pool, method, *total);
        }
        true
    }
}

fn set_savings(nodepool: &str, method: &str, total: f64) {
    gauge!(
        "kerf_disruption_savings_per_hour_total",
        "nodepool" => nodepool.to_string(),
        "method" => method.to_string(),
    )
    .set(total);
}

/// Karpenter's per-node gauges, with their help texts, in the order [`NodeRow::values`]
/// holds them.
const NODE_GAUGES: [(&str, &str); 4] = [
    (
        "karpenter_nodes_allocatable",
        "Node allocatable are the resources allocatable by nodes.",
    ),
    (
        "karpenter_nodes_total_pod_requests",
        "Node total pod requests are the resources requested by pods bound to nodes, not including DaemonSet pods.",
    ),
    (
        "karpenter_nodes_total_daemon_requests",
        "Node total daemon requests are the resource requested by DaemonSet pods bound to nodes.",
    ),
    (
        "karpenter_nodes_system_overhead",
        "Node system daemon overhead are the resources reserved for system overhead, the difference between the node's capacity and allocatable values are reported by the status.",
    ),
];
const NODE_LIFETIME: (&str, &str) = (
    "karpenter_nodes_current_lifetime_seconds",
    "Node age in seconds",
);

/// One node's gauges as of the last refresh.
struct NodeRow {
    /// The node's label pairs, rendered and escaped: `node_name="…",nodepool="…",…`.
    labels: String,
    /// Per resource of the node's allocatable (`resource_type`): allocatable, pod
    /// requests, DaemonSet requests, system overhead.
    values: Vec<(String, [f64; 4])>,
    lifetime_seconds: Option<f64>,
}

/// The per-node gauges (`karpenter_nodes_*`), kept as a table the `/metrics` handler
/// renders, not as series in the exporter's registry. A node has some twenty series,
/// each a key of ten labels that the registry holds twice (the series and its idle
/// tracking): 17 MB for 1,000 nodes, a fifth of kerf's heap. A row is a few hundred
/// bytes. A node's rows go at the next refresh after it does, as Karpenter's metrics
/// store deletes a deleted node's series.
#[derive(Clone, Default)]
pub struct NodeTable(Arc<Mutex<Vec<NodeRow>>>);

impl NodeTable {
    fn set(&self, rows: Vec<NodeRow>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = rows;
    }

    /// The table in the Prometheus text format.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let rows = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        if rows.is_empty() {
            return out;
        }
        for (i, (name, help)) in NODE_GAUGES.iter().enumerate() {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n");
            for row in rows.iter() {
                for (resource, values) in &row.values {
                    let _ = writeln!(
                        out,
                        "{name}{{{},resource_type=\"{resource}\"}} {}",
                        row.labels, values[i]
                    );
                }
            }
            out.push('\n');
        }
        let (name, help) = NODE_LIFETIME;
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n");
        for row in rows.iter() {
            if let Some(seconds) = row.lifetime_seconds {
                let _ = writeln!(out, "{name}{{{}}} {seconds}", row.labels);
            }
        }
        out.push('\n');
        out
    }
}

/// A label value as the Prometheus text format writes it.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The labels Karpenter puts on a node's gauges: the node's name and the well-known
/// labels it carries, snake-cased; rendered for a [`NodeRow`].
fn node_labels(node: &kerf_model::Node) -> String {
    let get = |k: &str| node.labels.get(k).map_or("", String::as_str);
    let phase = if node.deleting {
        "Terminating"
    } else if node.ready {
        "Ready"
    } else {
        "NotReady"
    };
    let managed = if node.labels.contains_key(labels::NODEPOOL) {
        "true"
    } else {
        "false"
    };
    [
        ("node_name", node.name.as_str()),
        ("nodepool", get(labels::NODEPOOL)),
        ("zone", get(labels::ZONE)),
        ("arch", get(labels::ARCH)),
        ("os", get(labels::OS)),
        ("capacity_type", get(labels::CAPACITY_TYPE)),
        ("instance_type", get(labels::INSTANCE_TYPE)),
        ("phase", phase),
        ("managed", managed),
    ]
    .iter()
    .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
    .collect::<Vec<_>>()
    .join(",")
}

fn is_daemon(pod: &kerf_model::Pod) -> bool {
    pod.owner.as_ref().is_some_and(|o| o.kind == "DaemonSet")
}

fn refresh_nodes(view: &ClusterView, now_ms: i64, table: &NodeTable) {
    let mut allocatable = Resources::new();
    let mut requested = Resources::new();
    let mut rows = Vec::with_capacity(view.nodes.len());
    for node in view.nodes.values() {
        let mut pods = Resources::new();
        let mut daemons = Resources::new();
        for key in view.pods_by_node.get(&node.name).into_iter().flatten() {
            if let Some(p) = view.pods.get(key) {
                if is_daemon(&p.pod) {
                    daemons.add(&p.pod.requests);
                } else {
                    pods.add(&p.pod.requests);
                }
            }
        }
        let overhead = node.capacity.minus(&node.allocatable);
        // One value per resource the node has allocatable; a resource the others lack
        // reads 0, so a node with no DaemonSet pods still reports
        // `total_daemon_requests` and sums add up.
        let values = node
            .allocatable
            .names()
            .map(|resource| {
                let of = |r: &Resources| units(r.get(resource));
                (
                    resource_type(resource),
                    [
                        of(&node.allocatable),
                        of(&pods),
                        of(&daemons),
                        of(&overhead),
                    ],
                )
            })
            .collect();
        rows.push(NodeRow {
            labels: node_labels(node),
            values,
            lifetime_seconds: node
                .created_at
                .map(|created| (now_ms / 1000 - created).max(0) as f64),
        });
        allocatable.add(&node.allocatable);
        requested.add(&pods);
        requested.add(&daemons);
    }
    table.set(rows);
    for (resource, total) in allocatable.iter() {
        if total.0 <= 0 {
            continue;
        }
        let used = requested.get(resource);
        gauge!("karpenter_cluster_utilization_percent", "resource_type" => resource_type(resource))
            .set(100.0 * used.0 as f64 / total.0 as f64);
    }
}

fn refresh_pods(view: &ClusterView) {
    for (key, state) in &view.pods {
        let pod = &state.pod;
        let node = pod.node_name.as_deref().and_then(|n| view.nodes.get(n));
        let node_label = |k: &str| {
            node.and_then(|n| n.labels.get(k))
                .cloned()
                .unwrap_or_default()
        };
        let phase = match (&pod.node_name, pod.started_at) {
            (Some(_), Some(_)) => "Running",
            _ => "Pending",
        };
        gauge!(
            "karpenter_pods_state",
            "name" => key.name.clone(),
            "namespace" => key.namespace.clone(),
            "owner" => pod.owner.as_ref().map(|o| format!("{}/{}", o.kind, o.name)).unwrap_or_default(),
            "node" => pod.node_name.clone().unwrap_or_default(),
            "scheduled" => pod.node_name.is_some().to_string(),
            "nodepool" => node_label(labels::NODEPOOL),
            "zone" => node_label(labels::ZONE),
            "arch" => node_label(labels::ARCH),
            "capacity_type" => node_label(labels::CAPACITY_TYPE),
            "instance_type" => node_label(labels::INSTANCE_TYPE),
            "phase" => phase,
        )
        .set(1.0);
    }
}

fn refresh_nodepools(view: &ClusterView) {
    // Usage: what the pool's claims' nodes hold (capacity), as Karpenter's state counts it.
    let mut usage: BTreeMap<&str, Resources> = BTreeMap::new();
    let mut cost: BTreeMap<(&str, String), f64> = BTreeMap::new();
    let prices: BTreeMap<(&str, &str, &str), f64> = view
        .instance_types
        .iter()
        .flat_map(|t| {
            t.offerings.iter().map(move |o| {
                (
                    (t.name.as_str(), o.zone.as_str(), o.capacity_type.as_str()),
                    o.price,
                )
            })
        })
        .collect();
    for claim in view.claims.values() {
        if let Some(node) = claim.node_name.as_deref().and_then(|n| view.nodes.get(n)) {
            usage
                .entry(claim.nodepool.as_str())
                .or_default()
                .add(&node.capacity);
        }
        if let Some(offer) = &claim.launched {
            let price = prices
                .get(&(
                    offer.instance_type.as_str(),
                    offer.zone.as_str(),
                    offer.capacity_type.as_str(),
                ))
                .copied()
                .unwrap_or(0.0);
            *cost
                .entry((claim.nodepool.as_str(), offer.capacity_type.clone()))
                .or_default() += price;
        }
    }
    for pool in &view.nodepools {
        let used = usage.remove(pool.name.as_str()).unwrap_or_default();
        for resource in ["cpu", "memory", "pods", "ephemeral-storage"] {
            gauge!(
                "karpenter_nodepools_usage",
                "nodepool" => pool.name.clone(),
                "resource_type" => resource_type(resource),
            )
            .set(units(used.get(resource)));
        }
        for (resource, q) in pool.limits.iter() {
            gauge!(
                "karpenter_nodepools_limit",
                "nodepool" => pool.name.clone(),
                "resource_type" => resource_type(resource),
            )
            .set(units(q));
        }
        for capacity_type in [
            labels::CAPACITY_TYPE_ON_DEMAND,
            labels::CAPACITY_TYPE_SPOT,
            labels::CAPACITY_TYPE_RESERVED,
        ] {
            let dollars = cost
                .remove(&(pool.name.as_str(), capacity_type.to_string()))
                .unwrap_or(0.0);
            gauge!(
                "kerf_nodepool_cost_per_hour",
                "nodepool" => pool.name.clone(),
                "capacity_type" => capacity_type,
            )
            .set(dollars);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kerf_controllers::{Claim, PodState};

    fn view() -> ClusterView {
        let mut view = ClusterView::default();
        let mut labels = kerf_model::Labels::new();
        labels.insert(labels::NODEPOOL.into(), "default".into());
        labels.insert(labels::ZONE.into(), "test-zone-a".into());
        labels.insert(labels::CAPACITY_TYPE.into(), "spot".into());
        labels.insert(labels::INSTANCE_TYPE.into(), "m5.large".into());
        let allocatable =
            Resources::parse([("cpu", "2"), ("memory", "8Gi"), ("pods", "29")]).unwrap();
        let node = kerf_model::Node::new("node-a", labels, allocatable);
        view.nodes.insert("node-a".into(), node);
        let mut pod = kerf_model::Pod::new(
            "shop",
            "web-1",
            Resources::parse([("cpu", "500m"), ("memory", "1Gi")]).unwrap(),
        );
        pod.node_name = Some("node-a".into());
        view.insert_pod(PodState {
            pod,
            created_at: 0,
            nominated: None,
        });
        let mut pool = kerf_model::NodePool::new("default");
        pool.limits
            .set("cpu", kerf_model::Quantity::from_units(100));
        view.nodepools.push(pool);
        view.claims.insert(
            "default-abc".into(),
            Claim {
                name: "default-abc".into(),
                nodepool: "default".into(),
                labels: kerf_model::Labels::new(),
                annotations: kerf_model::Labels::new(),
                taints: vec![],
                startup_taints: vec![],
                options: Arc::from([]),
                created_at: 0,
                expire_after: None,
                termination_grace_period: None,
                provider_id: Some("kwok://node-a".into()),
                launched: None,
                image_id: None,
                node_name: Some("node-a".into()),
                initialized: true,
                deleting_since: None,
                deletion_reason: None,
                drifted: None,
                consolidatable: None,
            },
        );
        view
    }

    fn render(f: impl FnOnce()) -> String {
        let recorder = builder().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe();
            f();
        });
        handle.render()
    }

    #[test]
    fn karpenter_names_types_and_labels() {
        let nodes = NodeTable::default();
        let mut text = render(|| {
            claim_created("default", "provisioning");
            pod_started(3.5);
            node_terminated("default", "test-zone-a", Some(12.0));
            cloudprovider_call("kwok", "nodeclaim.lifecycle", "Create", 0.2, None);
            let mut gauges = Gauges::new(nodes.clone());
            gauges.saved("default", "emptiness", 0.096);
            assert!(gauges.refresh(&view(), true, 1_000_000));
            assert!(!gauges.refresh(&view(), true, 1_000_001), "throttled");
        });
        text.push_str(&nodes.render());
        for line in [
            "# TYPE karpenter_pods_startup_duration_seconds summary",
            "karpenter_pods_startup_duration_seconds{quantile=\"0.5\"} 3.49",
            "# TYPE karpenter_nodes_termination_duration_seconds summary",
            "# TYPE karpenter_cloudprovider_duration_seconds histogram",
            "karpenter_nodeclaims_created_total{reason=\"provisioning\",nodepool=\"default\",min_values_relaxed=\"false\"} 1",
            "karpenter_cluster_state_synced 1",
            "karpenter_nodepools_limit{nodepool=\"default\",resource_type=\"cpu\"} 100",
            "karpenter_nodepools_usage{nodepool=\"default\",resource_type=\"cpu\"} 2",
            "kerf_disruption_savings_per_hour_total{nodepool=\"default\",method=\"emptiness\"} 0.096",
            "karpenter_cluster_utilization_percent{resource_type=\"cpu\"} 25",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        let allocatable = text
            .lines()
            .find(|l| {
                l.starts_with("karpenter_nodes_allocatable{")
                    && l.contains("resource_type=\"memory\"")
            })
            .unwrap_or_else(|| panic!("no memory allocatable in\n{text}"));
        for label in [
            "node_name=\"node-a\"",
            "nodepool=\"default\"",
            "zone=\"test-zone-a\"",
            "capacity_type=\"spot\"",
            "instance_type=\"m5.large\"",
        ] {
            assert!(allocatable.contains(label), "{label} not in {allocatable}");
        }
        assert!(allocatable.ends_with(" 8589934592"), "{allocatable}");
        let requests = text
            .lines()
            .find(|l| l.starts_with("karpenter_nodes_total_pod_requests{") && l.contains("\"cpu\""))
            .unwrap();
        assert!(requests.ends_with(" 0.5"), "{requests}");
        let pod = text
            .lines()
            .find(|l| l.starts_with("karpenter_pods_state{"))
            .unwrap();
        assert!(pod.contains("name=\"web-1\"") && pod.contains("namespace=\"shop\""));
        assert!(pod.contains("node=\"node-a\"") && pod.contains("scheduled=\"true\""));
    }

    #[test]
    fn a_gone_nodes_gauges_go_at_the_next_refresh() {
        let nodes = NodeTable::default();
        let mut gauges = Gauges::new(nodes.clone());
        let mut view = view();
        let node = view.nodes.get_mut("node-a").unwrap();
        node.labels
            .insert(labels::INSTANCE_TYPE.into(), "odd\"type\\".into());
        node.created_at = Some(1_000);
        render(|| assert!(gauges.refresh(&view, true, 1_060_000)));
        let text = nodes.render();
        assert!(
            text.contains("# TYPE karpenter_nodes_allocatable gauge\n"),
            "{text}"
        );
        let lifetime = text
            .lines()
            .find(|l| l.starts_with("karpenter_nodes_current_lifetime_seconds{"))
            .unwrap_or_else(|| panic!("no lifetime in\n{text}"));
        assert!(lifetime.ends_with("} 60"), "{lifetime}");
        assert!(
            lifetime.contains(r#"instance_type="odd\"type\\""#),
            "{lifetime}"
        );
        view.nodes.clear();
        render(|| assert!(gauges.refresh(&view, true, 1_070_000)));
        assert_eq!(nodes.render(), "");
    }

    #[test]
    fn the_aws_batcher_metrics_are_histograms_with_karpenters_buckets() {
        // Recorded as kerf-aws's batcher records them.
        let text = render(|| {
            histogram!("karpenter_cloudprovider_batcher_batch_time_seconds", "batcher" => "terminate_instances")
                .record(0.035);
            histogram!("karpenter_cloudprovider_batcher_batch_size", "batcher" => "terminate_instances")
                .record(7.0);
        });
        for line in [
            "# TYPE karpenter_cloudprovider_batcher_batch_time_seconds histogram",
            "karpenter_cloudprovider_batcher_batch_time_seconds_bucket{batcher=\"terminate_instances\",le=\"0.05\"} 1",
            "karpenter_cloudprovider_batcher_batch_time_seconds_bucket{batcher=\"terminate_instances\",le=\"600\"} 1",
            "# TYPE karpenter_cloudprovider_batcher_batch_size histogram",
            "karpenter_cloudprovider_batcher_batch_size_bucket{batcher=\"terminate_instances\",le=\"5\"} 0",
            "karpenter_cloudprovider_batcher_batch_size_bucket{batcher=\"terminate_instances\",le=\"10\"} 1",
            "karpenter_cloudprovider_batcher_batch_size_bucket{batcher=\"terminate_instances\",le=\"1000\"} 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("quantile"), "a summary in\n{text}");
    }

    #[test]
    fn resource_type_is_snake_case() {
        assert_eq!(resource_type("ephemeral-storage"), "ephemeral_storage");
        assert_eq!(resource_type("nvidia.com/gpu"), "nvidia_com_gpu");
    }

    #[test]
    fn disruption_methods_map_to_karpenter_reasons() {
        let label = |r: DeletionReason| disruption_reason_label(&r);
        assert_eq!(
            label(DeletionReason::Disruption(Method::Emptiness)).as_deref(),
            Some("empty")
        );
        assert_eq!(
            label(DeletionReason::Disruption(Method::MultiNodeConsolidation)).as_deref(),
            Some("underutilized")
        );
        assert_eq!(
            label(DeletionReason::Disruption(Method::Drift)).as_deref(),
            Some("drifted")
        );
        assert_eq!(
            label(DeletionReason::Interruption).as_deref(),
            Some("spot_interrupted")
        );
        assert_eq!(
            label(DeletionReason::ScheduledMaintenance).as_deref(),
            Some("scheduled_change")
        );
        assert_eq!(label(DeletionReason::LaunchFailed("x".into())), None);
        assert_eq!(consolidation_type(Method::Emptiness), "empty");
        assert_eq!(consolidation_type(Method::MultiNodeConsolidation), "multi");
        assert_eq!(consolidation_type(Method::Drift), "");
    }
}
