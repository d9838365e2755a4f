//! Keeping claims on cost-efficient instance types while they grow.
//!
//! First fit keeps adding pods to a claim while any option still holds them all. When
//! the pool's most cost-efficient family tops out below the claim's size (Graviton
//! families end at 16xlarge; x86 ones go to 24xlarge and cost ~12 % more per vCPU), the
//! claim outgrows it and ends on a dearer type — a fleet of such claims costs that much
//! more than it needs to. So a claim that already holds pods takes another only while
//! its cheapest remaining option costs, per unit of the claim's contents, within
//! `SLACK` of every per-unit-efficient type too small to hold them — those are what the
//! pods would be cheaper on, split across claims. Types bigger than the contents do not
//! count: a small claim is less efficient than a big one (DaemonSet overhead weighs more),
//! and growing is how it gets there. Otherwise the pod looks further, and opens a new
//! claim if it must. A fresh claim always takes its first pod.
//!
//! Per-unit cost of type `t` for contents `R`: `price_t · max_r(R_r / avail_t,r)`, the
//! price of the fraction of `t` that `R` fills in its tightest resource. With prices
//! linear in size and no overhead (Karpenter's benchmark catalog), every type is
//! equally efficient and nothing changes.

use std::rc::Rc;

use super::fit::ClaimFit;
use super::memo::Catalog;
use crate::claim::ClaimState;
use crate::dense::Dense;

/// How much dearer per unit than the best a claim's cheapest option may be.
const SLACK: f64 = 0.02;

/// A smaller type counts as an alternative only if it holds at least this many copies of
/// the pod being placed.
const MIN_COPIES: f64 = 2.0;

/// A claim's growth is judged only once its new cheapest type holds this many copies
/// of the pod being placed.
const MIN_COPIES_TO_JUDGE: f64 = 4.0;

impl Catalog<'_> {
    /// Whether the claim may take the pod as `fit` describes, on cost grounds. Records in
    /// `fit` where the claim's cheapest option now sits in the ranking, so the next check
    /// resumes from there (options only shrink while requirements stay).
    pub(super) fn efficient(
        &self,
        claim: &ClaimState,
        fit: &mut ClaimFit,
        requests: &Dense,
        pod: &Dense,
    ) -> bool {
        let ranked = self.ranked_options(claim.pool, &fit.reqs);
        let same_reqs = fit.reqs == claim.reqs;
        let start = if same_reqs { claim.cheapest_rank } else { 0 };
        let Some(k) = ranked[start.min(ranked.len())..]
            .iter()
            .position(|(o, _)| fit.options.contains(*o))
            .map(|i| i + start)
        else {
            return true;
        };
        fit.cheapest_rank = k;
        // An empty claim takes its first pod; an unchanged cheapest option was judged
        // when it became the cheapest.
        if claim.pods.is_empty() {
            return true;
        }
        if same_reqs && k == claim.cheapest_rank {
            fit.free = true;
            return true;
        }
        let pool = &self.pools[claim.pool];
        let (o, off) = ranked[k];
        // The per-unit view is a fleet-scale one: it assumes more pods like this will
        // fill the type. On a type that holds only a few of them, rounding dominates and
        // a small claim growing one size is usually cheapest; leave those alone.
        if stretch(pod, pool.thresholds.avail_of(o)) * MIN_COPIES_TO_JUDGE > 1.0 {
            return true;
        }
        let price = self.types[pool.types[o]].offerings[off].price;
        let mine = price * stretch(requests, pool.thresholds.avail_of(o));
        // Only types too small for the claim count against it: a bigger, more efficient
        // type is where the claim is heading as it grows, not a reason to stop. And only
        // types that hold several pods like this one: the per-unit measure assumes pods
        // pack a node nearly full, which a node holding one or two of them does not.
        let best = self
            .representatives(claim.pool, &fit.reqs)
            .iter()
            .filter_map(|&(t, p)| {
                let avail = pool.thresholds.avail_of(t);
                let s = stretch(requests, avail);
                (s > 1.0 && stretch(pod, avail) * MIN_COPIES <= 1.0).then_some(p * s)
            })
            .fold(f64::INFINITY, f64::min);
        mine <= best * (1.0 + SLACK)
    }

    /// The options (with prices) no other option beats per unit in every resource, for
    /// a requirement set: the yardsticks for `efficient`. Memoized.
    fn representatives(
        &self,
        pool: usize,
        reqs: &kerf_model::Requirements,
    ) -> Rc<Vec<(usize, f64)>> {
        self.memos
            .representatives
            .get(pool, "", reqs, || self.compute_representatives(pool, reqs))
    }

    fn compute_representatives(
        &self,
        pool: usize,
        reqs: &kerf_model::Requirements,
    ) -> Rc<Vec<(usize, f64)>> {
        let p = &self.pools[pool];
        let types = self.types;
        let priced: Vec<(usize, f64, Vec<f64>)> = self
            .ranked_options(pool, reqs)
            .iter()
            .map(|&(o, off)| {
                let price = types[p.types[o]].offerings[off].price;
                let unit = p
                    .thresholds
                    .avail_of(o)
                    .values()
                    .map(|a| {
                        if a > 0 {
                            price / a as f64
                        } else {
                            f64::INFINITY
                        }
                    })
                    .collect();
                (o, price, unit)
            })
            .collect();
        // `ranked` is cheapest first, so among types with equal per-unit prices the
        // first kept is the cheapest; a later equal one is dominated by it.
        let mut reps: Vec<(usize, f64, Vec<f64>)> = Vec::new();
        for (o, price, unit) in priced {
            let dominated = reps
                .iter()
                .any(|(_, _, u)| u.iter().zip(&unit).all(|(a, b)| a <= b));
            if !dominated {
                reps.retain(|(_, _, u)| !unit.iter().zip(u).all(|(a, b)| a <= b));
                reps.push((o, price, unit));
            }
        }
        Rc::new(reps.into_iter().map(|(o, p, _)| (o, p)).collect())
    }
}

/// How many of `avail` the contents fill in their tightest resource (`R_r / avail_r`,
/// maximised over the resources `R` uses).
fn stretch(contents: &Dense, avail: &Dense) -> f64 {
    contents
        .values()
        .zip(avail.values())
        .filter(|(r, _)| *r > 0)
        .map(|(r, a)| {
            if a > 0 {
                r as f64 / a as f64
            } else {
                f64::INFINITY
            }
        })
        .fold(0.0, f64::max)
}
