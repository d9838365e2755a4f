//! Reasons a person can act on, for pods that cannot be placed.

use kerf_model::pod::VolumeZone;
use kerf_model::{InstanceType, Quantity, Requirements, Resources, labels};

use crate::Input;
use crate::claim::Pool;

/// Why a pod's requirement on `key` conflicts with a claim or NodePool: a volume's zone
/// when that is what rules the NodePool out, else the pod's own term.
pub(crate) fn requirement_conflict(
    key: &str,
    pod_term: &Requirements,
    node_side: &Requirements,
    volume_zones: &[VolumeZone],
) -> String {
    if key == labels::ZONE
        && let Some(have) = node_side.get(key)
        && let Some(v) = volume_zones.iter().find(|v| !v.zones.intersects(have))
    {
        return format!(
            "its volume claim {} needs {key} {}, but the NodePool allows {key} {have}",
            v.claim, v.zones
        );
    }
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

/// Why no compatible instance type fits the requests, noting the types left out for
/// being too small for their DaemonSets.
pub(crate) fn too_big(
    types: &[InstanceType],
    pool: &Pool,
    compatible: &[usize],
    requests: &Resources,
) -> String {
    format!(
        "{}{}",
        largest_too_small(types, pool, compatible, requests),
        daemon_misfits_note(types, pool)
    )
}

fn largest_too_small(
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

/// Of the types a pool left out because they cannot hold their DaemonSets: the resource
/// first in name order that one of them is short of, what the DaemonSets request of it
/// there, and the type with the most of it (name breaking ties) with its allocatable.
fn daemon_shortfall(
    types: &[InstanceType],
    pool: &Pool,
) -> Option<(String, Quantity, String, Quantity)> {
    let short_of = |t: usize, overhead: &Resources| {
        let alloc = types[t].allocatable();
        overhead
            .iter()
            .find(|&(k, q)| q > alloc.get(k))
            .map(|(k, _)| k.to_string())
    };
    let resource = (pool.daemon_misfits.iter())
        .filter_map(|(t, o)| short_of(*t, o))
        .min()?;
    let (t, overhead) = (pool.daemon_misfits.iter())
        .filter(|(t, o)| types[*t].allocatable().get(&resource) < o.get(&resource))
        .max_by(|(a, _), (b, _)| {
            let (a, b) = (&types[*a], &types[*b]);
            (a.allocatable()
                .get(&resource)
                .cmp(&b.allocatable().get(&resource)))
            .then_with(|| b.name.cmp(&a.name))
        })?;
    let (need, have) = (
        overhead.get(&resource),
        types[*t].allocatable().get(&resource),
    );
    Some((resource, need, types[*t].name.clone(), have))
}

/// The reason of a pool none of whose types can hold the DaemonSets that would run on it.
pub(crate) fn no_type_holds_daemons(types: &[InstanceType], pool: &Pool) -> String {
    match daemon_shortfall(types, pool) {
        Some((k, need, largest, have)) => format!(
            "no instance type can hold the DaemonSets that would run on it: they request {k}={}, and the largest, {largest}, has {} allocatable",
            Resources::render(&k, need),
            Resources::render(&k, have)
        ),
        None => "no instance type can hold the DaemonSets that would run on it".to_string(),
    }
}

/// A note for reasons about a pool's instance types, when some were left out because they
/// cannot hold their DaemonSets; empty otherwise.
pub(crate) fn daemon_misfits_note(types: &[InstanceType], pool: &Pool) -> String {
    let Some((k, need, largest, have)) = daemon_shortfall(types, pool) else {
        return String::new();
    };
    let n = pool.daemon_misfits.len();
    format!(
        " ({n} instance type{} left out, too small for the DaemonSets that would run on them: they request {k}={}, and the largest of them, {largest}, has {} allocatable)",
        if n == 1 { "" } else { "s" },
        Resources::render(&k, need),
        Resources::render(&k, have)
    )
}

/// Why one existing node refused a pod: a kind shared across nodes ("not enough cpu")
/// and this node's figures ("needs 3, 100m free").
pub(crate) struct Refusal {
    pub node: String,
    pub kind: String,
    pub detail: Option<String>,
}

/// What an unplaceable pod's reason says of the existing nodes.
pub(crate) enum Nodes {
    Each(Vec<Refusal>),
    Count(usize),
}

/// The reason for an unplaceable pod: why the existing nodes refused it, then what each
/// NodePool said.
pub(crate) fn unschedulable(
    input: &Input,
    pool_reasons: &[(usize, String)],
    nodes: &Nodes,
) -> String {
    let nodes = match nodes {
        Nodes::Each(refusals) => node_refusals(refusals),
        Nodes::Count(0) => String::new(),
        Nodes::Count(1) => "the existing node does not fit it; ".to_string(),
        Nodes::Count(n) => format!("none of the {n} existing nodes fits it; "),
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

/// The existing nodes' refusals: each node's when there are few, else each kind with how
/// many nodes gave it (most first) and one node as an example.
fn node_refusals(refusals: &[Refusal]) -> String {
    const LISTED: usize = 3;
    let with_detail = |r: &Refusal| match &r.detail {
        Some(d) => format!("{} ({d})", r.kind),
        None => r.kind.clone(),
    };
    if refusals.is_empty() {
        return String::new();
    }
    if refusals.len() <= LISTED {
        let each: Vec<String> = refusals
            .iter()
            .map(|r| format!("node {}: {}", r.node, with_detail(r)))
            .collect();
        return format!("{}; ", each.join("; "));
    }
    let mut kinds: Vec<(&str, usize, &Refusal)> = Vec::new();
    for r in refusals {
        match kinds.iter_mut().find(|k| k.0 == r.kind) {
            Some(k) => k.1 += 1,
            None => kinds.push((&r.kind, 1, r)),
        }
    }
    kinds.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let parts: Vec<String> = kinds
        .iter()
        .map(|(kind, n, example)| match &example.detail {
            Some(d) => format!("{n} {kind} (e.g. {}: {d})", example.node),
            None if *n == 1 => format!("1 {kind} ({})", example.node),
            None => format!("{n} {kind} (e.g. {})", example.node),
        })
        .collect();
    format!(
        "none of the {} existing nodes fits it: {}; ",
        refusals.len(),
        parts.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(node: &str, kind: &str, detail: Option<&str>) -> Refusal {
        Refusal {
            node: node.into(),
            kind: kind.into(),
            detail: detail.map(str::to_string),
        }
    }

    #[test]
    fn few_nodes_are_listed_and_many_are_counted_by_kind() {
        let few = [
            refusal("a", "cordoned", None),
            refusal("b", "not enough cpu", Some("needs 2, 1 free")),
        ];
        assert_eq!(
            node_refusals(&few),
            "node a: cordoned; node b: not enough cpu (needs 2, 1 free); "
        );
        let many = [
            refusal("a", "not enough cpu", Some("needs 2, 1 free")),
            refusal("b", "cordoned", None),
            refusal("c", "not enough cpu", Some("needs 2, 500m free")),
            refusal("d", "not ready", None),
            refusal("e", "not ready", None),
            refusal("f", "not enough cpu", Some("needs 2, 0 free")),
        ];
        assert_eq!(
            node_refusals(&many),
            "none of the 6 existing nodes fits it: 3 not enough cpu (e.g. a: needs 2, 1 free), \
             2 not ready (e.g. d), 1 cordoned (b); "
        );
    }
}
