//! The simulated cloud: instances in virtual time, with seeded randomness.

use std::collections::{BTreeMap, BTreeSet};

use kerf_model::InstanceType;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{CloudProvider, CreateError, Created, Instance, InstanceState, Offer};

/// A uniform distribution of milliseconds, `[min, max]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Latency {
    pub min: i64,
    pub max: i64,
}

impl Latency {
    fn sample(self, rng: &mut ChaCha8Rng) -> i64 {
        if self.max <= self.min {
            self.min
        } else {
            rng.random_range(self.min..=self.max)
        }
    }
}

/// Offerings out of capacity during `[from, to)` (milliseconds). An unset field matches
/// every value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shortage {
    pub instance_type: Option<String>,
    pub zone: Option<String>,
    pub capacity_type: Option<String>,
    pub from: i64,
    pub to: i64,
}

impl Shortage {
    fn covers(&self, offer: &Offer, now: i64) -> bool {
        let field = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        now >= self.from
            && now < self.to
            && field(&self.instance_type, &offer.instance_type)
            && field(&self.zone, &offer.zone)
            && field(&self.capacity_type, &offer.capacity_type)
    }
}

#[derive(Clone, Debug)]
pub struct SimCloudConfig {
    pub seed: u64,
    /// From the create call until the instance's kubelet starts registering.
    pub boot: Latency,
    /// From boot until the Node object appears.
    pub registration: Latency,
    /// From terminate until the instance is gone.
    pub shutdown: Latency,
    /// Spot interruptions per spot instance-hour (Poisson); 0 for none.
    pub spot_interruption_rate: f64,
    /// A rebalance recommendation precedes this share of interruptions.
    pub rebalance_share: f64,
    pub shortages: Vec<Shortage>,
}

impl Default for SimCloudConfig {
    fn default() -> SimCloudConfig {
        SimCloudConfig {
            seed: 0,
            boot: Latency {
                min: 2_000,
                max: 8_000,
            },
            registration: Latency {
                min: 30_000,
                max: 90_000,
            },
            shutdown: Latency {
                min: 20_000,
                max: 40_000,
            },
            spot_interruption_rate: 0.0,
            rebalance_share: 0.5,
            shortages: Vec::new(),
        }
    }
}

/// Something the simulated cloud did on its own, for the shell to act on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CloudEvent {
    /// The instance's kubelet registers: the Node object appears.
    Registers(String),
    /// A spot interruption warning: the instance is terminated two minutes later.
    InterruptionWarning(String),
    RebalanceRecommendation(String),
    /// The instance is gone (terminated by request or by an interruption).
    Gone(String),
}

/// Spot interruption warnings precede termination by two minutes, as on EC2.
pub const INTERRUPTION_NOTICE_MS: i64 = 120_000;

pub struct SimCloud {
    config: SimCloudConfig,
    rng: ChaCha8Rng,
    /// Price by offer, from the catalog.
    prices: BTreeMap<Offer, f64>,
    instances: BTreeMap<String, Instance>,
    /// Every claim an instance was ever launched for.
    claims_launched: BTreeSet<String>,
    /// Events by (time, sequence).
    queue: BTreeMap<(i64, u64), CloudEvent>,
    seq: u64,
    next_id: u64,
    /// Dollars billed for instances already gone.
    billed_gone: f64,
    pub launches: u64,
    pub insufficient_capacity_errors: u64,
    pub double_launches: u64,
    pub interruptions: u64,
}

impl SimCloud {
    pub fn new(config: SimCloudConfig, catalog: &[InstanceType]) -> SimCloud {
        let prices = catalog
            .iter()
            .flat_map(|it| {
                it.offerings.iter().map(|o| {
                    (
                        Offer {
                            instance_type: it.name.clone(),
                            zone: o.zone.clone(),
                            capacity_type: o.capacity_type.clone(),
                        },
                        o.price,
                    )
                })
            })
            .collect();
        SimCloud {
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            config,
            prices,
            instances: BTreeMap::new(),
            claims_launched: BTreeSet::new(),
            queue: BTreeMap::new(),
            seq: 0,
            next_id: 1,
            billed_gone: 0.0,
            launches: 0,
            insufficient_capacity_errors: 0,
            double_launches: 0,
            interruptions: 0,
        }
    }

    pub fn add_shortage(&mut self, shortage: Shortage) {
        self.config.shortages.push(shortage);
    }

    fn push(&mut self, at: i64, event: CloudEvent) {
        self.seq += 1;
        self.queue.insert((at, self.seq), event);
    }

    /// Events due at or before `now`, in time order. `Gone` removes the instance.
    pub fn due_events(&mut self, now: i64) -> Vec<CloudEvent> {
        let mut out = Vec::new();
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ((at, _), event) = entry.remove_entry();
            match &event {
                CloudEvent::Gone(id) => match self.instances.remove(id) {
                    Some(instance) => {
                        self.billed_gone += cost_between(&instance, instance.launched_at, at)
                    }
                    None => continue,
                },
                CloudEvent::Registers(id)
                | CloudEvent::InterruptionWarning(id)
                | CloudEvent::RebalanceRecommendation(id) => {
                    if !self
                        .instances
                        .get(id)
                        .is_some_and(|i| i.state == InstanceState::Running)
                    {
                        continue;
                    }
                }
            }
            if matches!(event, CloudEvent::InterruptionWarning(_)) {
                self.interruptions += 1;
            }
            out.push(event);
        }
        out
    }

    /// The next time something is due, if anything is.
    pub fn next_event_at(&self) -> Option<i64> {
        self.queue.first_key_value().map(|((at, _), _)| *at)
    }

    /// Interrupt a running spot (or any) instance now: warning now, termination two
    /// minutes later.
    pub fn interrupt(&mut self, now: i64, id: &str) {
        if self
            .instances
            .get(id)
            .is_some_and(|i| i.state == InstanceState::Running)
        {
            self.push(now, CloudEvent::InterruptionWarning(id.to_string()));
            self.terminate_at(now + INTERRUPTION_NOTICE_MS, id);
        }
    }

    fn terminate_at(&mut self, at: i64, id: &str) {
        self.push(at, CloudEvent::Gone(id.to_string()));
    }

    pub fn instance(&self, id: &str) -> Option<&Instance> {
        self.instances.get(id)
    }

    /// Dollars billed up to `now`: every instance per second from launch until gone.
    pub fn cost(&self, now: i64) -> f64 {
        self.instances.values().fold(self.billed_gone, |sum, i| {
            sum + cost_between(i, i.launched_at, now)
        })
    }

    /// Dollars per hour of the instances that exist now.
    pub fn cost_per_hour(&self) -> f64 {
        // Folded from +0.0: an empty f64 sum is -0.0, which would print as "-0".
        self.instances.values().fold(0.0, |sum, i| sum + i.price)
    }

    pub fn is_short(&self, offer: &Offer, now: i64) -> bool {
        self.config.shortages.iter().any(|s| s.covers(offer, now))
    }
}

fn cost_between(instance: &Instance, from: i64, to: i64) -> f64 {
    instance.price * ((to - from).max(0) as f64) / 3_600_000.0
}

impl CloudProvider for SimCloud {
    fn create(
        &mut self,
        now: i64,
        claim: &str,
        options: &[Offer],
        image_id: &str,
    ) -> Result<Created, CreateError> {
        if options.is_empty() {
            return Err(CreateError::NoOptions(claim.to_string()));
        }
        let mut refused = Vec::new();
        for offer in options {
            let Some(&price) = self.prices.get(offer) else {
                return Err(CreateError::UnknownType(offer.instance_type.clone()));
            };
            if self.is_short(offer, now) {
                self.insufficient_capacity_errors += 1;
                refused.push(offer.clone());
                continue;
            }
            if !self.claims_launched.insert(claim.to_string()) {
                self.double_launches += 1;
            }
            self.launches += 1;
            let id = format!("sim:///{}/i-{:017x}", offer.zone, self.next_id);
            self.next_id += 1;
            let instance = Instance {
                id: id.clone(),
                claim: claim.to_string(),
                offer: offer.clone(),
                image_id: image_id.to_string(),
                price,
                launched_at: now,
                state: InstanceState::Running,
                drift: None,
            };
            self.instances.insert(id.clone(), instance.clone());
            let boot = self.config.boot.sample(&mut self.rng);
            let registration = self.config.registration.sample(&mut self.rng);
            self.push(now + boot + registration, CloudEvent::Registers(id.clone()));
            if offer.capacity_type == kerf_model::labels::CAPACITY_TYPE_SPOT
                && self.config.spot_interruption_rate > 0.0
            {
                // Exponential time to interruption at the configured hourly rate.
                let u: f64 = self.rng.random_range(f64::EPSILON..1.0);
                let hours = -u.ln() / self.config.spot_interruption_rate;
                let at = now + (hours * 3_600_000.0) as i64;
                if self
                    .rng
                    .random_bool(self.config.rebalance_share.clamp(0.0, 1.0))
                {
                    self.push(
                        (at - 600_000).max(now),
                        CloudEvent::RebalanceRecommendation(id.clone()),
                    );
                }
                self.push(at, CloudEvent::InterruptionWarning(id.clone()));
                self.push(at + INTERRUPTION_NOTICE_MS, CloudEvent::Gone(id.clone()));
            }
            return Ok(Created {
                instance,
                refused,
                annotations: Default::default(),
            });
        }
        Err(CreateError::InsufficientCapacity(refused))
    }

    fn delete(&mut self, now: i64, id: &str) {
        let Some(instance) = self.instances.get_mut(id) else {
            return;
        };
        if instance.state == InstanceState::ShuttingDown {
            return;
        }
        instance.state = InstanceState::ShuttingDown;
        let after = self.config.shutdown.sample(&mut self.rng);
        self.terminate_at(now + after, id);
    }

    fn list(&self) -> Vec<&Instance> {
        self.instances.values().collect()
    }
}
