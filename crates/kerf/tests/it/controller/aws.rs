//! `kerf controller --cloud-provider aws` end to end: the real control plane, moto as
//! the AWS account (`deploy/aws/cloudformation.yaml` deployed as a stack and IAM
//! enforced, kerf signing as the `kerf-controller` user that holds only the controller
//! policy), and a stand-in for the kubelet.
//!
//! The stand-in does what a node's kubelet and the cloud controller manager do when an
//! EC2 instance boots: for each instance moto runs with the cluster's tag, it reads the
//! instance's user data and registers a Node named by the instance's private DNS name,
//! with `spec.providerID` `aws:///<zone>/<id>`, the labels and taints the user data's
//! `--node-labels` and `--register-with-taints` flags carry, the well-known labels the
//! kubelet and the CCM set, and the instance type's vCPUs and memory as capacity. kwok
//! then plays that Node's kubelet (Ready, lease, pods Running). Nothing kerf wrote is
//! copied onto the Node: if the user data lacked a label or the taint, this test sees
//! it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::Filter;
use k8s_openapi::api::core::v1::Node;
use kerf_api::crd::{EC2NodeClass, NodeClaim};
use kerf_aws::Clients;
use kerf_model::labels;
use kerf_testcluster::moto::Moto;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::env::{Env, Kerf};
use super::{all_running, condition, deployment, nothing_managed_left};

pub(crate) const CLUSTER: &str = "kerf-e2e";
const REGION: &str = "us-west-2";

fn nodeclass() -> String {
    format!(
        r#"
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata: {{name: default}}
spec:
  role: KarpenterNodeRole-{CLUSTER}
  amiSelectorTerms: [{{alias: al2023@latest}}]
  subnetSelectorTerms: [{{tags: {{karpenter.sh/discovery: {CLUSTER}}}}}]
  securityGroupSelectorTerms: [{{tags: {{karpenter.sh/discovery: {CLUSTER}}}}}]
  tags: {{team: platform}}
"#
    )
}

/// One pod that must not be disrupted: it holds its node until the pool's
/// terminationGracePeriod runs out, and is then deleted.
const PINNED: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: pinned, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: pinned}}
  template:
    metadata:
      labels: {app: pinned}
      annotations: {karpenter.sh/do-not-disrupt: "true"}
    spec:
      containers:
      - name: app
        image: registry.example/app:1
        resources: {requests: {cpu: 500m, memory: 256Mi}}
"#;

const NODEPOOL: &str = r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: default}
spec:
  template:
    metadata:
      labels: {team: platform}
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
      requirements:
      - {key: kubernetes.io/arch, operator: In, values: [amd64]}
      - {key: karpenter.sh/capacity-type, operator: In, values: [on-demand]}
      - {key: karpenter.k8s.aws/instance-category, operator: In, values: [c, m]}
      - {key: karpenter.k8s.aws/instance-cpu, operator: Lt, values: ["9"]}
      expireAfter: Never
      terminationGracePeriod: 20s
  disruption:
    consolidationPolicy: WhenEmptyOrUnderutilized
    consolidateAfter: 5s
    budgets: [{nodes: "100%"}]
"#;

async fn clients(moto: &Moto, user: &str) -> Clients {
    let (key, secret) = moto.keys(user);
    Clients::with_keys(moto.endpoint(), REGION, (&key, &secret), None)
        .await
        .unwrap()
}

fn taints_of(node: &Node) -> Vec<k8s_openapi::api::core::v1::Taint> {
    (node.spec.as_ref())
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
}

/// What kerf tags everything it makes for the cluster with.
fn of_the_cluster() -> Filter {
    Filter::builder()
        .name("tag:eks:eks-cluster-name")
        .values(CLUSTER)
        .build()
}

/// The cluster's instances in these states, by ID.
async fn instances(
    ec2: &aws_sdk_ec2::Client,
    states: &[&str],
) -> BTreeMap<String, aws_sdk_ec2::types::Instance> {
    let out = ec2
        .describe_instances()
        .filters(of_the_cluster())
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .set_values(Some(states.iter().map(|s| s.to_string()).collect()))
                .build(),
        )
        .send()
        .await
        .unwrap();
    out.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| (i.instance_id().unwrap_or_default().to_string(), i.clone()))
        .collect()
}

const LIVE: [&str; 2] = ["pending", "running"];

fn class_annotation(env: &Env, key: &str) -> Option<String> {
    let api: Api<EC2NodeClass> = Api::all(env.client.clone());
    let class = env.rt.block_on(api.get("default")).unwrap();
    class.annotations().get(key).cloned()
}

fn patch_class(env: &Env, patch: serde_json::Value) {
    let api: Api<EC2NodeClass> = Api::all(env.client.clone());
    env.rt
        .block_on(api.patch("default", &PatchParams::default(), &Patch::Merge(&patch)))
        .unwrap();
}

/// Every NodeClaim is one live instance of the cluster's and the other way round, the web
/// pods run, and `each` holds for every (claim, instance).
fn settled(
    env: &Env,
    ec2: &aws_sdk_ec2::Client,
    mut each: impl FnMut(&NodeClaim, &aws_sdk_ec2::types::Instance) -> bool,
) -> bool {
    let live = env.rt.block_on(instances(ec2, &LIVE));
    let claims = env.nodeclaims();
    claims.len() == live.len()
        && claims.iter().all(|c| {
            c.status
                .as_ref()
                .and_then(|s| s.provider_id.as_deref())
                .and_then(|p| live.get(p.rsplit('/').next()?))
                .is_some_and(|i| each(c, i))
        })
        && all_running(env, "web", 6)
}

/// The class now selects another security group: every instance on the old one has
/// drifted (`SecurityGroupDrift`, found from the instance), and is replaced by one on
/// the new group.
fn drift_on_security_groups(env: &Env, admin: &Clients) {
    let t0 = Instant::now();
    let fresh = env.rt.block_on(async {
        let groups = admin
            .ec2
            .describe_security_groups()
            .filters(
                Filter::builder()
                    .name("tag:karpenter.sh/discovery")
                    .values(CLUSTER)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let vpc = groups.security_groups()[0].vpc_id().unwrap().to_string();
        admin
            .ec2
            .create_security_group()
            .group_name(format!("{CLUSTER}-node-2"))
            .description("nodes2")
            .vpc_id(vpc)
            .send()
            .await
            .unwrap()
            .group_id
            .unwrap()
    });
    patch_class(
        env,
        json!({"spec": {"securityGroupSelectorTerms": [{"id": fresh}]}}),
    );
    env.wait(
        Duration::from_secs(240),
        "every instance replaced by one on the new security group, the pods running",
        |env| {
            settled(env, &admin.ec2, |_, i| {
                let groups: Vec<&str> = i
                    .security_groups()
                    .iter()
                    .filter_map(|g| g.group_id())
                    .collect();
                groups == [fresh.as_str()]
            })
        },
    );
    eprintln!(
        "e2e: security-group drift rolled the nodes in {:?}",
        t0.elapsed()
    );
}

/// A static field of the class changes (a tag): its hash moves, every claim launched
/// under the old one has drifted (`NodeClassDrift`) and is replaced by one launched
/// under the new one, with the new tag.
fn drift_on_the_class_hash(env: &Env, admin: &Clients) {
    let t0 = Instant::now();
    let before = class_annotation(env, labels::ANNOTATION_EC2NODECLASS_HASH).unwrap();
    patch_class(
        env,
        json!({"spec": {"tags": {"team": "platform", "rollout": "2"}}}),
    );
    env.wait(Duration::from_secs(60), "the class's hash to move", |env| {
        class_annotation(env, labels::ANNOTATION_EC2NODECLASS_HASH).is_some_and(|h| h != before)
    });
    let after = class_annotation(env, labels::ANNOTATION_EC2NODECLASS_HASH).unwrap();
    env.wait(
        Duration::from_secs(240),
        "every claim replaced by one launched under the new hash, the pods running",
        |env| {
            settled(env, &admin.ec2, |c, i| {
                c.annotations().get(labels::ANNOTATION_EC2NODECLASS_HASH) == Some(&after)
                    && tag_map(i.tags()).get("rollout").map(String::as_str) == Some("2")
            })
        },
    );
    eprintln!(
        "e2e: class-hash drift rolled the nodes in {:?}",
        t0.elapsed()
    );
}

/// The value of a kubelet flag in an AL2023 NodeConfig (`- "--flag=value"`).
fn flag<'a>(user_data: &'a str, name: &str) -> Option<&'a str> {
    let prefix = format!("\"--{name}=");
    user_data.lines().find_map(|l| {
        let l = l.trim().strip_prefix("- ")?;
        l.strip_prefix(&prefix)?.strip_suffix('"')
    })
}

/// The Node a kubelet would register for `instance`.
async fn node_for(ec2: &aws_sdk_ec2::Client, instance: &aws_sdk_ec2::types::Instance) -> Node {
    use base64::Engine as _;
    let id = instance.instance_id().unwrap();
    let zone = instance
        .placement()
        .and_then(|p| p.availability_zone())
        .unwrap();
    let type_ = instance.instance_type().unwrap().as_str().to_string();
    let attr = ec2
        .describe_instance_attribute()
        .instance_id(id)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
        .send()
        .await
        .unwrap();
    let encoded = attr.user_data().and_then(|u| u.value()).unwrap_or_default();
    let user_data = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap(),
    )
    .unwrap();
    let shape = ec2
        .describe_instance_types()
        .instance_types(type_.as_str().into())
        .send()
        .await
        .unwrap();
    let shape = &shape.instance_types()[0];
    let vcpus = shape.v_cpu_info().and_then(|v| v.default_v_cpus()).unwrap();
    let mib = shape.memory_info().and_then(|m| m.size_in_mib()).unwrap();
    let name = instance.private_dns_name().unwrap().to_string();

    let mut node_labels: BTreeMap<String, String> = flag(&user_data, "node-labels")
        .unwrap_or_default()
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let arch = match instance.architecture().map(|a| a.as_str()) {
        Some("arm64") => "arm64",
        _ => "amd64",
    };
    for (k, v) in [
        (labels::HOSTNAME, name.as_str()),
        (labels::ARCH, arch),
        (labels::OS, "linux"),
        (labels::INSTANCE_TYPE, type_.as_str()),
        (labels::ZONE, zone),
        (labels::REGION, REGION),
    ] {
        node_labels.insert(k.to_string(), v.to_string());
    }
    let taints: Vec<serde_json::Value> = flag(&user_data, "register-with-taints")
        .unwrap_or_default()
        .split(',')
        .filter(|t| !t.is_empty())
        .map(|t| {
            let (kv, effect) = t.rsplit_once(':').unwrap();
            let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
            json!({"key": key, "value": value, "effect": effect})
        })
        .collect();
    let capacity = json!({
        "cpu": vcpus.to_string(),
        "memory": format!("{mib}Mi"),
        "pods": "110",
        "ephemeral-storage": "20Gi",
    });
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": node_labels,
            "annotations": { "kwok.x-k8s.io/node": "fake" },
        },
        "spec": { "providerID": format!("aws:///{zone}/{id}"), "taints": taints },
        "status": { "capacity": capacity, "allocatable": capacity },
    }))
    .unwrap()
}

/// The kubelet stand-in: registers a Node for each new live instance, once, and keeps
/// what it registered in `registered`.
async fn kubelets(
    ec2: aws_sdk_ec2::Client,
    client: Client,
    registered_nodes: Arc<Mutex<Vec<Node>>>,
    cancel: CancellationToken,
) {
    let nodes: Api<Node> = Api::all(client);
    let mut registered = BTreeSet::new();
    while !cancel.is_cancelled() {
        for (id, instance) in instances(&ec2, &["running"]).await {
            if registered.contains(&id) {
                continue;
            }
            let node = node_for(&ec2, &instance).await;
            match nodes.create(&PostParams::default(), &node).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => panic!("registering {}: {e}", node.name_any()),
            }
            registered.insert(id);
            registered_nodes.lock().unwrap().push(node);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn class_ready(env: &Env) -> bool {
    let api: Api<EC2NodeClass> = Api::all(env.client.clone());
    env.rt
        .block_on(api.get_opt("default"))
        .unwrap()
        .and_then(|c| c.status)
        .is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

fn tag_map(tags: &[aws_sdk_ec2::types::Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The EC2 instance ID at the end of a claim's `status.providerID`.
fn instance_id(claim: &NodeClaim) -> String {
    (claim.status.as_ref())
        .and_then(|s| s.provider_id.as_deref())
        .and_then(|p| p.rsplit('/').next())
        .unwrap()
        .to_string()
}

/// An EventBridge EC2 event about one instance, as the interruption queue receives it:
/// `detail` gets the instance's ID added.
fn ec2_event(
    id: &str,
    detail_type: &str,
    instance: &str,
    mut detail: serde_json::Value,
) -> serde_json::Value {
    detail["instance-id"] = json!(instance);
    json!({
        "version": "0", "id": id, "source": "aws.ec2", "detail-type": detail_type,
        "account": "123456789012", "time": "2026-12-02T00:00:00Z", "region": REGION,
        "resources": [format!("arn:aws:ec2:{REGION}:123456789012:instance/{instance}")],
        "detail": detail,
    })
}

/// Sends `body` to the interruption queue, as EventBridge would.
async fn send_message(admin: &Clients, queue: &str, body: serde_json::Value) {
    let url = admin
        .sqs
        .get_queue_url()
        .queue_name(queue)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    admin
        .sqs
        .send_message()
        .queue_url(url)
        .message_body(body.to_string())
        .send()
        .await
        .unwrap();
}

/// moto for one test: the IAM stack deployed and enforced, the admin's clients, and
/// the audit log of its decisions in the cluster's log directory.
pub(crate) struct Aws {
    pub moto: Moto,
    pub admin: Clients,
    pub audit: std::path::PathBuf,
    pub queue: String,
}

impl Aws {
    pub fn start(env: &Env) -> Aws {
        let audit = env.cluster.log_dir().join("moto-iam.jsonl");
        let k8s = {
            let v = env.rt.block_on(env.client.apiserver_version()).unwrap();
            let minor: String = v.minor.chars().take_while(char::is_ascii_digit).collect();
            format!("{}.{minor}", v.major)
        };
        let started = Instant::now();
        let moto = Moto::start_with_iam_stack(CLUSTER, REGION, &k8s, &audit);
        eprintln!("e2e: moto with the IAM stack up in {:?}", started.elapsed());
        let queue = moto.info["iam"]["queue"].as_str().unwrap().to_string();
        let admin = env.rt.block_on(clients(&moto, "admin"));
        Aws {
            moto,
            admin,
            audit,
            queue,
        }
    }

    /// The SDK's standard environment for kerf, signing as `kerf-controller`.
    pub fn kerf_env(&self) -> Vec<(String, String)> {
        let (key, secret) = self.moto.keys("controller");
        [
            ("AWS_ENDPOINT_URL", self.moto.endpoint()),
            ("AWS_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", &key),
            ("AWS_SECRET_ACCESS_KEY", &secret),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

#[test]
fn provisions_interrupts_and_removes_ec2_instances_under_the_controller_policy() {
    let env = Env::start_aws();
    let aws = Aws::start(&env);
    let server = env.cluster.server_url();
    let mut vars = aws.kerf_env();
    vars.extend(
        [
            ("CLUSTER_NAME", CLUSTER),
            ("CLUSTER_ENDPOINT", &server),
            ("INTERRUPTION_QUEUE", &aws.queue),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut kerf = Kerf::start_on(&env, "aws", "kerf-0", &vars);
    exercise(&env, &aws, &mut kerf);
}

/// The AWS case, with kerf already started against `aws`: a class and a pool, pods
/// provisioned onto moto instances, one instance interrupted and replaced, scale to
/// zero, the class deleted through its finalizer, kerf stopped by SIGTERM; then every
/// AWS call kerf made was allowed by the controller policy.
pub(crate) fn exercise(env: &Env, aws: &Aws, kerf: &mut Kerf) {
    let Aws {
        moto,
        admin,
        audit,
        queue,
    } = aws;
    let cancel = CancellationToken::new();
    let _stop_kubelets = cancel.clone().drop_guard();
    let registered = Arc::new(Mutex::new(Vec::new()));
    env.rt.spawn(kubelets(
        admin.ec2.clone(),
        env.client.clone(),
        registered.clone(),
        cancel.clone(),
    ));

    env.apply_yaml(&nodeclass());
    env.wait(
        Duration::from_secs(60),
        "EC2NodeClass default Ready",
        class_ready,
    );
    env.apply_yaml(NODEPOOL);
    let t0 = Instant::now();
    env.apply_yaml(&deployment("web", 6, "1"));
    env.apply_yaml(PINNED);
    env.wait(
        Duration::from_secs(180),
        "6 web pods and the pinned pod bound and running on EC2 nodes",
        |env| all_running(env, "web", 6) && all_running(env, "pinned", 1),
    );
    eprintln!(
        "e2e: 6 pods running on moto instances {:?} after the Deployment",
        t0.elapsed()
    );
    assert!(kerf.exited().is_none(), "kerf exited:\n{}", kerf.log_text());

    // Each claim is a moto instance kerf launched from the class, and the other way round.
    let live = env.rt.block_on(instances(&admin.ec2, &LIVE));
    let claims = env.nodeclaims();
    assert_eq!(
        claims.len(),
        live.len(),
        "one instance per NodeClaim: {live:?}"
    );
    for nc in &claims {
        for type_ in ["Launched", "Registered", "Initialized", "Ready"] {
            assert_eq!(
                condition(nc, type_).map(|c| c.0).as_deref(),
                Some("True"),
                "{} {type_}: {:?}",
                nc.name_any(),
                nc.status
            );
        }
        let provider_id = nc.status.as_ref().unwrap().provider_id.clone().unwrap();
        let id = provider_id.rsplit('/').next().unwrap();
        let instance = live.get(id).unwrap_or_else(|| {
            panic!(
                "{} names {provider_id}, which moto does not run",
                nc.name_any()
            )
        });
        let tags = tag_map(instance.tags());
        for (k, v) in [
            ("eks:eks-cluster-name", CLUSTER),
            (&format!("kubernetes.io/cluster/{CLUSTER}") as &str, "owned"),
            ("karpenter.sh/nodepool", "default"),
            ("karpenter.k8s.aws/ec2nodeclass", "default"),
            ("team", "platform"),
        ] {
            assert_eq!(
                tags.get(k).map(String::as_str),
                Some(v),
                "tag {k} on {id}: {tags:?}"
            );
        }
        assert_eq!(
            nc.labels().get(labels::INSTANCE_TYPE).map(String::as_str),
            instance.instance_type().map(|t| t.as_str()),
        );
    }
    // After registration each instance is named after its node and its claim says so
    // (Karpenter's nodeclaim.tagging).
    env.wait(
        Duration::from_secs(60),
        "every instance tagged Name=<node>, every claim annotated tagged",
        |env| {
            settled(env, &admin.ec2, |c, i| {
                let node = c.status.as_ref().and_then(|s| s.node_name.clone());
                c.annotations()
                    .get("karpenter.k8s.aws/tagged")
                    .map(String::as_str)
                    == Some("true")
                    && node.is_some()
                    && tag_map(i.tags()).get("Name") == node.as_ref()
            })
        },
    );
    // moto's CreateFleet drops the launch template's instance profile from the
    // instances it starts, so the profile is checked where kerf put it: the class's
    // status names a profile kerf made at Karpenter's path holding the node role, and
    // every launch template of the cluster's launches with it, IMDSv2 required.
    let api: Api<EC2NodeClass> = Api::all(env.client.clone());
    let status = env.rt.block_on(api.get("default")).unwrap().status.unwrap();
    let profile_name = status.instance_profile.expect("status.instanceProfile");
    // Each claim carries the hash its class had at launch, which the class carries
    // too, and the profile it launched with.
    let class_hash = class_annotation(env, labels::ANNOTATION_EC2NODECLASS_HASH);
    assert_eq!(
        class_annotation(env, labels::ANNOTATION_EC2NODECLASS_HASH_VERSION).as_deref(),
        Some(kerf_aws::drift::HASH_VERSION)
    );
    for nc in &claims {
        let a = nc.annotations();
        assert_eq!(
            a.get(labels::ANNOTATION_EC2NODECLASS_HASH),
            class_hash.as_ref()
        );
        assert_eq!(
            a.get(labels::ANNOTATION_EC2NODECLASS_HASH_VERSION)
                .map(String::as_str),
            Some(kerf_aws::drift::HASH_VERSION)
        );
        assert_eq!(
            a.get(labels::ANNOTATION_INSTANCE_PROFILE_NAME),
            Some(&profile_name),
            "{}",
            nc.name_any()
        );
    }
    env.rt.block_on(async {
        let profile = admin
            .iam
            .get_instance_profile()
            .instance_profile_name(&profile_name)
            .send()
            .await
            .unwrap()
            .instance_profile
            .unwrap();
        assert!(
            profile
                .path()
                .starts_with(&format!("/karpenter/{REGION}/{CLUSTER}/")),
            "{profile:?}"
        );
        let roles: Vec<&str> = profile.roles().iter().map(|r| r.role_name()).collect();
        assert_eq!(roles, [format!("KarpenterNodeRole-{CLUSTER}")]);
        let versions = admin
            .ec2
            .describe_launch_template_versions()
            .filters(of_the_cluster())
            .versions("$Latest")
            .send()
            .await
            .unwrap();
        let versions = versions.launch_template_versions();
        assert!(!versions.is_empty(), "no launch template of the cluster's");
        for v in versions {
            let data = v.launch_template_data().unwrap();
            assert_eq!(
                data.iam_instance_profile().and_then(|p| p.name()),
                Some(profile_name.as_str()),
                "{v:?}"
            );
            assert_eq!(
                data.metadata_options()
                    .and_then(|m| m.http_tokens())
                    .map(|t| t.as_str()),
                Some("required"),
                "{v:?}"
            );
        }
    });
    // The nodes registered from user data alone, with the pool's labels and the
    // unregistered taint, and kerf took them in.
    for node in registered.lock().unwrap().iter() {
        let l = node.labels();
        assert_eq!(
            l.get(labels::NODEPOOL).map(String::as_str),
            Some("default"),
            "{node:?}"
        );
        assert_eq!(
            l.get("team").map(String::as_str),
            Some("platform"),
            "{node:?}"
        );
        let taints = taints_of(node);
        assert!(
            taints
                .iter()
                .any(|t| t.key == labels::TAINT_UNREGISTERED && t.effect == "NoExecute"),
            "user data registers {} without the unregistered taint",
            node.name_any()
        );
    }
    for node in &env.nodes() {
        let l = node.labels();
        assert_eq!(l.get(labels::NODEPOOL).map(String::as_str), Some("default"));
        assert_eq!(l.get("team").map(String::as_str), Some("platform"));
        assert_eq!(l.get(labels::INITIALIZED).map(String::as_str), Some("true"));
        let taints = taints_of(node);
        assert!(
            !taints.iter().any(|t| t.key == labels::TAINT_UNREGISTERED),
            "{} keeps the unregistered taint",
            node.name_any()
        );
    }

    // An instance state-change message for the pinned pod's instance: its claim goes
    // (the do-not-disrupt pod deleted when terminationGracePeriod runs out), a
    // replacement comes, and the pods run again.
    let pinned_node = env
        .pods("default")
        .into_iter()
        .find(|p| p.labels().get("app").map(String::as_str) == Some("pinned"))
        .and_then(|p| p.spec?.node_name)
        .unwrap();
    let victim = claims
        .iter()
        .find(|c| c.status.as_ref().and_then(|s| s.node_name.as_deref()) == Some(&pinned_node))
        .unwrap()
        .clone();
    let victim_id = instance_id(&victim);
    env.rt.block_on(send_message(
        admin,
        queue,
        ec2_event(
            "e2e-1",
            "EC2 Instance State-change Notification",
            &victim_id,
            json!({"state": "stopping"}),
        ),
    ));
    env.wait(
        Duration::from_secs(120),
        "the stopping instance's claim gone and its instance terminated",
        |env| {
            !env.nodeclaims()
                .iter()
                .any(|c| c.name_any() == victim.name_any())
                && !env
                    .rt
                    .block_on(instances(&admin.ec2, &LIVE))
                    .contains_key(&victim_id)
        },
    );
    // Karpenter's interruption events, on the claim and on its node: the kind's, then
    // TerminatingOnInterruption when the claim is deleted.
    let events_on = |reason: &str, kind: &str, name: &str| {
        super::events_about(env, reason, kind)
            .into_iter()
            .filter(|e| super::regarding_name(e) == name)
            .map(|e| (e.type_.unwrap_or_default(), e.note.unwrap_or_default()))
            .collect::<Vec<_>>()
    };
    let warning = |note: &str| vec![("Warning".to_string(), note.to_string())];
    let victim_name = victim.name_any();
    for (reason, kind, name, note) in [
        (
            "InstanceStopping",
            "NodeClaim",
            &victim_name,
            "Instance is stopping",
        ),
        (
            "InstanceStopping",
            "Node",
            &pinned_node,
            "Instance is stopping",
        ),
        (
            "TerminatingOnInterruption",
            "NodeClaim",
            &victim_name,
            "Interruption triggered termination for the NodeClaim",
        ),
        (
            "TerminatingOnInterruption",
            "Node",
            &pinned_node,
            "Interruption triggered termination for the Node",
        ),
    ] {
        assert_eq!(
            events_on(reason, kind, name),
            warning(note),
            "{reason} on {kind} {name}"
        );
    }
    env.wait(
        Duration::from_secs(180),
        "6 web pods and the pinned pod running again",
        |env| all_running(env, "web", 6) && all_running(env, "pinned", 1),
    );
    // A rebalance recommendation for a replacement: Normal events on it and its node,
    // nothing deleted.
    let bystander = env
        .nodeclaims()
        .into_iter()
        .find(|c| c.status.as_ref().is_some_and(|s| s.node_name.is_some()))
        .unwrap();
    let bystander_node = bystander.status.clone().unwrap().node_name.unwrap();
    let bystander_id = instance_id(&bystander);
    env.rt.block_on(send_message(
        admin,
        queue,
        ec2_event(
            "e2e-2",
            "EC2 Instance Rebalance Recommendation",
            &bystander_id,
            json!({}),
        ),
    ));
    env.wait(
        Duration::from_secs(60),
        "the rebalance recommendation's event on the node",
        |_| !events_on("SpotRebalanceRecommendation", "Node", &bystander_node).is_empty(),
    );
    let normal = vec![(
        "Normal".to_string(),
        "Spot rebalance recommendation was triggered".to_string(),
    )];
    assert_eq!(
        events_on("SpotRebalanceRecommendation", "Node", &bystander_node),
        normal
    );
    assert_eq!(
        events_on(
            "SpotRebalanceRecommendation",
            "NodeClaim",
            &bystander.name_any()
        ),
        normal
    );
    assert!(
        env.nodeclaims().iter().any(
            |c| c.name_any() == bystander.name_any() && c.metadata.deletion_timestamp.is_none()
        ),
        "a rebalance recommendation deletes nothing"
    );
    assert!(
        events_on(
            "TerminatingOnInterruption",
            "NodeClaim",
            &bystander.name_any()
        )
        .is_empty()
    );

    assert!(
        kerf.log_text()
            .contains("deleted at the termination grace deadline"),
        "the do-not-disrupt pod was deleted at the grace deadline"
    );

    // Drift, both kinds Karpenter's AWS provider finds. The do-not-disrupt pod would
    // hold its node, so it goes first.
    env.scale("default", "pinned", 0);
    drift_on_security_groups(env, admin);
    drift_on_the_class_hash(env, admin);

    // Scale to zero: every node empties and goes, and moto runs nothing of the cluster's.
    env.scale("default", "web", 0);
    env.wait(
        Duration::from_secs(180),
        "every NodeClaim and node gone",
        nothing_managed_left,
    );
    env.wait(
        Duration::from_secs(60),
        "moto to run no instance of the cluster's",
        |env| env.rt.block_on(instances(&admin.ec2, &LIVE)).is_empty(),
    );
    let launched = env
        .rt
        .block_on(instances(&admin.ec2, &["shutting-down", "terminated"]))
        .len();

    // Deleting the class: kerf's finalizer removes its launch templates and the
    // instance profile it made, then lets the class go.
    let pools: Api<kerf_api::crd::NodePool> = Api::all(env.client.clone());
    let classes: Api<EC2NodeClass> = Api::all(env.client.clone());
    env.rt.block_on(async {
        pools
            .delete("default", &DeleteParams::default())
            .await
            .unwrap();
        classes
            .delete("default", &DeleteParams::default())
            .await
            .unwrap();
    });
    env.wait(Duration::from_secs(60), "the EC2NodeClass deleted", |env| {
        env.rt
            .block_on(classes.get_opt("default"))
            .unwrap()
            .is_none()
    });
    env.rt.block_on(async {
        let templates = admin
            .ec2
            .describe_launch_templates()
            .filters(of_the_cluster())
            .send()
            .await
            .unwrap();
        assert!(
            templates.launch_templates().is_empty(),
            "launch templates left: {:?}",
            templates.launch_templates()
        );
        // moto ignores ListInstanceProfiles' PathPrefix: filtered here.
        let profiles = admin.iam.list_instance_profiles().send().await.unwrap();
        let left: Vec<&str> = profiles
            .instance_profiles()
            .iter()
            .filter(|p| p.path().starts_with("/karpenter/"))
            .map(|p| p.instance_profile_name())
            .collect();
        assert!(left.is_empty(), "instance profiles left: {left:?}");
        assert!(
            (profiles.instance_profiles().iter())
                .any(|p| p.instance_profile_name()
                    == format!("KarpenterNodeInstanceProfile-{CLUSTER}")),
            "the operator's own profile survives"
        );
    });
    assert!(kerf.exited().is_none(), "kerf exited:\n{}", kerf.log_text());
    assert!(kerf.terminate().success(), "kerf stops cleanly on SIGTERM");

    // What kerf asked of AWS, as moto's IAM enforcement decided it.
    let controller = moto.info["iam"]["controller"]["arn"].as_str().unwrap();
    let decisions: Vec<serde_json::Value> = std::fs::read_to_string(audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|d: &serde_json::Value| d["principal"] == controller)
        .collect();
    let denied: BTreeSet<&str> = decisions
        .iter()
        .filter(|d| d["allowed"] != true)
        .map(|d| d["action"].as_str().unwrap())
        .collect();
    assert!(
        denied.is_empty(),
        "the controller policy refused kerf: {denied:?}"
    );
    let mut calls: BTreeMap<&str, usize> = BTreeMap::new();
    for d in &decisions {
        *calls.entry(d["action"].as_str().unwrap()).or_default() += 1;
    }
    let launches = calls.get("ec2:CreateFleet").copied().unwrap_or_default();
    assert!(
        launches >= launched,
        "{launched} instances from {launches} CreateFleet calls"
    );
    eprintln!(
        "e2e: {} AWS calls by kerf in {:?} for {launched} instances ({launches} CreateFleet): {calls:?}",
        decisions.len(),
        t0.elapsed(),
    );
}
