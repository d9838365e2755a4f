//! Objects a running cluster serves → model values, one object at a time, for a shell
//! that watches the API server (`kerf controller`). The rules are the loader's
//! (`load`): the same effective requests, constraints and validation, so what `kerf plan`
//! makes of a cluster dump is what the controller makes of the live cluster. Unlike the
//! loader, nothing here joins objects: a shell keeps the index (volumes, priority classes
//! are already resolved by the API server on a live pod).

use k8s_openapi::api::apps::v1 as apps;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::policy::v1 as policy;
use kerf_model::{Labels, Node, Pdb, Pod};

use crate::FieldError;
use crate::load::{ObjectRef, Problems, nodes, pdbs, workloads};

/// What a live pod is to kerf.
#[derive(Clone, Debug, PartialEq)]
pub enum ClusterPod {
    /// Unbound and not finished.
    Pending(Pod),
    /// Bound to a node and not finished.
    Bound(Pod),
    /// Finished (`Succeeded`/`Failed`): it holds nothing.
    Finished,
    /// Unbound, but Karpenter never provisions for it (scheduling gates, a DaemonSet's or
    /// a mirror pod); the reason says which.
    NotProvisionable(String),
}

fn label(kind: &str, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

fn finish<T>(value: T, problems: Problems) -> Result<T, Vec<FieldError>> {
    if problems.errors.is_empty() {
        Ok(value)
    } else {
        Err(problems.errors)
    }
}

/// A pod as the API server stores it. Its priority is `spec.priority`, which admission
/// resolved from the priority class.
pub fn pod(pod: &core::Pod) -> Result<ClusterPod, Vec<FieldError>> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let object_label = label("Pod", Some(namespace), name);
    if workloads::is_terminal(pod) {
        return Ok(ClusterPod::Finished);
    }
    // `None` for a bound pod: only unbound ones are judged.
    if let Some(why) = workloads::not_provisionable(pod) {
        return Ok(ClusterPod::NotProvisionable(why));
    }
    let mut problems = Problems::new(object_label.clone());
    let object = ObjectRef {
        source: 0,
        label: &object_label,
        namespace,
        name,
    };
    let staged = workloads::bare_pod(&object, pod, &mut problems);
    let Some(staged) = staged.into_iter().next() else {
        return finish(ClusterPod::Finished, problems);
    };
    let converted = if staged.pod.node_name.is_some() {
        ClusterPod::Bound(staged.pod)
    } else {
        ClusterPod::Pending(staged.pod)
    };
    finish(converted, problems)
}

/// A Node, with its labels, taints, capacity, allocatable and readiness.
pub fn node(node: &core::Node) -> Result<Node, Vec<FieldError>> {
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let mut problems = Problems::new(label("Node", None, name));
    let converted = nodes::node(name, node, &mut problems);
    finish(converted, problems)
}

/// A DaemonSet as the one template pod the scheduler counts on every node it runs on.
pub fn daemonset(ds: &apps::DaemonSet) -> Result<Option<Pod>, Vec<FieldError>> {
    let namespace = ds.metadata.namespace.as_deref().unwrap_or("default");
    let name = ds.metadata.name.as_deref().unwrap_or_default();
    let object_label = label("DaemonSet", Some(namespace), name);
    let mut problems = Problems::new(object_label.clone());
    let object = ObjectRef {
        source: 0,
        label: &object_label,
        namespace,
        name,
    };
    let mut staged = workloads::daemon_set(&object, ds, &mut problems);
    // A live template's priority class is not resolved by admission (only pods are);
    // the two system classes are what DaemonSets name in practice.
    if let Some(daemon) = staged.first_mut()
        && let Some(class) = ds
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|s| s.priority_class_name.as_deref())
        && daemon.pod.priority == 0
    {
        daemon.pod.priority = crate::load::builtin_priority(class).unwrap_or(0);
    }
    finish(staged.into_iter().next().map(|s| s.pod), problems)
}

/// A PodDisruptionBudget; its `status` (as the disruption controller keeps it) is read.
pub fn pdb(pdb: &policy::PodDisruptionBudget) -> Result<Pdb, Vec<FieldError>> {
    let namespace = pdb.metadata.namespace.as_deref().unwrap_or("default");
    let name = pdb.metadata.name.as_deref().unwrap_or_default();
    let mut problems = Problems::new(label("PodDisruptionBudget", Some(namespace), name));
    let converted = pdbs::pdb(namespace, name, pdb, &mut problems);
    finish(converted, problems)
}

/// A Namespace's labels, with the automatic `kubernetes.io/metadata.name`.
pub fn namespace(ns: &core::Namespace) -> Labels {
    let name = ns.metadata.name.as_deref().unwrap_or_default();
    let mut problems = Problems::new(label("Namespace", None, name));
    nodes::namespace(name, ns, &mut problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
        serde_saphyr::from_str(text).unwrap()
    }

    #[test]
    fn a_live_pod_keeps_its_resolved_priority_and_binding() {
        let live: core::Pod = from_yaml(
            "metadata: {name: web-0, namespace: shop, uid: u1}\n\
             spec:\n  nodeName: n1\n  priority: 1000\n  containers:\n  - name: c\n    resources: {requests: {cpu: 500m}}\n",
        );
        let ClusterPod::Bound(pod) = pod(&live).unwrap() else {
            panic!("bound pod")
        };
        assert_eq!(pod.priority, 1000);
        assert_eq!(pod.node_name.as_deref(), Some("n1"));
        assert_eq!(pod.key.namespace, "shop");
    }

    #[test]
    fn gated_and_finished_pods_are_not_pending() {
        let gated: core::Pod = from_yaml(
            "metadata: {name: g, namespace: default}\n\
             spec:\n  schedulingGates: [{name: wait}]\n  containers: [{name: c}]\n",
        );
        assert!(matches!(
            pod(&gated).unwrap(),
            ClusterPod::NotProvisionable(why) if why.contains("schedulingGates")
        ));
        let done: core::Pod = from_yaml(
            "metadata: {name: d, namespace: default}\n\
             spec: {containers: [{name: c}]}\nstatus: {phase: Succeeded}\n",
        );
        assert_eq!(pod(&done).unwrap(), ClusterPod::Finished);
    }

    #[test]
    fn a_pod_being_deleted_is_terminating_when_bound_and_not_pending_when_not() {
        let evicted: core::Pod = from_yaml(
            "metadata: {name: e, namespace: default, deletionTimestamp: '2026-12-07T10:00:00Z'}\n\
             spec: {nodeName: n1, containers: [{name: c}]}\n",
        );
        let ClusterPod::Bound(bound) = pod(&evicted).unwrap() else {
            panic!("bound pod")
        };
        assert!(bound.terminating);
        let unbound: core::Pod = from_yaml(
            "metadata: {name: u, namespace: default, deletionTimestamp: '2026-12-07T10:00:00Z'}\n\
             spec: {containers: [{name: c}]}\n",
        );
        assert!(matches!(
            pod(&unbound).unwrap(),
            ClusterPod::NotProvisionable(why) if why.contains("being deleted")
        ));
    }

    #[test]
    fn a_bad_node_taint_names_the_node_and_field() {
        let bad: core::Node =
            from_yaml("metadata: {name: n1}\nspec:\n  taints: [{key: k, effect: Sometimes}]\n");
        let errors = node(&bad).unwrap_err();
        assert_eq!(errors[0].object, "Node n1");
        assert_eq!(errors[0].field, "spec.taints[0].effect");
    }
}
