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

#[cfg(test)]
mod tests {
    use kerf_model::InstanceType;
    use kerf_model::labels::{CAPACITY_TYPE_ON_DEMAND as ON_DEMAND, CAPACITY_TYPE_SPOT as SPOT};

    use super::*;
    use crate::tests::instance_type;

    /// `m5.large` in zones `a` and `b`, on demand at $0.096 and spot at $0.03; `c5.large`
    /// on demand in `a` at $3.60 (a tenth of a cent a second, for billing).
    fn catalog() -> Vec<InstanceType> {
        vec![
            instance_type(
                "m5.large",
                &[
                    ("a", ON_DEMAND, 0.096),
                    ("a", SPOT, 0.03),
                    ("b", ON_DEMAND, 0.096),
                    ("b", SPOT, 0.03),
                ],
            ),
            instance_type("c5.large", &[("a", ON_DEMAND, 3.6)]),
        ]
    }

    fn offer(instance_type: &str, zone: &str, capacity_type: &str) -> Offer {
        Offer {
            instance_type: instance_type.to_string(),
            zone: zone.to_string(),
            capacity_type: capacity_type.to_string(),
        }
    }

    fn fixed(ms: i64) -> Latency {
        Latency { min: ms, max: ms }
    }

    /// Boot 5 s, registration 40 s, shutdown 30 s: a node registers 45 s after its launch.
    fn config() -> SimCloudConfig {
        SimCloudConfig {
            boot: fixed(5_000),
            registration: fixed(40_000),
            shutdown: fixed(30_000),
            ..SimCloudConfig::default()
        }
    }

    fn shortage(
        instance_type: Option<&str>,
        zone: Option<&str>,
        capacity_type: Option<&str>,
        from: i64,
        to: i64,
    ) -> Shortage {
        Shortage {
            instance_type: instance_type.map(str::to_string),
            zone: zone.map(str::to_string),
            capacity_type: capacity_type.map(str::to_string),
            from,
            to,
        }
    }

    /// Every event up to `until`, with the time it fell due.
    fn drain(cloud: &mut SimCloud, until: i64) -> Vec<(i64, CloudEvent)> {
        let mut out = Vec::new();
        while let Some(at) = cloud.next_event_at().filter(|&at| at <= until) {
            out.extend(cloud.due_events(at).into_iter().map(|e| (at, e)));
        }
        out
    }

    /// The ID of the instance a launch of `claim` on `offer` alone starts.
    fn launch(cloud: &mut SimCloud, now: i64, claim: &str, offer: Offer) -> String {
        let created = cloud.create(now, claim, &[offer], "ami-1").unwrap();
        created.instance.id
    }

    /// Every event of a cloud with this configuration where `n` claims launch on `offer`
    /// at time 0.
    fn launch_many(config: SimCloudConfig, n: usize, offer: Offer) -> Vec<(i64, CloudEvent)> {
        let mut cloud = SimCloud::new(config, &catalog());
        for i in 0..n {
            let claim = format!("claim-{i}");
            cloud
                .create(0, &claim, std::slice::from_ref(&offer), "ami-1")
                .unwrap();
        }
        drain(&mut cloud, i64::MAX)
    }

    #[test]
    fn a_launch_takes_the_first_option_with_capacity_and_records_the_instance() {
        let mut cloud = SimCloud::new(
            SimCloudConfig {
                shortages: vec![
                    shortage(None, Some("a"), Some(SPOT), 0, 60_000),
                    shortage(Some("m5.large"), Some("b"), None, 0, 60_000),
                ],
                ..config()
            },
            &catalog(),
        );
        let options = [
            offer("m5.large", "a", SPOT),
            offer("m5.large", "b", ON_DEMAND),
            offer("m5.large", "a", ON_DEMAND),
            offer("c5.large", "a", ON_DEMAND),
        ];
        let created = cloud
            .create(1_000, "general-1-1", &options, "ami-1")
            .unwrap();

        // Each shortage refuses only the offerings it names, in the order tried.
        assert_eq!(created.refused, options[..2]);
        let instance = &created.instance;
        assert_eq!(instance.offer, options[2]);
        assert_eq!(instance.claim, "general-1-1");
        assert_eq!(instance.image_id, "ami-1");
        assert_eq!(instance.price, 0.096);
        assert_eq!(instance.launched_at, 1_000);
        assert_eq!(instance.state, InstanceState::Running);
        assert!(instance.id.starts_with("sim:///a/i-"), "{}", instance.id);
        assert_eq!(cloud.list(), vec![instance]);
        assert_eq!(cloud.instance(&instance.id), Some(instance));
        assert_eq!((cloud.launches, cloud.insufficient_capacity_errors), (1, 2));
    }

    #[test]
    fn with_every_option_short_nothing_launches_until_the_shortage_ends() {
        let mut cloud = SimCloud::new(config(), &catalog());
        let options = [offer("m5.large", "a", SPOT), offer("m5.large", "b", SPOT)];
        cloud.add_shortage(shortage(None, None, Some(SPOT), 10_000, 70_000));

        // Before the window opens the first option launches.
        let early = cloud.create(9_999, "spot-1", &options, "ami-1").unwrap();
        assert_eq!(early.instance.offer, options[0]);

        assert_eq!(
            cloud.create(10_000, "spot-2", &options, "ami-1"),
            Err(CreateError::InsufficientCapacity(options.to_vec()))
        );
        assert_eq!(
            cloud.create(69_999, "spot-2", &options, "ami-1"),
            Err(CreateError::InsufficientCapacity(options.to_vec()))
        );
        assert_eq!(cloud.list().len(), 1);
        assert_eq!((cloud.launches, cloud.insufficient_capacity_errors), (1, 4));

        // The window is half-open: at its end the offering has capacity again, and the
        // claim's launch, refused before, is its first.
        let late = cloud.create(70_000, "spot-2", &options, "ami-1").unwrap();
        assert_eq!(late.instance.offer, options[0]);
        assert!(late.refused.is_empty());
        assert_eq!(cloud.double_launches, 0);
    }

    #[test]
    fn a_launch_needs_options_the_catalog_offers() {
        let mut cloud = SimCloud::new(config(), &catalog());
        assert_eq!(
            cloud.create(0, "c", &[], "ami-1"),
            Err(CreateError::NoOptions("c".into()))
        );
        assert_eq!(
            cloud.create(0, "c", &[offer("x9.huge", "a", ON_DEMAND)], "ami-1"),
            Err(CreateError::UnknownType("x9.huge".into()))
        );
        // A known type in a zone it is not offered in is no offering either.
        assert_eq!(
            cloud.create(0, "c", &[offer("c5.large", "b", ON_DEMAND)], "ami-1"),
            Err(CreateError::UnknownType("c5.large".into()))
        );
        assert!(cloud.list().is_empty());
        assert_eq!(cloud.next_event_at(), None);
        assert_eq!(cloud.launches, 0);
    }

    /// `CloudProvider::create` launches whenever it is called: not launching twice for one
    /// claim is the loops' job (they adopt what `list` shows). The simulated cloud counts
    /// each repeat so that the simulator can prove the loops never make one.
    #[test]
    fn a_second_launch_for_one_claim_starts_a_second_instance_and_is_counted() {
        let mut cloud = SimCloud::new(config(), &catalog());
        let options = [offer("m5.large", "a", ON_DEMAND)];
        let first = cloud.create(0, "general-1-1", &options, "ami-1").unwrap();
        let other = cloud.create(0, "general-1-2", &options, "ami-1").unwrap();
        assert_eq!(cloud.double_launches, 0);

        let again = cloud
            .create(5_000, "general-1-1", &options, "ami-1")
            .unwrap();
        assert_ne!(again.instance.id, first.instance.id);
        assert_eq!(cloud.double_launches, 1);
        assert_eq!(cloud.launches, 3);
        let mut listed: Vec<(&str, &str)> = cloud
            .list()
            .into_iter()
            .map(|i| (i.claim.as_str(), i.id.as_str()))
            .collect();
        listed.sort();
        let mut expected = vec![
            ("general-1-1", first.instance.id.as_str()),
            ("general-1-1", again.instance.id.as_str()),
            ("general-1-2", other.instance.id.as_str()),
        ];
        expected.sort();
        assert_eq!(listed, expected);
    }

    #[test]
    fn a_node_registers_after_boot_and_registration() {
        let mut cloud = SimCloud::new(config(), &catalog());
        let id = launch(&mut cloud, 1_000, "c", offer("m5.large", "a", ON_DEMAND));
        assert_eq!(cloud.next_event_at(), Some(46_000));
        assert!(cloud.due_events(45_999).is_empty());
        assert_eq!(cloud.due_events(46_000), vec![CloudEvent::Registers(id)]);
        assert_eq!(cloud.next_event_at(), None);
    }

    #[test]
    fn latencies_are_drawn_from_their_ranges_by_the_seed() {
        let registrations = |seed: u64| {
            let config = SimCloudConfig {
                seed,
                ..SimCloudConfig::default()
            };
            (launch_many(config, 50, offer("m5.large", "a", ON_DEMAND)).into_iter())
                .map(|(at, _)| at)
                .collect::<Vec<_>>()
        };
        let defaults = SimCloudConfig::default();
        let (earliest, latest) = (
            defaults.boot.min + defaults.registration.min,
            defaults.boot.max + defaults.registration.max,
        );
        let times = registrations(7);
        assert_eq!(times.len(), 50);
        assert!(times.iter().all(|t| (earliest..=latest).contains(t)));
        // Drawn, not constant: the registrations spread over the range.
        assert!(times.last().unwrap() - times.first().unwrap() > (latest - earliest) / 2);
        assert_eq!(registrations(7), times, "the same seed, the same times");
        assert_ne!(registrations(8), times, "another seed, other times");
    }

    #[test]
    fn a_deleted_instance_shuts_down_and_then_is_gone() {
        let mut cloud = SimCloud::new(config(), &catalog());
        let id = launch(&mut cloud, 0, "c", offer("m5.large", "a", ON_DEMAND));
        cloud.delete(10_000, &id);
        assert_eq!(
            cloud.instance(&id).map(|i| i.state),
            Some(InstanceState::ShuttingDown)
        );
        assert_eq!(cloud.list().len(), 1, "listed until it is gone");
        // A repeated delete neither restarts nor adds to the shutdown.
        cloud.delete(20_000, &id);
        cloud.delete(20_000, "sim:///a/i-unknown");

        // Gone 30 s after the first delete; the kubelet of a shut-down instance never
        // registers (its event, due at 45 s, is dropped), and nothing else is queued.
        assert_eq!(
            drain(&mut cloud, 45_000),
            vec![(40_000, CloudEvent::Gone(id.clone()))]
        );
        assert_eq!(cloud.next_event_at(), None);
        assert!(cloud.list().is_empty());
        assert_eq!(cloud.instance(&id), None);
    }

    #[test]
    fn an_interruption_warns_and_terminates_two_minutes_later() {
        let mut cloud = SimCloud::new(config(), &catalog());
        let id = launch(&mut cloud, 0, "c", offer("m5.large", "a", SPOT));
        assert_eq!(
            drain(&mut cloud, 50_000),
            vec![(45_000, CloudEvent::Registers(id.clone()))]
        );
        cloud.interrupt(60_000, &id);
        assert_eq!(
            cloud.due_events(60_000),
            vec![CloudEvent::InterruptionWarning(id.clone())]
        );
        assert_eq!(cloud.interruptions, 1);
        assert_eq!(
            cloud.instance(&id).map(|i| i.state),
            Some(InstanceState::Running),
            "it runs through the notice"
        );
        assert_eq!(
            drain(&mut cloud, i64::MAX),
            vec![(
                60_000 + INTERRUPTION_NOTICE_MS,
                CloudEvent::Gone(id.clone())
            )]
        );
        assert!(cloud.list().is_empty());

        // An instance already shutting down, or gone, is not interrupted.
        let other = launch(&mut cloud, 200_000, "d", offer("m5.large", "a", SPOT));
        cloud.delete(210_000, &other);
        cloud.interrupt(211_000, &other);
        cloud.interrupt(211_000, &id);
        assert_eq!(
            drain(&mut cloud, i64::MAX),
            vec![(240_000, CloudEvent::Gone(other))]
        );
        assert_eq!(cloud.interruptions, 1);
    }

    #[test]
    fn spot_instances_are_interrupted_at_the_configured_rate_and_on_demand_ones_never() {
        let per_hour = 4.0;
        let mut cloud = SimCloud::new(
            SimCloudConfig {
                spot_interruption_rate: per_hour,
                rebalance_share: 1.0,
                ..config()
            },
            &catalog(),
        );
        let mut spot = BTreeMap::new();
        for n in 0..2_000 {
            let at = n * 1_000;
            let (claim, options) = if n % 2 == 0 {
                (format!("spot-{n}"), [offer("m5.large", "b", SPOT)])
            } else {
                (format!("od-{n}"), [offer("m5.large", "b", ON_DEMAND)])
            };
            let instance = cloud
                .create(at, &claim, &options, "ami-1")
                .unwrap()
                .instance;
            if n % 2 == 0 {
                spot.insert(instance.id, at);
            }
        }
        let mut warned: BTreeMap<String, i64> = BTreeMap::new();
        let mut rebalanced: BTreeMap<String, i64> = BTreeMap::new();
        let mut gone: BTreeMap<String, i64> = BTreeMap::new();
        for (at, event) in drain(&mut cloud, i64::MAX) {
            match event {
                CloudEvent::InterruptionWarning(id) => warned.insert(id, at),
                CloudEvent::RebalanceRecommendation(id) => rebalanced.insert(id, at),
                CloudEvent::Gone(id) => gone.insert(id, at),
                CloudEvent::Registers(_) => None,
            };
        }
        assert_eq!(
            warned.keys().collect::<Vec<_>>(),
            spot.keys().collect::<Vec<_>>()
        );
        assert_eq!(cloud.interruptions, 1_000);
        assert_eq!(cloud.list().len(), 1_000, "the on-demand instances run on");
        let mut hours = 0.0;
        for (id, launched) in &spot {
            let warning = warned[id];
            assert_eq!(gone[id], warning + INTERRUPTION_NOTICE_MS, "{id}");
            // With every interruption announced by a rebalance recommendation: ten
            // minutes ahead, or at launch if it comes sooner.
            assert_eq!(rebalanced[id], (warning - 600_000).max(*launched), "{id}");
            hours += (warning - launched) as f64 / 3_600_000.0;
        }
        // Exponential times to interruption: their mean is one over the rate (a standard
        // error of about 3% over 1,000 instances).
        let mean = hours / spot.len() as f64;
        assert!((mean * per_hour - 1.0).abs() < 0.1, "mean {mean} h");
    }

    #[test]
    fn rebalance_recommendations_precede_only_their_share_of_interruptions() {
        let recommended = |share: f64| {
            let config = SimCloudConfig {
                spot_interruption_rate: 1.0,
                rebalance_share: share,
                ..config()
            };
            (launch_many(config, 1_000, offer("m5.large", "a", SPOT)).into_iter())
                .filter(|(_, e)| matches!(e, CloudEvent::RebalanceRecommendation(_)))
                .count()
        };
        assert_eq!(recommended(0.0), 0);
        assert_eq!(recommended(1.0), 1_000);
        let half = recommended(0.5);
        assert!((400..=600).contains(&half), "{half}");
    }

    #[test]
    fn billing_is_per_second_from_launch_until_gone() {
        let mut cloud = SimCloud::new(config(), &catalog());
        assert_eq!(cloud.cost(1_000_000), 0.0);
        let id = launch(&mut cloud, 0, "c", offer("c5.large", "a", ON_DEMAND));
        cloud
            .create(500_000, "d", &[offer("m5.large", "a", SPOT)], "ami-1")
            .unwrap();
        // c5.large at $3.60/h is a tenth of a cent a second: 1,000 s cost $1. The spot
        // m5.large at $0.03/h, 500 s of it.
        let spot_500s = 0.03 * 500.0 / 3_600.0;
        assert!((cloud.cost(1_000_000) - (1.0 + spot_500s)).abs() < 1e-9);
        assert!((cloud.cost_per_hour() - 3.63).abs() < 1e-9);

        cloud.delete(1_000_000, &id);
        drain(&mut cloud, 1_030_000);
        assert_eq!(cloud.instance(&id), None);
        // Billed through the shutdown, and no further.
        let spot_2000s = 0.03 * 2_000.0 / 3_600.0;
        assert!((cloud.cost(2_500_000) - (1.03 + spot_2000s)).abs() < 1e-9);
        assert!((cloud.cost_per_hour() - 0.03).abs() < 1e-9);
    }

    #[test]
    fn an_empty_cloud_costs_nothing_per_hour_not_minus_nothing() {
        let cloud = SimCloud::new(config(), &catalog());
        let per_hour = cloud.cost_per_hour();
        assert_eq!(per_hour, 0.0);
        assert!(per_hour.is_sign_positive());
        assert_eq!(format!("{per_hour}"), "0");
    }
}
