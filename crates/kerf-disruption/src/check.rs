//! Each command of an outcome as a scheduling problem and the plan it amounts to, so
//! tests can hold it to `kerf_scheduling::validate` — the same independent check the
//! provisioner's plans answer to.

use kerf_model::Pod;
use kerf_scheduling::{ExistingPlacement, Input, Plan, Unschedulable};

use crate::{Destination, Outcome, Snapshot};

/// For each command in order: the cluster it acts on (nodes not removed by an earlier
/// command, not deleting, not the command's own; their pods plus pods earlier commands
/// moved onto them), the displaced pods as pending, and the command's moves as a plan.
/// Pods of nodes already deleting start where `Outcome::assumed_moves` put them.
///
/// A node whose NodeClaim has not initialized is as the disruption simulation sees it
/// (`Node::for_provisioning`): an expiring node's pods may be counted there. That a
/// graceful command never counts on one is [`onto_uninitialized`]'s to check.
pub fn replay(snapshot: &Snapshot, outcome: &Outcome) -> Vec<(Input, Plan)> {
    let uninitialized = uninitialized(snapshot);
    let mut removed: Vec<String> = snapshot
        .nodes
        .iter()
        .filter(|n| n.deleting)
        .map(|n| n.name.clone())
        .collect();
    // Pods of deleting nodes sit where the pass assumed they go.
    let mut moved: Vec<Pod> = Vec::new();
    for m in &outcome.assumed_moves {
        if let (Destination::Node(to), Some(pod)) =
            (&m.to, snapshot.bound_pods.iter().find(|p| p.key == m.pod))
        {
            let mut pod = pod.clone();
            pod.node_name = Some(to.clone());
            moved.push(pod);
        }
    }
    let mut out = Vec::new();
    for command in &outcome.commands {
        let stays = |name: &str| {
            !removed.iter().any(|r| r == name) && !command.nodes.iter().any(|c| c == name)
        };
        let displaced: Vec<Pod> = snapshot
            .bound_pods
            .iter()
            .chain(moved.iter())
            .filter(|p| {
                p.node_name
                    .as_deref()
                    .is_some_and(|n| command.nodes.iter().any(|c| c == n))
                    && crate::facts::reschedulable(p)
            })
            .map(|p| {
                let mut p = p.clone();
                p.node_name = None;
                p
            })
            .collect();
        let mut bound: Vec<Pod> = snapshot
            .bound_pods
            .iter()
            .filter(|p| !moved.iter().any(|m| m.key == p.key))
            .chain(moved.iter())
            .filter(|p| p.node_name.as_deref().is_some_and(stays))
            .cloned()
            .collect();
        bound.sort_by(|a, b| a.key.cmp(&b.key));
        let input = Input {
            pods: displaced.clone(),
            bound_pods: bound,
            nodes: snapshot
                .nodes
                .iter()
                .filter(|n| stays(&n.name))
                .map(|n| match uninitialized.contains(n.name.as_str()) {
                    true => {
                        let pool = (snapshot.nodepools.iter())
                            .find(|np| Some(np.name.as_str()) == n.nodepool());
                        n.for_provisioning(false, pool.map_or(&[][..], |p| &p.startup_taints))
                    }
                    false => n.clone(),
                })
                .collect(),
            nodepools: snapshot.nodepools.clone(),
            instance_types: snapshot.instance_types.clone(),
            daemonsets: snapshot.daemonsets.clone(),
            namespaces: snapshot.namespaces.clone(),
        };
        let mut plan = Plan {
            new_claims: command.replacements.clone(),
            ..Plan::default()
        };
        for claim in &mut plan.new_claims {
            claim.pods.clear();
        }
        for m in &command.moves {
            match &m.to {
                Destination::Node(node) => {
                    match plan.existing.iter_mut().find(|e| &e.node == node) {
                        Some(e) => e.pods.push(m.pod.clone()),
                        None => plan.existing.push(ExistingPlacement {
                            node: node.clone(),
                            pods: vec![m.pod.clone()],
                        }),
                    }
                    if let Some(p) = displaced.iter().find(|p| p.key == m.pod) {
                        let mut p = p.clone();
                        p.node_name = Some(node.clone());
                        moved.retain(|q| q.key != p.key);
                        moved.push(p);
                    }
                }
                Destination::Replacement(i) => plan.new_claims[*i].pods.push(m.pod.clone()),
                Destination::Pending => plan.unschedulable.push(Unschedulable {
                    pod: m.pod.clone(),
                    reason: "nowhere to go".to_string(),
                }),
            }
        }
        removed.extend(command.nodes.iter().cloned());
        out.push((input, plan));
    }
    out
}

/// Managed nodes whose NodeClaim has not initialized.
fn uninitialized(snapshot: &Snapshot) -> std::collections::BTreeSet<&str> {
    (snapshot.nodeclaims.iter())
        .filter(|c| !c.initialized)
        .filter_map(|c| c.node_name.as_deref())
        .collect()
}

/// Moves of graceful commands (every method but expiration) onto a node whose NodeClaim
/// has not initialized, as "command i: pod -> node". Karpenter's `SimulateScheduling`
/// refuses such a placement, so there should be none.
pub fn onto_uninitialized(snapshot: &Snapshot, outcome: &Outcome) -> Vec<String> {
    let uninitialized = uninitialized(snapshot);
    let mut found = Vec::new();
    for (i, command) in outcome.commands.iter().enumerate() {
        if command.method == crate::Method::Expiration {
            continue;
        }
        for m in &command.moves {
            if let Destination::Node(node) = &m.to
                && uninitialized.contains(node.as_str())
            {
                found.push(format!("command {i}: {} -> {node}", m.pod));
            }
        }
    }
    found
}
