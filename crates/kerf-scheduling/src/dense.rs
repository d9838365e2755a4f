//! Resource vectors as small integer arrays, for the checks `solve` repeats millions of
//! times. `Resources` is keyed by name (any extended resource may appear); one solve
//! only ever sees the names its input mentions, so they are numbered once and every
//! quantity on the hot path becomes a `Dense` of that length.

use kerf_model::{Quantity, Resources};

/// The resource names of one solve, in name order.
#[derive(Clone, Debug, Default)]
pub(crate) struct ResIndex {
    names: Vec<String>,
}

impl ResIndex {
    pub fn new<'a>(all: impl IntoIterator<Item = &'a Resources>) -> ResIndex {
        // A solve sees a handful of names across thousands of `Resources`: a linear
        // membership test (which compares lengths before bytes) beats collecting them all
        // into a set.
        let mut names: Vec<&str> = Vec::new();
        for r in all {
            for name in r.names() {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        names.sort_unstable();
        ResIndex {
            names: names.into_iter().map(str::to_string).collect(),
        }
    }

    /// `r` as a vector; a name the index lacks is a bug in how the index was built.
    pub fn dense(&self, r: &Resources) -> Dense {
        let mut out = vec![0; self.names.len()];
        for (name, q) in r.iter() {
            let i = self
                .names
                .iter()
                .position(|n| n == name)
                .unwrap_or_else(|| panic!("resource {name} missing from the solve's index"));
            out[i] = q.0;
        }
        Dense(out)
    }

    pub fn resources(&self, d: &Dense) -> Resources {
        let mut r = Resources::new();
        for (name, &v) in self.names.iter().zip(&d.0) {
            if v != 0 {
                r.set(name, Quantity(v));
            }
        }
        r
    }
}

/// Milli-units per resource, indexed by a `ResIndex`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Dense(Vec<i64>);

impl Dense {
    /// Whether `request` fits in `self`, in every resource: one the request does not ask
    /// for still refuses where `self` is already below zero (a node whose pods, DaemonSets
    /// included, overcommit it takes nothing, as Karpenter's `resources.Fits`).
    pub fn fits(&self, request: &Dense) -> bool {
        self.0.iter().zip(&request.0).all(|(&a, &r)| a >= r)
    }

    /// Whether `a + b` fits in `self`, in every resource, without building the sum.
    pub fn fits_sum(&self, a: &Dense, b: &Dense) -> bool {
        self.0
            .iter()
            .zip(a.0.iter().zip(&b.0))
            .all(|(&s, (&a, &b))| s >= a + b)
    }

    pub fn add(&mut self, other: &Dense) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a += b;
        }
    }

    pub fn sub(&mut self, other: &Dense) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a -= b;
        }
    }

    pub fn values(&self) -> impl Iterator<Item = i64> + '_ {
        self.0.iter().copied()
    }

    pub fn max_with(&mut self, other: &Dense) {
        if self.0.is_empty() {
            self.0.clone_from(&other.0);
            return;
        }
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a = (*a).max(*b);
        }
    }
}

/// A set of small integers (option indices into a pool's types).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Bits(Vec<u64>);

impl Bits {
    pub fn from_iter(len: usize, set: impl IntoIterator<Item = usize>) -> Bits {
        let mut words = vec![0u64; len.div_ceil(64)];
        for i in set {
            words[i / 64] |= 1 << (i % 64);
        }
        Bits(words)
    }

    /// `0..len`.
    pub fn full(len: usize) -> Bits {
        let mut words = vec![u64::MAX; len.div_ceil(64)];
        if !len.is_multiple_of(64)
            && let Some(last) = words.last_mut()
        {
            *last = (1 << (len % 64)) - 1;
        }
        Bits(words)
    }

    pub fn contains(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    pub fn insert(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    pub fn remove(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }

    /// Keeps only what `other` also holds (sets of the same length).
    pub fn and(&mut self, other: &Bits) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a &= b;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&w| w == 0)
    }

    /// The members, ascending.
    pub fn iter(&self) -> impl Iterator<Item = usize> + Clone + '_ {
        self.0.iter().enumerate().flat_map(|(wi, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let b = w.trailing_zeros() as usize;
                w &= w - 1;
                Some(wi * 64 + b)
            })
        })
    }
}

/// For each resource, which options have at least a given amount available: the
/// options sorted by that resource, and for each position the set from there up. A
/// request's fitting options are then one binary search and one AND per resource.
#[derive(Clone, Debug, Default)]
pub(crate) struct Thresholds {
    /// Per resource: options in ascending order of it, their values, and the suffix sets.
    per_resource: Vec<(Vec<usize>, Vec<i64>, Vec<Bits>)>,
    avail: Vec<Dense>,
}

impl Thresholds {
    pub fn new(avail: &[Dense]) -> Thresholds {
        let n = avail.len();
        let resources = avail.first().map_or(0, |a| a.0.len());
        let per_resource = (0..resources)
            .map(|r| {
                let mut order: Vec<usize> = (0..n).collect();
                order.sort_by_key(|&o| avail[o].0[r]);
                let values: Vec<i64> = order.iter().map(|&o| avail[o].0[r]).collect();
                let mut suffix = vec![Bits::from_iter(n, []); n + 1];
                for k in (0..n).rev() {
                    let mut s = suffix[k + 1].clone();
                    s.insert(order[k]);
                    suffix[k] = s;
                }
                (order, values, suffix)
            })
            .collect();
        Thresholds {
            per_resource,
            avail: avail.to_vec(),
        }
    }

    /// The options (of `len`) whose availability holds `request`. Resources the request
    /// does not ask for are skipped: availabilities are never below zero (a pool leaves out
    /// the types its DaemonSets overcommit), so they hold a zero request anyway.
    pub fn fitting(&self, len: usize, request: &Dense) -> Bits {
        let mut out = Bits::full(len);
        for ((_, values, suffix), &r) in self.per_resource.iter().zip(&request.0) {
            if r != 0 {
                out.and(&suffix[values.partition_point(|&v| v < r)]);
            }
        }
        out
    }

    /// What option `o` has available.
    pub fn avail_of(&self, o: usize) -> &Dense {
        &self.avail[o]
    }

    /// The element-wise maximum availability over the options in `set`: per resource,
    /// the first member found walking down from the largest, usually a step or two.
    pub fn max_over(&self, set: &Bits) -> Dense {
        Dense(
            self.per_resource
                .iter()
                .map(|(order, values, _)| {
                    order
                        .iter()
                        .zip(values)
                        .rev()
                        .find(|(o, _)| set.contains(**o))
                        .map_or(0, |(_, &v)| v)
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(pairs: &[(&str, &str)]) -> Resources {
        Resources::parse(pairs.iter().copied()).unwrap()
    }

    #[test]
    fn dense_round_trips_and_compares_like_resources() {
        let a = res(&[("cpu", "2"), ("memory", "4Gi")]);
        let b = res(&[("cpu", "500m"), ("nvidia.com/gpu", "1")]);
        let index = ResIndex::new([&a, &b]);
        let (da, db) = (index.dense(&a), index.dense(&b));
        assert_eq!(index.resources(&da), a);
        assert!(!da.fits(&db), "a has no GPU");
        let mut both = da.clone();
        both.add(&db);
        assert!(both.fits(&db) && both.fits(&da));
        assert!(both.fits_sum(&da, &db));
        both.sub(&db);
        assert!(!both.fits_sum(&da, &db));
        // Below zero in a resource, nothing fits, not even a request that skips it.
        let mut over = da.clone();
        over.sub(&index.dense(&res(&[("memory", "5Gi")])));
        assert!(!over.fits(&index.dense(&res(&[("cpu", "1")]))));
        assert!(!over.fits(&index.dense(&Resources::new())));
        let mut m = Dense::default();
        m.max_with(&da);
        m.max_with(&db);
        assert_eq!(
            index.resources(&m),
            a.plus(&res(&[("nvidia.com/gpu", "1")]))
        );
    }

    #[test]
    fn bits_hold_what_was_put_in() {
        let mut b = Bits::from_iter(130, [0, 64, 129]);
        assert!(b.contains(0) && b.contains(64) && b.contains(129));
        assert!(!b.contains(1) && !b.contains(128) && !b.contains(500));
        assert_eq!(b.iter().collect::<Vec<_>>(), [0, 64, 129]);
        b.remove(64);
        b.and(&Bits::from_iter(130, [0, 1, 64]));
        assert_eq!(b.iter().collect::<Vec<_>>(), [0]);
        b.remove(0);
        assert!(b.is_empty());
        assert_eq!(Bits::full(65).iter().count(), 65);
        assert_eq!(Bits::full(64).iter().count(), 64);
        assert_eq!(Bits::full(128).iter().count(), 128);
    }

    #[test]
    fn thresholds_find_exactly_the_options_that_fit() {
        let types = [
            res(&[("cpu", "2"), ("memory", "8Gi")]),
            res(&[("cpu", "4"), ("memory", "4Gi")]),
            res(&[("cpu", "8"), ("memory", "16Gi")]),
            res(&[("cpu", "1"), ("memory", "1Gi")]),
        ];
        let index = ResIndex::new(&types);
        let avail: Vec<Dense> = types.iter().map(|t| index.dense(t)).collect();
        let th = Thresholds::new(&avail);
        for req in [
            res(&[("cpu", "2")]),
            res(&[("cpu", "2"), ("memory", "5Gi")]),
            res(&[("memory", "4Gi")]),
            res(&[("cpu", "9")]),
            Resources::new(),
        ] {
            let d = index.dense(&req);
            let want: Vec<usize> = (0..4).filter(|&o| avail[o].fits(&d)).collect();
            let got = th.fitting(4, &d);
            assert_eq!(got.iter().collect::<Vec<_>>(), want, "{req:?}");
            let mut max = Dense::default();
            want.iter().for_each(|&o| max.max_with(&avail[o]));
            if !want.is_empty() {
                assert_eq!(th.max_over(&got), max, "{req:?}");
            }
        }
    }
}
