//! The batcher: a batch opens on the first pending pod and closes after `batch_idle_ms`
//! without a new one, or `batch_max_ms` after it opened (Karpenter's
//! `BATCH_IDLE_DURATION` / `BATCH_MAX_DURATION`). A closed batch runs the provisioner.
//!
//! It also opens when pods are still waiting with nowhere nominated (the claim made for
//! them failed, or they did not fit) and the cluster changed, at most once per
//! `batch_max_ms` (once a minute if nothing changed: an offering marked unavailable
//! comes back without the view changing), and when a node starts draining, so replacements launch before the
//! drain finishes. A fresh batcher (after a restart) opens on its first step if anything
//! waits: losing it costs at most one early solve.

use crate::{ClusterView, Config, Event};

/// How often pods still waiting are solved again when nothing in the view changed.
const RETRY_UNCHANGED_MS: i64 = 60_000;

#[derive(Debug, Default)]
pub(crate) struct Batcher {
    opened_at: Option<i64>,
    last_pending_at: i64,
    last_solve_at: Option<i64>,
    solved_generation: u64,
    draining_seen: usize,
}

impl Batcher {
    /// Whether a batch closed at `now`.
    pub(crate) fn ready(
        &mut self,
        now: i64,
        view: &ClusterView,
        events: &[Event],
        config: &Config,
    ) -> bool {
        let new_pending = events.iter().any(|e| matches!(e, Event::PodPending(_)));
        match self.opened_at {
            None => {
                let draining = draining_nodes(view);
                let drain_started = draining > self.draining_seen;
                self.draining_seen = draining;
                let waiting = || waiting(view);
                let retry = match self.last_solve_at {
                    None => true,
                    // Also once a minute on an unchanged view: offerings marked
                    // unavailable come back without the view changing.
                    Some(at) => {
                        now - at >= config.batch_max_ms
                            && (view.generation != self.solved_generation
                                || now - at >= RETRY_UNCHANGED_MS)
                    }
                };
                if new_pending || drain_started || (retry && waiting()) {
                    self.opened_at = Some(now);
                    self.last_pending_at = now;
                    // A batch with no idle window (idle 0) closes at once.
                    return config.batch_idle_ms <= 0 && self.close();
                }
                false
            }
            Some(opened) => {
                if new_pending {
                    self.last_pending_at = now;
                }
                if now - self.last_pending_at >= config.batch_idle_ms
                    || now - opened >= config.batch_max_ms
                {
                    return self.close();
                }
                false
            }
        }
    }

    /// When an open batch closes; else when pods still waiting would next be solved
    /// again on this view (a change to the view wakes the loops anyway). Never a time
    /// already past while nothing would happen then: the shell would step in a spin.
    pub(crate) fn next_wake(&self, view: &ClusterView, config: &Config) -> i64 {
        match self.opened_at {
            Some(opened) => {
                (self.last_pending_at + config.batch_idle_ms).min(opened + config.batch_max_ms)
            }
            None if !waiting(view) => i64::MAX,
            None => match self.last_solve_at {
                None => i64::MIN,
                Some(at) if view.generation != self.solved_generation => at + config.batch_max_ms,
                Some(at) => at + RETRY_UNCHANGED_MS.max(config.batch_max_ms),
            },
        }
    }

    fn close(&mut self) -> bool {
        self.opened_at = None;
        true
    }

    pub(crate) fn solved(&mut self, now: i64, view: &ClusterView) {
        self.last_solve_at = Some(now);
        self.solved_generation = view.generation;
    }
}

/// Pending pods not waiting for a claim still launching: a solve may place them.
fn waiting(view: &ClusterView) -> bool {
    view.pending.iter().any(|k| {
        let nominated = view.pods[k].nominated.as_ref();
        !nominated
            .and_then(|c| view.claims.get(c))
            .is_some_and(|c| c.deleting_since.is_none() && !c.initialized)
    })
}

/// Claims being deleted whose node still runs pods.
fn draining_nodes(view: &ClusterView) -> usize {
    view.claims
        .values()
        .filter(|c| c.deleting_since.is_some())
        .filter_map(|c| c.node_name.as_deref())
        .filter(|n| view.pods_on(n).any(|p| !p.pod.is_daemon()))
        .count()
}
