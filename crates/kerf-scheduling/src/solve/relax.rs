//! Relaxing a pod's preferences, one step at a time, and what the pod asks of a target at
//! each step (`Effective`).
//!
//! Reads only the pod, its topology groups and its preferred node-affinity terms; the
//! solve's mutable state (nodes, claims, counts) never enters here.

use std::collections::BTreeSet;

use kerf_model::{Pod, Requirements};

use crate::PreferencePolicy;
use crate::topology::{PodGroups, Topology};

/// How far a pod's preferences have been relaxed. Each step gives up one preference, in
/// Karpenter's order (`preferences.go`): preferred pod affinity terms, then preferred
/// anti-affinity terms, each heaviest first (Karpenter sorts by weight and removes the
/// first, to try the lighter ones); preferred node affinity terms (the heaviest is treated
/// as required until it is dropped); `ScheduleAnyway` spreads one at a time, in the pod's
/// order (Karpenter swap-removes, so its order after the first differs: for [S1, S2, S3]
/// it drops S1, S3, S2); then `PreferNoSchedule` taints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Relax {
    /// The lightest this many preferred affinity terms are kept.
    affinity_kept: usize,
    anti_affinity_kept: usize,
    node_preferences_dropped: usize,
    /// The first this many `ScheduleAnyway` spreads are given up.
    soft_spreads_dropped: usize,
    avoid_soft_taints: bool,
}

fn soft_spreads(pod: &Pod) -> usize {
    (pod.topology_spread.iter())
        .filter(|s| s.when_unsatisfiable == kerf_model::pod::WhenUnsatisfiable::ScheduleAnyway)
        .count()
}

impl Relax {
    pub(super) fn initial(pod: &Pod, groups: &PodGroups, policy: PreferencePolicy) -> Relax {
        match policy {
            PreferencePolicy::Respect => Relax {
                affinity_kept: groups.preferred_affinity.len(),
                anti_affinity_kept: groups.preferred_anti_affinity.len(),
                node_preferences_dropped: 0,
                soft_spreads_dropped: 0,
                avoid_soft_taints: true,
            },
            PreferencePolicy::Ignore => Relax {
                affinity_kept: 0,
                anti_affinity_kept: 0,
                node_preferences_dropped: pod.node_affinity.preferred.len(),
                soft_spreads_dropped: soft_spreads(pod),
                avoid_soft_taints: false,
            },
        }
    }

    pub(super) fn next(self, pod: &Pod) -> Option<Relax> {
        let mut r = self;
        if r.affinity_kept > 0 {
            r.affinity_kept -= 1;
        } else if r.anti_affinity_kept > 0 {
            r.anti_affinity_kept -= 1;
        } else if r.node_preferences_dropped < pod.node_affinity.preferred.len() {
            r.node_preferences_dropped += 1;
        } else if r.soft_spreads_dropped < soft_spreads(pod) {
            r.soft_spreads_dropped += 1;
        } else if r.avoid_soft_taints {
            r.avoid_soft_taints = false;
        } else {
            return None;
        }
        Some(r)
    }

    /// An orderable identity, for per-level bookkeeping.
    pub(super) fn key(self) -> RelaxKey {
        (
            self.affinity_kept,
            self.anti_affinity_kept,
            self.node_preferences_dropped,
            self.soft_spreads_dropped,
            self.avoid_soft_taints,
        )
    }

    /// The pod's constraints at this level. `node_preferences`: the pod's preferred
    /// node-affinity terms, heaviest first.
    pub(super) fn effective(
        self,
        pod: &Pod,
        pg: &PodGroups,
        node_preferences: &[Requirements],
        topology: &Topology,
    ) -> Effective {
        let preferred = node_preferences.get(self.node_preferences_dropped);
        let mut terms: Vec<Requirements> = if pod.node_affinity.required.is_empty() {
            vec![Requirements::new()]
        } else {
            pod.node_affinity.required.clone()
        };
        if let Some(pref) = preferred {
            for t in &mut terms {
                *t = t.intersection(pref);
            }
        }
        // The volumes' zones hold wherever the pod goes; they are not node affinity, so
        // spread groups (built from `node_affinity`) do not see them.
        if let Some(volumes) = pod.volume_requirements() {
            for t in &mut terms {
                *t = t.intersection(&volumes);
            }
        }
        let mut groups = Vec::new();
        let mut soft_seen = 0;
        for &(g, hard) in &pg.spreads {
            if !hard {
                soft_seen += 1;
            }
            if hard || soft_seen > self.soft_spreads_dropped {
                groups.push((g, GroupUse::Spread));
            }
        }
        let lightest = |terms: &[usize], kept: usize| terms.len() - kept;
        for &g in pg
            .affinity
            .iter()
            .chain(&pg.preferred_affinity[lightest(&pg.preferred_affinity, self.affinity_kept)..])
        {
            groups.push((g, GroupUse::Affinity));
        }
        for &g in pg.anti_affinity.iter().chain(
            &pg.preferred_anti_affinity
                [lightest(&pg.preferred_anti_affinity, self.anti_affinity_kept)..],
        ) {
            groups.push((g, GroupUse::AntiAffinity));
        }
        let keys = groups
            .iter()
            .map(|(g, _)| *g)
            .chain(pg.avoided_by.iter().copied())
            .chain(pg.selected_by.iter().copied())
            .map(|g| topology.groups[g].spec.key.clone())
            .collect();
        Effective {
            terms,
            avoid_soft_taints: self.avoid_soft_taints,
            groups,
            keys,
        }
    }
}

pub(super) type RelaxKey = (usize, usize, usize, usize, bool);

/// How a pod uses one topology group in an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum GroupUse {
    Spread,
    Affinity,
    AntiAffinity,
}

/// A pod's constraints at one relaxation level.
pub(super) struct Effective {
    /// Node requirement terms, ORed; never empty.
    pub terms: Vec<Requirements>,
    pub avoid_soft_taints: bool,
    pub groups: Vec<(usize, GroupUse)>,
    /// Topology keys whose domain a target must have (or narrow to): those of the groups
    /// above, of anti-affinity the pod must avoid, and of groups that count it. Computed
    /// once per attempt, not per candidate node or claim.
    pub keys: BTreeSet<String>,
}
