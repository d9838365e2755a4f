//! Label selectors (`matchLabels` and `matchExpressions`) over pod and namespace labels.

use std::collections::BTreeMap;

use crate::requirements::{Operator, Requirement, RequirementError};

pub type Labels = BTreeMap<String, String>;

/// A Kubernetes `LabelSelector`. The empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct LabelSelector {
    requirements: Vec<(String, Requirement)>,
    /// A selector that matches nothing (Kubernetes' `nil` selector in topology spread and
    /// affinity terms selects no pods).
    matches_nothing: bool,
}

impl LabelSelector {
    pub fn everything() -> LabelSelector {
        LabelSelector::default()
    }

    pub fn nothing() -> LabelSelector {
        LabelSelector {
            requirements: Vec::new(),
            matches_nothing: true,
        }
    }

    pub fn from_match_labels(labels: &Labels) -> LabelSelector {
        let mut s = LabelSelector::default();
        for (k, v) in labels {
            s.requirements
                .push((k.clone(), Requirement::single(v.clone())));
        }
        s
    }

    /// Adds a `matchExpressions` entry. Label selectors allow only In, NotIn, Exists and
    /// DoesNotExist; the caller validates the operator.
    pub fn add_expression(
        &mut self,
        key: impl Into<String>,
        operator: Operator,
        values: Vec<String>,
    ) -> Result<(), RequirementError> {
        self.requirements
            .push((key.into(), Requirement::new(operator, values)?));
        Ok(())
    }

    pub fn add(&mut self, key: impl Into<String>, requirement: Requirement) {
        self.requirements.push((key.into(), requirement));
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        !self.matches_nothing
            && self
                .requirements
                .iter()
                .all(|(k, r)| r.admits(labels.get(k).map(String::as_str)))
    }

    /// A label (key, value) every object this selector matches must carry, if its terms
    /// pin one (`matchLabels`, or `In` with one value): lets callers index selectors.
    pub fn required_pair(&self) -> Option<(&str, &str)> {
        self.requirements.iter().find_map(|(k, r)| {
            r.single_value()
                .filter(|_| !r.admits(None))
                .map(|v| (k.as_str(), v))
        })
    }

    pub fn is_everything(&self) -> bool {
        !self.matches_nothing && self.requirements.is_empty()
    }
}
