//! Resource vectors as small integer arrays, for the checks `solve` repeats millions of
//! times. `Resources` is keyed by name (any extended resource may appear); one solve
//! only ever sees the names its input mentions, so they are numbered once and every
//! quantity on the hot path becomes a `Dense` of that length.

use std::collections::BTreeSet;

use kerf_model::{Quantity, Resources};

/// The resource names of one solve, in name order.
#[derive(Clone, Debug, Default)]
pub(crate) struct ResIndex {
    names: Vec<String>,
}

impl ResIndex {
    pub fn new<'a>(all: impl IntoIterator<Item = &'a Resources>) -> ResIndex {
        let names: BTreeSet<&str> = all.into_iter().flat_map(|r| r.names()).collect();
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
                .binary_search_by(|n| n.as_str().cmp(name))
                .unwrap_or_else(|_| panic!("resource {name} missing from the solve's index"));
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
    /// Whether `request` fits in `self`. A resource the request does not ask for is never
    /// a reason to refuse, even where `self` is overcommitted.
    pub fn fits(&self, request: &Dense) -> bool {
        self.0
            .iter()
            .zip(&request.0)
            .all(|(&a, &r)| r == 0 || a >= r)
    }

    /// Whether `a + b` fits in `self`, without building the sum.
    pub fn fits_sum(&self, a: &Dense, b: &Dense) -> bool {
        self.0
            .iter()
            .zip(a.0.iter().zip(&b.0))
            .all(|(&s, (&a, &b))| a + b == 0 || s >= a + b)
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

    pub fn contains(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
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
        let b = Bits::from_iter(130, [0, 64, 129]);
        assert!(b.contains(0) && b.contains(64) && b.contains(129));
        assert!(!b.contains(1) && !b.contains(128) && !b.contains(500));
    }
}
