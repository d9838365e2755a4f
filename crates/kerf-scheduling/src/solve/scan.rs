//! Scans of existing nodes and open claims, remembered per pod class and relaxation
//! level.
//!
//! Targets that refused a pod of the same class (identical constraints and requests) for
//! good are skipped on later attempts (see `Scan`). This keeps the scan near-constant per
//! pod instead of linear in the claims opened.

use std::collections::BTreeMap;

use super::NodeState;
use super::fit::{FitCheck, Reject, Target};
use super::relax::{Effective, RelaxKey};
use crate::claim::ClaimState;

/// How many open claims a pod looks at for one it fits without a dearer type.
const FREE_RIDE_LOOKAHEAD: usize = 16;

/// What scans learned, per (pod class, relaxation level).
#[derive(Default)]
pub(super) struct Scans {
    /// (class, level) → the scans of existing nodes and of open claims.
    by_class: BTreeMap<(usize, RelaxKey), (Scan, Scan)>,
}

impl Scans {
    /// The first existing node, then the first open claim, that takes pod `p` as `fit`
    /// judges; `key` is the pod's class and relaxation level.
    pub(super) fn node_or_open_claim(
        &mut self,
        key: (usize, RelaxKey),
        fit: &FitCheck,
        nodes: &[NodeState],
        claims: &[ClaimState],
        p: usize,
        eff: &Effective,
    ) -> Option<Target> {
        let (mut node_scan, mut claim_scan) = self.by_class.remove(&key).unwrap_or_default();
        let node = node_scan.first_taker(nodes.len(), |i| {
            fit.node_fits(p, eff, i, &nodes[i])
                .map(|()| Target::Node(i))
        });
        // Among the first few open claims the class has not ruled out, one with room in
        // the type it would launch anyway comes first; only then the first claim that
        // takes the pod at all, growing into a dearer type if it must. The look-ahead is
        // bounded so that a pod no claim takes for free costs no more than first fit.
        let found = node
            .or_else(|| {
                claim_scan
                    .alive
                    .iter()
                    .take(FREE_RIDE_LOOKAHEAD)
                    .find_map(|&c| {
                        fit.claim_fit(p, eff, &claims[c], false)
                            .ok()
                            .filter(|fit| fit.free)
                            .map(|fit| Target::Claim(c, fit))
                    })
            })
            .or_else(|| {
                claim_scan.first_taker(claims.len(), |c| {
                    fit.claim_fit(p, eff, &claims[c], false)
                        .map(|fit| Target::Claim(c, fit))
                })
            });
        self.by_class.insert(key, (node_scan, claim_scan));
        found
    }
}

/// What one pod class has learned about a list of targets (nodes or claims): targets
/// below `seen` that did not refuse it for good, in order. Later scans visit only those
/// and the targets added since, in the same order a full scan would, so first-fit picks
/// the same target while each permanent refusal is paid for once per class.
#[derive(Clone, Debug, Default)]
struct Scan {
    alive: Vec<usize>,
    seen: usize,
}

impl Scan {
    fn first_taker<T>(
        &mut self,
        total: usize,
        mut take: impl FnMut(usize) -> Result<T, Reject>,
    ) -> Option<T> {
        let mut keep = 0;
        let mut next = 0;
        let mut found = None;
        while next < self.alive.len() {
            let t = self.alive[next];
            next += 1;
            match take(t) {
                Err(r) if r.permanent => continue,
                Err(_) => {}
                Ok(x) => found = Some(x),
            }
            self.alive[keep] = t;
            keep += 1;
            if found.is_some() {
                break;
            }
        }
        // Keep the part not visited (after a find) behind the survivors.
        self.alive.copy_within(next.., keep);
        let tail = self.alive.len() - next;
        self.alive.truncate(keep + tail);
        if found.is_some() {
            return found;
        }
        while self.seen < total {
            let t = self.seen;
            self.seen += 1;
            match take(t) {
                Err(r) if r.permanent => {}
                Err(_) => self.alive.push(t),
                Ok(x) => {
                    self.alive.push(t);
                    return Some(x);
                }
            }
        }
        None
    }
}
