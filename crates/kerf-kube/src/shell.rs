//! The step loop and the executor: one task owns the [`State`] and the loops'
//! `Controller`. It applies what the watches and its own tasks report, steps the
//! controller when the view changed or a loop's deadline came (`Controller::next_wake`),
//! and performs the actions the step returns.
//!
//! Writes to the API server are awaited in order, each answer applied to the state at
//! once, so the next step already sees what the last one did. What takes long or waits
//! on others — a cloud launch or termination, an eviction, the cloud's instance list —
//! runs as a task in a `JoinSet` (at most one per object, so a repeated action is never
//! performed twice while the first is out), and its outcome comes back as a loop
//! `Event` on a later step. Writes carry the resourceVersion they were decided on; a
//! 409 means the view was stale, and the next step decides again on fresh state.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kerf_api::crd;
use kerf_cloud::{CreateError, Created, Instance, LaunchRequest, Provider, ProviderError};
use kerf_controllers::{Action, Claim, Controller, DeletionReason, Event, Reason, Subject};
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
use crate::state::{Kind, RecentCloud, State};

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

pub struct Shell<P: Provider> {
    pub client: Client,
    pub provider: Arc<P>,
    pub state: State,
    controller: Controller,
    tasks: JoinSet<Completion>,
    running: BTreeSet<Task>,
    /// Retry-after times, per eviction and per launch that failed.
    evict_backoff: BTreeMap<PodKey, (i64, i64)>,
    launch_retry: BTreeMap<String, i64>,
    /// What each launch's provider asked to have on its NodeClaim (the class hash, the
    /// instance profile), written with the launch's labels.
    launch_annotations: BTreeMap<String, kerf_model::Labels>,
    /// Launches and terminations since the instance list in flight began.
    recent: RecentCloud,
    last_list_at: i64,
    last_now: i64,
    events: Vec<Event>,
    /// Kubernetes events, deduplicated here and published by a task of their own.
    dedupe: Dedupe,
    events_out: tokio::sync::mpsc::Sender<Outgoing>,
    /// Launch errors to write onto their claims' `Launched` condition.
    launch_errors: Vec<(String, String)>,
    /// The state gauges and kerf's running savings, for `/metrics`.
    pub gauges: metrics::Gauges,
    /// Set by a disruption command for the rest of its step: the claims created after
    /// it are its replacements (`nodeclaims_created_total{reason}`).
    replacing_for: Option<String>,
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
            launch_retry: BTreeMap::new(),
            launch_annotations: BTreeMap::new(),
            recent: RecentCloud::default(),
            last_list_at: i64::MIN / 2,
            last_now: 0,
            events: Vec::new(),
            dedupe: Dedupe::default(),
            events_out,
            launch_errors: Vec::new(),
            gauges: metrics::Gauges::default(),
            replacing_for: None,
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

    /// When the loops next want a step on an unchanged view.
    pub fn next_wake(&self) -> i64 {
        let mut wake = self.controller.next_wake(self.last_now, &self.state.view);
        for (until, _) in self.evict_backoff.values() {
            wake = wake.min(*until);
        }
        for until in self.launch_retry.values() {
            wake = wake.min(*until);
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

impl<P: Provider> Shell<P> {
    /// One step of the loops and everything it asks for.
    pub async fn step(&mut self) {
        let now = self.now();
        let events: Vec<Event> = std::mem::take(&mut self.state.events)
            .into_iter()
            .chain(std::mem::take(&mut self.events))
            .collect();
        for (claim, message) in std::mem::take(&mut self.launch_errors) {
            self.claim_condition(
                &claim,
                claims::LAUNCHED,
                "Unknown",
                "LaunchFailed",
                &message,
                now,
            )
            .await;
        }
        let started = std::time::Instant::now();
        let actions = self.controller.step(now, &self.state.view, &events);
        metrics::step_duration(
            started.elapsed().as_secs_f64(),
            !self.state.view.pending.is_empty(),
        );
        self.replacing_for = None;
        // Provisional claim names are the loops' own and are the API names too.
        for action in actions {
            self.perform(now, action).await;
        }
        self.sync_nodepool_status(now).await;
    }

    /// Writes each NodePool's status (`nodepools.rs`) where it changed, on the version
    /// it was computed from; a 409 is computed again next step.
    async fn sync_nodepool_status(&mut self, now: i64) {
        use crate::nodepools::{desired_status, differs, status_patch};
        let changed: Vec<(String, serde_json::Value)> = (self.state.stored.nodepools.values())
            .filter_map(|pool| {
                let desired = desired_status(pool, &self.state, now)?;
                let held = pool.status.as_ref();
                differs(held, &desired).then(|| {
                    let version = pool.metadata.resource_version.as_deref();
                    (pool.name_any(), status_patch(held, &desired, version))
                })
            })
            .collect();
        let api: Api<crd::NodePool> = Api::all(self.client.clone());
        for (name, body) in changed {
            match api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&body))
                .await
            {
                Ok(updated) => {
                    tracing::debug!(nodepool = %name, "nodepool status written");
                    self.state.apply_nodepool(&updated);
                }
                Err(e) => report("nodepool status", &name, &e),
            }
        }
    }

    async fn perform(&mut self, now: i64, action: Action) {
        tracing::debug!(?action, "action");
        match action {
            Action::CreateClaim(claim) => self.create_claim(now, &claim).await,
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
            }
            Action::Launch {
                claim,
                options,
                image_id,
            } => self.launch(now, claim, options, image_id),
            Action::MarkLaunched { claim, instance_id } => {
                self.mark_launched(now, &claim, &instance_id).await
            }
            Action::Register { claim, node } => self.register(now, &claim, &node).await,
            Action::Initialize { claim } => self.initialize(now, &claim).await,
            Action::DeleteClaim { claim, reason } => self.delete_claim(now, &claim, &reason).await,
            Action::Taint { node, taint } => {
                self.patch_node_taints(&node, &taint.key, Some(&taint))
                    .await
            }
            Action::Untaint { node, key } => self.patch_node_taints(&node, &key, None).await,
            Action::Evict { pod } => self.evict(now, pod),
            Action::ForceDelete { pod } => {
                let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
                let params = DeleteParams {
                    grace_period_seconds: Some(1),
                    ..DeleteParams::default()
                };
                match api.delete(&pod.name, &params).await {
                    Ok(_) => {
                        tracing::info!(pod = %pod, "deleted at the termination grace deadline");
                        self.record(
                            now,
                            Reason::Disrupted,
                            Subject::Pod(pod),
                            "Deleting the pod to accommodate the terminationTime".into(),
                        );
                    }
                    Err(e) => report("force delete", &pod.to_string(), &e),
                }
            }
            Action::TerminateInstance { instance_id } => {
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
            Action::RemoveNode { node } => self.remove_node(&node).await,
            Action::RemoveClaim { claim } => self.remove_claim(&claim).await,
            Action::Record {
                reason,
                about,
                message,
            } => self.record(now, reason, about, message),
            Action::Disrupting {
                method,
                decision,
                nodes,
                savings_per_hour,
            } => {
                metrics::disruption_decided(method, decision);
                if decision == kerf_disruption::Decision::Replace {
                    self.replacing_for =
                        metrics::disruption_reason_label(&DeletionReason::Disruption(method));
                }
                let share = savings_per_hour / nodes.len().max(1) as f64;
                for node in &nodes {
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
            }
        }
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

    async fn create_claim(&mut self, now: i64, claim: &Claim) {
        let Some(pool) = self.state.stored.nodepools.get(&claim.nodepool) else {
            return;
        };
        let nodeclaim = claims::to_nodeclaim(claim, pool);
        let api: Api<crd::NodeClaim> = Api::all(self.client.clone());
        let created = match api.create(&PostParams::default(), &nodeclaim).await {
            Ok(c) => {
                metrics::claim_created(
                    &claim.nodepool,
                    self.replacing_for.as_deref().unwrap_or("provisioning"),
                );
                c
            }
            // Made before a lost answer or a restart: the name is the loops' own.
            Err(e) if is_code(&e, 409) => match api.get(&claim.name).await {
                Ok(c) => c,
                Err(e) => return report("get nodeclaim", &claim.name, &e),
            },
            Err(e) => return report("create nodeclaim", &claim.name, &e),
        };
        tracing::info!(nodeclaim = %claim.name, nodepool = %claim.nodepool, options = claim.options.len(), first = ?claim.options.first().map(ToString::to_string), "created nodeclaim");
        let generation = created.metadata.generation;
        self.state.apply_nodeclaim(&created);
        if created
            .status
            .as_ref()
            .is_none_or(|s| s.conditions.is_empty())
        {
            let status =
                json!({"status": {"conditions": claims::initial_conditions(generation, now)}});
            match api
                .patch_status(&claim.name, &PatchParams::default(), &Patch::Merge(&status))
                .await
            {
                Ok(updated) => self.state.apply_nodeclaim(&updated),
                Err(e) => report("nodeclaim status", &claim.name, &e),
            }
        }
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

    /// Patches a NodeClaim's status conditions (and more), on the version decided on.
    async fn claim_status(
        &mut self,
        name: &str,
        extra: serde_json::Value,
        conditions: &[(&str, &str, &str, &str)],
        now: i64,
    ) -> bool {
        let Some(stored) = self.state.stored.nodeclaims.get(name) else {
            return false;
        };
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
        let body = json!({
            "metadata": {"resourceVersion": stored.metadata.resource_version},
            "status": status,
        });
        let api: Api<crd::NodeClaim> = Api::all(self.client.clone());
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&body))
            .await
        {
            Ok(updated) => {
                self.state.apply_nodeclaim(&updated);
                true
            }
            Err(e) => {
                report("nodeclaim status", name, &e);
                false
            }
        }
    }

    async fn claim_condition(
        &mut self,
        name: &str,
        type_: &str,
        status: &str,
        reason: &str,
        message: &str,
        now: i64,
    ) {
        self.claim_status(name, json!({}), &[(type_, status, reason, message)], now)
            .await;
    }

    async fn mark_launched(&mut self, now: i64, claim: &str, instance_id: &str) {
        let Some(instance) = self.state.view.instances.get(instance_id).cloned() else {
            return;
        };
        let Some(stored) = self.state.stored.nodeclaims.get(claim) else {
            return;
        };
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
        let api: Api<crd::NodeClaim> = Api::all(self.client.clone());
        match api
            .patch(claim, &PatchParams::default(), &Patch::Merge(&body))
            .await
        {
            Ok(updated) => {
                self.launch_annotations.remove(claim);
                self.state.apply_nodeclaim(&updated)
            }
            Err(e) => return report("nodeclaim labels", claim, &e),
        }
        let mut status = json!({"providerID": instance.id, "imageID": instance.image_id});
        if let Some(it) = &it {
            status["capacity"] = json!(claims::quantities(&it.capacity));
            status["allocatable"] = json!(claims::quantities(&it.allocatable()));
        }
        if instance.image_id.is_empty() {
            status.as_object_mut().map(|s| s.remove("imageID"));
        }
        self.claim_status(
            claim,
            status,
            &[(claims::LAUNCHED, "True", "Launched", "")],
            now,
        )
        .await;
    }

    async fn register(&mut self, now: i64, claim_name: &str, node_name: &str) {
        let (Some(stored), Some(claim)) = (
            self.state.stored.nodes.get(node_name).cloned(),
            self.state.stored.nodeclaims.get(claim_name).cloned(),
        ) else {
            return;
        };
        let view_claim = self.state.view.claims.get(claim_name).cloned();
        let mut taints = node_taints(&stored);
        taints.retain(|t| t.key != labels::TAINT_UNREGISTERED);
        let sync_taints = stored
            .labels()
            .get("karpenter.sh/do-not-sync-taints")
            .is_none_or(|v| v != "true");
        if sync_taints && let Some(c) = &view_claim {
            for t in c.taints.iter().chain(&c.startup_taints) {
                if !taints
                    .iter()
                    .any(|w| w.key == t.key && w.effect == t.effect.as_str())
                {
                    taints.push(claims::node_taint(t));
                }
            }
        }
        let mut node_labels = serde_json::Map::new();
        for (k, v) in claim.labels() {
            node_labels.insert(k.clone(), json!(v));
        }
        node_labels.insert(labels::REGISTERED.into(), json!("true"));
        let mut finalizers: Vec<String> = stored.finalizers().to_vec();
        if !finalizers
            .iter()
            .any(|f| f == labels::FINALIZER_TERMINATION)
        {
            finalizers.push(labels::FINALIZER_TERMINATION.into());
        }
        let mut owners = stored.owner_references().to_vec();
        if !owners.iter().any(|o| o.kind == "NodeClaim") {
            owners.push(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                    api_version: "karpenter.sh/v1".into(),
                    kind: "NodeClaim".into(),
                    name: claim_name.into(),
                    uid: claim.uid().unwrap_or_default(),
                    block_owner_deletion: Some(true),
                    controller: None,
                },
            );
        }
        let body = json!({
            "metadata": {
                "resourceVersion": stored.metadata.resource_version,
                "labels": node_labels,
                "annotations": claim.annotations(),
                "finalizers": finalizers,
                "ownerReferences": owners,
            },
            "spec": {"taints": taints},
        });
        let api: Api<Node> = Api::all(self.client.clone());
        match api
            .patch(node_name, &PatchParams::default(), &Patch::Merge(&body))
            .await
        {
            Ok(updated) => self.state.apply_node(&updated),
            Err(e) => return report("register node", node_name, &e),
        }
        tracing::info!(nodeclaim = %claim_name, node = %node_name, "registered");
        if let Some(node) = self.state.view.nodes.get(node_name) {
            metrics::node_created(
                node.labels.get(labels::NODEPOOL).map_or("", String::as_str),
                node.labels.get(labels::ZONE).map_or("", String::as_str),
            );
        }
        self.claim_status(
            claim_name,
            json!({"nodeName": node_name}),
            &[(claims::REGISTERED, "True", "Registered", "")],
            now,
        )
        .await;
    }

    async fn initialize(&mut self, now: i64, claim_name: &str) {
        let Some(node_name) = self
            .state
            .view
            .claims
            .get(claim_name)
            .and_then(|c| c.node_name.clone())
        else {
            return;
        };
        let Some(stored) = self.state.stored.nodes.get(&node_name) else {
            return;
        };
        if stored
            .labels()
            .get(labels::INITIALIZED)
            .is_none_or(|v| v != "true")
        {
            let body = json!({
                "metadata": {
                    "resourceVersion": stored.metadata.resource_version,
                    "labels": {labels::INITIALIZED: "true"},
                },
            });
            let api: Api<Node> = Api::all(self.client.clone());
            match api
                .patch(&node_name, &PatchParams::default(), &Patch::Merge(&body))
                .await
            {
                Ok(updated) => self.state.apply_node(&updated),
                Err(e) => return report("initialize node", &node_name, &e),
            }
        }
        tracing::info!(nodeclaim = %claim_name, node = %node_name, "initialized");
        self.claim_status(
            claim_name,
            json!({}),
            &[(claims::INITIALIZED, "True", "Initialized", "")],
            now,
        )
        .await;
    }

    async fn delete_claim(&mut self, now: i64, name: &str, reason: &DeletionReason) {
        if self
            .state
            .view
            .claims
            .get(name)
            .is_none_or(|c| c.deleting_since.is_some())
        {
            return;
        }
        if let Some(kind) = reason.karpenter() {
            let message = reason.to_string();
            self.claim_condition(name, claims::DISRUPTION_REASON, "True", kind, &message, now)
                .await;
        }
        let api: Api<crd::NodeClaim> = Api::all(self.client.clone());
        match api.delete(name, &DeleteParams::default()).await {
            Ok(either) => {
                tracing::info!(nodeclaim = %name, %reason, "deleting nodeclaim");
                if let Some(c) = self.state.view.claims.get(name) {
                    metrics::claim_disrupted(
                        reason,
                        &c.nodepool,
                        c.launched.as_ref().map_or("", |o| o.capacity_type.as_str()),
                    );
                }
                if let either::Either::Left(obj) = either {
                    self.state.apply_nodeclaim(&obj);
                }
            }
            Err(e) => report("delete nodeclaim", name, &e),
        }
    }

    /// Replaces the node's taint with key `key` by `taint` (or removes it), on the
    /// version held.
    async fn patch_node_taints(
        &mut self,
        node: &str,
        key: &str,
        taint: Option<&kerf_model::Taint>,
    ) {
        let Some(stored) = self.state.stored.nodes.get(node) else {
            return;
        };
        let mut taints = node_taints(stored);
        taints.retain(|t| t.key != key);
        taints.extend(taint.map(claims::node_taint));
        let body = json!({
            "metadata": {"resourceVersion": stored.metadata.resource_version},
            "spec": {"taints": taints},
        });
        let api: Api<Node> = Api::all(self.client.clone());
        match api
            .patch(node, &PatchParams::default(), &Patch::Merge(&body))
            .await
        {
            Ok(updated) => self.state.apply_node(&updated),
            Err(e) => report("node taints", node, &e),
        }
    }

    fn evict(&mut self, now: i64, pod: PodKey) {
        if self
            .evict_backoff
            .get(&pod)
            .is_some_and(|(until, _)| *until > now)
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

    async fn remove_node(&mut self, name: &str) {
        let Some(stored) = self.state.stored.nodes.get(name).cloned() else {
            return;
        };
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
            return;
        }
        let api: Api<Node> = Api::all(self.client.clone());
        if stored.metadata.deletion_timestamp.is_none() {
            match api.delete(name, &DeleteParams::default()).await {
                Ok(either::Either::Left(obj)) => self.state.apply_node(&obj),
                Ok(either::Either::Right(_)) => return self.state.delete(Kind::Node, name),
                Err(e) if is_code(&e, 404) => return self.state.delete(Kind::Node, name),
                Err(e) => return report("delete node", name, &e),
            }
        }
        let deleting_since = self
            .state
            .stored
            .nodes
            .get(name)
            .and_then(|n| n.metadata.deletion_timestamp.as_ref())
            .map(claims::ms);
        if self.drop_finalizer::<Node>(Kind::Node, name).await {
            let get = |k: &str| stored.labels().get(k).cloned().unwrap_or_default();
            metrics::node_terminated(
                &get(labels::NODEPOOL),
                &get(labels::ZONE),
                deleting_since.map(|t| (unix_ms() - t).max(0) as f64 / 1000.0),
            );
        }
    }

    async fn remove_claim(&mut self, name: &str) {
        let Some(stored) = self.state.stored.nodeclaims.get(name).cloned() else {
            return;
        };
        let api: Api<crd::NodeClaim> = Api::all(self.client.clone());
        if stored.metadata.deletion_timestamp.is_none() {
            match api.delete(name, &DeleteParams::default()).await {
                Ok(either::Either::Left(obj)) => self.state.apply_nodeclaim(&obj),
                Ok(either::Either::Right(_)) => return self.state.delete(Kind::NodeClaim, name),
                Err(e) if is_code(&e, 404) => return self.state.delete(Kind::NodeClaim, name),
                Err(e) => return report("delete nodeclaim", name, &e),
            }
        }
        let claim = self.state.view.claims.get(name).cloned();
        if self
            .drop_finalizer::<crd::NodeClaim>(Kind::NodeClaim, name)
            .await
        {
            tracing::info!(nodeclaim = %name, "terminated");
            if let Some(c) = claim {
                let (capacity_type, zone) = c
                    .launched
                    .as_ref()
                    .map_or(("", ""), |o| (o.capacity_type.as_str(), o.zone.as_str()));
                metrics::claim_terminated(
                    &c.nodepool,
                    capacity_type,
                    zone,
                    c.deleting_since
                        .map(|t| (unix_ms() - t).max(0) as f64 / 1000.0),
                );
            }
        }
    }

    /// Removes `karpenter.sh/termination` from a deleting object, on the version held;
    /// with it gone the object is gone, and the state forgets it at once. True when this
    /// call removed it.
    async fn drop_finalizer<K>(&mut self, kind: Kind, name: &str) -> bool
    where
        K: Resource<Scope = kube::core::ClusterResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let (finalizers, version) = match kind {
            Kind::Node => match self.state.stored.nodes.get(name) {
                Some(n) => (n.finalizers().to_vec(), n.resource_version()),
                None => return false,
            },
            Kind::NodeClaim => match self.state.stored.nodeclaims.get(name) {
                Some(n) => (n.finalizers().to_vec(), n.resource_version()),
                None => return false,
            },
            _ => return false,
        };
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
        let body = json!({"metadata": {"resourceVersion": version, "finalizers": rest}});
        let api: Api<K> = Api::all(self.client.clone());
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&body))
            .await
        {
            Ok(_) => {
                if rest.is_empty() {
                    self.state.delete(kind, name);
                }
                true
            }
            Err(e) if is_code(&e, 404) => {
                self.state.delete(kind, name);
                false
            }
            Err(e) => {
                report("remove finalizer", name, &e);
                false
            }
        }
    }
}
