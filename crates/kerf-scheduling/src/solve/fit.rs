//! The fit checks: whether an existing node, an open claim or a fresh claim from a pool
//! takes a pod at one relaxation level, and, for a person, why not.
//!
//! `FitCheck` reads the solve's facts, the pools' types through the memos and the
//! topology counts, and changes none of them: a check is a question, and the solve
//! commits an answer elsewhere.

use std::collections::BTreeSet;
use std::rc::Rc;

use kerf_model::labels;
use kerf_model::pod::HostPort;
use kerf_model::taints::{first_untolerated, untolerated_soft};
use kerf_model::{Node, Requirement, Requirements, Resources};

use super::memo::{Catalog, Memos};
use super::relax::{Effective, GroupUse};
use super::{Facts, NodeState, open_key, ports_conflict};
use crate::MinValuesPolicy;
use crate::claim::{ClaimState, Pool, min_values_met};
use crate::dense::{Bits, Dense};
use crate::explain;
use crate::topology::{GroupKind, Topology};

/// Why a node or claim refuses a pod.
pub(super) struct Reject {
    /// Nothing later in this solve can change the answer for a pod of the same class at
    /// the same relaxation level: nodes and claims only fill up and narrow, and counts
    /// only grow.
    pub permanent: bool,
    /// Rendered only when asked for: scans discard most refusals.
    pub reason: String,
}

impl Reject {
    pub(super) fn new(permanent: bool, why: bool, reason: impl FnOnce() -> String) -> Reject {
        Reject {
            permanent,
            reason: if why { reason() } else { String::new() },
        }
    }
}

/// Where a pod would go.
pub(super) enum Target {
    Node(usize),
    Claim(usize, ClaimFit),
    NewClaim(Box<ClaimState>, ClaimFit),
}

/// The result of fitting a pod into a claim.
pub(super) struct ClaimFit {
    pub reqs: Requirements,
    pub options: Bits,
    /// Where the cheapest option sits in the ranking for `reqs` (see `efficiency`).
    pub cheapest_rank: usize,
    /// The claim would launch the same type with the pod as without it.
    pub free: bool,
    pub max_avail: Dense,
}

/// The fit checks of one attempt, over what they read.
#[derive(Clone, Copy)]
pub(super) struct FitCheck<'s> {
    facts: &'s Facts<'s>,
    catalog: Catalog<'s>,
    topology: &'s Topology,
}

impl<'s> FitCheck<'s> {
    pub(super) fn new(
        facts: &'s Facts<'s>,
        memos: &'s Memos,
        pools: &'s [Pool],
        topology: &'s Topology,
    ) -> FitCheck<'s> {
        FitCheck {
            facts,
            catalog: Catalog::new(memos, pools, facts.input),
            topology,
        }
    }

    /// A new claim from the first NodePool (by weight) that can make one and takes the
    /// pod; else, per pool, why not. `n_claims`: how many claims are open, which names
    /// the new claim's hostname.
    pub(super) fn new_claim(
        &self,
        p: usize,
        eff: &Effective,
        n_claims: usize,
    ) -> Result<Target, Vec<(usize, String)>> {
        let mut reasons = Vec::new();
        for (pi, pool) in self.catalog.pools.iter().enumerate() {
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
                hostname: format!("<claim-{n_claims}>"),
                cheapest_rank: 0,
                max_avail: pool.max_avail.clone(),
            };
            match self.claim_fit(p, eff, &claim, true) {
                Ok(fit) => return Ok(Target::NewClaim(Box::new(claim), fit)),
                Err(r) => reasons.push((pool.nodepool, r.reason)),
            }
        }
        Err(reasons)
    }

    /// Why the pod cannot be placed: each pool's `reasons`, and the existing nodes' —
    /// each node's refusal when `shown` (the reason a person will read), else their count.
    pub(super) fn unschedulable(
        &self,
        p: usize,
        eff: &Effective,
        nodes: &[NodeState],
        reasons: &[(usize, String)],
        shown: bool,
    ) -> String {
        let refusals = match self.facts.config.node_reasons {
            crate::NodeReasons::Each if shown => explain::Nodes::Each(
                (nodes.iter().enumerate())
                    .map(|(i, state)| self.node_refusal(p, eff, i, state))
                    .collect(),
            ),
            _ => explain::Nodes::Count(nodes.len()),
        };
        explain::unschedulable(self.facts.input, reasons, &refusals)
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
        let new_nodes_possible = !self.catalog.pools.is_empty();
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

    /// Why existing node `i` does not take the pod, for a person: the first check that
    /// fails, in `node_fits`' order.
    fn node_refusal(
        &self,
        p: usize,
        eff: &Effective,
        i: usize,
        state: &NodeState,
    ) -> explain::Refusal {
        let pod = &self.facts.input.pods[p];
        let node: &Node = &self.facts.input.nodes[i];
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
    pub(super) fn node_fits(
        &self,
        p: usize,
        eff: &Effective,
        i: usize,
        state: &NodeState,
    ) -> Result<(), Reject> {
        let pod = &self.facts.input.pods[p];
        let node: &Node = &self.facts.input.nodes[i];
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
    pub(super) fn claim_fit(
        &self,
        p: usize,
        eff: &Effective,
        claim: &ClaimState,
        why: bool,
    ) -> Result<ClaimFit, Reject> {
        let pod = &self.facts.input.pods[p];
        let pool = &self.catalog.pools[claim.pool];
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
                    if self
                        .catalog
                        .efficient(claim, &mut fit, &requests, &self.facts.pod_req[p])
                    {
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
        let pool = &self.catalog.pools[claim.pool];
        let types = &self.facts.input.instance_types;
        let compat = narrowed.then(|| self.catalog.compatible(claim.pool, reqs));
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
        let pool = &self.catalog.pools[claim.pool];
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
                self.catalog.pool_values(claim.pool, key, &reqs)
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
                        let price = self.catalog.cheapest_price(claim.pool, &narrowed, &o);
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
}
