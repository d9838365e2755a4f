//! Reasons a person can act on, for pods that cannot be placed.

use kerf_model::{InstanceType, Requirements, Resources};

use crate::Input;
use crate::claim::Pool;

/// Why a pod's requirement on `key` conflicts with a claim or NodePool.
pub(crate) fn requirement_conflict(
    key: &str,
    pod_term: &Requirements,
    node_side: &Requirements,
) -> String {
    let wanted = pod_term
        .get(key)
        .map_or_else(|| "?".to_string(), |r| r.to_string());
    match node_side.get(key) {
        Some(have) => format!("requires {key} {wanted}, but the NodePool allows {key} {have}"),
        None => {
            format!("requires {key} {wanted}, but the NodePool's nodes do not carry that label")
        }
    }
}

/// Why no compatible instance type fits the requests.
pub(crate) fn too_big(
    types: &[InstanceType],
    pool: &Pool,
    compatible: &[usize],
    requests: &Resources,
) -> String {
    // Name the first resource that no single type has enough of, with the largest offer.
    for (name, need) in requests.iter() {
        let best = compatible
            .iter()
            .map(|&o| (pool.avail[o].get(name), &types[pool.types[o]].name))
            .max_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(a.1)));
        if let Some((most, _)) = best
            && most <= kerf_model::Quantity::ZERO
            && need > kerf_model::Quantity::ZERO
        {
            return format!(
                "needs {name}={} but no compatible instance type offers {name}",
                Resources::render(name, need)
            );
        }
        if let Some((most, type_name)) = best
            && most < need
        {
            return format!(
                "needs {name}={} but the largest compatible instance type, {type_name}, has {} allocatable after daemonset overhead",
                Resources::render(name, need),
                Resources::render(name, most),
            );
        }
    }
    format!("no single compatible instance type fits {requests} together")
}

/// The reason for an unplaceable pod: what each NodePool said.
pub(crate) fn unschedulable(
    input: &Input,
    pool_reasons: &[(usize, String)],
    n_nodes: usize,
) -> String {
    let nodes = match n_nodes {
        0 => String::new(),
        1 => "the existing node does not fit it; ".to_string(),
        n => format!("none of the {n} existing nodes fits it; "),
    };
    if pool_reasons.is_empty() {
        return format!("{nodes}no NodePool exists to launch a node");
    }
    let per_pool: Vec<String> = pool_reasons
        .iter()
        .map(|(np, r)| format!("nodepool {}: {r}", input.nodepools[*np].name))
        .collect();
    format!("{nodes}{}", per_pool.join("; "))
}
