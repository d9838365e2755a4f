//! Termination of deleting NodeClaims: taint the node `karpenter.sh/disrupted:NoSchedule`,
//! drain it in Karpenter's order — non-critical pods first, then critical ones — through
//! the eviction API (which refuses what a PodDisruptionBudget does not allow), leaving
//! `do-not-disrupt` pods until the claim's `terminationGracePeriod` runs out, when every
//! remaining pod is deleted; then terminate the instance, wait until the cloud no longer
//! lists it, and remove the node and the claim.
//!
//! DaemonSet pods are not evicted: they go with the node (their DaemonSet tolerates the
//! drain taints, so Karpenter's later tiers only matter for what runs after the node is
//! gone, which the simulator does not model).
//!
//! Within a tier, for the first `LARGEST_FIRST_MS` of a drain, kerf evicts the largest
//! pods first (by CPU, then memory requests), one size at a time, each size once the
//! larger ones have left the node; after that, whatever is left at once. Karpenter
//! evicts a tier at once. The pods' controllers recreate them in the order they go, and
//! kube-scheduler binds them in that order, each to the node it scores best — by its
//! default scoring, the emptiest, which is often the replacement just launched. In any
//! order, small pods fill the replacement and the large ones meant for it find no room
//! elsewhere: the provisioner launches a node for them and consolidation later removes
//! it again (kerf-kwokbench's Wide, where nearly every consolidation command was followed
//! by such a launch). Largest first is the order consolidation's own simulation packs
//! them in. A pod that does not go (a PDB refuses it, or it terminates slowly) holds the
//! smaller ones back for `LARGEST_FIRST_MS` at most.
//!
//! While a disruption command's pods bound for its replacements land (have not left
//! their nodes, or a pod waits to be scheduled), the pods every command's pass placed on
//! nodes that stay are held back, each drain's for as long at most (`held`, from
//! `disruption.rs`): a replacement's own pods reach kube-scheduler first, while it is
//! still the emptiest node.

use std::collections::BTreeSet;

use kerf_cloud::InstanceState;
use kerf_model::pod::PodKey;
use kerf_model::{Effect, Taint, labels};

use crate::{Action, ClusterView, PodState, Reason, Subject};

/// How long a drain evicts its pods largest first, one size at a time.
pub(crate) const LARGEST_FIRST_MS: i64 = 5_000;

/// A pod's requests as the drain orders them: CPU, then memory.
fn size(p: &PodState) -> (i64, i64) {
    (p.pod.requests.get("cpu").0, p.pod.requests.get("memory").0)
}

/// `now` is the loops' clock (milliseconds from `epoch_secs`, Unix seconds).
/// `held` are pods the disruption queue's drains hold back for now (see `disruption.rs`).
pub(crate) fn reconcile(
    now: i64,
    epoch_secs: i64,
    view: &ClusterView,
    held: &BTreeSet<PodKey>,
    out: &mut Vec<Action>,
) {
    let now_secs = epoch_secs + now / 1000;
    // A Node someone deleted (`kubectl delete node`) is held by the termination finalizer:
    // as Karpenter's node termination controller, delete its NodeClaim, whose termination
    // then drains the node, terminates the instance and lets both go.
    for node in view.nodes.values().filter(|n| n.deleting) {
        if let Some(claim) = view.claim_of_node(&node.name)
            && claim.deleting_since.is_none()
        {
            out.push(Action::DeleteClaim {
                claim: claim.name.clone(),
                reason: crate::DeletionReason::NodeDeleted,
            });
        }
    }
    for claim in view.claims.values() {
        if claim.deleting_since.is_none() {
            continue;
        }
        let instance = claim
            .provider_id
            .as_deref()
            .and_then(|id| view.instances.get(id))
            .or_else(|| view.instances.values().find(|i| i.claim == claim.name));
        let node = claim.node_name.as_deref().and_then(|n| view.nodes.get(n));
        if let Some(node) = node {
            // Once the instance is gone there is nothing left to drain.
            if instance.is_some() {
                if !node.taints.iter().any(|t| t.key == labels::TAINT_DISRUPTED) {
                    out.push(Action::Taint {
                        node: node.name.clone(),
                        taint: Taint::new(labels::TAINT_DISRUPTED, "", Effect::NoSchedule),
                    });
                }
                let forced = claim.grace_deadline().is_some_and(|d| now >= d);
                let pods: Vec<_> = view
                    .pods_on(&node.name)
                    .filter(|p| !p.pod.is_daemon())
                    .collect();
                if !pods.is_empty() {
                    if forced {
                        out.extend(pods.iter().map(|p| Action::ForceDelete {
                            pod: p.pod.key.clone(),
                        }));
                    } else {
                        if let Some(deadline) = claim.grace_deadline() {
                            let at =
                                jiff::Timestamp::from_millisecond(epoch_secs * 1000 + deadline)
                                    .map_or_else(|_| format!("{deadline}ms"), |t| t.to_string());
                            out.push(Action::Record {
                                reason: Reason::TerminationGracePeriodExpiring,
                                about: Subject::Node(node.name.clone()),
                                message: format!("All pods will be deleted by {at}"),
                            });
                        }
                        let any_non_critical = pods.iter().any(|p| !p.pod.is_critical());
                        // A terminating pod is evicted already: the drain waits for it
                        // to go, as Karpenter's does, without asking again.
                        let tier: Vec<&PodState> = (pods.iter().copied())
                            .filter(|p| !p.pod.terminating)
                            .filter(|p| p.pod.is_critical() != any_non_critical)
                            .filter(|p| !p.pod.do_not_disrupt_at(now_secs))
                            .filter(|p| !held.contains(&p.pod.key))
                            .collect();
                        let largest_first = claim
                            .deleting_since
                            .is_some_and(|since| now - since < LARGEST_FIRST_MS);
                        let largest = tier.iter().map(|p| size(p)).max();
                        out.extend(
                            (tier.iter())
                                .filter(|p| !largest_first || Some(size(p)) == largest)
                                .map(|p| Action::Evict {
                                    pod: p.pod.key.clone(),
                                }),
                        );
                    }
                    continue;
                }
            }
        }
        match instance {
            Some(i) if i.state == InstanceState::Running => out.push(Action::TerminateInstance {
                instance_id: i.id.clone(),
            }),
            Some(_) => {}
            None => {
                if let Some(node) = node {
                    out.push(Action::RemoveNode {
                        node: node.name.clone(),
                    });
                }
                out.push(Action::RemoveClaim {
                    claim: claim.name.clone(),
                });
            }
        }
    }
}
