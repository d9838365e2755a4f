//! Resource lists: `cpu`, `memory`, `pods`, `ephemeral-storage` and extended resources
//! such as `nvidia.com/gpu`, each a [`Quantity`].

use std::collections::BTreeMap;
use std::fmt;

use crate::Quantity;

pub const CPU: &str = "cpu";
pub const MEMORY: &str = "memory";
pub const PODS: &str = "pods";
pub const EPHEMERAL_STORAGE: &str = "ephemeral-storage";
/// Used in NodePool `limits` only: a cap on the number of nodes.
pub const NODES: &str = "nodes";

/// A list of named quantities. A missing name means zero.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Resources(BTreeMap<String, Quantity>);

impl Resources {
    pub fn new() -> Resources {
        Resources::default()
    }

    /// Builds from `(name, quantity string)` pairs; for tests and catalogs.
    pub fn parse<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Resources, crate::QuantityError> {
        let mut r = Resources::new();
        for (name, q) in pairs {
            r.set(name, Quantity::parse(q)?);
        }
        Ok(r)
    }

    pub fn get(&self, name: &str) -> Quantity {
        self.0.get(name).copied().unwrap_or_default()
    }

    pub fn set(&mut self, name: &str, q: Quantity) {
        if q == Quantity::ZERO {
            self.0.remove(name);
        } else {
            self.0.insert(name.to_string(), q);
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, Quantity)> {
        self.0.iter().map(|(k, v)| (k.as_str(), *v))
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn add(&mut self, other: &Resources) {
        for (k, v) in &other.0 {
            let sum = self.get(k) + *v;
            self.set(k, sum);
        }
    }

    /// Subtracts, letting quantities go negative (an overcommitted node shows as negative).
    pub fn sub(&mut self, other: &Resources) {
        for (k, v) in &other.0 {
            let diff = self.get(k) - *v;
            self.set(k, diff);
        }
    }

    pub fn plus(&self, other: &Resources) -> Resources {
        let mut r = self.clone();
        r.add(other);
        r
    }

    pub fn minus(&self, other: &Resources) -> Resources {
        let mut r = self.clone();
        r.sub(other);
        r
    }

    /// Element-wise maximum.
    pub fn max_with(&mut self, other: &Resources) {
        for (k, v) in &other.0 {
            if *v > self.get(k) {
                self.set(k, *v);
            }
        }
    }

    /// True when every quantity requested fits in `self`.
    pub fn fits(&self, request: &Resources) -> bool {
        request.iter().all(|(k, v)| v <= self.get(k))
    }

    /// The first resource in `request` that exceeds `self`, for explanations.
    pub fn first_exceeded<'a>(&self, request: &'a Resources) -> Option<&'a str> {
        request
            .iter()
            .find(|(k, v)| *v > self.get(k))
            .map(|(k, _)| k)
    }

    /// Renders one quantity the way a person reads it: CPU in cores/millicores, byte
    /// resources with binary suffixes, counts as integers.
    pub fn render(name: &str, q: Quantity) -> String {
        if name == MEMORY || name == EPHEMERAL_STORAGE || name.ends_with("storage") {
            q.to_bytes_string()
        } else {
            q.to_cpu_string()
        }
    }
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (k, v) in &self.0 {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{k}={}", Resources::render(k, *v))?;
        }
        Ok(())
    }
}
