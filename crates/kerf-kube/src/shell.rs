//! The step loop and the executor: one task owns the [`State`] and the loops'
//! `Controller`. It applies what the watches and its own tasks report, steps the
//! controller when the view changed or a loop's deadline came (`Controller::next_wake`),
//! and performs the actions the step returns.
//!
//! The writes of one step go to the API server together (at most `WRITES_IN_FLIGHT` at
//! once, paced by the client's QPS limiter): each is decided on the state as the step
//! found it, and its answers are applied to the state as they come (the writes of one
//! wave touch different objects, so their order does not matter), so the next step
//! already sees what this one did.
//! Actions on the same object (a claim created, then its pods nominated to it) keep
//! their order: an action that touches an object an earlier action of the step touched
//! waits for the next wave of writes, which starts once the earlier wave is back. What takes long or waits
//! on others — a cloud launch or termination, an eviction, the cloud's instance list —
//! runs as a task in a `JoinSet` (at most one per object, so a repeated action is never
//! performed twice while the first is out), and its outcome comes back as a loop
//! `Event` on a later step. Writes carry the resourceVersion they were decided on; a
//! 409 means the view was stale, and the next step decides again on fresh state. A
//! Node's registration and initialization are the exception: kwok and the kubelet write
//! a new Node's status while it comes up, so after a 409 they are written once more, at
//! once, on the Node as a GET returns it (`patch_node_fresh`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kerf_api::crd;
use kerf_cloud::{CreateError, Created, Instance, LaunchRequest, Provider, ProviderError};
use kerf_controllers::{
    Action, Claim, ConditionType, Controller, DeletionReason, Event, Reason, Shown, Subject,
};
use kerf_model::labels;
use kerf_model::pod::PodKey;
use kube::api::{Api, DeleteParams, EvictParams, Patch, PatchParams, PostParams};
use kube::runtime::events::Recorder;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio::task::JoinSet;

use crate::claims;
use crate::events::{Dedupe, Outgoing};
use crate::metrics;
use crate::state::{Kind, RecentCloud, SeenNode, State};

/// How often the cloud's instance list is read again (garbage collection, adoption).
const LIST_INTERVAL_MS: i64 = 30_000;
/// An eviction refused (429) is retried after 100 ms, doubling to 10 s, as Karpenter.
const EVICT_BACKOFF_MIN_MS: i64 = 100;
const EVICT_BACKOFF_MAX_MS: i64 = 10_000;
/// A launch that failed for a reason other than capacity is retried after this long.
const LAUNCH_RETRY_MS: i64 = 5_000;
/// Instances (and their nodes) younger than this are not garbage, as the loops' rule.
const GC_GRACE_MS: i64 = 30_000;
/// Every call that leaves the process has a deadline.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an accepted eviction is not asked again while the watch has not yet shown its
/// pod terminating (it did in Basic: 439 evictions for 258 pods, each with an event).
const EVICTED_WAIT_MS: i64 = 10_000;
/// API writes of one step in flight at once. A scale-out of a thousand one-pod nodes
/// is a thousand registrations in a step or two; one at a time they took minutes. 128
/// was tried (BENCHMARKS.md, "7 December, night"): in one Basic run's debug log the
/// registrations ended 3 s sooner, but neither Basic's nor Hostname spread's scale-out
/// moved, and Hostname spread's peak RSS was 96.0 MiB against 90.4 at 32 (one
/// `kerf-kwokbench` run each): not worth it against the 100 MiB target.
const WRITES_IN_FLIGHT: usize = 32;

/// What a task reports when it ends.
pub enum Completion {
    Launched {
        claim: String,
        result: Result<Created, CreateError>,
    },
    Terminated {
        id: String,
        result: Result<(), ProviderError>,
    },
    Listed {
        result: Result<Vec<Instance>, ProviderError>,
    },
    Evicted {
        pod: PodKey,
        outcome: Eviction,
    },
    /// The event publisher stopped (its queue closed).
    PublisherStopped,
}

pub enum Eviction {
    /// The eviction API took it.
    Evicted,
    /// Nothing to evict any more (404, 409).
    Done,
    /// Not now — a 429 (a PodDisruptionBudget does not allow it), another error or a
    /// timeout — and why: tried again after a backoff.
    NotNow(String),
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Task {
    Launch(String),
    Terminate(String),
    Evict(PodKey),
    List,
}

/// The clock the loops run on: Unix milliseconds, strictly increasing from step to step
/// (claim names carry it).
fn unix_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Takes in the watch changes queued for the step loop (see [`Shell::step`]).
pub type Intake<'a> = dyn FnMut(&mut State) + Send + 'a;

pub struct Shell<P: Provider> {
    pub client: Client,
    pub provider: Arc<P>,
    pub state: State,
    controller: Controller,
    tasks: JoinSet<Completion>,
    running: BTreeSet<Task>,
    /// Retry-after times, per eviction and per launch that failed.
    evict_backoff: BTreeMap<PodKey, (i64, i64)>,
    /// Pods whose eviction the API accepted, and when. Until the watch shows such a pod
    /// terminating, a drain's every step asks for it again: not for `EVICTED_WAIT_MS`.
    evicted: BTreeMap<PodKey, i64>,
    launch_retry: BTreeMap<String, i64>,
    /// What each launch's provider asked to have on its NodeClaim (the class hash, the
    /// instance profile), written with the launch's labels.
    launch_annotations: BTreeMap<String, kerf_model::Labels>,
    /// Launches and terminations since the instance list in flight began.
    recent: RecentCloud,
    last_list_at: i64,
    last_now: i64,
    /// The view's generation the loops last stepped on: changes taken in during a
    /// step's writes (their answers, the watches' queue) come after the loops looked.
    stepped_on: u64,
    events: Vec<Event>,
    /// Kubernetes events, deduplicated here and published by a task of their own.
    dedupe: Dedupe,
    events_out: tokio::sync::mpsc::Sender<Outgoing>,
    /// Launch errors to write onto their claims' `Launched` condition.
    launch_errors: Vec<(String, String)>,
    /// The state gauges and kerf's running savings, for `/metrics`.
    pub gauges: metrics::Gauges,
}

impl<P: Provider> Shell<P> {
    pub fn new(
        client: Client,
        provider: Arc<P>,
        config: kerf_controllers::Config,
        recorder: Recorder,
    ) -> Shell<P> {
        let state = State::new(provider.instance_types(), provider.node_class_kind());
        let mut tasks = JoinSet::new();
        let (events_out, events_in) = crate::events::channel();
        tasks.spawn(async move {
            crate::events::publish_all(events_in, recorder).await;
            Completion::PublisherStopped
        });
        Shell {
            client,
            provider,
            state,
            controller: Controller::new(config),
            tasks,
            running: BTreeSet::new(),
            evict_backoff: BTreeMap::new(),
            evicted: BTreeMap::new(),
            launch_retry: BTreeMap::new(),
            launch_annotations: BTreeMap::new(),
            recent: RecentCloud::default(),
            last_list_at: i64::MIN / 2,
            last_now: 0,
            stepped_on: 0,
            events: Vec::new(),
            dedupe: Dedupe::default(),
            events_out,
            launch_errors: Vec::new(),
            gauges: metrics::Gauges::default(),
        }
    }

    fn now(&mut self) -> i64 {
        let now = unix_ms().max(self.last_now + 1);
        self.last_now = now;
        now
    }

    /// The task set, for the run loop to wait on.
    pub fn tasks(&mut self) -> &mut JoinSet<Completion> {
        &mut self.tasks
    }

    /// Starts an instance list if none is out and one is due (or none was ever read).
    pub fn maybe_list(&mut self) {
        let now = unix_ms();
        if self.running.contains(&Task::List) || now - self.last_list_at < LIST_INTERVAL_MS {
            return;
        }
        self.last_list_at = now;
        self.recent = RecentCloud::default();
        self.running.insert(Task::List);
        let provider = self.provider.clone();
        self.tasks.spawn(async move {
            let started = std::time::Instant::now();
            let result = match tokio::time::timeout(CALL_TIMEOUT, provider.list()).await {
                Ok(r) => r,
                Err(_) => Err(ProviderError::new("list timed out", true)),
            };
            metrics::cloudprovider_call(
                provider.name(),
                "nodeclaim.garbagecollection",
                "List",
                started.elapsed().as_secs_f64(),
                result.as_ref().err().map(|_| "CloudProviderError"),
            );
            Completion::Listed { result }
        });
    }

    /// Whether the view changed, or events came, after the loops last looked (during
    /// the step's own writes): the loops promise to miss nothing only to a shell that
    /// steps on every change, so another step is due at once.
    pub fn behind(&self) -> bool {
        self.state.view.generation != self.stepped_on
            || !self.state.events.is_empty()
            || !self.events.is_empty()
    }

    /// When the loops next want a step: at once if they are [`Shell::behind`], else
    /// when they ask to look again at an unchanged view.
    pub fn next_wake(&self) -> i64 {
        let now = self.last_now;
        if self.behind() {
            return now;
        }
        let mut wake = self.controller.next_wake(now, &self.state.view);
        // Backoffs already over wait for the loops to ask again (a pod evicted or
        // gone keeps its entry): a time past would make the loop spin.
        let backoffs = (self.evict_backoff.values().map(|(until, _)| *until))
            .chain(self.launch_retry.values().copied());
        if let Some(until) = backoffs.filter(|until| *until > now).min() {
            wake = wake.min(until);
        }
        // A list still running wakes the loop when it answers.
        if self.running.contains(&Task::List) {
            return wake;
        }
        wake.min(self.last_list_at + LIST_INTERVAL_MS)
    }

    pub fn complete(&mut self, done: Completion) {
        match done {
            Completion::PublisherStopped => {
                tracing::warn!("the event publisher stopped; events are no longer recorded")
            }
            Completion::Listed { result } => {
                self.running.remove(&Task::List);
                match result {
                    Ok(listed) => {
                        let recent = std::mem::take(&mut self.recent);
                        self.state.apply_instances(listed, &recent);
                        let claims = &self.state.view.claims;
                        self.launch_annotations
                            .retain(|c, _| claims.contains_key(c));
                    }
                    Err(e) => {
                        tracing::warn!(provider = self.provider.name(), error = %e, "listing instances failed");
                        // Try again soon rather than in a full interval.
                        self.last_list_at = unix_ms() - LIST_INTERVAL_MS + 2_000;
                    }
                }
            }
            Completion::Launched { claim, result } => {
                self.running.remove(&Task::Launch(claim.clone()));
                match result {
                    Ok(created) => {
                        tracing::info!(nodeclaim = %claim, instance = %created.instance.id, offer = %created.instance.offer, "launched");
                        if !created.refused.is_empty() {
                            self.events.push(Event::InsufficientCapacity {
                                claim: claim.clone(),
                                offers: created.refused,
                            });
                        }
                        if !created.annotations.is_empty() {
                            self.launch_annotations
                                .insert(claim.clone(), created.annotations);
                        }
                        self.recent
                            .launched
                            .insert(created.instance.id.clone(), created.instance.clone());
                        self.state.instance_launched(created.instance);
                    }
                    Err(CreateError::InsufficientCapacity(offers)) => {
                        tracing::info!(nodeclaim = %claim, offers = offers.len(), "insufficient capacity");
                        self.events
                            .push(Event::InsufficientCapacity { claim, offers });
                    }
                    Err(CreateError::Provider(message)) => {
                        // Karpenter keeps `Launched=Unknown` with the error and retries;
                        // it does not give the claim up.
                        tracing::warn!(nodeclaim = %claim, error = %message, "launch failed; retrying");
                        self.launch_retry
                            .insert(claim.clone(), unix_ms() + LAUNCH_RETRY_MS);
                        self.launch_errors.push((claim, message));
                    }
                    Err(e) => self.events.push(Event::LaunchFailed {
                        claim,
                        message: e.to_string(),
                    }),
                }
            }
            Completion::Terminated { id, result } => {
                self.running.remove(&Task::Terminate(id.clone()));
                match result {
                    Ok(()) => {
                        tracing::info!(instance = %id, "terminated");
                        self.recent.terminated.insert(id.clone());
                        self.state.instance_terminated(&id);
                    }
                    Err(e) => tracing::warn!(instance = %id, error = %e, "terminate failed"),
                }
            }
            Completion::Evicted { pod, outcome } => {
                self.running.remove(&Task::Evict(pod.clone()));
                match outcome {
                    Eviction::Evicted => {
                        self.evict_backoff.remove(&pod);
                        let now = unix_ms();
                        let view = &self.state.view;
                        (self.evicted).retain(|p, at| {
                            now - *at < EVICTED_WAIT_MS && view.pods.contains_key(p)
                        });
                        self.evicted.insert(pod.clone(), now);
                        // "Evicted pod: <the claim's DisruptionReason>", as Karpenter's.
                        let why = self
                            .state
                            .view
                            .pods
                            .get(&pod)
                            .and_then(|p| p.pod.node_name.as_deref())
                            .and_then(|n| self.state.view.claim_of_node(n))
                            .and_then(|c| c.deletion_reason.as_ref())
                            .and_then(DeletionReason::karpenter)
                            .unwrap_or("Forceful Termination");
                        let message = format!("Evicted pod: {why}");
                        self.record(unix_ms(), Reason::Evicted, Subject::Pod(pod), message);
                    }
                    Eviction::Done => {
                        self.evict_backoff.remove(&pod);
                    }
                    Eviction::NotNow(reason) => {
                        let now = unix_ms();
                        let (_, last) = self
                            .evict_backoff
                            .get(&pod)
                            .copied()
                            .unwrap_or((0, EVICT_BACKOFF_MIN_MS / 2));
                        let delay = (last * 2).clamp(EVICT_BACKOFF_MIN_MS, EVICT_BACKOFF_MAX_MS);
                        self.evict_backoff.insert(pod.clone(), (now + delay, delay));
                        // On the node, as Karpenter's terminator (deduplicated per node).
                        if let Some(node) =
                            (self.state.view.pods.get(&pod)).and_then(|p| p.pod.node_name.clone())
                        {
                            let message = format!("Failed to drain node, evicting {pod}: {reason}");
                            self.record(now, Reason::FailedDraining, Subject::Node(node), message);
                        }
                        self.events.push(Event::EvictionRefused { pod, reason });
                    }
                }
            }
        }
    }
}

fn is_code(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// A write that failed: a 409 (stale view) or 404 (gone) is expected and quiet.
fn report(what: &str, object: &str, e: &kube::Error) {
    if is_code(e, 409) || is_code(e, 404) {
        tracing::debug!(object, error = %e, "{what}: stale, decided again next step");
    } else {
        tracing::warn!(object, error = %e, "{what} failed");
    }
}

fn node_taints(node: &Node) -> Vec<k8s_openapi::api::core::v1::Taint> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
}

/// What registration syncs from a NodeClaim onto its Node: the claim's labels (and
/// `karpenter.sh/registered`), annotations and taints (unless the Node opts out with
/// `karpenter.sh/do-not-sync-taints`), the termination finalizer and the NodeClaim as an
/// owner; the unregistered taint comes off.
struct Registration {
    claim: String,
    uid: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    taints: Vec<k8s_openapi::api::core::v1::Taint>,
}

impl Registration {
    /// The merge patch onto `node` as read: it replaces the taint, finalizer and owner
    /// lists, so it carries the Node's resourceVersion and cannot clobber a write made
    /// since.
    fn body(&self, node: &Node) -> serde_json::Value {
        let mut taints = node_taints(node);
        taints.retain(|t| t.key != labels::TAINT_UNREGISTERED);
        let sync_taints = node
            .labels()
            .get("karpenter.sh/do-not-sync-taints")
            .is_none_or(|v| v != "true");
        if sync_taints {
            for t in &self.taints {
                if !taints
                    .iter()
                    .any(|w| w.key == t.key && w.effect == t.effect)
                {
                    taints.push(t.clone());
                }
            }
        }
        let mut node_labels = serde_json::Map::new();
        for (k, v) in &self.labels {
            node_labels.insert(k.clone(), json!(v));
        }
        node_labels.insert(labels::REGISTERED.into(), json!("true"));
        let mut finalizers: Vec<String> = node.finalizers().to_vec();
        if !finalizers
            .iter()
            .any(|f| f == labels::FINALIZER_TERMINATION)
        {
            finalizers.push(labels::FINALIZER_TERMINATION.into());
        }
        let mut owners = node.owner_references().to_vec();
        if !owners.iter().any(|o| o.kind == "NodeClaim") {
            owners.push(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                    api_version: "karpenter.sh/v1".into(),
                    kind: "NodeClaim".into(),
                    name: self.claim.clone(),
                    uid: self.uid.clone(),
                    block_owner_deletion: Some(true),
                    controller: None,
                },
            );
        }
        json!({
            "metadata": {
                "resourceVersion": node.metadata.resource_version,
                "labels": node_labels,
                "annotations": self.annotations,
                "finalizers": finalizers,
                "ownerReferences": owners,
            },
            "spec": {"taints": taints},
        })
    }
}

/// Merge-patches Node `name` with `body`; after a 409 (the Node moved on since it was
/// read: kwok and the kubelet write its status as it comes up) once more with
/// `fresh(node)` on the Node as it is now, unless it is being deleted or `fresh` finds
/// the write no longer holds (`None`): the "a 409 is retried on fresh state",
/// without waiting a step for the watch to bring it.
async fn patch_node_fresh(
    api: &Api<Node>,
    what: &str,
    name: &str,
    body: &serde_json::Value,
    fresh: impl Fn(&Node) -> Option<serde_json::Value>,
) -> Option<Node> {
    let e = match api
        .patch(name, &PatchParams::default(), &Patch::Merge(body))
        .await
    {
        Ok(updated) => return Some(updated),
        Err(e) => e,
    };
    let e = if is_code(&e, 409) {
        match api.get(name).await {
            Ok(node) if node.metadata.deletion_timestamp.is_some() => return None,
            Ok(node) => {
                let Some(body) = fresh(&node) else {
                    tracing::debug!(
                        object = name,
                        "{what}: no longer holds, decided again next step"
                    );
                    return None;
                };
                let again = Patch::Merge(body);
                match api.patch(name, &PatchParams::default(), &again).await {
                    Ok(updated) => return Some(updated),
                    Err(e) => e,
                }
            }
            Err(e) => e,
        }
    } else {
        e
    };
    report(what, name, &e);
    None
}

/// What a write's API calls answered, applied to the state once the step's wave of
/// writes is back. Answers live for one wave, a few per write: boxing the objects would
/// only add an allocation each.
#[allow(clippy::large_enum_variant)]
enum Answer {
    Claim(crd::NodeClaim),
    Node(Node),
    NodePool(crd::NodePool),
    Gone(Kind, String),
    Record(Reason, Subject, String),
    /// The launch's annotations are on its claim.
    Annotated(String),
}

/// A write decided on the step's state: it owns everything it sends.
type Write = futures::future::BoxFuture<'static, Vec<Answer>>;

/// The objects an action reads or writes, for ordering the actions of one step.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Claim(String),
    Node(String),
    Pod(PodKey),
}

/// A NodeClaim condition to set: type, status, reason, message.
type Condition = (&'static str, &'static str, String, String);

/// The status body that sets `conditions` (and `Ready` once the claim is launched,
/// registered and initialized) on `stored`, with `extra` status fields, on its version.
fn claim_status_body(
    stored: &crd::NodeClaim,
    extra: serde_json::Value,
    conditions: &[Condition],
    now: i64,
) -> serde_json::Value {
    let generation = stored.metadata.generation;
    let mut current = stored
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    for (type_, status, reason, message) in conditions {
        claims::set_condition(
            &mut current,
            type_,
            status,
            reason,
            message,
            generation,
            now,
        );
    }
    let ready = [claims::LAUNCHED, claims::REGISTERED, claims::INITIALIZED]
        .iter()
        .all(|t| current.iter().any(|c| c.type_ == *t && c.status == "True"));
    if ready {
        claims::set_condition(
            &mut current,
            claims::READY,
            "True",
            "Ready",
            "",
            generation,
            now,
        );
    }
    let mut status = extra;
    status["conditions"] = serde_json::to_value(&current).unwrap_or_default();
    json!({
        "metadata": {"resourceVersion": stored.metadata.resource_version},
        "status": status,
    })
}

/// Patches a NodeClaim's status; the updated claim, or `None` (reported) on failure.
async fn patch_claim_status(
    api: &Api<crd::NodeClaim>,
    name: &str,
    body: &serde_json::Value,
) -> Option<crd::NodeClaim> {
    match api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(body))
        .await
    {
        Ok(updated) => Some(updated),
        Err(e) => {
            report("nodeclaim status", name, &e);
            None
        }
    }
}

/// Merge-patches an object; the updated object, or `None` (reported as `what`) on failure.
async fn merge_patch<K>(api: &Api<K>, what: &str, name: &str, body: &serde_json::Value) -> Option<K>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(body))
        .await
    {
        Ok(updated) => Some(updated),
        Err(e) => {
            report(what, name, &e);
            None
        }
    }
}

/// Deletes `object` unless it is already being deleted, answering what the API says
/// (`wrap` for the object as it now is). The object to take the finalizer off, or `None`
/// when it is gone already or the delete failed (reported as `what`).
async fn delete_object<K>(
    kind: Kind,
    what: &str,
    api: &Api<K>,
    object: K,
    wrap: fn(K) -> Answer,
    answers: &mut Vec<Answer>,
) -> Option<K>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    if object.meta().deletion_timestamp.is_some() {
        return Some(object);
    }
    let name = object.name_any();
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(either::Either::Left(deleting)) => {
            answers.push(wrap(deleting.clone()));
            Some(deleting)
        }
        Ok(either::Either::Right(_)) => {
            answers.push(Answer::Gone(kind, name));
            None
        }
        Err(e) if is_code(&e, 404) => {
            answers.push(Answer::Gone(kind, name));
            None
        }
        Err(e) => {
            report(what, &name, &e);
            None
        }
    }
}

/// Removes `karpenter.sh/termination` from `object` (a deleting Node or NodeClaim), on
/// its version; with it gone the object is gone, and the state forgets it at once.
/// True when this call removed it.
async fn drop_finalizer<K>(kind: Kind, api: &Api<K>, object: &K, answers: &mut Vec<Answer>) -> bool
where
    K: Resource<Scope = kube::core::ClusterResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let name = object.name_any();
    let finalizers = object.finalizers();
    if !finalizers
        .iter()
        .any(|f| f == labels::FINALIZER_TERMINATION)
    {
        return false;
    }
    let rest: Vec<&String> = finalizers
        .iter()
        .filter(|f| *f != labels::FINALIZER_TERMINATION)
        .collect();
    let version = object.resource_version();
    let body = json!({"metadata": {"resourceVersion": version, "finalizers": rest}});
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&body))
        .await
    {
        Ok(_) => {
            if rest.is_empty() {
                answers.push(Answer::Gone(kind, name));
            }
            true
        }
        Err(e) if is_code(&e, 404) => {
            answers.push(Answer::Gone(kind, name));
            false
        }
        Err(e) => {
            report("remove finalizer", &name, &e);
            false
        }
    }
}

impl<P: Provider> Shell<P> {
    /// One step of the loops and everything it asks for.
    /// One step of the loops and the writes it asks for. `intake` takes in the watch
    /// changes queued meanwhile; it is called as each write's answer is applied, so a
    /// step whose writes take seconds (a scale-out's thousand claims) does not leave the
    /// watches' changes piling up behind it.
    pub async fn step(&mut self, intake: &mut Intake<'_>) {
        let now = self.now();
        // A launch's retry delay that has run out changes what the lifecycle would do
        // on a view that did not change: let it look again.
        let retry_due = self.launch_retry.len();
        self.launch_retry.retain(|_, at| *at > now);
        if self.launch_retry.len() < retry_due {
            self.controller.recheck_lifecycle();
        }
        let events: Vec<Event> = std::mem::take(&mut self.state.events)
            .into_iter()
            .chain(std::mem::take(&mut self.events))
            .collect();
        let failed_launches: Vec<Write> = std::mem::take(&mut self.launch_errors)
            .into_iter()
            .filter_map(|(claim, message)| {
                let condition = (claims::LAUNCHED, "Unknown", "LaunchFailed".into(), message);
                self.claim_status(&claim, json!({}), vec![condition], now)
            })
            .collect();
        self.run_writes(now, failed_launches, intake).await;
        self.stepped_on = self.state.view.generation;
        let actions = self.controller.step_measured(
            now,
            &self.state.view,
            &events,
            &mut metrics::StepTimer::default(),
        );
        self.perform_all(now, actions, intake).await;
        self.sync_nodepool_status(now, intake).await;
    }

    /// Performs the step's actions in waves: each wave takes, in order, every action
    /// that touches no object an earlier action still waiting touches, starts its
    /// writes together and applies their answers; the rest wait for the next wave.
    async fn perform_all(&mut self, now: i64, actions: Vec<Action>, intake: &mut Intake<'_>) {
        // Claims a disruption command creates are its replacements
        // (`nodeclaims_created_total{reason}`): those after it in the step.
        let mut created_for: BTreeMap<String, String> = BTreeMap::new();
        let mut replacing: Option<String> = None;
        for action in &actions {
            match action {
                Action::Disrupting {
                    method,
                    decision,
                    nodes,
                    savings_per_hour,
                } => {
                    replacing = self.disrupting(*method, *decision, nodes, *savings_per_hour);
                }
                Action::CreateClaim(claim) => {
                    let why = replacing.clone().unwrap_or_else(|| "provisioning".into());
                    created_for.insert(claim.name.clone(), why);
                }
                _ => {}
            }
        }
        let mut remaining = actions;
        while !remaining.is_empty() {
            let mut touched: BTreeSet<Key> = BTreeSet::new();
            let mut later = Vec::new();
            let mut writes = Vec::new();
            for action in remaining {
                let (keys, writes_them) = self.keys(&action);
                if keys.iter().any(|k| touched.contains(k)) {
                    touched.extend(keys);
                    later.push(action);
                    continue;
                }
                if writes_them {
                    touched.extend(keys);
                }
                writes.extend(self.perform(now, action, &created_for));
            }
            self.run_writes(now, writes, intake).await;
            remaining = later;
        }
    }

    /// Runs writes together, at most `WRITES_IN_FLIGHT` at once, and applies what each
    /// answered as it comes, in whatever order they finish (a slow one holds no other
    /// back): a step's answers are whole objects, and held until the last came they
    /// were a fifth of the heap in a scale-out.
    async fn run_writes(&mut self, now: i64, writes: Vec<Write>, intake: &mut Intake<'_>) {
        use futures::StreamExt;
        if writes.is_empty() {
            return;
        }
        let mut answers = futures::stream::iter(writes).buffer_unordered(WRITES_IN_FLIGHT);
        while let Some(answered) = answers.next().await {
            self.apply_answers(now, answered);
            intake(&mut self.state);
        }
    }

    fn apply_answers(&mut self, now: i64, answers: Vec<Answer>) {
        for answer in answers {
            match answer {
                Answer::Claim(claim) => self.state.apply_nodeclaim(&claim),
                Answer::Node(node) => self.state.apply_node(&SeenNode::of(&node)),
                Answer::NodePool(pool) => self.state.apply_nodepool(&pool),
                Answer::Gone(kind, name) => self.state.delete(kind, &name),
                Answer::Record(reason, about, message) => self.record(now, reason, about, message),
                Answer::Annotated(claim) => {
                    self.launch_annotations.remove(&claim);
                }
            }
        }
    }

    /// The objects `action` touches, and whether it writes them (an event only reads
    /// that its object is there, so it waits for a write before it, not a write after).
    fn keys(&self, action: &Action) -> (Vec<Key>, bool) {
        let claim = |c: &str| Key::Claim(c.to_string());
        let node = |n: &str| Key::Node(n.to_string());
        let keys = match action {
            Action::CreateClaim(c) => vec![claim(&c.name)],
            Action::Nominate { pod, claim: c } => vec![claim(c), Key::Pod(pod.clone())],
            Action::Launch { claim: c, .. }
            | Action::MarkLaunched { claim: c, .. }
            | Action::DeleteClaim { claim: c, .. }
            | Action::SetCondition { claim: c, .. }
            | Action::RemoveClaim { claim: c } => vec![claim(c)],
            Action::Register { claim: c, node: n } => vec![claim(c), node(n)],
            Action::Initialize { claim: c } => {
                let mut keys = vec![claim(c)];
                let held = self.state.view.claims.get(c);
                keys.extend(held.and_then(|h| h.node_name.as_deref()).map(node));
                keys
            }
            Action::Taint { node: n, .. }
            | Action::Untaint { node: n, .. }
            | Action::RemoveNode { node: n } => vec![node(n)],
            Action::Evict { pod } | Action::ForceDelete { pod } => vec![Key::Pod(pod.clone())],
            Action::TerminateInstance { .. } | Action::Disrupting { .. } => vec![],
            Action::Record { about, .. } => {
                let key = match about {
                    Subject::Pod(p) => Some(Key::Pod(p.clone())),
                    Subject::Node(n) => Some(node(n)),
                    Subject::NodeClaim(c) => Some(claim(c)),
                    Subject::NodePool(_) => None,
                };
                return (key.into_iter().collect(), false);
            }
        };
        (keys, true)
    }

    /// Writes each NodePool's status (`nodepools.rs`) where it changed, on the version
    /// it was computed from; a 409 is computed again next step.
    async fn sync_nodepool_status(&mut self, now: i64, intake: &mut Intake<'_>) {
        use crate::nodepools::{desired_status, differs, status_patch};
        let writes: Vec<Write> = (self.state.stored.nodepools.values())
            .filter_map(|pool| {
                let desired = desired_status(pool, &self.state, now)?;
                let held = pool.status.as_ref();
                differs(held, &desired).then(|| {
                    let version = pool.metadata.resource_version.as_deref();
                    (pool.name_any(), status_patch(held, &desired, version))
                })
            })
            .map(|(name, body)| {
                let api: Api<crd::NodePool> = Api::all(self.client.clone());
                let write: Write = Box::pin(async move {
                    match api
                        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&body))
                        .await
                    {
                        Ok(updated) => {
                            tracing::debug!(nodepool = %name, "nodepool status written");
                            vec![Answer::NodePool(updated)]
                        }
                        Err(e) => {
                            report("nodepool status", &name, &e);
                            vec![]
                        }
                    }
                });
                write
            })
            .collect();
        self.run_writes(now, writes, intake).await;
    }

    /// Does what `action` asks that needs no API write at once, and returns the write
    /// for the rest.
    fn perform(
        &mut self,
        now: i64,
        action: Action,
        created_for: &BTreeMap<String, String>,
    ) -> Option<Write> {
        tracing::debug!(?action, "action");
        match action {
            Action::CreateClaim(claim) => {
                let why = created_for
                    .get(&claim.name)
                    .map_or("provisioning", String::as_str);
                self.create_claim(now, &claim, why)
            }
            Action::Nominate { pod, claim } => {
                if self.state.view.claims.contains_key(&claim)
                    && let Some(p) = self.state.view.pods.get_mut(&pod)
                    && p.pod.node_name.is_none()
                {
                    let first = p.nominated.as_deref() != Some(claim.as_str());
                    p.nominated = Some(claim.clone());
                    if first {
                        let message = format!("Pod should schedule on: nodeclaim/{claim}");
                        self.record(now, Reason::Nominated, Subject::Pod(pod), message);
                    }
                }
                None
            }
            Action::Launch {
                claim,
                options,
                image_id,
            } => {
                self.launch(now, claim, options, image_id);
                None
            }
            Action::MarkLaunched { claim, instance_id } => {
                self.mark_launched(now, &claim, &instance_id)
            }
            Action::Register { claim, node } => self.register(now, &claim, &node),
            Action::Initialize { claim } => self.initialize(now, &claim),
            Action::DeleteClaim { claim, reason } => self.delete_claim(now, &claim, reason),
            Action::Taint { node, taint } => {
                self.patch_node_taints(&node, &taint.key, Some(&taint))
            }
            Action::Untaint { node, key } => self.patch_node_taints(&node, &key, None),
            Action::Evict { pod } => {
                self.evict(now, pod);
                None
            }
            Action::ForceDelete { pod } => {
                let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
                Some(Box::pin(async move {
                    let params = DeleteParams {
                        grace_period_seconds: Some(1),
                        ..DeleteParams::default()
                    };
                    match api.delete(&pod.name, &params).await {
                        Ok(_) => {
                            tracing::info!(pod = %pod, "deleted at the termination grace deadline");
                            let message = "Deleting the pod to accommodate the terminationTime";
                            vec![Answer::Record(
                                Reason::Disrupted,
                                Subject::Pod(pod),
                                message.into(),
                            )]
                        }
                        Err(e) => {
                            report("force delete", &pod.to_string(), &e);
                            vec![]
                        }
                    }
                }))
            }
            Action::TerminateInstance { instance_id } => {
                self.terminate(instance_id);
                None
            }
            Action::RemoveNode { node } => self.remove_node(&node),
            Action::RemoveClaim { claim } => self.remove_claim(&claim),
            Action::Record {
                reason,
                about,
                message,
            } => {
                self.record(now, reason, about, message);
                None
            }
            // Counted before the step's waves (`perform_all`).
            Action::Disrupting { .. } => None,
            Action::SetCondition {
                claim,
                condition,
                to,
            } => self.set_claim_condition(now, &claim, condition, to),
        }
    }

    /// A disruption command begins: Karpenter's decision counter and kerf's savings
    /// gauge; for a replacement, the `nodeclaims_created_total` reason of its claims.
    fn disrupting(
        &mut self,
        method: kerf_disruption::Method,
        decision: kerf_disruption::Decision,
        nodes: &[String],
        savings_per_hour: f64,
    ) -> Option<String> {
        metrics::disruption_decided(method, decision);
        let share = savings_per_hour / nodes.len().max(1) as f64;
        for node in nodes {
            let pool = self
                .state
                .view
                .nodes
                .get(node)
                .and_then(|n| n.labels.get(labels::NODEPOOL))
                .cloned()
                .unwrap_or_default();
            self.gauges.saved(&pool, method.as_str(), share);
        }
        (decision == kerf_disruption::Decision::Replace)
            .then(|| metrics::disruption_reason_label(&DeletionReason::Disruption(method)))
            .flatten()
    }

    fn terminate(&mut self, instance_id: String) {
        let task = Task::Terminate(instance_id.clone());
        if !self.running.insert(task) {
            return;
        }
        let provider = self.provider.clone();
        self.tasks.spawn(async move {
            let started = std::time::Instant::now();
            let result = match tokio::time::timeout(
                CALL_TIMEOUT,
                provider.delete(instance_id.clone()),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(ProviderError::new("terminate timed out", true)),
            };
            metrics::cloudprovider_call(
                provider.name(),
                "nodeclaim.termination",
                "Delete",
                started.elapsed().as_secs_f64(),
                result.as_ref().err().map(|_| "CloudProviderError"),
            );
            Completion::Terminated {
                id: instance_id,
                result,
            }
        });
    }

    /// Publishes an event the loops (or the shell itself) recorded, unless the same one
    /// went out within its reason's dedupe timeout or its object is gone.
    fn record(&mut self, now: i64, reason: Reason, about: Subject, message: String) {
        let stored = &self.state.stored;
        let uid = match &about {
            Subject::Pod(key) => {
                if !self.state.view.pods.contains_key(key) {
                    return;
                }
                stored.pod_uids.get(key).cloned()
            }
            Subject::Node(name) => match stored.nodes.get(name) {
                Some(n) => n.metadata.uid.clone(),
                None => return,
            },
            Subject::NodeClaim(name) => match stored.nodeclaims.get(name) {
                Some(n) => n.metadata.uid.clone(),
                None => return,
            },
            Subject::NodePool(name) => match stored.nodepools.get(name) {
                Some(n) => n.metadata.uid.clone(),
                None => return,
            },
        };
        // Karpenter dedupes by object; a NodePool's budget events also by the disruption
        // reason their message names.
        let dedupe_value = match &about {
            Subject::NodePool(_) => format!("{}/{message}", uid.as_deref().unwrap_or_default()),
            _ => uid.clone().unwrap_or_default(),
        };
        if !self.dedupe.admit(now, reason, &about, &dedupe_value) {
            return;
        }
        tracing::info!(reason = %reason, object = %about, "{message}");
        let out = Outgoing {
            reference: crate::events::reference(&about, uid),
            reason,
            message,
        };
        if self.events_out.try_send(out).is_err() {
            tracing::debug!(reason = %reason, "event queue full; event dropped");
        }
    }

    fn claims_api(&self) -> Api<crd::NodeClaim> {
        Api::all(self.client.clone())
    }

    fn create_claim(&mut self, now: i64, claim: &Claim, why: &str) -> Option<Write> {
        let pool = self.state.stored.nodepools.get(&claim.nodepool)?;
        let nodeclaim = claims::to_nodeclaim(claim, pool);
        let api = self.claims_api();
        let (name, nodepool, why) = (claim.name.clone(), claim.nodepool.clone(), why.to_string());
        let options = claim.options.len();
        let first = claim.options.first().map(ToString::to_string);
        Some(Box::pin(async move {
            let created = match api.create(&PostParams::default(), &nodeclaim).await {
                Ok(c) => {
                    metrics::claim_created(&nodepool, &why);
                    c
                }
                // Made before a lost answer or a restart: the name is the loops' own.
                Err(e) if is_code(&e, 409) => match api.get(&name).await {
                    Ok(c) => c,
                    Err(e) => {
                        report("get nodeclaim", &name, &e);
                        return vec![];
                    }
                },
                Err(e) => {
                    report("create nodeclaim", &name, &e);
                    return vec![];
                }
            };
            tracing::info!(nodeclaim = %name, %nodepool, options, ?first, "created nodeclaim");
            let generation = created.metadata.generation;
            let unset = created
                .status
                .as_ref()
                .is_none_or(|s| s.conditions.is_empty());
            let mut answers = vec![Answer::Claim(created)];
            if unset {
                let status =
                    json!({"status": {"conditions": claims::initial_conditions(generation, now)}});
                answers.extend(
                    patch_claim_status(&api, &name, &status)
                        .await
                        .map(Answer::Claim),
                );
            }
            answers
        }))
    }

    fn launch(
        &mut self,
        now: i64,
        claim: String,
        options: Vec<kerf_cloud::Offer>,
        image_id: String,
    ) {
        if self
            .launch_retry
            .get(&claim)
            .is_some_and(|at| *at > unix_ms())
        {
            return;
        }
        let Some(c) = self.state.view.claims.get(&claim) else {
            return;
        };
        if c.provider_id.is_some() || c.deleting_since.is_some() {
            return;
        }
        if !self.running.insert(Task::Launch(claim.clone())) {
            return;
        }
        self.launch_retry.remove(&claim);
        let request = LaunchRequest {
            claim: claim.clone(),
            nodepool: c.nodepool.clone(),
            node_class: self
                .state
                .view
                .nodepool(&c.nodepool)
                .and_then(|p| p.node_class.as_ref())
                .map(|n| n.name.clone()),
            options,
            image_id,
            labels: c.labels.clone(),
            taints: c.taints.clone(),
            startup_taints: c.startup_taints.clone(),
            now_ms: now,
        };
        let provider = self.provider.clone();
        self.tasks.spawn(async move {
            let started = std::time::Instant::now();
            let result = match tokio::time::timeout(CALL_TIMEOUT, provider.create(request)).await {
                Ok(r) => r,
                Err(_) => Err(CreateError::Provider("launch timed out".into())),
            };
            metrics::cloudprovider_call(
                provider.name(),
                "nodeclaim.lifecycle",
                "Create",
                started.elapsed().as_secs_f64(),
                match &result {
                    Ok(_) => None,
                    Err(CreateError::InsufficientCapacity(_)) => Some("InsufficientCapacityError"),
                    Err(_) => Some("CloudProviderError"),
                },
            );
            Completion::Launched { claim, result }
        });
    }

    /// The write that patches a NodeClaim's status conditions (and more), on the
    /// version held.
    fn claim_status(
        &self,
        name: &str,
        extra: serde_json::Value,
        conditions: Vec<Condition>,
        now: i64,
    ) -> Option<Write> {
        let stored = self.state.stored.nodeclaims.get(name)?;
        let body = claim_status_body(stored, extra, &conditions, now);
        let (api, name) = (self.claims_api(), name.to_string());
        Some(Box::pin(async move {
            let updated = patch_claim_status(&api, &name, &body).await;
            updated.map(Answer::Claim).into_iter().collect()
        }))
    }

    /// Writes a disruption condition as the loops ask: True as `to` shows it, or removed
    /// (Karpenter's `Clear`). Like every status write here, on the version held: a write
    /// that races another is refused, and the next pass asks again.
    fn set_claim_condition(
        &self,
        now: i64,
        name: &str,
        condition: ConditionType,
        to: Option<Shown>,
    ) -> Option<Write> {
        let mut stored = self.state.stored.nodeclaims.get(name)?.clone();
        let type_ = condition.as_str();
        tracing::debug!(nodeclaim = %name, condition = type_, reason = ?to.as_ref().map(|t| &t.reason), "disruption condition");
        let set = match to {
            Some(to) => vec![(type_, "True", to.reason, to.message)],
            None => {
                if let Some(status) = stored.status.as_mut() {
                    status.conditions.retain(|c| c.type_ != type_);
                }
                Vec::new()
            }
        };
        let body = claim_status_body(&stored, json!({}), &set, now);
        let (api, name) = (self.claims_api(), name.to_string());
        Some(Box::pin(async move {
            let updated = patch_claim_status(&api, &name, &body).await;
            updated.map(Answer::Claim).into_iter().collect()
        }))
    }

    fn mark_launched(&mut self, now: i64, claim: &str, instance_id: &str) -> Option<Write> {
        let instance = self.state.view.instances.get(instance_id)?.clone();
        let stored = self.state.stored.nodeclaims.get(claim)?;
        let it = self
            .state
            .view
            .instance_types
            .iter()
            .find(|t| t.name == instance.offer.instance_type)
            .cloned();
        // Labels first (the instance's type, zone and capacity type, and its type's
        // well-known labels), then the status, as Karpenter's lifecycle does.
        let mut new_labels = serde_json::Map::new();
        if let Some(it) = &it {
            for (k, v) in &it.labels {
                new_labels.insert(k.clone(), json!(v));
            }
        }
        new_labels.insert(
            labels::INSTANCE_TYPE.into(),
            json!(instance.offer.instance_type),
        );
        new_labels.insert(labels::ZONE.into(), json!(instance.offer.zone));
        new_labels.insert(
            labels::CAPACITY_TYPE.into(),
            json!(instance.offer.capacity_type),
        );
        let annotations = self
            .launch_annotations
            .get(claim)
            .cloned()
            .unwrap_or_default();
        let body = json!({
            "metadata": {
                "resourceVersion": stored.metadata.resource_version,
                "labels": new_labels,
                "annotations": annotations,
            },
        });
        let mut status = json!({"providerID": instance.id, "imageID": instance.image_id});
        if let Some(it) = &it {
            status["capacity"] = json!(claims::quantities(&it.capacity));
            status["allocatable"] = json!(claims::quantities(&it.allocatable()));
        }
        if instance.image_id.is_empty() {
            status.as_object_mut().map(|s| s.remove("imageID"));
        }
        let (api, claim) = (self.claims_api(), claim.to_string());
        Some(Box::pin(async move {
            let Some(updated) = merge_patch(&api, "nodeclaim labels", &claim, &body).await else {
                return vec![];
            };
            let launched = (claims::LAUNCHED, "True", "Launched".into(), String::new());
            let body = claim_status_body(&updated, status, &[launched], now);
            let mut answers = vec![Answer::Annotated(claim.clone()), Answer::Claim(updated)];
            answers.extend(
                patch_claim_status(&api, &claim, &body)
                    .await
                    .map(Answer::Claim),
            );
            answers
        }))
    }

    fn register(&mut self, now: i64, claim_name: &str, node_name: &str) -> Option<Write> {
        let stored = self.state.stored.nodes.get(node_name)?;
        let claim = self.state.stored.nodeclaims.get(claim_name)?;
        let view_claim = self.state.view.claims.get(claim_name);
        let sync = Registration {
            claim: claim_name.to_string(),
            uid: claim.uid().unwrap_or_default(),
            labels: claim.labels().clone(),
            annotations: claim.annotations().clone(),
            taints: (view_claim.into_iter())
                .flat_map(|c| c.taints.iter().chain(&c.startup_taints))
                .map(claims::node_taint)
                .collect(),
        };
        let body = sync.body(stored);
        let registered = (
            claims::REGISTERED,
            "True",
            "Registered".into(),
            String::new(),
        );
        let status = claim_status_body(claim, json!({"nodeName": node_name}), &[registered], now);
        let nodes: Api<Node> = Api::all(self.client.clone());
        let claims_api = self.claims_api();
        let (claim_name, node_name) = (claim_name.to_string(), node_name.to_string());
        Some(Box::pin(async move {
            let fresh = |node: &Node| Some(sync.body(node));
            let Some(updated) =
                patch_node_fresh(&nodes, "register node", &node_name, &body, fresh).await
            else {
                return vec![];
            };
            tracing::info!(nodeclaim = %claim_name, node = %node_name, "registered");
            let label = |k: &str| updated.labels().get(k).cloned().unwrap_or_default();
            metrics::node_created(&label(labels::NODEPOOL), &label(labels::ZONE));
            let mut answers = vec![Answer::Node(updated)];
            let claimed = patch_claim_status(&claims_api, &claim_name, &status).await;
            answers.extend(claimed.map(Answer::Claim));
            answers
        }))
    }

    fn initialize(&mut self, now: i64, claim_name: &str) -> Option<Write> {
        let node_name = self
            .state
            .view
            .claims
            .get(claim_name)
            .and_then(|c| c.node_name.clone())?;
        let stored = self.state.stored.nodes.get(&node_name)?;
        let claim = self.state.stored.nodeclaims.get(claim_name)?;
        let body = |node: &Node| {
            json!({
                "metadata": {
                    "resourceVersion": node.metadata.resource_version,
                    "labels": {labels::INITIALIZED: "true"},
                },
            })
        };
        let label = stored
            .labels()
            .get(labels::INITIALIZED)
            .is_none_or(|v| v != "true")
            .then(|| body(stored));
        // Decided on the Node Ready with these taints: after a 409, labelled on the Node
        // as it is now only if that still holds (a status heartbeat moved it on).
        let taints = node_taints(stored);
        let fresh = move |node: &Node| {
            (crate::state::node_ready(node) && node_taints(node) == taints).then(|| body(node))
        };
        let initialized = (
            claims::INITIALIZED,
            "True",
            "Initialized".into(),
            String::new(),
        );
        let status = claim_status_body(claim, json!({}), &[initialized], now);
        let nodes: Api<Node> = Api::all(self.client.clone());
        let claims_api = self.claims_api();
        let claim_name = claim_name.to_string();
        Some(Box::pin(async move {
            let mut answers = Vec::new();
            if let Some(body) = label {
                match patch_node_fresh(&nodes, "initialize node", &node_name, &body, fresh).await {
                    Some(updated) => answers.push(Answer::Node(updated)),
                    None => return answers,
                }
            }
            tracing::info!(nodeclaim = %claim_name, node = %node_name, "initialized");
            let claimed = patch_claim_status(&claims_api, &claim_name, &status).await;
            answers.extend(claimed.map(Answer::Claim));
            answers
        }))
    }

    fn delete_claim(&mut self, now: i64, name: &str, reason: DeletionReason) -> Option<Write> {
        let held = self.state.view.claims.get(name)?;
        if held.deleting_since.is_some() {
            return None;
        }
        let nodepool = held.nodepool.clone();
        let capacity_type = held
            .launched
            .as_ref()
            .map_or(String::new(), |o| o.capacity_type.clone());
        let condition = match (reason.karpenter(), self.state.stored.nodeclaims.get(name)) {
            (Some(kind), Some(stored)) => {
                let set = (
                    claims::DISRUPTION_REASON,
                    "True",
                    kind.to_string(),
                    reason.to_string(),
                );
                Some(claim_status_body(stored, json!({}), &[set], now))
            }
            _ => None,
        };
        let (api, name) = (self.claims_api(), name.to_string());
        Some(Box::pin(async move {
            let mut answers = Vec::new();
            if let Some(body) = condition {
                answers.extend(
                    patch_claim_status(&api, &name, &body)
                        .await
                        .map(Answer::Claim),
                );
            }
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(either) => {
                    tracing::info!(nodeclaim = %name, %reason, "deleting nodeclaim");
                    metrics::claim_disrupted(&reason, &nodepool, &capacity_type);
                    if let either::Either::Left(obj) = either {
                        answers.push(Answer::Claim(obj));
                    }
                }
                Err(e) => report("delete nodeclaim", &name, &e),
            }
            answers
        }))
    }

    /// Replaces the node's taint with key `key` by `taint` (or removes it), on the
    /// version held.
    fn patch_node_taints(
        &mut self,
        node: &str,
        key: &str,
        taint: Option<&kerf_model::Taint>,
    ) -> Option<Write> {
        let stored = self.state.stored.nodes.get(node)?;
        let mut taints = node_taints(stored);
        taints.retain(|t| t.key != key);
        taints.extend(taint.map(claims::node_taint));
        let body = json!({
            "metadata": {"resourceVersion": stored.metadata.resource_version},
            "spec": {"taints": taints},
        });
        let api: Api<Node> = Api::all(self.client.clone());
        let node = node.to_string();
        Some(Box::pin(async move {
            let updated = merge_patch(&api, "node taints", &node, &body).await;
            updated.map(Answer::Node).into_iter().collect()
        }))
    }

    fn evict(&mut self, now: i64, pod: PodKey) {
        if self
            .evict_backoff
            .get(&pod)
            .is_some_and(|(until, _)| *until > now)
        {
            return;
        }
        if self
            .evicted
            .get(&pod)
            .is_some_and(|at| now - at < EVICTED_WAIT_MS)
        {
            return;
        }
        if !self.state.view.pods.contains_key(&pod)
            || !self.running.insert(Task::Evict(pod.clone()))
        {
            return;
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
        self.tasks.spawn(async move {
            let outcome = match tokio::time::timeout(
                CALL_TIMEOUT,
                api.evict(&pod.name, &EvictParams::default()),
            )
            .await
            {
                Ok(Ok(_)) => {
                    tracing::info!(pod = %pod, "evicted");
                    metrics::eviction_request("200");
                    Eviction::Evicted
                }
                Ok(Err(e)) => {
                    metrics::eviction_request(&match &e {
                        kube::Error::Api(s) => s.code.to_string(),
                        _ => "error".to_string(),
                    });
                    if is_code(&e, 404) || is_code(&e, 409) {
                        Eviction::Done
                    } else {
                        Eviction::NotNow(e.to_string())
                    }
                }
                Err(_) => {
                    metrics::eviction_request("timeout");
                    Eviction::NotNow("eviction timed out".into())
                }
            };
            Completion::Evicted { pod, outcome }
        });
    }

    fn remove_node(&mut self, name: &str) -> Option<Write> {
        let stored = self.state.stored.nodes.get(name)?.clone();
        // A node whose instance the view does not list yet — its launch's answer is
        // still out (kwok writes the Node before answering), or the last list began
        // before it — is not an orphan until the garbage-collection grace has passed.
        let listed = stored
            .spec
            .as_ref()
            .and_then(|s| s.provider_id.as_ref())
            .is_some_and(|id| self.state.view.instances.contains_key(id));
        let young = stored
            .metadata
            .creation_timestamp
            .as_ref()
            .is_none_or(|t| unix_ms() - claims::ms(t) < GC_GRACE_MS);
        let launching = self.running.contains(&Task::Launch(name.to_string()))
            || stored
                .labels()
                .get(labels::HOSTNAME)
                .is_some_and(|h| self.running.contains(&Task::Launch(h.clone())));
        if stored.metadata.deletion_timestamp.is_none() && !listed && (young || launching) {
            tracing::debug!(
                node = name,
                "not removing a node whose instance may still be launching"
            );
            return None;
        }
        let api: Api<Node> = Api::all(self.client.clone());
        Some(Box::pin(async move {
            let mut answers = Vec::new();
            let deleted = delete_object(
                Kind::Node,
                "delete node",
                &api,
                stored,
                Answer::Node,
                &mut answers,
            );
            let Some(node) = deleted.await else {
                return answers;
            };
            let deleting_since = node.metadata.deletion_timestamp.as_ref().map(claims::ms);
            if drop_finalizer(Kind::Node, &api, &node, &mut answers).await {
                let get = |k: &str| node.labels().get(k).cloned().unwrap_or_default();
                metrics::node_terminated(
                    &get(labels::NODEPOOL),
                    &get(labels::ZONE),
                    deleting_since.map(|t| (unix_ms() - t).max(0) as f64 / 1000.0),
                );
            }
            answers
        }))
    }

    fn remove_claim(&mut self, name: &str) -> Option<Write> {
        let stored = self.state.stored.nodeclaims.get(name)?.clone();
        let held = self.state.view.claims.get(name).cloned();
        let api = self.claims_api();
        let name = name.to_string();
        Some(Box::pin(async move {
            let mut answers = Vec::new();
            let deleted = delete_object(
                Kind::NodeClaim,
                "delete nodeclaim",
                &api,
                stored,
                Answer::Claim,
                &mut answers,
            );
            let Some(claim) = deleted.await else {
                return answers;
            };
            let deleting_since = claim.metadata.deletion_timestamp.as_ref().map(claims::ms);
            if drop_finalizer(Kind::NodeClaim, &api, &claim, &mut answers).await {
                tracing::info!(nodeclaim = %name, "terminated");
                if let Some(c) = held {
                    let (capacity_type, zone) = c
                        .launched
                        .as_ref()
                        .map_or(("", ""), |o| (o.capacity_type.as_str(), o.zone.as_str()));
                    metrics::claim_terminated(
                        &c.nodepool,
                        capacity_type,
                        zone,
                        (c.deleting_since.or(deleting_since))
                            .map(|t| (unix_ms() - t).max(0) as f64 / 1000.0),
                    );
                }
            }
            answers
        }))
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use kube::runtime::events::Reporter;

    use super::*;

    /// Registration on the Node as read: the unregistered taint off, the claim's taints
    /// on, the termination finalizer and owner added to what is there, and the Node's
    /// resourceVersion carried, since the lists are replaced whole.
    #[test]
    fn registration_syncs_the_claim_onto_the_node_as_read() {
        use k8s_openapi::api::core::v1::{NodeSpec, Taint};
        let taint = |key: &str, effect: &str| Taint {
            key: key.into(),
            effect: effect.into(),
            ..Taint::default()
        };
        let node = Node {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                resource_version: Some("41".into()),
                finalizers: Some(vec!["example.com/keep".into()]),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec {
                taints: Some(vec![
                    taint(labels::TAINT_UNREGISTERED, "NoExecute"),
                    taint("example.com/other", "NoSchedule"),
                ]),
                ..NodeSpec::default()
            }),
            ..Node::default()
        };
        let sync = Registration {
            claim: "c1".into(),
            uid: "u1".into(),
            labels: BTreeMap::from([(labels::NODEPOOL.to_string(), "default".to_string())]),
            annotations: BTreeMap::new(),
            taints: vec![taint("example.com/gpu", "NoSchedule")],
        };
        let body = sync.body(&node);
        assert_eq!(body["metadata"]["resourceVersion"], "41");
        assert_eq!(body["metadata"]["labels"][labels::REGISTERED], "true");
        assert_eq!(body["metadata"]["labels"][labels::NODEPOOL], "default");
        let keys: Vec<&str> = (body["spec"]["taints"].as_array().unwrap().iter())
            .map(|t| t["key"].as_str().unwrap())
            .collect();
        assert_eq!(keys, ["example.com/other", "example.com/gpu"]);
        assert_eq!(
            body["metadata"]["finalizers"],
            json!(["example.com/keep", labels::FINALIZER_TERMINATION])
        );
        assert_eq!(body["metadata"]["ownerReferences"][0]["uid"], "u1");
        // A Node that opts out of taint sync keeps its own.
        let mut own = node.clone();
        own.metadata.labels = Some(BTreeMap::from([(
            "karpenter.sh/do-not-sync-taints".to_string(),
            "true".to_string(),
        )]));
        let body = sync.body(&own);
        assert_eq!(body["spec"]["taints"].as_array().unwrap().len(), 1);
    }

    /// The loops promise to miss nothing only to a shell that steps on every change of
    /// the view. A change taken in while a step's writes were out (an answer, or the
    /// watches' queue) comes after the loops looked: the shell must ask to step again at
    /// once, not at the loops' next deadline (up to a minute away).
    #[tokio::test]
    async fn a_change_taken_in_after_the_loops_looked_asks_for_a_step_at_once() {
        // No API server: an empty view asks for no write.
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = Client::try_from(config).unwrap();
        let provider = Arc::new(crate::kwok::Kwok::new(client.clone()));
        let reporter = Reporter {
            controller: "karpenter".into(),
            instance: None,
        };
        let recorder = Recorder::new(client.clone(), reporter);
        let mut shell = Shell::new(client, provider, Default::default(), recorder);
        // An instance list out (this test never takes in its answer, which would wake
        // the loop): the wake is the loops' own.
        shell.maybe_list();
        shell.step(&mut |_| {}).await;
        assert!(!shell.behind());
        assert!(shell.next_wake() > shell.last_now);

        // What the intake does with a watch change that arrives during the writes.
        let node = Node {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                resource_version: Some("1".into()),
                ..ObjectMeta::default()
            },
            ..Node::default()
        };
        shell.state.apply_node(&SeenNode::of(&node));
        assert!(shell.behind());
        assert_eq!(shell.next_wake(), shell.last_now, "a step at once");

        shell.step(&mut |_| {}).await;
        assert!(!shell.behind());
        assert!(shell.next_wake() > shell.last_now);
    }
}
