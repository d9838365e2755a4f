//! `kerf plan`: manifests in, a rendered plan out.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use kerf_api::Manifests;
use kerf_model::{InstanceType, Resources};
use kerf_scheduling::{Input, Plan};
use serde::Serialize;

/// The scheduling input for manifests read by `kerf-api` and a catalog. Nodes are as
/// provisioning sees them: a managed node still initializing without the taints its
/// NodePool's `startupTaints` and the known ephemeral ones put on it for now
/// (`Node::for_provisioning`).
pub fn input(manifests: Manifests, instance_types: Vec<InstanceType>) -> Input {
    let manifests = pending_from_leaving_nodes(manifests);
    let nodepools = manifests.nodepools;
    let nodes = (manifests.nodes.iter())
        .map(|n| {
            let startup = (n.nodepool())
                .and_then(|name| nodepools.iter().find(|np| np.name == name))
                .map_or(&[][..], |np| &np.startup_taints[..]);
            n.for_provisioning(n.is_initialized(), startup)
        })
        .collect();
    Input {
        pods: manifests.pending_pods,
        bound_pods: manifests.bound_pods,
        nodes,
        nodepools,
        instance_types,
        daemonsets: manifests.daemonsets,
        namespaces: manifests.namespaces,
    }
}

/// Nodes already being deleted (`kerf_disruption::is_leaving`, the rule `kerf disrupt`
/// uses) are no destination, and their reschedulable pods (not DaemonSet or static
/// pods) are pending: as Karpenter's provisioner does, kerf plans capacity for them.
fn pending_from_leaving_nodes(mut manifests: Manifests) -> Manifests {
    let leaving = leaving_nodes(&manifests);
    if leaving.is_empty() {
        return manifests;
    }
    for mut pod in std::mem::take(&mut manifests.bound_pods) {
        if !pod.node_name.as_ref().is_some_and(|n| leaving.contains(n)) {
            manifests.bound_pods.push(pod);
        } else if kerf_disruption::reschedulable(&pod) {
            pod.node_name = None;
            pod.bound_at = None;
            manifests.pending_pods.push(pod);
        }
    }
    manifests.pending_pods.sort_by(|a, b| a.key.cmp(&b.key));
    manifests.nodes.retain(|n| !leaving.contains(&n.name));
    manifests
}

/// Names of the nodes being deleted, sorted.
fn leaving_nodes(manifests: &Manifests) -> BTreeSet<String> {
    let claim_of = kerf_disruption::claims_by_node(&manifests.nodeclaims);
    manifests
        .nodes
        .iter()
        .filter(|n| {
            let claim = claim_of
                .get(n.name.as_str())
                .map(|&c| &manifests.nodeclaims[c]);
            kerf_disruption::is_leaving(n, claim)
        })
        .map(|n| n.name.clone())
        .collect()
}

/// One line per node being deleted that runs pods `kerf plan` places again, for the
/// user to see why those pods are in the plan.
pub fn leaving_notes(manifests: &Manifests) -> Vec<String> {
    leaving_nodes(manifests)
        .into_iter()
        .filter_map(|node| {
            let pods: Vec<String> = (manifests.bound_pods.iter())
                .filter(|p| p.node_name.as_deref() == Some(&node))
                .filter(|p| kerf_disruption::reschedulable(p))
                .map(|p| p.key.to_string())
                .collect();
            (!pods.is_empty()).then(|| {
                format!(
                    "node {node} is being deleted: its pods are planned as pending, as Karpenter provisions for them ({})",
                    pods.join(", ")
                )
            })
        })
        .collect()
}

/// The JSON shape of `kerf plan -o json`. Field order is the output order.
#[derive(Debug, Serialize)]
pub struct PlanJson {
    pub nodeclaims: Vec<NodeClaimJson>,
    pub existing_nodes: Vec<ExistingJson>,
    pub unschedulable: Vec<UnschedulableJson>,
    pub cost_per_hour: f64,
}

#[derive(Debug, Serialize)]
pub struct NodeClaimJson {
    pub nodepool: String,
    pub instance_type: String,
    pub capacity_type: String,
    pub zone: String,
    pub price: f64,
    /// True when the price is an estimate (simulated spot).
    pub price_is_estimate: bool,
    pub instance_type_options: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<TaintJson>,
    pub pods: Vec<String>,
    pub requests: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
pub struct TaintJson {
    pub key: String,
    pub value: String,
    pub effect: String,
}

#[derive(Debug, Serialize)]
pub struct ExistingJson {
    pub name: String,
    pub pods: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct UnschedulableJson {
    pub pod: String,
    pub reason: String,
}

/// Rounds away float noise from sums of prices, so output is stable and readable.
fn round_price(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// A byte count with no exact binary suffix (`1611663337`) as the table shows it:
/// `1.5Gi`. The JSON keeps the exact value.
fn readable_bytes(exact: &str) -> String {
    let Ok(bytes) = exact.parse::<u64>() else {
        return exact.to_string();
    };
    for (suffix, shift) in [("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)] {
        if bytes >= 1 << shift {
            return format!("{:.1}{suffix}", bytes as f64 / (1u64 << shift) as f64);
        }
    }
    exact.to_string()
}

fn render_requests(r: &Resources) -> BTreeMap<String, String> {
    r.iter()
        .map(|(k, q)| (k.to_string(), Resources::render(k, q)))
        .collect()
}

pub fn to_json(plan: &Plan) -> PlanJson {
    PlanJson {
        nodeclaims: plan
            .new_claims
            .iter()
            .map(|c| NodeClaimJson {
                nodepool: c.nodepool.clone(),
                instance_type: c.launch.instance_type.clone(),
                capacity_type: c.launch.capacity_type.clone(),
                zone: c.launch.zone.clone(),
                price: c.launch.price,
                price_is_estimate: c.launch.price_is_estimate,
                instance_type_options: c.instance_type_options.clone(),
                labels: c.labels.clone(),
                taints: c
                    .taints
                    .iter()
                    .map(|t| TaintJson {
                        key: t.key.clone(),
                        value: t.value.clone(),
                        effect: t.effect.as_str().to_string(),
                    })
                    .collect(),
                pods: c.pods.iter().map(|p| p.to_string()).collect(),
                requests: render_requests(&c.requests),
            })
            .collect(),
        existing_nodes: plan
            .existing
            .iter()
            .map(|e| ExistingJson {
                name: e.node.clone(),
                pods: e.pods.iter().map(|p| p.to_string()).collect(),
            })
            .collect(),
        unschedulable: plan
            .unschedulable
            .iter()
            .map(|u| UnschedulableJson {
                pod: u.pod.to_string(),
                reason: u.reason.clone(),
            })
            .collect(),
        cost_per_hour: round_price(plan.cost_per_hour()),
    }
}

/// Pretty JSON with a trailing newline.
pub fn render_json(plan: &Plan) -> String {
    let mut s =
        serde_json::to_string_pretty(&to_json(plan)).expect("plan JSON has only string keys");
    s.push('\n');
    s
}

/// Lists pods compactly: the first few names, then a count.
fn pod_list(pods: &[String]) -> String {
    const SHOWN: usize = 6;
    let mut s = pods
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if pods.len() > SHOWN {
        let _ = write!(s, ", … (+{} more)", pods.len() - SHOWN);
    }
    s
}

/// The readable table `kerf plan` prints by default.
pub fn render_table(plan: &Plan) -> String {
    let json = to_json(plan);
    let mut out = String::new();
    let _ = writeln!(out, "NodeClaims to launch: {}", json.nodeclaims.len());
    if !json.nodeclaims.is_empty() {
        let header = [
            "#",
            "NODEPOOL",
            "INSTANCE TYPE",
            "ZONE",
            "CAPACITY",
            "$/HOUR",
            "PODS",
            "CPU",
            "MEMORY",
        ];
        let rows: Vec<[String; 9]> = json
            .nodeclaims
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let price = if c.price_is_estimate {
                    format!("~{:.4}", c.price)
                } else {
                    format!("{:.4}", c.price)
                };
                [
                    i.to_string(),
                    c.nodepool.clone(),
                    c.instance_type.clone(),
                    c.zone.clone(),
                    c.capacity_type.clone(),
                    price,
                    c.pods.len().to_string(),
                    c.requests.get("cpu").cloned().unwrap_or_default(),
                    readable_bytes(c.requests.get("memory").map_or("", String::as_str)),
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut l = String::from(" ");
            for (cell, w) in cells.iter().zip(widths) {
                let _ = write!(l, " {cell:<w$}");
            }
            l.trim_end().to_string()
        };
        let _ = writeln!(out, "{}", line(&header.map(String::from)));
        for (row, c) in rows.iter().zip(&json.nodeclaims) {
            let _ = writeln!(out, "{}", line(row));
            let _ = writeln!(out, "      pods: {}", pod_list(&c.pods));
            if !c.taints.is_empty() {
                let taints: Vec<String> = c
                    .taints
                    .iter()
                    .map(|t| {
                        if t.value.is_empty() {
                            format!("{}:{}", t.key, t.effect)
                        } else {
                            format!("{}={}:{}", t.key, t.value, t.effect)
                        }
                    })
                    .collect();
                let _ = writeln!(out, "      taints: {}", taints.join(", "));
            }
        }
    }
    if !json.existing_nodes.is_empty() {
        let _ = writeln!(out, "\nOnto existing nodes:");
        for e in &json.existing_nodes {
            let _ = writeln!(out, "  {}: {}", e.name, pod_list(&e.pods));
        }
    }
    if !json.unschedulable.is_empty() {
        let _ = writeln!(out, "\nCannot be placed: {}", json.unschedulable.len());
        for u in &json.unschedulable {
            let _ = writeln!(out, "  {}: {}", u.pod, u.reason);
        }
    }
    let estimate = if json.nodeclaims.iter().any(|c| c.price_is_estimate) {
        " (~ marks estimated spot prices)"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "\nCost of new nodes: ${:.4}/hour, ${:.2}/month{estimate}",
        json.cost_per_hour,
        json.cost_per_hour * 730.0
    );
    out
}

#[cfg(test)]
mod tests {
    use super::readable_bytes;

    #[test]
    fn odd_byte_counts_read_as_binary_units() {
        assert_eq!(readable_bytes("1611663337"), "1.5Gi");
        assert_eq!(readable_bytes("6547309544"), "6.1Gi");
        assert_eq!(readable_bytes("1025"), "1.0Ki");
        assert_eq!(readable_bytes("512"), "512");
        assert_eq!(readable_bytes("52288Mi"), "52288Mi");
    }
}
