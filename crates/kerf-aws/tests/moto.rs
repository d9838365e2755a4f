//! kerf-aws against moto (`tools/moto/server.py`): resolution, launches, terminations,
//! listing, garbage-collection candidates, faults moto cannot produce (injected by an
//! SDK interceptor), and interruption messages through a real queue.
//!
//! Needs `python3`; `tools/moto/install.sh` puts moto and cfn-lint from PyPI in a cached
//! virtualenv on first use. Fails, never skips, when they cannot be had.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeDeserializationInterceptorContextMut, BeforeTransmitInterceptorContextMut,
};
use aws_smithy_runtime_api::client::interceptors::{Intercept, SharedInterceptor};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use kerf_api::crd::{
    AMISelectorTerm, EC2NodeClass, EC2NodeClassSpec, SecurityGroupSelectorTerm, SubnetSelectorTerm,
};
use kerf_aws::interruption::{Interruption, Queue};
use kerf_aws::pricing::PricingError;
use kerf_aws::provider::{ResolvedClasses, orphans};
use kerf_aws::{AwsProvider, Clients, ClusterInfo};
use kerf_aws::{resolve, tagging, termination};
use kerf_cloud::{CreateError, LaunchRequest, Offer, Provider};
use kerf_model::{InstanceType, Offering, labels};
use kerf_testcluster::moto::{Moto, python};

const CLUSTER: &str = "kerf-test";
const REGION: &str = "us-west-2";

fn start_moto() -> Moto {
    start_moto_with(&[])
}

/// `tools/moto/server.py` for this suite's cluster and region, with `extra` arguments.
fn start_moto_with(extra: &[&str]) -> Moto {
    Moto::start(CLUSTER, REGION, "1.33", extra)
}

/// kerf-aws's clients and provider on a moto server.
trait OnMoto {
    async fn clients(&self, interceptor: Option<SharedInterceptor>) -> Clients;
    async fn clients_as(
        &self,
        keys: (&str, &str),
        interceptor: Option<SharedInterceptor>,
    ) -> Clients;
    async fn provider(&self, interceptor: Option<SharedInterceptor>) -> AwsProvider;
    async fn provider_on(&self, clients: Clients) -> AwsProvider;
}

impl OnMoto for Moto {
    async fn clients(&self, interceptor: Option<SharedInterceptor>) -> Clients {
        self.clients_as(("testing", "testing"), interceptor).await
    }

    async fn clients_as(
        &self,
        (key, secret): (&str, &str),
        interceptor: Option<SharedInterceptor>,
    ) -> Clients {
        Clients::with_keys(self.endpoint(), REGION, (key, secret), interceptor)
            .await
            .unwrap()
    }

    async fn provider(&self, interceptor: Option<SharedInterceptor>) -> AwsProvider {
        self.provider_on(self.clients(interceptor).await).await
    }

    async fn provider_on(&self, clients: Clients) -> AwsProvider {
        let classes: ResolvedClasses = Arc::new(RwLock::new(BTreeMap::new()));
        AwsProvider::new(
            clients,
            ClusterInfo {
                name: CLUSTER.into(),
                endpoint: "https://api.kerf-test.example".into(),
                ca_bundle: "Q0EK".into(),
                cidr: None,
                k8s_version: "1.33".into(),
            },
            classes,
            None,
        )
        .await
        .unwrap()
    }
}

fn discovery() -> BTreeMap<String, String> {
    BTreeMap::from([("karpenter.sh/discovery".to_string(), CLUSTER.to_string())])
}

fn class(name: &str, alias: &str) -> EC2NodeClass {
    let mut nc = EC2NodeClass::new(
        name,
        EC2NodeClassSpec {
            subnet_selector_terms: vec![SubnetSelectorTerm {
                tags: discovery(),
                ..Default::default()
            }],
            security_group_selector_terms: vec![SecurityGroupSelectorTerm {
                tags: discovery(),
                ..Default::default()
            }],
            ami_selector_terms: vec![AMISelectorTerm {
                alias: Some(alias.into()),
                ..Default::default()
            }],
            instance_profile: Some(format!("KarpenterNodeInstanceProfile-{CLUSTER}")),
            tags: BTreeMap::from([("team".to_string(), "blue".to_string())]),
            ..Default::default()
        },
    );
    nc.metadata.uid = Some(format!("uid-{name}"));
    nc.metadata.generation = Some(1);
    nc
}

/// `class`, with `spec.role` instead of `spec.instanceProfile`: kerf makes its profile.
fn role_class(name: &str, role: &str) -> EC2NodeClass {
    let mut nc = class(name, "al2023@latest");
    nc.spec.instance_profile = None;
    nc.spec.role = Some(role.to_string());
    nc
}

fn cond<'a>(
    s: &'a kerf_api::crd::EC2NodeClassStatus,
    t: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    s.conditions.iter().find(|c| c.type_ == t).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn resolves_a_discovery_class_into_its_status() {
    let moto = start_moto();
    let p = moto.provider(None).await;
    let status = p.resolve_class(&class("default", "al2023@latest")).await;
    // Most free addresses first: c (/20), b (/22), a (/24); the untagged subnet is not selected.
    let ids: Vec<&str> = status.subnets.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        vec![
            moto.subnet("us-west-2c"),
            moto.subnet("us-west-2b"),
            moto.subnet("us-west-2a")
        ]
    );
    assert_eq!(status.subnets[0].zone, "us-west-2c");
    assert!(status.subnets[0].zone_id.is_some());
    assert_eq!(status.security_groups.len(), 1);
    assert_eq!(
        status.security_groups[0].id,
        moto.info["security_group"].as_str().unwrap()
    );
    // al2023@latest: the newer release, for both architectures and all three variants.
    let mut amis: Vec<String> = status.amis.iter().map(|a| a.id.clone()).collect();
    amis.sort();
    let mut want: Vec<String> = ["x86_64", "arm64"]
        .iter()
        .flat_map(|a| {
            ["standard", "nvidia", "neuron"]
                .map(|v| moto.image(&format!("amazon-eks-node-al2023-{a}-{v}-1.33-v20250601")))
        })
        .collect();
    want.sort();
    assert_eq!(amis, want);
    assert_eq!(
        status.instance_profile.as_deref(),
        Some("KarpenterNodeInstanceProfile-kerf-test")
    );
    for t in [
        "SubnetsReady",
        "SecurityGroupsReady",
        "AMIsReady",
        "InstanceProfileReady",
        "Ready",
    ] {
        assert_eq!(
            cond(&status, t).status,
            "True",
            "{t}: {:?}",
            cond(&status, t)
        );
    }

    // A pinned release reads its own parameters.
    let pinned = p.resolve_class(&class("pinned", "al2023@v20250101")).await;
    assert!(
        pinned
            .amis
            .iter()
            .any(|a| a.id == moto.image("amazon-eks-node-al2023-arm64-standard-1.33-v20250101"))
    );
    // Bottlerocket latest.
    let br = p.resolve_class(&class("br", "bottlerocket@latest")).await;
    assert!(
        br.amis
            .iter()
            .any(|a| a.id == moto.image("bottlerocket-aws-k8s-1.33-x86_64-v1.31.0"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn selectors_matching_nothing_and_unknown_aliases_say_which() {
    let moto = start_moto();
    let p = moto.provider(None).await;
    let mut nc = class("nosubnet", "al2023@latest");
    nc.spec.subnet_selector_terms = vec![SubnetSelectorTerm {
        tags: BTreeMap::from([("karpenter.sh/discovery".to_string(), "nope".to_string())]),
        ..Default::default()
    }];
    let status = p.resolve_class(&nc).await;
    let sn = cond(&status, "SubnetsReady");
    assert_eq!(
        (sn.status.as_str(), sn.reason.as_str()),
        ("False", "SubnetsNotFound")
    );
    assert!(
        sn.message.contains("\"karpenter.sh/discovery\":\"nope\""),
        "{}",
        sn.message
    );
    assert_eq!(cond(&status, "Ready").status, "False");
    assert_eq!(cond(&status, "SecurityGroupsReady").status, "True");

    let bad = p.resolve_class(&class("badalias", "ubuntu@latest")).await;
    let a = cond(&bad, "AMIsReady");
    assert_eq!(a.status, "False");
    assert!(a.message.contains("ubuntu@latest"), "{}", a.message);

    // A launch on a class that is not ready is refused with the reason, and launches nothing.
    let err = p
        .create(request(
            "c-nosubnet",
            "nosubnet",
            &[("m6i.large", "us-west-2a", "on-demand")],
        ))
        .await;
    let Err(CreateError::Provider(msg)) = err else {
        panic!("{err:?}")
    };
    assert!(
        msg.contains("EC2NodeClass nosubnet is not ready: SubnetsReady"),
        "{msg}"
    );
    assert!(p.list().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn role_gets_a_managed_instance_profile_holding_it() {
    let moto = start_moto();
    let p = moto.provider(None).await;
    let nc = role_class("withrole", moto.info["role"].as_str().unwrap());
    let status = p.resolve_class(&nc).await;
    assert_eq!(
        cond(&status, "InstanceProfileReady").status,
        "True",
        "{:?}",
        status.conditions
    );
    let name = status.instance_profile.clone().unwrap();
    assert_eq!(
        name,
        resolve::managed_profile_name(CLUSTER, REGION, "withrole", "uid-withrole")
    );
    let got = p
        .clients()
        .iam
        .get_instance_profile()
        .instance_profile_name(&name)
        .send()
        .await
        .unwrap();
    let profile = got.instance_profile.unwrap();
    assert_eq!(
        profile.roles()[0].role_name(),
        "KarpenterNodeRole-kerf-test"
    );
    assert_eq!(
        profile.path(),
        format!("/karpenter/{REGION}/{CLUSTER}/uid-withrole/")
    );
    // Resolving again reuses it.
    let again = p.resolve_class(&nc).await;
    assert_eq!(again.instance_profile.as_deref(), Some(name.as_str()));
    let missing = {
        let mut nc = class("ghostprofile", "al2023@latest");
        nc.spec.instance_profile = Some("does-not-exist".into());
        p.resolve_class(&nc).await
    };
    assert_eq!(cond(&missing, "InstanceProfileReady").status, "False");
}

fn request(claim: &str, class: &str, options: &[(&str, &str, &str)]) -> LaunchRequest {
    LaunchRequest {
        claim: claim.into(),
        nodepool: "default".into(),
        node_class: Some(class.into()),
        options: options
            .iter()
            .map(|(t, z, c)| Offer {
                instance_type: t.to_string(),
                zone: z.to_string(),
                capacity_type: c.to_string(),
            })
            .collect(),
        image_id: String::new(),
        labels: BTreeMap::from([("karpenter.sh/nodepool".to_string(), "default".to_string())]),
        taints: vec![],
        startup_taints: vec![],
        now_ms: jiff::Timestamp::now().as_millisecond(),
    }
}

async fn describe(p: &AwsProvider, id: &str) -> aws_sdk_ec2::types::Instance {
    let out = p
        .clients()
        .ec2
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
        .unwrap();
    out.reservations()[0].instances()[0].clone()
}

fn tag_map(tags: &[aws_sdk_ec2::types::Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn create_is_idempotent_per_claim_and_delete_and_list_agree_with_moto() {
    let moto = start_moto();
    let p = moto.provider(None).await;
    p.resolve_class(&class("default", "al2023@latest")).await;
    let created = p
        .create(request(
            "claim-1",
            "default",
            &[
                ("m6i.large", "us-west-2b", "on-demand"),
                ("m6i.xlarge", "us-west-2a", "on-demand"),
            ],
        ))
        .await
        .unwrap();
    let i = &created.instance;
    let id = kerf_aws::instance_id(&i.id).to_string();
    assert!(i.id.starts_with("aws:///us-west-2b/i-"), "{}", i.id);
    assert_eq!(i.offer.instance_type, "m6i.large");
    assert_eq!(i.claim, "claim-1");
    assert_eq!(
        i.image_id,
        moto.image("amazon-eks-node-al2023-x86_64-standard-1.33-v20250601")
    );

    let got = describe(&p, &id).await;
    assert_eq!(got.instance_type().unwrap().as_str(), "m6i.large");
    assert_eq!(got.subnet_id(), Some(moto.subnet("us-west-2b").as_str()));
    let tags = tag_map(got.tags());
    for (k, v) in [
        ("karpenter.sh/nodeclaim", "claim-1"),
        ("karpenter.sh/nodepool", "default"),
        ("karpenter.k8s.aws/ec2nodeclass", "default"),
        ("eks:eks-cluster-name", CLUSTER),
        ("kubernetes.io/cluster/kerf-test", "owned"),
        ("team", "blue"),
    ] {
        assert_eq!(
            tags.get(k).map(String::as_str),
            Some(v),
            "tag {k} in {tags:?}"
        );
    }

    // The launch template: named by its content's hash, IMDSv2 only, hop limit 1, the
    // nodeadm user data with the unregistered taint.
    let lts = p
        .clients()
        .ec2
        .describe_launch_templates()
        .send()
        .await
        .unwrap();
    let lt = &lts.launch_templates()[0];
    assert!(
        lt.launch_template_name()
            .unwrap()
            .starts_with("karpenter.k8s.aws/")
    );
    assert_eq!(
        tag_map(lt.tags())
            .get("eks:eks-cluster-name")
            .map(String::as_str),
        Some(CLUSTER)
    );
    let v = p
        .clients()
        .ec2
        .describe_launch_template_versions()
        .launch_template_id(lt.launch_template_id().unwrap())
        .send()
        .await
        .unwrap();
    let data = v.launch_template_versions()[0]
        .launch_template_data()
        .unwrap();
    let md = data.metadata_options().unwrap();
    assert_eq!(md.http_tokens().unwrap().as_str(), "required");
    assert_eq!(md.http_put_response_hop_limit(), Some(1));
    use base64::Engine as _;
    let ud = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(data.user_data().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert!(ud.contains("karpenter.sh/unregistered:NoExecute"), "{ud}");
    assert!(ud.contains("apiServerEndpoint: \"https://api.kerf-test.example\""));
    assert_eq!(
        data.iam_instance_profile().unwrap().name(),
        Some("KarpenterNodeInstanceProfile-kerf-test")
    );

    // The same claim again (a retry, a restart): the same instance, no second launch.
    let again = p
        .create(request(
            "claim-1",
            "default",
            &[("m6i.large", "us-west-2b", "on-demand")],
        ))
        .await
        .unwrap();
    assert_eq!(again.instance.id, i.id);
    let listed = p.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, i.id);
    assert_eq!(listed[0].claim, "claim-1");

    // A second claim on spot reuses the template, launches a spot instance.
    let spot = p
        .create(request(
            "claim-2",
            "default",
            &[("m6g.large", "us-west-2c", "spot")],
        ))
        .await
        .unwrap();
    assert_eq!(spot.instance.offer.capacity_type, "spot");
    assert_eq!(
        spot.instance.image_id,
        moto.image("amazon-eks-node-al2023-arm64-standard-1.33-v20250601")
    );
    assert_eq!(p.list().await.unwrap().len(), 2);

    // Garbage collection: an instance whose claim is gone, launched over 30 s ago.
    let listed = p.list().await.unwrap();
    let claims: BTreeSet<String> = ["claim-1".to_string()].into();
    let launched = listed.iter().map(|i| i.launched_at).max().unwrap();
    let gc = orphans(&listed, &claims, launched + 31_000, 30_000);
    assert_eq!(
        gc.iter().map(|i| i.claim.as_str()).collect::<Vec<_>>(),
        vec!["claim-2"]
    );
    assert!(orphans(&listed, &claims, launched + 10_000, 30_000).is_empty());

    // Delete terminates; deleting again is not an error; list forgets it.
    p.delete(i.id.clone()).await.unwrap();
    let state = describe(&p, &id)
        .await
        .state()
        .unwrap()
        .name()
        .unwrap()
        .clone();
    assert!(
        matches!(state.as_str(), "shutting-down" | "terminated"),
        "{state:?}"
    );
    p.delete(i.id.clone()).await.unwrap();
    p.delete("aws:///us-west-2a/i-0000000000000dead".into())
        .await
        .unwrap();
    let left: Vec<String> = p
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.claim)
        .collect();
    assert_eq!(left, vec!["claim-2".to_string()]);
}

/// moto's `DescribeInstanceTypeOfferings` for the region, by type: what the catalog's zones
/// are checked against, read apart from kerf.
async fn offered_zones(clients: &Clients) -> BTreeMap<String, BTreeSet<String>> {
    let out = clients
        .ec2
        .describe_instance_type_offerings()
        .location_type(aws_sdk_ec2::types::LocationType::AvailabilityZone)
        .send()
        .await
        .unwrap();
    let mut by_type: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for o in out.instance_type_offerings() {
        by_type
            .entry(o.instance_type().unwrap().as_str().to_string())
            .or_default()
            .insert(o.location().unwrap().to_string());
    }
    by_type
}

fn find<'a>(types: &'a [InstanceType], name: &str) -> &'a InstanceType {
    types
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("{name} is not in the catalog"))
}

fn offering<'a>(t: &'a InstanceType, zone: &str, capacity_type: &str) -> &'a Offering {
    t.offerings
        .iter()
        .find(|o| o.zone == zone && o.capacity_type == capacity_type)
        .unwrap_or_else(|| panic!("{} has no {capacity_type} offering in {zone}", t.name))
}

/// The catalog is the region's: moto's DescribeInstanceTypes and
/// DescribeInstanceTypeOfferings, sized and labelled by the embedded catalog's rules.
#[tokio::test(flavor = "multi_thread")]
async fn the_catalog_is_the_regions_instance_types_by_the_embedded_rules() {
    let moto = start_moto();
    let clients = moto.clients(None).await;
    let started = std::time::Instant::now();
    let p = moto.provider_on(clients.clone()).await;
    let took = started.elapsed();
    assert!(p.catalog_is_live());
    let catalog = p.catalog();
    eprintln!(
        "live catalog: {} instance types, provider ready in {took:?}",
        catalog.len()
    );
    let region_zones: BTreeSet<String> = clients
        .ec2
        .describe_availability_zones()
        .send()
        .await
        .unwrap()
        .availability_zones()
        .iter()
        .map(|z| z.zone_name().unwrap().to_string())
        .collect();
    let offered = offered_zones(&clients).await;
    let embedded = kerf_model::catalog::aws::instance_types();
    // Far more than the embedded 138: every x86_64/arm64 type moto offers here.
    assert!(catalog.len() > 1000, "{}", catalog.len());
    assert!(catalog.windows(2).all(|w| w[0].name < w[1].name));
    for t in catalog.iter() {
        assert_eq!(t.labels[labels::REGION], REGION, "{}", t.name);
        let zones: BTreeSet<String> = t.offerings.iter().map(|o| o.zone.clone()).collect();
        assert!(zones.is_subset(&region_zones), "{}: {zones:?}", t.name);
        assert_eq!(Some(&zones), offered.get(&t.name), "{}", t.name);
    }
    for name in ["m6g.large", "c6i.xlarge"] {
        let live = find(&catalog, name);
        let e = find(&embedded, name);
        assert_eq!(live.capacity, e.capacity, "{name}");
        assert_eq!(live.overhead, e.overhead, "{name}");
        assert_eq!(live.allocatable(), e.allocatable(), "{name}");
        for (k, v) in &e.labels {
            let want = if k == labels::REGION { REGION } else { v };
            assert_eq!(
                live.labels.get(k).map(String::as_str),
                Some(want),
                "{name} {k}"
            );
        }
        // Each offered zone, on-demand and spot; the fallback's (us-east-1, dated) figure
        // and spot standing at on-demand: estimates, until the prices are refreshed.
        let od = e.offerings[0].price;
        let want: Vec<(String, &str, f64, bool, bool)> = offered[name]
            .iter()
            .flat_map(|z| {
                [
                    (z.clone(), "on-demand", od, true, true),
                    (z.clone(), "spot", od, true, true),
                ]
            })
            .collect();
        let got: Vec<(String, &str, f64, bool, bool)> = live
            .offerings
            .iter()
            .map(|o| {
                (
                    o.zone.clone(),
                    o.capacity_type.as_str(),
                    o.price,
                    o.price_is_estimate,
                    o.available,
                )
            })
            .collect();
        assert_eq!(got, want, "{name}");
    }
    // What DescribeInstanceTypes adds beyond the embedded labels (moto's figures).
    let label = |t: &str, k: &str| {
        find(&catalog, t)
            .labels
            .get(&format!("karpenter.k8s.aws/{k}"))
            .cloned()
            .unwrap_or_else(|| panic!("{t} has no {k}"))
    };
    for (t, k, v) in [
        ("m6g.large", "instance-network-bandwidth", "750"),
        ("m6g.large", "instance-ebs-bandwidth", "4750"),
        (
            "m6g.large",
            "instance-encryption-in-transit-supported",
            "false",
        ),
        (
            "m6g.large",
            "instance-cpu-sustained-clock-speed-mhz",
            "2500",
        ),
        ("c6i.xlarge", "instance-network-bandwidth", "1562"),
        (
            "c6i.xlarge",
            "instance-encryption-in-transit-supported",
            "true",
        ),
        ("p4d.24xlarge", "instance-gpu-name", "a100"),
        ("p4d.24xlarge", "instance-gpu-manufacturer", "nvidia"),
        ("p4d.24xlarge", "instance-gpu-count", "8"),
        ("p4d.24xlarge", "instance-gpu-memory", "40960"),
        ("p4d.24xlarge", "instance-local-nvme", "8000"),
        ("p4d.24xlarge", "instance-network-bandwidth", "400000"),
        ("i3en.large", "instance-local-nvme", "1250"),
    ] {
        assert_eq!(label(t, k), v, "{t} {k}");
    }
    assert!(
        !find(&catalog, "m6g.large")
            .labels
            .contains_key("karpenter.k8s.aws/instance-gpu-name")
    );
}

/// Spot prices come from moto's DescribeSpotPriceHistory; on-demand prices cannot (moto
/// has no Pricing API), so the fallback stays and the catalog still launches.
#[tokio::test(flavor = "multi_thread")]
async fn spot_prices_come_from_the_history_and_on_demand_falls_back_when_pricing_fails() {
    let moto = start_moto();
    let clients = moto.clients(None).await;
    let p = moto.provider_on(clients.clone()).await;
    let offerings: usize = offered_zones(&clients)
        .await
        .values()
        .map(BTreeSet::len)
        .sum();
    // moto prices every offering of the region at 0.00001, once.
    assert_eq!(p.refresh_spot_prices().await.unwrap(), offerings);
    let err = p.refresh_on_demand_prices().await.unwrap_err();
    assert!(matches!(err, PricingError::Api(_)), "{err:?}");
    eprintln!("GetProducts against moto: {err}");
    let prices = p.prices();
    assert!(prices.spot_updated());
    assert_eq!(prices.live_on_demand(), 0);

    let catalog = p.catalog();
    let m6g = find(&catalog, "m6g.large");
    let spot = offering(m6g, "us-west-2c", "spot");
    assert_eq!(
        (spot.price, spot.price_is_estimate, spot.available),
        (0.00001, false, true)
    );
    let od = offering(m6g, "us-west-2a", "on-demand");
    assert_eq!(
        (od.price, od.price_is_estimate, od.available),
        (0.077, true, true)
    );
    // A type the fallback does not price: its on-demand offerings are listed, not offered;
    // its spot offerings are priced by the history.
    let t3 = find(&catalog, "t3.micro");
    assert!(!offering(t3, "us-west-2a", "on-demand").available);
    assert!(offering(t3, "us-west-2a", "spot").available);

    // Launches go on, at the catalog's prices.
    p.resolve_class(&class("default", "al2023@latest")).await;
    let launched = p
        .create(request(
            "claim-od",
            "default",
            &[("m6g.large", "us-west-2a", "on-demand")],
        ))
        .await
        .unwrap();
    assert_eq!(launched.instance.price, 0.077);
    let launched = p
        .create(request(
            "claim-spot",
            "default",
            &[("m6g.large", "us-west-2c", "spot")],
        ))
        .await
        .unwrap();
    assert_eq!(launched.instance.offer.capacity_type, "spot");
    assert_eq!(launched.instance.price, 0.00001);
    let listed: BTreeMap<String, f64> = p
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|i| (i.claim, i.price))
        .collect();
    assert_eq!(
        listed,
        BTreeMap::from([
            ("claim-od".to_string(), 0.077),
            ("claim-spot".to_string(), 0.00001)
        ])
    );
}

/// `ISOLATED_VPC`: the Pricing API is not called (against moto, which has none, a call
/// would fail), on-demand prices stay the fallback table's, spot prices still come.
#[tokio::test(flavor = "multi_thread")]
async fn an_isolated_vpc_keeps_the_fallback_on_demand_prices_without_asking() {
    let moto = start_moto();
    let clients = moto.clients(None).await;
    let p = moto.provider_on(clients.clone()).await;
    assert_eq!(p.on_demand_pricing_skipped(), None);
    assert!(
        p.refresh_on_demand_prices().await.is_err(),
        "GetProducts was asked"
    );
    let p = p.with_isolated_vpc(true);
    assert!(
        p.on_demand_pricing_skipped()
            .unwrap()
            .contains("ISOLATED_VPC")
    );
    assert_eq!(p.refresh_on_demand_prices().await, Ok(0));
    assert!(p.refresh_spot_prices().await.unwrap() > 0);
    assert_eq!(p.prices().live_on_demand(), 0);
    let od = offering(find(&p.catalog(), "m6g.large"), "us-west-2a", "on-demand").clone();
    assert_eq!(
        (od.price, od.price_is_estimate, od.available),
        (0.077, true, true)
    );
}

async fn template_names(p: &AwsProvider) -> BTreeSet<(String, String)> {
    let out = p
        .clients()
        .ec2
        .describe_launch_templates()
        .send()
        .await
        .unwrap();
    out.launch_templates()
        .iter()
        .map(|lt| {
            let t = tag_map(lt.tags());
            (
                t.get("eks:eks-cluster-name").cloned().unwrap_or_default(),
                t.get("karpenter.k8s.aws/ec2nodeclass")
                    .cloned()
                    .unwrap_or_default(),
            )
        })
        .collect()
}

async fn profile_exists(p: &AwsProvider, name: &str) -> bool {
    match p
        .clients()
        .iam
        .get_instance_profile()
        .instance_profile_name(name)
        .send()
        .await
    {
        Ok(_) => true,
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_no_such_entity_exception()) =>
        {
            false
        }
        Err(e) => panic!("{e:?}"),
    }
}

/// The finalizer's cleanup: a deleted class's launch templates and managed instance
/// profile go; another class's template, another cluster's template of the same class
/// name and the user's own instance profile stay; a second run finds nothing to do.
#[tokio::test(flavor = "multi_thread")]
async fn termination_cleanup_deletes_only_what_kerf_made_for_the_class() {
    let moto = start_moto();
    let p = moto.provider(None).await;
    // A class name (so UID) of its own: the process remembers whose profile it deleted.
    let doomed = role_class("doomed", moto.info["role"].as_str().unwrap());
    let status = p.resolve_class(&doomed).await;
    assert_eq!(
        cond(&status, "Ready").status,
        "True",
        "{:?}",
        status.conditions
    );
    let profile = status.instance_profile.clone().unwrap();
    let users = format!("KarpenterNodeInstanceProfile-{CLUSTER}");
    let other = class("other", "al2023@latest");
    p.resolve_class(&other).await;
    for (claim, nc) in [("claim-1", "doomed"), ("claim-2", "other")] {
        p.create(request(
            claim,
            nc,
            &[("m6i.large", "us-west-2b", "on-demand")],
        ))
        .await
        .unwrap();
    }
    // Another cluster's template, for a class of the same name.
    p.clients()
        .ec2
        .create_launch_template()
        .launch_template_name("karpenter.k8s.aws/elsewhere")
        .launch_template_data(
            aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                .image_id(moto.image("amazon-eks-node-al2023-x86_64-standard-1.33-v20250601"))
                .build(),
        )
        .tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::LaunchTemplate)
                .tags(
                    aws_sdk_ec2::types::Tag::builder()
                        .key("eks:eks-cluster-name")
                        .value("another-cluster")
                        .build(),
                )
                .tags(
                    aws_sdk_ec2::types::Tag::builder()
                        .key("karpenter.k8s.aws/ec2nodeclass")
                        .value("doomed")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let pair = |c: &str, n: &str| (c.to_string(), n.to_string());
    assert_eq!(
        template_names(&p).await,
        BTreeSet::from([
            pair(CLUSTER, "doomed"),
            pair(CLUSTER, "other"),
            pair("another-cluster", "doomed"),
        ])
    );

    let cleaned = termination::cleanup(p.clients(), CLUSTER, &doomed)
        .await
        .unwrap();
    assert_eq!(cleaned.launch_templates.len(), 1, "{cleaned:?}");
    assert!(cleaned.launch_templates[0].starts_with("karpenter.k8s.aws/"));
    assert_eq!(cleaned.instance_profile.as_deref(), Some(profile.as_str()));
    assert_eq!(
        template_names(&p).await,
        BTreeSet::from([pair(CLUSTER, "other"), pair("another-cluster", "doomed")])
    );
    assert!(!profile_exists(&p, &profile).await);
    // The node role itself is the user's: only taken out of the profile.
    p.clients()
        .iam
        .get_role()
        .role_name(moto.info["role"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    // Again (a controller killed before it removed the finalizer): nothing left to do.
    let again = termination::cleanup(p.clients(), CLUSTER, &doomed)
        .await
        .unwrap();
    assert_eq!(again, termination::Cleaned::default());
    // Resolution under way for the deleted class cannot make its profile again.
    let late = p.resolve_class(&doomed).await;
    assert_eq!(cond(&late, "InstanceProfileReady").status, "False");
    assert!(!profile_exists(&p, &profile).await);

    // A class naming the user's instance profile: its template goes, the profile stays.
    let cleaned = termination::cleanup(p.clients(), CLUSTER, &other)
        .await
        .unwrap();
    assert_eq!(cleaned.launch_templates.len(), 1, "{cleaned:?}");
    assert_eq!(cleaned.instance_profile, None);
    assert!(profile_exists(&p, &users).await);
    assert_eq!(
        template_names(&p).await,
        BTreeSet::from([pair("another-cluster", "doomed")])
    );
}

/// moto's IAM mode checks a query request's signature over the form it parsed, encoded
/// again by Python (`+` for a space) rather than over the bytes sent; the SDK sends `%20`,
/// so a value with a space (`Linux/UNIX (Amazon VPC)`) fails its signature check. This
/// sends `+`, which means the same in a form body, for DescribeSpotPriceHistory.
#[derive(Debug, Clone)]
struct SpacesAsPlus;

impl Intercept for SpacesAsPlus {
    fn name(&self) -> &'static str {
        "kerf-test-spaces-as-plus"
    }

    fn modify_before_signing(
        &self,
        ctx: &mut BeforeTransmitInterceptorContextMut<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if cfg
            .load::<Metadata>()
            .is_none_or(|m| m.name() != "DescribeSpotPriceHistory")
        {
            return Ok(());
        }
        let req = ctx.request_mut();
        let Some(bytes) = req.body().bytes() else {
            return Ok(());
        };
        let body = String::from_utf8_lossy(bytes).replace("%20", "+");
        req.headers_mut()
            .insert("content-length", body.len().to_string());
        *req.body_mut() = SdkBody::from(body);
        Ok(())
    }
}

/// Stands in for EC2 where moto cannot: for the next queued attempts of `operation`,
/// the request is turned into a harmless DescribeRegions before signing (so moto does
/// nothing) and the answer replaced by a canned one. Counts every operation's attempts.
#[derive(Debug)]
struct Faults {
    operation: &'static str,
    queue: Mutex<VecDeque<(u16, String)>>,
    /// Attempts by operation, faulted or not, since the last `take_calls`.
    calls: Mutex<BTreeMap<String, usize>>,
    /// Attempts of `operation`, faulted or not.
    attempts: Mutex<usize>,
    active: Mutex<Option<(u16, String)>>,
}

impl Faults {
    fn on(operation: &'static str) -> Arc<Faults> {
        Arc::new(Faults {
            operation,
            queue: Mutex::default(),
            calls: Mutex::default(),
            attempts: Mutex::default(),
            active: Mutex::default(),
        })
    }

    /// Fails the next attempt of `operation` not yet faulted with this answer.
    fn push(&self, status: u16, body: String) {
        self.queue.lock().unwrap().push_back((status, body));
    }

    /// The attempts counted since the last call, by operation.
    fn take_calls(&self) -> BTreeMap<String, usize> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

#[derive(Debug, Clone)]
struct FaultInterceptor(Arc<Faults>);

fn operation(cfg: &ConfigBag) -> String {
    cfg.load::<Metadata>()
        .map(|m| m.name().to_string())
        .unwrap_or_default()
}

impl Intercept for FaultInterceptor {
    fn name(&self) -> &'static str {
        "kerf-test-faults"
    }

    fn modify_before_signing(
        &self,
        ctx: &mut BeforeTransmitInterceptorContextMut<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let op = operation(cfg);
        *self.0.calls.lock().unwrap().entry(op.clone()).or_default() += 1;
        if op != self.0.operation {
            return Ok(());
        }
        *self.0.attempts.lock().unwrap() += 1;
        let next = self.0.queue.lock().unwrap().pop_front();
        if let Some(fault) = next {
            let body = "Action=DescribeRegions&Version=2016-11-15";
            let req = ctx.request_mut();
            *req.body_mut() = SdkBody::from(body);
            req.headers_mut()
                .insert("content-length", body.len().to_string());
            *self.0.active.lock().unwrap() = Some(fault);
        }
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        ctx: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if operation(cfg) != self.0.operation {
            return Ok(());
        }
        if let Some((status, body)) = self.0.active.lock().unwrap().take() {
            let resp = ctx.response_mut();
            *resp.status_mut() =
                aws_smithy_runtime_api::http::StatusCode::try_from(status).unwrap();
            *resp.body_mut() = SdkBody::from(body);
        }
        Ok(())
    }
}

/// A provider on `moto` whose `operation` calls `Faults` can fail, with class `default`
/// resolved.
async fn provider_with_faults(moto: &Moto, operation: &'static str) -> (AwsProvider, Arc<Faults>) {
    let faults = Faults::on(operation);
    let interceptor = SharedInterceptor::new(FaultInterceptor(faults.clone()));
    let p = moto.provider(Some(interceptor)).await;
    p.resolve_class(&class("default", "al2023@latest")).await;
    (p, faults)
}

fn ice_response(instance_type: &str, zone: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<CreateFleetResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>00000000-0000-0000-0000-000000000000</requestId>
  <fleetId>fleet-00000000-0000-0000-0000-000000000000</fleetId>
  <errorSet>
    <item>
      <launchTemplateAndOverrides>
        <overrides><instanceType>{instance_type}</instanceType><availabilityZone>{zone}</availabilityZone></overrides>
      </launchTemplateAndOverrides>
      <lifecycle>on-demand</lifecycle>
      <errorCode>InsufficientInstanceCapacity</errorCode>
      <errorMessage>We currently do not have sufficient {instance_type} capacity in {zone}.</errorMessage>
    </item>
  </errorSet>
  <fleetInstanceSet/>
</CreateFleetResponse>"#
    )
}

const THROTTLE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>00000000-0000-0000-0000-000000000001</RequestID></Response>"#;

#[tokio::test(flavor = "multi_thread")]
async fn insufficient_capacity_marks_the_offering_and_the_claim_retries_elsewhere() {
    let moto = start_moto();
    let (p, faults) = provider_with_faults(&moto, "CreateFleet").await;
    let large = Offer {
        instance_type: "m6i.large".into(),
        zone: "us-west-2a".into(),
        capacity_type: "on-demand".into(),
    };
    faults.push(200, ice_response("m6i.large", "us-west-2a"));
    let options = [
        ("m6i.large", "us-west-2a", "on-demand"),
        ("m6i.xlarge", "us-west-2b", "on-demand"),
    ];
    let err = p.create(request("claim-ice", "default", &options)).await;
    assert_eq!(
        err,
        Err(CreateError::InsufficientCapacity(vec![large.clone()]))
    );
    assert!(p.is_unavailable(&large));
    let types = p.instance_types();
    let off = types
        .iter()
        .find(|t| t.name == "m6i.large")
        .unwrap()
        .offerings
        .iter()
        .find(|o| o.zone == "us-west-2a" && o.capacity_type == "on-demand")
        .unwrap();
    assert!(!off.available);
    assert!(
        p.list().await.unwrap().is_empty(),
        "the faulted call launched nothing"
    );

    // The claim's retry skips the refused offering and launches its next option.
    let ok = p
        .create(request("claim-ice", "default", &options))
        .await
        .unwrap();
    assert_eq!(ok.instance.offer.instance_type, "m6i.xlarge");
    assert_eq!(ok.instance.offer.zone, "us-west-2b");

    // Every option refused: insufficient capacity without calling EC2.
    let before = *faults.attempts.lock().unwrap();
    let err = p
        .create(request("claim-ice-2", "default", &options[..1]))
        .await;
    assert!(
        matches!(err, Err(CreateError::InsufficientCapacity(_))),
        "{err:?}"
    );
    assert_eq!(*faults.attempts.lock().unwrap(), before);

    // Throttling is retried by the SDK's standard retry with backoff, and then launches.
    faults.push(503, THROTTLE.to_string());
    faults.push(503, THROTTLE.to_string());
    let before = *faults.attempts.lock().unwrap();
    let throttled = p
        .create(request(
            "claim-throttled",
            "default",
            &[("m6i.2xlarge", "us-west-2c", "on-demand")],
        ))
        .await
        .unwrap();
    assert_eq!(throttled.instance.offer.instance_type, "m6i.2xlarge");
    assert_eq!(*faults.attempts.lock().unwrap() - before, 3);
}

const REFUSED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation.</Message></Error></Errors><RequestID>00000000-0000-0000-0000-000000000002</RequestID></Response>"#;

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// Claims launched together are looked up by one DescribeInstances, and still each gets
/// its own instance (and, retried, the same one); their instances' tags are read by one
/// call; terminations made together are one DescribeInstances and one
/// TerminateInstances, and when that call is refused each instance is tried alone.
///
/// On the current-thread runtime (`#[tokio::test]`'s default) no batch window runs
/// before every call of a `join_all` has joined it, whatever the machine's load.
#[tokio::test]
async fn calls_made_together_go_out_together() {
    let moto = start_moto();
    let (p, faults) = provider_with_faults(&moto, "TerminateInstances").await;
    let option = [("m6i.large", "us-west-2b", "on-demand")];
    let names: Vec<String> = (0..12).map(|i| format!("together-{i}")).collect();
    let launch_all = || {
        futures::future::join_all(
            names
                .iter()
                .map(|n| p.create(request(n, "default", &option))),
        )
    };
    faults.take_calls();
    let first: Vec<_> = launch_all().await.into_iter().map(Result::unwrap).collect();
    let calls = faults.take_calls();
    assert_eq!(calls.get("DescribeInstances"), Some(&1), "{calls:?}");
    assert_eq!(calls.get("CreateFleet"), Some(&12), "{calls:?}");
    for (n, c) in names.iter().zip(&first) {
        assert_eq!(&c.instance.claim, n);
    }
    let ids: BTreeSet<&str> = first.iter().map(|c| c.instance.id.as_str()).collect();
    assert_eq!(ids.len(), 12, "one instance per claim");

    // Retried together (a restart): one lookup finds them all, nothing launches.
    let again: Vec<_> = launch_all().await.into_iter().map(Result::unwrap).collect();
    assert_eq!(faults.take_calls(), counts(&[("DescribeInstances", 1)]));
    for (a, b) in first.iter().zip(&again) {
        assert_eq!(a.instance.id, b.instance.id);
    }

    // Tagging after registration: one call reads every instance's tags (a gone one is
    // left out), then one CreateTags each.
    let instance_ids: Vec<String> = first
        .iter()
        .map(|c| kerf_aws::instance_id(&c.instance.id).to_string())
        .collect();
    let mut asked = instance_ids.clone();
    asked.push("i-0000000000000dead".into());
    let ec2 = &p.clients().ec2;
    let held = tagging::held_tags(ec2, &asked).await.unwrap();
    assert_eq!(held.len(), 12);
    assert!(held[&instance_ids[0]].contains("karpenter.sh/nodeclaim"));
    for (n, id) in names.iter().zip(&instance_ids) {
        let wanted = BTreeMap::from([
            ("Name".to_string(), format!("node-{n}")),
            ("karpenter.sh/nodeclaim".to_string(), n.clone()),
        ]);
        tagging::add_missing(ec2, id, &wanted, held.get(id), std::time::Duration::ZERO)
            .await
            .unwrap();
    }
    let wanted = BTreeMap::from([("Name".to_string(), "gone".to_string())]);
    tagging::add_missing(
        ec2,
        "i-0000000000000dead",
        &wanted,
        None,
        std::time::Duration::ZERO,
    )
    .await
    .unwrap();
    assert_eq!(
        faults.take_calls(),
        counts(&[("CreateTags", 12), ("DescribeInstances", 1)])
    );
    let tags = tag_map(describe(&p, &instance_ids[3]).await.tags());
    assert_eq!(
        tags.get("Name").map(String::as_str),
        Some("node-together-3")
    );
    assert_eq!(
        tags.get("karpenter.sh/nodeclaim").map(String::as_str),
        Some("together-3")
    );

    // Six terminated together, one of them already terminated and one never there;
    // the batch's TerminateInstances is refused, so the other five are tried alone.
    ec2.terminate_instances()
        .instance_ids(&instance_ids[0])
        .send()
        .await
        .unwrap();
    faults.push(403, REFUSED.to_string());
    faults.take_calls();
    let mut doomed: Vec<String> = first[..6].iter().map(|c| c.instance.id.clone()).collect();
    doomed.push("aws:///us-west-2a/i-0000000000000dead".into());
    let deleted = futures::future::join_all(doomed.into_iter().map(|id| p.delete(id))).await;
    assert!(deleted.iter().all(Result::is_ok), "{deleted:?}");
    assert_eq!(
        faults.take_calls(),
        counts(&[("DescribeInstances", 1), ("TerminateInstances", 6)])
    );
    // The other six together: one call of each.
    let deleted =
        futures::future::join_all(first[6..].iter().map(|c| p.delete(c.instance.id.clone()))).await;
    assert!(deleted.iter().all(Result::is_ok), "{deleted:?}");
    assert_eq!(
        faults.take_calls(),
        counts(&[("DescribeInstances", 1), ("TerminateInstances", 1)])
    );
    assert!(p.list().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn interruption_messages_through_a_real_queue() {
    let metrics = recorder();
    let moto = start_moto();
    let clients = moto.clients(None).await;
    let url = clients
        .sqs
        .create_queue()
        .queue_name(CLUSTER)
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let messages = [
        r#"{"version":"0","id":"a","detail-type":"EC2 Spot Instance Interruption Warning","source":"aws.ec2","account":"123456789012","time":"2026-01-01T00:00:00Z","region":"us-west-2","resources":[],"detail":{"instance-id":"i-spot","instance-action":"terminate"}}"#,
        r#"{"version":"0","id":"b","detail-type":"EC2 Instance Rebalance Recommendation","source":"aws.ec2","account":"123456789012","time":"2026-01-01T00:00:00Z","region":"us-west-2","resources":[],"detail":{"instance-id":"i-rebalance"}}"#,
        r#"{"version":"0","id":"c","detail-type":"EC2 Instance State-change Notification","source":"aws.ec2","account":"123456789012","time":"2026-01-01T00:00:00Z","region":"us-west-2","resources":[],"detail":{"instance-id":"i-stopping","state":"stopping"}}"#,
        r#"{"version":"0","id":"d","detail-type":"AWS Health Event","source":"aws.health","account":"123456789012","time":"2026-01-01T00:00:00Z","region":"us-west-2","resources":[],"detail":{"service":"EC2","eventTypeCode":"AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED","eventTypeCategory":"scheduledChange","affectedEntities":[{"entityValue":"i-health"}]}}"#,
        r#"{"version":"0","id":"e","detail-type":"EC2 Capacity Reservation Instance Interruption Warning","source":"aws.ec2","account":"123456789012","time":"2026-01-01T00:00:00Z","region":"us-west-2","resources":[],"detail":{"capacity-reservation-id":"cr-1","instance-id":"i-odcr"}}"#,
        // Well-formed, nothing to do: Karpenter's no_op, counted as received.
        r#"{"version":"0","id":"f","detail-type":"EC2 Instance State-change Notification","source":"aws.ec2","account":"123456789012","time":"2026-01-01T00:00:00Z","region":"us-west-2","resources":[],"detail":{"instance-id":"i-running","state":"running"}}"#,
        // Not an event at all: deleted, and not counted as received.
        "this is not an event",
    ];
    for m in messages {
        clients
            .sqs
            .send_message()
            .queue_url(&url)
            .message_body(m)
            .send()
            .await
            .unwrap();
    }
    let mut queue = Queue::new(clients.sqs.clone(), CLUSTER).await.unwrap();
    assert_eq!(queue.url, url);
    queue.wait_seconds = 1;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut total = kerf_aws::interruption::PollStats::default();
    // The rebalance handler fails: that message must stay on the queue.
    while total.received < messages.len() {
        let seen = seen.clone();
        let stats = queue
            .poll_once(move |i: Interruption| {
                let seen = seen.clone();
                async move {
                    let fail = matches!(i, Interruption::Rebalance { .. });
                    seen.lock().unwrap().push(i);
                    if fail {
                        Err("kube unavailable".to_string())
                    } else {
                        Ok(())
                    }
                }
            })
            .await
            .unwrap();
        if stats.received == 0 {
            break;
        }
        total.received += stats.received;
        total.handled += stats.handled;
        total.unparseable += stats.unparseable;
        total.failed += stats.failed;
    }
    assert_eq!(
        (
            total.received,
            total.handled,
            total.unparseable,
            total.failed
        ),
        (7, 5, 1, 1)
    );
    let kinds: BTreeSet<&str> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|i| i.kind())
        .collect::<Vec<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            "spot_interrupted",
            "rebalance_recommendation",
            "instance_stopped",
            "scheduled_change",
            "capacity_reservation_interrupted",
            "no_op"
        ])
    );
    let attrs = clients
        .sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let a = attrs.attributes().unwrap();
    let n = |k: aws_sdk_sqs::types::QueueAttributeName| {
        a.get(&k)
            .map(String::as_str)
            .unwrap_or("0")
            .parse::<u32>()
            .unwrap()
    };
    let left = n(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        + n(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible);
    assert_eq!(
        left, 1,
        "only the message whose handling failed stays: {a:?}"
    );
    // Karpenter's interruption metrics. The recorder is the process's, and the IAM test
    // polls a spot message too: kinds only this test sends are counted exactly.
    let text = metrics.render();
    for kind in [
        "rebalance_recommendation",
        "instance_stopped",
        "scheduled_change",
        "capacity_reservation_interrupted",
        "no_op",
    ] {
        let line =
            format!("karpenter_interruption_received_messages_total{{message_type=\"{kind}\"}} 1");
        assert!(text.contains(&line), "{line} not in:\n{text}");
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("karpenter_interruption_deleted_messages_total ")),
        "{text}"
    );
    assert!(
        text.contains("karpenter_interruption_message_queue_duration_seconds_count"),
        "{text}"
    );
}

/// The process-wide metrics recorder (once per test binary), as kerf-kube installs it.
fn recorder() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: OnceLock<metrics_exporter_prometheus::PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .expect("a metrics recorder")
    })
}

const POLICY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/aws/controller-policy.json"
);
const TEMPLATE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/aws/cloudformation.yaml"
);
/// moto's account.
const ACCOUNT: &str = "123456789012";

/// Actions AWS authorizes on kerf's behalf inside a call kerf makes; moto checks none of
/// them, so the policy grants them without the audit log showing them.
const IMPLIED: [(&str, &str); 4] = [
    ("ec2:RunInstances", "CreateFleet launches through it"),
    (
        "ec2:CreateTags",
        "CreateFleet and CreateLaunchTemplate tag what they create",
    ),
    (
        "iam:PassRole",
        "CreateFleet and AddRoleToInstanceProfile pass the node role to EC2",
    ),
    (
        "iam:TagInstanceProfile",
        "CreateInstanceProfile creates the profile with its tags",
    ),
];

/// Actions kerf calls that moto's IAM enforcement never sees: moto has no Pricing API, and
/// fails such a request (a 500) before any IAM check, so no decision is logged. The test
/// checks kerf made the call and that moto logged nothing for it; the grant itself is
/// checked on the policy's text.
const NOT_AUDITED: [(&str, &str); 1] = [(
    "pricing:GetProducts",
    "on-demand prices: moto answers the Pricing API with a 500, unauthorized",
)];

/// `controller-policy.json` with the placeholders CloudFormation fills for this account.
fn controller_policy() -> serde_json::Value {
    let text = std::fs::read_to_string(POLICY)
        .unwrap()
        .replace("${AWS::Partition}", "aws")
        .replace("${AWS::Region}", REGION)
        .replace("${AWS::AccountId}", ACCOUNT)
        .replace("${ClusterName}", CLUSTER);
    assert!(!text.contains("${"), "a placeholder is left: {text}");
    serde_json::from_str(&text).expect("controller-policy.json is JSON")
}

fn one_or_many(v: &serde_json::Value) -> Vec<String> {
    match v {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(a) => a.iter().map(|s| s.as_str().unwrap().to_string()).collect(),
        other => panic!("not a string or a list: {other}"),
    }
}

fn statements(policy: &serde_json::Value) -> &[serde_json::Value] {
    policy["Statement"].as_array().unwrap()
}

fn granted_actions(policy: &serde_json::Value) -> BTreeSet<String> {
    statements(policy)
        .iter()
        .flat_map(|s| one_or_many(&s["Action"]))
        .collect()
}

fn cfn_lint_output(path: &std::path::Path) -> std::process::Output {
    Command::new(python())
        .args([
            "-c",
            "import sys, cfnlint.runner; sys.argv[0] = 'cfn-lint'; sys.exit(cfnlint.runner.main())",
            "--",
        ])
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} for cfn-lint: {e}", python()))
}

fn cfn_lint(path: &std::path::Path) {
    let out = cfn_lint_output(path);
    assert!(
        out.status.success(),
        "cfn-lint {} ({}):\n{}{}",
        path.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "kerf-aws-{}-{}",
        std::process::id(),
        jiff::Timestamp::now().as_nanosecond()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// cfn-lint (PyPI) on the template, and on the policy as an object (inside the template
/// it is a `!Sub` string, whose action names cfn-lint does not read).
#[test]
fn the_template_and_the_policy_pass_cfn_lint() {
    cfn_lint(std::path::Path::new(TEMPLATE));
    let wrapped = serde_json::json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {"KerfControllerPolicy": {
            "Type": "AWS::IAM::ManagedPolicy",
            "Properties": {"PolicyDocument": controller_policy()},
        }},
    });
    let path = scratch("policy-template.json");
    std::fs::write(&path, wrapped.to_string()).unwrap();
    cfn_lint(&path);
    // The lint can fail: a misspelt action is refused.
    let misspelt = wrapped
        .to_string()
        .replace("ec2:DescribeSubnets", "ec2:DescribeSubnetz");
    std::fs::write(&path, misspelt).unwrap();
    assert!(
        !cfn_lint_output(&path).status.success(),
        "cfn-lint accepted ec2:DescribeSubnetz"
    );
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// What moto cannot check (resources and condition keys), checked on the policy's text:
/// the scoping Karpenter's policy has, statement by statement.
#[test]
fn the_controller_policy_is_scoped_by_the_clusters_tags() {
    let policy = controller_policy();
    let owned = format!("kubernetes.io/cluster/{CLUSTER}");
    for s in statements(&policy) {
        let sid = s["Sid"].as_str().unwrap();
        let actions = one_or_many(&s["Action"]);
        let resources = one_or_many(&s["Resource"]);
        assert_eq!(s["Effect"], "Allow", "{sid}");
        for a in &actions {
            assert!(!a.contains('*'), "{sid}: wildcard action {a}");
        }
        let cond = &s["Condition"];
        let equals = |k: &str| cond["StringEquals"][k].clone();
        let like = |k: &str| cond["StringLike"][k].clone();
        if actions.iter().any(|a| a.starts_with("pricing:")) {
            // The Pricing API answers from another region (us-east-1 for us-west-2) and
            // prices are no account's resources: GetProducts alone, unscoped, as
            // Karpenter's AllowPricingReadActions.
            assert_eq!(actions, vec!["pricing:GetProducts"], "{sid}");
            assert_eq!(resources, vec!["*"], "{sid}");
            assert!(cond.is_null(), "{sid}: {cond}");
        } else if resources.iter().any(|r| r == "*") {
            // Only reads may name every resource, and only in this region.
            assert!(
                actions.iter().all(|a| a.contains(":Describe")),
                "{sid}: {actions:?} on *"
            );
            assert_eq!(equals("aws:RequestedRegion"), REGION, "{sid}");
        }
        let touches = |kind: &str| resources.iter().any(|r| r.contains(&format!(":{kind}/")));
        if actions
            .iter()
            .any(|a| a == "ec2:TerminateInstances" || a == "ec2:DeleteLaunchTemplate")
        {
            // Deletes only the cluster's instances and launch templates: both carry the
            // cluster's and the node pool's tags (launch::launch_tags).
            assert_eq!(
                resources,
                vec![
                    format!("arn:aws:ec2:{REGION}:*:instance/*"),
                    format!("arn:aws:ec2:{REGION}:*:launch-template/*"),
                ]
            );
            assert_eq!(
                equals(&format!("aws:ResourceTag/{owned}")),
                "owned",
                "{sid}"
            );
            assert_eq!(like("aws:ResourceTag/karpenter.sh/nodepool"), "*", "{sid}");
        }
        if actions.iter().any(|a| a == "ec2:CreateFleet") && touches("instance") {
            // What kerf creates carries the cluster's tags, or it is not created.
            assert_eq!(equals(&format!("aws:RequestTag/{owned}")), "owned", "{sid}");
            assert_eq!(
                equals("aws:RequestTag/eks:eks-cluster-name"),
                CLUSTER,
                "{sid}"
            );
            assert_eq!(like("aws:RequestTag/karpenter.sh/nodepool"), "*", "{sid}");
        }
        if actions.iter().any(|a| a == "ec2:CreateFleet")
            && touches("launch-template")
            && !touches("instance")
        {
            // Launches only from the cluster's own launch templates.
            assert_eq!(
                equals(&format!("aws:ResourceTag/{owned}")),
                "owned",
                "{sid}"
            );
        }
        if actions.iter().any(|a| a == "ec2:CreateTags") {
            if sid == "AllowScopedResourceTagging" {
                // After registration (tagging.rs): only the cluster's instances, and only
                // the keys known then.
                assert_eq!(
                    resources,
                    vec![format!("arn:aws:ec2:{REGION}:*:instance/*")]
                );
                assert_eq!(
                    equals(&format!("aws:ResourceTag/{owned}")),
                    "owned",
                    "{sid}"
                );
                assert_eq!(like("aws:ResourceTag/karpenter.sh/nodepool"), "*", "{sid}");
                assert_eq!(
                    cond["ForAllValues:StringEquals"]["aws:TagKeys"],
                    serde_json::json!(["eks:eks-cluster-name", "karpenter.sh/nodeclaim", "Name"]),
                    "{sid}"
                );
            } else {
                assert_eq!(
                    equals("ec2:CreateAction"),
                    serde_json::json!(["RunInstances", "CreateFleet", "CreateLaunchTemplate"]),
                    "{sid}: tags only on what kerf creates"
                );
            }
        }
        if actions.iter().any(|a| a == "iam:PassRole") {
            assert_eq!(
                resources,
                vec![format!(
                    "arn:aws:iam::{ACCOUNT}:role/KarpenterNodeRole-{CLUSTER}"
                )]
            );
            assert_eq!(
                equals("iam:PassedToService"),
                serde_json::json!(["ec2.amazonaws.com", "ec2.amazonaws.com.cn"])
            );
        }
        if actions.iter().any(|a| {
            a == "iam:AddRoleToInstanceProfile"
                || a == "iam:RemoveRoleFromInstanceProfile"
                || a == "iam:DeleteInstanceProfile"
        }) {
            // Only the profiles kerf made (tagged at creation) are changed or deleted.
            assert_eq!(
                resources,
                vec![format!("arn:aws:iam::{ACCOUNT}:instance-profile/*")]
            );
            assert_eq!(
                equals(&format!("aws:ResourceTag/{owned}")),
                "owned",
                "{sid}"
            );
            assert_eq!(
                equals("aws:ResourceTag/topology.kubernetes.io/region"),
                REGION,
                "{sid}"
            );
            assert_eq!(
                like("aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass"),
                "*",
                "{sid}"
            );
        }
        if actions.iter().any(|a| a == "iam:CreateInstanceProfile") {
            assert_eq!(equals(&format!("aws:RequestTag/{owned}")), "owned", "{sid}");
            assert_eq!(
                equals("aws:RequestTag/topology.kubernetes.io/region"),
                REGION,
                "{sid}"
            );
        }
        if actions.iter().any(|a| a.starts_with("sqs:")) {
            assert_eq!(
                resources,
                vec![format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{CLUSTER}")]
            );
        }
    }
}

/// The account as an operator sets it up from `deploy/aws/cloudformation.yaml`, with moto
/// enforcing IAM: kerf-aws resolves a class, repairs its instance profile, launches,
/// lists, terminates, cleans up after the deleted class and reads the interruption queue as a user holding only the
/// controller policy. Every call it made was allowed, and the policy grants nothing it
/// did not call (besides what AWS checks inside those calls, `IMPLIED`).
#[tokio::test(flavor = "multi_thread")]
async fn the_controller_policy_allows_every_call_kerf_makes_and_no_other() {
    let audit = scratch("audit.jsonl");
    let moto = start_moto_with(&[
        "--iam-stack",
        TEMPLATE,
        "--audit-log",
        audit.to_str().unwrap(),
    ]);
    let iam = moto.info["iam"].clone();
    // The stack's policy is controller-policy.json.
    assert_eq!(iam["policy_document"], controller_policy());
    let creds = |who: &str| {
        (
            iam[who]["access_key_id"].as_str().unwrap().to_string(),
            iam[who]["secret_access_key"].as_str().unwrap().to_string(),
        )
    };
    let (k, s) = creds("controller");
    let kerf = moto
        .provider_on(
            moto.clients_as((&k, &s), Some(SharedInterceptor::new(SpacesAsPlus)))
                .await,
        )
        .await;
    let (k, s) = creds("admin");
    let admin = moto.clients_as((&k, &s), None).await;

    // The catalog is the region's (DescribeInstanceTypes, DescribeInstanceTypeOfferings
    // at start), and prices are refreshed as the controller's refresh does.
    assert!(kerf.catalog_is_live());
    assert!(kerf.refresh_spot_prices().await.unwrap() > 0);
    let on_demand = kerf.refresh_on_demand_prices().await;
    assert!(
        matches!(on_demand, Err(PricingError::Api(_))),
        "moto has no Pricing API: {on_demand:?}"
    );

    // A class naming the node role: kerf makes an instance profile holding it.
    let node_role = format!("KarpenterNodeRole-{CLUSTER}");
    let nc = role_class("default", &node_role);
    let status = kerf.resolve_class(&nc).await;
    assert_eq!(
        cond(&status, "Ready").status,
        "True",
        "{:?}",
        status.conditions
    );
    let profile = status.instance_profile.clone().unwrap();
    // Someone swaps the profile's role; kerf puts the class's back.
    admin
        .iam
        .create_role()
        .role_name("SomeOtherRole")
        .assume_role_policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
        )
        .send()
        .await
        .unwrap();
    admin
        .iam
        .remove_role_from_instance_profile()
        .instance_profile_name(&profile)
        .role_name(&node_role)
        .send()
        .await
        .unwrap();
    admin
        .iam
        .add_role_to_instance_profile()
        .instance_profile_name(&profile)
        .role_name("SomeOtherRole")
        .send()
        .await
        .unwrap();
    let status = kerf.resolve_class(&nc).await;
    assert_eq!(
        cond(&status, "Ready").status,
        "True",
        "{:?}",
        status.conditions
    );
    let roles: Vec<String> = admin
        .iam
        .get_instance_profile()
        .instance_profile_name(&profile)
        .send()
        .await
        .unwrap()
        .instance_profile
        .unwrap()
        .roles()
        .iter()
        .map(|r| r.role_name().to_string())
        .collect();
    assert_eq!(roles, vec![node_role.clone()]);

    // Launch, list, terminate.
    let created = kerf
        .create(request(
            "claim-1",
            "default",
            &[("m6i.large", "us-west-2b", "on-demand")],
        ))
        .await
        .unwrap();
    assert_eq!(kerf.list().await.unwrap().len(), 1);
    kerf.delete(created.instance.id.clone()).await.unwrap();

    // The class is deleted: the finalizer's cleanup takes its launch template and its
    // instance profile (the node role out of it first).
    let cleaned = termination::cleanup(kerf.clients(), CLUSTER, &nc)
        .await
        .unwrap();
    assert_eq!(cleaned.launch_templates.len(), 1, "{cleaned:?}");
    assert_eq!(cleaned.instance_profile.as_deref(), Some(profile.as_str()));
    let left = admin.ec2.describe_launch_templates().send().await.unwrap();
    assert!(left.launch_templates().is_empty(), "{left:?}");

    // The stack's interruption queue.
    let queue_name = iam["queue"].as_str().unwrap();
    let url = admin
        .sqs
        .get_queue_url()
        .queue_name(queue_name)
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    admin
        .sqs
        .send_message()
        .queue_url(&url)
        .message_body(r#"{"version":"0","id":"a","detail-type":"EC2 Spot Instance Interruption Warning","source":"aws.ec2","account":"123456789012","time":"2026-01-01T00:00:00Z","region":"us-west-2","resources":[],"detail":{"instance-id":"i-spot","instance-action":"terminate"}}"#)
        .send()
        .await
        .unwrap();
    let mut queue = Queue::new(kerf.clients().sqs.clone(), queue_name)
        .await
        .unwrap();
    queue.wait_seconds = 1;
    let stats = queue.poll_once(|_| async { Ok(()) }).await.unwrap();
    assert_eq!((stats.received, stats.handled), (1, 1));

    // What moto decided for kerf's user.
    let controller = iam["controller"]["arn"].as_str().unwrap();
    let log = std::fs::read_to_string(&audit).unwrap();
    let decisions: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|d: &serde_json::Value| d["principal"] == controller)
        .collect();
    let denied: Vec<&str> = decisions
        .iter()
        .filter(|d| d["allowed"] != true)
        .map(|d| d["action"].as_str().unwrap())
        .collect();
    assert!(denied.is_empty(), "the policy refused kerf: {denied:?}");
    let called: BTreeSet<String> = decisions
        .iter()
        .map(|d| d["action"].as_str().unwrap().to_string())
        .collect();
    let granted = granted_actions(&controller_policy());
    let implied: BTreeSet<String> = IMPLIED.iter().map(|(a, _)| a.to_string()).collect();
    let not_audited: BTreeSet<String> = NOT_AUDITED.iter().map(|(a, _)| a.to_string()).collect();
    assert!(
        called.is_disjoint(&not_audited),
        "moto now decides {:?}: take it out of NOT_AUDITED",
        called.intersection(&not_audited).collect::<Vec<_>>()
    );
    assert!(
        not_audited.is_subset(&granted),
        "{not_audited:?} ⊄ {granted:?}"
    );
    let unused: Vec<&String> = granted
        .iter()
        .filter(|a| !called.contains(*a) && !implied.contains(*a) && !not_audited.contains(*a))
        .collect();
    assert!(
        unused.is_empty(),
        "the policy grants actions kerf never called: {unused:?} (called: {called:?})"
    );
    assert!(implied.is_subset(&granted), "{implied:?} ⊄ {granted:?}");
    let _ = std::fs::remove_dir_all(audit.parent().unwrap());
}
