//! An independent check of a [`Plan`]: would kube-scheduler accept every placement, and
//! would every claim launch what it says?
//!
//! The checker is written from Kubernetes semantics, not from the solver: it shares no code
//! with `solve.rs` and `solve/`, `claim.rs` or `topology.rs`, only the model's own algebra (requirements,
//! selectors, tolerations). It materialises the cluster the plan would produce — every
//! existing node with its bound pods, every new claim as a node with its labels, its
//! NodePool's taints and its launched type's allocatable, DaemonSet pods wherever they would
//! run — and then checks each placed pod against that final cluster. A solver that takes a
//! shortcut the checker does not share is caught here, which is why the two must stay apart.
//!
//! Soft constraints (preferred affinities, `ScheduleAnyway` spreads, `PreferNoSchedule`
//! taints) are never violations: kube-scheduler only scores them. Resources are checked
//! as Karpenter fits them, which is stricter than kube-scheduler: every resource the pods
//! of a node that receives a pod request, DaemonSets included, must fit its allocatable,
//! not only those the placed pods ask for.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::rc::Rc;

use kerf_model::pod::{AffinityTerm, InclusionPolicy, PodKey, WhenUnsatisfiable};
use kerf_model::resources::NODES;
use kerf_model::{
    Effect, InstanceType, Labels, NodePool, Pod, Quantity, Requirements, Resources, Taint, labels,
};

use crate::{Input, NewClaim, Plan};

/// Which rule a placement or claim breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    /// A pending pod is placed twice, placed and unschedulable, missing, or unknown; or a
    /// placement names a node that does not exist; or a claim carries no pods.
    Accounting,
    /// The pods on a node (DaemonSet pods included) request more of some resource than it
    /// has allocatable.
    Resources,
    /// The node does not satisfy the pod's required node affinity or nodeSelector.
    NodeAffinity,
    /// The node is outside the zone of a volume the pod mounts.
    VolumeZone,
    /// The node has a `NoSchedule`/`NoExecute` taint the pod does not tolerate (cordoned
    /// and not-ready nodes count as tainted, as the node lifecycle controller taints them).
    Taint,
    /// A `DoNotSchedule` topology spread constraint is broken.
    TopologySpread,
    /// A required pod affinity term has no matching pod in the node's domain.
    PodAffinity,
    /// A required pod anti-affinity term (the pod's own, or another pod's against it) is
    /// broken.
    PodAntiAffinity,
    /// Two pods on one node bind the same host port.
    HostPort,
    /// A claim names an unknown NodePool or instance type, or launches a type not among its
    /// options, or an option cannot hold the claim.
    InstanceType,
    /// The launched offering does not exist, is unavailable or is priced differently.
    Offering,
    /// A claim's labels disagree with its instance type, offering, NodePool or requirements.
    ClaimLabels,
    /// A NodePool's limits are exceeded by existing plus new capacity.
    Limits,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Accounting => "accounting",
            Rule::Resources => "resources",
            Rule::NodeAffinity => "node affinity",
            Rule::VolumeZone => "volume zone",
            Rule::Taint => "taint",
            Rule::TopologySpread => "topology spread",
            Rule::PodAffinity => "pod affinity",
            Rule::PodAntiAffinity => "pod anti-affinity",
            Rule::HostPort => "host port",
            Rule::InstanceType => "instance type",
            Rule::Offering => "offering",
            Rule::ClaimLabels => "claim labels",
            Rule::Limits => "nodepool limits",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One broken rule, naming the pod (when one pod is at fault) and the node or claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub rule: Rule,
    pub pod: Option<PodKey>,
    /// `node NAME`, `claim #I (nodepool P, TYPE in ZONE)` or `nodepool P`.
    pub node: Option<String>,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.rule)?;
        if let Some(pod) = &self.pod {
            write!(f, ": pod {pod}")?;
        }
        if let Some(node) = &self.node {
            let sep = if self.pod.is_some() { " on" } else { ":" };
            write!(f, "{sep} {node}")?;
        }
        write!(f, ": {}", self.detail)
    }
}

/// Every rule the plan breaks for this input; empty when kube-scheduler would accept every
/// placement and every claim is launchable as written.
pub fn validate(input: &Input, plan: &Plan) -> Vec<Violation> {
    let mut out = Vec::new();
    let sites = account(input, plan, &mut out);
    let cluster = Cluster::build(input, plan, &sites, &mut out);
    for (c, claim) in plan.new_claims.iter().enumerate() {
        cluster.check_claim(c, claim, &mut out);
    }
    cluster.check_limits(plan, &mut out);
    cluster.check_resources(&mut out);
    for v in 0..cluster.pods.len() {
        if cluster.pods[v].pending {
            cluster.check_pod(v, &mut out);
        }
    }
    out
}

/// Where a pending pod ends up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Site {
    Node(usize),
    Claim(usize),
}

/// Checks that every pending pod is placed exactly once or listed unschedulable, and
/// returns each pending pod's site.
fn account(input: &Input, plan: &Plan, out: &mut Vec<Violation>) -> Vec<Option<Site>> {
    let index: BTreeMap<&PodKey, usize> = input
        .pods
        .iter()
        .enumerate()
        .map(|(i, p)| (&p.key, i))
        .collect();
    let mut sites: Vec<Option<Site>> = vec![None; input.pods.len()];
    let mut unschedulable = vec![false; input.pods.len()];
    let mut placed = |key: &PodKey, site: Site, node: String, out: &mut Vec<Violation>| {
        let Some(&i) = index.get(key) else {
            out.push(violation(
                Rule::Accounting,
                Some(key),
                Some(node),
                "the plan places a pod that is not pending".into(),
            ));
            return;
        };
        if sites[i].is_some() {
            out.push(violation(
                Rule::Accounting,
                Some(key),
                Some(node),
                "the pod is placed more than once".into(),
            ));
            return;
        }
        sites[i] = Some(site);
    };
    for placement in &plan.existing {
        let node_name = format!("node {}", placement.node);
        let Some(n) = input.nodes.iter().position(|n| n.name == placement.node) else {
            out.push(violation(
                Rule::Accounting,
                None,
                Some(node_name),
                "the plan places pods on a node that does not exist".into(),
            ));
            continue;
        };
        for key in &placement.pods {
            placed(key, Site::Node(n), node_name.clone(), out);
        }
    }
    for (c, claim) in plan.new_claims.iter().enumerate() {
        if claim.pods.is_empty() {
            out.push(violation(
                Rule::Accounting,
                None,
                Some(claim_name(c, claim)),
                "the claim carries no pods".into(),
            ));
        }
        for key in &claim.pods {
            placed(key, Site::Claim(c), claim_name(c, claim), out);
        }
    }
    for u in &plan.unschedulable {
        let Some(&i) = index.get(&u.pod) else {
            out.push(violation(
                Rule::Accounting,
                Some(&u.pod),
                None,
                "listed unschedulable but not pending".into(),
            ));
            continue;
        };
        if unschedulable[i] {
            out.push(violation(
                Rule::Accounting,
                Some(&u.pod),
                None,
                "listed unschedulable more than once".into(),
            ));
        }
        unschedulable[i] = true;
        if sites[i].is_some() {
            out.push(violation(
                Rule::Accounting,
                Some(&u.pod),
                None,
                "both placed and listed unschedulable".into(),
            ));
        }
    }
    for (i, pod) in input.pods.iter().enumerate() {
        if sites[i].is_none() && !unschedulable[i] {
            out.push(violation(
                Rule::Accounting,
                Some(&pod.key),
                None,
                "neither placed nor listed unschedulable".into(),
            ));
        }
    }
    sites
}

fn violation(rule: Rule, pod: Option<&PodKey>, node: Option<String>, detail: String) -> Violation {
    Violation {
        rule,
        pod: pod.cloned(),
        node,
        detail,
    }
}

fn claim_name(c: usize, claim: &NewClaim) -> String {
    format!(
        "claim #{c} (nodepool {}, {} in {})",
        claim.nodepool, claim.launch.instance_type, claim.launch.zone
    )
}

/// A node of the final cluster.
struct VNode<'a> {
    name: String,
    labels: Labels,
    taints: &'a [Taint],
    /// Taints the node lifecycle controller puts on cordoned and not-ready nodes, and
    /// Karpenter on nodes it deletes; they keep pods off but may not be in the snapshot's
    /// taint list.
    condition_taints: Vec<Taint>,
    allocatable: Resources,
    pods: Vec<usize>,
}

/// A pod of the final cluster.
struct VPod<'a> {
    pod: &'a Pod,
    node: usize,
    /// Placed by the plan (rather than bound already, or a DaemonSet's pod).
    pending: bool,
}

struct Cluster<'a> {
    input: &'a Input,
    nodes: Vec<VNode<'a>>,
    pods: Vec<VPod<'a>>,
    /// Counts and pod lists per distinct constraint, built on first use: replicas share
    /// their constraints, so each is evaluated over the cluster once, not once per pod.
    /// Keys are the constraint's `Debug` rendering, which is exactly its content.
    spread_counts: RefCell<BTreeMap<String, Rc<BTreeMap<String, i32>>>>,
    affinity_index: RefCell<BTreeMap<String, Rc<AffinityIndex>>>,
    anti_index: RefCell<BTreeMap<String, Rc<DomainPods>>>,
}

/// Domain → pods there, in cluster order.
type DomainPods = BTreeMap<String, Vec<usize>>;

/// The pods matching every term of a required affinity, counted per domain of each key.
struct AffinityIndex {
    /// term key → domain → matching pods there.
    per_key: BTreeMap<String, BTreeMap<String, usize>>,
    /// Matching pods on a node that has at least one of the terms' keys.
    with_a_domain: usize,
}

impl<'a> Cluster<'a> {
    fn build(
        input: &'a Input,
        plan: &'a Plan,
        sites: &[Option<Site>],
        out: &mut Vec<Violation>,
    ) -> Cluster<'a> {
        let mut cluster = Cluster {
            input,
            nodes: Vec::new(),
            pods: Vec::new(),
            spread_counts: RefCell::default(),
            affinity_index: RefCell::default(),
            anti_index: RefCell::default(),
        };
        for node in &input.nodes {
            let mut condition_taints = Vec::new();
            if node.unschedulable {
                condition_taints.push(Taint::new(
                    "node.kubernetes.io/unschedulable",
                    "",
                    Effect::NoSchedule,
                ));
            }
            if !node.ready {
                condition_taints.push(Taint::new(
                    "node.kubernetes.io/not-ready",
                    "",
                    Effect::NoSchedule,
                ));
            }
            // Karpenter taints a node it deletes before it drains it.
            if node.deleting {
                condition_taints.push(Taint::new(
                    kerf_model::labels::TAINT_DISRUPTED,
                    "",
                    Effect::NoSchedule,
                ));
            }
            cluster.nodes.push(VNode {
                name: format!("node {}", node.name),
                labels: node.labels.clone(),
                taints: &node.taints,
                condition_taints,
                allocatable: node.allocatable.clone(),
                pods: Vec::new(),
            });
        }
        for pod in &input.bound_pods {
            if let Some(n) = pod
                .node_name
                .as_deref()
                .and_then(|name| input.nodes.iter().position(|n| n.name == name))
            {
                cluster.add(pod, n, false);
            }
        }
        // A DaemonSet puts a pod on every existing node it targets; where it has not yet,
        // its pod will still arrive and take its share.
        for (n, node) in input.nodes.iter().enumerate() {
            for ds in &input.daemonsets {
                let already = cluster.nodes[n].pods.iter().any(|&v| {
                    let p = cluster.pods[v].pod;
                    p.is_daemon() && p.owner == ds.owner
                });
                if !already && daemon_runs_on(ds, &node.labels, &node.taints) {
                    cluster.add(ds, n, false);
                }
            }
        }
        let first_claim = cluster.nodes.len();
        for (c, claim) in plan.new_claims.iter().enumerate() {
            let np = input.nodepools.iter().find(|np| np.name == claim.nodepool);
            let it = input
                .instance_types
                .iter()
                .find(|t| t.name == claim.launch.instance_type);
            let name = claim_name(c, claim);
            if np.is_none() {
                out.push(violation(
                    Rule::InstanceType,
                    None,
                    Some(name.clone()),
                    format!("nodepool {} does not exist", claim.nodepool),
                ));
            }
            if it.is_none() {
                out.push(violation(
                    Rule::InstanceType,
                    None,
                    Some(name.clone()),
                    format!(
                        "instance type {} is not offered",
                        claim.launch.instance_type
                    ),
                ));
            }
            let mut node_labels = claim.labels.clone();
            // Each claim is its own hostname domain; the name is unique and matches nothing
            // a pod could have asked for.
            node_labels.insert(
                labels::HOSTNAME.to_string(),
                format!("kerf-validate-claim-{c}"),
            );
            let taints: &[Taint] = np.map_or(&[], |np| &np.taints);
            let n = cluster.nodes.len();
            cluster.nodes.push(VNode {
                name,
                labels: node_labels,
                taints,
                condition_taints: Vec::new(),
                allocatable: it.map(InstanceType::allocatable).unwrap_or_default(),
                pods: Vec::new(),
            });
            for ds in &input.daemonsets {
                if daemon_runs_on(ds, &cluster.nodes[n].labels, taints) {
                    cluster.add(ds, n, false);
                }
            }
        }
        for (i, site) in sites.iter().enumerate() {
            match site {
                Some(Site::Node(n)) => cluster.add(&input.pods[i], *n, true),
                Some(Site::Claim(c)) => cluster.add(&input.pods[i], first_claim + c, true),
                None => {}
            }
        }
        cluster
    }

    fn add(&mut self, pod: &'a Pod, node: usize, pending: bool) {
        self.nodes[node].pods.push(self.pods.len());
        self.pods.push(VPod { pod, node, pending });
    }

    fn pending_on(&self, n: usize) -> Vec<String> {
        self.nodes[n]
            .pods
            .iter()
            .filter(|&&v| self.pods[v].pending)
            .map(|&v| self.pods[v].pod.key.to_string())
            .collect()
    }

    /// Requests on every node that received a pod (every new claim, and each existing node
    /// the plan adds to), against its allocatable, in every resource its pods request,
    /// DaemonSet pods included: a node its DaemonSets alone overcommit is no place for a
    /// pod, whatever the pod asks for (Karpenter's `resources.Fits`).
    fn check_resources(&self, out: &mut Vec<Violation>) {
        for (n, node) in self.nodes.iter().enumerate() {
            let pending = self.pending_on(n);
            if pending.is_empty() {
                continue;
            }
            let mut used = Resources::new();
            for &v in &node.pods {
                used.add(&self.pods[v].pod.requests);
            }
            for (name, q) in used.iter() {
                let have = node.allocatable.get(name);
                if q > have {
                    out.push(violation(
                        Rule::Resources,
                        None,
                        Some(node.name.clone()),
                        format!(
                            "{name} requested {} > allocatable {} (pending pods placed here: {})",
                            Resources::render(name, q),
                            Resources::render(name, have),
                            pending.join(", ")
                        ),
                    ));
                }
            }
        }
    }

    fn check_pod(&self, v: usize, out: &mut Vec<Violation>) {
        let vp = &self.pods[v];
        let pod = vp.pod;
        let node = &self.nodes[vp.node];
        let mut report = |rule: Rule, detail: String| {
            out.push(violation(
                rule,
                Some(&pod.key),
                Some(node.name.clone()),
                detail,
            ));
        };
        for t in node.taints.iter().chain(&node.condition_taints) {
            if t.effect != Effect::PreferNoSchedule
                && !pod.tolerations.iter().any(|tol| tol.tolerates(t))
            {
                report(Rule::Taint, format!("taint {t} is not tolerated"));
            }
        }
        if let Some(detail) = affinity_failure(pod, &node.labels) {
            report(Rule::NodeAffinity, detail);
        }
        if let Some(v) = pod.volume_zone_conflict(&node.labels) {
            report(
                Rule::VolumeZone,
                format!(
                    "claim {}'s volume needs {} {}, the node's is {:?}",
                    v.claim,
                    labels::ZONE,
                    v.zones,
                    node.labels.get(labels::ZONE)
                ),
            );
        }
        for &other in &node.pods {
            if other == v || (self.pods[other].pending && other < v) {
                continue;
            }
            let q = self.pods[other].pod;
            for hp in &pod.host_ports {
                if q.host_ports.iter().any(|h| h.conflicts(hp)) {
                    report(
                        Rule::HostPort,
                        format!(
                            "host port {}/{} is also bound by pod {}",
                            hp.port, hp.protocol, q.key
                        ),
                    );
                }
            }
        }
        for detail in self.spread_failures(v) {
            report(Rule::TopologySpread, detail);
        }
        if let Some(detail) = self.affinity_failure(v) {
            report(Rule::PodAffinity, detail);
        }
        for detail in self.anti_affinity_failures(v) {
            report(Rule::PodAntiAffinity, detail);
        }
    }

    fn term_matches(&self, term: &AffinityTerm, q: &Pod) -> bool {
        term.namespaces.contains(
            &q.key.namespace,
            self.input.namespaces.get(&q.key.namespace),
        ) && term.selector.matches(&q.labels)
    }

    fn domain(&self, v: usize, key: &str) -> Option<&str> {
        self.nodes[self.pods[v].node]
            .labels
            .get(key)
            .map(String::as_str)
    }

    /// `DoNotSchedule` spreads, as kube-scheduler's PodTopologySpread filter counts them:
    /// only nodes carrying every hard spread key of the pod, and passing its inclusion
    /// policies, are domains; the minimum is over those domains (zero when fewer than
    /// `minDomains` exist).
    fn spread_failures(&self, v: usize) -> Vec<String> {
        let pod = self.pods[v].pod;
        let n = self.pods[v].node;
        let hard: Vec<_> = pod
            .topology_spread
            .iter()
            .filter(|s| s.when_unsatisfiable == WhenUnsatisfiable::DoNotSchedule)
            .collect();
        let mut failures = Vec::new();
        for s in &hard {
            let key = s.topology_key.as_str();
            let Some(own_domain) = self.nodes[n].labels.get(key) else {
                failures.push(format!("the node lacks the spread key {key}"));
                continue;
            };
            let eligible = |node: &VNode| {
                hard.iter()
                    .all(|h| node.labels.contains_key(&h.topology_key))
                    && (s.node_affinity_policy == InclusionPolicy::Ignore
                        || pod.node_affinity.matches_labels(&node.labels))
                    && (s.node_taints_policy == InclusionPolicy::Ignore
                        || node.taints.iter().all(|t| {
                            t.effect == Effect::PreferNoSchedule
                                || pod.tolerations.iter().any(|tol| tol.tolerates(t))
                        }))
            };
            let counted =
                |q: &Pod| q.key.namespace == pod.key.namespace && s.selector.matches(&q.labels);
            // Everything `eligible` and `counted` read, so equal keys give equal counts.
            let memo_key = format!(
                "{:?}",
                (
                    s,
                    hard.iter().map(|h| &h.topology_key).collect::<Vec<_>>(),
                    &pod.node_affinity,
                    &pod.tolerations,
                    &pod.key.namespace
                )
            );
            let cached = self.spread_counts.borrow().get(&memo_key).cloned();
            let counts = cached.unwrap_or_else(|| {
                let mut counts: BTreeMap<String, i32> = BTreeMap::new();
                for node in self.nodes.iter().filter(|node| eligible(node)) {
                    let matching = node
                        .pods
                        .iter()
                        .filter(|&&q| counted(self.pods[q].pod))
                        .count() as i32;
                    *counts.entry(node.labels[key].clone()).or_default() += matching;
                }
                let counts = Rc::new(counts);
                self.spread_counts
                    .borrow_mut()
                    .insert(memo_key, Rc::clone(&counts));
                counts
            });
            let mut own = counts.get(own_domain.as_str()).copied().unwrap_or(0);
            if !eligible(&self.nodes[n]) && counted(pod) {
                own += 1;
            }
            let too_few = s
                .min_domains
                .is_some_and(|m| (counts.len() as i64) < i64::from(m));
            let min = if too_few {
                0
            } else {
                counts.values().copied().min().unwrap_or(0)
            };
            if own - min > s.max_skew {
                failures.push(format!(
                    "{key}={own_domain} has {own} matching pods, the least-loaded of {} domains {min}, skew {} > maxSkew {}",
                    counts.len(),
                    own - min,
                    s.max_skew
                ));
            }
        }
        failures
    }

    /// Required pod affinity, as kube-scheduler's InterPodAffinity filter: a pod counts
    /// only if it matches every term; each term needs one in the node's domain, unless no
    /// such pod exists anywhere and the pod matches all its own terms (the first of a
    /// group that is affine to itself).
    fn affinity_failure(&self, v: usize) -> Option<String> {
        let pod = self.pods[v].pod;
        let terms = &pod.affinity;
        if terms.is_empty() {
            return None;
        }
        let matches_all = |q: &Pod| terms.iter().all(|t| self.term_matches(t, q));
        let index = self.affinity_index(terms, matches_all);
        // The index counts every matching pod, this one included when it matches; only
        // *other* pods satisfy a term. Past the key check below, this pod has a domain
        // for every key, so it sits in each count it matches.
        let own = usize::from(matches_all(pod));
        let mut missing = None;
        for t in terms {
            let key = t.topology_key.as_str();
            let Some(d) = self.domain(v, key) else {
                return Some(format!("the node lacks the affinity key {key}"));
            };
            let here = index
                .per_key
                .get(key)
                .and_then(|m| m.get(d))
                .copied()
                .unwrap_or(0);
            if here.saturating_sub(own) == 0 {
                missing.get_or_insert_with(|| format!("no matching pod in {key}={d}"));
            }
        }
        let missing = missing?;
        let anywhere = index.with_a_domain.saturating_sub(own) > 0;
        if !anywhere && own == 1 {
            return None;
        }
        Some(missing)
    }

    fn affinity_index(
        &self,
        terms: &[AffinityTerm],
        matches_all: impl Fn(&Pod) -> bool,
    ) -> Rc<AffinityIndex> {
        let memo_key = format!("{terms:?}");
        if let Some(i) = self.affinity_index.borrow().get(&memo_key) {
            return Rc::clone(i);
        }
        let mut index = AffinityIndex {
            per_key: BTreeMap::new(),
            with_a_domain: 0,
        };
        for q in (0..self.pods.len()).filter(|&q| matches_all(self.pods[q].pod)) {
            let mut any = false;
            for t in terms {
                if let Some(d) = self.domain(q, &t.topology_key) {
                    any = true;
                    *index
                        .per_key
                        .entry(t.topology_key.clone())
                        .or_default()
                        .entry(d.to_string())
                        .or_default() += 1;
                }
            }
            // Terms sharing a key must count a pod once per key.
            index.with_a_domain += usize::from(any);
        }
        let index = Rc::new(index);
        self.affinity_index
            .borrow_mut()
            .insert(memo_key, Rc::clone(&index));
        index
    }

    /// Required anti-affinity both ways: the pod's own terms against every other pod, and
    /// the terms of pods that are not pending (bound pods, DaemonSet pods) against it.
    /// Pending pods' terms against this pod are reported from their side.
    fn anti_affinity_failures(&self, v: usize) -> Vec<String> {
        let pod = self.pods[v].pod;
        let mut failures = Vec::new();
        for t in &pod.anti_affinity {
            let key = t.topology_key.as_str();
            let Some(d) = self.domain(v, key) else {
                continue;
            };
            let index = self.anti_index(t);
            for &q in index.get(d).into_iter().flatten().filter(|&&q| q != v) {
                failures.push(format!(
                    "its anti-affinity on {key} matches pod {} in {key}={d}",
                    self.pods[q].pod.key
                ));
            }
        }
        for q in (0..self.pods.len()).filter(|&q| {
            q != v && !self.pods[q].pending && !self.pods[q].pod.anti_affinity.is_empty()
        }) {
            for t in &self.pods[q].pod.anti_affinity {
                let key = t.topology_key.as_str();
                if let Some(d) = self.domain(v, key)
                    && self.domain(q, key) == Some(d)
                    && self.term_matches(t, pod)
                {
                    failures.push(format!(
                        "pod {} in {key}={d} has anti-affinity on {key} against it",
                        self.pods[q].pod.key
                    ));
                }
            }
        }
        failures
    }

    /// Pods matching an anti-affinity term, per domain of its key, in cluster order.
    fn anti_index(&self, t: &AffinityTerm) -> Rc<DomainPods> {
        let memo_key = format!("{t:?}");
        if let Some(i) = self.anti_index.borrow().get(&memo_key) {
            return Rc::clone(i);
        }
        let mut index = DomainPods::new();
        for q in 0..self.pods.len() {
            if let Some(d) = self.domain(q, &t.topology_key)
                && self.term_matches(t, self.pods[q].pod)
            {
                index.entry(d.to_string()).or_default().push(q);
            }
        }
        let index = Rc::new(index);
        self.anti_index
            .borrow_mut()
            .insert(memo_key, Rc::clone(&index));
        index
    }

    fn check_claim(&self, c: usize, claim: &NewClaim, out: &mut Vec<Violation>) {
        let name = claim_name(c, claim);
        let mut report = |rule: Rule, detail: String| {
            out.push(violation(rule, None, Some(name.clone()), detail));
        };
        let Some(np) = self
            .input
            .nodepools
            .iter()
            .find(|np| np.name == claim.nodepool)
        else {
            return;
        };
        let Some(it) = self
            .input
            .instance_types
            .iter()
            .find(|t| t.name == claim.launch.instance_type)
        else {
            return;
        };
        if !claim.instance_type_options.contains(&it.name) {
            report(
                Rule::InstanceType,
                format!("launches {} which is not among its options", it.name),
            );
        }
        match it
            .offerings
            .iter()
            .find(|o| o.zone == claim.launch.zone && o.capacity_type == claim.launch.capacity_type)
        {
            None => report(
                Rule::Offering,
                format!(
                    "{} has no {} offering in {}",
                    it.name, claim.launch.capacity_type, claim.launch.zone
                ),
            ),
            Some(o) if !o.available => report(
                Rule::Offering,
                format!(
                    "{} {} in {} is unavailable",
                    it.name, claim.launch.capacity_type, claim.launch.zone
                ),
            ),
            Some(o) if o.price != claim.launch.price => report(
                Rule::Offering,
                format!(
                    "priced {} but the offering costs {}",
                    claim.launch.price, o.price
                ),
            ),
            Some(_) => {}
        }
        if np.taints != claim.taints {
            report(
                Rule::ClaimLabels,
                "the claim's taints differ from its NodePool's".into(),
            );
        }
        // The node's labels come from the instance type, the offering and the NodePool; a
        // claim that says otherwise would mislead every later decision about the node.
        let mut expected: Vec<(&str, &str)> = it
            .labels
            .iter()
            .chain(&np.labels)
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        expected.push((labels::NODEPOOL, &np.name));
        expected.push((labels::ZONE, &claim.launch.zone));
        expected.push((labels::CAPACITY_TYPE, &claim.launch.capacity_type));
        for (k, v) in expected {
            if claim.labels.get(k).map(String::as_str) != Some(v) {
                report(
                    Rule::ClaimLabels,
                    format!(
                        "label {k} is {:?}, the node will carry {v:?}",
                        claim.labels.get(k)
                    ),
                );
            }
        }
        for (what, reqs) in [
            ("its requirements", &claim.requirements),
            ("its NodePool's requirements", &np.requirements),
        ] {
            if let Some(detail) = requirements_failure(reqs, &claim.labels) {
                report(Rule::ClaimLabels, format!("{detail}, against {what}"));
            }
        }

        // Any option may be what the cloud launches, so every one must hold the claim.
        let node = &self.nodes[self.input.nodes.len() + c];
        let pending: Vec<&Pod> = node
            .pods
            .iter()
            .filter(|&&v| self.pods[v].pending)
            .map(|&v| self.pods[v].pod)
            .collect();
        for option in &claim.instance_type_options {
            let Some(t) = self.input.instance_types.iter().find(|t| &t.name == option) else {
                report(
                    Rule::InstanceType,
                    format!("option {option} is not offered"),
                );
                continue;
            };
            if let Some(detail) = self.option_failure(np, claim, node, t, &pending) {
                report(Rule::InstanceType, format!("option {option}: {detail}"));
            }
        }
    }

    /// Why launching type `t` for this claim would give a node that cannot run its pods.
    fn option_failure(
        &self,
        np: &NodePool,
        claim: &NewClaim,
        node: &VNode,
        t: &InstanceType,
        pending: &[&Pod],
    ) -> Option<String> {
        let mut node_labels = node.labels.clone();
        node_labels.extend(t.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        let offering = t.offerings.iter().any(|o| {
            o.available
                && [&claim.requirements, &np.requirements].iter().all(|r| {
                    r.get(labels::ZONE).is_none_or(|z| z.has(&o.zone))
                        && r.get(labels::CAPACITY_TYPE)
                            .is_none_or(|ct| ct.has(&o.capacity_type))
                })
        });
        if !offering {
            return Some("no available offering satisfies the requirements".into());
        }
        // Zone and capacity type vary by offering and were checked just above.
        let type_defined = |reqs: &Requirements| {
            let mut r = reqs.clone();
            r.remove(labels::ZONE);
            r.remove(labels::CAPACITY_TYPE);
            r
        };
        for reqs in [&claim.requirements, &np.requirements] {
            if let Some(detail) = requirements_failure(&type_defined(reqs), &node_labels) {
                return Some(detail);
            }
        }
        let mut used = Resources::new();
        for pod in pending {
            used.add(&pod.requests);
            if let Some(detail) = affinity_failure(pod, &node_labels) {
                return Some(format!("pod {}: {detail}", pod.key));
            }
        }
        for ds in &self.input.daemonsets {
            if daemon_runs_on(ds, &node_labels, &np.taints) {
                used.add(&ds.requests);
            }
        }
        let allocatable = t.allocatable();
        if let Some(name) = allocatable.first_exceeded(&used) {
            return Some(format!(
                "{name} requested {} > allocatable {}",
                Resources::render(name, used.get(name)),
                Resources::render(name, allocatable.get(name))
            ));
        }
        None
    }

    /// Existing plus new capacity of each NodePool with limits, with every claim at the
    /// largest option it carries: the cloud may start any of them, so the limits must hold
    /// whichever it picks.
    fn check_limits(&self, plan: &Plan, out: &mut Vec<Violation>) {
        let capacity_of = |name: &str| {
            self.input
                .instance_types
                .iter()
                .find(|t| t.name == name)
                .map(|t| t.capacity.clone())
                .unwrap_or_default()
        };
        for np in self
            .input
            .nodepools
            .iter()
            .filter(|np| !np.limits.is_empty())
        {
            let claims: Vec<&NewClaim> = plan
                .new_claims
                .iter()
                .filter(|c| c.nodepool == np.name)
                .collect();
            if claims.is_empty() {
                continue;
            }
            let mut used = Resources::new();
            for n in self
                .input
                .nodes
                .iter()
                .filter(|n| n.nodepool() == Some(np.name.as_str()))
            {
                used.add(&n.capacity);
                used.add(&one_node());
            }
            for c in &claims {
                let mut largest = capacity_of(&c.launch.instance_type);
                for option in &c.instance_type_options {
                    largest.max_with(&capacity_of(option));
                }
                used.add(&largest);
                used.add(&one_node());
            }
            if let Some((k, lim)) = np.limits.iter().find(|(k, lim)| used.get(k) > *lim) {
                out.push(violation(
                    Rule::Limits,
                    None,
                    Some(format!("nodepool {}", np.name)),
                    format!(
                        "{k} would reach {} over the limit {} with each claim at its largest option",
                        Resources::render(k, used.get(k)),
                        Resources::render(k, lim)
                    ),
                ));
            }
        }
    }
}

fn one_node() -> Resources {
    let mut r = Resources::new();
    r.set(NODES, Quantity::from_units(1));
    r
}

/// Whether a DaemonSet's pod would run on a node with these labels and taints.
///
/// The same rule as `Pod::daemon_runs_on`, deliberately not shared: that one stands on
/// `taints::first_untolerated`, which the solver decides with, so a slip there would move
/// the solver's DaemonSet overhead and the checker's alike and go unseen. Here the taint
/// rule is written out afresh (every taint tolerated unless it is `PreferNoSchedule`), as
/// everywhere else in this checker.
fn daemon_runs_on(ds: &Pod, node_labels: &Labels, taints: &[Taint]) -> bool {
    taints.iter().all(|t| {
        t.effect == Effect::PreferNoSchedule || ds.tolerations.iter().any(|tol| tol.tolerates(t))
    }) && ds.node_affinity.matches_labels(node_labels)
}

/// Why a node with these labels fails the pod's required node affinity (nodeSelector is
/// already merged into each term): the first failing key of each term.
fn affinity_failure(pod: &Pod, node_labels: &Labels) -> Option<String> {
    let terms = &pod.node_affinity.required;
    if terms.is_empty() || terms.iter().any(|t| t.matches_labels(node_labels)) {
        return None;
    }
    let keys: BTreeSet<String> = terms
        .iter()
        .filter_map(|t| t.first_unmatched_label(node_labels))
        .map(|k| format!("{k}={:?}", node_labels.get(k)))
        .collect();
    Some(format!(
        "no required node-affinity term matches (failing: {})",
        keys.into_iter().collect::<Vec<_>>().join(", ")
    ))
}

/// Why a node with these labels fails requirements a claim was built from. A key the node
/// does not carry fails only when the requirement needs a value there: an instance-defined
/// key every node has, or a key pinned to one value (which the node should have been
/// labelled with).
fn requirements_failure(reqs: &Requirements, node_labels: &Labels) -> Option<String> {
    for (k, r) in reqs.iter() {
        let ok = match node_labels.get(k) {
            Some(v) => r.has(v),
            None if labels::is_instance_defined(k) => r.allows_absent(),
            None => r.single_value().is_none(),
        };
        if !ok {
            return Some(format!(
                "label {k}={:?} does not satisfy {k} {r}",
                node_labels.get(k)
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use kerf_model::pod::{HostPort, NamespaceScope, TopologySpread};
    use kerf_model::{Effect, LabelSelector, Node, Offering, Toleration, TolerationOperator};

    use super::*;
    use crate::{ExistingPlacement, Launch, Unschedulable};

    fn small_type() -> InstanceType {
        let mut l = Labels::new();
        l.insert(labels::INSTANCE_TYPE.into(), "small".into());
        l.insert(labels::ARCH.into(), "amd64".into());
        InstanceType {
            name: "small".into(),
            labels: l,
            capacity: Resources::parse([("cpu", "2"), ("memory", "4Gi"), ("pods", "10")]).unwrap(),
            overhead: Resources::new(),
            offerings: ["a", "b"]
                .iter()
                .map(|z| Offering {
                    zone: (*z).into(),
                    capacity_type: "on-demand".into(),
                    price: 0.1,
                    price_is_estimate: false,
                    available: true,
                })
                .collect(),
        }
    }

    fn pod(name: &str, cpu: &str) -> Pod {
        let mut p = Pod::new(
            "default",
            name,
            Resources::parse([("cpu", cpu), ("memory", "1Gi"), ("pods", "1")]).unwrap(),
        );
        p.labels.insert("app".into(), "web".into());
        p
    }

    fn node(name: &str, zone: &str) -> Node {
        let mut l = small_type().labels;
        l.insert(labels::ZONE.into(), zone.into());
        Node::new(name, l, small_type().allocatable())
    }

    fn claim(pods: &[&Pod], zone: &str) -> NewClaim {
        let it = small_type();
        let mut l = it.labels.clone();
        l.insert(labels::NODEPOOL.into(), "default".into());
        l.insert(labels::ZONE.into(), zone.into());
        l.insert(labels::CAPACITY_TYPE.into(), "on-demand".into());
        NewClaim {
            nodepool: "default".into(),
            launch: Launch {
                instance_type: "small".into(),
                zone: zone.into(),
                capacity_type: "on-demand".into(),
                price: 0.1,
                price_is_estimate: false,
            },
            instance_type_options: vec!["small".into()],
            requirements: Requirements::new(),
            labels: l,
            taints: Vec::new(),
            pods: pods.iter().map(|p| p.key.clone()).collect(),
            requests: Resources::new(),
        }
    }

    fn input(pods: Vec<Pod>) -> Input {
        Input {
            pods,
            nodepools: vec![NodePool::new("default")],
            instance_types: vec![small_type()],
            ..Input::default()
        }
    }

    fn rules(violations: &[Violation]) -> Vec<Rule> {
        violations.iter().map(|v| v.rule).collect()
    }

    #[test]
    fn a_valid_plan_passes() {
        let (a, b) = (pod("a", "1"), pod("b", "500m"));
        let plan = Plan {
            new_claims: vec![claim(&[&a, &b], "a")],
            ..Plan::default()
        };
        assert_eq!(validate(&input(vec![a, b]), &plan), []);
    }

    #[test]
    fn catches_an_overcommitted_claim_and_its_options() {
        let (a, b) = (pod("a", "1500m"), pod("b", "1"));
        let plan = Plan {
            new_claims: vec![claim(&[&a, &b], "a")],
            ..Plan::default()
        };
        let v = validate(&input(vec![a, b]), &plan);
        assert_eq!(rules(&v), [Rule::InstanceType, Rule::Resources], "{v:?}");
        assert_eq!(
            v[1].to_string(),
            "resources: claim #0 (nodepool default, small in a): cpu requested 2500m > allocatable 2 (pending pods placed here: default/a, default/b)"
        );
    }

    #[test]
    fn catches_an_overcommitted_existing_node_with_bound_and_daemon_pods() {
        let a = pod("a", "1");
        let mut bound = pod("bound", "500m");
        bound.node_name = Some("n1".into());
        let mut ds = pod("ds", "600m");
        ds.owner = Some(kerf_model::pod::Owner {
            kind: "DaemonSet".into(),
            name: "agent".into(),
        });
        let mut input = input(vec![a.clone()]);
        input.nodes = vec![node("n1", "a")];
        input.bound_pods = vec![bound];
        input.daemonsets = vec![ds];
        let plan = Plan {
            existing: vec![ExistingPlacement {
                node: "n1".into(),
                pods: vec![a.key.clone()],
            }],
            ..Plan::default()
        };
        let v = validate(&input, &plan);
        assert_eq!(rules(&v), [Rule::Resources], "{v:?}");
        // Without the DaemonSet's pod it fits.
        input.daemonsets.clear();
        assert_eq!(validate(&input, &plan), []);
    }

    #[test]
    fn catches_daemonsets_that_overcommit_a_resource_the_pods_do_not_request() {
        // The pod asks for no memory; the DaemonSet asks more than the node has.
        let a = Pod::new(
            "default",
            "a",
            Resources::parse([("cpu", "1"), ("pods", "1")]).unwrap(),
        );
        let mut ds = Pod::new(
            "kube-system",
            "agent",
            Resources::parse([("memory", "200Gi"), ("pods", "1")]).unwrap(),
        );
        ds.owner = Some(kerf_model::pod::Owner {
            kind: "DaemonSet".into(),
            name: "agent".into(),
        });
        let mut input = input(vec![a.clone()]);
        input.daemonsets = vec![ds];
        let plan = Plan {
            new_claims: vec![claim(&[&a], "a")],
            ..Plan::default()
        };
        let v = validate(&input, &plan);
        assert_eq!(rules(&v), [Rule::InstanceType, Rule::Resources], "{v:?}");
        assert!(
            v[1].detail.starts_with("memory requested 200Gi"),
            "{}",
            v[1]
        );
        // The same on an existing node the DaemonSet would run on.
        input.nodes = vec![node("n1", "a")];
        let plan = Plan {
            existing: vec![ExistingPlacement {
                node: "n1".into(),
                pods: vec![a.key.clone()],
            }],
            ..Plan::default()
        };
        let v = validate(&input, &plan);
        assert_eq!(rules(&v), [Rule::Resources], "{v:?}");
    }

    #[test]
    fn catches_an_untolerated_taint_but_not_a_startup_taint() {
        let a = pod("a", "1");
        let mut input = input(vec![a.clone()]);
        input.nodepools[0].startup_taints = vec![Taint::new("init", "", Effect::NoSchedule)];
        input.nodepools[0].taints = vec![Taint::new("gpu", "true", Effect::NoSchedule)];
        let mut c = claim(&[&a], "a");
        c.taints = input.nodepools[0].taints.clone();
        let plan = Plan {
            new_claims: vec![c],
            ..Plan::default()
        };
        let v = validate(&input, &plan);
        assert_eq!(rules(&v), [Rule::Taint], "{v:?}");
        assert_eq!(
            v[0].to_string(),
            "taint: pod default/a on claim #0 (nodepool default, small in a): taint gpu=true:NoSchedule is not tolerated"
        );
        input.pods[0].tolerations.push(Toleration {
            key: "gpu".into(),
            operator: TolerationOperator::Exists,
            value: String::new(),
            effect: None,
        });
        assert_eq!(validate(&input, &plan), []);
    }

    fn zone_spread(max_skew: i32) -> TopologySpread {
        let mut sel = Labels::new();
        sel.insert("app".into(), "web".into());
        TopologySpread {
            max_skew,
            topology_key: labels::ZONE.into(),
            when_unsatisfiable: WhenUnsatisfiable::DoNotSchedule,
            selector: LabelSelector::from_match_labels(&sel),
            min_domains: None,
            node_affinity_policy: InclusionPolicy::Honor,
            node_taints_policy: InclusionPolicy::Ignore,
        }
    }

    #[test]
    fn catches_a_broken_zone_spread() {
        // An existing node in zone b with no web pods makes b a domain with zero.
        let pods: Vec<Pod> = ["a", "b"]
            .iter()
            .map(|n| {
                let mut p = pod(n, "100m");
                p.topology_spread.push(zone_spread(1));
                p
            })
            .collect();
        let mut input = input(pods.clone());
        input.nodes = vec![node("empty-b", "b")];
        let plan = Plan {
            new_claims: vec![claim(&[&pods[0], &pods[1]], "a")],
            ..Plan::default()
        };
        let v = validate(&input, &plan);
        assert_eq!(
            rules(&v),
            [Rule::TopologySpread, Rule::TopologySpread],
            "{v:?}"
        );
        assert!(v[0].to_string().contains("skew 2 > maxSkew 1"), "{}", v[0]);
        // Spread over both zones, it holds.
        let plan = Plan {
            new_claims: vec![claim(&[&pods[0]], "a")],
            existing: vec![ExistingPlacement {
                node: "empty-b".into(),
                pods: vec![pods[1].key.clone()],
            }],
            ..Plan::default()
        };
        assert_eq!(validate(&input, &plan), []);
        // With maxSkew 2 both may share a zone.
        let mut input = input.clone();
        for p in &mut input.pods {
            p.topology_spread = vec![zone_spread(2)];
        }
        let plan = Plan {
            new_claims: vec![claim(&[&pods[0], &pods[1]], "a")],
            ..Plan::default()
        };
        assert_eq!(validate(&input, &plan), []);
    }

    #[test]
    fn a_volume_confines_the_pod_without_shrinking_its_spread_domains() {
        // One web pod bound in each of zones a and b; the pending one mounts a volume in
        // a. kube-scheduler counts spread domains from node affinity, not volumes: two
        // domains, minDomains 2 met, a would have 2 against b's 1, skew 1.
        let mut spread = zone_spread(1);
        spread.min_domains = Some(2);
        let mut p = pod("p", "100m");
        p.topology_spread.push(spread);
        p.volume_zones.push(kerf_model::pod::VolumeZone {
            claim: "data-p".into(),
            zones: kerf_model::Requirement::single("a"),
        });
        let mut input = input(vec![p.clone()]);
        input.nodes = vec![node("na", "a"), node("nb", "b")];
        for (i, n) in ["na", "nb"].iter().enumerate() {
            let mut b = pod(&format!("bound-{i}"), "100m");
            b.node_name = Some(n.to_string());
            input.bound_pods.push(b);
        }
        let on = |node: &str| Plan {
            existing: vec![ExistingPlacement {
                node: node.into(),
                pods: vec![p.key.clone()],
            }],
            ..Plan::default()
        };
        assert_eq!(validate(&input, &on("na")), []);
        // In b it is outside its volume's zone.
        let v = validate(&input, &on("nb"));
        assert_eq!(rules(&v), [Rule::VolumeZone], "{v:?}");
        assert_eq!(
            v[0].to_string(),
            "volume zone: pod default/p on node nb: claim data-p's volume needs topology.kubernetes.io/zone In [a], the node's is Some(\"b\")"
        );
    }

    fn hostname_anti_affinity() -> AffinityTerm {
        let mut sel = Labels::new();
        sel.insert("app".into(), "web".into());
        AffinityTerm {
            selector: LabelSelector::from_match_labels(&sel),
            namespaces: NamespaceScope::own("default"),
            topology_key: labels::HOSTNAME.into(),
        }
    }

    #[test]
    fn catches_an_anti_affine_pair_together_either_way() {
        let mut a = pod("a", "100m");
        a.anti_affinity.push(hostname_anti_affinity());
        let b = pod("b", "100m");
        let plan = Plan {
            new_claims: vec![claim(&[&a, &b], "a")],
            ..Plan::default()
        };
        let v = validate(&input(vec![a.clone(), b.clone()]), &plan);
        assert_eq!(rules(&v), [Rule::PodAntiAffinity], "{v:?}");
        // A bound pod's anti-affinity keeps a pending pod it matches away.
        let mut bound = a.clone();
        bound.key.name = "bound".into();
        bound.node_name = Some("n1".into());
        let mut input = input(vec![b.clone()]);
        input.nodes = vec![node("n1", "a")];
        input.bound_pods = vec![bound];
        let plan = Plan {
            existing: vec![ExistingPlacement {
                node: "n1".into(),
                pods: vec![b.key.clone()],
            }],
            ..Plan::default()
        };
        let v = validate(&input, &plan);
        assert_eq!(rules(&v), [Rule::PodAntiAffinity], "{v:?}");
        // Apart, they are fine.
        let plan = Plan {
            new_claims: vec![claim(&[&a], "a"), claim(&[&b], "a")],
            ..Plan::default()
        };
        assert_eq!(validate(&super::tests::input(vec![a, b]), &plan), []);
    }

    #[test]
    fn catches_pod_affinity_and_host_ports() {
        let mut a = pod("a", "100m");
        a.affinity.push(AffinityTerm {
            topology_key: labels::ZONE.into(),
            ..hostname_anti_affinity()
        });
        let mut b = a.clone();
        b.key.name = "b".into();
        let port = HostPort {
            port: 8080,
            protocol: "TCP".into(),
            host_ip: String::new(),
        };
        a.host_ports.push(port.clone());
        b.host_ports.push(port);
        // Each is affine to the other, but they sit in different zones.
        let plan = Plan {
            new_claims: vec![claim(&[&a], "a"), claim(&[&b], "b")],
            ..Plan::default()
        };
        let v = validate(&input(vec![a.clone(), b.clone()]), &plan);
        assert_eq!(rules(&v), [Rule::PodAffinity, Rule::PodAffinity], "{v:?}");
        // Together on one node they satisfy affinity but clash on the port.
        let plan = Plan {
            new_claims: vec![claim(&[&a, &b], "a")],
            ..Plan::default()
        };
        let v = validate(&input(vec![a.clone(), b.clone()]), &plan);
        assert_eq!(rules(&v), [Rule::HostPort], "{v:?}");
        // Alone, the first of a self-affine group is fine.
        let plan = Plan {
            new_claims: vec![claim(&[&a], "a")],
            ..Plan::default()
        };
        assert_eq!(validate(&input(vec![a]), &plan), []);
    }

    #[test]
    fn catches_accounting_offering_and_limit_mistakes() {
        let (a, b) = (pod("a", "1"), pod("b", "1"));
        let mut input = input(vec![a.clone(), b.clone()]);
        input.nodepools[0].limits = kerf_model::Limits::parse([("cpu", "3")]).unwrap();
        input.instance_types[0].offerings[1].available = false;
        let plan = Plan {
            new_claims: vec![claim(&[&a], "a"), claim(&[&a], "b")],
            unschedulable: vec![Unschedulable {
                pod: a.key.clone(),
                reason: "x".into(),
            }],
            ..Plan::default()
        };
        let v = validate(&input, &plan);
        assert_eq!(
            rules(&v),
            [
                Rule::Accounting, // a placed twice
                Rule::Accounting, // a both placed and unschedulable
                Rule::Accounting, // b missing
                Rule::Offering,
                Rule::Limits,
            ],
            "{v:#?}"
        );
    }

    #[test]
    fn catches_a_claim_in_a_pool_whose_limit_is_zero() {
        let a = pod("a", "1");
        let mut input = input(vec![a.clone()]);
        let plan = Plan {
            new_claims: vec![claim(&[&a], "a")],
            ..Plan::default()
        };
        assert_eq!(validate(&input, &plan), []);
        for zero in ["cpu", "nodes"] {
            input.nodepools[0].limits = kerf_model::Limits::parse([(zero, "0")]).unwrap();
            let v = validate(&input, &plan);
            assert_eq!(rules(&v), [Rule::Limits], "{zero}: {v:?}");
            assert!(v[0].detail.contains("over the limit 0"), "{}", v[0]);
        }
    }
}
