//! Leader election on a `coordination.k8s.io/v1` Lease, with controller-runtime's
//! timings (Karpenter's): a 15 s lease, renewed within 10 s, tried every 2 s.
//!
//! A standby watches the lease and takes it only once the holder has not renewed it for
//! a full lease duration *as this replica observed it* (the record's own timestamps come
//! from another clock). A leader that has not renewed for the renew deadline (10 s) stops
//! acting — 5 s before any standby may take over — and the process exits, as
//! controller-runtime does, so it restarts as a standby. Every write carries the
//! resourceVersion it was decided on: two replicas can never both win one round.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub const LEASE_DURATION: Duration = Duration::from_secs(15);
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);

/// What a replica is right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Standby,
    Leader,
    /// Was leader and could not renew: must stop acting and exit.
    Lost,
}

pub struct Elector {
    leases: Api<Lease>,
    name: String,
    identity: String,
    /// The record last seen, and when this replica saw it change.
    observed: Option<(String, String, Instant)>,
    last_renew: Option<Instant>,
}

fn now_micro() -> MicroTime {
    MicroTime(Timestamp::now())
}

impl Elector {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str) -> Elector {
        Elector {
            leases: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            observed: None,
            last_renew: None,
        }
    }

    /// Runs until cancelled or the lease is lost, publishing the role. On cancel, a
    /// leader releases the lease (an empty holder, `leaseDurationSeconds: 1`), as
    /// `LeaderElectionReleaseOnCancel` does, so a standby takes over at once.
    pub async fn run(mut self, role: watch::Sender<Role>, cancel: CancellationToken) {
        loop {
            let current = *role.borrow();
            let next = match self.try_acquire_or_renew().await {
                Ok(true) => {
                    self.last_renew = Some(Instant::now());
                    Role::Leader
                }
                Ok(false) => Role::Standby,
                Err(e) => {
                    tracing::warn!(lease = %self.name, error = %e, "lease update failed");
                    current
                }
            };
            let next = match (current, next) {
                (Role::Leader, _) | (Role::Lost, _)
                    if self
                        .last_renew
                        .is_none_or(|at| at.elapsed() >= RENEW_DEADLINE) =>
                {
                    Role::Lost
                }
                (Role::Leader, Role::Standby) => Role::Lost,
                (Role::Lost, _) => Role::Lost,
                (_, next) => next,
            };
            if next != current {
                tracing::info!(lease = %self.name, identity = %self.identity, role = ?next, "leader election");
                let _ = role.send(next);
            }
            if next == Role::Lost {
                return;
            }
            tokio::select! {
                _ = cancel.cancelled() => {
                    if next == Role::Leader {
                        self.release().await;
                    }
                    return;
                }
                _ = tokio::time::sleep(RETRY_PERIOD) => {}
            }
        }
    }

    async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let existing = match self.leases.get_opt(&self.name).await? {
            Some(lease) => lease,
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.spec(None, 0)),
                };
                return match self.leases.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                    Err(e) => Err(e),
                };
            }
        };
        let spec = existing.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let renew = spec
            .renew_time
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_default();
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|(h, r, _)| *h != holder || *r != renew);
        if changed {
            self.observed = Some((holder.clone(), renew, Instant::now()));
        }
        let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(15).max(1) as u64);
        let observed_at = self
            .observed
            .as_ref()
            .map(|(_, _, at)| *at)
            .unwrap_or_else(Instant::now);
        let mine = holder == self.identity;
        let free = holder.is_empty() || observed_at.elapsed() >= duration;
        if !mine && !free {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!mine);
        let acquire = if mine {
            spec.acquire_time.clone()
        } else {
            None
        };
        let mut lease = existing.clone();
        lease.spec = Some(self.spec(acquire, transitions));
        // `replace` sends the resourceVersion read above: a concurrent winner makes this 409.
        match self
            .leases
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(updated) => {
                let spec = updated.spec.unwrap_or_default();
                self.observed = Some((
                    self.identity.clone(),
                    spec.renew_time.map(|t| t.0.to_string()).unwrap_or_default(),
                    Instant::now(),
                ));
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn spec(&self, acquire: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
            acquire_time: Some(acquire.unwrap_or_else(now_micro)),
            renew_time: Some(now_micro()),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    async fn release(&self) {
        let Ok(Some(mut lease)) = self.leases.get_opt(&self.name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = Some(String::new());
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now_micro());
        match self
            .leases
            .replace(&lease.name_any(), &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(lease = %self.name, "lease released"),
            Err(e) => tracing::warn!(lease = %self.name, error = %e, "lease release failed"),
        }
    }
}
