//! The in-memory cluster: the objects a `ClusterView` shows, the workloads that keep
//! their pods running, the eviction API, and the simulated cloud behind it. It performs
//! the autoscaler's actions and records what the report needs.

use std::collections::{BTreeMap, BTreeSet};

use kerf_cloud::{CloudEvent, CloudProvider, CreateError, InstanceState, SimCloud};
use kerf_controllers::{Action, ClusterView, ConditionType, Event, PodState};
use kerf_model::pod::PodKey;
use kerf_model::{Effect, Pdb, Pod, Taint, labels};

use crate::scenario::Curve;

/// How long a Job's pods run once bound, from the pod template annotation.
pub const ANNOTATION_DURATION: &str = "sim.kerf.sh/duration";
const DEFAULT_JOB_MS: i64 = 600_000;

/// A Deployment, StatefulSet, ReplicaSet, Job or bare Pod, and the pods it keeps.
#[derive(Clone, Debug)]
pub(crate) struct Workload {
    pub(crate) kind: String,
    pub(crate) template: Pod,
    pub(crate) replicas: u32,
    pub(crate) next_index: u64,
    pub(crate) live: BTreeSet<PodKey>,
    /// Jobs: how long each pod runs, and how many completions are still to come.
    pub(crate) job: Option<(i64, u32)>,
    pub(crate) curve: Option<Curve>,
}

impl Workload {
    fn desired(&self) -> usize {
        match self.job {
            Some((_, remaining)) => remaining as usize,
            None => self.replicas as usize,
        }
    }

    /// Whether a pod that goes is replaced.
    fn recreates(&self) -> bool {
        self.kind != "Pod"
    }
}

/// Something the cluster does on its own later.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    NodeReady(String),
    StartupTaintsGone(String),
    JobDone(PodKey),
    Curve(String),
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) waits: Vec<f64>,
    pub(crate) disruptions: BTreeMap<String, u64>,
    pub(crate) evictions: u64,
    pub(crate) pdb_violations: u64,
    pub(crate) do_not_disrupt_violations: u64,
    /// Kubernetes events the autoscaler recorded, by reason.
    pub(crate) recorded: BTreeMap<String, u64>,
}

pub(crate) struct Cluster {
    pub(crate) view: ClusterView,
    pub(crate) cloud: SimCloud,
    pub(crate) workloads: BTreeMap<String, Workload>,
    pub(crate) timers: BTreeMap<(i64, u64), Timer>,
    timer_seq: u64,
    /// Events for the autoscaler's next step.
    pub(crate) events: Vec<Event>,
    pub(crate) counters: Counters,
    /// Something the scheduler should look at again.
    pub(crate) sched_dirty: bool,
    dirty_workloads: BTreeSet<String>,
    /// Unix seconds at virtual time 0, for `do-not-disrupt` durations.
    epoch_secs: i64,
}

/// `namespace/Kind/name` for a workload; bare pods are `namespace/Pod/name`.
pub(crate) fn workload_key(pod: &Pod) -> String {
    match &pod.owner {
        Some(o) => format!("{}/{}/{}", pod.key.namespace, o.kind, o.name),
        None => format!("{}/Pod/{}", pod.key.namespace, pod.key.name),
    }
}

impl Cluster {
    pub(crate) fn new(view: ClusterView, cloud: SimCloud, epoch_secs: i64) -> Cluster {
        Cluster {
            view,
            cloud,
            workloads: BTreeMap::new(),
            timers: BTreeMap::new(),
            timer_seq: 0,
            events: Vec::new(),
            counters: Counters::default(),
            sched_dirty: true,
            dirty_workloads: BTreeSet::new(),
            epoch_secs,
        }
    }

    pub(crate) fn at(&mut self, when: i64, timer: Timer) {
        self.timer_seq += 1;
        self.timers.insert((when, self.timer_seq), timer);
    }

    // ---- Manifests ---------------------------------------------------------------

    pub(crate) fn apply(&mut self, now: i64, m: &kerf_api::Manifests) {
        let v = &mut self.view;
        for np in &m.nodepools {
            match v.nodepools.iter_mut().find(|p| p.name == np.name) {
                Some(p) => *p = np.clone(),
                None => v.nodepools.push(np.clone()),
            }
        }
        v.nodepools.sort_by(|a, b| a.name.cmp(&b.name));
        for class in &m.node_classes {
            let images = m
                .node_class_images
                .get(class)
                .cloned()
                .unwrap_or_else(|| vec![format!("ami-{class}-1")]);
            v.node_class_images.entry(class.clone()).or_insert(images);
        }
        for pdb in &m.pdbs {
            v.pdbs
                .retain(|p| !(p.namespace == pdb.namespace && p.name == pdb.name));
            v.pdbs.push(pdb.clone());
        }
        for ds in &m.daemonsets {
            v.daemonsets.retain(|d| d.key != ds.key);
            v.daemonsets.push(ds.clone());
        }
        v.namespaces
            .extend(m.namespaces.iter().map(|(k, l)| (k.clone(), l.clone())));
        for node in &m.nodes {
            v.nodes.insert(node.name.clone(), node.clone());
        }
        v.generation += 1;
        for node in &m.nodes {
            self.ensure_daemons(now, &node.name);
        }
        for pod in &m.bound_pods {
            self.view.insert_pod(PodState {
                pod: pod.clone(),
                created_at: now,
                nominated: None,
            });
            let key = workload_key(pod);
            self.workload_entry(&key, pod).live.insert(pod.key.clone());
        }
        // Pending pods, grouped by the workload that made them.
        let mut groups: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
        for pod in &m.pending_pods {
            groups.entry(workload_key(pod)).or_default().push(pod);
        }
        for (key, pods) in groups {
            let template = pods[0].clone();
            let n = pods.len() as u32;
            let is_job = template.owner.as_ref().is_some_and(|o| o.kind == "Job");
            let job_ms = template
                .annotations
                .get(ANNOTATION_DURATION)
                .and_then(|d| crate::scenario::parse_duration(d).ok())
                .unwrap_or(DEFAULT_JOB_MS);
            let w = self.workload_entry(&key, &template);
            w.template = template;
            w.replicas = n;
            w.next_index = w.next_index.max(u64::from(n));
            if is_job {
                w.job = Some((job_ms, n));
            }
            self.dirty_workloads.insert(key);
        }
        self.reconcile_workloads(now);
        self.sched_dirty = true;
    }

    fn workload_entry(&mut self, key: &str, pod: &Pod) -> &mut Workload {
        self.workloads
            .entry(key.to_string())
            .or_insert_with(|| Workload {
                kind: pod
                    .owner
                    .as_ref()
                    .map_or("Pod".to_string(), |o| o.kind.clone()),
                template: pod.clone(),
                replicas: 0,
                next_index: 0,
                live: BTreeSet::new(),
                job: None,
                curve: None,
            })
    }

    pub(crate) fn delete_object(&mut self, now: i64, kind: &str, namespace: &str, name: &str) {
        match kind {
            "NodePool" => self.view.nodepools.retain(|p| p.name != name),
            "DaemonSet" => self
                .view
                .daemonsets
                .retain(|d| !(d.key.namespace == namespace && d.key.name == name)),
            "PodDisruptionBudget" => self
                .view
                .pdbs
                .retain(|p| !(p.namespace == namespace && p.name == name)),
            _ => {
                let key = format!("{namespace}/{kind}/{name}");
                if let Some(w) = self.workloads.remove(&key) {
                    for pod in w.live {
                        self.view.remove_pod(&pod);
                    }
                }
            }
        }
        self.view.generation += 1;
        self.sched_dirty = true;
        self.reconcile_workloads(now);
    }

    /// Find a workload by `namespace/name` (any kind).
    pub(crate) fn find_workload(&self, qualified: &str) -> Option<String> {
        let (ns, name) = qualified.split_once('/')?;
        self.workloads
            .keys()
            .find(|k| {
                let mut parts = k.splitn(3, '/');
                parts.next() == Some(ns)
                    && parts.next().is_some_and(|kind| kind != "Pod")
                    && parts.next() == Some(name)
            })
            .cloned()
    }

    pub(crate) fn scale(&mut self, now: i64, key: &str, replicas: u32) {
        if let Some(w) = self.workloads.get_mut(key)
            && w.job.is_none()
        {
            w.replicas = replicas;
            self.dirty_workloads.insert(key.to_string());
            self.reconcile_workloads(now);
        }
    }

    // ---- Workloads -------------------------------------------------------------

    /// Bring every changed workload to its desired pod count.
    pub(crate) fn reconcile_workloads(&mut self, now: i64) {
        let dirty = std::mem::take(&mut self.dirty_workloads);
        for key in dirty {
            let Some(w) = self.workloads.get_mut(&key) else {
                continue;
            };
            let desired = w.desired();
            while w.live.len() < desired {
                let mut pod = w.template.clone();
                pod.key.name = match &w.template.owner {
                    Some(o) => format!("{}-{}", o.name, w.next_index),
                    None => w.template.key.name.clone(),
                };
                w.next_index += 1;
                pod.node_name = None;
                w.live.insert(pod.key.clone());
                self.events.push(Event::PodPending(pod.key.clone()));
                self.view.insert_pod(PodState {
                    pod,
                    created_at: now,
                    nominated: None,
                });
                self.sched_dirty = true;
            }
            if w.live.len() > desired {
                // Pending pods go first, then the newest.
                let mut victims: Vec<&PodKey> = w.live.iter().collect();
                victims.sort_by_key(|k| {
                    let state = &self.view.pods[*k];
                    (
                        state.pod.node_name.is_some(),
                        std::cmp::Reverse(state.created_at),
                    )
                });
                let excess = w.live.len() - desired;
                let gone: Vec<PodKey> = victims.into_iter().take(excess).cloned().collect();
                for key in gone {
                    w.live.remove(&key);
                    self.view.remove_pod(&key);
                }
                self.sched_dirty = true;
            }
        }
    }

    /// A pod went (evicted, deleted, its node gone). Its workload replaces it; a Job's
    /// pod that finished is not replaced.
    fn pod_gone(&mut self, key: &PodKey, completed: bool) {
        let Some(state) = self.view.remove_pod(key) else {
            return;
        };
        let wkey = workload_key(&state.pod);
        if let Some(w) = self.workloads.get_mut(&wkey) {
            w.live.remove(key);
            if completed && let Some((_, remaining)) = &mut w.job {
                *remaining = remaining.saturating_sub(1);
            }
            if !w.recreates() {
                w.replicas = w.replicas.saturating_sub(1);
            }
            self.dirty_workloads.insert(wkey);
        }
        self.sched_dirty = true;
    }

    // ---- Nodes -----------------------------------------------------------------

    /// DaemonSet pods on a node, bound directly as the DaemonSet controller does.
    fn ensure_daemons(&mut self, now: i64, node_name: &str) {
        let Some(node) = self.view.nodes.get(node_name) else {
            return;
        };
        let hard: Vec<Taint> = node
            .taints
            .iter()
            .filter(|t| t.key != labels::TAINT_UNREGISTERED)
            .filter(|t| {
                self.view
                    .claim_of_node(node_name)
                    .is_none_or(|c| !c.startup_taints.iter().any(|s| s.key == t.key))
            })
            .cloned()
            .collect();
        let mut new = Vec::new();
        for ds in &self.view.daemonsets {
            if !ds.daemon_runs_on(&node.labels, &hard) {
                continue;
            }
            let mut pod = ds.clone();
            pod.key.name = format!("{}-{}", ds.key.name, node_name);
            pod.node_name = Some(node_name.to_string());
            if !self.view.pods.contains_key(&pod.key) {
                new.push(pod);
            }
        }
        for pod in new {
            self.view.insert_pod(PodState {
                pod,
                created_at: now,
                nominated: None,
            });
        }
    }

    fn node_registers(&mut self, now: i64, instance_id: &str) {
        let Some(instance) = self.cloud.instance(instance_id).cloned() else {
            return;
        };
        // The kubelet registers only for an instance launched for a claim that exists;
        // an orphan is garbage-collected by the autoscaler.
        let Some(claim) = self.view.claims.get(&instance.claim) else {
            return;
        };
        // The node the loops counted the claim as, on the offering the cloud launched,
        // as the kubelet registers it: with its NodePool's label, its startup taints and
        // the unregistered taint, not yet ready.
        let Some(mut node) = claim.node_on(&instance.offer, &self.view.instance_types) else {
            return;
        };
        node.labels
            .insert(labels::NODEPOOL.into(), claim.nodepool.clone());
        let name = claim.name.clone();
        node.taints.extend(claim.startup_taints.iter().cloned());
        node.taints.push(Taint::new(
            labels::TAINT_UNREGISTERED,
            "",
            Effect::NoExecute,
        ));
        node.ready = false;
        let has_startup = !claim.startup_taints.is_empty();
        self.view.nodes.insert(name.clone(), node);
        self.view
            .node_provider_ids
            .insert(name.clone(), instance.id.clone());
        self.view.generation += 1;
        // The kubelet reports Ready a few seconds later; an agent removes startup taints.
        self.at(now + 5_000, Timer::NodeReady(name.clone()));
        if has_startup {
            self.at(now + 15_000, Timer::StartupTaintsGone(name));
        }
    }

    fn remove_node(&mut self, name: &str) {
        let pods: Vec<PodKey> = self
            .view
            .pods_by_node
            .get(name)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        for key in pods {
            self.pod_gone(&key, false);
        }
        self.view.pods_by_node.remove(name);
        self.view.nodes.remove(name);
        self.view.node_provider_ids.remove(name);
        self.view.generation += 1;
        self.sched_dirty = true;
    }

    pub(crate) fn fire(&mut self, now: i64, timer: Timer) {
        match timer {
            Timer::NodeReady(name) => {
                if let Some(node) = self.view.nodes.get_mut(&name)
                    && self.view.node_provider_ids.get(&name).is_some_and(|id| {
                        self.cloud
                            .instance(id)
                            .is_some_and(|i| i.state == InstanceState::Running)
                    })
                {
                    node.ready = true;
                    self.view.generation += 1;
                    self.sched_dirty = true;
                }
            }
            Timer::StartupTaintsGone(name) => {
                let startup: Vec<String> = self
                    .view
                    .claim_of_node(&name)
                    .map(|c| c.startup_taints.iter().map(|t| t.key.clone()).collect())
                    .unwrap_or_default();
                if let Some(node) = self.view.nodes.get_mut(&name) {
                    node.taints.retain(|t| !startup.contains(&t.key));
                    self.view.generation += 1;
                    self.sched_dirty = true;
                }
            }
            Timer::JobDone(key) => {
                if self
                    .view
                    .pods
                    .get(&key)
                    .is_some_and(|p| p.pod.node_name.is_some())
                {
                    self.pod_gone(&key, true);
                }
            }
            Timer::Curve(key) => {
                let Some(curve) = self.workloads.get(&key).and_then(|w| w.curve.clone()) else {
                    return;
                };
                let hour = (now as f64 / 3_600_000.0) % 24.0;
                self.scale(now, &key, curve.replicas(hour));
                self.at(now + curve.every_ms, Timer::Curve(key));
            }
        }
        self.reconcile_workloads(now);
    }

    // ---- Cloud -----------------------------------------------------------------

    pub(crate) fn cloud_events(&mut self, now: i64) {
        let events = self.cloud.due_events(now);
        if events.is_empty() {
            return;
        }
        for event in events {
            match event {
                CloudEvent::Registers(id) => self.node_registers(now, &id),
                CloudEvent::InterruptionWarning(id) => self
                    .events
                    .push(Event::SpotInterruption { instance_id: id }),
                CloudEvent::RebalanceRecommendation(id) => self
                    .events
                    .push(Event::RebalanceRecommendation { instance_id: id }),
                CloudEvent::Gone(id) => {
                    // The kubelet is gone: the node goes NotReady and its pods die.
                    let node = self
                        .view
                        .node_provider_ids
                        .iter()
                        .find(|(_, pid)| **pid == id)
                        .map(|(n, _)| n.clone());
                    if let Some(node) = node {
                        if let Some(n) = self.view.nodes.get_mut(&node) {
                            n.ready = false;
                        }
                        let pods: Vec<PodKey> = self
                            .view
                            .pods_by_node
                            .get(&node)
                            .map(|s| s.iter().cloned().collect())
                            .unwrap_or_default();
                        for key in pods {
                            self.pod_gone(&key, false);
                        }
                    }
                }
            }
        }
        self.sync_instances();
        self.reconcile_workloads(now);
    }

    /// Copy what the cloud lists into the view.
    pub(crate) fn sync_instances(&mut self) {
        self.view.instances = self
            .cloud
            .list()
            .into_iter()
            .map(|i| (i.id.clone(), i.clone()))
            .collect();
        self.view.generation += 1;
    }

    // ---- Actions ---------------------------------------------------------------

    pub(crate) fn perform(&mut self, now: i64, actions: Vec<Action>) {
        let mut cloud_changed = false;
        for action in actions {
            match action {
                Action::CreateClaim(claim) => {
                    // The loops name each claim once; a name used again would be taken
                    // for the first claim by the API server (409) and by this cluster.
                    debug_assert!(
                        !self.view.claims.contains_key(&claim.name),
                        "claim {} created twice",
                        claim.name
                    );
                    if !self.view.claims.contains_key(&claim.name) {
                        self.view.claims.insert(claim.name.clone(), *claim);
                    }
                }
                Action::Nominate { pod, claim } => {
                    if let Some(p) = self.view.pods.get_mut(&pod)
                        && p.pod.node_name.is_none()
                        && self.view.claims.contains_key(&claim)
                    {
                        p.nominated = Some(claim);
                    }
                }
                Action::Launch {
                    claim,
                    options,
                    image_id,
                } => {
                    let Some(c) = self.view.claims.get(&claim) else {
                        continue;
                    };
                    if c.deleting_since.is_some() || c.provider_id.is_some() {
                        continue;
                    }
                    match self.cloud.create(now, &claim, &options, &image_id) {
                        Ok(created) => {
                            cloud_changed = true;
                            if !created.refused.is_empty() {
                                self.events.push(Event::InsufficientCapacity {
                                    claim,
                                    offers: created.refused,
                                });
                            }
                        }
                        Err(CreateError::InsufficientCapacity(offers)) => {
                            self.events
                                .push(Event::InsufficientCapacity { claim, offers });
                        }
                        Err(e) => self.events.push(Event::LaunchFailed {
                            claim,
                            message: e.to_string(),
                        }),
                    }
                }
                Action::MarkLaunched { claim, instance_id } => {
                    let instance = self.cloud.instance(&instance_id).cloned();
                    if let (Some(c), Some(i)) = (self.view.claims.get_mut(&claim), instance) {
                        c.provider_id = Some(i.id.clone());
                        c.image_id = Some(i.image_id.clone());
                        c.labels
                            .insert(labels::INSTANCE_TYPE.into(), i.offer.instance_type.clone());
                        c.labels.insert(labels::ZONE.into(), i.offer.zone.clone());
                        c.labels
                            .insert(labels::CAPACITY_TYPE.into(), i.offer.capacity_type.clone());
                        c.launched = Some(i.offer);
                    }
                }
                Action::Register { claim, node } => {
                    if let Some(c) = self.view.claims.get_mut(&claim) {
                        c.node_name = Some(node.clone());
                    }
                    if let Some(n) = self.view.nodes.get_mut(&node) {
                        n.taints.retain(|t| t.key != labels::TAINT_UNREGISTERED);
                        n.labels.insert(labels::REGISTERED.into(), "true".into());
                    }
                    self.view.generation += 1;
                    self.ensure_daemons(now, &node);
                }
                Action::Initialize { claim } => {
                    if let Some(c) = self.view.claims.get_mut(&claim) {
                        c.initialized = true;
                        if let Some(n) = c
                            .node_name
                            .as_ref()
                            .and_then(|n| self.view.nodes.get_mut(n))
                        {
                            n.labels.insert(labels::INITIALIZED.into(), "true".into());
                        }
                    }
                    self.sched_dirty = true;
                }
                Action::DeleteClaim { claim, reason } => {
                    let Some(c) = self.view.claims.get_mut(&claim) else {
                        continue;
                    };
                    if c.deleting_since.is_some() {
                        continue;
                    }
                    c.deleting_since = Some(now);
                    c.deletion_reason = Some(reason.clone());
                    if reason.is_disruption() {
                        *self
                            .counters
                            .disruptions
                            .entry(reason.kind().to_string())
                            .or_default() += 1;
                    }
                    self.clear_nominations(&claim);
                }
                Action::Taint { node, taint } => {
                    if let Some(n) = self.view.nodes.get_mut(&node)
                        && !n.taints.iter().any(|t| t.key == taint.key)
                    {
                        n.taints.push(taint);
                    }
                }
                Action::Untaint { node, key } => {
                    if let Some(n) = self.view.nodes.get_mut(&node) {
                        n.taints.retain(|t| t.key != key);
                    }
                    self.sched_dirty = true;
                }
                Action::Evict { pod } => {
                    if !self.evict(now, &pod) {
                        continue;
                    }
                }
                Action::ForceDelete { pod } => {
                    if self.view.pods.contains_key(&pod) {
                        if self.pdb_blocks(&pod) {
                            self.counters.pdb_violations += 1;
                        }
                        self.pod_gone(&pod, false);
                    }
                }
                Action::TerminateInstance { instance_id } => {
                    self.cloud.delete(now, &instance_id);
                    cloud_changed = true;
                }
                Action::RemoveNode { node } => self.remove_node(&node),
                Action::RemoveClaim { claim } => {
                    if self.view.claims.remove(&claim).is_some() {
                        self.clear_nominations(&claim);
                    }
                }
                Action::Record { reason, .. } => {
                    // Counted by name, allocating only for a reason not seen before.
                    match self.counters.recorded.get_mut(reason.as_str()) {
                        Some(n) => *n += 1,
                        None => {
                            self.counters
                                .recorded
                                .insert(reason.as_str().to_string(), 1);
                        }
                    }
                    continue;
                }
                Action::Disrupting { .. } => continue,
                Action::SetCondition {
                    claim,
                    condition,
                    to,
                } => {
                    if let Some(c) = self.view.claims.get_mut(&claim) {
                        *match condition {
                            ConditionType::Drifted => &mut c.drifted,
                            ConditionType::Consolidatable => &mut c.consolidatable,
                        } = to;
                    }
                    // Nothing a loop decides on changed: the pass does not read the
                    // conditions it writes, so it may still skip an unchanged view.
                    continue;
                }
            }
            // Any other action may have changed the view. (An eviction refused or an
            // event recorded did not: the disruption pass may skip an unchanged view.)
            self.view.generation += 1;
        }
        if cloud_changed {
            self.sync_instances();
        }
        self.reconcile_workloads(now);
    }

    fn clear_nominations(&mut self, claim: &str) {
        for key in &self.view.pending {
            if let Some(p) = self.view.pods.get_mut(key)
                && p.nominated.as_deref() == Some(claim)
            {
                p.nominated = None;
                self.events.push(Event::PodPending(key.clone()));
            }
        }
    }

    /// The eviction API: refused when a PDB selecting the pod allows no disruption.
    /// Whether the pod went.
    fn evict(&mut self, now: i64, key: &PodKey) -> bool {
        let Some(state) = self.view.pods.get(key) else {
            return false;
        };
        if state.pod.node_name.is_none() {
            return false;
        }
        if self.pdb_blocks(key) {
            self.events.push(Event::EvictionRefused {
                pod: key.clone(),
                reason: "Cannot evict pod as it would violate the pod's disruption budget".into(),
            });
            return false;
        }
        if state.pod.do_not_disrupt_at(self.epoch_secs + now / 1000) {
            let deadline_passed = state
                .pod
                .node_name
                .as_deref()
                .and_then(|n| self.view.claim_of_node(n))
                .and_then(|c| c.grace_deadline())
                .is_some_and(|d| now >= d);
            if !deadline_passed {
                self.counters.do_not_disrupt_violations += 1;
            }
        }
        self.counters.evictions += 1;
        self.pod_gone(key, false);
        true
    }

    /// Whether removing the pod would take a PDB that selects it below its allowance.
    fn pdb_blocks(&self, key: &PodKey) -> bool {
        let Some(state) = self.view.pods.get(key) else {
            return false;
        };
        // A pod that is not healthy does not count against the budget.
        let healthy = state
            .pod
            .node_name
            .as_deref()
            .and_then(|n| self.view.nodes.get(n))
            .is_some_and(|n| n.ready);
        healthy
            && self
                .view
                .pdbs
                .iter()
                .filter(|pdb| pdb.selects(&state.pod.key.namespace, &state.pod.labels))
                .any(|pdb| pdb_allowed(pdb, &self.view) < 1)
    }

    /// Pods the report counts as running.
    pub(crate) fn running(&self) -> usize {
        self.view.pods.len() - self.view.pending.len()
    }
}

/// Disruptions a PDB allows now, as the eviction API judges them (healthy pods are bound
/// to a ready node).
pub(crate) fn pdb_allowed(pdb: &Pdb, view: &ClusterView) -> i32 {
    let healthy_on = |p: &PodState| {
        p.pod
            .node_name
            .as_deref()
            .and_then(|n| view.nodes.get(n))
            .is_some_and(|n| n.ready)
    };
    allowed(pdb, view, &healthy_on)
}

/// Disruptions a PDB allows now, as the disruption controller computes them: expected
/// pods are every pod it selects (pending ones included, since their workload wants
/// them), healthy ones are bound to a ready node.
fn allowed(pdb: &Pdb, view: &ClusterView, healthy_on: &dyn Fn(&PodState) -> bool) -> i32 {
    if let Some(a) = pdb.disruptions_allowed {
        return a;
    }
    let mut expected = 0i32;
    let mut healthy = 0i32;
    for p in view.pods.values() {
        if pdb.selects(&p.pod.key.namespace, &p.pod.labels) && !p.pod.is_daemon() {
            expected += 1;
            if healthy_on(p) {
                healthy += 1;
            }
        }
    }
    match (pdb.min_available, pdb.max_unavailable) {
        (_, Some(max)) => max.scaled_up(expected) - (expected - healthy),
        (Some(min), None) => healthy - min.scaled_up(expected),
        (None, None) => i32::MAX,
    }
}
