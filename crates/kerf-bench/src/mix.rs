//! The `cost` suite's workloads: a realistic cluster's pending pods on the `aws` catalog.
//!
//! A mix is a list of Deployments drawn from a fixed seed, each with one request shape
//! shared by all its replicas (as real Deployments have), until the pod count is reached.
//! Five archetypes, chosen per Deployment with these weights:
//!
//! | archetype | weight | replicas | cpu | memory |
//! |---|---|---|---|---|
//! | web front-end | 35 | 3–40 | 250m, 500m, 1 | 512Mi, 1Gi, 2Gi |
//! | API service | 25 | 2–30 | 500m, 1, 2 | 1Gi, 2Gi, 4Gi |
//! | memory-heavy cache (redis, memcached) | 12 | 3–12 | 1, 2 | 8Gi, 16Gi, 32Gi |
//! | batch job | 20 | 5–40 | 2, 4, 8 | 4Gi, 8Gi, 16Gi |
//! | large GPU-free pod (JVM analytics, search) | 8 | 1–3 | 16/64Gi, 32/128Gi, 8/120Gi | |
//!
//! In expectation that is 44 % of pods web, 23 % API, 5 % cache, 26 % batch and 1 % large;
//! by requested CPU, batch jobs are about 60 % and large pods about 9 %.
//!
//! The pool is Karpenter's default shape (`NodePool::new("default")`: any type of the
//! catalog, on-demand), and two DaemonSets run on every node: a node exporter
//! (100m, 180Mi) and a log agent (100m, 256Mi).
//!
//! With `spread`, web, API and cache Deployments carry a zone topology spread constraint
//! (`maxSkew: 1`, `DoNotSchedule`, selecting their own `app` label), as HA services do;
//! batch jobs and large pods do not.

use kerf_model::pod::{InclusionPolicy, Owner, TopologySpread, WhenUnsatisfiable};
use kerf_model::resources::{CPU, MEMORY, PODS};
use kerf_model::{LabelSelector, Labels, NodePool, Pod, Quantity, Resources, labels};
use kerf_scheduling::Input;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The seed every mix is drawn from.
pub const SEED: u64 = 20_261_124;
pub const NAMESPACE: &str = "default";
/// The catalog the suite runs on.
pub const CATALOG: &str = "aws";

const MI: i64 = 1 << 20;
const GI: i64 = 1 << 30;

/// A kind of Deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Archetype {
    Web,
    Api,
    Cache,
    Batch,
    Large,
}

impl Archetype {
    pub fn name(self) -> &'static str {
        match self {
            Archetype::Web => "web",
            Archetype::Api => "api",
            Archetype::Cache => "cache",
            Archetype::Batch => "batch",
            Archetype::Large => "large",
        }
    }

    /// Relative weight when a Deployment's archetype is drawn.
    fn weight(self) -> u32 {
        match self {
            Archetype::Web => 35,
            Archetype::Api => 25,
            Archetype::Cache => 12,
            Archetype::Batch => 20,
            Archetype::Large => 8,
        }
    }

    fn replicas(self) -> (usize, usize) {
        match self {
            Archetype::Web => (3, 40),
            Archetype::Api => (2, 30),
            Archetype::Cache => (3, 12),
            Archetype::Batch => (5, 40),
            Archetype::Large => (1, 3),
        }
    }

    /// `(cpu in millicores, memory in bytes)` choices. Most archetypes draw CPU and memory
    /// independently; large pods come in fixed shapes.
    fn shape(self, rng: &mut ChaCha8Rng) -> (i64, i64) {
        let pick = |rng: &mut ChaCha8Rng, xs: &[i64]| xs[rng.random_range(0..xs.len())];
        match self {
            Archetype::Web => (
                pick(rng, &[250, 500, 1000]),
                pick(rng, &[512 * MI, GI, 2 * GI]),
            ),
            Archetype::Api => (
                pick(rng, &[500, 1000, 2000]),
                pick(rng, &[GI, 2 * GI, 4 * GI]),
            ),
            Archetype::Cache => (
                pick(rng, &[1000, 2000]),
                pick(rng, &[8 * GI, 16 * GI, 32 * GI]),
            ),
            Archetype::Batch => (
                pick(rng, &[2000, 4000, 8000]),
                pick(rng, &[4 * GI, 8 * GI, 16 * GI]),
            ),
            Archetype::Large => {
                [(16_000, 64 * GI), (32_000, 128 * GI), (8_000, 120 * GI)][rng.random_range(0..3)]
            }
        }
    }

    fn spreads(self) -> bool {
        matches!(self, Archetype::Web | Archetype::Api | Archetype::Cache)
    }
}

pub const ARCHETYPES: [Archetype; 5] = [
    Archetype::Web,
    Archetype::Api,
    Archetype::Cache,
    Archetype::Batch,
    Archetype::Large,
];

/// The mix's input: `pods` pending pods on the `aws` catalog, with zone spread on the HA
/// archetypes when `spread` is set. The same arguments give the same input.
pub fn input(pods: usize, spread: bool) -> Input {
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let total_weight: u32 = ARCHETYPES.iter().map(|a| a.weight()).sum();
    let mut out: Vec<Pod> = Vec::with_capacity(pods);
    let mut deployment = 0;
    while out.len() < pods {
        let mut draw = rng.random_range(0..total_weight);
        let archetype = ARCHETYPES
            .into_iter()
            .find(|a| {
                if draw < a.weight() {
                    true
                } else {
                    draw -= a.weight();
                    false
                }
            })
            .expect("the draw is below the total weight");
        let (lo, hi) = archetype.replicas();
        let replicas = rng.random_range(lo..=hi).min(pods - out.len());
        let (cpu, memory) = archetype.shape(&mut rng);
        let app = format!("{}-{deployment}", archetype.name());
        for replica in 0..replicas {
            let mut requests = Resources::new();
            requests.set(CPU, Quantity::from_milli(cpu));
            requests.set(MEMORY, Quantity::from_units(memory));
            requests.set(PODS, Quantity::from_units(1));
            let mut pod = Pod::new(NAMESPACE, &format!("{app}-{replica}"), requests);
            pod.labels.insert("app".into(), app.clone());
            pod.owner = Some(Owner {
                kind: "ReplicaSet".into(),
                name: app.clone(),
            });
            if spread && archetype.spreads() {
                pod.topology_spread.push(zone_spread(&app));
            }
            out.push(pod);
        }
        deployment += 1;
    }
    Input {
        pods: out,
        nodepools: vec![NodePool::new("default")],
        instance_types: kerf_model::catalog::by_name(CATALOG).expect("the aws catalog is built in"),
        daemonsets: daemonsets(),
        ..Input::default()
    }
}

/// A node exporter and a log agent, on every node.
pub fn daemonsets() -> Vec<Pod> {
    [
        ("node-exporter", 100, 180 * MI),
        ("log-agent", 100, 256 * MI),
    ]
    .into_iter()
    .map(|(name, cpu, memory)| {
        let mut requests = Resources::new();
        requests.set(CPU, Quantity::from_milli(cpu));
        requests.set(MEMORY, Quantity::from_units(memory));
        requests.set(PODS, Quantity::from_units(1));
        let mut pod = Pod::new("kube-system", name, requests);
        pod.owner = Some(Owner {
            kind: "DaemonSet".into(),
            name: name.into(),
        });
        pod
    })
    .collect()
}

fn zone_spread(app: &str) -> TopologySpread {
    let mut l = Labels::new();
    l.insert("app".into(), app.into());
    TopologySpread {
        max_skew: 1,
        topology_key: labels::ZONE.into(),
        when_unsatisfiable: WhenUnsatisfiable::DoNotSchedule,
        selector: LabelSelector::from_match_labels(&l),
        min_domains: None,
        node_affinity_policy: InclusionPolicy::Honor,
        node_taints_policy: InclusionPolicy::Ignore,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mix_has_the_requested_pods_and_is_deterministic() {
        let a = input(500, true);
        assert_eq!(a.pods.len(), 500);
        assert_eq!(a.pods, input(500, true).pods);
        let spread = a
            .pods
            .iter()
            .filter(|p| !p.topology_spread.is_empty())
            .count();
        assert!(spread > 0 && spread < 500, "{spread} of 500 spread");
        assert!(
            input(500, false)
                .pods
                .iter()
                .all(|p| p.topology_spread.is_empty())
        );
    }

    #[test]
    fn every_archetype_appears_in_a_thousand_pods() {
        let mix = input(1000, false);
        for a in ARCHETYPES {
            let prefix = format!("{}-", a.name());
            assert!(
                mix.pods.iter().any(|p| p.key.name.starts_with(&prefix)),
                "no {} pods",
                a.name()
            );
        }
    }
}
