//! Pods, and the workloads that make them: a Pod as written; Deployments, ReplicaSets,
//! StatefulSets and Jobs expanded into the replicas they would run, named
//! `<workload>-<index>`; a DaemonSet into one template pod.
//!
//! A template is converted once and cloned per replica, so a 1,000-replica Deployment
//! costs one conversion and a thousand clones.

use k8s_openapi::api::apps::v1 as apps;
use k8s_openapi::api::batch::v1 as batch;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use kerf_model::pod::Owner;
use kerf_model::{Effect, Labels, Toleration, TolerationOperator};

use super::pods::{self, PodMeta};
use super::{ObjectRef, PodRole, PriorityFrom, Problems, StagedPod};

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
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
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
    let converted = pods::convert(meta, spec, "spec", problems);
    let role = if converted.node_name.is_some() {
        PodRole::Bound
    } else {
        PodRole::Pending
    };
    vec![StagedPod {
        pod: converted,
        role,
        claims: pods::claim_names(spec, object.name),
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
) -> Vec<StagedPod> {
    let Some(spec) = d.spec.as_ref() else {
        problems.push("spec", "missing; a Deployment needs a spec with a template");
        return Vec::new();
    };
    check_selector(Some(&spec.selector), &spec.template, problems);
    let n = replica_count(spec.replicas, "spec.replicas", problems);
    expand(object, "Deployment", &spec.template, n, &[], problems)
}

pub(crate) fn replica_set(
    object: &ObjectRef<'_>,
    rs: &apps::ReplicaSet,
    problems: &mut Problems,
) -> Vec<StagedPod> {
    let Some(spec) = rs.spec.as_ref() else {
        problems.push("spec", "missing; a ReplicaSet needs a spec with a template");
        return Vec::new();
    };
    let Some(template) = spec.template.as_ref() else {
        problems.push(
            "spec.template",
            "missing; a ReplicaSet needs a pod template",
        );
        return Vec::new();
    };
    check_selector(Some(&spec.selector), template, problems);
    let n = replica_count(spec.replicas, "spec.replicas", problems);
    expand(object, "ReplicaSet", template, n, &[], problems)
}

pub(crate) fn stateful_set(
    object: &ObjectRef<'_>,
    sts: &apps::StatefulSet,
    problems: &mut Problems,
) -> Vec<StagedPod> {
    let Some(spec) = sts.spec.as_ref() else {
        problems.push(
            "spec",
            "missing; a StatefulSet needs a spec with a template",
        );
        return Vec::new();
    };
    check_selector(Some(&spec.selector), &spec.template, problems);
    let n = replica_count(spec.replicas, "spec.replicas", problems);
    let mut claim_templates = Vec::new();
    for (i, claim) in spec.volume_claim_templates.iter().flatten().enumerate() {
        match claim.metadata.name.as_deref().filter(|n| !n.is_empty()) {
            Some(name) => claim_templates.push(name.to_string()),
            None => problems.push(
                format!("spec.volumeClaimTemplates[{i}].metadata.name"),
                "missing; each claim template needs a name (its claims are named <template>-<statefulset>-<index>)",
            ),
        }
    }
    expand(
        object,
        "StatefulSet",
        &spec.template,
        n,
        &claim_templates,
        problems,
    )
}

/// A Job runs `parallelism` pods at once (default 1), never more than `completions`;
/// a suspended Job runs none.
pub(crate) fn job(
    object: &ObjectRef<'_>,
    job: &batch::Job,
    problems: &mut Problems,
) -> Vec<StagedPod> {
    let Some(spec) = job.spec.as_ref() else {
        problems.push("spec", "missing; a Job needs a spec with a template");
        return Vec::new();
    };
    check_selector(spec.selector.as_ref(), &spec.template, problems);
    let parallelism = replica_count(spec.parallelism, "spec.parallelism", problems);
    let completions = spec
        .completions
        .map(|c| replica_count(Some(c), "spec.completions", problems));
    let mut n = completions.map_or(parallelism, |c| parallelism.min(c));
    if spec.suspend == Some(true) {
        n = 0;
    }
    expand(object, "Job", &spec.template, n, &[], problems)
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
    let mut staged = expand(object, "DaemonSet", &spec.template, 1, &[], problems);
    for s in &mut staged {
        s.pod.key.name = object.name.to_string();
        s.role = PodRole::DaemonSet;
        if let Some(pod_spec) = spec.template.spec.as_ref() {
            s.claims = pods::claim_names(pod_spec, object.name);
            add_daemon_tolerations(&mut s.pod.tolerations, pod_spec.host_network == Some(true));
        }
    }
    staged
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

/// Converts the template once and stamps out `n` replicas; replica `i` of a StatefulSet
/// also mounts `<template>-<statefulset>-<i>` for each claim template.
fn expand(
    object: &ObjectRef<'_>,
    owner_kind: &str,
    template: &core::PodTemplateSpec,
    n: usize,
    claim_templates: &[String],
    problems: &mut Problems,
) -> Vec<StagedPod> {
    let Some(spec) = template.spec.as_ref() else {
        problems.push(
            "spec.template.spec",
            "missing; the pod template needs a spec with containers",
        );
        return Vec::new();
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
    let template_pod = pods::convert(meta, spec, "spec.template.spec", problems);
    let role = if template_pod.node_name.is_some() {
        PodRole::Bound
    } else {
        PodRole::Pending
    };
    let priority = priority_from(spec);
    (0..n)
        .map(|i| {
            let mut pod = template_pod.clone();
            pod.key.name = format!("{}-{i}", object.name);
            let mut claims = pods::claim_names(spec, &pod.key.name);
            claims.extend(
                claim_templates
                    .iter()
                    .map(|t| format!("{t}-{}-{i}", object.name)),
            );
            StagedPod {
                pod,
                role,
                claims,
                priority: priority.clone(),
                source: object.source,
                object: object.label.to_string(),
                spec_path: "spec.template.spec",
            }
        })
        .collect()
}
