//! `policy/v1` PodDisruptionBudgets.

use k8s_openapi::api::policy::v1 as policy;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kerf_model::{IntOrPercent, LabelSelector, Pdb};

use super::Problems;
use super::pods::label_selector;

pub(crate) fn pdb(
    namespace: &str,
    name: &str,
    pdb: &policy::PodDisruptionBudget,
    problems: &mut Problems,
) -> Pdb {
    let spec = pdb.spec.clone().unwrap_or_default();
    let selector = match &spec.selector {
        Some(s) => label_selector(s, "spec.selector", problems),
        // policy/v1: a null selector selects no pods.
        None => LabelSelector::nothing(),
    };
    let min_available = spec
        .min_available
        .as_ref()
        .and_then(|v| int_or_percent(v, "spec.minAvailable", problems));
    let max_unavailable = spec
        .max_unavailable
        .as_ref()
        .and_then(|v| int_or_percent(v, "spec.maxUnavailable", problems));
    if min_available.is_some() && max_unavailable.is_some() {
        problems.push(
            "spec",
            "minAvailable and maxUnavailable are both set; a PodDisruptionBudget takes one",
        );
    }
    Pdb {
        namespace: namespace.to_string(),
        name: name.to_string(),
        selector,
        min_available,
        max_unavailable,
        disruptions_allowed: pdb.status.as_ref().map(|s| s.disruptions_allowed),
    }
}

fn int_or_percent(
    value: &IntOrString,
    field: &str,
    problems: &mut Problems,
) -> Option<IntOrPercent> {
    match value {
        IntOrString::Int(n) if *n >= 0 => Some(IntOrPercent::Int(*n)),
        IntOrString::String(s) => match s.strip_suffix('%').map(str::parse::<i32>) {
            Some(Ok(p)) if (0..=100).contains(&p) => Some(IntOrPercent::Percent(p)),
            _ => {
                problems.push(
                    field,
                    format!("{s:?} is not valid; use a whole number (2) or a percentage from 0% to 100% (\"50%\")"),
                );
                None
            }
        },
        IntOrString::Int(n) => {
            problems.push(field, format!("{n} is negative; use 0 or more"));
            None
        }
    }
}
