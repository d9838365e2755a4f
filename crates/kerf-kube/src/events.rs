//! Kubernetes events for what the loops record, as Karpenter's recorder publishes them
//! (`pkg/events/recorder.go`): reporting controller `karpenter`, on the object each is
//! about, and deduplicated — an event with the same reason about the same object is not
//! published again until its reason's dedupe timeout has passed (two minutes; five for
//! `FailedScheduling`), so a pod that stays unschedulable batch after batch costs one
//! write per five minutes, not one per step. `Nominated` is also rate-limited across
//! pods, 5 per second with a burst of 10, as Karpenter's `PodNominationRateLimiter`.
//!
//! kube-runtime's `Recorder` turns a repeat into an event-series patch, a write each
//! time, so the dedupe sits in front of it. Publishing happens in one task of its own fed
//! by a bounded queue: a burst of events never holds up a step, and when the queue is
//! full an event is dropped (events are best effort; client-go's broadcaster drops too).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kerf_controllers::{Reason, Severity, Subject};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use tokio::sync::mpsc;

/// How many events may wait for the publisher before new ones are dropped.
const QUEUE: usize = 1024;
/// Karpenter's `PodNominationRateLimiter`: 5 per second, burst 10.
const NOMINATION_RATE_PER_SEC: f64 = 5.0;
const NOMINATION_BURST: f64 = 10.0;
/// A publish that takes longer than this is given up.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// One event, ready for the API.
pub struct Outgoing {
    pub reference: ObjectReference,
    pub reason: Reason,
    pub message: String,
}

/// Which events were published recently, and the nomination token bucket.
#[derive(Default)]
pub struct Dedupe {
    /// (reason, object, uid) → until when (ms) a repeat is suppressed.
    until: BTreeMap<(Reason, Subject, String), i64>,
    /// Tokens left and when they were counted (ms).
    nomination_tokens: Option<(f64, i64)>,
}

impl Dedupe {
    /// Whether an event with `reason` about `subject` (of this uid, when known) should
    /// be published at `now` (ms); records it if so.
    pub fn admit(&mut self, now: i64, reason: Reason, subject: &Subject, uid: &str) -> bool {
        let key = (reason, subject.clone(), uid.to_string());
        if self.until.get(&key).is_some_and(|until| *until > now) {
            return false;
        }
        if reason == Reason::Nominated && !self.take_nomination_token(now) {
            return false;
        }
        // Forget what has expired now and then, so the map stays the size of what is
        // recent.
        if self.until.len() > 4096 {
            self.until.retain(|_, until| *until > now);
        }
        self.until
            .insert(key, now + reason.dedupe_ms_about(subject));
        true
    }

    fn take_nomination_token(&mut self, now: i64) -> bool {
        let (tokens, at) = self.nomination_tokens.unwrap_or((NOMINATION_BURST, now));
        let refilled = (tokens + (now - at).max(0) as f64 / 1000.0 * NOMINATION_RATE_PER_SEC)
            .min(NOMINATION_BURST);
        if refilled < 1.0 {
            self.nomination_tokens = Some((refilled, now));
            return false;
        }
        self.nomination_tokens = Some((refilled - 1.0, now));
        true
    }
}

/// The object reference an event is about.
pub fn reference(subject: &Subject, uid: Option<String>) -> ObjectReference {
    let (api_version, kind, namespace, name) = match subject {
        Subject::Pod(key) => ("v1", "Pod", Some(key.namespace.clone()), key.name.clone()),
        Subject::Node(name) => ("v1", "Node", None, name.clone()),
        Subject::NodeClaim(name) => ("karpenter.sh/v1", "NodeClaim", None, name.clone()),
        Subject::NodePool(name) => ("karpenter.sh/v1", "NodePool", None, name.clone()),
    };
    ObjectReference {
        api_version: Some(api_version.into()),
        kind: Some(kind.into()),
        name: Some(name),
        namespace,
        uid,
        ..ObjectReference::default()
    }
}

/// The queue into the publisher.
pub fn channel() -> (mpsc::Sender<Outgoing>, mpsc::Receiver<Outgoing>) {
    mpsc::channel(QUEUE)
}

/// Publishes every event it receives, one at a time, until the queue closes.
pub async fn publish_all(mut rx: mpsc::Receiver<Outgoing>, recorder: Recorder) {
    while let Some(out) = rx.recv().await {
        let event = KubeEvent {
            type_: match out.reason.severity() {
                Severity::Normal => EventType::Normal,
                Severity::Warning => EventType::Warning,
            },
            reason: out.reason.as_str().into(),
            // events.k8s.io/v1 caps a note at 1 kB.
            note: Some(out.message.chars().take(1024).collect()),
            action: out.reason.as_str().into(),
            secondary: None,
        };
        match tokio::time::timeout(PUBLISH_TIMEOUT, recorder.publish(&event, &out.reference)).await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(error = %e, reason = %out.reason, "event not recorded")
            }
            Err(_) => tracing::debug!(reason = %out.reason, "event not recorded: timed out"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kerf_model::pod::PodKey;

    fn pod(name: &str) -> Subject {
        Subject::Pod(PodKey {
            namespace: "default".into(),
            name: name.into(),
        })
    }

    #[test]
    fn a_repeated_event_waits_for_its_reasons_dedupe_timeout() {
        let mut d = Dedupe::default();
        let p = pod("web-0");
        assert!(d.admit(0, Reason::FailedScheduling, &p, "u1"));
        // Every step for five minutes: nothing more.
        for step in 1..300 {
            assert!(!d.admit(step * 1_000, Reason::FailedScheduling, &p, "u1"));
        }
        assert!(d.admit(300_000, Reason::FailedScheduling, &p, "u1"));
        // Another reason, another object or a recreated pod (new uid) is its own event.
        assert!(d.admit(1, Reason::Nominated, &p, "u1"));
        assert!(d.admit(1, Reason::FailedScheduling, &pod("web-1"), "u2"));
        assert!(d.admit(1, Reason::FailedScheduling, &p, "u3"));
        // Other reasons are kept for two minutes.
        let n = Subject::Node("n1".into());
        assert!(d.admit(0, Reason::DisruptionTerminating, &n, ""));
        assert!(!d.admit(119_999, Reason::DisruptionTerminating, &n, ""));
        assert!(d.admit(120_000, Reason::DisruptionTerminating, &n, ""));
        // A NodePool's budget events: one minute, one per disruption reason.
        let pool = Subject::NodePool("default".into());
        assert!(d.admit(0, Reason::DisruptionBlocked, &pool, "u/Underutilized"));
        assert!(d.admit(1, Reason::DisruptionBlocked, &pool, "u/Drifted"));
        assert!(!d.admit(59_999, Reason::DisruptionBlocked, &pool, "u/Underutilized"));
        assert!(d.admit(60_000, Reason::DisruptionBlocked, &pool, "u/Underutilized"));
    }

    #[test]
    fn nominations_are_rate_limited_to_a_burst_of_ten_then_five_a_second() {
        let mut d = Dedupe::default();
        let admitted = (0..50)
            .filter(|i| d.admit(0, Reason::Nominated, &pod(&format!("p{i}")), ""))
            .count();
        assert_eq!(admitted, 10);
        let later = (50..100)
            .filter(|i| d.admit(1_000, Reason::Nominated, &pod(&format!("p{i}")), ""))
            .count();
        assert_eq!(later, 5);
    }
}
