//! Karpenter's scheduling benchmark (`scheduling_benchmark_test.go` in
//! kubernetes-sigs/karpenter), rebuilt from its documented construction so kerf runs the
//! same shape of work.
//!
//! - 400 instance types: type `i` has `i+1` vCPU, `2(i+1)` GiB and `10(i+1)` pods, five
//!   offerings (spot in two zones, on-demand in three), priced `0.1·vCPU + 0.1·GiB`, as
//!   Karpenter's `fake.InstanceTypes(400)`.
//! - One NodePool with no requirements.
//! - Pods in five equal classes: no constraints; zone topology spread (maxSkew 1,
//!   DoNotSchedule); hostname topology spread; zone self-affinity over 7 label values;
//!   hostname anti-affinity over one shared label. CPU from {100, 250, 500, 1000, 1500}m
//!   and memory from {100, 256, 512, 1024, 2048, 4096}Mi, drawn from a fixed seed.
//!
//! With `preferences`, the same classes carry soft constraints instead (ScheduleAnyway
//! spreads, preferred (anti-)affinity) plus a preferred zone, so the relaxation path runs.

use kerf_model::pod::{
    AffinityTerm, InclusionPolicy, NamespaceScope, TopologySpread, Weighted, WhenUnsatisfiable,
};
use kerf_model::resources::{CPU, MEMORY, PODS};
use kerf_model::{
    InstanceType, LabelSelector, Labels, NodePool, Offering, Pod, Quantity, Requirement,
    Requirements, Resources, labels,
};
use kerf_scheduling::Input;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Karpenter's benchmark uses `rand.NewSource(42)`; the seed is kept, the generator is not
/// Go's, so the draws differ but their distribution is the same.
pub const SEED: u64 = 42;
pub const INSTANCE_TYPES: usize = 400;
pub const NAMESPACE: &str = "default";
const LABEL: &str = "my-label";
const AFFINITY_LABEL: &str = "my-affinity";
const VALUES: [&str; 7] = ["a", "b", "c", "d", "e", "f", "g"];
const CPU_MILLI: [i64; 5] = [100, 250, 500, 1000, 1500];
const MEMORY_MIB: [i64; 6] = [100, 256, 512, 1024, 2048, 4096];
const SPOT_ZONES: [&str; 2] = ["test-zone-1", "test-zone-2"];
const ON_DEMAND_ZONES: [&str; 3] = ["test-zone-1", "test-zone-2", "test-zone-3"];

/// The five pod classes, in the order pods are generated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Generic,
    ZoneSpread,
    HostnameSpread,
    ZoneAffinity,
    HostnameAntiAffinity,
}

pub const CLASSES: [Class; 5] = [
    Class::Generic,
    Class::ZoneSpread,
    Class::HostnameSpread,
    Class::ZoneAffinity,
    Class::HostnameAntiAffinity,
];

/// Karpenter's `fake.InstanceTypes(n)`.
pub fn instance_types(n: usize) -> Vec<InstanceType> {
    (0..n)
        .map(|i| {
            let vcpu = i as i64 + 1;
            let gib = 2 * vcpu;
            let name = format!("fake-it-{i}");
            let mut capacity = Resources::new();
            capacity.set(CPU, Quantity::from_units(vcpu));
            capacity.set(MEMORY, Quantity::from_units(gib << 30));
            capacity.set(PODS, Quantity::from_units(10 * vcpu));
            let price = 0.1 * vcpu as f64 + 0.1 * gib as f64;
            let offering = |zone: &str, capacity_type: &str| Offering {
                zone: zone.into(),
                capacity_type: capacity_type.into(),
                price,
                price_is_estimate: false,
                available: true,
            };
            let offerings = SPOT_ZONES
                .iter()
                .map(|z| offering(z, labels::CAPACITY_TYPE_SPOT))
                .chain(
                    ON_DEMAND_ZONES
                        .iter()
                        .map(|z| offering(z, labels::CAPACITY_TYPE_ON_DEMAND)),
                )
                .collect();
            let labels: Labels = [
                (labels::INSTANCE_TYPE, name.clone()),
                (labels::ARCH, "amd64".to_string()),
                (labels::OS, "linux".to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            InstanceType {
                name,
                labels,
                capacity,
                overhead: Resources::new(),
                offerings,
            }
        })
        .collect()
}

/// The benchmark's input for `pods` pods.
pub fn input(pods: usize, preferences: bool) -> Input {
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let per_class = pods / CLASSES.len();
    let mut out = Vec::with_capacity(pods);
    for class in CLASSES {
        for _ in 0..per_class {
            out.push(pod(&mut rng, out.len(), class, preferences));
        }
    }
    // The remainder, as Karpenter's `makeDiversePods` does, is generic.
    while out.len() < pods {
        out.push(pod(&mut rng, out.len(), Class::Generic, preferences));
    }
    Input {
        pods: out,
        nodepools: vec![NodePool::new("default")],
        instance_types: instance_types(INSTANCE_TYPES),
        ..Input::default()
    }
}

fn pod(rng: &mut ChaCha8Rng, index: usize, class: Class, soft: bool) -> Pod {
    let cpu = CPU_MILLI[rng.random_range(0..CPU_MILLI.len())];
    let mem = MEMORY_MIB[rng.random_range(0..MEMORY_MIB.len())];
    let mut requests = Resources::new();
    requests.set(CPU, Quantity::from_milli(cpu));
    requests.set(MEMORY, Quantity::from_units(mem << 20));
    requests.set(PODS, Quantity::from_units(1));
    let mut pod = Pod::new(NAMESPACE, &format!("pod-{index}"), requests);
    let value = VALUES[rng.random_range(0..VALUES.len())];
    let when_unsatisfiable = if soft {
        WhenUnsatisfiable::ScheduleAnyway
    } else {
        WhenUnsatisfiable::DoNotSchedule
    };
    let spread = |key: &str, value: &str| TopologySpread {
        max_skew: 1,
        topology_key: key.into(),
        when_unsatisfiable,
        selector: selector(LABEL, value),
        min_domains: None,
        node_affinity_policy: InclusionPolicy::Honor,
        node_taints_policy: InclusionPolicy::Ignore,
    };
    let term = |label: &str, value: &str, key: &str| AffinityTerm {
        selector: selector(label, value),
        namespaces: NamespaceScope::own(NAMESPACE),
        topology_key: key.into(),
    };
    match class {
        Class::Generic => {
            pod.labels.insert(LABEL.into(), value.into());
        }
        Class::ZoneSpread | Class::HostnameSpread => {
            let key = if class == Class::ZoneSpread {
                labels::ZONE
            } else {
                labels::HOSTNAME
            };
            // Distinct label keys per class keep the two spread populations apart.
            let label = format!(
                "{LABEL}-{}",
                if class == Class::ZoneSpread {
                    "zone"
                } else {
                    "host"
                }
            );
            pod.labels.insert(label.clone(), value.into());
            let mut s = spread(key, value);
            s.selector = selector(&label, value);
            pod.topology_spread.push(s);
        }
        Class::ZoneAffinity => {
            pod.labels.insert(AFFINITY_LABEL.into(), value.into());
            let t = term(AFFINITY_LABEL, value, labels::ZONE);
            if soft {
                pod.preferred_affinity.push(Weighted {
                    weight: 50,
                    term: t,
                });
            } else {
                pod.affinity.push(t);
            }
        }
        Class::HostnameAntiAffinity => {
            pod.labels.insert("app".into(), "nginx".into());
            let t = term("app", "nginx", labels::HOSTNAME);
            if soft {
                pod.preferred_anti_affinity.push(Weighted {
                    weight: 50,
                    term: t,
                });
            } else {
                pod.anti_affinity.push(t);
            }
        }
    }
    if soft {
        // A preference every pod can have satisfied or relaxed: the cheapest zone first.
        let mut zone = Requirements::new();
        zone.add(
            labels::ZONE,
            Requirement::single(ON_DEMAND_ZONES[index % 3]),
        );
        pod.node_affinity.preferred.push(Weighted {
            weight: 10,
            term: zone,
        });
    }
    pod
}

fn selector(key: &str, value: &str) -> LabelSelector {
    let mut l = Labels::new();
    l.insert(key.into(), value.into());
    LabelSelector::from_match_labels(&l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_types_follow_karpenters_fake_catalog() {
        let types = instance_types(INSTANCE_TYPES);
        assert_eq!(types.len(), 400);
        let last = &types[399];
        assert_eq!(last.capacity.get(CPU), Quantity::from_units(400));
        assert_eq!(last.capacity.get(MEMORY), Quantity::from_units(800 << 30));
        assert_eq!(last.capacity.get(PODS), Quantity::from_units(4000));
        assert_eq!(last.offerings.len(), 5);
        assert!((types[0].offerings[0].price - 0.3).abs() < 1e-9);
    }

    #[test]
    fn pods_split_into_five_equal_classes_with_a_generic_remainder() {
        let input = input(12, false);
        assert_eq!(input.pods.len(), 12);
        let spreads = input
            .pods
            .iter()
            .filter(|p| !p.topology_spread.is_empty())
            .count();
        let affine = input.pods.iter().filter(|p| !p.affinity.is_empty()).count();
        let anti = input
            .pods
            .iter()
            .filter(|p| !p.anti_affinity.is_empty())
            .count();
        assert_eq!((spreads, affine, anti), (4, 2, 2));
        // Same seed, same pods.
        assert_eq!(input.pods, self::input(12, false).pods);
    }
}
