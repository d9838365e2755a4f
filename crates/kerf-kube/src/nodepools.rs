//! NodePool status, as Karpenter's nodepool controllers keep it:
//!
//! - `status.resources` (`nodepool/counter`): the capacity of the pool's nodes summed —
//!   each launched NodeClaim (its Node's capacity once registered, else its instance
//!   type's) and each Node with the pool's label but no NodeClaim, leaving out those
//!   marked for deletion (a deleting claim or node, or one tainted
//!   `karpenter.sh/disrupted`) — over a base of zero `cpu`, `memory`, `pods`,
//!   `ephemeral-storage` and `nodes`, where `nodes` is the count. kerf also writes the
//!   count to `status.nodes`, which its CRD serves.
//! - `ValidationSucceeded` (`nodepool/validation`): True, or False/`NodePoolValidationFailed`
//!   with what the validation found.
//! - `NodeClassReady` (`nodepool/readiness`): True when the referenced node class exists
//!   (kwok's class has no conditions of its own to copy), else False/`NodeClassNotFound`.
//! - `Ready` (operatorpkg's root condition): True when both are, else the first False
//!   one's reason and message.
//!
//! A NodePool whose `nodeClassRef` names another provider's kind is not this
//! controller's (Karpenter's `IsManaged`) and is left alone. The status is computed from
//! the state each step, and written through the status subresource only when it
//! differs from what the NodePool holds, on the resourceVersion it was computed from.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kerf_api::crd::{self, NodePoolStatus};
use kerf_model::{Resources, labels};
use kube::ResourceExt;

use crate::claims::{quantities, set_condition};
use crate::state::State;

pub const READY: &str = "Ready";
pub const NODE_CLASS_READY: &str = "NodeClassReady";
pub const VALIDATION_SUCCEEDED: &str = "ValidationSucceeded";

/// The resources every NodePool's status lists, at zero when nothing provides them
/// (Karpenter's `BaseResources`).
const BASE_RESOURCES: [&str; 5] = ["cpu", "memory", "pods", "ephemeral-storage", "nodes"];

/// What the status of `pool` should be now, from what it holds; `None` for a NodePool
/// this controller does not manage.
pub fn desired_status(pool: &crd::NodePool, state: &State, now_ms: i64) -> Option<NodePoolStatus> {
    let name = pool.name_any();
    let (group, kind) = state.node_class_kind();
    let class = pool.spec.template.spec.node_class_ref.as_ref()?;
    if class.group != group || class.kind != kind {
        return None;
    }
    let held = pool.status.clone().unwrap_or_default();
    let (resources, n_nodes) = usage(&name, state);

    let generation = pool.metadata.generation;
    let mut conditions = held.conditions.clone();
    let validation = match state.nodepool_errors(&name) {
        Some(errors) => {
            let message = errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; ");
            ("False", "NodePoolValidationFailed", message)
        }
        None => ("True", VALIDATION_SUCCEEDED, String::new()),
    };
    let node_class = if state.stored.node_classes.contains(&class.name) {
        ("True", NODE_CLASS_READY, String::new())
    } else {
        (
            "False",
            "NodeClassNotFound",
            "NodeClass not found on cluster".to_string(),
        )
    };
    let ready = [&validation, &node_class]
        .into_iter()
        .find(|c| c.0 != "True")
        .map_or(("True", READY, String::new()), |c| (c.0, c.1, c.2.clone()));
    for (type_, (status, reason, message)) in [
        (VALIDATION_SUCCEEDED, &validation),
        (NODE_CLASS_READY, &node_class),
        (READY, &ready),
    ] {
        set_condition(
            &mut conditions,
            type_,
            status,
            reason,
            message,
            generation,
            now_ms,
        );
    }
    // Sorted by type, as operatorpkg stores them.
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
    Some(NodePoolStatus {
        resources,
        nodes: Some(n_nodes),
        conditions,
    })
}

/// Whether two statuses differ in anything kerf writes (a condition's transition time
/// moves only with its status, so equal conditions compare equal).
pub fn differs(held: Option<&NodePoolStatus>, desired: &NodePoolStatus) -> bool {
    let Some(held) = held else {
        return true;
    };
    let key = |c: &Condition| {
        (
            c.type_.clone(),
            c.status.clone(),
            c.reason.clone(),
            c.message.clone(),
            c.observed_generation,
        )
    };
    let mut a: Vec<_> = held.conditions.iter().map(key).collect();
    let mut b: Vec<_> = desired.conditions.iter().map(key).collect();
    a.sort();
    b.sort();
    held.resources != desired.resources || held.nodes != desired.nodes || a != b
}

/// The merge patch that writes `desired` over `held`: resources no longer provided are
/// removed (a merge patch keeps keys it does not mention).
pub fn status_patch(
    held: Option<&NodePoolStatus>,
    desired: &NodePoolStatus,
    resource_version: Option<&str>,
) -> serde_json::Value {
    let mut resources = serde_json::Map::new();
    for key in held.map(|h| h.resources.keys()).into_iter().flatten() {
        if !desired.resources.contains_key(key) {
            resources.insert(key.clone(), serde_json::Value::Null);
        }
    }
    for (key, q) in &desired.resources {
        resources.insert(key.clone(), serde_json::json!(q));
    }
    serde_json::json!({
        "metadata": {"resourceVersion": resource_version},
        "status": {
            "resources": resources,
            "nodes": desired.nodes,
            "conditions": desired.conditions,
        },
    })
}

/// The pool's nodes' capacity summed, with `nodes` the count of them.
fn usage(pool: &str, state: &State) -> (BTreeMap<String, Quantity>, i64) {
    let view = &state.view;
    let leaving = |node: &str| {
        view.nodes.get(node).is_some_and(|n| {
            n.deleting || n.taints.iter().any(|t| t.key == labels::TAINT_DISRUPTED)
        })
    };
    let mut total = Resources::new();
    let mut n_nodes = 0i64;
    for claim in view.claims.values() {
        if claim.nodepool != pool || claim.deleting_since.is_some() || claim.provider_id.is_none() {
            continue;
        }
        if claim.node_name.as_deref().is_some_and(leaving) {
            continue;
        }
        let capacity = match claim.node_name.as_deref().and_then(|n| view.nodes.get(n)) {
            Some(node) => node.capacity.clone(),
            None => claim
                .launched
                .as_ref()
                .and_then(|o| {
                    view.instance_types
                        .iter()
                        .find(|t| t.name == o.instance_type)
                })
                .map(|t| t.capacity.clone())
                .unwrap_or_default(),
        };
        if capacity.is_empty() {
            continue;
        }
        total.add(&capacity);
        n_nodes += 1;
    }
    for node in view.nodes.values() {
        if node.nodepool() != Some(pool) || view.claim_of_node(&node.name).is_some() {
            continue;
        }
        if leaving(&node.name) || node.capacity.is_empty() {
            continue;
        }
        total.add(&node.capacity);
        n_nodes += 1;
    }
    let mut resources: BTreeMap<String, Quantity> = BASE_RESOURCES
        .iter()
        .map(|r| (r.to_string(), Quantity("0".into())))
        .collect();
    resources.extend(quantities(&total));
    resources.insert("nodes".into(), Quantity(n_nodes.to_string()));
    (resources, n_nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(class: &str) -> crd::NodePool {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "karpenter.sh/v1", "kind": "NodePool",
            "metadata": {"name": "default", "uid": "u", "resourceVersion": "1", "generation": 1},
            "spec": {"template": {"spec": {
                "nodeClassRef": {"group": "karpenter.kwok.sh", "kind": "KWOKNodeClass", "name": class},
                "requirements": []}}}
        }))
        .unwrap()
    }

    fn state(pool: &crd::NodePool) -> State {
        let catalog = kerf_model::catalog::by_name("kwok").unwrap();
        let mut state = State::new(catalog, ("karpenter.kwok.sh", "KWOKNodeClass"));
        state.apply_node_class("default", 1, &Default::default());
        state.apply_nodepool(pool);
        state
    }

    fn condition(status: &NodePoolStatus, type_: &str) -> (String, String) {
        let c = status.conditions.iter().find(|c| c.type_ == type_).unwrap();
        (c.status.clone(), c.reason.clone())
    }

    #[test]
    fn a_pool_with_its_class_is_ready_with_zero_resources_and_rewrites_nothing() {
        let mut pool = pool("default");
        let state = state(&pool);
        let desired = desired_status(&pool, &state, 1_000).unwrap();
        for (type_, reason) in [
            (READY, "Ready"),
            (VALIDATION_SUCCEEDED, "ValidationSucceeded"),
            (NODE_CLASS_READY, "NodeClassReady"),
        ] {
            assert_eq!(condition(&desired, type_), ("True".into(), reason.into()));
        }
        assert_eq!(desired.nodes, Some(0));
        let keys: Vec<&str> = desired.resources.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["cpu", "ephemeral-storage", "memory", "nodes", "pods"]
        );
        assert!(desired.resources.values().all(|q| q.0 == "0"));
        // Once written, the same state asks for no write, later steps included.
        assert!(differs(pool.status.as_ref(), &desired));
        pool.status = Some(desired);
        let again = desired_status(&pool, &state, 60_000).unwrap();
        assert!(!differs(pool.status.as_ref(), &again));
    }

    #[test]
    fn a_missing_node_class_makes_the_pool_not_ready_and_says_why() {
        let pool = pool("missing");
        let state = state(&pool);
        let desired = desired_status(&pool, &state, 0).unwrap();
        let not_found = ("False".to_string(), "NodeClassNotFound".to_string());
        assert_eq!(condition(&desired, NODE_CLASS_READY), not_found);
        assert_eq!(condition(&desired, READY), not_found);
        assert_eq!(
            condition(&desired, VALIDATION_SUCCEEDED),
            ("True".into(), "ValidationSucceeded".into())
        );
    }

    #[test]
    fn another_providers_pool_is_left_alone() {
        let mut pool = pool("default");
        pool.spec
            .template
            .spec
            .node_class_ref
            .as_mut()
            .unwrap()
            .kind = "EC2NodeClass".into();
        let state = state(&pool);
        assert!(desired_status(&pool, &state, 0).is_none());
    }
}
