//! [`kerf_cloud::Provider`] on EC2.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, RwLock};

use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_ec2::types as ec2;
use base64::Engine as _;
use kerf_api::crd::{EC2NodeClass, EC2NodeClassSpec, EC2NodeClassStatus};
use kerf_cloud::{
    CreateError, Created, Instance, InstanceState, LaunchRequest, Offer, Provider, ProviderError,
};
use kerf_model::{InstanceType, Labels};
use kube::Api;

use crate::batcher::{Batcher, Window};
use crate::catalog::Catalog;
use crate::drift;
use crate::ice::{self, Unavailable};
use crate::launch::{self, ClusterFacts, LaunchPlan, PlanInput, TemplatePlan};
use crate::pricing::{Prices, PricingError};
use crate::resolve::{self, Resolver};
use crate::{Clients, provider_id, tags};

/// The cluster kerf launches nodes for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterInfo {
    pub name: String,
    /// The API server URL nodes join (`CLUSTER_ENDPOINT`).
    pub endpoint: String,
    /// Base64 PEM of the cluster CA.
    pub ca_bundle: String,
    pub cidr: Option<String>,
    /// `major.minor`.
    pub k8s_version: String,
}

/// A class as last resolved: its spec and the status resolution wrote.
pub type ResolvedClasses = Arc<RwLock<BTreeMap<String, (EC2NodeClassSpec, EC2NodeClassStatus)>>>;

pub struct AwsProvider {
    clients: Clients,
    cluster: ClusterInfo,
    classes: ResolvedClasses,
    unavailable: Mutex<Unavailable>,
    /// What the scheduler sees: the live catalog once `DescribeInstanceTypes` has answered,
    /// until then the embedded one laid over the region's zones.
    catalog: RwLock<Arc<Vec<InstanceType>>>,
    /// What the live catalog is built from.
    live: Mutex<Live>,
    /// Launch template names known to exist.
    templates: tokio::sync::Mutex<BTreeSet<String>>,
    /// Where a class not resolved yet is read from (none in tests without a cluster).
    node_classes: Option<Api<EC2NodeClass>>,
    /// The claim-tag lookups before launches: many claims to one DescribeInstances.
    lookups: Batcher<String, Result<Option<ec2::Instance>, ProviderError>>,
    /// Terminations: many instances to one DescribeInstances and one TerminateInstances.
    terminations: Batcher<String, Result<(), ProviderError>>,
    /// `ISOLATED_VPC`: the Pricing API is not called.
    isolated_vpc: bool,
}

/// EC2 takes at most 200 filter values in one call (`FilterLimitExceeded`).
pub(crate) const MAX_FILTER_VALUES: usize = 200;

/// A claim lookup stands in front of its CreateFleet call, so it waits as Karpenter's
/// CreateFleet batcher does (idle 35 ms, max 1 s); a lookup's other filters take 6 values
/// (the cluster tag, five states).
const LOOKUP_WINDOW: Window = Window {
    idle: std::time::Duration::from_millis(35),
    max: std::time::Duration::from_secs(1),
    max_items: MAX_FILTER_VALUES - 6,
};

/// Karpenter's DescribeInstances and TerminateInstances window (idle 100 ms, max 1 s),
/// as many instances as one `instance-id` filter takes.
const TERMINATE_WINDOW: Window = Window {
    idle: std::time::Duration::from_millis(100),
    max: std::time::Duration::from_secs(1),
    max_items: MAX_FILTER_VALUES,
};

/// The described types and the prices the live catalog is built from.
#[derive(Debug, Default)]
struct Live {
    described: Option<Catalog>,
    prices: Prices,
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// The embedded AWS catalog (us-east-1a/b/c, its prices) laid over the region's zones:
/// the n-th zone of the region takes the offerings of the catalog's n-th zone (by zone
/// letter where the letter exists in the catalog). Used only while `DescribeInstanceTypes`
/// has not answered (it failed at start): the live catalog ([`crate::catalog`]) replaces it.
pub fn catalog_for_zones(zones: &[String]) -> Vec<InstanceType> {
    let base = kerf_model::catalog::by_name("aws").unwrap_or_default();
    let catalog_zones: Vec<String> = {
        let mut z: BTreeSet<String> = BTreeSet::new();
        for t in &base {
            for o in &t.offerings {
                z.insert(o.zone.clone());
            }
        }
        z.into_iter().collect()
    };
    if catalog_zones.is_empty() {
        return base;
    }
    base.into_iter()
        .map(|mut t| {
            let mut offerings = Vec::new();
            for (i, zone) in zones.iter().enumerate() {
                let letter = zone.chars().last();
                let source = catalog_zones
                    .iter()
                    .find(|z| z.chars().last() == letter)
                    .unwrap_or(&catalog_zones[i % catalog_zones.len()]);
                for o in t.offerings.iter().filter(|o| &o.zone == source) {
                    let mut o = o.clone();
                    o.zone = zone.clone();
                    offerings.push(o);
                }
            }
            t.offerings = offerings;
            t
        })
        .collect()
}

fn err_code<E: ProvideErrorMetadata>(e: &E) -> String {
    e.code().unwrap_or_default().to_string()
}

fn provider_error<E, R>(what: &str, e: aws_sdk_ec2::error::SdkError<E, R>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let retryable = match &e {
        aws_sdk_ec2::error::SdkError::ServiceError(s) => {
            let code = err_code(s.err());
            ice::is_throttle(&code) || code.starts_with("Server") || code == "InternalError"
        }
        _ => true,
    };
    ProviderError::new(format!("{what}: {}", DisplayErrorContext(e)), retryable)
}

impl AwsProvider {
    /// A provider over `clients`, its catalog from `DescribeInstanceTypes` and
    /// `DescribeInstanceTypeOfferings` priced by the fallback table (prices are refreshed by
    /// [`crate::catalog::run`]). If the types cannot be described, the embedded catalog laid
    /// over the region's zones (DescribeAvailabilityZones) stands in, with a warning.
    pub async fn new(
        clients: Clients,
        cluster: ClusterInfo,
        classes: ResolvedClasses,
        node_classes: Option<Api<EC2NodeClass>>,
    ) -> anyhow::Result<AwsProvider> {
        let zones = clients
            .ec2
            .describe_availability_zones()
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!("DescribeAvailabilityZones: {}", DisplayErrorContext(e))
            })?;
        let mut names: Vec<String> = zones
            .availability_zones()
            .iter()
            .filter_map(|z| z.zone_name().map(str::to_string))
            .collect();
        names.sort();
        let lookups = Batcher::new("describe_instances", LOOKUP_WINDOW, {
            let (ec2, cluster) = (clients.ec2.clone(), cluster.name.clone());
            move |claims: Vec<String>| lookup_claims(ec2.clone(), cluster.clone(), claims)
        });
        let terminations = Batcher::new("terminate_instances", TERMINATE_WINDOW, {
            let ec2 = clients.ec2.clone();
            move |ids: Vec<String>| terminate_instances(ec2.clone(), ids)
        });
        let provider = AwsProvider {
            catalog: RwLock::new(Arc::new(catalog_for_zones(&names))),
            live: Mutex::new(Live::default()),
            clients,
            cluster,
            classes,
            unavailable: Mutex::new(Unavailable::default()),
            templates: tokio::sync::Mutex::new(BTreeSet::new()),
            node_classes,
            lookups,
            terminations,
            isolated_vpc: false,
        };
        match provider.refresh_instance_types().await {
            Ok(n) => tracing::info!(
                instance_types = n,
                "instance types from DescribeInstanceTypes"
            ),
            Err(e) => tracing::warn!(
                error = %format!("{e:#}"),
                "cannot describe the region's instance types: using kerf's embedded catalog until DescribeInstanceTypes answers"
            ),
        }
        Ok(provider)
    }

    /// The catalog the scheduler and launches see now.
    pub fn catalog(&self) -> Arc<Vec<InstanceType>> {
        self.catalog
            .read()
            .map(|c| c.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// Whether the catalog is the live one (`DescribeInstanceTypes` has answered).
    pub fn catalog_is_live(&self) -> bool {
        self.live.lock().is_ok_and(|l| l.described.is_some())
    }

    /// The prices the live catalog is built with now.
    pub fn prices(&self) -> Prices {
        self.live
            .lock()
            .map(|l| l.prices.clone())
            .unwrap_or_default()
    }

    fn rebuild(&self, live: &Live) {
        if let Some(described) = &live.described {
            let types = described.instance_types(&self.clients.region, &live.prices);
            if let Ok(mut c) = self.catalog.write() {
                *c = Arc::new(types);
            }
        }
    }

    /// Describes the region's instance types and offerings again and rebuilds the catalog
    /// from them; returns how many types it has. On error the catalog is unchanged.
    pub async fn refresh_instance_types(&self) -> anyhow::Result<usize> {
        let described = crate::catalog::describe(&self.clients.ec2).await?;
        for (name, why) in &described.skipped {
            tracing::debug!(instance_type = %name, reason = %why, "instance type left out");
        }
        let mut live = self.live.lock().map_err(|e| anyhow::anyhow!("{e}"))?;
        live.described = Some(described);
        self.rebuild(&live);
        Ok(self.catalog().len())
    }

    /// Karpenter's `ISOLATED_VPC`: on-demand prices stay the fallback table's, the
    /// Pricing API is never called.
    pub fn with_isolated_vpc(mut self, isolated_vpc: bool) -> AwsProvider {
        self.isolated_vpc = isolated_vpc;
        self
    }

    /// Why the Pricing API is not called here, if it is not
    /// ([`crate::pricing::on_demand_skipped`]).
    pub fn on_demand_pricing_skipped(&self) -> Option<&'static str> {
        crate::pricing::on_demand_skipped(&self.clients.region, self.isolated_vpc)
    }

    /// Reads on-demand prices from the Pricing API and merges them over the known ones;
    /// returns how many it read. On error (or nothing read) prices are unchanged. Where
    /// the API is not called ([`Self::on_demand_pricing_skipped`]) it reads nothing: 0.
    pub async fn refresh_on_demand_prices(&self) -> Result<usize, PricingError> {
        if self.on_demand_pricing_skipped().is_some() {
            return Ok(0);
        }
        let fetched =
            crate::pricing::fetch_on_demand(&self.clients.pricing, &self.clients.region).await?;
        if fetched.skipped > 0 {
            tracing::debug!(
                skipped = fetched.skipped,
                "GetProducts entries without a usable price"
            );
        }
        let mut live = self
            .live
            .lock()
            .map_err(|e| PricingError::Api(e.to_string()))?;
        let n = live.prices.merge_on_demand(fetched.prices)?;
        self.rebuild(&live);
        Ok(n)
    }

    /// Reads current spot prices (`DescribeSpotPriceHistory`) and merges them over the
    /// known ones; returns how many (type, zone) prices it read. On error prices are
    /// unchanged.
    pub async fn refresh_spot_prices(&self) -> Result<usize, PricingError> {
        let fetched = crate::pricing::fetch_spot(&self.clients.ec2).await?;
        let mut live = self
            .live
            .lock()
            .map_err(|e| PricingError::Api(e.to_string()))?;
        let n = live.prices.merge_spot(fetched.prices())?;
        self.rebuild(&live);
        Ok(n)
    }

    pub fn clients(&self) -> &Clients {
        &self.clients
    }

    pub fn resolver(&self) -> Resolver {
        Resolver {
            clients: self.clients.clone(),
            cluster: self.cluster.name.clone(),
            k8s_version: self.cluster.k8s_version.clone(),
        }
    }

    /// Forgets launch templates the termination finalizer deleted, so a class made
    /// again with the same content gets its template created again.
    pub async fn forget_templates(&self, names: &[String]) {
        let mut known = self.templates.lock().await;
        for n in names {
            known.remove(n);
        }
    }

    /// Marks an offering out of capacity for 3 minutes (also for interruption).
    pub fn mark_unavailable(&self, offer: &Offer) {
        if let Ok(mut u) = self.unavailable.lock() {
            u.mark(offer, now_ms());
        }
    }

    pub fn is_unavailable(&self, offer: &Offer) -> bool {
        self.unavailable
            .lock()
            .map(|u| u.is_unavailable(offer, now_ms()))
            .unwrap_or(false)
    }

    /// Resolves `nc` now and keeps the result for launches (tests, and the status
    /// writer's path).
    pub async fn resolve_class(&self, nc: &EC2NodeClass) -> EC2NodeClassStatus {
        let status = self.resolver().resolve(nc, jiff::Timestamp::now()).await;
        let name = nc.metadata.name.clone().unwrap_or_default();
        if let Ok(mut c) = self.classes.write() {
            c.insert(name, (nc.spec.clone(), status.clone()));
        }
        status
    }

    async fn class(
        &self,
        name: &str,
    ) -> Result<(EC2NodeClassSpec, EC2NodeClassStatus), CreateError> {
        if let Some(found) = self.classes.read().ok().and_then(|c| c.get(name).cloned()) {
            return Ok(found);
        }
        let Some(api) = &self.node_classes else {
            return Err(CreateError::Provider(format!(
                "EC2NodeClass {name} is not resolved yet"
            )));
        };
        let nc = api
            .get(name)
            .await
            .map_err(|e| CreateError::Provider(format!("EC2NodeClass {name}: {e}")))?;
        if nc.metadata.deletion_timestamp.is_some() {
            // As Karpenter: nothing launches from a class being deleted.
            return Err(CreateError::Provider(format!(
                "EC2NodeClass {name} is terminating"
            )));
        }
        let status = self.resolve_class(&nc).await;
        Ok((nc.spec, status))
    }

    fn to_instance(&self, i: &ec2::Instance) -> Option<Instance> {
        let id = i.instance_id()?;
        let zone = i
            .placement()
            .and_then(|p| p.availability_zone())
            .unwrap_or_default();
        let tag = |k: &str| {
            i.tags()
                .iter()
                .find(|t| t.key() == Some(k))
                .and_then(|t| t.value())
                .map(str::to_string)
        };
        let capacity_type = match i.instance_lifecycle() {
            Some(ec2::InstanceLifecycleType::Spot) => "spot",
            _ => "on-demand",
        };
        let offer = Offer {
            instance_type: i
                .instance_type()
                .map(|t| t.as_str().to_string())
                .unwrap_or_default(),
            zone: zone.to_string(),
            capacity_type: capacity_type.to_string(),
        };
        let state = match i.state().and_then(|s| s.name()) {
            Some(ec2::InstanceStateName::ShuttingDown) => InstanceState::ShuttingDown,
            Some(ec2::InstanceStateName::Terminated) => return None,
            _ => InstanceState::Running,
        };
        let image_id = i.image_id().unwrap_or_default();
        let drift = tag(tags::NODECLASS).and_then(|class| {
            let classes = self.classes.read().ok()?;
            let (_, status) = classes.get(&class)?;
            let at = drift::Placement {
                image: image_id,
                subnet: i.subnet_id().unwrap_or_default(),
                security_groups: i
                    .security_groups()
                    .iter()
                    .filter_map(|g| g.group_id())
                    .collect(),
            };
            drift::instance_drift(&class, status, &at)
        });
        Some(Instance {
            id: provider_id(zone, id),
            claim: tag(tags::NODECLAIM).unwrap_or_default(),
            price: self.price(&offer),
            offer,
            image_id: image_id.to_string(),
            launched_at: i.launch_time().map_or(0, |t| {
                t.secs() * 1000 + i64::from(t.subsec_nanos() / 1_000_000)
            }),
            state,
            drift,
        })
    }

    fn price(&self, offer: &Offer) -> f64 {
        self.catalog()
            .iter()
            .find(|t| t.name == offer.instance_type)
            .and_then(|t| {
                t.offerings
                    .iter()
                    .find(|o| o.zone == offer.zone && o.capacity_type == offer.capacity_type)
            })
            .map_or(0.0, |o| o.price)
    }

    async fn describe(&self, filters: Vec<ec2::Filter>) -> Result<Vec<Instance>, ProviderError> {
        let found = describe_instances(&self.clients.ec2, filters).await?;
        Ok(found.iter().filter_map(|i| self.to_instance(i)).collect())
    }

    /// The instance already launched for `claim`, if any (a retried launch). Lookups
    /// made together go out as one DescribeInstances.
    pub async fn claim_instance(&self, claim: &str) -> Result<Option<Instance>, ProviderError> {
        let found = self
            .lookups
            .call(claim.to_string())
            .await
            .map_err(|e| ProviderError::new(e.to_string(), true))??;
        Ok(found.and_then(|i| self.to_instance(&i)))
    }

    async fn ensure_template(&self, t: &TemplatePlan) -> Result<String, CreateError> {
        let name = t.content.name();
        let mut known = self.templates.lock().await;
        if known.contains(&name) {
            return Ok(name);
        }
        let ec2c = &self.clients.ec2;
        match ec2c
            .describe_launch_templates()
            .launch_template_names(&name)
            .send()
            .await
        {
            Ok(out) if !out.launch_templates().is_empty() => {
                known.insert(name.clone());
                return Ok(name);
            }
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| err_code(s).starts_with("InvalidLaunchTemplateName")) => {}
            Err(e) => {
                return Err(CreateError::Provider(format!(
                    "DescribeLaunchTemplates {name}: {}",
                    DisplayErrorContext(e)
                )));
            }
        }
        let c = &t.content;
        let md = ec2::LaunchTemplateInstanceMetadataOptionsRequest::builder()
            .http_tokens(ec2::LaunchTemplateHttpTokensState::from(
                c.http_tokens.as_str(),
            ))
            .http_endpoint(ec2::LaunchTemplateInstanceMetadataEndpointState::from(
                c.http_endpoint.as_str(),
            ))
            .http_put_response_hop_limit(c.http_put_response_hop_limit as i32)
            .instance_metadata_tags(ec2::LaunchTemplateInstanceMetadataTagsState::Disabled)
            .build();
        let devices: Vec<ec2::LaunchTemplateBlockDeviceMappingRequest> = c
            .block_devices
            .iter()
            .map(|b| {
                let ebs = b.ebs.as_ref().map(|e| {
                    ec2::LaunchTemplateEbsBlockDeviceRequest::builder()
                        .set_delete_on_termination(e.delete_on_termination)
                        .set_encrypted(e.encrypted)
                        .set_iops(e.iops.map(|v| v as i32))
                        .set_kms_key_id(e.kms_key_id.clone())
                        .set_snapshot_id(e.snapshot_id.clone())
                        .set_throughput(e.throughput.map(|v| v as i32))
                        .set_volume_size(e.volume_size.as_deref().and_then(gib))
                        .set_volume_type(e.volume_type.as_deref().map(ec2::VolumeType::from))
                        .build()
                });
                ec2::LaunchTemplateBlockDeviceMappingRequest::builder()
                    .set_device_name(b.device_name.clone())
                    .set_ebs(ebs)
                    .build()
            })
            .collect();
        let data = ec2::RequestLaunchTemplateData::builder()
            .image_id(&c.image_id)
            .user_data(base64::engine::general_purpose::STANDARD.encode(&c.user_data))
            .set_security_group_ids(Some(c.security_group_ids.clone()))
            .iam_instance_profile(
                ec2::LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
                    .name(&c.instance_profile)
                    .build(),
            )
            .metadata_options(md)
            .set_block_device_mappings((!devices.is_empty()).then_some(devices))
            .monitoring(
                ec2::LaunchTemplatesMonitoringRequest::builder()
                    .enabled(c.detailed_monitoring)
                    .build(),
            )
            .build();
        let created = ec2c
            .create_launch_template()
            .launch_template_name(&name)
            .launch_template_data(data)
            .tag_specifications(tag_spec(ec2::ResourceType::LaunchTemplate, &c.tags))
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e)
                if e.as_service_error().is_some_and(|s| {
                    err_code(s) == "InvalidLaunchTemplateName.AlreadyExistsException"
                }) => {}
            Err(e) => {
                return Err(CreateError::Provider(format!(
                    "CreateLaunchTemplate {name}: {}",
                    DisplayErrorContext(e)
                )));
            }
        }
        known.insert(name.clone());
        Ok(name)
    }

    async fn fleet(
        &self,
        request: &LaunchRequest,
        plan: &LaunchPlan,
        status: &EC2NodeClassStatus,
    ) -> Result<Created, CreateError> {
        let mut configs = Vec::new();
        for t in &plan.templates {
            let name = self.ensure_template(t).await?;
            let overrides = t
                .overrides
                .iter()
                .map(|o| {
                    ec2::FleetLaunchTemplateOverridesRequest::builder()
                        .instance_type(ec2::InstanceType::from(o.instance_type.as_str()))
                        .subnet_id(&o.subnet_id)
                        .image_id(&o.image_id)
                        .availability_zone(&o.zone)
                        .build()
                })
                .collect();
            configs.push(
                ec2::FleetLaunchTemplateConfigRequest::builder()
                    .launch_template_specification(
                        ec2::FleetLaunchTemplateSpecificationRequest::builder()
                            .launch_template_name(name)
                            .version("$Latest")
                            .build(),
                    )
                    .set_overrides(Some(overrides))
                    .build(),
            );
        }
        let spot = plan.capacity_type == "spot";
        let target = ec2::TargetCapacitySpecificationRequest::builder()
            .total_target_capacity(1)
            .default_target_capacity_type(if spot {
                ec2::DefaultTargetCapacityType::Spot
            } else {
                ec2::DefaultTargetCapacityType::OnDemand
            })
            .build();
        let mut call = self
            .clients
            .ec2
            .create_fleet()
            .r#type(ec2::FleetType::Instant)
            .target_capacity_specification(target)
            .set_launch_template_configs(Some(configs))
            .tag_specifications(tag_spec(ec2::ResourceType::Instance, &plan.tags))
            .tag_specifications(tag_spec(ec2::ResourceType::Volume, &plan.tags))
            .tag_specifications(tag_spec(ec2::ResourceType::Fleet, &plan.tags));
        call = if spot {
            call.spot_options(
                ec2::SpotOptionsRequest::builder()
                    .allocation_strategy(ec2::SpotAllocationStrategy::PriceCapacityOptimized)
                    .build(),
            )
        } else {
            call.on_demand_options(
                ec2::OnDemandOptionsRequest::builder()
                    .allocation_strategy(ec2::FleetOnDemandAllocationStrategy::LowestPrice)
                    .build(),
            )
        };
        let answer = call.send().await.map_err(|e| {
            CreateError::Provider(format!("CreateFleet: {}", DisplayErrorContext(e)))
        })?;

        // Refusals: capacity codes mark their offering; others are reported.
        let mut refused = Vec::new();
        let mut other = Vec::new();
        let now = now_ms();
        for e in answer.errors() {
            let code = e.error_code().unwrap_or_default();
            let o = e
                .launch_template_and_overrides()
                .and_then(|l| l.overrides());
            if ice::is_capacity_error(code) {
                let offered: Vec<Offer> = match o {
                    Some(o) => vec![Offer {
                        instance_type: o
                            .instance_type()
                            .map(|t| t.as_str().to_string())
                            .unwrap_or_default(),
                        zone: o
                            .availability_zone()
                            .map(str::to_string)
                            .or_else(|| {
                                o.subnet_id().and_then(|s| {
                                    status
                                        .subnets
                                        .iter()
                                        .find(|x| x.id == s)
                                        .map(|x| x.zone.clone())
                                })
                            })
                            .unwrap_or_default(),
                        capacity_type: plan.capacity_type.clone(),
                    }],
                    // No override named: every offering of the request.
                    None => plan
                        .templates
                        .iter()
                        .flat_map(|t| t.overrides.iter())
                        .map(|o| launch::offer_of(o, &plan.capacity_type))
                        .collect(),
                };
                if let Ok(mut u) = self.unavailable.lock() {
                    for o in &offered {
                        u.mark(o, now);
                    }
                }
                refused.extend(offered);
            } else {
                other.push(format!("{code}: {}", e.error_message().unwrap_or_default()));
            }
        }
        let launched = answer
            .instances()
            .iter()
            .find_map(|i| Some((i, i.instance_ids().first()?.clone())));
        let Some((fi, id)) = launched else {
            if other.is_empty() {
                return Err(CreateError::InsufficientCapacity(refused));
            }
            return Err(CreateError::Provider(format!(
                "CreateFleet launched nothing for NodeClaim {}: {}",
                request.claim,
                other.join("; ")
            )));
        };
        let o = fi
            .launch_template_and_overrides()
            .and_then(|l| l.overrides());
        let instance_type = fi
            .instance_type()
            .map(|t| t.as_str().to_string())
            .or_else(|| {
                o.and_then(|o| o.instance_type())
                    .map(|t| t.as_str().to_string())
            })
            .unwrap_or_default();
        let zone = o
            .and_then(|o| o.availability_zone().map(str::to_string))
            .or_else(|| {
                o.and_then(|o| o.subnet_id()).and_then(|s| {
                    status
                        .subnets
                        .iter()
                        .find(|x| x.id == s)
                        .map(|x| x.zone.clone())
                })
            })
            .unwrap_or_default();
        let image_id = o
            .and_then(|o| o.image_id())
            .map(str::to_string)
            .unwrap_or_default();
        let capacity_type = match fi.lifecycle() {
            Some(ec2::InstanceLifecycle::Spot) => "spot",
            Some(_) => "on-demand",
            None => plan.capacity_type.as_str(),
        };
        let offer = Offer {
            instance_type,
            zone: zone.clone(),
            capacity_type: capacity_type.to_string(),
        };
        Ok(Created {
            instance: Instance {
                id: provider_id(&zone, &id),
                claim: request.claim.clone(),
                price: self.price(&offer),
                offer,
                image_id,
                launched_at: request.now_ms,
                state: InstanceState::Running,
                drift: None,
            },
            refused,
            annotations: Labels::new(),
        })
    }
}

/// `"100Gi"` → 100 (GiB, as EBS takes it); `G`, `Ti`, `T` converted.
fn gib(size: &str) -> Option<i32> {
    let split = size.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = size.split_at(split);
    let n: f64 = n.parse().ok()?;
    let g = match unit {
        "Gi" => n,
        "G" => n * 1e9 / 1_073_741_824.0,
        "Ti" => n * 1024.0,
        "T" => n * 1e12 / 1_073_741_824.0,
        _ => return None,
    };
    Some(g.ceil() as i32)
}

fn tag_spec(kind: ec2::ResourceType, t: &BTreeMap<String, String>) -> ec2::TagSpecification {
    ec2::TagSpecification::builder()
        .resource_type(kind)
        .set_tags(Some(
            t.iter()
                .map(|(k, v)| ec2::Tag::builder().key(k).value(v).build())
                .collect(),
        ))
        .build()
}

impl Provider for AwsProvider {
    fn name(&self) -> &'static str {
        "aws"
    }

    fn instance_types(&self) -> Vec<InstanceType> {
        let now = now_ms();
        let u = self.unavailable.lock().ok();
        let mut types = Vec::clone(&self.catalog());
        if let Some(u) = u {
            for t in &mut types {
                for o in &mut t.offerings {
                    if u.is_unavailable(&Offer::of(&t.name, o), now) {
                        o.available = false;
                    }
                }
            }
        }
        types
    }

    fn node_class_kind(&self) -> (&'static str, &'static str) {
        ("karpenter.k8s.aws", "EC2NodeClass")
    }

    async fn create(&self, request: LaunchRequest) -> Result<Created, CreateError> {
        if request.options.is_empty() {
            return Err(CreateError::NoOptions(request.claim));
        }
        let Some(class) = request.node_class.clone() else {
            return Err(CreateError::Provider(format!(
                "NodeClaim {} names no EC2NodeClass",
                request.claim
            )));
        };
        let (spec, status) = self.class(&class).await?;
        if !resolve::is_ready(&status) {
            return Err(CreateError::Provider(format!(
                "EC2NodeClass {class} is not ready: {}",
                resolve::not_ready_message(&status)
            )));
        }
        // A retry, or a restart between CreateFleet and the claim's status: the instance
        // carrying the claim's tag is the launch.
        if let Some(instance) = self
            .claim_instance(&request.claim)
            .await
            .map_err(|e| CreateError::Provider(e.message))?
        {
            return Ok(Created {
                instance,
                refused: Vec::new(),
                annotations: drift::claim_annotations(&spec, &status, &self.cluster.ca_bundle),
            });
        }
        let now = now_ms();
        let all_unavailable: Vec<Offer> = {
            let u = self
                .unavailable
                .lock()
                .map_err(|e| CreateError::Provider(e.to_string()))?;
            request
                .options
                .iter()
                .filter(|o| u.is_unavailable(o, now))
                .cloned()
                .collect()
        };
        if all_unavailable.len() == request.options.len() {
            return Err(CreateError::InsufficientCapacity(all_unavailable));
        }
        let facts = ClusterFacts {
            name: self.cluster.name.clone(),
            endpoint: self.cluster.endpoint.clone(),
            ca_bundle: self.cluster.ca_bundle.clone(),
            cidr: self.cluster.cidr.clone(),
        };
        let catalog = self.catalog();
        let plan = {
            let u = self
                .unavailable
                .lock()
                .map_err(|e| CreateError::Provider(e.to_string()))?;
            launch::plan(&PlanInput {
                request: &request,
                spec: &spec,
                status: &status,
                catalog: &catalog,
                unavailable: &u,
                cluster: &facts,
                now_ms: now,
            })
        }
        .map_err(|e| CreateError::Provider(e.to_string()))?;
        let mut created = self.fleet(&request, &plan, &status).await?;
        created.annotations = drift::claim_annotations(&spec, &status, &self.cluster.ca_bundle);
        Ok(created)
    }

    /// Terminates the instance unless it is already shutting down (or gone); deletes made
    /// together go out as one DescribeInstances and one TerminateInstances.
    async fn delete(&self, id: String) -> Result<(), ProviderError> {
        let instance = crate::instance_id(&id).to_string();
        self.terminations
            .call(instance)
            .await
            .map_err(|e| ProviderError::new(e.to_string(), true))?
    }

    async fn list(&self) -> Result<Vec<Instance>, ProviderError> {
        self.describe(vec![
            tag_filter(tags::EKS_CLUSTER, &self.cluster.name),
            ec2::Filter::builder()
                .name("tag-key")
                .values(tags::NODEPOOL)
                .build(),
            ec2::Filter::builder()
                .name("tag-key")
                .values(tags::NODECLASS)
                .build(),
            live_states(),
        ])
        .await
    }
}

fn live_states() -> ec2::Filter {
    ec2::Filter::builder()
        .name("instance-state-name")
        .set_values(Some(
            ["pending", "running", "stopping", "stopped", "shutting-down"]
                .map(String::from)
                .to_vec(),
        ))
        .build()
}

fn tag_filter(key: &str, value: &str) -> ec2::Filter {
    ec2::Filter::builder()
        .name(format!("tag:{key}"))
        .values(value)
        .build()
}

/// Shutting down or terminated: nothing to launch again for, nothing to terminate.
fn is_ending(i: &ec2::Instance) -> bool {
    matches!(
        i.state().and_then(|s| s.name()),
        Some(ec2::InstanceStateName::ShuttingDown | ec2::InstanceStateName::Terminated)
    )
}

/// Every instance matching `filters`, over all pages of up to 1,000 (Karpenter asks for
/// 1,000 a page; without `MaxResults` moto pages at 100, which made a list of 1,000
/// instances ten calls).
pub(crate) async fn describe_instances(
    ec2c: &aws_sdk_ec2::Client,
    filters: Vec<ec2::Filter>,
) -> Result<Vec<ec2::Instance>, ProviderError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let answer = ec2c
            .describe_instances()
            .set_filters(Some(filters.clone()))
            .max_results(1000)
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(|e| provider_error("DescribeInstances", e))?;
        for r in answer.reservations() {
            out.extend(r.instances().iter().cloned());
        }
        token = answer.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(out);
        }
    }
}

/// Each claim's live instance (not shutting down), by one DescribeInstances whose claim
/// tag filter names them all. An error answers every claim.
async fn lookup_claims(
    ec2c: aws_sdk_ec2::Client,
    cluster: String,
    claims: Vec<String>,
) -> Vec<Result<Option<ec2::Instance>, ProviderError>> {
    let names: BTreeSet<String> = claims.iter().cloned().collect();
    let filters = vec![
        tag_filter(tags::EKS_CLUSTER, &cluster),
        ec2::Filter::builder()
            .name(format!("tag:{}", tags::NODECLAIM))
            .set_values(Some(names.into_iter().collect()))
            .build(),
        live_states(),
    ];
    let found = match describe_instances(&ec2c, filters).await {
        Ok(found) => found,
        Err(e) => return claims.iter().map(|_| Err(e.clone())).collect(),
    };
    let mut by_claim: BTreeMap<String, ec2::Instance> = BTreeMap::new();
    for i in found.into_iter().filter(|i| !is_ending(i)) {
        let claim = i
            .tags()
            .iter()
            .find(|t| t.key() == Some(tags::NODECLAIM))
            .and_then(|t| t.value())
            .map(str::to_string);
        if let Some(claim) = claim {
            by_claim.entry(claim).or_insert(i);
        }
    }
    claims
        .iter()
        .map(|c| Ok(by_claim.get(c).cloned()))
        .collect()
}

/// Terminates many instances: one DescribeInstances (an `instance-id` filter, which
/// skips IDs that are gone rather than failing on them) finds those not already
/// shutting down, one TerminateInstances ends them. An instance that call did not end
/// (it was refused: one instance the policy does not cover refuses them all) is tried
/// alone, so each caller gets its own instance's answer, as Karpenter's batcher does.
/// An instance that is gone is no error.
async fn terminate_instances(
    ec2c: aws_sdk_ec2::Client,
    ids: Vec<String>,
) -> Vec<Result<(), ProviderError>> {
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    let filters = vec![
        ec2::Filter::builder()
            .name("instance-id")
            .set_values(Some(unique.into_iter().collect()))
            .build(),
    ];
    let live: BTreeSet<String> = match describe_instances(&ec2c, filters).await {
        Ok(found) => found
            .iter()
            .filter(|i| !is_ending(i))
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect(),
        Err(e) => return ids.iter().map(|_| Err(e.clone())).collect(),
    };
    let mut ended: BTreeSet<String> = BTreeSet::new();
    if !live.is_empty() {
        let all = ec2c
            .terminate_instances()
            .set_instance_ids(Some(live.iter().cloned().collect()))
            .send()
            .await;
        match all {
            Ok(out) => {
                for change in out.terminating_instances() {
                    let ending = matches!(
                        change.current_state().and_then(|s| s.name()),
                        Some(
                            ec2::InstanceStateName::ShuttingDown
                                | ec2::InstanceStateName::Terminated
                        )
                    );
                    if let (true, Some(id)) = (ending, change.instance_id()) {
                        ended.insert(id.to_string());
                    }
                }
            }
            Err(e) => tracing::debug!(
                instances = live.len(),
                error = %DisplayErrorContext(&e),
                "TerminateInstances for a batch refused; each instance is tried alone"
            ),
        }
    }
    let client = &ec2c;
    let alone = live.difference(&ended).map(|id| async move {
        let answer = client.terminate_instances().instance_ids(id).send().await;
        let result = match answer {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| err_code(s) == "InvalidInstanceID.NotFound") =>
            {
                Ok(())
            }
            Err(e) => Err(provider_error("TerminateInstances", e)),
        };
        (id.clone(), result)
    });
    let retried: BTreeMap<String, Result<(), ProviderError>> =
        futures::future::join_all(alone).await.into_iter().collect();
    ids.iter()
        .map(|id| retried.get(id).cloned().unwrap_or(Ok(())))
        .collect()
}

/// Instances with no NodeClaim, launched more than `grace_ms` ago: what garbage
/// collection terminates (Karpenter: 30 s).
pub fn orphans<'a>(
    instances: &'a [Instance],
    claims: &BTreeSet<String>,
    now_ms: i64,
    grace_ms: i64,
) -> Vec<&'a Instance> {
    instances
        .iter()
        .filter(|i| i.state == InstanceState::Running)
        .filter(|i| !claims.contains(&i.claim))
        .filter(|i| now_ms - i.launched_at > grace_ms)
        .collect()
}
