//! Topology groups: topology spread constraints and pod (anti-)affinity terms, with the
//! count of matching pods in each domain (zone, hostname, capacity type, any label).
//!
//! Identical constraints from different pods share one group, so a Deployment's replicas
//! all see the same counts. A group counts every pod its selector matches — pending pods
//! placed in this solve as well as bound ones — and, for required anti-affinity, also
//! where the pods that own the term are, because Kubernetes keeps a pod out of a domain
//! whose existing pods' anti-affinity it matches.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};

use kerf_model::labels;
use kerf_model::pod::{NamespaceScope, NodeAffinity};
use kerf_model::{LabelSelector, Labels, Pod, Toleration};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum GroupKind {
    Spread {
        max_skew: i32,
        min_domains: Option<i32>,
    },
    Affinity,
    AntiAffinity,
}

/// The identity of a group: pods whose constraints are equal share it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct GroupSpec {
    pub kind: GroupKind,
    pub key: String,
    pub selector: LabelSelector,
    pub namespaces: NamespaceScope,
    /// Spread with `nodeAffinityPolicy: Honor`: only nodes that pass the owner's node
    /// affinity are domains and have their pods counted.
    pub node_filter: Option<NodeAffinity>,
    /// Spread with `nodeTaintsPolicy: Honor`: only nodes whose taints the owner tolerates.
    pub taint_filter: Option<Vec<Toleration>>,
    /// Required affinity of a pod with several terms: the other terms' selectors and
    /// namespaces, which a pod must match too to count. kube-scheduler counts an existing
    /// pod for a pod's affinity only if it matches every term (`podMatchesAllAffinityTerms`).
    pub also: Vec<(LabelSelector, NamespaceScope)>,
}

#[derive(Clone, Debug)]
pub(crate) struct Group {
    pub spec: GroupSpec,
    /// Matching pods per domain.
    pub counts: BTreeMap<String, i32>,
    /// Anti-affinity only: pods that own this term as a required term, per domain.
    pub owner_counts: BTreeMap<String, i32>,
    /// Spread only: every domain the owner could be placed in, including ones no node
    /// has yet (a zone a NodePool can launch into).
    pub universe: BTreeSet<String>,
}

impl Group {
    pub fn total(&self) -> i32 {
        self.counts.values().sum()
    }

    pub fn count(&self, domain: &str) -> i32 {
        self.counts.get(domain).copied().unwrap_or(0)
    }

    pub fn owners_in(&self, domain: &str) -> i32 {
        self.owner_counts.get(domain).copied().unwrap_or(0)
    }

    /// The smallest count over eligible domains, as kube-scheduler computes the skew
    /// baseline. Where new nodes can still be made, a fresh hostname domain has zero.
    pub fn min_count(&self, new_nodes_possible: bool) -> i32 {
        let GroupKind::Spread { min_domains, .. } = self.spec.kind else {
            return 0;
        };
        if self.spec.key == labels::HOSTNAME && new_nodes_possible {
            return 0;
        }
        if min_domains.is_some_and(|m| (self.universe.len() as i32) < m) {
            return 0;
        }
        self.universe
            .iter()
            .map(|d| self.count(d))
            .min()
            .unwrap_or(0)
    }

    /// Whether pods of this namespace with these labels are counted by this group.
    pub fn selects(
        &self,
        namespace: &str,
        pod_labels: &Labels,
        ns_labels: Option<&Labels>,
    ) -> bool {
        self.spec.namespaces.contains(namespace, ns_labels)
            && self.spec.selector.matches(pod_labels)
            && self.spec.also.iter().all(|(selector, namespaces)| {
                namespaces.contains(namespace, ns_labels) && selector.matches(pod_labels)
            })
    }
}

/// All groups of one solve.
#[derive(Clone, Debug, Default)]
pub(crate) struct Topology {
    pub groups: Vec<Group>,
    by_hash: BTreeMap<u64, Vec<usize>>,
}

impl Topology {
    pub fn intern(&mut self, spec: GroupSpec) -> usize {
        let mut h = DefaultHasher::new();
        spec.hash(&mut h);
        let bucket = self.by_hash.entry(h.finish()).or_default();
        if let Some(&idx) = bucket.iter().find(|&&i| self.groups[i].spec == spec) {
            return idx;
        }
        let idx = self.groups.len();
        bucket.push(idx);
        self.groups.push(Group {
            spec,
            counts: BTreeMap::new(),
            owner_counts: BTreeMap::new(),
            universe: BTreeSet::new(),
        });
        idx
    }
}

/// A pod's use of topology groups.
#[derive(Clone, Debug, Default)]
pub(crate) struct PodGroups {
    /// (group, hard): hard for `DoNotSchedule`.
    pub spreads: Vec<(usize, bool)>,
    pub affinity: Vec<usize>,
    pub anti_affinity: Vec<usize>,
    /// Preferred terms, heaviest first.
    pub preferred_affinity: Vec<usize>,
    pub preferred_anti_affinity: Vec<usize>,
    /// Groups whose selector matches this pod: placing it adds to their counts.
    pub selected_by: Vec<usize>,
    /// Required anti-affinity groups whose owners this pod must avoid (it matches them
    /// and some owner exists or may be placed).
    pub avoided_by: Vec<usize>,
}

fn affinity_spec(kind: GroupKind, term: &kerf_model::pod::AffinityTerm) -> GroupSpec {
    GroupSpec {
        kind,
        key: term.topology_key.clone(),
        selector: term.selector.clone(),
        namespaces: term.namespaces.clone(),
        node_filter: None,
        taint_filter: None,
        also: Vec::new(),
    }
}

/// Interns the groups a pod owns. `selected_by`/`avoided_by` are filled later, once every
/// group exists.
pub(crate) fn owned_groups(topology: &mut Topology, pod: &Pod) -> PodGroups {
    use kerf_model::pod::{InclusionPolicy, WhenUnsatisfiable};
    let mut pg = PodGroups::default();
    for s in &pod.topology_spread {
        let spec = GroupSpec {
            kind: GroupKind::Spread {
                max_skew: s.max_skew,
                min_domains: s.min_domains,
            },
            key: s.topology_key.clone(),
            selector: s.selector.clone(),
            namespaces: NamespaceScope::own(&pod.key.namespace),
            node_filter: (s.node_affinity_policy == InclusionPolicy::Honor)
                .then(|| pod.node_affinity.clone()),
            taint_filter: (s.node_taints_policy == InclusionPolicy::Honor)
                .then(|| pod.tolerations.clone()),
            also: Vec::new(),
        };
        let hard = s.when_unsatisfiable == WhenUnsatisfiable::DoNotSchedule;
        pg.spreads.push((topology.intern(spec), hard));
    }
    for (i, t) in pod.affinity.iter().enumerate() {
        let mut spec = affinity_spec(GroupKind::Affinity, t);
        spec.also = (pod.affinity.iter().enumerate())
            .filter(|&(j, _)| j != i)
            .map(|(_, o)| (o.selector.clone(), o.namespaces.clone()))
            .collect();
        pg.affinity.push(topology.intern(spec));
    }
    for t in &pod.anti_affinity {
        pg.anti_affinity
            .push(topology.intern(affinity_spec(GroupKind::AntiAffinity, t)));
    }
    let mut preferred: Vec<_> = pod.preferred_affinity.iter().collect();
    preferred.sort_by_key(|w| std::cmp::Reverse(w.weight));
    for w in preferred {
        pg.preferred_affinity
            .push(topology.intern(affinity_spec(GroupKind::Affinity, &w.term)));
    }
    let mut preferred: Vec<_> = pod.preferred_anti_affinity.iter().collect();
    preferred.sort_by_key(|w| std::cmp::Reverse(w.weight));
    for w in preferred {
        pg.preferred_anti_affinity
            .push(topology.intern(affinity_spec(GroupKind::AntiAffinity, &w.term)));
    }
    pg
}
