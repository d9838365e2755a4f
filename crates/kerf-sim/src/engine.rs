//! The discrete-event loop. Virtual time advances in one-second ticks (milliseconds
//! throughout); each tick runs, in order: timeline events due, cloud events due (nodes
//! registering, interruption warnings, instances gone), cluster timers (nodes becoming
//! ready, startup taints removed, Jobs finishing, workload curves), one autoscaler step
//! with the actions it returns performed, and the kube-scheduler model. Samples for the
//! report are taken every `sample_interval`. With `RunOptions::wake_driven` the
//! autoscaler steps only as `kerf controller` steps it: when the view changed since its
//! last step, on events, or at its `next_wake`.

use std::collections::BTreeMap;

use kerf_cloud::{CloudProvider, InstanceState, SimCloud};
use kerf_controllers::{Action, ClusterView, Config, Controller, Event};
use kerf_model::{Resources, labels};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::cluster::{Cluster, Timer, workload_key};
use crate::report::{PendingStats, Sample, SimReport};
use crate::scenario::{Happening, Scenario, Selection};

/// An autoscaler the engine can drive: kerf's control loops, or another over the same
/// cluster and cloud. `now` is milliseconds since the start; `view` is the cluster as
/// it stands; `events` are the notifications since the last step. It returns actions
/// for the cluster to perform.
pub trait Autoscaler {
    /// `kerf`, `node-groups`, ...: the report's `autoscaler`.
    fn name(&self) -> &str;
    fn step(&mut self, now: i64, view: &ClusterView, events: &[Event]) -> Vec<Action>;
    /// Drop every bit of in-memory state, as a process restart would.
    fn restart(&mut self);
    /// When the autoscaler next needs a step on an unchanged view, if it says
    /// (`RunOptions::wake_driven`); `None` steps it every tick.
    fn next_wake(&self, _now: i64, _view: &ClusterView) -> Option<i64> {
        None
    }
}

/// kerf's control loops.
pub struct Kerf {
    config: Config,
    controller: Controller,
}

impl Kerf {
    /// The loops with Karpenter's default timings and the scenario's settings.
    pub fn for_scenario(scenario: &Scenario) -> Kerf {
        let mut config = Config {
            epoch_secs: scenario.epoch_secs,
            batch_idle_ms: scenario.batch_idle_ms,
            batch_max_ms: scenario.batch_max_ms,
            ..Config::default()
        };
        config.disruption.spot_to_spot = scenario.spot_to_spot;
        Kerf {
            controller: Controller::new(config.clone()),
            config,
        }
    }
}

impl Autoscaler for Kerf {
    fn name(&self) -> &str {
        "kerf"
    }

    fn step(&mut self, now: i64, view: &ClusterView, events: &[Event]) -> Vec<Action> {
        self.controller.step(now, view, events)
    }

    fn restart(&mut self) {
        self.controller = Controller::new(self.config.clone());
    }

    fn next_wake(&self, now: i64, view: &ClusterView) -> Option<i64> {
        Some(self.controller.next_wake(now, view))
    }
}

/// How a run is watched and disturbed.
#[derive(Default)]
pub struct RunOptions<'a> {
    /// Virtual times (ms) at which the autoscaler restarts, losing its memory.
    pub restarts: Vec<i64>,
    /// Called now and then with (now, duration), for a progress bar.
    pub progress: Option<&'a mut dyn FnMut(i64, i64)>,
    /// Step the autoscaler as `kerf controller` does, not every tick: when the view has
    /// changed since its last step (its own actions included), when there are events,
    /// or when its `next_wake` has come. A deadline a loop forgets to ask for then
    /// shows as work done late or never.
    pub wake_driven: bool,
}

/// A finished run: the report, and what tests look at besides.
#[derive(Debug)]
pub struct Run {
    pub report: SimReport,
    /// Kubernetes events the autoscaler recorded, by reason (e.g.
    /// `ConsolidationRejected`, `InsufficientCapacityError`).
    pub recorded: BTreeMap<String, u64>,
    /// NodeClaim deletions by reason, disruptions or not (`registration-timeout`, ...).
    pub claim_deletions: BTreeMap<String, u64>,
    /// NodeClaim deletions by NodePool, then reason.
    pub deletions_by_pool: BTreeMap<String, BTreeMap<String, u64>>,
    /// The cluster as it stood at the end.
    pub end: ClusterView,
    /// How many times the autoscaler stepped.
    pub steps: u64,
}

const TICK_MS: i64 = 1_000;

pub fn run(
    scenario: &Scenario,
    autoscaler: &mut dyn Autoscaler,
    mut options: RunOptions<'_>,
) -> Run {
    let view = ClusterView {
        instance_types: scenario.instance_types.clone(),
        ..ClusterView::default()
    };
    let cloud = SimCloud::new(scenario.cloud.clone(), &scenario.instance_types);
    let mut cluster = Cluster::new(view, cloud, scenario.epoch_secs);
    let mut rng = ChaCha8Rng::seed_from_u64(scenario.seed ^ 0x5eed);
    cluster.apply(0, &scenario.initial);

    let mut report = SimReport {
        scenario: scenario.name.clone(),
        autoscaler: autoscaler.name().to_string(),
        seed: scenario.seed,
        duration_secs: scenario.duration_ms / 1000,
        sample_interval_secs: scenario.sample_interval_ms / 1000,
        ..SimReport::default()
    };
    let mut claim_deletions: BTreeMap<String, u64> = BTreeMap::new();
    let mut deletions_by_pool: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut next_timeline = 0;
    let mut restarts = options.restarts.clone();
    restarts.sort();
    let mut next_restart = 0;
    // The view's generation at the autoscaler's last step, and when it asked to be
    // woken (`RunOptions::wake_driven`).
    let mut asleep: Option<(u64, i64)> = None;
    let mut steps = 0;
    let mut now = 0;
    while now <= scenario.duration_ms {
        while next_timeline < scenario.timeline.len() && scenario.timeline[next_timeline].0 <= now {
            happen(
                now,
                &scenario.timeline[next_timeline].1,
                &mut cluster,
                &mut rng,
            );
            next_timeline += 1;
        }
        cluster.cloud_events(now);
        while let Some(entry) = cluster.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let timer = entry.remove();
            cluster.fire(now, timer);
        }
        while next_restart < restarts.len() && restarts[next_restart] <= now {
            autoscaler.restart();
            asleep = None;
            next_restart += 1;
        }
        let events = std::mem::take(&mut cluster.events);
        if options.wake_driven
            && events.is_empty()
            && asleep.is_some_and(|(generation, wake)| {
                generation == cluster.view.generation && now < wake
            })
        {
            tick(now, scenario, &mut cluster, &mut report, &mut options);
            now += TICK_MS;
            continue;
        }
        let seen = cluster.view.generation;
        steps += 1;
        let actions = autoscaler.step(now, &cluster.view, &events);
        for a in &actions {
            if let Action::DeleteClaim { claim, reason } = a
                && let Some(c) = cluster.view.claims.get(claim)
                && c.deleting_since.is_none()
            {
                let reason = reason.kind().to_string();
                *deletions_by_pool
                    .entry(c.nodepool.clone())
                    .or_default()
                    .entry(reason.clone())
                    .or_default() += 1;
                *claim_deletions.entry(reason).or_default() += 1;
            }
        }
        cluster.perform(now, actions);
        asleep = autoscaler
            .next_wake(now, &cluster.view)
            .map(|wake| (seen, wake));
        tick(now, scenario, &mut cluster, &mut report, &mut options);
        now += TICK_MS;
    }
    let end = scenario.duration_ms;
    report.total_cost = cluster.cloud.cost(end);
    report.pending = PendingStats::from_waits(std::mem::take(&mut cluster.counters.waits));
    report.disruptions = std::mem::take(&mut cluster.counters.disruptions);
    report.evictions = cluster.counters.evictions;
    report.pdb_violations = cluster.counters.pdb_violations;
    report.do_not_disrupt_violations = cluster.counters.do_not_disrupt_violations;
    report.leaked_instances = cluster
        .cloud
        .list()
        .iter()
        .filter(|i| {
            i.state == InstanceState::Running && !cluster.view.claims.contains_key(&i.claim)
        })
        .count() as u64;
    report.double_launches = cluster.cloud.double_launches;
    report.launches = cluster.cloud.launches;
    report.insufficient_capacity_errors = cluster.cloud.insufficient_capacity_errors;
    report.pending_at_end = cluster.view.pending.len() as u64;
    Run {
        report,
        recorded: std::mem::take(&mut cluster.counters.recorded),
        claim_deletions,
        deletions_by_pool,
        end: cluster.view,
        steps,
    }
}

/// The end of each tick, whether the autoscaler stepped or not: kube-scheduler binds,
/// and the report samples.
fn tick(
    now: i64,
    scenario: &Scenario,
    cluster: &mut Cluster,
    report: &mut SimReport,
    options: &mut RunOptions<'_>,
) {
    if cluster.sched_dirty && !cluster.view.pending.is_empty() {
        cluster.sched_dirty = false;
        bind(now, cluster);
    }
    if now % scenario.sample_interval_ms == 0 {
        report.samples.push(sample(now, cluster));
    }
    if let Some(progress) = options.progress.as_mut()
        && now % 600_000 == 0
    {
        progress(now, scenario.duration_ms);
    }
}

fn happen(now: i64, happening: &Happening, cluster: &mut Cluster, rng: &mut ChaCha8Rng) {
    match happening {
        Happening::Apply(m) => cluster.apply(now, m),
        Happening::Delete {
            kind,
            namespace,
            name,
        } => cluster.delete_object(now, kind, namespace, name),
        Happening::Scale { workload, replicas } => {
            if let Some(key) = cluster.find_workload(workload) {
                cluster.scale(now, &key, *replicas);
            }
        }
        Happening::Curve { workload, curve } => {
            if let Some(key) = cluster.find_workload(workload)
                && let Some(w) = cluster.workloads.get_mut(&key)
            {
                w.curve = Some(curve.clone());
                cluster.fire(now, Timer::Curve(key));
            }
        }
        Happening::PublishAmi { nodeclass, image } => {
            let images = cluster
                .view
                .node_class_images
                .entry(nodeclass.clone())
                .or_default();
            images.retain(|i| i != image);
            images.insert(0, image.clone());
            // The class resolves to the new image only, as `amiSelectorTerms` with
            // `@latest` would.
            images.truncate(1);
            cluster.view.generation += 1;
        }
        Happening::Interrupt(selection) | Happening::Maintenance(selection) => {
            let chosen = select(cluster, selection, rng);
            for id in chosen {
                if matches!(happening, Happening::Interrupt(_)) {
                    cluster.cloud.interrupt(now, &id);
                } else {
                    cluster
                        .events
                        .push(Event::ScheduledMaintenance { instance_id: id });
                }
            }
        }
        Happening::Shortage(shortage) => cluster.cloud.add_shortage(shortage.clone()),
    }
}

fn select(cluster: &Cluster, selection: &Selection, rng: &mut ChaCha8Rng) -> Vec<String> {
    let mut ids: Vec<String> = cluster
        .cloud
        .list()
        .into_iter()
        .filter(|i| i.state == InstanceState::Running)
        .filter(|i| {
            selection
                .capacity_type
                .as_deref()
                .is_none_or(|c| c == i.offer.capacity_type)
        })
        .filter(|i| {
            selection.nodepool.as_deref().is_none_or(|p| {
                cluster
                    .view
                    .claims
                    .get(&i.claim)
                    .is_some_and(|c| c.nodepool == p)
            })
        })
        .map(|i| i.id.clone())
        .collect();
    ids.shuffle(rng);
    ids.truncate(selection.count as usize);
    ids
}

fn bind(now: i64, cluster: &mut Cluster) {
    let placements = crate::scheduler::schedule(&cluster.view);
    for (key, node) in placements {
        let Some(state) = cluster.view.pods.get(&key) else {
            continue;
        };
        let wait = (now - state.created_at) as f64 / 1000.0;
        cluster.counters.waits.push(wait);
        cluster.view.bind_pod(&key, &node);
        let wkey = workload_key(&cluster.view.pods[&key].pod);
        if let Some((duration, _)) = cluster.workloads.get(&wkey).and_then(|w| w.job) {
            cluster.at(now + duration, Timer::JobDone(key));
        }
    }
}

fn sample(now: i64, cluster: &Cluster) -> Sample {
    let view = &cluster.view;
    let mut s = Sample {
        t: now / 1000,
        cost_per_hour: cluster.cloud.cost_per_hour(),
        pending_pods: view.pending.len() as u32,
        running_pods: cluster.running() as u32,
        ..Sample::default()
    };
    let mut requested = Resources::new();
    let mut allocatable = Resources::new();
    for node in view.nodes.values() {
        let pool = node.nodepool().unwrap_or("(unmanaged)");
        let ct = node
            .labels
            .get(labels::CAPACITY_TYPE)
            .map_or("on-demand", String::as_str);
        *s.nodes.entry(format!("{pool}/{ct}")).or_default() += 1;
        if !node.ready {
            continue;
        }
        allocatable.add(&node.allocatable);
        for p in view.pods_on(&node.name) {
            requested.add(&p.pod.requests);
        }
    }
    let cpu = |r: &Resources| r.get("cpu").0 as f64 / 1000.0;
    let gib = |r: &Resources| r.get("memory").0 as f64 / 1000.0 / 1_073_741_824.0;
    s.cpu_requested = cpu(&requested);
    s.cpu_allocatable = cpu(&allocatable);
    s.memory_requested_gib = gib(&requested);
    s.memory_allocatable_gib = gib(&allocatable);
    s
}
