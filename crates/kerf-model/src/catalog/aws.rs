//! The `aws` catalog: an offline copy of the EC2 instance types an EKS cluster most often runs,
//! shaped the way Karpenter's AWS provider shapes them, so that `kerf plan` and `kerf simulate`
//! pick the machines and show the costs a real cluster would.
//!
//! It covers the C, M and R categories in Intel (`i`), AMD (`a`) and Graviton (`g`) variants of
//! generations 6 and 7, sizes `large` to `24xlarge` (Graviton families stop at `16xlarge`), in
//! three us-east-1 zones, on-demand and spot. It deliberately leaves out burstable, metal,
//! local-NVMe, network-optimised and accelerator types: they would widen every scheduling
//! decision without changing what the simulator shows.
//!
//! Every figure follows a rule written down here and in `docs/catalogs.md`:
//! - on-demand price: the family's `.large` list price × vCPU / 2, rounded to 5 decimals;
//! - spot price: the on-demand price less a 55–70 % discount picked by an FNV-1a hash of
//!   `"<type>/<zone>"` (an estimate, flagged `price_is_estimate`);
//! - pods: ENI-limited max pods, `ENIs × (IPv4 per ENI − 1) + 2`, as EKS computes it;
//! - memory capacity: advertised memory, less 64 MiB on Graviton, less Karpenter's 7.5 % VM
//!   overhead rounded up to a whole MiB;
//! - overhead: Karpenter's default kube-reserved and hard-eviction thresholds.
//!
//! The pods, memory, overhead and label rules are public ([`Shape`], [`instance_type`]):
//! kerf-aws builds its live catalog from `DescribeInstanceTypes` with the same functions, and
//! falls back on [`on_demand_prices`] until the AWS Pricing API answers.

use std::collections::BTreeMap;

use crate::labels;
use crate::resources::{CPU, EPHEMERAL_STORAGE, MEMORY, PODS};
use crate::selector::Labels;
use crate::{InstanceType, Offering, Quantity, Resources};

/// The region every offering is in.
pub const REGION: &str = "us-east-1";

/// The zones every instance type is offered in.
pub const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];

/// Karpenter's `VM_MEMORY_OVERHEAD_PERCENT` default: the share of advertised memory the
/// hypervisor and firmware keep, which the kubelet never sees.
pub const VM_MEMORY_OVERHEAD_PERCENT: f64 = 0.075;

/// Karpenter's default EBS root volume (`amifamily.DefaultEBS`), which becomes the node's
/// `ephemeral-storage` capacity.
pub const ROOT_VOLUME_BYTES: i64 = 20 << 30;

/// Graviton kernels reserve 64 MiB for the contiguous memory allocator; Karpenter subtracts it
/// before the VM overhead (`memory()` in `pkg/providers/instancetype/types.go`).
const GRAVITON_CMA_MIB: i64 = 64;

const MIB: i64 = 1 << 20;

/// The on-demand price of each family's `.large` size, US dollars per hour.
///
/// Source: AWS EC2 On-Demand pricing, us-east-1, Linux, shared tenancy, as of 2026-01-19 (the
/// date of the AWS Pricing API snapshot Karpenter ships as `InitialOnDemandPricesAWS` in
/// `pkg/providers/pricing/zz_generated.pricing_aws.go`). For every family here AWS prices each
/// size from `large` to `24xlarge` at exactly `large × vCPU / 2`, so one figure per family is
/// the whole table.
const FAMILIES: [(&str, f64); 18] = [
    ("c6a", 0.0765),
    ("c6g", 0.068),
    ("c6i", 0.085),
    ("c7a", 0.10264),
    ("c7g", 0.0725),
    ("c7i", 0.08925),
    ("m6a", 0.0864),
    ("m6g", 0.077),
    ("m6i", 0.096),
    ("m7a", 0.11592),
    ("m7g", 0.0816),
    ("m7i", 0.1008),
    ("r6a", 0.1134),
    ("r6g", 0.1008),
    ("r6i", 0.126),
    ("r7a", 0.15215),
    ("r7g", 0.1071),
    ("r7i", 0.1323),
];

/// One instance size: its vCPUs and the network-interface limits that bound its pod count.
struct Size {
    name: &'static str,
    vcpus: i64,
    /// Maximum ENIs on the default network card.
    enis: i64,
    ipv4_per_eni: i64,
}

impl Size {
    const fn new(name: &'static str, vcpus: i64, enis: i64, ipv4_per_eni: i64) -> Size {
        Size {
            name,
            vcpus,
            enis,
            ipv4_per_eni,
        }
    }
}

/// The sizes: name, vCPUs, ENIs, IPv4 addresses per ENI. The ENI limits are the same for all
/// eighteen families (checked against `eni-max-pods.txt` in awslabs/amazon-eks-ami).
const SIZES: [Size; 8] = [
    Size::new("large", 2, 3, 10),
    Size::new("xlarge", 4, 4, 15),
    Size::new("2xlarge", 8, 4, 15),
    Size::new("4xlarge", 16, 8, 30),
    Size::new("8xlarge", 32, 8, 30),
    Size::new("12xlarge", 48, 8, 30),
    Size::new("16xlarge", 64, 15, 50),
    Size::new("24xlarge", 96, 15, 50),
];

/// The largest non-metal Graviton 2 and 3 size is `16xlarge` (64 vCPUs).
const GRAVITON_MAX_VCPUS: i64 = 64;

/// The date of the on-demand figures in [`on_demand_prices`] (see `FAMILIES`).
pub const PRICES_AS_OF: &str = "2026-01-19";

/// All instance types of the catalog, sorted by name.
pub fn instance_types() -> Vec<InstanceType> {
    let mut types = Vec::with_capacity(FAMILIES.len() * SIZES.len());
    for (family, price_large) in FAMILIES {
        for size in embedded_sizes(family) {
            let shape = embedded_shape(family, size);
            let offerings = embedded_offerings(&shape.name, on_demand_price(price_large, size));
            types.push(instance_type(&shape, REGION, offerings));
        }
    }
    types.sort_by(|a, b| a.name.cmp(&b.name));
    types
}

/// The committed on-demand price of every type of the catalog, US dollars per hour, in
/// [`REGION`] as of [`PRICES_AS_OF`]: the table a live catalog falls back on until (or when)
/// the AWS Pricing API answers.
pub fn on_demand_prices() -> BTreeMap<String, f64> {
    let mut prices = BTreeMap::new();
    for (family, price_large) in FAMILIES {
        for size in embedded_sizes(family) {
            prices.insert(
                format!("{family}.{}", size.name),
                on_demand_price(price_large, size),
            );
        }
    }
    prices
}

fn embedded_sizes(family: &str) -> impl Iterator<Item = &'static Size> {
    let graviton = family.ends_with('g');
    SIZES
        .iter()
        .filter(move |s| !(graviton && s.vcpus > GRAVITON_MAX_VCPUS))
}

fn on_demand_price(price_large: f64, size: &Size) -> f64 {
    round5(price_large * size.vcpus as f64 / 2.0)
}

/// The shape of an embedded type, from what its family's name says: `c7g` is category `c`,
/// generation 7, made by AWS (Graviton), 2 GiB per vCPU.
fn embedded_shape(family: &str, size: &Size) -> Shape {
    let (manufacturer, arch) = match &family[2..] {
        "i" => ("intel", ARCH_AMD64),
        "a" => ("amd", ARCH_AMD64),
        "g" => ("aws", ARCH_ARM64),
        other => unreachable!("family suffix {other:?} is not in the table"),
    };
    let mib_per_vcpu = match &family[..1] {
        "c" => 2048,
        "m" => 4096,
        "r" => 8192,
        other => unreachable!("category {other:?} is not in the table"),
    };
    Shape {
        name: format!("{family}.{}", size.name),
        vcpus: size.vcpus,
        memory_mib: size.vcpus * mib_per_vcpu,
        arch: arch.to_string(),
        cpu_manufacturer: Some(manufacturer.to_string()),
        hypervisor: Some("nitro".to_string()),
        enis: size.enis,
        ipv4_per_eni: size.ipv4_per_eni,
        extra_labels: Labels::new(),
        extended: Resources::new(),
    }
}

fn embedded_offerings(name: &str, on_demand: f64) -> Vec<Offering> {
    let mut offerings = Vec::with_capacity(ZONES.len() * 2);
    for zone in ZONES {
        offerings.push(Offering {
            zone: zone.to_string(),
            capacity_type: labels::CAPACITY_TYPE_ON_DEMAND.to_string(),
            price: on_demand,
            price_is_estimate: false,
            available: true,
        });
        offerings.push(Offering {
            zone: zone.to_string(),
            capacity_type: labels::CAPACITY_TYPE_SPOT.to_string(),
            price: spot_price(on_demand, name, zone),
            price_is_estimate: true,
            available: true,
        });
    }
    offerings
}

/// Kubernetes' name for x86_64.
pub const ARCH_AMD64: &str = "amd64";
/// Kubernetes' name for arm64 (Graviton).
pub const ARCH_ARM64: &str = "arm64";

/// What the rules of this module need to know about one EC2 instance type: the facts
/// `DescribeInstanceTypes` reports, or the embedded table's equivalent. One shape and its
/// offerings make one [`InstanceType`] through [`instance_type`], whichever the source.
#[derive(Clone, Debug, PartialEq)]
pub struct Shape {
    /// `m7g.xlarge`.
    pub name: String,
    /// `VCpuInfo.DefaultVCpus`.
    pub vcpus: i64,
    /// Advertised memory, `MemoryInfo.SizeInMiB`.
    pub memory_mib: i64,
    /// `amd64` or `arm64` (Kubernetes' names).
    pub arch: String,
    /// `ProcessorInfo.Manufacturer` in lower kebab case (`intel`, `amd`, `aws`).
    pub cpu_manufacturer: Option<String>,
    /// `Hypervisor` (`nitro`, `xen`); none on bare metal.
    pub hypervisor: Option<String>,
    /// Maximum ENIs on the default network card.
    pub enis: i64,
    /// `NetworkInfo.Ipv4AddressesPerInterface`.
    pub ipv4_per_eni: i64,
    /// Further `karpenter.k8s.aws/instance-*` labels the source knows (bandwidth, GPUs,
    /// local NVMe…), set as given.
    pub extra_labels: Labels,
    /// Extended resources the device plugins advertise on such a node, added to its
    /// capacity as given (`nvidia.com/gpu`, `aws.amazon.com/neuron`, `vpc.amazonaws.com/efa`…;
    /// Karpenter's `computeCapacity`). Empty for the embedded table's types.
    pub extended: Resources,
}

impl Shape {
    /// Graviton kernels keep the CMA reservation; Karpenter keys it on the architecture.
    pub fn is_graviton(&self) -> bool {
        self.arch == ARCH_ARM64
    }

    /// ENI-limited max pods of this shape.
    pub fn max_pods(&self) -> i64 {
        max_pods(self.enis, self.ipv4_per_eni)
    }
}

/// The instance type `shape` makes in `region` with `offerings`: labels, capacity and
/// overhead by the rules of this module. The embedded catalog and kerf-aws's live one
/// (`DescribeInstanceTypes`) both build their types here.
pub fn instance_type(shape: &Shape, region: &str, offerings: Vec<Offering>) -> InstanceType {
    InstanceType {
        name: shape.name.clone(),
        labels: shape_labels(shape, region),
        capacity: capacity(shape),
        overhead: overhead(shape.vcpus, shape.max_pods()),
        offerings,
    }
}

/// Category and generation from a type's name, as Karpenter reads them
/// (`(^[a-z]+)(-[0-9]+tb)?([0-9]+).*\.`): `c7gd.large` → (`c`, `7`), `u-6tb1.metal` →
/// (`u`, `1`), `mac2-m2pro.metal` → (`mac`, `2`). None when the name has no such prefix.
pub fn category_and_generation(name: &str) -> Option<(String, String)> {
    let (family, _) = name.split_once('.')?;
    let letters = family.bytes().take_while(u8::is_ascii_lowercase).count();
    if letters == 0 {
        return None;
    }
    let (category, mut rest) = family.split_at(letters);
    // An optional `-<digits>tb` (high-memory `u-6tb1`), when digits follow it.
    if let Some(after) = rest.strip_prefix('-') {
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0
            && let Some(tail) = after[digits..].strip_prefix("tb")
            && tail.starts_with(|c: char| c.is_ascii_digit())
        {
            rest = tail;
        }
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    Some((category.to_string(), rest[..digits].to_string()))
}

/// The labels every node of `shape` carries in `region`.
pub fn shape_labels(shape: &Shape, region: &str) -> Labels {
    let mut l = Labels::new();
    let mut set = |k: &str, v: String| {
        l.insert(k.to_string(), v);
    };
    set(labels::INSTANCE_TYPE, shape.name.clone());
    set(labels::ARCH, shape.arch.clone());
    set(labels::OS, "linux".to_string());
    set(labels::REGION, region.to_string());
    if let Some((category, generation)) = category_and_generation(&shape.name) {
        set(labels::INSTANCE_CATEGORY, category);
        set(labels::INSTANCE_GENERATION, generation);
    }
    if let Some((family, size)) = shape.name.split_once('.') {
        set(labels::INSTANCE_FAMILY, family.to_string());
        set(labels::INSTANCE_SIZE, size.to_string());
    }
    set(labels::INSTANCE_CPU, shape.vcpus.to_string());
    if let Some(m) = &shape.cpu_manufacturer {
        set(labels::INSTANCE_CPU_MANUFACTURER, m.clone());
    }
    set(labels::INSTANCE_MEMORY, shape.memory_mib.to_string());
    if let Some(h) = &shape.hypervisor {
        set(labels::INSTANCE_HYPERVISOR, h.clone());
    }
    for (k, v) in &shape.extra_labels {
        set(k, v.clone());
    }
    l
}

/// Capacity as the kubelet reports it with Karpenter's defaults: vCPUs, memory less the
/// Graviton CMA and the VM overhead, ENI-limited pods, the default 20 GiB root volume.
pub fn capacity(shape: &Shape) -> Resources {
    let mut capacity = Resources::new();
    capacity.set(CPU, Quantity::from_units(shape.vcpus));
    capacity.set(
        MEMORY,
        Quantity::from_units(capacity_memory_mib(shape.memory_mib, shape.is_graviton()) * MIB),
    );
    capacity.set(PODS, Quantity::from_units(shape.max_pods()));
    capacity.set(EPHEMERAL_STORAGE, Quantity::from_units(ROOT_VOLUME_BYTES));
    for (name, q) in shape.extended.iter() {
        capacity.set(name, q);
    }
    capacity
}

/// ENI-limited max pods: every ENI's first address is the node's own, and two host-network pods
/// (aws-node and kube-proxy) need no address (`ENILimitedPods` in Karpenter, `eni-max-pods.txt`
/// in the EKS AMI).
pub fn max_pods(enis: i64, ipv4_per_eni: i64) -> i64 {
    enis * (ipv4_per_eni - 1) + 2
}

/// The memory the kubelet reports, in MiB, computed as Karpenter's `memory()` does: drop the
/// Graviton CMA reservation, then the VM overhead rounded up to a whole MiB. The float
/// expression keeps Karpenter's operation order so that its rounding is reproduced exactly.
pub fn capacity_memory_mib(advertised_mib: i64, graviton: bool) -> i64 {
    let mib = if graviton {
        advertised_mib - GRAVITON_CMA_MIB
    } else {
        advertised_mib
    };
    let overhead = ((mib * MIB) as f64 * VM_MEMORY_OVERHEAD_PERCENT / 1024.0 / 1024.0).ceil();
    mib - overhead as i64
}

/// kube-reserved CPU in millicores, from the ranges Karpenter's `kubeReservedResources` takes
/// from Bottlerocket and the EKS AMI: 6 % of the first core, 1 % of the second, 0.5 % of the
/// third and fourth, 0.25 % of every core above four. Each range's share is truncated to a whole
/// millicore, as Karpenter does.
pub fn kube_reserved_cpu_milli(vcpus: i64) -> i64 {
    const RANGES: [(i64, i64, f64); 4] = [
        (0, 1000, 0.06),
        (1000, 2000, 0.01),
        (2000, 4000, 0.005),
        (4000, 1 << 31, 0.0025),
    ];
    let cpu_milli = vcpus * 1000;
    RANGES
        .iter()
        .filter(|(start, _, _)| cpu_milli >= *start)
        .map(|&(start, end, share)| {
            let span = cpu_milli.min(end) - start;
            (span as f64 * share) as i64
        })
        .sum()
}

/// What the kubelet keeps back from pods with Karpenter's defaults: kube-reserved (CPU by
/// range, memory `11 MiB × max pods + 255 MiB`, 1 GiB of ephemeral storage) plus the hard
/// eviction thresholds (`memory.available` 100 MiB, `nodefs.available` 10 % of the root volume).
/// No system-reserved: Karpenter sets none unless the EC2NodeClass asks.
pub fn overhead(vcpus: i64, pods: i64) -> Resources {
    let kube_reserved_memory = (11 * pods + 255) * MIB;
    let eviction_memory = 100 * MIB;
    let kube_reserved_storage: i64 = 1 << 30;
    // Karpenter computes `ceil(bytes / 100 * 10)` in float; for 20 GiB it is exact.
    let eviction_storage = (ROOT_VOLUME_BYTES as f64 / 100.0 * 10.0).ceil() as i64;

    let mut overhead = Resources::new();
    overhead.set(CPU, Quantity::from_milli(kube_reserved_cpu_milli(vcpus)));
    overhead.set(
        MEMORY,
        Quantity::from_units(kube_reserved_memory + eviction_memory),
    );
    overhead.set(
        EPHEMERAL_STORAGE,
        Quantity::from_units(kube_reserved_storage + eviction_storage),
    );
    overhead
}

/// The simulated spot price of `instance_type` in `zone`: the on-demand price less a discount of
/// 55 % to 70 % in whole percents, chosen as `55 + h mod 16` where `h` is the 64-bit FNV-1a hash
/// of `"<instance type>/<zone>"`. Real spot discounts for these families sit in that band; the
/// hash spreads types and zones across it without a random generator, so every run agrees.
pub fn spot_price(on_demand: f64, instance_type: &str, zone: &str) -> f64 {
    let discount_percent = spot_discount_percent(instance_type, zone);
    round5(on_demand * (100 - discount_percent) as f64 / 100.0)
}

/// The spot discount, 55 to 70, in percent. See [`spot_price`].
pub fn spot_discount_percent(instance_type: &str, zone: &str) -> u64 {
    let key = format!("{instance_type}/{zone}");
    55 + crate::fnv1a_64(key.as_bytes()) % 16
}

/// Rounds a price to 5 decimals so that printed costs do not change with float noise.
fn round5(price: f64) -> f64 {
    (price * 100_000.0).round() / 100_000.0
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

    fn mib(n: i64) -> Quantity {
        Quantity::from_units(n * MIB)
    }

    fn on_demand(t: &InstanceType) -> f64 {
        t.offerings
            .iter()
            .find(|o| o.capacity_type == labels::CAPACITY_TYPE_ON_DEMAND)
            .map(|o| o.price)
            .expect("every type has an on-demand offering")
    }

    fn offering<'a>(t: &'a InstanceType, zone: &str, capacity_type: &str) -> &'a Offering {
        t.offerings
            .iter()
            .find(|o| o.zone == zone && o.capacity_type == capacity_type)
            .unwrap_or_else(|| panic!("{} has no {capacity_type} offering in {zone}", t.name))
    }

    #[test]
    fn has_every_family_and_size_that_exists() {
        let types = instance_types();
        // 12 x86 families × 8 sizes + 6 Graviton families × 7 sizes.
        assert_eq!(types.len(), 12 * 8 + 6 * 7);
        for graviton in ["c6g", "c7g", "m6g", "m7g", "r6g", "r7g"] {
            assert!(
                !types
                    .iter()
                    .any(|t| t.name == format!("{graviton}.24xlarge"))
            );
            find(&types, &format!("{graviton}.16xlarge"));
        }
        find(&types, "c7a.24xlarge");
        find(&types, "r6i.large");
    }

    #[test]
    fn every_type_has_six_available_offerings() {
        for t in instance_types() {
            assert_eq!(t.offerings.len(), 6, "{}", t.name);
            for zone in ZONES {
                let od = offering(&t, zone, labels::CAPACITY_TYPE_ON_DEMAND);
                let spot = offering(&t, zone, labels::CAPACITY_TYPE_SPOT);
                assert!(od.available && spot.available, "{}", t.name);
                assert!(!od.price_is_estimate, "{}", t.name);
                assert!(spot.price_is_estimate, "{}", t.name);
                assert!(spot.price < od.price, "{}", t.name);
            }
        }
    }

    #[test]
    fn large_prices_are_the_published_list_prices() {
        let types = instance_types();
        let published = [
            ("c6i.large", 0.085),
            ("c7i.large", 0.08925),
            ("c6a.large", 0.0765),
            ("c7a.large", 0.10264),
            ("c6g.large", 0.068),
            ("c7g.large", 0.0725),
            ("m6i.large", 0.096),
            ("m7i.large", 0.1008),
            ("m6a.large", 0.0864),
            ("m7a.large", 0.11592),
            ("m6g.large", 0.077),
            ("m7g.large", 0.0816),
            ("r6i.large", 0.126),
            ("r7i.large", 0.1323),
            ("r6a.large", 0.1134),
            ("r7a.large", 0.15215),
            ("r6g.large", 0.1008),
            ("r7g.large", 0.1071),
        ];
        for (name, price) in published {
            assert_eq!(on_demand(find(&types, name)), price, "{name}");
        }
        // Larger sizes as AWS lists them (same snapshot).
        assert_eq!(on_demand(find(&types, "r7a.24xlarge")), 7.3032);
        assert_eq!(on_demand(find(&types, "c7i.12xlarge")), 2.142);
        assert_eq!(on_demand(find(&types, "m7g.16xlarge")), 2.6112);
    }

    #[test]
    fn on_demand_price_is_linear_in_size_within_a_family() {
        let types = instance_types();
        for t in &types {
            let family = &t.labels[labels::INSTANCE_FAMILY];
            let vcpus: f64 = t.labels[labels::INSTANCE_CPU].parse().unwrap();
            let large = on_demand(find(&types, &format!("{family}.large")));
            let expected = large * vcpus / 2.0;
            assert!(
                (on_demand(t) - expected).abs() < 1e-9,
                "{}: {} vs {expected}",
                t.name,
                on_demand(t)
            );
        }
    }

    #[test]
    fn spot_prices_follow_the_hash_rule() {
        // FNV-1a-64("c6i.large/us-east-1a") mod 16 = 0 → 55 % off 0.085 = 0.03825.
        assert_eq!(spot_discount_percent("c6i.large", "us-east-1a"), 55);
        let types = instance_types();
        let c6i = find(&types, "c6i.large");
        assert_eq!(
            offering(c6i, "us-east-1a", labels::CAPACITY_TYPE_SPOT).price,
            0.03825
        );
        // FNV-1a-64("m7g.xlarge/us-east-1b") mod 16 = 14 → 69 % off 0.1632 = 0.050592 → 0.05059.
        assert_eq!(spot_discount_percent("m7g.xlarge", "us-east-1b"), 69);
        let m7g = find(&types, "m7g.xlarge");
        assert_eq!(
            offering(m7g, "us-east-1b", labels::CAPACITY_TYPE_SPOT).price,
            0.05059
        );
        for t in &types {
            for zone in ZONES {
                let d = spot_discount_percent(&t.name, zone);
                assert!((55..=70).contains(&d), "{} {zone}: {d}", t.name);
            }
        }
    }

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        // From the FNV reference test suite (draft-eastlake-fnv).
        assert_eq!(crate::fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(crate::fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(crate::fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn m7g_xlarge_by_hand() {
        let types = instance_types();
        let t = find(&types, "m7g.xlarge");
        // Memory: 16384 MiB − 64 MiB CMA = 16320; 7.5 % of it is exactly 1224 → 15096 MiB.
        // Pods: 4 ENIs × (15 − 1) + 2 = 58.
        let capacity = &t.capacity;
        assert_eq!(capacity.get(CPU), Quantity::from_units(4));
        assert_eq!(capacity.get(MEMORY), mib(15096));
        assert_eq!(capacity.get(PODS), Quantity::from_units(58));
        assert_eq!(
            capacity.get(EPHEMERAL_STORAGE),
            Quantity::from_units(20 << 30)
        );
        // CPU: 60 + 10 + 5 × 2 = 80m. Memory: 11 × 58 + 255 = 893 MiB + 100 MiB eviction.
        // Storage: 1 GiB kube-reserved + 10 % of 20 GiB = 3 GiB.
        let allocatable = t.allocatable();
        assert_eq!(allocatable.get(CPU), Quantity::from_milli(3920));
        assert_eq!(allocatable.get(MEMORY), mib(15096 - 993));
        assert_eq!(allocatable.get(PODS), Quantity::from_units(58));
        assert_eq!(
            allocatable.get(EPHEMERAL_STORAGE),
            Quantity::from_units(17 << 30)
        );
        assert_eq!(on_demand(t), 0.1632);
    }

    #[test]
    fn c6i_large_by_hand() {
        let types = instance_types();
        let t = find(&types, "c6i.large");
        // 4096 MiB less ceil(307.2) = 308 → 3788 MiB; pods 3 × 9 + 2 = 29.
        assert_eq!(t.capacity.get(MEMORY), mib(3788));
        assert_eq!(t.capacity.get(PODS), Quantity::from_units(29));
        // 70m CPU; 11 × 29 + 255 + 100 = 674 MiB.
        let allocatable = t.allocatable();
        assert_eq!(allocatable.get(CPU), Quantity::from_milli(1930));
        assert_eq!(allocatable.get(MEMORY), mib(3788 - 674));
    }

    #[test]
    fn memory_matches_karpenters_own_test_figures() {
        // Karpenter's memory_test.go: 8192 MiB x86_64 → 7945060352 bytes; arm64 → 7883194368.
        let types = instance_types();
        assert_eq!(
            find(&types, "m6i.large").capacity.get(MEMORY),
            Quantity::from_units(7_945_060_352)
        );
        assert_eq!(
            find(&types, "m6g.large").capacity.get(MEMORY),
            Quantity::from_units(7_883_194_368)
        );
    }

    #[test]
    fn kube_reserved_cpu_by_size() {
        let expected = [
            (2, 70),
            (4, 80),
            (8, 90),
            (16, 110),
            (32, 150),
            (48, 190),
            (64, 230),
            (96, 310),
        ];
        for (vcpus, milli) in expected {
            assert_eq!(kube_reserved_cpu_milli(vcpus), milli, "{vcpus} vCPUs");
        }
    }

    #[test]
    fn max_pods_by_size() {
        let types = instance_types();
        let expected = [
            ("r7i.large", 29),
            ("r7i.xlarge", 58),
            ("r7i.2xlarge", 58),
            ("r7i.4xlarge", 234),
            ("r7i.8xlarge", 234),
            ("r7i.12xlarge", 234),
            ("r7i.16xlarge", 737),
            ("r7i.24xlarge", 737),
        ];
        for (name, pods) in expected {
            assert_eq!(
                find(&types, name).capacity.get(PODS),
                Quantity::from_units(pods),
                "{name}"
            );
        }
    }

    #[test]
    fn labels_describe_the_type() {
        let types = instance_types();
        let t = find(&types, "m7g.xlarge");
        let expected: Labels = [
            ("node.kubernetes.io/instance-type", "m7g.xlarge"),
            ("kubernetes.io/arch", "arm64"),
            ("kubernetes.io/os", "linux"),
            ("topology.kubernetes.io/region", "us-east-1"),
            ("karpenter.k8s.aws/instance-category", "m"),
            ("karpenter.k8s.aws/instance-family", "m7g"),
            ("karpenter.k8s.aws/instance-generation", "7"),
            ("karpenter.k8s.aws/instance-size", "xlarge"),
            ("karpenter.k8s.aws/instance-cpu", "4"),
            ("karpenter.k8s.aws/instance-cpu-manufacturer", "aws"),
            ("karpenter.k8s.aws/instance-memory", "16384"),
            ("karpenter.k8s.aws/instance-hypervisor", "nitro"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(t.labels, expected);

        for t in &types {
            let family = &t.labels[labels::INSTANCE_FAMILY];
            let (arch, manufacturer) = match family.as_bytes()[2] {
                b'g' => ("arm64", "aws"),
                b'i' => ("amd64", "intel"),
                b'a' => ("amd64", "amd"),
                _ => unreachable!(),
            };
            assert_eq!(t.labels[labels::ARCH], arch, "{}", t.name);
            assert_eq!(
                t.labels[labels::INSTANCE_CPU_MANUFACTURER],
                manufacturer,
                "{}",
                t.name
            );
        }
    }

    #[test]
    fn category_and_generation_read_the_name_as_karpenter_does() {
        let cg = category_and_generation;
        let pair = |c: &str, g: &str| Some((c.to_string(), g.to_string()));
        assert_eq!(cg("c7gd.large"), pair("c", "7"));
        assert_eq!(cg("m6i.xlarge"), pair("m", "6"));
        assert_eq!(cg("u-6tb1.metal"), pair("u", "1"));
        assert_eq!(cg("u7i-12tb.224xlarge"), pair("u", "7"));
        assert_eq!(cg("mac2-m2pro.metal"), pair("mac", "2"));
        assert_eq!(cg("inf2.xlarge"), pair("inf", "2"));
        assert_eq!(cg("x2iedn.large"), pair("x", "2"));
        assert_eq!(cg("c7i-flex.large"), pair("c", "7"));
        assert_eq!(cg("nodot"), None);
        assert_eq!(cg("7x.large"), None);
        assert_eq!(cg("abc.large"), None);
    }

    #[test]
    fn the_fallback_prices_are_the_catalogs_on_demand_prices() {
        let prices = on_demand_prices();
        let types = instance_types();
        assert_eq!(prices.len(), types.len());
        for t in &types {
            assert_eq!(prices[&t.name], on_demand(t), "{}", t.name);
        }
        assert_eq!(prices["m7g.xlarge"], 0.1632);
    }

    #[test]
    fn a_shape_from_elsewhere_follows_the_same_rules() {
        // m7g.xlarge as DescribeInstanceTypes reports it, in another region, with a label
        // the embedded table does not know.
        let shape = Shape {
            name: "m7g.xlarge".into(),
            vcpus: 4,
            memory_mib: 16384,
            arch: ARCH_ARM64.into(),
            cpu_manufacturer: Some("aws".into()),
            hypervisor: Some("nitro".into()),
            enis: 4,
            ipv4_per_eni: 15,
            extra_labels: [(
                labels::INSTANCE_NETWORK_BANDWIDTH.to_string(),
                "1876".to_string(),
            )]
            .into(),
            extended: Resources::new(),
        };
        let t = instance_type(&shape, "eu-west-1", vec![]);
        let types = instance_types();
        let embedded = find(&types, "m7g.xlarge");
        assert_eq!(t.capacity, embedded.capacity);
        assert_eq!(t.overhead, embedded.overhead);
        let mut expected = embedded.labels.clone();
        expected.insert(labels::REGION.into(), "eu-west-1".into());
        expected.insert(labels::INSTANCE_NETWORK_BANDWIDTH.into(), "1876".into());
        assert_eq!(t.labels, expected);
        // On x86_64 there is no CMA reservation: only the VM overhead comes off.
        let x86 = Shape {
            arch: ARCH_AMD64.into(),
            ..shape
        };
        assert_eq!(
            capacity(&x86).get(MEMORY),
            mib(16384 - (16384_f64 * 0.075).ceil() as i64)
        );
    }

    #[test]
    fn memory_per_vcpu_follows_the_category() {
        for t in instance_types() {
            let vcpus: i64 = t.labels[labels::INSTANCE_CPU].parse().unwrap();
            let memory_mib: i64 = t.labels[labels::INSTANCE_MEMORY].parse().unwrap();
            let gib_per_vcpu = match t.labels[labels::INSTANCE_CATEGORY].as_str() {
                "c" => 2,
                "m" => 4,
                "r" => 8,
                other => panic!("unexpected category {other}"),
            };
            assert_eq!(memory_mib, vcpus * gib_per_vcpu * 1024, "{}", t.name);
            assert!(t.capacity.get(MEMORY) < mib(memory_mib), "{}", t.name);
        }
    }
}
