//! The provisioning loop: pods in Karpenter's order, each onto the first existing node,
//! open claim or new claim that takes it, relaxing preferences only when nothing does.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use kerf_model::labels;
use kerf_model::pod::HostPort;
use kerf_model::taints::{first_untolerated, untolerated_soft};
use kerf_model::{InstanceType, Node, Requirement, Requirements, Resources};

use crate::claim::{ClaimState, Pool, min_values_met};
use crate::dense::{Bits, Dense, ResIndex};
use crate::explain;
use crate::topology::{GroupKind, PodGroups, Topology};
use crate::{
    Config, ExistingPlacement, Input, Launch, MinValuesPolicy, NewClaim, Plan, Unschedulable,
};

/// Decides where every pending pod goes. See the crate docs.
pub fn solve(input: &Input, config: &Config) -> Plan {
    let mut solver = Solver::new(input, config);
    solver.run();
    solver.split_claims();
    solver.into_plan()
}

mod efficiency;
mod memo;
mod relax;
mod setup;
mod split;

use memo::{Catalog, Memos};
use relax::{Effective, GroupUse, Relax, RelaxKey};

/// Why a node or claim refuses a pod.
struct Reject {
    /// Nothing later in this solve can change the answer for a pod of the same class at
    /// the same relaxation level: nodes and claims only fill up and narrow, and counts
    /// only grow.
    permanent: bool,
    /// Rendered only when asked for: scans discard most refusals.
    reason: String,
}

impl Reject {
    fn new(permanent: bool, why: bool, reason: impl FnOnce() -> String) -> Reject {
        Reject {
            permanent,
            reason: if why { reason() } else { String::new() },
        }
    }
}

/// Where a pod would go.
enum Target {
    Node(usize),
    Claim(usize, ClaimFit),
    NewClaim(Box<ClaimState>, ClaimFit),
}

/// The result of fitting a pod into a claim.
struct ClaimFit {
    reqs: Requirements,
    options: Bits,
    /// Where the cheapest option sits in the ranking for `reqs` (see `efficiency`).
    cheapest_rank: usize,
    /// The claim would launch the same type with the pod as without it.
    free: bool,
    max_avail: Dense,
}

struct NodeState {
    remaining: Dense,
    host_ports: Vec<HostPort>,
    usable: bool,
    placed: Vec<usize>,
}

/// What one solve knows from its input once set up; nothing changes it afterwards.
struct Facts<'a> {
    input: &'a Input,
    config: &'a Config,
    res: ResIndex,
    /// Each pending pod's requests as a dense vector.
    pod_req: Vec<Dense>,
    /// Per pending pod: its class, shared by pods with identical constraints and requests.
    pod_class: Vec<usize>,
    /// Per pending pod: the topology groups it owns, is counted in and must avoid.
    pod_groups: Vec<PodGroups>,
    /// Preferred node-affinity terms per pod, heaviest first.
    node_preferences: Vec<Vec<Requirements>>,
}

/// One solve: the facts it reads, and what placing pods changes.
struct Solver<'a> {
    facts: Facts<'a>,
    memos: Memos,
    /// Only each pool's `remaining_limits` changes, as claims reserve against it.
    pools: Vec<Pool>,
    /// Only the counts change, as pods are placed.
    topology: Topology,
    nodes: Vec<NodeState>,
    claims: Vec<ClaimState>,
    /// (class, relaxation level) → what scans of nodes and of claims learned.
    scans: BTreeMap<(usize, RelaxKey), (Scan, Scan)>,
    unschedulable: Vec<(usize, String)>,
}

/// Keys a claim may take from a pod's requirements: those its NodePool defines, and the
/// ones an instance type or offering defines (never the hostname: a claim has none yet).
fn open_key(key: &str) -> bool {
    key != labels::HOSTNAME && labels::is_instance_defined(key)
}

impl Solver<'_> {
    /// The pools' types through the memos: what fit checks, efficiency and rendering ask.
    fn catalog(&self) -> Catalog<'_> {
        Catalog {
            memos: &self.memos,
            pools: &self.pools,
            types: &self.facts.input.instance_types,
            nodepools: &self.facts.input.nodepools,
        }
    }

    fn run(&mut self) {
        let input = self.facts.input;
        // Karpenter's order: largest CPU, then memory, first; input order breaks ties.
        let mut keyed: Vec<(
            std::cmp::Reverse<(kerf_model::Quantity, kerf_model::Quantity)>,
            usize,
        )> = input
            .pods
            .iter()
            .enumerate()
            .map(|(i, pod)| {
                let r = &pod.requests;
                let size = (
                    r.get(kerf_model::resources::CPU),
                    r.get(kerf_model::resources::MEMORY),
                );
                (std::cmp::Reverse(size), i)
            })
            .collect();
        keyed.sort_unstable();
        let mut queue: Vec<usize> = keyed.into_iter().map(|(_, i)| i).collect();
        // Pods that fail are retried while others still succeed: a pod whose affinity
        // target comes later in the order gets another chance once it is placed.
        loop {
            let mut failed = Vec::new();
            let mut progress = false;
            for &p in &queue {
                match self.place(p) {
                    Ok(()) => progress = true,
                    Err(reason) => failed.push((p, reason)),
                }
            }
            if failed.is_empty() || !progress {
                self.unschedulable = failed;
                break;
            }
            queue = failed.into_iter().map(|(p, _)| p).collect();
        }
        self.unschedulable.sort_by_key(|(p, _)| *p);
    }

    /// Places a pod at the least relaxed level that works, or explains why none does.
    fn place(&mut self, p: usize) -> Result<(), String> {
        let pod = &self.facts.input.pods[p];
        let mut relax = Relax::initial(
            pod,
            &self.facts.pod_groups[p],
            self.facts.config.preference_policy,
        );
        loop {
            let eff = relax.effective(
                pod,
                &self.facts.pod_groups[p],
                &self.facts.node_preferences[p],
                &self.topology,
            );
            match self.find_target(p, relax, &eff) {
                Ok(target) => {
                    self.commit(p, target);
                    return Ok(());
                }
                Err(reason) => match relax.next(pod) {
                    Some(r) => relax = r,
                    None => return Err(reason),
                },
            }
        }
    }

    /// Whether the pod may go into `domain` (`None`: the node lacks the key) for `key`.
    fn check_domain(
        &self,
        p: usize,
        eff: &Effective,
        key: &str,
        domain: Option<&str>,
        why: bool,
    ) -> Result<(), Reject> {
        let pod = &self.facts.input.pods[p];
        let new_nodes_possible = !self.pools.is_empty();
        for &(gi, usage) in &eff.groups {
            let g = &self.topology.groups[gi];
            if g.spec.key != key {
                continue;
            }
            match (usage, &g.spec.kind) {
                (GroupUse::Spread, GroupKind::Spread { max_skew, .. }) => {
                    let Some(d) = domain else {
                        return Err(Reject::new(true, why, || {
                            format!(
                                "topology spread needs label {key}, which the node would not have"
                            )
                        }));
                    };
                    let min = g.min_count(new_nodes_possible);
                    // The pod counts itself only if the selector matches it.
                    let own = i32::from(self.facts.pod_groups[p].selected_by.contains(&gi));
                    let after = g.count(d) + own;
                    if after - min > *max_skew {
                        // Counts only grow; with new nodes possible a hostname group's
                        // baseline stays 0, so this domain never takes the pod again.
                        let permanent = key == labels::HOSTNAME && new_nodes_possible;
                        return Err(Reject::new(permanent, why, || {
                            format!(
                                "topology spread on {key} (maxSkew {max_skew}) would be violated: {d} would have {after} matching pods, the least-loaded domain {min}"
                            )
                        }));
                    }
                }
                (GroupUse::Affinity, _) => {
                    let Some(d) = domain else {
                        return Err(Reject::new(true, why, || {
                            format!("pod affinity needs label {key}, which the node would not have")
                        }));
                    };
                    if g.total() == 0 {
                        let ns_labels = self.facts.input.namespaces.get(&pod.key.namespace);
                        if !g.selects(&pod.key.namespace, &pod.labels, ns_labels) {
                            return Err(Reject::new(false, why, || {
                                format!(
                                    "pod affinity on {key}: no pod matches its selector anywhere"
                                )
                            }));
                        }
                    } else if g.count(d) == 0 {
                        return Err(Reject::new(false, why, || {
                            if d.starts_with("<claim-") {
                                format!(
                                    "pod affinity on {key}: a new node would run no matching pod"
                                )
                            } else {
                                format!("pod affinity on {key}: no matching pod in {d}")
                            }
                        }));
                    }
                }
                (GroupUse::AntiAffinity, _) => {
                    if let Some(d) = domain
                        && g.count(d) > 0
                    {
                        return Err(Reject::new(true, why, || {
                            format!("pod anti-affinity on {key}: {d} already runs a matching pod")
                        }));
                    }
                }
                _ => {}
            }
        }
        for &gi in &self.facts.pod_groups[p].avoided_by {
            let g = &self.topology.groups[gi];
            if g.spec.key == key
                && let Some(d) = domain
                && g.owners_in(d) > 0
            {
                return Err(Reject::new(true, why, || {
                    format!(
                        "a pod in {d} has required anti-affinity on {key} against this pod's labels"
                    )
                }));
            }
        }
        Ok(())
    }

    /// The first existing node, then the first open claim, that takes the pod, else a
    /// new claim from the first NodePool (by weight) that can make one.
    ///
    /// Targets that refused a pod of the same class (identical constraints and requests)
    /// for good are skipped on later attempts (see `Scan`). This keeps the scan
    /// near-constant per pod instead of linear in the claims opened.
    fn find_target(&mut self, p: usize, relax: Relax, eff: &Effective) -> Result<Target, String> {
        let class = self.facts.pod_class[p];
        let key = (class, relax.key());
        let (mut node_scan, mut claim_scan) = self.scans.remove(&key).unwrap_or_default();
        let node = node_scan.first_taker(self.nodes.len(), |i| {
            self.node_fits(p, eff, i).map(|()| Target::Node(i))
        });
        // Among the first few open claims the class has not ruled out, one with room in
        // the type it would launch anyway comes first; only then the first claim that
        // takes the pod at all, growing into a dearer type if it must. The look-ahead is
        // bounded so that a pod no claim takes for free costs no more than first fit.
        let found = node
            .or_else(|| {
                claim_scan
                    .alive
                    .iter()
                    .take(FREE_RIDE_LOOKAHEAD)
                    .find_map(|&c| {
                        self.claim_fit(p, eff, &self.claims[c], false)
                            .ok()
                            .filter(|fit| fit.free)
                            .map(|fit| Target::Claim(c, fit))
                    })
            })
            .or_else(|| {
                claim_scan.first_taker(self.claims.len(), |c| {
                    self.claim_fit(p, eff, &self.claims[c], false)
                        .map(|fit| Target::Claim(c, fit))
                })
            });
        self.scans.insert(key, (node_scan, claim_scan));
        if let Some(t) = found {
            return Ok(t);
        }
        let mut reasons = Vec::new();
        for (pi, pool) in self.pools.iter().enumerate() {
            if let Some(limits) = &pool.remaining_limits
                && limits.get(kerf_model::resources::NODES) < kerf_model::Quantity::from_units(1)
                && self.facts.input.nodepools[pool.nodepool]
                    .limits
                    .contains(kerf_model::resources::NODES)
            {
                reasons.push((pool.nodepool, "limit on nodes reached".to_string()));
                continue;
            }
            if pool.types.is_empty() && !pool.daemon_misfits.is_empty() {
                reasons.push((
                    pool.nodepool,
                    explain::no_type_holds_daemons(&self.facts.input.instance_types, pool),
                ));
                continue;
            }
            let claim = ClaimState {
                pool: pi,
                reqs: pool.template.clone(),
                options: Bits::full(pool.types.len()),
                requests: self.facts.res.dense(&Resources::new()),
                host_ports: Vec::new(),
                pods: Vec::new(),
                reservation: Resources::new(),
                hostname: format!("<claim-{}>", self.claims.len()),
                cheapest_rank: 0,
                max_avail: pool.max_avail.clone(),
            };
            match self.claim_fit(p, eff, &claim, true) {
                Ok(fit) => return Ok(Target::NewClaim(Box::new(claim), fit)),
                Err(r) => reasons.push((pool.nodepool, r.reason)),
            }
        }
        // Each node's refusal is worked out only for the reason that is shown: the last
        // relaxation level's (earlier levels' reasons are dropped when the pod relaxes).
        let shown = relax.next(&self.facts.input.pods[p]).is_none();
        let refusals = match self.facts.config.node_reasons {
            crate::NodeReasons::Each if shown => explain::Nodes::Each(
                (0..self.nodes.len())
                    .map(|i| self.node_refusal(p, eff, i))
                    .collect(),
            ),
            _ => explain::Nodes::Count(self.nodes.len()),
        };
        Err(explain::unschedulable(
            self.facts.input,
            &reasons,
            &refusals,
        ))
    }

    /// Why existing node `i` does not take the pod, for a person: the first check that
    /// fails, in `node_fits`' order.
    fn node_refusal(&self, p: usize, eff: &Effective, i: usize) -> explain::Refusal {
        let pod = &self.facts.input.pods[p];
        let node: &Node = &self.facts.input.nodes[i];
        let state = &self.nodes[i];
        let refusal = |kind: String, detail: Option<String>| explain::Refusal {
            node: node.name.clone(),
            kind,
            detail,
        };
        let plain = |kind: &str| refusal(kind.to_string(), None);
        if node.deleting || node.taints.iter().any(|t| t.key == labels::TAINT_DISRUPTED) {
            return plain("being deleted");
        }
        if node.unschedulable {
            return plain("cordoned");
        }
        if !node.ready {
            return plain("not ready");
        }
        if let Some(t) = first_untolerated(&node.taints, &pod.tolerations) {
            return refusal(format!("taint {t} not tolerated"), None);
        }
        if eff.avoid_soft_taints && untolerated_soft(&node.taints, &pod.tolerations) > 0 {
            return plain("a PreferNoSchedule taint not tolerated");
        }
        if !eff.terms.iter().any(|t| t.matches_labels(&node.labels)) {
            if pod.node_affinity.matches_labels(&node.labels)
                && let Some(v) = pod.volume_zone_conflict(&node.labels)
            {
                return refusal(
                    "outside the zone of a volume it mounts".to_string(),
                    Some(format!(
                        "claim {} needs {} {}, the node is in {}",
                        v.claim,
                        labels::ZONE,
                        v.zones,
                        node.labels
                            .get(labels::ZONE)
                            .map_or("no zone", String::as_str)
                    )),
                );
            }
            return plain("labels do not match the pod's node selector or affinity");
        }
        if !state.remaining.fits(&self.facts.pod_req[p]) {
            let free = self.facts.res.resources(&state.remaining);
            if let Some((k, need)) = pod.requests.iter().find(|&(k, q)| free.get(k) < q) {
                let left = free.get(k).max(kerf_model::Quantity::ZERO);
                return refusal(
                    format!("not enough {k}"),
                    Some(format!(
                        "needs {}, {} free",
                        Resources::render(k, need),
                        Resources::render(k, left)
                    )),
                );
            }
            // Short of something the pod does not even ask for.
            if let Some((k, over)) = free.iter().find(|&(_, q)| q < kerf_model::Quantity::ZERO) {
                return refusal(
                    format!("not enough {k}"),
                    Some(format!(
                        "its pods and DaemonSets already request {} more than it has",
                        Resources::render(k, kerf_model::Quantity::ZERO - over)
                    )),
                );
            }
        }
        if ports_conflict(&state.host_ports, &pod.host_ports) {
            return plain("a host port it needs is taken");
        }
        for key in eff.keys.iter().map(String::as_str) {
            if let Err(e) =
                self.check_domain(p, eff, key, node.labels.get(key).map(String::as_str), true)
            {
                return refusal(e.reason, None);
            }
        }
        plain("does not fit it")
    }

    /// Whether existing node `i` takes the pod. Reasons are not rendered: only whether a
    /// node refuses, and whether for good, matters to the caller.
    fn node_fits(&self, p: usize, eff: &Effective, i: usize) -> Result<(), Reject> {
        let pod = &self.facts.input.pods[p];
        let node: &Node = &self.facts.input.nodes[i];
        let state = &self.nodes[i];
        let never = || Err(Reject::new(true, false, String::new));
        if !state.usable
            || first_untolerated(&node.taints, &pod.tolerations).is_some()
            || (eff.avoid_soft_taints && untolerated_soft(&node.taints, &pod.tolerations) > 0)
            || !eff.terms.iter().any(|t| t.matches_labels(&node.labels))
            // A node only fills up, and this class's requests never shrink.
            || !state.remaining.fits(&self.facts.pod_req[p])
            || ports_conflict(&state.host_ports, &pod.host_ports)
        {
            return never();
        }
        for key in eff.keys.iter().map(String::as_str) {
            self.check_domain(p, eff, key, node.labels.get(key).map(String::as_str), false)?;
        }
        Ok(())
    }

    /// Fits the pod into a claim (open or fresh): the claim's requirements narrowed by
    /// the pod's and by topology, and the instance types that still fit everything.
    /// `why` renders the reason for a refusal; scans of open claims skip that work.
    fn claim_fit(
        &self,
        p: usize,
        eff: &Effective,
        claim: &ClaimState,
        why: bool,
    ) -> Result<ClaimFit, Reject> {
        let pod = &self.facts.input.pods[p];
        let pool = &self.pools[claim.pool];
        let np = &self.facts.input.nodepools[pool.nodepool];
        if let Some(t) = first_untolerated(&np.taints, &pod.tolerations) {
            return Err(Reject::new(true, why, || {
                format!("taint {t} is not tolerated")
            }));
        }
        if eff.avoid_soft_taints && untolerated_soft(&np.taints, &pod.tolerations) > 0 {
            return Err(Reject::new(true, why, || {
                "has a PreferNoSchedule taint the pod does not tolerate".into()
            }));
        }
        if ports_conflict(&claim.host_ports, &pod.host_ports) {
            return Err(Reject::new(true, why, || {
                "host port already taken on this claim".into()
            }));
        }
        if !claim
            .max_avail
            .fits_sum(&claim.requests, &self.facts.pod_req[p])
        {
            return Err(Reject::new(true, why, || {
                explain::too_big(
                    &self.facts.input.instance_types,
                    pool,
                    &claim.options.iter().collect::<Vec<_>>(),
                    &self.facts.res.resources(&{
                        let mut sum = claim.requests.clone();
                        sum.add(&self.facts.pod_req[p]);
                        sum
                    }),
                )
            }));
        }
        // The claim's hostname is fixed: check it before any instance-type work, since
        // hostname (anti-)affinity and spread refuse most claims a pod looks at.
        // Likewise any domain the claim is already pinned to (a zone, say).
        for key in eff.keys.iter().map(String::as_str) {
            if key == labels::HOSTNAME {
                self.check_domain(p, eff, key, Some(&claim.hostname), why)?;
            } else if let Some(v) = claim.reqs.get(key).and_then(|r| r.single_value()) {
                self.check_domain(p, eff, key, Some(v), why)?;
            }
        }
        let mut requests = claim.requests.clone();
        requests.add(&self.facts.pod_req[p]);
        let mut last = Reject::new(true, why, String::new);
        for term in &eff.terms {
            if let Some(k) = claim.reqs.conflict_with(term, open_key) {
                // A claim's requirements only narrow: this conflict stays.
                last = Reject::new(true, why, || {
                    explain::requirement_conflict(k, term, &claim.reqs, &pod.volume_zones)
                });
                continue;
            }
            let mut reqs = claim.reqs.clone();
            let mut narrowed = false;
            for (k, r) in term.iter() {
                if claim.reqs.get(k).is_some() || open_key(k) {
                    reqs.add(k, r.clone());
                    narrowed = true;
                }
            }
            let options = match self.filter_options(
                claim,
                &reqs,
                narrowed,
                &requests,
                &pod.host_ports,
                why,
            ) {
                Ok(o) => o,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            match self.narrow_topology(p, eff, claim, reqs, options, &requests, why) {
                Ok(mut fit) => {
                    if (self.catalog()).efficient(
                        claim,
                        &mut fit,
                        &requests,
                        &self.facts.pod_req[p],
                    ) {
                        return Ok(fit);
                    }
                    // The claim only grows for this class: it stays too big.
                    last = Reject::new(true, why, || {
                        "the claim's cheapest remaining type would be markedly less cost-efficient than a new claim".into()
                    });
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The claim's options that satisfy `reqs` (already known when `narrowed` is false),
    /// leave the pod's host ports free of DaemonSets, hold `requests`, stay within the
    /// NodePool's limits and keep `minValues`.
    fn filter_options(
        &self,
        claim: &ClaimState,
        reqs: &Requirements,
        narrowed: bool,
        requests: &Dense,
        pod_ports: &[HostPort],
        why: bool,
    ) -> Result<Bits, Reject> {
        let pool = &self.pools[claim.pool];
        let types = &self.facts.input.instance_types;
        let compat = narrowed.then(|| self.catalog().compatible(claim.pool, reqs));
        let compatible = |o: &usize| compat.as_ref().is_none_or(|b| b.contains(*o));
        let port_free =
            |o: &usize| pod_ports.is_empty() || !ports_conflict(&pool.daemon_ports[*o], pod_ports);
        let mut fitting = pool.thresholds.fitting(pool.types.len(), requests);
        fitting.and(&claim.options);
        if let Some(c) = &compat {
            fitting.and(c);
        }
        if !pod_ports.is_empty() {
            for o in fitting.clone().iter() {
                if !port_free(&o) {
                    fitting.remove(o);
                }
            }
        }
        if fitting.is_empty() {
            // Options only shrink and requirements only narrow: none of these reasons
            // goes away for this claim.
            return Err(Reject::new(true, why, || {
                let compatible: Vec<usize> =
                    claim.options.iter().filter(|o| compatible(o)).collect();
                if compatible.is_empty() {
                    return format!(
                        "no instance type satisfies {reqs}{}",
                        explain::daemon_misfits_note(types, pool)
                    );
                }
                let free: Vec<usize> = compatible
                    .iter()
                    .filter(|o| port_free(o))
                    .copied()
                    .collect();
                if free.is_empty() {
                    let taken: Vec<String> = pod_ports
                        .iter()
                        .filter(|p| {
                            pool.daemon_ports[compatible[0]]
                                .iter()
                                .any(|d| d.conflicts(p))
                        })
                        .map(|p| format!("{}/{}", p.port, p.protocol))
                        .collect();
                    return format!(
                        "host port {} is bound by a DaemonSet that would run on the node",
                        taken.join(", ")
                    );
                }
                explain::too_big(types, pool, &free, &self.facts.res.resources(requests))
            }));
        }
        let within_limits: Bits = match &pool.remaining_limits {
            None => fitting,
            Some(remaining) => {
                let headroom = remaining.plus(&claim.reservation);
                let limits = &self.facts.input.nodepools[pool.nodepool].limits;
                let within = Bits::from_iter(
                    pool.types.len(),
                    fitting.iter().filter(|&o| {
                        let cap = &types[pool.types[o]].capacity;
                        limits
                            .names()
                            .filter(|k| *k != kerf_model::resources::NODES)
                            .all(|k| cap.get(k) <= headroom.get(k))
                    }),
                );
                if within.is_empty() {
                    // Limits free up when other claims narrow: not permanent.
                    return Err(Reject::new(false, why, || {
                        let left: Vec<String> = limits
                            .iter()
                            .map(|(k, limit)| {
                                format!(
                                    "{k} limit {}, {} left",
                                    Resources::render(k, limit),
                                    Resources::render(
                                        k,
                                        remaining.get(k).max(kerf_model::Quantity::ZERO)
                                    )
                                )
                            })
                            .collect();
                        format!(
                            "the NodePool's limits would be exceeded by any instance type that fits ({})",
                            left.join("; ")
                        )
                    }));
                }
                within
            }
        };
        if self.facts.config.min_values_policy == MinValuesPolicy::Strict {
            min_values_met(reqs, within_limits.iter().map(|o| &types[pool.types[o]]))
                .map_err(|e| Reject::new(true, why, || e))?;
        }
        Ok(within_limits)
    }

    /// Fixes the claim's domain for every topology key the pod cares about, choosing the
    /// domain that keeps spread tightest, and checks each constraint there.
    #[allow(clippy::too_many_arguments)]
    fn narrow_topology(
        &self,
        p: usize,
        eff: &Effective,
        claim: &ClaimState,
        mut reqs: Requirements,
        mut options: Bits,
        requests: &Dense,
        why: bool,
    ) -> Result<ClaimFit, Reject> {
        let pool = &self.pools[claim.pool];
        for key in eff.keys.iter().map(String::as_str) {
            if key == labels::HOSTNAME {
                // Checked by `claim_fit` before any instance-type work.
                continue;
            }
            if let Some(v) = reqs.get(key).and_then(|r| r.single_value()) {
                self.check_domain(p, eff, key, Some(v), why)?;
                continue;
            }
            let candidates: Rc<BTreeSet<String>> = if open_key(key) {
                self.catalog().pool_values(claim.pool, key, &reqs)
            } else if let Some(values) = reqs.get(key).and_then(|r| r.values()) {
                Rc::new(values.clone())
            } else {
                // The node will not carry this label at all.
                self.check_domain(p, eff, key, None, why)?;
                continue;
            };
            let mut ordered: Vec<&String> = candidates.iter().collect();
            // Least-loaded domain first for spread groups (the pod's own or ones it counts in).
            let spread_groups: Vec<usize> = self.facts.pod_groups[p]
                .selected_by
                .iter()
                .chain(eff.groups.iter().map(|(g, _)| g))
                .copied()
                .filter(|&g| {
                    let g = &self.topology.groups[g];
                    g.spec.key == key && matches!(g.spec.kind, GroupKind::Spread { .. })
                })
                .collect();
            let load = |d: &String| -> i32 {
                spread_groups
                    .iter()
                    .map(|&g| self.topology.groups[g].count(d))
                    .sum()
            };
            ordered.sort_by_key(|d| load(d));
            // A key the instance type decides (other than zone and capacity type, whose
            // offerings the launch chooses among anyway) fixes what the claim can launch:
            // among equally loaded domains, take the one whose cheapest option is cheapest
            // rather than the first by name (a 24xlarge for a 250m pod).
            let by_price = open_key(key) && key != labels::ZONE && key != labels::CAPACITY_TYPE;
            let n_candidates = ordered.len();
            let mut last = Reject::new(false, why, || format!("no value of {key} is possible"));
            let mut permanent = true;
            let mut chosen: Option<(Requirements, Bits)> = None;
            let mut chosen_load = None;
            let mut chosen_price = f64::INFINITY;
            for d in ordered {
                if chosen_load.is_some_and(|l| l < load(d)) {
                    break;
                }
                if let Err(e) = self.check_domain(p, eff, key, Some(d), why) {
                    permanent &= e.permanent;
                    last = e;
                    continue;
                }
                let mut narrowed = reqs.clone();
                narrowed.add(key, Requirement::single(d.clone()));
                let pod_ports = &self.facts.input.pods[p].host_ports;
                match self.filter_options(claim, &narrowed, true, requests, pod_ports, why) {
                    Ok(o) if !by_price => {
                        chosen = Some((narrowed, o));
                        break;
                    }
                    Ok(o) => {
                        let price = self.catalog().cheapest_price(claim.pool, &narrowed, &o);
                        if price < chosen_price {
                            chosen_price = price;
                            chosen_load = Some(load(d));
                            chosen = Some((narrowed, o));
                        }
                    }
                    Err(e) => {
                        permanent &= e.permanent;
                        last = e;
                    }
                }
            }
            let Some((narrowed, o)) = chosen else {
                // Every candidate domain refused for good, or some may open up later.
                last.permanent = permanent && n_candidates > 0;
                if why && n_candidates > 1 {
                    last.reason = format!(
                        "none of the {n_candidates} possible values of {key} works; the last: {}",
                        last.reason
                    );
                }
                return Err(last);
            };
            reqs = narrowed;
            options = o;
        }
        let max_avail = pool.thresholds.max_over(&options);
        Ok(ClaimFit {
            reqs,
            cheapest_rank: 0,
            free: false,
            options,
            max_avail,
        })
    }

    fn commit(&mut self, p: usize, target: Target) {
        let pod = &self.facts.input.pods[p];
        let (claim_idx, fit) = match target {
            Target::Node(i) => {
                self.nodes[i].remaining.sub(&self.facts.pod_req[p]);
                self.nodes[i]
                    .host_ports
                    .extend(pod.host_ports.iter().cloned());
                self.nodes[i].placed.push(p);
                let node = &self.facts.input.nodes[i];
                self.record(
                    p,
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
        self.record(
            p,
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

    /// Counts a placed pod in every group that selects it, and as an owner of its required
    /// anti-affinity terms.
    fn record(
        &mut self,
        p: usize,
        domain: impl Fn(&str) -> Option<String>,
        passes: impl Fn(&crate::topology::GroupSpec) -> bool,
    ) {
        let pg = &self.facts.pod_groups[p];
        for &gi in &pg.selected_by {
            let g = &mut self.topology.groups[gi];
            if passes(&g.spec)
                && let Some(d) = domain(&g.spec.key)
            {
                *g.counts.entry(d).or_default() += 1;
            }
        }
        for &gi in &pg.anti_affinity {
            let g = &mut self.topology.groups[gi];
            if let Some(d) = domain(&g.spec.key) {
                *g.owner_counts.entry(d).or_default() += 1;
            }
        }
    }

    fn into_plan(self) -> Plan {
        let input = self.facts.input;
        let pod_key = |p: usize| input.pods[p].key.clone();
        let mut plan = Plan::default();
        for (i, state) in self.nodes.iter().enumerate() {
            if !state.placed.is_empty() {
                let mut pods: Vec<_> = state.placed.iter().map(|&p| pod_key(p)).collect();
                pods.sort();
                plan.existing.push(ExistingPlacement {
                    node: input.nodes[i].name.clone(),
                    pods,
                });
            }
        }
        for claim in &self.claims {
            plan.new_claims.push(self.finish_claim(claim));
        }
        plan.unschedulable = self
            .unschedulable
            .into_iter()
            .map(|(p, reason)| Unschedulable {
                pod: pod_key(p),
                reason,
            })
            .collect();
        plan
    }
}

impl Solver<'_> {
    /// Chooses the cheapest option and renders the claim.
    fn finish_claim(&self, claim: &ClaimState) -> NewClaim {
        let pool = &self.pools[claim.pool];
        let chosen = self
            .catalog()
            .carried(claim.pool, &claim.reqs, &claim.options);
        let requests = self.facts.res.resources(&claim.requests);
        finish_claim(self.facts.input, pool, claim, requests, &chosen)
    }
}

/// Renders a claim launching the first of `priced` (option, offering), cheapest first.
fn finish_claim(
    input: &Input,
    pool: &Pool,
    claim: &ClaimState,
    requests: Resources,
    priced: &[(usize, usize)],
) -> NewClaim {
    let np = &input.nodepools[pool.nodepool];
    let priced: Vec<(usize, &kerf_model::Offering)> = priced
        .iter()
        .map(|&(o, i)| (o, &input.instance_types[pool.types[o]].offerings[i]))
        .collect();
    let (best, offering) = priced[0];
    let it: &InstanceType = &input.instance_types[pool.types[best]];
    let mut labels = claim.reqs.single_valued_labels();
    // A custom label the claim requires but does not pin (`Exists`, `In [a, b]`) still
    // goes on the node, with one allowed value, as Karpenter's `Requirements.Labels`.
    for (key, r) in claim.reqs.iter() {
        if !labels.contains_key(key)
            && key != labels::HOSTNAME
            && !labels::is_instance_defined(key)
            && let Some(v) = r.any_value()
        {
            labels.insert(key.to_string(), v);
        }
    }
    labels.extend(np.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    labels.extend(it.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    labels.insert(labels::NODEPOOL.to_string(), np.name.clone());
    labels.insert(labels::ZONE.to_string(), offering.zone.clone());
    labels.insert(
        labels::CAPACITY_TYPE.to_string(),
        offering.capacity_type.clone(),
    );
    let mut requests = requests;
    requests.add(&pool.overhead[best]);
    let mut pods: Vec<_> = claim
        .pods
        .iter()
        .map(|&p| input.pods[p].key.clone())
        .collect();
    pods.sort();
    NewClaim {
        nodepool: np.name.clone(),
        launch: Launch {
            instance_type: it.name.clone(),
            zone: offering.zone.clone(),
            capacity_type: offering.capacity_type.clone(),
            price: offering.price,
            price_is_estimate: offering.price_is_estimate,
        },
        instance_type_options: priced
            .iter()
            .map(|(o, _)| input.instance_types[pool.types[*o]].name.clone())
            .collect(),
        requirements: claim.reqs.clone(),
        labels,
        taints: np.taints.clone(),
        pods,
        requests,
    }
}

/// How many open claims a pod looks at for one it fits without a dearer type.
const FREE_RIDE_LOOKAHEAD: usize = 16;

/// What one pod class has learned about a list of targets (nodes or claims): targets
/// below `seen` that did not refuse it for good, in order. Later scans visit only those
/// and the targets added since, in the same order a full scan would, so first-fit picks
/// the same target while each permanent refusal is paid for once per class.
#[derive(Clone, Debug, Default)]
struct Scan {
    alive: Vec<usize>,
    seen: usize,
}

impl Scan {
    fn first_taker<T>(
        &mut self,
        total: usize,
        mut take: impl FnMut(usize) -> Result<T, Reject>,
    ) -> Option<T> {
        let mut keep = 0;
        let mut next = 0;
        let mut found = None;
        while next < self.alive.len() {
            let t = self.alive[next];
            next += 1;
            match take(t) {
                Err(r) if r.permanent => continue,
                Err(_) => {}
                Ok(x) => found = Some(x),
            }
            self.alive[keep] = t;
            keep += 1;
            if found.is_some() {
                break;
            }
        }
        // Keep the part not visited (after a find) behind the survivors.
        self.alive.copy_within(next.., keep);
        let tail = self.alive.len() - next;
        self.alive.truncate(keep + tail);
        if found.is_some() {
            return found;
        }
        while self.seen < total {
            let t = self.seen;
            self.seen += 1;
            match take(t) {
                Err(r) if r.permanent => {}
                Err(_) => self.alive.push(t),
                Ok(x) => {
                    self.alive.push(t);
                    return Some(x);
                }
            }
        }
        None
    }
}

fn nodes_one() -> Resources {
    let mut r = Resources::new();
    r.set(
        kerf_model::resources::NODES,
        kerf_model::Quantity::from_units(1),
    );
    r
}

fn ports_conflict(used: &[HostPort], wanted: &[HostPort]) -> bool {
    wanted.iter().any(|w| used.iter().any(|u| u.conflicts(w)))
}

fn node_passes_filter(spec: &crate::topology::GroupSpec, node: &Node) -> bool {
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
    spec: &crate::topology::GroupSpec,
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
