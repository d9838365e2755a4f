//! NodeClaim lifecycle, expiration and garbage collection, level-triggered over the view:
//!
//! - launch: a claim with no instance asks the cloud for one, over its options less the
//!   offerings that recently ran out of capacity; with none left it is deleted, and its
//!   pods go back to the provisioner. An instance the cloud lists for the claim (launched
//!   before a restart, say) is adopted, never launched again.
//! - registration: the node with the claim's provider ID joined → link them; no node
//!   `registration_timeout_ms` after creation → delete the claim.
//! - initialization: the node is ready and its startup taints are gone.
//! - expiration: `expireAfter` after creation the claim is deleted (forceful: no budgets).
//! - garbage collection: instances with no claim are terminated; claims whose instance
//!   vanished are deleted; managed nodes whose claim is gone are removed.
//!
//! Besides the view, only time moves these rules (expiry, the registration timeout, the
//! garbage-collection grace), so `reconcile` says when the earliest of them next falls
//! due; on an unchanged view the controller need not run it again before then.

use std::collections::{BTreeMap, BTreeSet};

use kerf_cloud::{InstanceState, Offer};

use crate::{Action, ClusterView, Config, DeletionReason};

/// Performs one reconcile; returns the earliest time after `now` at which a time-based
/// rule would act on this same view (`i64::MAX` for none).
pub(crate) fn reconcile(
    now: i64,
    view: &ClusterView,
    config: &Config,
    unavailable: &BTreeMap<Offer, i64>,
    out: &mut Vec<Action>,
) -> i64 {
    let mut next_due = i64::MAX;
    let mut due_at = |t: i64| {
        if t > now {
            next_due = next_due.min(t);
        }
    };
    // Instances by the claim they were tagged with, and nodes by provider ID: only
    // claims not yet launched or registered need them, so they are built on first use.
    let mut instance_of: Option<BTreeMap<&str, &kerf_cloud::Instance>> = None;
    let mut node_of_instance: Option<BTreeMap<&str, &str>> = None;

    for claim in view.claims.values() {
        if claim.deleting_since.is_some() {
            continue;
        }
        let delete = |reason: DeletionReason| Action::DeleteClaim {
            claim: claim.name.clone(),
            reason,
        };
        let Some(provider_id) = claim.provider_id.as_deref() else {
            let instance_of = instance_of.get_or_insert_with(|| {
                view.instances
                    .values()
                    .map(|i| (i.claim.as_str(), i))
                    .collect()
            });
            if let Some(instance) = instance_of.get(claim.name.as_str()) {
                out.push(Action::MarkLaunched {
                    claim: claim.name.clone(),
                    instance_id: instance.id.clone(),
                });
                continue;
            }
            let options: Vec<Offer> = claim
                .options
                .iter()
                .filter(|o| !unavailable.contains_key(*o))
                .cloned()
                .collect();
            if options.is_empty() {
                out.push(delete(DeletionReason::InsufficientCapacity));
                continue;
            }
            let image_id = view.image_for(&claim.nodepool);
            out.push(Action::Launch {
                claim: claim.name.clone(),
                options,
                image_id,
            });
            continue;
        };
        if !view.instances.contains_key(provider_id) {
            out.push(delete(DeletionReason::InstanceTerminated));
            continue;
        }
        if let Some(after) = claim.expire_after {
            let expires = claim.created_at.saturating_add(after.as_millis() as i64);
            if now >= expires {
                out.push(delete(DeletionReason::Disruption(
                    kerf_disruption::Method::Expiration,
                )));
                continue;
            }
            due_at(expires);
        }
        let Some(node_name) = claim.node_name.as_deref() else {
            let node_of_instance = node_of_instance.get_or_insert_with(|| {
                view.node_provider_ids
                    .iter()
                    .map(|(node, id)| (id.as_str(), node.as_str()))
                    .collect()
            });
            due_at(claim.created_at + config.registration_timeout_ms);
            if let Some(&node) = node_of_instance.get(provider_id) {
                out.push(Action::Register {
                    claim: claim.name.clone(),
                    node: node.to_string(),
                });
            } else if now - claim.created_at >= config.registration_timeout_ms {
                out.push(delete(DeletionReason::RegistrationTimeout));
            }
            continue;
        };
        // Karpenter's `StartupTaintsExist` and `KnownEphemeralTaintsExist`: a Ready node
        // the node lifecycle controller has not yet untainted (`not-ready:NoSchedule`
        // lags Ready, by seconds at a thousand nodes) takes no pod yet. Initialized, it
        // would be solved as the node it is, taint included, and its pods would be
        // given new claims; uninitialized, it is solved as the node it will be.
        if !claim.initialized
            && let Some(node) = view.nodes.get(node_name)
            && node.ready
            && !node.taints.iter().any(|t| {
                t.is_known_ephemeral() || claim.startup_taints.iter().any(|s| s.key == t.key)
            })
        {
            out.push(Action::Initialize {
                claim: claim.name.clone(),
            });
        }
    }

    for instance in view.instances.values() {
        if instance.state == InstanceState::Running && !view.claims.contains_key(&instance.claim) {
            if now - instance.launched_at >= config.gc_grace_ms {
                out.push(Action::TerminateInstance {
                    instance_id: instance.id.clone(),
                });
            } else {
                due_at(instance.launched_at + config.gc_grace_ms);
            }
        }
    }

    let linked: BTreeSet<&str> = view
        .claims
        .values()
        .filter_map(|c| c.node_name.as_deref())
        .collect();
    for node in view.nodes.values() {
        // Only nodes an instance of ours became; nodes the cluster started with stay.
        let Some(id) = view.node_provider_ids.get(&node.name) else {
            continue;
        };
        if node.nodepool().is_none() || linked.contains(node.name.as_str()) {
            continue;
        }
        let owned = view
            .instances
            .get(id)
            .is_some_and(|i| view.claims.contains_key(&i.claim));
        if !owned {
            out.push(Action::RemoveNode {
                node: node.name.clone(),
            });
        }
    }
    next_due
}
