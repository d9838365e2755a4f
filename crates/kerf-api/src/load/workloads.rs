//! Pods, and the workloads that make them: a Pod as written; Deployments, ReplicaSets,
//! StatefulSets and Jobs into the replicas they would run; a DaemonSet into one template
//! pod.
//!
//! A workload is read into a `Workload` first and expanded once every object is read
//! (`expand`), because what it still lacks depends on the rest of the input: a cluster
//! dump holds a Deployment, its ReplicaSet and their running pods, and only pods none of
//! them has yet are pending. A template is converted once and cloned per replica, so a
//! 1,000-replica Deployment costs one conversion and a thousand clones.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1 as apps;
use k8s_openapi::api::batch::v1 as batch;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use kerf_model::pod::Owner;
use kerf_model::{Effect, Labels, Toleration, TolerationOperator};

use super::pods::{self, PodMeta};
use super::{ObjectRef, PodRole, PriorityFrom, Problems, StagedPod};

/// Whether a pod has finished (`Succeeded`, `Failed`): it holds no resources and its
/// workload replaces it.
pub(crate) fn is_terminal(pod: &core::Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Succeeded" | "Failed"))
}

/// The pod's controller (`ownerReferences` entry with `controller: true`), kind and name.
pub(crate) fn controller_of(meta: &meta::ObjectMeta) -> Option<(String, String)> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .map(|r| (r.kind.clone(), r.name.clone()))
}

/// Why Karpenter would never launch a node for this unbound pod, if it would not
/// (`pod.IsProvisionable` and the scheduling-gate check in Karpenter's provisioner).
pub(crate) fn not_provisionable(pod: &core::Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if spec.node_name.as_deref().is_some_and(|n| !n.is_empty()) {
        return None;
    }
    if pod.metadata.deletion_timestamp.is_some() {
        return Some("it is being deleted".into());
    }
    let gates: Vec<&str> = spec
        .scheduling_gates
        .iter()
        .flatten()
        .map(|g| g.name.as_str())
        .collect();
    if !gates.is_empty() {
        return Some(format!(
            "it has schedulingGates ({}); the scheduler and Karpenter leave it alone until they are removed",
            gates.join(", ")
        ));
    }
    if let Some((kind, name)) = controller_of(&pod.metadata)
        && kind == "DaemonSet"
    {
        return Some(format!(
            "a pod of DaemonSet {name}, which the DaemonSet controller places on the node it is for; Karpenter counts DaemonSets as overhead of new nodes, not as pods to launch nodes for"
        ));
    }
    let node_owner = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.kind == "Node");
    let mirror = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
    if node_owner.is_some() || mirror {
        let node = node_owner.map_or_else(String::new, |r| format!(" of node {}", r.name));
        return Some(format!(
            "a mirror pod{node} (a static pod the kubelet runs); no node is launched for it"
        ));
    }
    None
}

/// A Pod as written. Terminal pods (`Succeeded`, `Failed`) hold no resources and are
/// dropped.
pub(crate) fn bare_pod(
    object: &ObjectRef<'_>,
    pod: &core::Pod,
    problems: &mut Problems,
) -> Vec<StagedPod> {
    let Some(spec) = pod.spec.as_ref() else {
        problems.push("spec", "missing; a Pod needs a spec with containers");
        return Vec::new();
    };
    if is_terminal(pod) {
        return Vec::new();
    }
    let owner = pod
        .metadata
        .owner_references
        .as_ref()
        .and_then(|refs| {
            refs.iter()
                .find(|r| r.controller == Some(true))
                .or_else(|| refs.first())
        })
        .map(|r| Owner {
            kind: r.kind.clone(),
            name: r.name.clone(),
        });
    let meta = PodMeta {
        namespace: object.namespace,
        name: object.name,
        labels: pod.metadata.labels.clone().unwrap_or_default(),
        annotations: pod.metadata.annotations.clone().unwrap_or_default(),
        owner,
        meta_path: "metadata",
    };
    let mut converted = pods::convert(meta, spec, "spec", problems);
    converted.terminating = pod.metadata.deletion_timestamp.is_some();
    let status = pod.status.as_ref();
    converted.started_at = status
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0.as_second());
    if converted.node_name.is_some() {
        // When it was bound: the scheduler's PodScheduled condition turned True then; a
        // pod without conditions started soon after it was bound, and was created before.
        let scheduled = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| {
                c.iter()
                    .find(|c| c.type_ == "PodScheduled" && c.status == "True")
            })
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0.as_second());
        converted.bound_at = scheduled.or(converted.started_at).or(pod
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second()));
    }
    let role = if converted.node_name.is_some() {
        PodRole::Bound
    } else {
        PodRole::Pending
    };
    vec![StagedPod {
        pod: converted,
        role,
        claims: pods::claim_names(spec, object.name),
        claim_classes: pods::ephemeral_claim_classes(spec, object.name),
        runtime_class: pods::runtime_class_without_overhead(spec),
        priority: priority_from(spec),
        source: object.source,
        object: object.label.to_string(),
        spec_path: "spec",
    }]
}

pub(crate) fn deployment(
    object: &ObjectRef<'_>,
    d: &apps::Deployment,
    problems: &mut Problems,
) -> Option<Workload> {
    let Some(spec) = d.spec.as_ref() else {
        problems.push("spec", "missing; a Deployment needs a spec with a template");
        return None;
    };
    check_selector(Some(&spec.selector), &spec.template, problems);
    let n = replica_count(spec.replicas, "spec.replicas", problems);
    Workload::new(
        object,
        WorkloadKind::Deployment,
        &spec.template,
        n,
        problems,
    )
}

pub(crate) fn replica_set(
    object: &ObjectRef<'_>,
    rs: &apps::ReplicaSet,
    problems: &mut Problems,
) -> Option<Workload> {
    let Some(spec) = rs.spec.as_ref() else {
        problems.push("spec", "missing; a ReplicaSet needs a spec with a template");
        return None;
    };
    let Some(template) = spec.template.as_ref() else {
        problems.push(
            "spec.template",
            "missing; a ReplicaSet needs a pod template",
        );
        return None;
    };
    check_selector(Some(&spec.selector), template, problems);
    let n = replica_count(spec.replicas, "spec.replicas", problems);
    let mut workload = Workload::new(object, WorkloadKind::ReplicaSet, template, n, problems)?;
    workload.controller = controller_of(&rs.metadata);
    Some(workload)
}

pub(crate) fn stateful_set(
    object: &ObjectRef<'_>,
    sts: &apps::StatefulSet,
    problems: &mut Problems,
) -> Option<Workload> {
    let Some(spec) = sts.spec.as_ref() else {
        problems.push(
            "spec",
            "missing; a StatefulSet needs a spec with a template",
        );
        return None;
    };
    check_selector(Some(&spec.selector), &spec.template, problems);
    let n = replica_count(spec.replicas, "spec.replicas", problems);
    let first_ordinal = match spec.ordinals.as_ref().and_then(|o| o.start) {
        None => 0,
        Some(start) if start >= 0 => start as usize,
        Some(start) => {
            problems.push(
                "spec.ordinals.start",
                format!("{start} is negative; expected 0 or more"),
            );
            0
        }
    };
    let mut claim_templates = Vec::new();
    for (i, claim) in spec.volume_claim_templates.iter().flatten().enumerate() {
        match claim.metadata.name.as_deref().filter(|n| !n.is_empty()) {
            Some(name) => claim_templates.push((
                name.to_string(),
                claim.spec.as_ref().and_then(|s| s.storage_class_name.clone()),
            )),
            None => problems.push(
                format!("spec.volumeClaimTemplates[{i}].metadata.name"),
                "missing; each claim template needs a name (its claims are named <template>-<statefulset>-<ordinal>)",
            ),
        }
    }
    let mut workload = Workload::new(
        object,
        WorkloadKind::StatefulSet,
        &spec.template,
        n,
        problems,
    )?;
    workload.first_ordinal = first_ordinal;
    workload.claim_templates = claim_templates;
    Some(workload)
}

/// A Job runs `parallelism` pods at once (default 1), never more than the completions
/// still to go; a suspended or finished Job runs none. Its own active pods in the input
/// are subtracted when it is expanded.
pub(crate) fn job(
    object: &ObjectRef<'_>,
    job: &batch::Job,
    problems: &mut Problems,
) -> Option<Workload> {
    let Some(spec) = job.spec.as_ref() else {
        problems.push("spec", "missing; a Job needs a spec with a template");
        return None;
    };
    check_selector(spec.selector.as_ref(), &spec.template, problems);
    let parallelism = replica_count(spec.parallelism, "spec.parallelism", problems);
    let completions = spec
        .completions
        .map(|c| replica_count(Some(c), "spec.completions", problems));
    let status = job.status.as_ref();
    let succeeded = status.and_then(|s| s.succeeded).unwrap_or(0).max(0) as usize;
    // Complete and Failed end a Job; SuccessCriteriaMet and FailureTarget say it is
    // ending, and the Job controller starts no pod after either.
    let finished = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| {
            c.status == "True"
                && matches!(
                    c.type_.as_str(),
                    "Complete" | "Failed" | "SuccessCriteriaMet" | "FailureTarget"
                )
        });
    let n = if spec.suspend == Some(true) || finished {
        0
    } else {
        match completions {
            Some(c) => parallelism.min(c.saturating_sub(succeeded)),
            // Without completions, the first success ends the Job: the controller
            // starts no new pod once any has succeeded.
            None if succeeded > 0 => 0,
            None => parallelism,
        }
    };
    Workload::new(object, WorkloadKind::Job, &spec.template, n, problems)
}

/// One template pod, named after the DaemonSet, with the tolerations the DaemonSet
/// controller adds to every pod it creates.
pub(crate) fn daemon_set(
    object: &ObjectRef<'_>,
    ds: &apps::DaemonSet,
    problems: &mut Problems,
) -> Vec<StagedPod> {
    let Some(spec) = ds.spec.as_ref() else {
        problems.push("spec", "missing; a DaemonSet needs a spec with a template");
        return Vec::new();
    };
    check_selector(Some(&spec.selector), &spec.template, problems);
    let Some(mut daemon) = template_pod(object, "DaemonSet", &spec.template, problems) else {
        return Vec::new();
    };
    daemon.pod.key.name = object.name.to_string();
    daemon.role = PodRole::DaemonSet;
    if let Some(pod_spec) = spec.template.spec.as_ref() {
        daemon.claims = pods::claim_names(pod_spec, object.name);
        daemon.claim_classes = pods::ephemeral_claim_classes(pod_spec, object.name);
        add_daemon_tolerations(
            &mut daemon.pod.tolerations,
            pod_spec.host_network == Some(true),
        );
    }
    vec![daemon]
}

/// `util.AddOrUpdateDaemonPodTolerations` in the DaemonSet controller: daemons keep
/// running on nodes that are not ready, under pressure or cordoned.
fn add_daemon_tolerations(tolerations: &mut Vec<Toleration>, host_network: bool) {
    let mut automatic = vec![
        ("node.kubernetes.io/not-ready", Effect::NoExecute),
        ("node.kubernetes.io/unreachable", Effect::NoExecute),
        ("node.kubernetes.io/disk-pressure", Effect::NoSchedule),
        ("node.kubernetes.io/memory-pressure", Effect::NoSchedule),
        ("node.kubernetes.io/pid-pressure", Effect::NoSchedule),
        ("node.kubernetes.io/unschedulable", Effect::NoSchedule),
    ];
    if host_network {
        automatic.push(("node.kubernetes.io/network-unavailable", Effect::NoSchedule));
    }
    for (key, effect) in automatic {
        let present = tolerations
            .iter()
            .any(|t| t.key == key && t.effect == Some(effect));
        if !present {
            tolerations.push(Toleration {
                key: key.to_string(),
                operator: TolerationOperator::Exists,
                value: String::new(),
                effect: Some(effect),
            });
        }
    }
}

fn replica_count(value: Option<i32>, field: &str, problems: &mut Problems) -> usize {
    match value {
        None => 1,
        Some(n) if n >= 0 => n as usize,
        Some(n) => {
            problems.push(field, format!("{n} is negative; expected 0 or more"));
            0
        }
    }
}

/// The API server rejects a workload whose selector does not select its own template's
/// pods; so does kerf.
fn check_selector(
    selector: Option<&meta::LabelSelector>,
    template: &core::PodTemplateSpec,
    problems: &mut Problems,
) {
    let Some(selector) = selector else { return };
    let is_empty = selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(|e| e.is_empty());
    if is_empty {
        problems.push(
            "spec.selector",
            "must not be empty; select the template's labels, e.g. matchLabels: {app: web}",
        );
        return;
    }
    let n_before = problems.errors.len();
    let converted = pods::label_selector(selector, "spec.selector", problems);
    let labels = template_labels(template);
    if problems.errors.len() == n_before && !converted.matches(&labels) {
        problems.push(
            "spec.selector",
            "does not match spec.template.metadata.labels; the template's pods must carry the labels the selector selects",
        );
    }
}

fn template_labels(template: &core::PodTemplateSpec) -> Labels {
    template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default()
}

fn priority_from(spec: &core::PodSpec) -> PriorityFrom {
    match (&spec.priority, spec.priority_class_name.as_deref()) {
        (Some(_), _) => PriorityFrom::Explicit,
        (None, Some(class)) if !class.is_empty() => PriorityFrom::Class(class.to_string()),
        (None, _) => PriorityFrom::Default,
    }
}

/// A workload's template pod, converted once; its name is set per replica.
fn template_pod(
    object: &ObjectRef<'_>,
    owner_kind: &str,
    template: &core::PodTemplateSpec,
    problems: &mut Problems,
) -> Option<StagedPod> {
    let Some(spec) = template.spec.as_ref() else {
        problems.push(
            "spec.template.spec",
            "missing; the pod template needs a spec with containers",
        );
        return None;
    };
    let metadata = template.metadata.as_ref();
    let meta = PodMeta {
        namespace: object.namespace,
        name: object.name,
        labels: template_labels(template),
        annotations: metadata
            .and_then(|m| m.annotations.clone())
            .unwrap_or_default(),
        owner: Some(Owner {
            kind: owner_kind.to_string(),
            name: object.name.to_string(),
        }),
        meta_path: "spec.template.metadata",
    };
    let pod = pods::convert(meta, spec, "spec.template.spec", problems);
    let role = if pod.node_name.is_some() {
        PodRole::Bound
    } else {
        PodRole::Pending
    };
    Some(StagedPod {
        pod,
        role,
        claims: Vec::new(),
        claim_classes: Vec::new(),
        runtime_class: pods::runtime_class_without_overhead(spec),
        priority: priority_from(spec),
        source: object.source,
        object: object.label.to_string(),
        spec_path: "spec.template.spec",
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WorkloadKind {
    Deployment,
    ReplicaSet,
    StatefulSet,
    Job,
}

impl WorkloadKind {
    fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::ReplicaSet => "ReplicaSet",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::Job => "Job",
        }
    }
}

/// A workload read and converted, waiting to learn which of its pods already exist.
pub(crate) struct Workload {
    kind: WorkloadKind,
    namespace: String,
    name: String,
    /// The workload's own controller (a ReplicaSet's Deployment), kind and name.
    controller: Option<(String, String)>,
    /// How many pods it wants running; a Job's own active pods are not yet subtracted.
    want: usize,
    /// A StatefulSet's first ordinal (`spec.ordinals.start`).
    first_ordinal: usize,
    /// A StatefulSet's volume claim templates: name, and the `storageClassName` its
    /// claims get (`None`: the default class).
    claim_templates: Vec<(String, Option<String>)>,
    template: StagedPod,
    spec: core::PodSpec,
}

impl Workload {
    fn new(
        object: &ObjectRef<'_>,
        kind: WorkloadKind,
        template: &core::PodTemplateSpec,
        want: usize,
        problems: &mut Problems,
    ) -> Option<Workload> {
        let staged = template_pod(object, kind.as_str(), template, problems)?;
        Some(Workload {
            kind,
            namespace: object.namespace.to_string(),
            name: object.name.to_string(),
            controller: None,
            want,
            first_ordinal: 0,
            claim_templates: Vec::new(),
            template: staged,
            spec: template.spec.clone().unwrap_or_default(),
        })
    }

    /// Replica `ordinal`, named `name`; a StatefulSet's also mounts
    /// `<template>-<statefulset>-<ordinal>` for each claim template.
    fn replica(&self, name: String, ordinal: usize) -> StagedPod {
        let mut staged = StagedPod {
            pod: self.template.pod.clone(),
            role: self.template.role,
            claims: pods::claim_names(&self.spec, &name),
            claim_classes: pods::ephemeral_claim_classes(&self.spec, &name),
            runtime_class: self.template.runtime_class.clone(),
            priority: self.template.priority.clone(),
            source: self.template.source,
            object: self.template.object.clone(),
            spec_path: self.template.spec_path,
        };
        for (template, class) in &self.claim_templates {
            let claim = format!("{template}-{}-{ordinal}", self.name);
            staged.claims.push(claim.clone());
            staged.claim_classes.push((claim, class.clone()));
        }
        staged.pod.key.name = name;
        staged
    }
}

/// A Pod read from the input, as far as workloads care.
pub(crate) struct ExistingPod {
    pub(crate) namespace: String,
    pub(crate) name: String,
    /// Its controller, kind and name.
    pub(crate) controller: Option<(String, String)>,
    /// Its `pod-template-hash` label: the Deployment's ReplicaSet it came from is
    /// `<deployment>-<hash>`, even when that ReplicaSet is not in the input.
    pub(crate) template_hash: Option<String>,
}

impl ExistingPod {
    pub(crate) fn new(pod: &core::Pod, namespace: &str, name: &str) -> ExistingPod {
        ExistingPod {
            namespace: namespace.to_string(),
            name: name.to_string(),
            controller: controller_of(&pod.metadata),
            template_hash: pod
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("pod-template-hash").cloned()),
        }
    }
}

/// The pods the workloads still lack, given the pods the input already holds.
///
/// - A ReplicaSet whose controller is a Deployment in the input is that Deployment's
///   and is not expanded on its own; its pods count as the Deployment's.
/// - A Deployment, ReplicaSet or Job adds `want - own pods` pods (own: the pods it
///   controls, and for a Deployment those of its ReplicaSets), named `<workload>-<i>`
///   with the smallest indices no pod in the namespace has.
/// - A StatefulSet adds the ordinals whose pod `<statefulset>-<ordinal>` is missing.
///   StatefulSets go first: their names are fixed, the others' are chosen around them.
pub(crate) fn expand(workloads: &[Workload], existing: &[ExistingPod]) -> Vec<StagedPod> {
    let mut taken: BTreeSet<(&str, String)> = existing
        .iter()
        .map(|p| (p.namespace.as_str(), p.name.clone()))
        .collect();
    let deployments: BTreeSet<(&str, &str)> = workloads
        .iter()
        .filter(|w| w.kind == WorkloadKind::Deployment)
        .map(|w| (w.namespace.as_str(), w.name.as_str()))
        .collect();
    // ReplicaSet (namespace, name) → its Deployment's name, for Deployments in the input.
    let mut replica_set_owner: BTreeMap<(&str, &str), &str> = BTreeMap::new();
    for w in workloads
        .iter()
        .filter(|w| w.kind == WorkloadKind::ReplicaSet)
    {
        if let Some((kind, owner)) = &w.controller
            && kind == "Deployment"
            && deployments.contains(&(w.namespace.as_str(), owner.as_str()))
        {
            replica_set_owner.insert((&w.namespace, &w.name), owner);
        }
    }
    // Pods per controlling workload: (namespace, kind, name) → count.
    let mut owned: BTreeMap<(&str, &str, &str), usize> = BTreeMap::new();
    for p in existing {
        let Some((kind, name)) = &p.controller else {
            continue;
        };
        let ns = p.namespace.as_str();
        *owned.entry((ns, kind, name)).or_default() += 1;
        if kind == "ReplicaSet" {
            let deployment = replica_set_owner
                .get(&(ns, name.as_str()))
                .copied()
                .or_else(|| {
                    // `<deployment>-<pod-template-hash>`, the ReplicaSet not in the input.
                    let hash = p.template_hash.as_deref()?;
                    let deployment = name.strip_suffix(hash)?.strip_suffix('-')?;
                    deployments
                        .contains(&(ns, deployment))
                        .then_some(deployment)
                });
            if let Some(deployment) = deployment {
                *owned.entry((ns, "Deployment", deployment)).or_default() += 1;
            }
        }
    }

    let mut out = Vec::new();
    let fixed_names = workloads
        .iter()
        .filter(|w| w.kind == WorkloadKind::StatefulSet);
    for w in fixed_names {
        for ordinal in w.first_ordinal..w.first_ordinal + w.want {
            let name = format!("{}-{ordinal}", w.name);
            if taken.insert((w.namespace.as_str(), name.clone())) {
                out.push(w.replica(name, ordinal));
            }
        }
    }
    for w in workloads
        .iter()
        .filter(|w| w.kind != WorkloadKind::StatefulSet)
    {
        let ns = w.namespace.as_str();
        if replica_set_owner.contains_key(&(ns, w.name.as_str())) {
            continue;
        }
        let have = owned
            .get(&(ns, w.kind.as_str(), w.name.as_str()))
            .copied()
            .unwrap_or(0);
        let mut missing = w.want.saturating_sub(have);
        let mut index = 0;
        while missing > 0 {
            let name = format!("{}-{index}", w.name);
            if taken.insert((ns, name.clone())) {
                out.push(w.replica(name, index));
                missing -= 1;
            }
            index += 1;
        }
    }
    out
}
