//! The requirements algebra: node-selector requirements (`In`, `NotIn`, `Exists`,
//! `DoesNotExist`, `Gt`, `Lt`, `Gte`, `Lte`) as sets that can be intersected.
//!
//! A [`Requirement`] is the set of label *states* a node may have for one key, where
//! "the label is absent" is one of the states. That makes Kubernetes' rules fall out of
//! plain set intersection: `NotIn [a]` admits nodes without the label, `Gt` does not,
//! `DoesNotExist` admits only them, and two requirements are compatible exactly when
//! their intersection is not empty.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::fmt;

/// Node-selector operators, as written in YAML.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
    Gte,
    Lte,
}

impl Operator {
    pub const ALL: [&'static str; 8] = [
        "In",
        "NotIn",
        "Exists",
        "DoesNotExist",
        "Gt",
        "Lt",
        "Gte",
        "Lte",
    ];

    pub fn parse(s: &str) -> Option<Operator> {
        Some(match s {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            "Gt" => Operator::Gt,
            "Lt" => Operator::Lt,
            "Gte" => Operator::Gte,
            "Lte" => Operator::Lte,
            _ => return None,
        })
    }
}

/// Why a requirement as written cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequirementError {
    #[error("operator {operator:?} takes no values, got {n}")]
    UnexpectedValues { operator: Operator, n: usize },
    #[error("operator In needs at least one value")]
    NoValues,
    #[error("operator {operator:?} needs exactly one integer value, got {values:?}")]
    NotOneInteger {
        operator: Operator,
        values: Vec<String>,
    },
}

/// The allowed states of one label key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Requirement {
    /// Whether a node without this label satisfies the requirement.
    allows_absent: bool,
    /// When false, `values` lists the only allowed values; when true, every value except
    /// those in `values` is allowed.
    complement: bool,
    values: BTreeSet<String>,
    /// Integer bounds (exclusive) every allowed value must also satisfy.
    greater_than: Option<i64>,
    less_than: Option<i64>,
    /// Karpenter's `minValues`: the instance types chosen must span at least this many
    /// distinct values of this key.
    pub min_values: Option<u32>,
}

impl Requirement {
    pub fn new(
        operator: Operator,
        values: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<Requirement, RequirementError> {
        let values: Vec<String> = values.into_iter().map(Into::into).collect();
        let n = values.len();
        let one_int = |operator| -> Result<i64, RequirementError> {
            match values.as_slice() {
                [v] => v.trim().parse::<i64>().map_err(|_| ()),
                _ => Err(()),
            }
            .map_err(|()| RequirementError::NotOneInteger {
                operator,
                values: values.clone(),
            })
        };
        let base = Requirement {
            allows_absent: false,
            complement: true,
            values: BTreeSet::new(),
            greater_than: None,
            less_than: None,
            min_values: None,
        };
        Ok(match operator {
            Operator::In => {
                if n == 0 {
                    return Err(RequirementError::NoValues);
                }
                Requirement {
                    complement: false,
                    values: values.iter().cloned().collect(),
                    ..base
                }
            }
            Operator::NotIn => Requirement {
                allows_absent: true,
                values: values.iter().cloned().collect(),
                ..base
            },
            Operator::Exists | Operator::DoesNotExist if n > 0 => {
                return Err(RequirementError::UnexpectedValues { operator, n });
            }
            Operator::Exists => base,
            Operator::DoesNotExist => Requirement::does_not_exist(),
            Operator::Gt => Requirement {
                greater_than: Some(one_int(operator)?),
                ..base
            },
            Operator::Gte => Requirement {
                greater_than: Some(one_int(operator)?.saturating_sub(1)),
                ..base
            },
            Operator::Lt => Requirement {
                less_than: Some(one_int(operator)?),
                ..base
            },
            Operator::Lte => Requirement {
                less_than: Some(one_int(operator)?.saturating_add(1)),
                ..base
            },
        })
    }

    /// `In [value]`.
    pub fn single(value: impl Into<String>) -> Requirement {
        Requirement {
            allows_absent: false,
            complement: false,
            values: BTreeSet::from([value.into()]),
            greater_than: None,
            less_than: None,
            min_values: None,
        }
    }

    /// `In values`; an empty list gives the empty (unsatisfiable) requirement.
    pub fn any_of(values: impl IntoIterator<Item = impl Into<String>>) -> Requirement {
        Requirement {
            allows_absent: false,
            complement: false,
            values: values.into_iter().map(Into::into).collect(),
            greater_than: None,
            less_than: None,
            min_values: None,
        }
    }

    /// Any value, or none: the requirement that constrains nothing.
    pub fn any() -> Requirement {
        Requirement {
            allows_absent: true,
            complement: true,
            values: BTreeSet::new(),
            greater_than: None,
            less_than: None,
            min_values: None,
        }
    }

    pub fn does_not_exist() -> Requirement {
        Requirement {
            allows_absent: true,
            complement: false,
            values: BTreeSet::new(),
            greater_than: None,
            less_than: None,
            min_values: None,
        }
    }

    pub fn with_min_values(mut self, min_values: Option<u32>) -> Requirement {
        self.min_values = min_values;
        self
    }

    fn within_bounds(&self, value: &str) -> bool {
        if self.greater_than.is_none() && self.less_than.is_none() {
            return true;
        }
        let Ok(v) = value.trim().parse::<i64>() else {
            return false;
        };
        self.greater_than.is_none_or(|gt| v > gt) && self.less_than.is_none_or(|lt| v < lt)
    }

    /// Whether a node whose label is `value` satisfies this.
    pub fn has(&self, value: &str) -> bool {
        self.within_bounds(value) && (self.values.contains(value) != self.complement)
    }

    /// Whether a node with this label (`Some`) or without it (`None`) satisfies this.
    pub fn admits(&self, label: Option<&str>) -> bool {
        match label {
            Some(v) => self.has(v),
            None => self.allows_absent,
        }
    }

    pub fn allows_absent(&self) -> bool {
        self.allows_absent
    }

    /// True when some label value (not absence) is allowed.
    pub fn allows_some_value(&self) -> bool {
        if self.complement {
            match (self.greater_than, self.less_than) {
                (Some(gt), Some(lt)) => {
                    // Integers strictly between gt and lt, not all excluded.
                    let span = (lt as i128) - (gt as i128) - 1;
                    span > 0
                        && (span > self.values.len() as i128
                            || (gt + 1..lt).any(|v| !self.values.contains(&v.to_string())))
                }
                _ => true,
            }
        } else {
            !self.values.is_empty()
        }
    }

    /// A value a node may carry to satisfy this, chosen deterministically: the smallest
    /// listed value for `In`, else the smallest non-negative integer allowed (Karpenter's
    /// `Requirement.Any` picks a random one). `None` when no value is allowed.
    pub fn any_value(&self) -> Option<String> {
        if !self.allows_some_value() {
            return None;
        }
        if !self.complement {
            return self.values.iter().find(|v| self.has(v)).cloned();
        }
        // From the lowest allowed integer, preferring non-negative ones; below an upper
        // bound at or under zero with no lower bound, from just under it.
        let start = match (self.greater_than, self.less_than) {
            (Some(gt), Some(lt)) if lt <= 0 => gt.saturating_add(1),
            (Some(gt), _) => gt.saturating_add(1).max(0),
            (None, Some(lt)) if lt <= 0 => lt.saturating_sub(1 + self.values.len() as i64),
            (None, _) => 0,
        };
        (0..=self.values.len() as i64)
            .map(|i| start.saturating_add(i).to_string())
            .find(|v| self.has(v))
    }

    /// No node at all satisfies this.
    pub fn is_empty(&self) -> bool {
        !self.allows_absent && !self.allows_some_value()
    }

    /// The finite set of allowed values, when the requirement lists them (`In`).
    pub fn values(&self) -> Option<&BTreeSet<String>> {
        (!self.complement).then_some(&self.values)
    }

    /// The one value a node must carry, when exactly one is allowed and absence is not.
    pub fn single_value(&self) -> Option<&str> {
        match self.values() {
            Some(v) if v.len() == 1 && !self.allows_absent => v.first().map(String::as_str),
            _ => None,
        }
    }

    /// The operator this requirement would be written with (for display).
    pub fn operator(&self) -> Operator {
        match (self.complement, self.values.is_empty(), self.allows_absent) {
            (false, true, _) => Operator::DoesNotExist,
            (false, false, _) => Operator::In,
            (true, _, true) => Operator::NotIn,
            (true, true, false) if self.greater_than.is_some() => Operator::Gt,
            (true, true, false) if self.less_than.is_some() => Operator::Lt,
            (true, _, false) => Operator::Exists,
        }
    }

    pub fn intersection(&self, other: &Requirement) -> Requirement {
        let greater_than = match (self.greater_than, other.greater_than) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let less_than = match (self.less_than, other.less_than) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let bounds = Requirement {
            allows_absent: false,
            complement: true,
            values: BTreeSet::new(),
            greater_than,
            less_than,
            min_values: None,
        };
        let (complement, values) = match (self.complement, other.complement) {
            (true, true) => (true, self.values.union(&other.values).cloned().collect()),
            (false, false) => (
                false,
                self.values.intersection(&other.values).cloned().collect(),
            ),
            (false, true) => (
                false,
                self.values.difference(&other.values).cloned().collect(),
            ),
            (true, false) => (
                false,
                other.values.difference(&self.values).cloned().collect(),
            ),
        };
        let mut out = Requirement {
            allows_absent: self.allows_absent && other.allows_absent,
            complement,
            values,
            greater_than,
            less_than,
            min_values: match (self.min_values, other.min_values) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            },
        };
        if !out.complement {
            // A listed set needs no bounds: apply them now.
            out.values.retain(|v| bounds.within_bounds(v));
            out.greater_than = None;
            out.less_than = None;
        }
        out
    }

    pub fn intersects(&self, other: &Requirement) -> bool {
        !self.intersection(other).is_empty()
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |values: &BTreeSet<String>| {
            values
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(",")
        };
        match self.operator() {
            Operator::In => write!(f, "In [{}]", list(&self.values))?,
            Operator::NotIn => write!(f, "NotIn [{}]", list(&self.values))?,
            Operator::DoesNotExist => write!(f, "DoesNotExist")?,
            _ => {
                write!(f, "Exists")?;
                if !self.values.is_empty() {
                    write!(f, " NotIn [{}]", list(&self.values))?;
                }
            }
        }
        if let Some(gt) = self.greater_than {
            write!(f, " >{gt}")?;
        }
        if let Some(lt) = self.less_than {
            write!(f, " <{lt}")?;
        }
        Ok(())
    }
}

/// Requirements on several keys, all of which must hold. A key with no entry is
/// unconstrained.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Requirements(BTreeMap<String, Requirement>);

impl Requirements {
    pub fn new() -> Requirements {
        Requirements::default()
    }

    /// Exactly the given labels (`key In [value]` each).
    pub fn from_labels<'a>(
        labels: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Requirements {
        Requirements(
            labels
                .into_iter()
                .map(|(k, v)| (k.clone(), Requirement::single(v.clone())))
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&Requirement> {
        self.0.get(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Requirement)> {
        self.0.iter().map(|(k, r)| (k.as_str(), r))
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds a requirement, intersecting with any already present for the key.
    pub fn add(&mut self, key: impl Into<String>, requirement: Requirement) {
        let key = key.into();
        let merged = match self.0.get(&key) {
            Some(existing) => existing.intersection(&requirement),
            None => requirement,
        };
        self.0.insert(key, merged);
    }

    pub fn remove(&mut self, key: &str) -> Option<Requirement> {
        self.0.remove(key)
    }

    /// All of `self` and all of `other`.
    pub fn intersection(&self, other: &Requirements) -> Requirements {
        let mut out = self.clone();
        for (k, r) in &other.0 {
            out.add(k.clone(), r.clone());
        }
        out
    }

    /// Whether a node with exactly these labels satisfies every requirement.
    pub fn matches_labels(&self, labels: &BTreeMap<String, String>) -> bool {
        self.first_unmatched_label(labels).is_none()
    }

    /// The first key a node with these labels fails, for explanations.
    pub fn first_unmatched_label(&self, labels: &BTreeMap<String, String>) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, r)| !r.admits(labels.get(k.as_str()).map(String::as_str)))
            .map(|(k, _)| k.as_str())
    }

    /// Whether some node could satisfy both `self` (what a node side offers) and
    /// `other` (what a pod asks). A key `other` constrains but `self` does not define is
    /// compatible only when `other` admits the label's absence, unless
    /// `undefined_is_open(key)` says a later stage (an instance type, an offering) will
    /// define it. Returns the first conflicting key.
    pub fn conflict_with<'a>(
        &self,
        other: &'a Requirements,
        undefined_is_open: impl Fn(&str) -> bool,
    ) -> Option<&'a str> {
        for (k, theirs) in &other.0 {
            let ok = match self.0.get(k) {
                Some(ours) => ours.intersects(theirs),
                None => theirs.allows_absent() || undefined_is_open(k),
            };
            if !ok {
                return Some(k.as_str());
            }
        }
        None
    }

    /// Labels a node built from these requirements is sure to carry: every key narrowed
    /// to one value.
    pub fn single_valued_labels(&self) -> BTreeMap<String, String> {
        self.0
            .iter()
            .filter_map(|(k, r)| r.single_value().map(|v| (k.clone(), v.to_string())))
            .collect()
    }
}

impl fmt::Display for Requirements {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (k, r) in &self.0 {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{k} {r}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(op: Operator, values: &[&str]) -> Requirement {
        Requirement::new(op, values.iter().copied()).unwrap()
    }

    #[test]
    fn kubernetes_semantics_for_absent_labels() {
        assert!(req(Operator::NotIn, &["a"]).admits(None));
        assert!(req(Operator::DoesNotExist, &[]).admits(None));
        assert!(!req(Operator::Exists, &[]).admits(None));
        assert!(!req(Operator::In, &["a"]).admits(None));
        assert!(!req(Operator::Gt, &["3"]).admits(None));
        assert!(!req(Operator::Lt, &["3"]).admits(None));
    }

    #[test]
    fn any_value_is_allowed_and_deterministic() {
        let cases = [
            (req(Operator::In, &["b", "a"]), Some("a")),
            (req(Operator::Exists, &[]), Some("0")),
            (req(Operator::NotIn, &["0", "1"]), Some("2")),
            (req(Operator::Gt, &["4"]), Some("5")),
            (req(Operator::Lt, &["0"]), Some("-1")),
            (
                req(Operator::Gt, &["3"]).intersection(&req(Operator::NotIn, &["4", "5"])),
                Some("6"),
            ),
            (
                req(Operator::Gt, &["-5"]).intersection(&req(Operator::Lt, &["-1"])),
                Some("-4"),
            ),
            (req(Operator::DoesNotExist, &[]), None),
            (
                req(Operator::Gt, &["3"]).intersection(&req(Operator::Lt, &["4"])),
                None,
            ),
        ];
        for (r, want) in cases {
            let got = r.any_value();
            assert_eq!(got.as_deref(), want, "{r:?}");
            if let Some(v) = got {
                assert!(r.has(&v), "{r:?} does not admit {v}");
            }
        }
    }

    #[test]
    fn integer_bounds() {
        let gt = req(Operator::Gt, &["4"]);
        assert!(gt.has("5") && !gt.has("4") && !gt.has("x"));
        let gte = req(Operator::Gte, &["4"]);
        assert!(gte.has("4") && !gte.has("3"));
        let lte = req(Operator::Lte, &["4"]);
        assert!(lte.has("4") && !lte.has("5"));
        let both = gt.intersection(&req(Operator::Lt, &["6"]));
        assert!(both.has("5") && !both.has("6") && !both.is_empty());
        assert!(gt.intersection(&req(Operator::Lt, &["5"])).is_empty());
        let listed = req(Operator::In, &["2", "8", "x"]).intersection(&gt);
        assert_eq!(listed.values().unwrap().len(), 1);
    }

    #[test]
    fn intersections_follow_karpenter() {
        // NotIn and DoesNotExist are compatible: a node without the label satisfies both.
        assert!(req(Operator::NotIn, &["a"]).intersects(&req(Operator::DoesNotExist, &[])));
        assert!(!req(Operator::In, &["a"]).intersects(&req(Operator::In, &["b"])));
        assert!(!req(Operator::In, &["a"]).intersects(&req(Operator::NotIn, &["a"])));
        assert!(req(Operator::In, &["a", "b"]).intersects(&req(Operator::NotIn, &["a"])));
        assert!(!req(Operator::Exists, &[]).intersects(&req(Operator::DoesNotExist, &[])));
        assert!(req(Operator::Exists, &[]).intersects(&req(Operator::NotIn, &["a"])));
    }

    #[test]
    fn undefined_keys() {
        let mut node = Requirements::new();
        node.add("zone", req(Operator::In, &["a"]));
        let mut pod = Requirements::new();
        pod.add("team", req(Operator::In, &["x"]));
        assert_eq!(node.conflict_with(&pod, |_| false), Some("team"));
        assert_eq!(node.conflict_with(&pod, |k| k == "team"), None);
        let mut pod = Requirements::new();
        pod.add("team", req(Operator::NotIn, &["x"]));
        assert_eq!(node.conflict_with(&pod, |_| false), None);
    }

    #[test]
    fn bad_operators_are_explained() {
        assert_eq!(
            Requirement::new(Operator::In, Vec::<String>::new()),
            Err(RequirementError::NoValues)
        );
        assert!(Requirement::new(Operator::Gt, ["x"]).is_err());
        assert!(Requirement::new(Operator::Exists, ["x"]).is_err());
    }
}
