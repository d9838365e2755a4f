//! Splitting claims that greedy packing grew past a price step.
//!
//! First-fit keeps adding pods to a claim while any instance type still holds them all,
//! then launches the cheapest type that does. Near a size boundary that overshoots:
//! three 1.5-CPU pods need a 4xlarge-class node at twice the price of an xlarge (two
//! pods) plus a large (one pod). Karpenter buys the big node; kerf re-packs each claim's
//! pods over the types its requirements allow and keeps the split when it is strictly
//! cheaper.
//!
//! A split changes nothing a constraint can see, with one exception it skips: the pods
//! keep the claim's requirements (so zone, capacity type and every label domain stay),
//! and fewer pods share each node, which can only lower per-node counts for hostname
//! spread and anti-affinity. Hostname pod affinity needs co-location, so claims with a
//! pod that has it, or that another pod's hostname affinity selects, are left whole, as
//! are claims of pools with limits (a split reserves differently against them).

use kerf_model::labels;

use super::memo::Catalog;
use super::{Facts, Solver};
use crate::claim::{ClaimState, min_values_met};
use crate::dense::{Bits, Dense};
use crate::topology::{GroupKind, Topology};
use crate::{MinValuesPolicy, Resources};

/// A split is kept only if it saves more than this per hour: float noise is not savings.
const MIN_SAVING: f64 = 1e-9;

impl Solver<'_> {
    /// Replaces every claim that a cheaper set of claims could hold, in place, so claim
    /// order (and so output) stays deterministic.
    pub(super) fn split_claims(&mut self) {
        let claims = std::mem::take(&mut self.claims);
        let split = Split {
            facts: &self.facts,
            catalog: Catalog::new(&self.memos, &self.pools, self.facts.input),
            topology: &self.topology,
        };
        let mut out = Vec::with_capacity(claims.len());
        for claim in claims {
            match split.split(&claim) {
                Some(parts) => out.extend(parts),
                None => out.push(claim),
            }
        }
        for (i, c) in out.iter_mut().enumerate() {
            c.hostname = format!("<claim-{i}>");
        }
        self.claims = out;
    }
}

/// What splitting reads: the facts, the pools' types through the memos, and the
/// topology groups (for hostname affinity).
struct Split<'s> {
    facts: &'s Facts<'s>,
    catalog: Catalog<'s>,
    topology: &'s Topology,
}

impl Split<'_> {
    fn splittable(&self, claim: &ClaimState) -> bool {
        if claim.pods.len() < 2 || self.catalog.pools[claim.pool].remaining_limits.is_some() {
            return false;
        }
        let hostname_affinity = |g: &usize| {
            let g = &self.topology.groups[*g];
            g.spec.kind == GroupKind::Affinity && g.spec.key == labels::HOSTNAME
        };
        claim.pods.iter().all(|&p| {
            let pg = &self.facts.pod_groups[p];
            !pg.affinity
                .iter()
                .chain(&pg.preferred_affinity)
                .chain(&pg.selected_by)
                .any(hostname_affinity)
        })
    }

    /// The cheapest re-packing of the claim's pods, if strictly cheaper than the claim.
    fn split(&self, claim: &ClaimState) -> Option<Vec<ClaimState>> {
        if !self.splittable(claim) {
            return None;
        }
        let pool = &self.catalog.pools[claim.pool];
        let types = &self.facts.input.instance_types;
        let ranked = self.catalog.ranked_options(claim.pool, &claim.reqs);
        let price = |o: usize, off: usize| types[pool.types[o]].offerings[off].price;
        let current = ranked
            .iter()
            .find(|(o, _)| claim.options.contains(*o))
            .map(|&(o, off)| price(o, off))?;
        // Types the claim's requirements allow whose DaemonSets leave the pods' host
        // ports free, cheapest first.
        let compat = self.catalog.compatible(claim.pool, &claim.reqs);
        let candidates: Vec<(usize, f64)> = ranked
            .iter()
            .filter(|(o, _)| {
                compat.contains(*o)
                    && !super::ports_conflict(&pool.daemon_ports[*o], &claim.host_ports)
            })
            .map(|&(o, off)| (o, price(o, off)))
            .collect();
        let mut allowed = Bits::from_iter(pool.types.len(), []);
        for &(o, _) in &candidates {
            allowed.insert(o);
        }
        let mut pods = claim.pods.clone();
        pods.sort_by(|&a, &b| {
            let (ra, rb) = (
                &self.facts.input.pods[a].requests,
                &self.facts.input.pods[b].requests,
            );
            let key = |r: &Resources| {
                (
                    r.get(kerf_model::resources::CPU),
                    r.get(kerf_model::resources::MEMORY),
                )
            };
            key(rb).cmp(&key(ra)).then(a.cmp(&b))
        });
        let mut best: Option<(f64, Vec<Vec<usize>>)> = None;
        for &(t, t_price) in candidates.iter().filter(|(_, p)| *p < current) {
            let bound = best.as_ref().map_or(current, |(c, _)| *c);
            let avail = pool.thresholds.avail_of(t);
            let Some(min_bins) = min_bins(&claim.requests, avail) else {
                continue;
            };
            if min_bins as f64 * t_price >= bound - MIN_SAVING || min_bins < 2 {
                continue;
            }
            let Some(bins) = self.first_fit(&pods, avail) else {
                continue;
            };
            // Each bin then launches the cheapest allowed type that holds it.
            let mut cost = 0.0;
            for bin in &bins {
                let fitting = self.bin_options(claim, bin, &allowed);
                match ranked.iter().find(|(o, _)| fitting.contains(*o)) {
                    Some(&(o, off)) => cost += price(o, off),
                    None => {
                        cost = f64::INFINITY;
                        break;
                    }
                }
            }
            if cost < bound - MIN_SAVING {
                best = Some((cost, bins));
            }
        }
        let (_, bins) = best?;
        let mut parts = Vec::with_capacity(bins.len());
        for bin in bins {
            let options = self.bin_options(claim, &bin, &allowed);
            if self.facts.config.min_values_policy == MinValuesPolicy::Strict
                && min_values_met(&claim.reqs, options.iter().map(|o| &types[pool.types[o]]))
                    .is_err()
            {
                return None;
            }
            let mut part = ClaimState {
                pool: claim.pool,
                reqs: claim.reqs.clone(),
                max_avail: pool.thresholds.max_over(&options),
                options,
                requests: self.facts.res.dense(&Resources::new()),
                host_ports: Vec::new(),
                pods: Vec::new(),
                reservation: Resources::new(),
                hostname: String::new(),
                cheapest_rank: 0,
            };
            for p in bin {
                let pod = &self.facts.input.pods[p];
                part.requests.add(&self.facts.pod_req[p]);
                part.host_ports.extend(pod.host_ports.iter().cloned());
                part.pods.push(p);
            }
            part.pods.sort_unstable();
            parts.push(part);
        }
        Some(parts)
    }

    /// First-fit of the pods (largest first) into bins of `avail`; `None` when a pod
    /// does not fit an empty bin.
    fn first_fit(&self, pods: &[usize], avail: &Dense) -> Option<Vec<Vec<usize>>> {
        let mut bins: Vec<(Dense, Vec<usize>)> = Vec::new();
        for &p in pods {
            let req = &self.facts.pod_req[p];
            match bins.iter_mut().find(|(left, _)| left.fits(req)) {
                Some((left, members)) => {
                    left.sub(req);
                    members.push(p);
                }
                None => {
                    if !avail.fits(req) {
                        return None;
                    }
                    let mut left = avail.clone();
                    left.sub(req);
                    bins.push((left, vec![p]));
                }
            }
        }
        Some(bins.into_iter().map(|(_, m)| m).collect())
    }

    /// The allowed options that hold the bin's pods.
    fn bin_options(&self, claim: &ClaimState, bin: &[usize], allowed: &Bits) -> Bits {
        let pool = &self.catalog.pools[claim.pool];
        let mut total = self.facts.res.dense(&Resources::new());
        for &p in bin {
            total.add(&self.facts.pod_req[p]);
        }
        let mut fitting = pool.thresholds.fitting(pool.types.len(), &total);
        fitting.and(allowed);
        fitting
    }
}

/// The fewest bins of `avail` the total could need, by its tightest resource; `None`
/// when a resource the total needs is not available at all.
fn min_bins(total: &Dense, avail: &Dense) -> Option<usize> {
    let mut n = 1;
    for (t, a) in total.values().zip(avail.values()) {
        if t > 0 {
            if a <= 0 {
                return None;
            }
            n = n.max(((t + a - 1) / a) as usize);
        }
    }
    Some(n)
}
