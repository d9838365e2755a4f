//! Setting a solve up: the facts that hold for the whole solve (`Facts`), each existing
//! node's free capacity, the pools with their options, and the topology groups with the
//! bound pods counted. Nothing here runs once the first pod is placed.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};

use kerf_model::labels;
use kerf_model::pod::HostPort;
use kerf_model::taints::first_untolerated;
use kerf_model::{InstanceType, Pod, Requirement, Requirements, Resources};

use super::commit::node_passes_filter;
use super::memo::Memos;
use super::scan::Scans;
use super::{Facts, NodeState, Solver, nodes_one, open_key};
use crate::claim::{Pool, possible_values, type_compatible};
use crate::dense::{Dense, ResIndex, Thresholds};
use crate::topology::{GroupKind, GroupSpec, PodGroups, Topology, owned_groups};
use crate::{Config, Input};

impl<'a> Solver<'a> {
    pub(super) fn new(input: &'a Input, config: &'a Config) -> Solver<'a> {
        // Node name → index in `Input::nodes`, so binding pods to nodes is not quadratic.
        let node_index: BTreeMap<&str, usize> = input
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.as_str(), i))
            .collect();
        let res = ResIndex::new(
            input
                .pods
                .iter()
                .chain(&input.bound_pods)
                .chain(&input.daemonsets)
                .map(|p| &p.requests)
                .chain(input.nodes.iter().map(|n| &n.allocatable))
                .chain(
                    input
                        .instance_types
                        .iter()
                        .flat_map(|t| [&t.capacity, &t.overhead]),
                ),
        );
        let pod_req = input.pods.iter().map(|p| res.dense(&p.requests)).collect();
        let nodes = init_nodes(input, &node_index, &res);
        let pools = init_pools(input, &res);
        let (topology, pod_groups) = init_topology(input, &node_index, &pools);
        let node_preferences = input
            .pods
            .iter()
            .map(|p| {
                let mut prefs: Vec<_> = p.node_affinity.preferred.iter().collect();
                prefs.sort_by_key(|w| std::cmp::Reverse(w.weight));
                prefs.into_iter().map(|w| w.term.clone()).collect()
            })
            .collect();
        Solver {
            facts: Facts {
                input,
                config,
                res,
                pod_req,
                pod_class: classes(&input.pods),
                pod_groups,
                node_preferences,
            },
            memos: Memos::default(),
            pools,
            topology,
            nodes,
            claims: Vec::new(),
            scans: Scans::default(),
            unschedulable: Vec::new(),
        }
    }
}

/// Each existing node as the solve starts: what its bound pods and its DaemonSets leave.
fn init_nodes(input: &Input, node_index: &BTreeMap<&str, usize>, res: &ResIndex) -> Vec<NodeState> {
    let mut nodes: Vec<NodeState> = input
        .nodes
        .iter()
        .map(|n| NodeState {
            remaining: res.dense(&n.allocatable),
            host_ports: Vec::new(),
            // Karpenter schedules only onto active nodes: not being deleted.
            usable: n.ready
                && !n.unschedulable
                && !n.deleting
                && !n.taints.iter().any(|t| t.key == labels::TAINT_DISRUPTED),
            placed: Vec::new(),
        })
        .collect();
    let node_idx = |name: &str| node_index.get(name).copied();
    let mut daemon_on_node: Vec<BTreeSet<&str>> = vec![BTreeSet::new(); input.nodes.len()];
    for pod in &input.bound_pods {
        let Some(i) = pod.node_name.as_deref().and_then(node_idx) else {
            continue;
        };
        let req = res.dense(&pod.requests);
        nodes[i].remaining.sub(&req);
        nodes[i].host_ports.extend(pod.host_ports.iter().cloned());
        if let Some(owner) = pod.owner.as_ref().filter(|o| o.kind == "DaemonSet") {
            daemon_on_node[i].insert(owner.name.as_str());
        }
    }
    // A DaemonSet whose pod is not (yet) bound to a node it targets will still put one
    // there: reserve its requests.
    for (i, node) in input.nodes.iter().enumerate() {
        for ds in &input.daemonsets {
            let name = ds.owner.as_ref().map_or("", |o| o.name.as_str());
            if !daemon_on_node[i].contains(name) && ds.daemon_runs_on(&node.labels, &node.taints) {
                let req = res.dense(&ds.requests);
                nodes[i].remaining.sub(&req);
                nodes[i].host_ports.extend(ds.host_ports.iter().cloned());
            }
        }
    }
    nodes
}

/// The NodePools by weight (then name), each with the instance types it can launch.
fn init_pools(input: &Input, res: &ResIndex) -> Vec<Pool> {
    let mut pools = Vec::new();
    let mut order: Vec<usize> = (0..input.nodepools.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&input.nodepools[a], &input.nodepools[b]);
        b.weight.cmp(&a.weight).then_with(|| a.name.cmp(&b.name))
    });
    for np_idx in order {
        let np = &input.nodepools[np_idx];
        let template = np.template_requirements();
        let compatible: Vec<usize> = input
            .instance_types
            .iter()
            .enumerate()
            .filter(|(_, t)| type_compatible(t, &template))
            .map(|(i, _)| i)
            .collect();
        let daemons = PoolDaemons::new(&input.daemonsets, np);
        let mut types = Vec::with_capacity(compatible.len());
        let mut overhead = Vec::with_capacity(compatible.len());
        let mut daemon_ports = Vec::with_capacity(compatible.len());
        let mut avail = Vec::with_capacity(compatible.len());
        let mut daemon_misfits = Vec::new();
        for t in compatible {
            let (o, ports) = daemons.overhead(&template, &input.instance_types[t]);
            let a = input.instance_types[t].allocatable().minus(&o);
            // Every resource a node's pods request must fit its allocatable, the
            // DaemonSets' included, whether or not a pending pod asks for it (Karpenter
            // fits a claim's requests and its daemons' against each type, resource by
            // resource): a type that cannot even hold its DaemonSets is no option.
            if a.iter().any(|(_, q)| q < kerf_model::Quantity::ZERO) {
                daemon_misfits.push((t, o));
                continue;
            }
            types.push(t);
            overhead.push(o);
            daemon_ports.push(ports);
            avail.push(a);
        }
        let remaining_limits = (!np.limits.is_empty()).then(|| {
            let mut used = Resources::new();
            for n in input
                .nodes
                .iter()
                .filter(|n| n.nodepool() == Some(&np.name))
            {
                used.add(&n.capacity);
                used.add(&nodes_one());
            }
            np.limits.remaining(&used)
        });
        let avail_d: Vec<Dense> = avail.iter().map(|a| res.dense(a)).collect();
        let mut max_avail = Dense::default();
        for a in &avail_d {
            max_avail.max_with(a);
        }
        pools.push(Pool {
            max_avail,
            thresholds: Thresholds::new(&avail_d),
            daemon_ports,
            nodepool: np_idx,
            template,
            types,
            overhead,
            avail,
            daemon_misfits,
            remaining_limits,
        });
    }
    pools
}

/// The topology groups the pods own, with the bound pods counted and each spread's
/// domains; and per pending pod, its groups.
fn init_topology(
    input: &Input,
    node_index: &BTreeMap<&str, usize>,
    pools: &[Pool],
) -> (Topology, Vec<PodGroups>) {
    let mut topology = Topology::default();
    let mut groups: Vec<PodGroups> = input
        .pods
        .iter()
        .map(|p| owned_groups(&mut topology, p))
        .collect();
    // Bound pods' required anti-affinity keeps matching pods out of their domains.
    let mut bound_anti: Vec<Vec<usize>> = Vec::new();
    for p in &input.bound_pods {
        let mut owned = Vec::new();
        for t in &p.anti_affinity {
            owned.push(topology.intern(GroupSpec {
                kind: GroupKind::AntiAffinity,
                key: t.topology_key.clone(),
                selector: t.selector.clone(),
                namespaces: t.namespaces.clone(),
                node_filter: None,
                taint_filter: None,
                also: Vec::new(),
            }));
        }
        bound_anti.push(owned);
    }
    let mut has_owner = vec![false; topology.groups.len()];
    for g in groups
        .iter()
        .flat_map(|g| &g.anti_affinity)
        .chain(bound_anti.iter().flatten())
    {
        has_owner[*g] = true;
    }
    for (pod, pg) in input.pods.iter().zip(groups.iter_mut()) {
        let ns_labels = input.namespaces.get(&pod.key.namespace);
        for (gi, g) in topology.groups.iter().enumerate() {
            if g.selects(&pod.key.namespace, &pod.labels, ns_labels) {
                pg.selected_by.push(gi);
                if g.spec.kind == GroupKind::AntiAffinity && has_owner[gi] {
                    pg.avoided_by.push(gi);
                }
            }
        }
    }
    // Count bound pods in every group that selects them.
    for (p, owned) in input.bound_pods.iter().zip(&bound_anti) {
        let Some(node) = p
            .node_name
            .as_deref()
            .and_then(|n| node_index.get(n))
            .map(|&i| &input.nodes[i])
        else {
            continue;
        };
        let ns_labels = input.namespaces.get(&p.key.namespace);
        for g in topology.groups.iter_mut() {
            if g.selects(&p.key.namespace, &p.labels, ns_labels)
                && node_passes_filter(&g.spec, node)
                && let Some(d) = node.labels.get(&g.spec.key)
            {
                *g.counts.entry(d.clone()).or_default() += 1;
            }
        }
        for &gi in owned {
            let g = &mut topology.groups[gi];
            if let Some(d) = node.labels.get(&g.spec.key) {
                *g.owner_counts.entry(d.clone()).or_default() += 1;
            }
        }
    }
    // Spread domains: what existing nodes have, and what NodePools can launch into.
    for gi in 0..topology.groups.len() {
        let spec = topology.groups[gi].spec.clone();
        if !matches!(spec.kind, GroupKind::Spread { .. }) {
            continue;
        }
        let mut universe = BTreeSet::new();
        for node in input.nodes.iter().filter(|n| node_passes_filter(&spec, n)) {
            if let Some(d) = node.labels.get(&spec.key) {
                universe.insert(d.clone());
            }
        }
        if spec.key != labels::HOSTNAME {
            for pool in pools {
                universe.extend(pool_domains(input, pool, &spec));
            }
        }
        topology.groups[gi].universe = universe;
    }
    (topology, groups)
}

/// Values of a spread group's key that nodes from this pool could carry.
fn pool_domains(input: &Input, pool: &Pool, spec: &GroupSpec) -> BTreeSet<String> {
    let np = &input.nodepools[pool.nodepool];
    if let Some(tols) = &spec.taint_filter
        && first_untolerated(&np.taints, tols).is_some()
    {
        return BTreeSet::new();
    }
    let terms: Vec<Requirements> = match &spec.node_filter {
        Some(f) if !f.required.is_empty() => f.required.clone(),
        _ => vec![Requirements::new()],
    };
    let mut out = BTreeSet::new();
    for term in terms {
        if pool.template.conflict_with(&term, open_key).is_some() {
            continue;
        }
        let reqs = pool.template.intersection(&term);
        if open_key(&spec.key) {
            let types = pool.types.iter().map(|&t| &input.instance_types[t]);
            out.extend(possible_values(&spec.key, types, &reqs));
        } else if let Some(values) = reqs.get(&spec.key).and_then(|r| r.values()) {
            out.extend(values.iter().cloned());
        }
    }
    out
}

/// Numbers pods so that two share a number exactly when `solve` must treat them alike:
/// same namespace, labels, requests and scheduling constraints (names and owners aside).
fn classes(pods: &[Pod]) -> Vec<usize> {
    fn same(a: &Pod, b: &Pod) -> bool {
        a.key.namespace == b.key.namespace
            && a.labels == b.labels
            && a.requests == b.requests
            && a.node_affinity == b.node_affinity
            && a.volume_zones == b.volume_zones
            && a.tolerations == b.tolerations
            && a.topology_spread == b.topology_spread
            && a.affinity == b.affinity
            && a.anti_affinity == b.anti_affinity
            && a.preferred_affinity == b.preferred_affinity
            && a.preferred_anti_affinity == b.preferred_anti_affinity
            && a.host_ports == b.host_ports
    }
    let mut buckets: BTreeMap<u64, Vec<(usize, usize)>> = BTreeMap::new();
    let mut next = 0;
    pods.iter()
        .enumerate()
        .map(|(i, pod)| {
            let mut h = DefaultHasher::new();
            pod.key.namespace.hash(&mut h);
            pod.labels.hash(&mut h);
            pod.requests.hash(&mut h);
            pod.node_affinity.hash(&mut h);
            pod.volume_zones.hash(&mut h);
            pod.tolerations.hash(&mut h);
            pod.topology_spread.hash(&mut h);
            pod.affinity.hash(&mut h);
            pod.anti_affinity.hash(&mut h);
            pod.host_ports.hash(&mut h);
            let bucket = buckets.entry(h.finish()).or_default();
            if let Some(&(_, class)) = bucket.iter().find(|&&(rep, _)| same(&pods[rep], pod)) {
                return class;
            }
            bucket.push((i, next));
            next += 1;
            next - 1
        })
        .collect()
}

/// The DaemonSets whose pods would run on a pool's nodes, split by whether the instance
/// type can matter: the requests of those without required node affinity are the same
/// on every type, so they are summed once per pool rather than once per type.
struct PoolDaemons<'a> {
    everywhere: (Resources, Vec<HostPort>),
    /// Tolerate the pool's taints, but select nodes by label.
    selective: Vec<&'a Pod>,
}

impl<'a> PoolDaemons<'a> {
    fn new(daemonsets: &'a [Pod], np: &kerf_model::NodePool) -> PoolDaemons<'a> {
        let mut everywhere = (Resources::new(), Vec::new());
        let mut selective = Vec::new();
        for ds in daemonsets {
            if first_untolerated(&np.taints, &ds.tolerations).is_some() {
                continue;
            }
            if ds.node_affinity.required.is_empty() {
                everywhere.0.add(&ds.requests);
                everywhere.1.extend(ds.host_ports.iter().cloned());
            } else {
                selective.push(ds);
            }
        }
        PoolDaemons {
            everywhere,
            selective,
        }
    }

    /// Requests and host ports of the DaemonSets whose pods would run on a node of this
    /// pool (`template`: its template requirements) and type.
    fn overhead(&self, template: &Requirements, t: &InstanceType) -> (Resources, Vec<HostPort>) {
        let (mut total, mut ports) = self.everywhere.clone();
        if self.selective.is_empty() {
            return (total, ports);
        }
        let mut node_reqs = template.clone();
        for (k, v) in &t.labels {
            node_reqs.add(k.clone(), Requirement::single(v.clone()));
        }
        for ds in &self.selective {
            let affine = ds.node_affinity.required.iter().any(|term| {
                node_reqs
                    .conflict_with(term, |k| k == labels::ZONE || k == labels::CAPACITY_TYPE)
                    .is_none()
            });
            if affine {
                total.add(&ds.requests);
                ports.extend(ds.host_ports.iter().cloned());
            }
        }
        (total, ports)
    }
}
