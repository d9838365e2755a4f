//! Per-NodePool facts computed once per solve, and the state of a claim being filled.

use kerf_model::labels;
use kerf_model::pod::HostPort;
use kerf_model::{InstanceType, Requirements, Resources};

use crate::dense::{Bits, Dense, Thresholds};

/// A NodePool as one solve uses it.
#[derive(Clone, Debug)]
pub(crate) struct Pool {
    /// Index into `Input::nodepools`.
    pub nodepool: usize,
    pub template: Requirements,
    /// Global indices of instance types compatible with the pool's requirements.
    pub types: Vec<usize>,
    /// Per entry of `types`: daemonset overhead on such a node.
    pub overhead: Vec<Resources>,
    /// Per entry of `types`: host ports the DaemonSets running there bind.
    pub daemon_ports: Vec<Vec<HostPort>>,
    /// Per entry of `types`: allocatable less daemonset overhead, never below zero.
    pub avail: Vec<Resources>,
    /// Compatible types left out of `types` because their allocatable cannot hold the
    /// DaemonSets that would run on them (global index, those DaemonSets' requests): no
    /// option, but reasons name them.
    pub daemon_misfits: Vec<(usize, Resources)>,
    /// Element-wise maximum of `avail`.
    pub max_avail: Dense,
    /// Which options hold a given request, by resource.
    pub thresholds: Thresholds,
    /// Limits less what existing nodes of the pool use; `None` when unlimited.
    pub remaining_limits: Option<Resources>,
}

/// A claim opened in this solve.
#[derive(Clone, Debug)]
pub(crate) struct ClaimState {
    /// Index into the solver's pools.
    pub pool: usize,
    pub reqs: Requirements,
    /// Indices into the pool's `types` that still fit every pod.
    pub options: Bits,
    /// Sum of the pods' requests (daemonset overhead excluded).
    pub requests: Dense,
    pub host_ports: Vec<HostPort>,
    pub pods: Vec<usize>,
    /// What this claim holds against the pool's limits: the largest capacity among the
    /// options it carries to the launch, so no limit is exceeded whichever the cloud
    /// starts (see `Catalog::carried` in `solve/memo.rs`).
    pub reservation: Resources,
    /// A placeholder hostname: each claim is its own hostname domain.
    pub hostname: String,
    /// Element-wise maximum of what the options can hold: a pod whose requests do not fit
    /// under it cannot join, which rejects full claims without scanning their options.
    pub max_avail: Dense,
    /// Position of the cheapest option in the ranking for `reqs`, from which the next
    /// efficiency check resumes.
    pub cheapest_rank: usize,
}

/// Whether a node of this instance type can satisfy `reqs`: its labels, an available
/// offering in an allowed zone and capacity type, and no required label it lacks.
pub(crate) fn type_compatible(t: &InstanceType, reqs: &Requirements) -> bool {
    for (k, r) in reqs.iter() {
        let ok = match t.labels.get(k) {
            Some(v) => r.has(v),
            None if k == labels::ZONE || k == labels::CAPACITY_TYPE => true,
            None if labels::is_instance_defined(k) => r.allows_absent(),
            None => true,
        };
        if !ok {
            return false;
        }
    }
    t.offerings.iter().any(|o| o.available && o.matches(reqs))
}

/// The values of an instance-defined `key` the given types could give a node, restricted
/// to `reqs`.
pub(crate) fn possible_values<'a>(
    key: &str,
    types: impl Iterator<Item = &'a InstanceType>,
    reqs: &Requirements,
) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for t in types {
        if key == labels::ZONE || key == labels::CAPACITY_TYPE {
            for o in t
                .offerings
                .iter()
                .filter(|o| o.available && o.matches(reqs))
            {
                out.insert(if key == labels::ZONE {
                    o.zone.clone()
                } else {
                    o.capacity_type.clone()
                });
            }
        } else if let Some(v) = t.labels.get(key) {
            out.insert(v.clone());
        }
    }
    if let Some(r) = reqs.get(key) {
        out.retain(|v| r.has(v));
    }
    out
}

/// Whether the types span `minValues` distinct values for every key that sets it.
pub(crate) fn min_values_met<'a>(
    reqs: &Requirements,
    types: impl Iterator<Item = &'a InstanceType> + Clone,
) -> Result<(), String> {
    for (k, r) in reqs.iter() {
        if let Some(min) = r.min_values {
            let n = possible_values(k, types.clone(), reqs).len();
            if n < min as usize {
                return Err(format!(
                    "minValues {min} for {k} cannot be met: only {n} value(s) remain among the instance types that fit"
                ));
            }
        }
    }
    Ok(())
}
