//! What a pool's instance types allow under a requirement set, memoized.
//!
//! Claims in one solve share a handful of requirement sets, so each fact about a pool's
//! types under one (which are compatible, which values a key can take, each type's
//! cheapest allowed offering, the cheapest-first ranking) is worked out once rather than
//! per pod and claim. `Memos` owns the tables; `Catalog` answers from them, reading only
//! the pools and the input's instance types and NodePools.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::rc::Rc;

use kerf_model::{InstanceType, NodePool, Requirements, Resources};

use super::nodes_one;
use crate::Input;
use crate::claim::{Pool, min_values_met, possible_values, type_compatible};
use crate::dense::Bits;

/// At most this many instance types go into a claim's options, cheapest first, as
/// Karpenter's `MaxInstanceTypes` caps what a NodeClaim sends to the cloud. Claims whose
/// requirements carry `minValues` keep every option, so truncation cannot break them.
pub(crate) const MAX_INSTANCE_TYPES: usize = 60;

/// The memo tables of one solve. They only fill: an entry, once computed, holds for the
/// rest of the solve, since the pools' types and offerings do not change.
#[derive(Default)]
pub(super) struct Memos {
    /// (pool, hash of requirements) → the pool's type options compatible with them.
    compat: Memo<Rc<Bits>>,
    /// (pool, key, hash of requirements) → values of the key the pool's types allow.
    values: Memo<Rc<BTreeSet<String>>>,
    /// (pool, hash of requirements) → per option, its cheapest allowed offering.
    offerings: Memo<Rc<Vec<Option<usize>>>>,
    /// (pool, hash of requirements) → options with an allowed offering, cheapest first.
    ranked: Memo<Rc<Ranked>>,
    /// (pool, hash of requirements) → the per-unit cheapest options (see `efficiency`).
    pub(super) representatives: Memo<Rc<Vec<(usize, f64)>>>,
}

/// Values computed once per (pool, requirement set, key) in a solve: claims share a
/// handful of requirement sets, so each fact about a pool's types under one is worked out
/// once rather than per pod and claim. Entries are bucketed by a hash and compared whole.
pub(super) struct Memo<T> {
    /// (pool, hash) → the (key, requirements, value) entries that share the hash.
    entries: RefCell<BTreeMap<(usize, u64), Bucket<T>>>,
}

type Bucket<T> = Vec<(String, Requirements, T)>;

impl<T> Default for Memo<T> {
    fn default() -> Memo<T> {
        Memo {
            entries: RefCell::default(),
        }
    }
}

impl<T: Clone> Memo<T> {
    /// The value for (pool, `key`, `reqs`), computing it with `compute` the first time.
    /// `compute` may use other memos; it runs with no borrow of this one held.
    pub(super) fn get(
        &self,
        pool: usize,
        key: &str,
        reqs: &Requirements,
        compute: impl FnOnce() -> T,
    ) -> T {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        reqs.hash(&mut h);
        let slot = (pool, h.finish());
        if let Some((_, _, v)) = self
            .entries
            .borrow()
            .get(&slot)
            .and_then(|bucket| bucket.iter().find(|(k, r, _)| k == key && r == reqs))
        {
            return v.clone();
        }
        let v = compute();
        self.entries.borrow_mut().entry(slot).or_default().push((
            key.to_string(),
            reqs.clone(),
            v.clone(),
        ));
        v
    }
}

/// (option, index of its cheapest allowed offering), cheapest first.
pub(super) type Ranked = Vec<(usize, usize)>;

/// The pools' instance types and offerings, answered through the memos. Reads the pools'
/// limits (`carried`, `reservation`) but never changes them: the caller does.
#[derive(Clone, Copy)]
pub(super) struct Catalog<'s> {
    pub memos: &'s Memos,
    pub pools: &'s [Pool],
    /// `Input::instance_types`: what `Pool::types` indexes.
    pub types: &'s [InstanceType],
    /// `Input::nodepools`: what `Pool::nodepool` indexes.
    pub nodepools: &'s [NodePool],
}

impl<'s> Catalog<'s> {
    pub(super) fn new(memos: &'s Memos, pools: &'s [Pool], input: &'s Input) -> Catalog<'s> {
        Catalog {
            memos,
            pools,
            types: &input.instance_types,
            nodepools: &input.nodepools,
        }
    }

    /// The pool's options whose instance type can satisfy `reqs`, memoized.
    pub(super) fn compatible(&self, pool: usize, reqs: &Requirements) -> Rc<Bits> {
        self.memos.compat.get(pool, "", reqs, || {
            let types = &self.pools[pool].types;
            Rc::new(Bits::from_iter(
                types.len(),
                (0..types.len()).filter(|&o| type_compatible(&self.types[types[o]], reqs)),
            ))
        })
    }

    /// Values of an instance-defined `key` that the pool's types allow under `reqs`,
    /// memoized. A superset of what a claim's remaining options allow: each candidate is
    /// checked against the options when the claim narrows to it.
    pub(super) fn pool_values(
        &self,
        pool: usize,
        key: &str,
        reqs: &Requirements,
    ) -> Rc<BTreeSet<String>> {
        self.memos.values.get(pool, key, reqs, || {
            let types = self.pools[pool].types.iter().map(|&t| &self.types[t]);
            Rc::new(possible_values(key, types, reqs))
        })
    }

    /// Per option of the pool: the cheapest offering (index into the type's offerings)
    /// that `reqs` allows, memoized, since most claims share a few requirement sets.
    fn cheapest_offerings(&self, pool: usize, reqs: &Requirements) -> Rc<Vec<Option<usize>>> {
        self.memos.offerings.get(pool, "", reqs, || {
            Rc::new(
                self.pools[pool]
                    .types
                    .iter()
                    .map(|&t| {
                        let t = &self.types[t];
                        t.cheapest_offering(reqs)
                            .and_then(|best| t.offerings.iter().position(|o| std::ptr::eq(o, best)))
                    })
                    .collect(),
            )
        })
    }

    /// The pool's options that have an offering `reqs` allows, cheapest first (by that
    /// offering's price, then type name), with the offering: memoized per requirement set.
    pub(super) fn ranked_options(&self, pool: usize, reqs: &Requirements) -> Rc<Ranked> {
        self.memos.ranked.get(pool, "", reqs, || {
            let types = self.types;
            let pool_types = &self.pools[pool].types;
            let mut ranked: Ranked = self
                .cheapest_offerings(pool, reqs)
                .iter()
                .enumerate()
                .filter_map(|(o, off)| off.map(|i| (o, i)))
                .collect();
            ranked.sort_by(|&(a, ai), &(b, bi)| {
                let (ta, tb) = (&types[pool_types[a]], &types[pool_types[b]]);
                ta.offerings[ai]
                    .price
                    .total_cmp(&tb.offerings[bi].price)
                    .then_with(|| ta.name.cmp(&tb.name))
            });
            Rc::new(ranked)
        })
    }

    /// The (option, offering) pairs a claim with these requirements and options launches
    /// with, cheapest first: at most `MAX_INSTANCE_TYPES`, as Karpenter, unless a
    /// `minValues` needs them all.
    ///
    /// In a pool with limits, only options no larger than the cheapest in every limited
    /// resource are carried (unless that would break a `minValues`): the cloud may start
    /// any carried option, so each claim holds the largest against the limits, and a claim
    /// carrying a 24xlarge as a fallback for a 4xlarge would run the limit dry at a fraction
    /// of the capacity it allows. Karpenter holds the largest type that fits and hits
    /// exactly that. Same-size types of other families remain as fallbacks.
    pub(super) fn carried(
        &self,
        pool: usize,
        reqs: &Requirements,
        options: &Bits,
    ) -> Vec<(usize, usize)> {
        let keep_all = reqs.iter().any(|(_, r)| r.min_values.is_some());
        let limit = if keep_all {
            usize::MAX
        } else {
            MAX_INSTANCE_TYPES
        };
        let carried: Vec<(usize, usize)> = self
            .ranked_options(pool, reqs)
            .iter()
            .filter(|(o, _)| options.contains(*o))
            .take(limit)
            .copied()
            .collect();
        let pool = &self.pools[pool];
        let Some(&(launch, _)) = carried.first() else {
            return carried;
        };
        if pool.remaining_limits.is_none() {
            return carried;
        }
        let types = self.types;
        let capacity = |o: usize| &types[pool.types[o]].capacity;
        let limits = &self.nodepools[pool.nodepool].limits;
        let trimmed: Vec<(usize, usize)> = carried
            .iter()
            .filter(|&&(o, _)| {
                limits
                    .names()
                    .filter(|k| *k != kerf_model::resources::NODES)
                    .all(|k| capacity(o).get(k) <= capacity(launch).get(k))
            })
            .copied()
            .collect();
        let keeps_min_values =
            min_values_met(reqs, trimmed.iter().map(|&(o, _)| &types[pool.types[o]])).is_ok();
        if keeps_min_values { trimmed } else { carried }
    }

    /// The price of the cheapest of `options` launchable under `reqs`.
    pub(super) fn cheapest_price(&self, pool: usize, reqs: &Requirements, options: &Bits) -> f64 {
        let types = self.types;
        (self.ranked_options(pool, reqs).iter())
            .find(|(o, _)| options.contains(*o))
            .map_or(f64::INFINITY, |&(o, i)| {
                types[self.pools[pool].types[o]].offerings[i].price
            })
    }

    /// What a claim holds against its pool's limits: the largest capacity among the options
    /// it carries to the launch, and one node.
    pub(super) fn reservation(
        &self,
        pool: usize,
        reqs: &Requirements,
        options: &Bits,
    ) -> Resources {
        let types = self.types;
        let mut r = Resources::new();
        for (o, _) in self.carried(pool, reqs, options) {
            r.max_with(&types[self.pools[pool].types[o]].capacity);
        }
        r.add(&nodes_one());
        r
    }
}
