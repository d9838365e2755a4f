//! The live instance-type catalog: `DescribeInstanceTypes` and
//! `DescribeInstanceTypeOfferings` made into the [`InstanceType`]s the scheduler uses, by
//! the embedded catalog's own rules (`kerf_model::catalog::aws::instance_type`: ENI-limited
//! pods, Graviton CMA and VM memory overhead, kube-reserved and eviction thresholds), priced
//! by [`crate::pricing`].
//!
//! As Karpenter's instance-type provider (`pkg/providers/instancetype/instancetype.go`),
//! types are asked for with `supported-virtualization-type=hvm` and
//! `processor-info.supported-architecture` in x86_64/arm64, 100 a page, and offerings by
//! availability zone, 1,000 a page. A type is kept when it has an architecture Kubernetes
//! names (the first of x86_64, arm64 it supports), vCPUs, memory and a default network card,
//! can be bought on-demand or as spot, and is offered in a zone of the region; it gets an
//! offering per zone and per capacity type its `SupportedUsageClasses` allow.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ec2::error::DisplayErrorContext;
use aws_sdk_ec2::types as ec2;
use kerf_model::catalog::aws::{self as rules, ARCH_AMD64, ARCH_ARM64, Shape};
use kerf_model::selector::Labels;
use kerf_model::{InstanceType, Offering, Quantity, Resources, labels};

use crate::AwsProvider;
use crate::pricing::{Price, Prices, REFRESH};

/// One usable type as EC2 describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Described {
    pub shape: Shape,
    pub on_demand: bool,
    pub spot: bool,
}

/// What the two describe calls returned, reduced to what the catalog needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    /// By name.
    pub types: BTreeMap<String, Described>,
    /// Instance type → the zones it is offered in.
    pub zones: BTreeMap<String, BTreeSet<String>>,
    /// Types `DescribeInstanceTypes` returned that kerf cannot use, and why.
    pub skipped: Vec<(String, String)>,
}

fn lower_kebab(s: &str) -> String {
    s.to_lowercase().replace(' ', "-")
}

/// Karpenter's extended resource names (`pkg/apis/v1/labels.go`).
pub const NVIDIA_GPU: &str = "nvidia.com/gpu";
pub const AMD_GPU: &str = "amd.com/gpu";
pub const HABANA_GAUDI: &str = "habana.ai/gaudi";
pub const AWS_NEURON: &str = "aws.amazon.com/neuron";
pub const AWS_NEURON_CORE: &str = "aws.amazon.com/neuroncore";
pub const EFA: &str = "vpc.amazonaws.com/efa";

/// The extended resources a node of `info` advertises, as Karpenter's `computeCapacity`
/// counts them: GPUs by manufacturer (NVIDIA, AMD, Habana), Neuron devices (all of
/// `NeuronInfo`'s) and cores (the first device kind's count × its cores), and EFA
/// interfaces (`NetworkInfo.EfaInfo.MaximumEfaInterfaces`). Karpenter lists the zeros
/// too; kerf leaves a resource out when the type has none of it, which the scheduler
/// reads the same way.
pub fn extended_resources(info: &ec2::InstanceTypeInfo) -> Resources {
    let mut r = Resources::new();
    let mut add = |name: &str, n: i64| {
        if n > 0 {
            let sum = r.get(name) + Quantity::from_units(n);
            r.set(name, sum);
        }
    };
    for gpu in info.gpu_info().map(|g| g.gpus()).unwrap_or_default() {
        let name = match gpu.manufacturer() {
            Some("NVIDIA") => NVIDIA_GPU,
            Some("AMD") => AMD_GPU,
            Some("Habana") => HABANA_GAUDI,
            _ => continue,
        };
        add(name, i64::from(gpu.count().unwrap_or(0)));
    }
    if let Some(neuron) = info.neuron_info() {
        let devices = neuron.neuron_devices();
        add(
            AWS_NEURON,
            devices
                .iter()
                .map(|d| i64::from(d.count().unwrap_or(0)))
                .sum(),
        );
        if let Some(first) = devices.first() {
            add(
                AWS_NEURON_CORE,
                i64::from(first.count().unwrap_or(0))
                    * i64::from(first.core_info().and_then(|c| c.count()).unwrap_or(0)),
            );
        }
    }
    add(
        EFA,
        i64::from(
            info.network_info()
                .and_then(|n| n.efa_info())
                .and_then(|e| e.maximum_efa_interfaces())
                .unwrap_or(0),
        ),
    );
    r
}

/// The shape of `info`, or why kerf cannot use it.
pub fn describe_one(info: &ec2::InstanceTypeInfo) -> Result<Described, String> {
    let name = info
        .instance_type()
        .map(|t| t.as_str().to_string())
        .ok_or("no InstanceType")?;
    if !info
        .supported_virtualization_types()
        .contains(&ec2::VirtualizationType::Hvm)
    {
        return Err("not HVM".into());
    }
    let processor = info.processor_info().ok_or("no ProcessorInfo")?;
    let arch = processor
        .supported_architectures()
        .iter()
        .find_map(|a| match a {
            ec2::ArchitectureType::X8664 => Some(ARCH_AMD64),
            ec2::ArchitectureType::Arm64 => Some(ARCH_ARM64),
            _ => None,
        })
        .ok_or_else(|| {
            format!(
                "architectures {:?}: neither x86_64 nor arm64",
                processor.supported_architectures()
            )
        })?;
    let vcpus = info
        .v_cpu_info()
        .and_then(|v| v.default_v_cpus())
        .filter(|&v| v > 0)
        .ok_or("no VCpuInfo.DefaultVCpus")?;
    let memory_mib = info
        .memory_info()
        .and_then(|m| m.size_in_mib())
        .filter(|&m| m > 0)
        .ok_or("no MemoryInfo.SizeInMiB")?;
    let network = info.network_info().ok_or("no NetworkInfo")?;
    let default_card = network.default_network_card_index().unwrap_or(0);
    let enis = network
        .network_cards()
        .iter()
        .find(|c| c.network_card_index().unwrap_or(0) == default_card)
        .and_then(|c| c.maximum_network_interfaces())
        .or_else(|| network.maximum_network_interfaces())
        .ok_or("no network interface limit")?;
    let ipv4_per_eni = network
        .ipv4_addresses_per_interface()
        .ok_or("no NetworkInfo.Ipv4AddressesPerInterface")?;
    let classes = info.supported_usage_classes();
    let on_demand = classes.contains(&ec2::UsageClassType::OnDemand);
    let spot = classes.contains(&ec2::UsageClassType::Spot);
    if !on_demand && !spot {
        return Err(format!(
            "usage classes {classes:?}: neither on-demand nor spot"
        ));
    }

    let mut extra = Labels::new();
    let mut set = |k: &str, v: String| {
        extra.insert(k.to_string(), v);
    };
    if let Some(ghz) = processor.sustained_clock_speed_in_ghz() {
        set(
            labels::INSTANCE_CPU_SUSTAINED_CLOCK_SPEED_MHZ,
            ((ghz * 1000.0).round() as i64).to_string(),
        );
    }
    // Karpenter's table (`zz_generated.bandwidth.go`) is the baseline bandwidth of the EC2
    // documentation, the same figure as the network cards' BaselineBandwidthInGbps summed.
    let gbps: Vec<f64> = network
        .network_cards()
        .iter()
        .filter_map(|c| c.baseline_bandwidth_in_gbps())
        .collect();
    if !gbps.is_empty() {
        let mbps = (gbps.iter().sum::<f64>() * 1000.0).round() as i64;
        set(labels::INSTANCE_NETWORK_BANDWIDTH, mbps.to_string());
    }
    if let Some(ebs) = info.ebs_info()
        && ebs.ebs_optimized_support() == Some(&ec2::EbsOptimizedSupport::Default)
        && let Some(mbps) = ebs
            .ebs_optimized_info()
            .and_then(|o| o.maximum_bandwidth_in_mbps())
    {
        set(labels::INSTANCE_EBS_BANDWIDTH, mbps.to_string());
    }
    set(
        labels::INSTANCE_ENCRYPTION_IN_TRANSIT_SUPPORTED,
        network
            .encryption_in_transit_supported()
            .unwrap_or(false)
            .to_string(),
    );
    if let Some(storage) = info.instance_storage_info()
        && storage.nvme_support() != Some(&ec2::EphemeralNvmeSupport::Unsupported)
        && let Some(gb) = storage.total_size_in_gb()
    {
        set(labels::INSTANCE_LOCAL_NVME, gb.to_string());
    }
    if let Some([gpu]) = info.gpu_info().map(|g| g.gpus()) {
        set(
            labels::INSTANCE_GPU_NAME,
            lower_kebab(gpu.name().unwrap_or_default()),
        );
        set(
            labels::INSTANCE_GPU_MANUFACTURER,
            lower_kebab(gpu.manufacturer().unwrap_or_default()),
        );
        set(
            labels::INSTANCE_GPU_COUNT,
            gpu.count().unwrap_or(0).to_string(),
        );
        set(
            labels::INSTANCE_GPU_MEMORY,
            gpu.memory_info()
                .and_then(|m| m.size_in_mib())
                .unwrap_or(0)
                .to_string(),
        );
    }
    let neuron = info.neuron_info().map(|n| n.neuron_devices());
    if let (Some([acc]), None) = (
        info.inference_accelerator_info().map(|a| a.accelerators()),
        neuron,
    ) {
        set(
            labels::INSTANCE_ACCELERATOR_NAME,
            lower_kebab(acc.name().unwrap_or_default()),
        );
        set(
            labels::INSTANCE_ACCELERATOR_MANUFACTURER,
            lower_kebab(acc.manufacturer().unwrap_or_default()),
        );
        set(
            labels::INSTANCE_ACCELERATOR_COUNT,
            acc.count().unwrap_or(0).to_string(),
        );
    }
    if let Some([device]) = neuron {
        set(
            labels::INSTANCE_ACCELERATOR_NAME,
            lower_kebab(device.name().unwrap_or_default()),
        );
        set(labels::INSTANCE_ACCELERATOR_MANUFACTURER, "aws".to_string());
        set(
            labels::INSTANCE_ACCELERATOR_COUNT,
            device.count().unwrap_or(0).to_string(),
        );
    }
    let family = name.split('.').next().unwrap_or_default();
    set(
        labels::INSTANCE_CAPABILITY_FLEX,
        family.contains("-flex").to_string(),
    );

    Ok(Described {
        shape: Shape {
            vcpus: i64::from(vcpus),
            memory_mib,
            arch: arch.to_string(),
            cpu_manufacturer: processor.manufacturer().map(lower_kebab),
            hypervisor: info
                .hypervisor()
                .map(|h| h.as_str().to_string())
                .filter(|h| !h.is_empty()),
            enis: i64::from(enis),
            ipv4_per_eni: i64::from(ipv4_per_eni),
            extra_labels: extra,
            extended: extended_resources(info),
            name,
        },
        on_demand,
        spot,
    })
}

impl Catalog {
    /// The catalog from both describe calls' pages.
    pub fn from_pages(
        infos: &[ec2::InstanceTypeInfo],
        offerings: &[ec2::InstanceTypeOffering],
    ) -> Catalog {
        let mut c = Catalog::default();
        for info in infos {
            match describe_one(info) {
                Ok(d) => {
                    c.types.insert(d.shape.name.clone(), d);
                }
                Err(why) => c.skipped.push((
                    info.instance_type()
                        .map(|t| t.as_str().to_string())
                        .unwrap_or_default(),
                    why,
                )),
            }
        }
        for o in offerings {
            if let (Some(t), Some(zone)) = (o.instance_type(), o.location()) {
                c.zones
                    .entry(t.as_str().to_string())
                    .or_default()
                    .insert(zone.to_string());
            }
        }
        c
    }

    /// The instance types of `region`, sorted by name: every kept type offered in a zone,
    /// with an on-demand and (where EC2 sells it) a spot offering per zone. An offering
    /// `prices` has no price for is listed and not available, as Karpenter's are.
    pub fn instance_types(&self, region: &str, prices: &Prices) -> Vec<InstanceType> {
        let offering = |zone: &str, capacity_type: &str, price: Option<Price>| Offering {
            zone: zone.to_string(),
            capacity_type: capacity_type.to_string(),
            price: price.map_or(0.0, |p| p.usd),
            price_is_estimate: price.is_none_or(|p| p.estimate),
            available: price.is_some(),
        };
        self.types
            .values()
            .filter_map(|d| {
                let zones = self.zones.get(&d.shape.name).filter(|z| !z.is_empty())?;
                let name = &d.shape.name;
                let mut offerings = Vec::new();
                for zone in zones {
                    if d.on_demand {
                        offerings.push(offering(
                            zone,
                            labels::CAPACITY_TYPE_ON_DEMAND,
                            prices.on_demand(name),
                        ));
                    }
                    if d.spot {
                        offerings.push(offering(
                            zone,
                            labels::CAPACITY_TYPE_SPOT,
                            prices.spot(name, zone),
                        ));
                    }
                }
                Some(rules::instance_type(&d.shape, region, offerings))
            })
            .collect()
    }

    /// Every zone any type is offered in.
    pub fn all_zones(&self) -> BTreeSet<String> {
        self.zones.values().flatten().cloned().collect()
    }
}

/// Reads the region's instance types and offerings from EC2 (both paginated).
pub async fn describe(ec2c: &aws_sdk_ec2::Client) -> anyhow::Result<Catalog> {
    let mut infos = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = ec2c
            .describe_instance_types()
            .filters(
                ec2::Filter::builder()
                    .name("supported-virtualization-type")
                    .values("hvm")
                    .build(),
            )
            .filters(
                ec2::Filter::builder()
                    .name("processor-info.supported-architecture")
                    .values("x86_64")
                    .values("arm64")
                    .build(),
            )
            .max_results(100)
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("DescribeInstanceTypes: {}", DisplayErrorContext(e)))?;
        infos.extend(page.instance_types().iter().cloned());
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    let mut offerings = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = ec2c
            .describe_instance_type_offerings()
            .location_type(ec2::LocationType::AvailabilityZone)
            .max_results(1000)
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!("DescribeInstanceTypeOfferings: {}", DisplayErrorContext(e))
            })?;
        offerings.extend(page.instance_type_offerings().iter().cloned());
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    let catalog = Catalog::from_pages(&infos, &offerings);
    if catalog.types.is_empty() {
        anyhow::bail!(
            "DescribeInstanceTypes returned no usable instance type ({} described)",
            infos.len()
        );
    }
    Ok(catalog)
}

/// How long after its `failures`-th failure in a row a refresh is tried again: 10 s,
/// doubling, at most 1,000 s (the ceiling of the controller-runtime backoff Karpenter's
/// refresh controllers retry with).
pub fn retry_after(failures: u32) -> Duration {
    let secs = 10u64.saturating_mul(1 << failures.saturating_sub(1).min(10));
    Duration::from_secs(secs.min(1000))
}

/// The longest one refresh may take: the SDK sets no operation timeout, and an endpoint that
/// never answers must not stop every later refresh.
pub const REFRESH_TIMEOUT: Duration = Duration::from_secs(5 * 60);

async fn bounded<T, E: std::fmt::Display>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(REFRESH_TIMEOUT, f).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("{what}: no answer in {REFRESH_TIMEOUT:?}")),
    }
}

/// Runs until cancelled: prices at once and every [`REFRESH`] (12 h), instance types every
/// [`REFRESH`] after [`AwsProvider::new`] described them (or soon, with backoff, when it
/// could not); a failed refresh is retried after [`retry_after`] and keeps what was known.
/// On-demand and spot prices are refreshed together, as Karpenter's pricing controller does.
pub async fn run(provider: Arc<AwsProvider>, cancel: tokio_util::sync::CancellationToken) {
    use tokio::time::Instant;
    let start = Instant::now();
    let mut type_failures = u32::from(!provider.catalog_is_live());
    let mut types_at = start
        + if type_failures == 0 {
            REFRESH
        } else {
            retry_after(type_failures)
        };
    let mut price_failures = 0;
    let mut prices_at = start;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep_until(types_at.min(prices_at)) => {}
        }
        let now = Instant::now();
        if now >= types_at {
            match bounded("instance types", provider.refresh_instance_types()).await {
                Ok(n) => {
                    type_failures = 0;
                    tracing::info!(instance_types = n, "refreshed instance types");
                }
                Err(e) => {
                    type_failures += 1;
                    tracing::warn!(error = %e, failures = type_failures, "refreshing instance types");
                }
            }
            types_at = now
                + if type_failures == 0 {
                    REFRESH
                } else {
                    retry_after(type_failures)
                };
        }
        if now >= prices_at {
            let (on_demand, spot) = futures::join!(
                bounded("on-demand prices", provider.refresh_on_demand_prices()),
                bounded("spot prices", provider.refresh_spot_prices())
            );
            match &on_demand {
                Ok(n) => match provider.on_demand_pricing_skipped() {
                    Some(why) => tracing::info!("on-demand prices not refreshed: {why}"),
                    None => tracing::info!(instance_types = n, "refreshed on-demand prices"),
                },
                Err(e) => {
                    tracing::warn!(error = %e, "refreshing on-demand prices (keeping the known ones)")
                }
            }
            match &spot {
                Ok(n) => tracing::info!(offerings = n, "refreshed spot prices"),
                Err(e) => {
                    tracing::warn!(error = %e, "refreshing spot prices (keeping the known ones)")
                }
            }
            price_failures = if on_demand.is_ok() && spot.is_ok() {
                0
            } else {
                price_failures + 1
            };
            prices_at = now
                + if price_failures == 0 {
                    REFRESH
                } else {
                    retry_after(price_failures)
                };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m6g_large() -> ec2::InstanceTypeInfo {
        ec2::InstanceTypeInfo::builder()
            .instance_type(ec2::InstanceType::M6gLarge)
            .supported_usage_classes(ec2::UsageClassType::OnDemand)
            .supported_usage_classes(ec2::UsageClassType::Spot)
            .supported_virtualization_types(ec2::VirtualizationType::Hvm)
            .hypervisor(ec2::InstanceTypeHypervisor::Nitro)
            .processor_info(
                ec2::ProcessorInfo::builder()
                    .supported_architectures(ec2::ArchitectureType::Arm64)
                    .manufacturer("AWS")
                    .sustained_clock_speed_in_ghz(2.5)
                    .build(),
            )
            .v_cpu_info(ec2::VCpuInfo::builder().default_v_cpus(2).build())
            .memory_info(ec2::MemoryInfo::builder().size_in_mib(8192).build())
            .ebs_info(
                ec2::EbsInfo::builder()
                    .ebs_optimized_support(ec2::EbsOptimizedSupport::Default)
                    .ebs_optimized_info(
                        ec2::EbsOptimizedInfo::builder()
                            .maximum_bandwidth_in_mbps(4750)
                            .build(),
                    )
                    .build(),
            )
            .network_info(
                ec2::NetworkInfo::builder()
                    .default_network_card_index(0)
                    .ipv4_addresses_per_interface(10)
                    .maximum_network_interfaces(3)
                    .encryption_in_transit_supported(false)
                    .network_cards(
                        ec2::NetworkCardInfo::builder()
                            .network_card_index(0)
                            .maximum_network_interfaces(3)
                            .baseline_bandwidth_in_gbps(0.75)
                            .build(),
                    )
                    .build(),
            )
            .build()
    }

    fn offered(t: &str, zones: &[&str]) -> Vec<ec2::InstanceTypeOffering> {
        zones
            .iter()
            .map(|z| {
                ec2::InstanceTypeOffering::builder()
                    .instance_type(ec2::InstanceType::from(t))
                    .location_type(ec2::LocationType::AvailabilityZone)
                    .location(*z)
                    .build()
            })
            .collect()
    }

    #[test]
    fn retries_back_off_to_a_ceiling() {
        let secs: Vec<u64> = (1..=9).map(|n| retry_after(n).as_secs()).collect();
        assert_eq!(secs, vec![10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        assert_eq!(retry_after(u32::MAX).as_secs(), 1000);
    }

    #[test]
    fn a_described_type_follows_the_embedded_rules() {
        let c = Catalog::from_pages(
            &[m6g_large()],
            &offered("m6g.large", &["eu-west-1a", "eu-west-1b"]),
        );
        let types = c.instance_types("eu-west-1", &Prices::fallback());
        assert_eq!(types.len(), 1);
        let t = &types[0];
        let embedded = kerf_model::catalog::aws::instance_types()
            .into_iter()
            .find(|t| t.name == "m6g.large")
            .unwrap();
        assert_eq!(t.capacity, embedded.capacity);
        assert_eq!(t.overhead, embedded.overhead);
        for (k, v) in &embedded.labels {
            let want = if k == labels::REGION { "eu-west-1" } else { v };
            assert_eq!(t.labels.get(k).map(String::as_str), Some(want), "{k}");
        }
        let extra: Vec<(&str, &str)> = t
            .labels
            .iter()
            .filter(|(k, _)| !embedded.labels.contains_key(*k))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            extra,
            vec![
                ("karpenter.k8s.aws/instance-capability-flex", "false"),
                (
                    "karpenter.k8s.aws/instance-cpu-sustained-clock-speed-mhz",
                    "2500"
                ),
                ("karpenter.k8s.aws/instance-ebs-bandwidth", "4750"),
                (
                    "karpenter.k8s.aws/instance-encryption-in-transit-supported",
                    "false"
                ),
                ("karpenter.k8s.aws/instance-network-bandwidth", "750"),
            ]
        );
        // Two zones × on-demand, spot; fallback prices, spot at on-demand: all estimates.
        let got: Vec<(&str, &str, f64, bool, bool)> = t
            .offerings
            .iter()
            .map(|o| {
                (
                    o.zone.as_str(),
                    o.capacity_type.as_str(),
                    o.price,
                    o.price_is_estimate,
                    o.available,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("eu-west-1a", "on-demand", 0.077, true, true),
                ("eu-west-1a", "spot", 0.077, true, true),
                ("eu-west-1b", "on-demand", 0.077, true, true),
                ("eu-west-1b", "spot", 0.077, true, true),
            ]
        );
    }

    #[test]
    fn unusable_and_unoffered_types_are_left_out_and_unpriced_offerings_unavailable() {
        let mut mac = m6g_large();
        mac.instance_type = Some(ec2::InstanceType::from("mac2.metal"));
        mac.processor_info = Some(
            ec2::ProcessorInfo::builder()
                .supported_architectures(ec2::ArchitectureType::Arm64Mac)
                .build(),
        );
        let mut blocks = m6g_large();
        blocks.instance_type = Some(ec2::InstanceType::from("p5.48xlarge"));
        blocks.supported_usage_classes = Some(vec![ec2::UsageClassType::CapacityBlock]);
        let mut od_only = m6g_large();
        od_only.instance_type = Some(ec2::InstanceType::from("x9g.large"));
        od_only.supported_usage_classes = Some(vec![ec2::UsageClassType::OnDemand]);
        let unoffered = {
            let mut t = m6g_large();
            t.instance_type = Some(ec2::InstanceType::M6gXlarge);
            t
        };
        let mut offerings = offered("x9g.large", &["us-west-2a"]);
        offerings.extend(offered("mac2.metal", &["us-west-2a"]));
        let c = Catalog::from_pages(&[mac, blocks, od_only, unoffered], &offerings);
        let skipped: Vec<&str> = c.skipped.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(skipped, vec!["mac2.metal", "p5.48xlarge"]);
        assert!(
            c.skipped[0].1.contains("neither x86_64 nor arm64"),
            "{:?}",
            c.skipped
        );
        let types = c.instance_types("us-west-2", &Prices::fallback());
        // m6g.xlarge is described but offered nowhere; x9g.large has no price anywhere.
        let names: Vec<&str> = types.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, vec!["x9g.large"]);
        let o = &types[0].offerings;
        assert_eq!(o.len(), 1, "on-demand only: {o:?}");
        assert!(!o[0].available && o[0].price_is_estimate && o[0].price == 0.0);
        assert!(types[0].cheapest_offering(&Default::default()).is_none());
    }

    fn gpus(name: &str, manufacturer: &str, count: i32, mib: i32) -> ec2::GpuInfo {
        ec2::GpuInfo::builder()
            .gpus(
                ec2::GpuDeviceInfo::builder()
                    .name(name)
                    .manufacturer(manufacturer)
                    .count(count)
                    .memory_info(ec2::GpuDeviceMemoryInfo::builder().size_in_mib(mib).build())
                    .build(),
            )
            .build()
    }

    fn neuron(name: &str, count: i32, cores: i32) -> ec2::NeuronInfo {
        ec2::NeuronInfo::builder()
            .neuron_devices(
                ec2::NeuronDeviceInfo::builder()
                    .name(name)
                    .count(count)
                    .core_info(ec2::NeuronDeviceCoreInfo::builder().count(cores).build())
                    .build(),
            )
            .build()
    }

    /// x86_64 `name`, as DescribeInstanceTypes reports it, with the accelerators added.
    fn accelerated(
        name: &str,
        vcpus: i32,
        gpu: Option<ec2::GpuInfo>,
        neuron: Option<ec2::NeuronInfo>,
        efa: Option<i32>,
    ) -> ec2::InstanceTypeInfo {
        let mut t = m6g_large();
        t.instance_type = Some(ec2::InstanceType::from(name));
        t.processor_info = Some(
            ec2::ProcessorInfo::builder()
                .supported_architectures(ec2::ArchitectureType::X8664)
                .manufacturer("Intel")
                .build(),
        );
        t.v_cpu_info = Some(ec2::VCpuInfo::builder().default_v_cpus(vcpus).build());
        t.gpu_info = gpu;
        t.neuron_info = neuron;
        if let (Some(n), Some(efa)) = (t.network_info.as_mut(), efa) {
            n.efa_supported = Some(true);
            n.efa_info = Some(ec2::EfaInfo::builder().maximum_efa_interfaces(efa).build());
        }
        t
    }

    #[test]
    fn accelerators_are_capacity_and_labels_as_karpenter_computes_them() {
        // The figures of the EC2 documentation for these types.
        let infos = [
            accelerated(
                "p3.2xlarge",
                8,
                Some(gpus("V100", "NVIDIA", 1, 16384)),
                None,
                None,
            ),
            accelerated(
                "g5.xlarge",
                4,
                Some(gpus("A10G", "NVIDIA", 1, 24576)),
                None,
                None,
            ),
            accelerated(
                "g4ad.xlarge",
                4,
                Some(gpus("Radeon Pro V520", "AMD", 1, 8192)),
                None,
                None,
            ),
            accelerated(
                "inf2.xlarge",
                4,
                None,
                Some(neuron("Inferentia2", 1, 2)),
                None,
            ),
            accelerated(
                "trn1.2xlarge",
                8,
                None,
                Some(neuron("Trainium", 1, 2)),
                None,
            ),
            accelerated(
                "trn1.32xlarge",
                128,
                None,
                Some(neuron("Trainium", 16, 2)),
                Some(8),
            ),
            accelerated(
                "dl1.24xlarge",
                96,
                Some(gpus("Gaudi HL-205", "Habana", 8, 32768)),
                None,
                Some(4),
            ),
        ];
        let c = Catalog::from_pages(&infos, &[]);
        assert!(c.skipped.is_empty(), "{:?}", c.skipped);
        let t = |name: &str| {
            let d = &c.types[name];
            kerf_model::catalog::aws::instance_type(&d.shape, "us-east-1", vec![])
        };
        let extended = |name: &str| -> Vec<(String, i64)> {
            t(name)
                .capacity
                .iter()
                .filter(|(k, _)| k.contains('/'))
                .map(|(k, q)| (k.to_string(), q.0 / Quantity::from_units(1).0))
                .collect()
        };
        let pairs = |v: &[(&str, i64)]| -> Vec<(String, i64)> {
            v.iter().map(|(k, n)| (k.to_string(), *n)).collect()
        };
        assert_eq!(extended("p3.2xlarge"), pairs(&[(NVIDIA_GPU, 1)]));
        assert_eq!(extended("g5.xlarge"), pairs(&[(NVIDIA_GPU, 1)]));
        assert_eq!(extended("g4ad.xlarge"), pairs(&[(AMD_GPU, 1)]));
        assert_eq!(
            extended("inf2.xlarge"),
            pairs(&[(AWS_NEURON, 1), (AWS_NEURON_CORE, 2)])
        );
        assert_eq!(
            extended("trn1.2xlarge"),
            pairs(&[(AWS_NEURON, 1), (AWS_NEURON_CORE, 2)])
        );
        assert_eq!(
            extended("trn1.32xlarge"),
            pairs(&[(AWS_NEURON, 16), (AWS_NEURON_CORE, 32), (EFA, 8)])
        );
        assert_eq!(
            extended("dl1.24xlarge"),
            pairs(&[(HABANA_GAUDI, 8), (EFA, 4)])
        );
        // A plain type has none.
        let plain = Catalog::from_pages(&[m6g_large()], &[]);
        assert!(
            plain.types["m6g.large"]
                .shape
                .extended
                .iter()
                .next()
                .is_none()
        );

        let label = |name: &str, k: &str| t(name).labels.get(k).cloned();
        for (name, gpu, manufacturer, count, memory) in [
            ("p3.2xlarge", "v100", "nvidia", "1", "16384"),
            ("g5.xlarge", "a10g", "nvidia", "1", "24576"),
            ("g4ad.xlarge", "radeon-pro-v520", "amd", "1", "8192"),
        ] {
            assert_eq!(label(name, labels::INSTANCE_GPU_NAME).as_deref(), Some(gpu));
            assert_eq!(
                label(name, labels::INSTANCE_GPU_MANUFACTURER).as_deref(),
                Some(manufacturer)
            );
            assert_eq!(
                label(name, labels::INSTANCE_GPU_COUNT).as_deref(),
                Some(count)
            );
            assert_eq!(
                label(name, labels::INSTANCE_GPU_MEMORY).as_deref(),
                Some(memory)
            );
        }
        for (name, accelerator, count) in [
            ("inf2.xlarge", "inferentia2", "1"),
            ("trn1.32xlarge", "trainium", "16"),
        ] {
            assert_eq!(
                label(name, labels::INSTANCE_ACCELERATOR_NAME).as_deref(),
                Some(accelerator)
            );
            assert_eq!(
                label(name, labels::INSTANCE_ACCELERATOR_MANUFACTURER).as_deref(),
                Some("aws")
            );
            assert_eq!(
                label(name, labels::INSTANCE_ACCELERATOR_COUNT).as_deref(),
                Some(count)
            );
            assert_eq!(label(name, labels::INSTANCE_GPU_NAME), None);
        }
    }
}
