//! The `kwok` catalog: the generic instance types of Karpenter's own kwok provider, so that a
//! scenario written for Karpenter's kwok test clusters schedules onto the same machines here.
//!
//! It follows `kwok/tools/gen_instance_types.go` and `kwok/cloudprovider/helpers.go` in
//! kubernetes-sigs/karpenter: families `c`, `s` and `m` with 2, 4 and 8 GiB per vCPU; 1 to 256
//! vCPUs; amd64 and arm64; four zones `test-zone-a` … `test-zone-d`; on-demand and spot, spot at
//! 0.7 × on-demand; price `0.025 × vCPU + 0.001 × memory bytes / 10⁹`; pods `min(16 × vCPU, 1024)`;
//! 20 GiB of ephemeral storage; kube-reserved 100m CPU and 10 MiB memory. Karpenter also
//! generates a Windows twin of every type; kerf leaves those out, since its simulator runs only
//! Linux nodes.

use crate::labels;
use crate::resources::{CPU, EPHEMERAL_STORAGE, MEMORY, PODS};
use crate::selector::Labels;
use crate::{InstanceType, Offering, Quantity, Resources};

/// Karpenter's kwok provider labels (`kwok/apis/v1alpha1/labels.go`, group `karpenter.kwok.sh`).
pub const INSTANCE_SIZE: &str = "karpenter.kwok.sh/instance-size";
pub const INSTANCE_FAMILY: &str = "karpenter.kwok.sh/instance-family";
pub const INSTANCE_CPU: &str = "karpenter.kwok.sh/instance-cpu";
pub const INSTANCE_MEMORY: &str = "karpenter.kwok.sh/instance-memory";

/// The zones every instance type is offered in (`KwokZones`).
pub const ZONES: [&str; 4] = ["test-zone-a", "test-zone-b", "test-zone-c", "test-zone-d"];

/// The vCPU counts Karpenter generates.
pub const VCPUS: [i64; 12] = [1, 2, 4, 8, 16, 32, 48, 64, 96, 128, 192, 256];

/// Families by GiB of memory per vCPU: `c`ompute, `s`tandard, `m`emory.
const FAMILIES: [(&str, i64); 3] = [("c", 2), ("s", 4), ("m", 8)];

const ARCHES: [&str; 2] = ["amd64", "arm64"];

/// The spot price as a fraction of on-demand, for every type and zone alike.
pub const SPOT_PRICE_FACTOR: f64 = 0.7;

/// All instance types of the catalog, sorted by name.
pub fn instance_types() -> Vec<InstanceType> {
    let mut types = Vec::with_capacity(VCPUS.len() * FAMILIES.len() * ARCHES.len());
    for vcpus in VCPUS {
        for (family, gib_per_vcpu) in FAMILIES {
            for arch in ARCHES {
                types.push(instance_type(vcpus, family, gib_per_vcpu, arch));
            }
        }
    }
    types.sort_by(|a, b| a.name.cmp(&b.name));
    types
}

fn instance_type(vcpus: i64, family: &str, gib_per_vcpu: i64, arch: &str) -> InstanceType {
    // Karpenter's `makeGenericInstanceTypeName`: family, vCPUs with an `x`, arch, OS.
    let name = format!("{family}-{vcpus}x-{arch}-linux");
    let memory_bytes = (vcpus * gib_per_vcpu) << 30;
    let memory = Quantity::from_units(memory_bytes);
    let pods = (vcpus * 16).clamp(0, 1024);

    // `setDefaultOptions` labels size and CPU with the CPU quantity's string and memory with
    // the memory quantity's canonical string (`8Gi`, `1Ti`); the size falls back to the CPU
    // count because these names are not in AWS's `family.size` form.
    let labels: Labels = [
        (labels::INSTANCE_TYPE, name.clone()),
        (labels::ARCH, arch.to_string()),
        (labels::OS, "linux".to_string()),
        (INSTANCE_SIZE, vcpus.to_string()),
        (INSTANCE_FAMILY, family.to_string()),
        (INSTANCE_CPU, vcpus.to_string()),
        (INSTANCE_MEMORY, memory.to_bytes_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();

    let mut capacity = Resources::new();
    capacity.set(CPU, Quantity::from_units(vcpus));
    capacity.set(MEMORY, memory);
    capacity.set(PODS, Quantity::from_units(pods));
    capacity.set(EPHEMERAL_STORAGE, Quantity::from_units(20 << 30));

    let price = price(vcpus, memory_bytes);
    let mut offerings = Vec::with_capacity(ZONES.len() * 2);
    for zone in ZONES {
        // Karpenter lists spot before on-demand in each zone.
        offerings.push(Offering {
            zone: zone.to_string(),
            capacity_type: labels::CAPACITY_TYPE_SPOT.to_string(),
            price: price * SPOT_PRICE_FACTOR,
            price_is_estimate: true,
            available: true,
        });
        offerings.push(Offering {
            zone: zone.to_string(),
            capacity_type: labels::CAPACITY_TYPE_ON_DEMAND.to_string(),
            price,
            price_is_estimate: false,
            available: true,
        });
    }

    // `newInstanceType` sets only kube-reserved; no system-reserved, no eviction threshold.
    let mut overhead = Resources::new();
    overhead.set(CPU, Quantity::from_milli(100));
    overhead.set(MEMORY, Quantity::from_units(10 << 20));

    InstanceType {
        name,
        labels,
        capacity,
        overhead,
        offerings,
    }
}

/// Karpenter's `priceFromResources`: 2.5 ¢ per vCPU-hour plus 0.1 ¢ per GB-hour of memory
/// (decimal GB of the binary quantity). The float expression keeps Go's operation order so the
/// prices are bit-for-bit those in Karpenter's generated `instance_types.json`; they are not
/// rounded, for the same reason.
fn price(vcpus: i64, memory_bytes: i64) -> f64 {
    0.025 * vcpus as f64 + 0.001 * memory_bytes as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'a>(types: &'a [InstanceType], name: &str) -> &'a InstanceType {
        types
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("{name} is not in the catalog"))
    }

    fn price_of(t: &InstanceType, capacity_type: &str) -> f64 {
        t.offerings
            .iter()
            .find(|o| o.capacity_type == capacity_type)
            .map(|o| o.price)
            .unwrap()
    }

    #[test]
    fn has_every_size_family_and_arch() {
        let types = instance_types();
        assert_eq!(types.len(), 12 * 3 * 2);
        find(&types, "c-1x-amd64-linux");
        find(&types, "m-256x-arm64-linux");
        find(&types, "s-48x-amd64-linux");
    }

    #[test]
    fn every_type_has_eight_offerings() {
        for t in instance_types() {
            assert_eq!(t.offerings.len(), 8, "{}", t.name);
            for zone in ZONES {
                let in_zone: Vec<_> = t.offerings.iter().filter(|o| o.zone == zone).collect();
                assert_eq!(in_zone.len(), 2, "{} {zone}", t.name);
                assert!(in_zone.iter().all(|o| o.available));
            }
            let on_demand = price_of(&t, labels::CAPACITY_TYPE_ON_DEMAND);
            let spot = price_of(&t, labels::CAPACITY_TYPE_SPOT);
            assert_eq!(spot, on_demand * 0.7, "{}", t.name);
        }
    }

    #[test]
    fn prices_match_karpenters_generated_file_bit_for_bit() {
        // kwok/cloudprovider/instance_types.json in kubernetes-sigs/karpenter.
        let types = instance_types();
        let expected = [
            ("c-1x-amd64-linux", 0.027147483648, 0.019003238553599998),
            ("s-1x-arm64-linux", 0.029294967296, 0.020506477107199998),
            ("m-1x-amd64-linux", 0.033589934592, 0.023512954214399997),
        ];
        for (name, on_demand, spot) in expected {
            let t = find(&types, name);
            assert_eq!(
                price_of(t, labels::CAPACITY_TYPE_ON_DEMAND),
                on_demand,
                "{name}"
            );
            assert_eq!(price_of(t, labels::CAPACITY_TYPE_SPOT), spot, "{name}");
        }
        // By hand: 4 × 0.025 + 0.001 × 16 GiB / 1e9 = 0.1 + 0.017179869184.
        let s4 = find(&types, "s-4x-amd64-linux");
        let on_demand = price_of(s4, labels::CAPACITY_TYPE_ON_DEMAND);
        assert!((on_demand - 0.117_179_869_184).abs() < 1e-12, "{on_demand}");
    }

    #[test]
    fn capacity_and_allocatable_by_hand() {
        let types = instance_types();
        let t = find(&types, "s-4x-arm64-linux");
        assert_eq!(t.capacity.get(CPU), Quantity::from_units(4));
        assert_eq!(t.capacity.get(MEMORY), Quantity::from_units(16 << 30));
        assert_eq!(t.capacity.get(PODS), Quantity::from_units(64));
        assert_eq!(
            t.capacity.get(EPHEMERAL_STORAGE),
            Quantity::from_units(20 << 30)
        );
        let allocatable = t.allocatable();
        assert_eq!(allocatable.get(CPU), Quantity::from_milli(3900));
        assert_eq!(
            allocatable.get(MEMORY),
            Quantity::from_units((16 << 30) - (10 << 20))
        );
        assert_eq!(allocatable.get(PODS), Quantity::from_units(64));
        assert_eq!(
            allocatable.get(EPHEMERAL_STORAGE),
            Quantity::from_units(20 << 30)
        );
    }

    #[test]
    fn pods_are_sixteen_per_vcpu_up_to_1024() {
        let types = instance_types();
        for (name, pods) in [
            ("c-1x-amd64-linux", 16),
            ("c-48x-amd64-linux", 768),
            ("c-64x-amd64-linux", 1024),
            ("c-256x-amd64-linux", 1024),
        ] {
            assert_eq!(
                find(&types, name).capacity.get(PODS),
                Quantity::from_units(pods),
                "{name}"
            );
        }
    }

    #[test]
    fn labels_are_karpenters_kwok_labels() {
        let types = instance_types();
        let t = find(&types, "m-8x-arm64-linux");
        let expected: Labels = [
            ("node.kubernetes.io/instance-type", "m-8x-arm64-linux"),
            ("kubernetes.io/arch", "arm64"),
            ("kubernetes.io/os", "linux"),
            ("karpenter.kwok.sh/instance-size", "8"),
            ("karpenter.kwok.sh/instance-family", "m"),
            ("karpenter.kwok.sh/instance-cpu", "8"),
            ("karpenter.kwok.sh/instance-memory", "64Gi"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(t.labels, expected);
        // Kubernetes renders a quantity in its largest exact binary unit.
        let memory_label = |name: &str| find(&types, name).labels[INSTANCE_MEMORY].clone();
        assert_eq!(memory_label("m-128x-amd64-linux"), "1Ti");
        assert_eq!(memory_label("m-192x-amd64-linux"), "1536Gi");
        assert_eq!(memory_label("m-256x-amd64-linux"), "2Ti");
    }
}
