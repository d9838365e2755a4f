//! A minimal kube-scheduler: binds pending pods onto ready nodes with room, honouring the
//! same constraints `kerf_scheduling::solve` does (it is that function, with no NodePools,
//! so it can only place onto existing nodes). Pods nominated to a node are tried there
//! first, pinned by hostname.

use std::collections::{BTreeMap, BTreeSet};

use kerf_controllers::ClusterView;
use kerf_model::pod::PodKey;
use kerf_model::{Node, Pod, Requirement, Requirements, labels};
use kerf_scheduling::{Input, Plan, Visibility};

/// Placements `(pod, node)` for pending pods.
pub(crate) fn schedule(view: &ClusterView) -> Vec<(PodKey, String)> {
    if view.pending.is_empty() {
        return Vec::new();
    }
    // Bound pods that no pending pod's constraints can look at are only room used on
    // their node: fold them into its allocatable rather than hand the solve every pod
    // in the cluster (see `kerf_scheduling::Visibility`).
    let pending = || view.pending.iter().map(|k| &view.pods[k].pod);
    let visibility = Visibility::new(pending());
    // And where no pod has an inter-pod term, a node none of the pending pods fits in
    // changes nothing in the solve: leave it out.
    let smallest = kerf_scheduling::smallest_request(pending());
    let mut plain = !pending().any(Pod::has_inter_pod_terms);
    let mut rooms = Vec::new();
    for n in view
        .nodes
        .values()
        .filter(|n| n.ready && !n.unschedulable && !n.deleting)
    {
        let (mut cpu, mut mem) = (n.allocatable.get("cpu").0, n.allocatable.get("memory").0);
        for p in view.pods_on(&n.name) {
            cpu -= p.pod.requests.get("cpu").0;
            mem -= p.pod.requests.get("memory").0;
            plain &= !p.pod.has_inter_pod_terms();
        }
        rooms.push((n, cpu, mem));
    }
    let mut bound: Vec<Pod> = Vec::new();
    let nodes: Vec<Node> = rooms
        .into_iter()
        // (A request of zero fits even an overcommitted node.)
        .filter(|&(_, cpu, mem)| {
            !plain
                || ((smallest.0 == 0 || cpu >= smallest.0)
                    && (smallest.1 == 0 || mem >= smallest.1))
        })
        .map(|(n, _, _)| {
            let mut node = n.clone();
            for p in view.pods_on(&n.name) {
                if visibility.sees(&p.pod) {
                    bound.push(p.pod.clone());
                } else {
                    node.allocatable.sub(&p.pod.requests);
                }
            }
            node
        })
        .collect();
    if nodes.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();

    let names: BTreeSet<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    let usable = |name: &str| names.contains(name);
    let nominated: Vec<Pod> = view
        .pending
        .iter()
        .filter_map(|k| {
            let state = &view.pods[k];
            let claim = view.claims.get(state.nominated.as_deref()?)?;
            let node = claim.node_name.as_deref().filter(|n| usable(n))?;
            Some(pinned(&state.pod, node))
        })
        .collect();
    if !nominated.is_empty() {
        let placed = place(nominated, &bound, &nodes, view);
        for (key, node) in &placed {
            let mut pod = view.pods[key].pod.clone();
            pod.node_name = Some(node.clone());
            bound.push(pod);
        }
        out.extend(placed);
    }
    let placed: BTreeSet<&PodKey> = out.iter().map(|(p, _)| p).collect();
    let rest: Vec<Pod> = view
        .pending
        .iter()
        .filter(|k| !placed.contains(k))
        .map(|k| view.pods[k].pod.clone())
        .collect();
    if !rest.is_empty() {
        out.extend(place(rest, &bound, &nodes, view));
    }
    out
}

fn place(
    pods: Vec<Pod>,
    bound: &[Pod],
    nodes: &[Node],
    view: &ClusterView,
) -> Vec<(PodKey, String)> {
    onto_nodes(pods, bound.to_vec(), nodes.to_vec(), view)
        .existing
        .into_iter()
        .flat_map(|e| {
            let node = e.node;
            e.pods.into_iter().map(move |p| (p, node.clone()))
        })
        .collect()
}

/// Where `pods` would go onto these nodes alone, with these pods bound to them: `solve`
/// with no NodePools, as the kube-scheduler (and Cluster Autoscaler's simulations) see
/// the cluster.
pub(crate) fn onto_nodes(
    pods: Vec<Pod>,
    bound_pods: Vec<Pod>,
    mut nodes: Vec<Node>,
    view: &ClusterView,
) -> Plan {
    requested_resources_only(&mut nodes, &bound_pods);
    let input = Input {
        pods,
        bound_pods,
        nodes,
        namespaces: view.namespaces.clone(),
        ..Input::default()
    };
    let config = kerf_scheduling::Config {
        node_reasons: kerf_scheduling::NodeReasons::Count,
        ..kerf_scheduling::Config::default()
    };
    kerf_scheduling::solve(&input, &config)
}

/// kube-scheduler checks only the resources an incoming pod requests (`fitsRequest`): a
/// resource its node's pods already overcommit (a DaemonSet pod bound past what the node
/// has) stops only the pods that ask for some of it. `solve`, as Karpenter, refuses a node
/// short of anything, so each resource the node's pods overcommit gets exactly what they
/// use as allocatable: nothing left of it, and no shortfall to refuse other pods for.
/// (Bound pods already folded into allocatable may have taken it below zero.)
fn requested_resources_only(nodes: &mut [Node], bound_pods: &[Pod]) {
    let mut used: BTreeMap<&str, kerf_model::Resources> = BTreeMap::new();
    for p in bound_pods {
        if let Some(n) = p.node_name.as_deref() {
            used.entry(n).or_default().add(&p.requests);
        }
    }
    let zero = kerf_model::Resources::new();
    for node in nodes {
        let used = used.get(node.name.as_str()).unwrap_or(&zero);
        let names: BTreeSet<String> = (node.allocatable.names().chain(used.names()))
            .map(str::to_string)
            .collect();
        for k in names {
            if used.get(&k) > node.allocatable.get(&k) {
                node.allocatable.set(&k, used.get(&k));
            }
        }
    }
}

/// The pod, allowed only onto `node`.
fn pinned(pod: &Pod, node: &str) -> Pod {
    let mut pod = pod.clone();
    let pin = Requirement::single(node);
    if pod.node_affinity.required.is_empty() {
        let mut r = Requirements::new();
        r.add(labels::HOSTNAME, pin);
        pod.node_affinity.required.push(r);
    } else {
        for term in &mut pod.node_affinity.required {
            let mut r = Requirements::new();
            r.add(labels::HOSTNAME, pin.clone());
            *term = term.intersection(&r);
        }
    }
    pod
}

#[cfg(test)]
mod tests {
    use kerf_model::{Labels, Resources};

    use super::*;

    fn pod(name: &str, requests: &[(&str, &str)]) -> Pod {
        Pod::new(
            "default",
            name,
            Resources::parse(requests.iter().copied()).unwrap(),
        )
    }

    /// A DaemonSet pod bound past the node's memory keeps off pods that ask for memory, as
    /// kube-scheduler would, but not one that asks only for cpu.
    #[test]
    fn an_overcommitted_resource_stops_only_pods_that_request_it() {
        let node = Node::new(
            "n1",
            Labels::new(),
            Resources::parse([("cpu", "2"), ("memory", "4Gi"), ("pods", "10")]).unwrap(),
        );
        let mut daemon = pod("agent-n1", &[("memory", "8Gi"), ("pods", "1")]);
        daemon.node_name = Some("n1".into());
        let pending = vec![
            pod("cpu-only", &[("cpu", "1"), ("pods", "1")]),
            pod(
                "with-memory",
                &[("cpu", "100m"), ("memory", "1Mi"), ("pods", "1")],
            ),
        ];
        let plan = onto_nodes(pending, vec![daemon], vec![node], &ClusterView::default());
        let placed: Vec<String> = plan
            .existing
            .iter()
            .flat_map(|e| &e.pods)
            .map(|p| p.name.clone())
            .collect();
        assert_eq!(placed, ["cpu-only"]);
        assert_eq!(plan.unschedulable.len(), 1);
        assert_eq!(plan.unschedulable[0].pod.name, "with-memory");
    }
}
