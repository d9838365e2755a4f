//! Taints and tolerations, with Kubernetes' matching rules.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Effect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

impl Effect {
    pub fn parse(s: &str) -> Option<Effect> {
        Some(match s {
            "NoSchedule" => Effect::NoSchedule,
            "PreferNoSchedule" => Effect::PreferNoSchedule,
            "NoExecute" => Effect::NoExecute,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Effect::NoSchedule => "NoSchedule",
            Effect::PreferNoSchedule => "PreferNoSchedule",
            Effect::NoExecute => "NoExecute",
        }
    }

    /// Whether a pod that does not tolerate this effect is kept off the node.
    pub fn is_hard(self) -> bool {
        !matches!(self, Effect::PreferNoSchedule)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: Effect,
}

impl Taint {
    pub fn new(key: impl Into<String>, value: impl Into<String>, effect: Effect) -> Taint {
        Taint {
            key: key.into(),
            value: value.into(),
            effect,
        }
    }
}

impl Taint {
    /// Kubernetes' `MatchTaint`: taints are unique by key and effect, whatever the value.
    pub fn matches(&self, other: &Taint) -> bool {
        self.key == other.key && self.effect == other.effect
    }

    /// One of the taints Karpenter expects any node to lose as it comes up
    /// (`scheduling.KnownEphemeralTaints`): not ready, unreachable, not yet initialized by
    /// the cloud provider, not yet registered.
    pub fn is_known_ephemeral(&self) -> bool {
        KNOWN_EPHEMERAL
            .iter()
            .any(|&(key, effect)| self.key == key && self.effect == effect)
    }
}

/// Karpenter's `KnownEphemeralTaints`, as (key, effect): matched as `MatchTaint` does.
const KNOWN_EPHEMERAL: [(&str, Effect); 5] = [
    ("node.kubernetes.io/not-ready", Effect::NoSchedule),
    ("node.kubernetes.io/not-ready", Effect::NoExecute),
    ("node.kubernetes.io/unreachable", Effect::NoSchedule),
    (
        "node.cloudprovider.kubernetes.io/uninitialized",
        Effect::NoSchedule,
    ),
    (crate::labels::TAINT_UNREGISTERED, Effect::NoExecute),
];

impl fmt::Display for Taint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}:{}", self.key, self.effect.as_str())
        } else {
            write!(f, "{}={}:{}", self.key, self.value, self.effect.as_str())
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TolerationOperator {
    Equal,
    Exists,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Toleration {
    /// Empty with `Exists` tolerates every taint.
    pub key: String,
    pub operator: TolerationOperator,
    pub value: String,
    /// `None` tolerates every effect.
    pub effect: Option<Effect>,
}

impl Toleration {
    pub fn tolerates(&self, taint: &Taint) -> bool {
        if self.effect.is_some_and(|e| e != taint.effect) {
            return false;
        }
        if !self.key.is_empty() && self.key != taint.key {
            return false;
        }
        match self.operator {
            TolerationOperator::Exists => true,
            TolerationOperator::Equal => self.value == taint.value,
        }
    }
}

/// The first taint with a hard effect (`NoSchedule`, `NoExecute`) that no toleration
/// tolerates — the reason a pod cannot land.
pub fn first_untolerated<'a>(
    taints: impl IntoIterator<Item = &'a Taint>,
    tolerations: &[Toleration],
) -> Option<&'a Taint> {
    taints
        .into_iter()
        .find(|t| t.effect.is_hard() && !tolerations.iter().any(|tol| tol.tolerates(t)))
}

/// How many `PreferNoSchedule` taints the pod does not tolerate (a soft penalty).
pub fn untolerated_soft(taints: &[Taint], tolerations: &[Toleration]) -> usize {
    taints
        .iter()
        .filter(|t| !t.effect.is_hard() && !tolerations.iter().any(|tol| tol.tolerates(t)))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        let t = Taint::new("gpu", "true", Effect::NoSchedule);
        let eq = Toleration {
            key: "gpu".into(),
            operator: TolerationOperator::Equal,
            value: "true".into(),
            effect: None,
        };
        assert!(eq.tolerates(&t));
        let wrong_value = Toleration {
            value: "false".into(),
            ..eq.clone()
        };
        assert!(!wrong_value.tolerates(&t));
        let wrong_effect = Toleration {
            effect: Some(Effect::NoExecute),
            ..eq.clone()
        };
        assert!(!wrong_effect.tolerates(&t));
        let all = Toleration {
            key: String::new(),
            operator: TolerationOperator::Exists,
            value: String::new(),
            effect: None,
        };
        assert!(all.tolerates(&t));
        assert_eq!(first_untolerated([&t], &[]), Some(&t));
        let soft = Taint::new("x", "", Effect::PreferNoSchedule);
        assert_eq!(first_untolerated([&soft], &[]), None);
        assert_eq!(untolerated_soft(&[soft], &[]), 1);
    }
}
