//! Nodes that already exist, and Namespaces (whose labels `namespaceSelector`s match).

use k8s_openapi::api::core::v1 as core;
use kerf_model::{Effect, Labels, Node, Taint, labels};

use super::Problems;
use super::pods::{check_labels, quantities};

/// The label the API server puts on every namespace, so selectors can name namespaces.
const NAMESPACE_NAME: &str = "kubernetes.io/metadata.name";

pub(crate) fn node(name: &str, node: &core::Node, problems: &mut Problems) -> Node {
    let mut node_labels = node.metadata.labels.clone().unwrap_or_default();
    check_labels(&node_labels, "metadata.labels", problems);
    // Pods' deprecated beta keys are read as the current ones (`labels::normalized`), so a
    // node that carries only a beta key carries the current one too, as Karpenter reads it.
    let beta: Vec<(String, String)> = node_labels
        .iter()
        .filter(|(k, _)| labels::normalized(k) != k.as_str())
        .map(|(k, v)| (labels::normalized(k).to_string(), v.clone()))
        .collect();
    for (key, value) in beta {
        node_labels.entry(key).or_insert(value);
    }
    // The kubelet always sets the hostname label; a hand-written node may not.
    node_labels
        .entry(labels::HOSTNAME.to_string())
        .or_insert_with(|| name.to_string());
    let spec = node.spec.as_ref();
    let status = node.status.as_ref();
    let mut taints = Vec::new();
    for (i, t) in spec
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .enumerate()
    {
        let path = format!("spec.taints[{i}]");
        if t.key.is_empty() {
            problems.push(format!("{path}.key"), "must not be empty");
            continue;
        }
        match Effect::parse(&t.effect) {
            Some(effect) => taints.push(Taint::new(
                t.key.clone(),
                t.value.clone().unwrap_or_default(),
                effect,
            )),
            None => problems.push(
                format!("{path}.effect"),
                format!(
                    "{:?} is not valid; expected NoSchedule, PreferNoSchedule or NoExecute",
                    t.effect
                ),
            ),
        }
    }
    let capacity_raw = status.and_then(|s| s.capacity.as_ref());
    let allocatable_raw = status.and_then(|s| s.allocatable.as_ref());
    let capacity = quantities(capacity_raw, "status.capacity", problems);
    let mut allocatable = quantities(allocatable_raw, "status.allocatable", problems);
    // A resource with a capacity but no allocatable figure is wholly allocatable.
    for (resource, q) in capacity.iter() {
        if !allocatable_raw.is_some_and(|a| a.contains_key(resource)) {
            allocatable.set(resource, q);
        }
    }
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_none_or(|c| c.status == "True");
    Node {
        name: name.to_string(),
        labels: node_labels,
        annotations: node.metadata.annotations.clone().unwrap_or_default(),
        taints,
        capacity,
        allocatable,
        unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
        ready,
        created_at: node
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second()),
        deleting: node.metadata.deletion_timestamp.is_some(),
    }
}

pub(crate) fn namespace(name: &str, ns: &core::Namespace, problems: &mut Problems) -> Labels {
    let mut ns_labels = ns.metadata.labels.clone().unwrap_or_default();
    check_labels(&ns_labels, "metadata.labels", problems);
    ns_labels.insert(NAMESPACE_NAME.to_string(), name.to_string());
    ns_labels
}

/// The labels of a namespace the input does not declare: only the automatic one.
pub(crate) fn automatic_namespace_labels(name: &str) -> Labels {
    Labels::from([(NAMESPACE_NAME.to_string(), name.to_string())])
}
