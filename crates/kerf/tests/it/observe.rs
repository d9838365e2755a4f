//! Dashboards and alerts (`charts/kerf/dashboards/`, `charts/kerf/rules/alerts.yaml`),
//! proven by the real tools. Grafana cannot run here, so the checks are what Grafana and
//! Prometheus would find wrong:
//!
//! - every panel's query and every alert parses: `promtool check rules` on a generated
//!   rule file holding each panel as a recording rule and the alerts as they are; each
//!   alert fires, and does not, as its `promtool test rules` case says;
//! - every metric name a panel, a template variable or an alert reads is one that
//!   `kerf controller` exports, in a real scrape of its `/metrics`;
//! - a real Prometheus scrapes that `kerf controller` while it provisions and empties
//!   nodes on the real control plane, after which each panel's query has data (the few
//!   that cannot on kwok are listed below with the reason), the alerts load and none fires.
//!
//! `prometheus` and `promtool` come from Debian's `prometheus` package, which
//! `tools/observe/install-prometheus.sh` installs on first use; without them these tests
//! fail, they are never skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kerf_model::labels;
use kube::ResourceExt;
use promql_parser::parser::Expr;
use promql_parser::util::{ExprVisitor, walk_expr};
use serde_json::{Value, json};

use crate::controller::env::{Env, Kerf, running};

/// Panels that have no data after the end-to-end run, each with the reason. The test
/// fails if one of them does have data, so that the list stays true.
const EMPTY_ON_KWOK: &[(&str, &str, &str)] = &[
    (
        "performance",
        "Interruption messages received",
        "interruption messages come from the AWS SQS queue; kwok has none",
    ),
    (
        "performance",
        "Interruption messages deleted",
        "interruption messages come from the AWS SQS queue; kwok has none",
    ),
    (
        "performance",
        "Interruption message age",
        "interruption messages come from the AWS SQS queue; kwok has none",
    ),
];

/// Panels that may or may not have data after the run: they count failures, which a
/// healthy run has only by accident (a call timing out on a loaded machine). They are
/// neither required to have data nor to be empty.
const MAY_BE_EMPTY_ON_A_SHORT_RUN: &[(&str, &str, &str)] = &[(
    "performance",
    "Cloud provider errors",
    "counts errors; a kwok run has none unless a call times out",
)];

/// Metrics that panels or alerts read and that a kwok run's scrape cannot hold, each with
/// the reason. The name check passes over them, and fails once one appears in the scrape,
/// so that the list stays true.
const NOT_IN_A_KWOK_SCRAPE: &[(&str, &str)] = &[
    (
        "karpenter_cloudprovider_errors_total",
        "counted per error; no kwok call fails in this run",
    ),
    (
        "karpenter_interruption_received_messages_total",
        "recorded by the AWS provider's interruption queue; kwok has none",
    ),
    (
        "karpenter_interruption_deleted_messages_total",
        "recorded by the AWS provider's interruption queue; kwok has none",
    ),
    (
        "karpenter_interruption_message_queue_duration_seconds_bucket",
        "recorded by the AWS provider's interruption queue; kwok has none",
    ),
    (
        "karpenter_voluntary_disruption_eligible_nodes",
        "Karpenter's gauge of the nodes each disruption pass finds eligible, by reason, which \
         KerfDisruptionBlocked reads: kerf does not export it yet",
    ),
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn chart_file(path: &str) -> PathBuf {
    repo_root().join("charts/kerf").join(path)
}

/// The directory holding `prometheus` and `promtool`, installed once per test run.
fn prometheus_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let script = repo_root().join("tools/observe/install-prometheus.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} failed ({}): these tests need Debian's prometheus package",
            script.display(),
            out.status
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let dir = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
        for tool in ["prometheus", "promtool"] {
            assert!(
                dir.join(tool).is_file(),
                "{} printed {}, which has no {tool}",
                script.display(),
                dir.display()
            );
        }
        dir
    })
}

/// `promtool ARGS…` in `dir`: its combined output, or a failure showing it.
fn promtool(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(prometheus_bin().join("promtool"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {} failed:\n{text}",
        args.join(" ")
    );
    text
}

// --- the dashboards as data ---------------------------------------------------------------

/// One query of one panel.
#[derive(Debug, Clone)]
struct PanelQuery {
    dashboard: String,
    panel: String,
    panel_id: u64,
    ref_id: String,
    /// As written in the dashboard, with Grafana's variables.
    expr: String,
}

impl PanelQuery {
    fn name(&self) -> String {
        format!(
            "{} / \"{}\" (panel {}, {})",
            self.dashboard, self.panel, self.panel_id, self.ref_id
        )
    }
}

struct Dashboard {
    name: String,
    model: Value,
}

impl Dashboard {
    fn all() -> Vec<Dashboard> {
        let names = ["capacity", "performance", "cost"];
        names
            .iter()
            .map(|name| {
                let path = chart_file(&format!("dashboards/{name}.json"));
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
                let model = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
                Dashboard {
                    name: name.to_string(),
                    model,
                }
            })
            .collect()
    }

    /// Every panel, those inside rows included.
    fn panels(&self) -> Vec<&Value> {
        fn walk<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
            for panel in panels.as_array().into_iter().flatten() {
                out.push(panel);
                walk(&panel["panels"], out);
            }
        }
        let mut out = Vec::new();
        walk(&self.model["panels"], &mut out);
        out
    }

    fn queries(&self) -> Vec<PanelQuery> {
        let mut out = Vec::new();
        for panel in self.panels() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                out.push(PanelQuery {
                    dashboard: self.name.clone(),
                    panel: panel["title"].as_str().unwrap_or_default().to_string(),
                    panel_id: panel["id"].as_u64().unwrap_or_default(),
                    ref_id: target["refId"].as_str().unwrap_or_default().to_string(),
                    expr: target["expr"].as_str().unwrap_or_default().to_string(),
                });
            }
        }
        out
    }

    fn variables(&self) -> Vec<&Value> {
        self.model["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .collect()
    }

    /// The value each template variable takes when set to All, as Grafana substitutes it.
    fn all_values(&self) -> BTreeMap<String, String> {
        self.variables()
            .into_iter()
            .filter(|v| v["type"] == "query")
            .map(|v| {
                let name = v["name"].as_str().unwrap().to_string();
                let all = v["allValue"].as_str().unwrap_or(".*").to_string();
                (name, all)
            })
            .collect()
    }

    /// `label_values(metric, label)` of each query variable: (variable, metric, label).
    fn label_value_queries(&self) -> Vec<(String, String, String)> {
        self.variables()
            .into_iter()
            .filter(|v| v["type"] == "query")
            .map(|v| {
                let name = v["name"].as_str().unwrap().to_string();
                let query = v["query"]["query"].as_str().unwrap_or_default();
                let inner = query
                    .strip_prefix("label_values(")
                    .and_then(|q| q.strip_suffix(')'))
                    .unwrap_or_else(|| {
                        panic!(
                            "{}: variable {name}: query {query:?} is not label_values(metric, label)",
                            self.name
                        )
                    });
                let (metric, label) = inner.split_once(',').unwrap_or_else(|| {
                    panic!("{}: variable {name}: {query:?} names no label", self.name)
                });
                (name, metric.trim().to_string(), label.trim().to_string())
            })
            .collect()
    }
}

/// `expr` as Grafana sends it to Prometheus with every template variable at All, for a
/// dashboard time range of `range` seconds.
fn as_promql(expr: &str, all_values: &BTreeMap<String, String>, range_secs: u64) -> String {
    let mut out = expr
        .replace("$__rate_interval", "30s")
        .replace("$__interval", "5s")
        .replace("$__range", &format!("{range_secs}s"));
    // Longest names first, so that `$zone` cannot eat the start of `$zone_id`.
    let mut names: Vec<&String> = all_values.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for name in names {
        let value = &all_values[name];
        out = out
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    out
}

/// Each dashboard query as Prometheus receives it, failing on a variable no dashboard
/// variable defines.
fn all_panel_queries(range_secs: u64) -> Vec<(PanelQuery, String)> {
    let mut out = Vec::new();
    for dashboard in Dashboard::all() {
        let values = dashboard.all_values();
        for query in dashboard.queries() {
            let promql = as_promql(&query.expr, &values, range_secs);
            assert!(
                !promql.contains('$'),
                "{}: {:?} uses a variable the dashboard does not define",
                query.name(),
                query.expr
            );
            out.push((query, promql));
        }
    }
    out
}

// --- the alerts as data -------------------------------------------------------------------

#[derive(serde::Deserialize)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}

#[derive(serde::Deserialize)]
struct RuleGroup {
    rules: Vec<Rule>,
}

#[derive(serde::Deserialize)]
struct Rule {
    alert: String,
    expr: String,
}

fn alerts() -> Vec<Rule> {
    let path = chart_file("rules/alerts.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let file: RuleFile = serde_saphyr::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not a rule file: {e}", path.display()));
    file.groups.into_iter().flat_map(|g| g.rules).collect()
}

// --- metric names -------------------------------------------------------------------------

/// The metric names a PromQL expression selects.
fn metric_names(promql: &str) -> Result<BTreeSet<String>, String> {
    struct Names(BTreeSet<String>, Vec<String>);
    impl ExprVisitor for Names {
        type Error = std::convert::Infallible;
        fn pre_visit(&mut self, expr: &Expr) -> Result<bool, Self::Error> {
            let selector = match expr {
                Expr::VectorSelector(vs) => Some(vs),
                Expr::MatrixSelector(ms) => Some(&ms.vs),
                _ => None,
            };
            if let Some(vs) = selector {
                match &vs.name {
                    Some(name) => {
                        self.0.insert(name.clone());
                    }
                    None => self.1.push(format!("{vs}")),
                }
            }
            Ok(true)
        }
    }
    let ast = promql_parser::parser::parse(promql)?;
    let mut names = Names(BTreeSet::new(), Vec::new());
    let Ok(_) = walk_expr(&mut names, &ast);
    if !names.1.is_empty() {
        return Err(format!("selectors without a metric name: {:?}", names.1));
    }
    Ok(names.0)
}

/// Where each metric name is read: name → the panels, variables and alerts reading it.
fn metrics_read() -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (query, promql) in all_panel_queries(600) {
        let names = metric_names(&promql).unwrap_or_else(|e| panic!("{}: {e}", query.name()));
        assert!(!names.is_empty(), "{} reads no metric", query.name());
        for name in names {
            out.entry(name).or_default().insert(query.name());
        }
    }
    for dashboard in Dashboard::all() {
        for (var, metric, _) in dashboard.label_value_queries() {
            out.entry(metric)
                .or_default()
                .insert(format!("{} / variable ${var}", dashboard.name));
        }
    }
    for rule in alerts() {
        let names = metric_names(&rule.expr).unwrap_or_else(|e| panic!("{}: {e}", rule.alert));
        for name in names {
            out.entry(name)
                .or_default()
                .insert(format!("alert {}", rule.alert));
        }
    }
    out
}

/// The sample names a scrape of `/metrics` can carry: each family's name with the
/// suffixes its type gives its samples (OpenMetrics names a counter's family without
/// `_total`), and every sample name that occurs.
fn exported_names(scrape: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in scrape.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["", "_total", "_created"],
                "histogram" | "gaugehistogram" => &["_bucket", "_sum", "_count", "_created"],
                "summary" => &["", "_sum", "_count", "_created"],
                "info" => &["_info"],
                _ => &[""],
            };
            for suffix in suffixes {
                out.insert(format!("{name}{suffix}"));
            }
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            out.insert(line[..end].to_string());
        }
    }
    out
}

// --- static checks ------------------------------------------------------------------------

#[test]
fn dashboards_are_grafana_models_on_a_datasource_variable() {
    let mut problems = Vec::new();
    for dashboard in Dashboard::all() {
        let d = &dashboard.name;
        let m = &dashboard.model;
        for key in ["uid", "title", "schemaVersion", "panels", "templating"] {
            if m.get(key).is_none() {
                problems.push(format!("{d}: no {key}"));
            }
        }
        let datasource = dashboard
            .variables()
            .into_iter()
            .find(|v| v["name"] == "datasource");
        match datasource {
            Some(v) if v["type"] == "datasource" && v["query"] == "prometheus" => {}
            _ => problems.push(format!(
                "{d}: no `datasource` variable of type datasource over prometheus"
            )),
        }
        let mut ids = BTreeSet::new();
        for panel in dashboard.panels() {
            let title = panel["title"].as_str().unwrap_or_default();
            let id = panel["id"].as_u64();
            if !id.is_some_and(|id| ids.insert(id)) {
                problems.push(format!("{d}: panel {title:?} has no id or a repeated one"));
            }
            if panel["gridPos"]["w"].as_u64().is_none() {
                problems.push(format!("{d}: panel {title:?} has no gridPos"));
            }
            if panel["type"] == "row" {
                continue;
            }
            if title.is_empty() || panel["description"].as_str().is_none_or(str::is_empty) {
                problems.push(format!("{d}: panel {id:?} lacks a title or a description"));
            }
            let targets = panel["targets"].as_array().cloned().unwrap_or_default();
            if targets.is_empty() {
                problems.push(format!("{d}: panel {title:?} has no query"));
            }
            let on_variable = |v: &Value| v["uid"] == "${datasource}" && v["type"] == "prometheus";
            if !on_variable(&panel["datasource"]) {
                problems.push(format!(
                    "{d}: panel {title:?} is not on the $datasource variable"
                ));
            }
            for target in &targets {
                if !on_variable(&target["datasource"])
                    || target["expr"].as_str().is_none_or(str::is_empty)
                {
                    problems.push(format!(
                        "{d}: panel {title:?} query {} lacks an expression or the $datasource variable",
                        target["refId"]
                    ));
                }
            }
        }
        for v in dashboard.variables() {
            if v["type"] == "query" && v["datasource"]["uid"] != "${datasource}" {
                problems.push(format!("{d}: variable {} is not on $datasource", v["name"]));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn promtool_accepts_every_panel_query_and_alert() {
    let dir = tempfile::tempdir().unwrap();
    // One group per dashboard, each query a recording rule named after its panel, and
    // the alert groups as they are: promtool checks both the PromQL and the rule file.
    let mut groups = Vec::new();
    for dashboard in Dashboard::all() {
        let values = dashboard.all_values();
        let rules: Vec<Value> = dashboard
            .queries()
            .iter()
            .map(|q| {
                json!({
                    "record": format!("kerf_dashboard:{}:panel{}_{}", q.dashboard, q.panel_id, q.ref_id),
                    "expr": as_promql(&q.expr, &values, 3600),
                })
            })
            .collect();
        groups.push(json!({"name": format!("dashboard-{}", dashboard.name), "rules": rules}));
    }
    let alerts_text = std::fs::read_to_string(chart_file("rules/alerts.yaml")).unwrap();
    let alerts: Value = serde_saphyr::from_str(&alerts_text).unwrap();
    groups.extend(alerts["groups"].as_array().unwrap().iter().cloned());
    let n_rules: usize = groups
        .iter()
        .map(|g| g["rules"].as_array().unwrap().len())
        .sum();
    // JSON is YAML: promtool reads it as a rule file.
    let generated = dir.path().join("dashboards-and-alerts.rules.yaml");
    std::fs::write(
        &generated,
        serde_json::to_string_pretty(&json!({"groups": groups})).unwrap(),
    )
    .unwrap();
    let out = promtool(dir.path(), &["check", "rules", generated.to_str().unwrap()]);
    assert!(
        out.contains(&format!("SUCCESS: {n_rules} rules found")),
        "promtool did not check all {n_rules} rules:\n{out}"
    );

    // The rule file the chart ships, as Prometheus would load it.
    let shipped = chart_file("rules/alerts.yaml");
    promtool(dir.path(), &["check", "rules", shipped.to_str().unwrap()]);
}

#[test]
fn each_alert_fires_when_it_should_and_only_then() {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/observe");
    let out = promtool(&tests, &["test", "rules", "alerts.test.yaml"]);
    assert!(out.contains("SUCCESS"), "{out}");
    // Every alert has at least one unit test.
    let text = std::fs::read_to_string(tests.join("alerts.test.yaml")).unwrap();
    for rule in alerts() {
        assert!(
            text.contains(&format!("alertname: {}", rule.alert)),
            "alert {} has no case in alerts.test.yaml",
            rule.alert
        );
    }
}

#[test]
fn the_chart_templates_embed_the_checked_files() {
    // The PrometheusRule and the dashboards ConfigMap read the very files checked here,
    // and render nothing unless their value enables them.
    let templates = repo_root().join("charts/kerf/templates");
    let rule = std::fs::read_to_string(templates.join("prometheusrule.yaml")).unwrap();
    assert!(rule.contains(".Files.Get \"rules/alerts.yaml\""));
    assert!(rule.contains("dig \"prometheusRule\" \"enabled\" false"));
    let dashboards = std::fs::read_to_string(templates.join("dashboards-configmap.yaml")).unwrap();
    assert!(dashboards.contains(".Files.Glob \"dashboards/*.json\""));
    assert!(dashboards.contains("dig \"dashboards\" \"enabled\" false"));
}

// --- end to end ---------------------------------------------------------------------------

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
      - {key: karpenter.kwok.sh/instance-cpu, operator: Lt, values: ["17"]}
      expireAfter: Never
  limits: {cpu: "1000"}
  disruption:
    consolidationPolicy: WhenEmptyOrUnderutilized
    consolidateAfter: 5s
    budgets: [{nodes: "100%"}]
"#;

const WORKLOAD: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 10
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: app
        image: registry.example/app:1
        resources: {requests: {cpu: "1", memory: 256Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: too-big, namespace: default}
spec:
  containers:
  - name: app
    image: registry.example/app:1
    resources: {requests: {cpu: "64"}}
"#;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .proxy(None)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .new_agent()
}

/// A real Prometheus on a free port with a throw-away data directory, scraping one target
/// every second and loading the chart's alerts.
struct Prometheus {
    child: Child,
    url: String,
    agent: ureq::Agent,
    log: PathBuf,
    _data: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str, log_dir: &Path) -> Prometheus {
        let data = tempfile::tempdir().unwrap();
        let config = data.path().join("prometheus.yml");
        let alerts = chart_file("rules/alerts.yaml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}}\n\
                 rule_files: [{alerts:?}]\n\
                 scrape_configs:\n\
                 - job_name: kerf\n  static_configs: [{{targets: [{target:?}]}}]\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let log = log_dir.join("prometheus.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(prometheus_bin().join("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                data.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("prometheus starts");
        let mut prometheus = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            agent: http_agent(),
            log,
            _data: data,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = prometheus.child.try_wait().unwrap() {
                panic!("prometheus exited ({status}):\n{}", prometheus.log_text());
            }
            let ready = prometheus
                .agent
                .get(format!("{}/-/ready", prometheus.url))
                .call()
                .is_ok_and(|r| r.status() == 200);
            if ready {
                return prometheus;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready after 60s:\n{}",
                prometheus.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET /api/v1/<path>`: the `data` of a successful answer.
    fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let mut request = self.agent.get(format!("{}/api/v1/{path}", self.url));
        for (k, v) in params {
            request = request.query(*k, *v);
        }
        let mut response = request
            .call()
            .unwrap_or_else(|e| panic!("prometheus {path}: {e}"));
        let body: Value = serde_json::from_str(&response.body_mut().read_to_string().unwrap())
            .unwrap_or_else(|e| panic!("prometheus {path}: not JSON: {e}"));
        assert_eq!(
            body["status"], "success",
            "prometheus {path} {params:?}: {body}"
        );
        body["data"].clone()
    }

    /// A range query, as a Grafana panel makes: the series it returns.
    fn query_range(&self, promql: &str, start: f64, end: f64) -> Vec<Value> {
        let data = self.api(
            "query_range",
            &[
                ("query", promql),
                ("start", &format!("{start:.3}")),
                ("end", &format!("{end:.3}")),
                ("step", "2"),
            ],
        );
        data["result"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A series holds data when one of its points is a number (not NaN, not infinite).
fn has_number(series: &[Value]) -> bool {
    series.iter().any(|s| {
        s["values"].as_array().into_iter().flatten().any(|point| {
            point[1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(f64::is_finite)
        })
    })
}

fn nothing_managed_left(env: &Env) -> bool {
    env.nodeclaims().is_empty()
        && !env
            .nodes()
            .iter()
            .any(|n| n.labels().contains_key(labels::NODEPOOL))
}

#[test]
fn a_real_prometheus_scrapes_kerf_controller_and_every_panel_has_data() {
    prometheus_bin();
    let env = Env::start();
    env.apply_yaml(NODEPOOL);
    let metrics_port = free_port();
    let started = unix_now();
    let mut kerf = Kerf::start(
        &env,
        "kerf-0",
        &[("METRICS_PORT", &metrics_port.to_string())],
    );
    let prometheus = Prometheus::start(&format!("127.0.0.1:{metrics_port}"), env.cluster.log_dir());
    // A rate() panel sees only what grows between two scrapes: the histograms kerf
    // registers at zero must be scraped at zero before the first pod is bound, or a
    // fleet provisioned within Prometheus's first seconds shows no increase at all.
    env.wait(
        Duration::from_secs(30),
        "prometheus scraped kerf before the workload",
        |_| scraped_since(&prometheus, started),
    );

    // Provision for ten pods (one cannot be placed by any NodePool), then empty the nodes
    // and let disruption remove them: launches, registrations, scheduling, a disruption
    // decision, terminations, and their costs and savings.
    env.apply_yaml(WORKLOAD);
    env.wait(Duration::from_secs(120), "10 web pods running", |env| {
        let pods: Vec<_> = env
            .pods("default")
            .into_iter()
            .filter(|p| p.labels().get("app").map(String::as_str) == Some("web"))
            .collect();
        pods.len() == 10 && pods.iter().all(running)
    });
    // Some scrapes of the provisioned fleet before it goes.
    let provisioned = unix_now();
    env.wait(
        Duration::from_secs(30),
        "prometheus scraped the fleet",
        |_| scraped_since(&prometheus, provisioned + 5.0),
    );
    // The per-node gauges go with their nodes: read the names while the fleet is up too.
    let mut response = http_agent()
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .call()
        .expect("kerf serves /metrics");
    let fleet_scrape = response.body_mut().read_to_string().unwrap();
    env.scale("default", "web", 0);
    env.wait(
        Duration::from_secs(180),
        "every NodeClaim and managed node gone",
        nothing_managed_left,
    );
    let settled = unix_now();
    env.wait(
        Duration::from_secs(30),
        "prometheus scraped the end",
        |_| scraped_since(&prometheus, settled + 3.0),
    );
    assert!(kerf.exited().is_none(), "kerf exited:\n{}", kerf.log_text());
    let end = unix_now();

    let mut problems = Vec::new();

    // 1. Every metric a panel, a variable or an alert reads is one kerf exports.
    let mut response = http_agent()
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .call()
        .expect("kerf serves /metrics");
    let scrape = response.body_mut().read_to_string().unwrap();
    std::fs::write(env.cluster.log_dir().join("kerf-metrics.txt"), &scrape).unwrap();
    let mut exported = exported_names(&scrape);
    exported.extend(exported_names(&fleet_scrape));
    let excused: BTreeMap<&str, &str> = NOT_IN_A_KWOK_SCRAPE.iter().copied().collect();
    for (name, reason) in &excused {
        if exported.contains(*name) {
            problems.push(format!(
                "{name} is in kerf's /metrics, though listed as absent ({reason}): take it off NOT_IN_A_KWOK_SCRAPE"
            ));
        }
    }
    for (name, readers) in metrics_read() {
        if !exported.contains(&name) && !excused.contains_key(name.as_str()) {
            problems.push(format!(
                "{name} is not in kerf's /metrics, yet read by: {}",
                readers.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
    }

    // 2. Each panel's query has data over the run, as the dashboard would show it.
    let range_secs = (end - started).ceil() as u64 + 1;
    let mut empty = BTreeSet::new();
    for (query, promql) in all_panel_queries(range_secs) {
        let series = prometheus.query_range(&promql, started, end);
        if !has_number(&series) {
            empty.insert((query.dashboard.clone(), query.panel.clone()));
            problems.push(format!("no data: {}: {promql}", query.name()));
        }
    }
    let allowed_empty: Vec<String> = EMPTY_ON_KWOK
        .iter()
        .chain(MAY_BE_EMPTY_ON_A_SHORT_RUN)
        .map(|(d, panel, _)| format!("no data: {d} / \"{panel}\""))
        .collect();
    problems.retain(|p| !allowed_empty.iter().any(|prefix| p.starts_with(prefix)));
    for (dashboard, panel, reason) in EMPTY_ON_KWOK {
        if !empty.contains(&(dashboard.to_string(), panel.to_string())) {
            problems.push(format!(
                "{dashboard} / \"{panel}\" has data, though listed as empty on kwok ({reason}): take it off EMPTY_ON_KWOK"
            ));
        }
    }
    for dashboard in Dashboard::all() {
        for (var, metric, label) in dashboard.label_value_queries() {
            let values = prometheus.api(
                &format!("label/{label}/values"),
                &[
                    ("match[]", &metric),
                    ("start", &format!("{started:.3}")),
                    ("end", &format!("{end:.3}")),
                ],
            );
            if values.as_array().is_none_or(Vec::is_empty) {
                problems.push(format!(
                    "{} / variable ${var}: label_values({metric}, {label}) has no value",
                    dashboard.name
                ));
            }
        }
    }

    // 3. Prometheus loaded the chart's alerts, each evaluates cleanly, and on a healthy
    // cluster none fires.
    let rules = prometheus.api("rules", &[]);
    let loaded: Vec<&Value> = rules["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .collect();
    if loaded.len() != alerts().len() {
        problems.push(format!(
            "prometheus loaded {} rules, the chart has {}",
            loaded.len(),
            alerts().len()
        ));
    }
    for rule in &loaded {
        if rule["health"] != "ok" {
            problems.push(format!(
                "alert {} evaluates with health {}: {}",
                rule["name"], rule["health"], rule["lastError"]
            ));
        }
        if rule["state"] == "firing" {
            problems.push(format!("alert {} fires on a healthy cluster", rule["name"]));
        }
    }

    assert!(
        problems.is_empty(),
        "{} problems (kerf's scrape and prometheus's log are in {}):\n{}",
        problems.len(),
        env.cluster.log_dir().display(),
        problems.join("\n")
    );
    assert!(kerf.terminate().success(), "kerf stops cleanly on SIGTERM");
}

/// Prometheus holds a successful scrape of kerf taken after `since` (Unix seconds).
fn scraped_since(prometheus: &Prometheus, since: f64) -> bool {
    let data = prometheus.api("query", &[("query", "timestamp(up{job=\"kerf\"} == 1)")]);
    data["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["value"][1].as_str()?.parse::<f64>().ok())
        .any(|t| t >= since)
}
