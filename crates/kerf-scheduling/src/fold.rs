//! Shrinking an `Input` without changing its plan.
//!
//! A bound pod matters to `solve` in two ways: its requests use its node's room, and its
//! labels, ports and affinity terms can count for (or against) the pods being placed.
//! Most bound pods in a real cluster only do the first, and for those the solve needs no
//! pod at all: its node with that much less allocatable is the same node. Callers that
//! solve again and again over a large cluster (disruption's simulations, the simulator's
//! kube-scheduler) fold those pods away, so a solve costs what its nodes and its pending
//! pods cost, not what the whole cluster's pods do.

use kerf_model::{LabelSelector, Pod};

use crate::Input;

/// Which bound pods a solve placing pods drawn from `observers` must see as pods rather
/// than as requests taken off their node: DaemonSet pods (the solver reserves room for a
/// DaemonSet whose pod it does not find on a node), pods with host ports or with pod
/// (anti-)affinity terms of their own, and pods that a topology spread or pod
/// (anti-)affinity selector of an observer could count. Namespaces are not looked at,
/// which can only keep more pods than needed.
pub struct Visibility<'a> {
    selectors: Vec<&'a LabelSelector>,
}

impl<'a> Visibility<'a> {
    pub fn new(observers: impl IntoIterator<Item = &'a Pod>) -> Visibility<'a> {
        let mut selectors: Vec<&LabelSelector> = Vec::new();
        for p in observers {
            let terms = p
                .affinity
                .iter()
                .chain(&p.anti_affinity)
                .chain(p.preferred_affinity.iter().map(|w| &w.term))
                .chain(p.preferred_anti_affinity.iter().map(|w| &w.term))
                .map(|t| &t.selector);
            for s in p.topology_spread.iter().map(|t| &t.selector).chain(terms) {
                if !selectors.contains(&s) {
                    selectors.push(s);
                }
            }
        }
        Visibility { selectors }
    }

    /// Whether the solve must see `bound` as a pod.
    pub fn sees(&self, bound: &Pod) -> bool {
        bound.is_daemon()
            || !bound.host_ports.is_empty()
            || !bound.affinity.is_empty()
            || !bound.anti_affinity.is_empty()
            || !bound.preferred_affinity.is_empty()
            || !bound.preferred_anti_affinity.is_empty()
            || self.selectors.iter().any(|s| s.matches(&bound.labels))
    }
}

/// The smallest CPU and the smallest memory any of `pods` requests, in milli-units
/// (`i64::MAX` each for no pods). A node with less free CPU or memory than this holds
/// none of them: where no pod has inter-pod terms, a solve may leave it out.
pub fn smallest_request<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> (i64, i64) {
    pods.into_iter()
        .fold((i64::MAX, i64::MAX), |(cpu, mem), p| {
            (
                cpu.min(p.requests.get("cpu").0),
                mem.min(p.requests.get("memory").0),
            )
        })
}

/// Folds the bound pods that `input.pods` cannot see (`Visibility`) into their
/// nodes' allocatable; bound pods on no listed node, which `solve` ignores, are dropped.
/// `solve` gives the same plan for the folded input.
pub fn fold_bound_pods(input: &mut Input) {
    let bound = std::mem::take(&mut input.bound_pods);
    let visibility = Visibility::new(&input.pods);
    let position: std::collections::BTreeMap<&str, usize> = input
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    let mut taken = vec![kerf_model::Resources::new(); input.nodes.len()];
    let mut kept = Vec::new();
    for pod in bound {
        let Some(&i) = pod.node_name.as_deref().and_then(|n| position.get(n)) else {
            continue;
        };
        if visibility.sees(&pod) {
            kept.push(pod);
        } else {
            taken[i].add(&pod.requests);
        }
    }
    for (node, taken) in input.nodes.iter_mut().zip(&taken) {
        node.allocatable.sub(taken);
    }
    input.bound_pods = kept;
}
