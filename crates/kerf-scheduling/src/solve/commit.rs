//! Committing a placement: the only place a placed pod changes the solve — the node's or
//! claim's room, a claim's requirements and options, a pool's remaining limits, and the
//! topology counts.

use kerf_model::labels;
use kerf_model::taints::first_untolerated;
use kerf_model::{Node, Requirements};

use super::fit::Target;
use super::{Solver, open_key};
use crate::topology::{GroupSpec, PodGroups, Topology};

impl Solver<'_> {
    /// Puts the pod where `target` says: the node or claim takes its requests and host
    /// ports, the claim narrows to the fit, and every group that counts the pod counts it.
    pub(super) fn commit(&mut self, p: usize, target: Target) {
        let pod = &self.facts.input.pods[p];
        let (claim_idx, fit) = match target {
            Target::Node(i) => {
                self.nodes[i].remaining.sub(&self.facts.pod_req[p]);
                self.nodes[i]
                    .host_ports
                    .extend(pod.host_ports.iter().cloned());
                self.nodes[i].placed.push(p);
                let node = &self.facts.input.nodes[i];
                record(
                    &mut self.topology,
                    &self.facts.pod_groups[p],
                    |key| node.labels.get(key).cloned(),
                    |spec| node_passes_filter(spec, node),
                );
                return;
            }
            Target::Claim(c, fit) => (c, fit),
            Target::NewClaim(claim, fit) => {
                self.claims.push(*claim);
                (self.claims.len() - 1, fit)
            }
        };
        let pool_idx = self.claims[claim_idx].pool;
        if self.pools[pool_idx].remaining_limits.is_some() {
            // `filter_options` kept only options within the limits' headroom, so whichever
            // of them the claim carries, the pool stays within its limits.
            let reservation = self
                .catalog()
                .reservation(pool_idx, &fit.reqs, &fit.options);
            let limits = self.pools[pool_idx].remaining_limits.as_mut().unwrap();
            limits.add(&self.claims[claim_idx].reservation);
            limits.sub(&reservation);
            self.claims[claim_idx].reservation = reservation;
        }
        let claim = &mut self.claims[claim_idx];
        claim.reqs = fit.reqs;
        claim.options = fit.options;
        claim.max_avail = fit.max_avail;
        claim.cheapest_rank = fit.cheapest_rank;
        claim.requests.add(&self.facts.pod_req[p]);
        claim.host_ports.extend(pod.host_ports.iter().cloned());
        claim.pods.push(p);
        // Only the domain-defining parts are needed; cloning the whole claim (its pod list
        // grows with every commit) would make filling a claim quadratic.
        let hostname = claim.hostname.clone();
        let reqs = claim.reqs.clone();
        // The input outlives the solver's borrow: no copy of the taints per placed pod.
        let input = self.facts.input;
        let taints = &input.nodepools[self.pools[pool_idx].nodepool].taints;
        record(
            &mut self.topology,
            &self.facts.pod_groups[p],
            |key| {
                if key == labels::HOSTNAME {
                    Some(hostname.clone())
                } else {
                    reqs.get(key)
                        .and_then(|r| r.single_value())
                        .map(str::to_string)
                }
            },
            // A spread's node inclusion policies apply to claims as to nodes (Karpenter's
            // `TopologyGroup.Counts`): a pod on a claim the group's filter leaves out does
            // not count in it.
            |spec| claim_passes_filter(spec, &reqs, taints),
        );
    }
}

/// Counts a placed pod in every group that selects it, and as an owner of its required
/// anti-affinity terms.
fn record(
    topology: &mut Topology,
    pg: &PodGroups,
    domain: impl Fn(&str) -> Option<String>,
    passes: impl Fn(&GroupSpec) -> bool,
) {
    for &gi in &pg.selected_by {
        let g = &mut topology.groups[gi];
        if passes(&g.spec)
            && let Some(d) = domain(&g.spec.key)
        {
            *g.counts.entry(d).or_default() += 1;
        }
    }
    for &gi in &pg.anti_affinity {
        let g = &mut topology.groups[gi];
        if let Some(d) = domain(&g.spec.key) {
            *g.owner_counts.entry(d).or_default() += 1;
        }
    }
}

/// Whether an existing node is among the nodes a spread group counts.
pub(super) fn node_passes_filter(spec: &GroupSpec, node: &Node) -> bool {
    spec.node_filter
        .as_ref()
        .is_none_or(|f| f.matches_labels(&node.labels))
        && spec
            .taint_filter
            .as_ref()
            .is_none_or(|tols| first_untolerated(&node.taints, tols).is_none())
}

/// Whether a claim with these requirements and taints is among the nodes a spread group
/// counts: its taints tolerated (`nodeTaintsPolicy: Honor`) and its requirements
/// compatible with a term of the pod's node affinity (`nodeAffinityPolicy: Honor`).
fn claim_passes_filter(
    spec: &GroupSpec,
    reqs: &Requirements,
    taints: &[kerf_model::Taint],
) -> bool {
    spec.node_filter.as_ref().is_none_or(|f| {
        f.required.is_empty()
            || f.required
                .iter()
                .any(|term| reqs.conflict_with(term, open_key).is_none())
    }) && spec
        .taint_filter
        .as_ref()
        .is_none_or(|tols| first_untolerated(taints, tols).is_none())
}
