//! What kerf-aws asks of AWS at scale: its provider (`AwsProvider`, the object
//! `kerf controller --cloud-provider aws` launches, lists and terminates through) driven
//! against moto as the controller drives it, with every call counted by moto's IAM
//! decision log for the `kerf-controller` user (`deploy/aws/cloudformation.yaml` deployed,
//! IAM enforced, kerf signing as a user holding only the controller policy).
//!
//! ```text
//! cargo run -p kerf-aws --example api_calls -- [--nodes 1000] [--repeat 3] [--tag-pace-ms 1000]
//! ```
//!
//! Phases, each counted apart:
//! 1. start-up: the provider (zones, the region's instance types) and the class resolved;
//! 2. a few launches one after another (`--lone`), each alone in the provider;
//! 3. the other launches all at once, one task each, as the shell starts every launch of
//!    a step (`kerf-kube`'s `Shell::launch`), a failed one tried again 5 s later as the
//!    shell does (moto, one Python process, refuses connections beyond its accept queue
//!    when a thousand arrive at once);
//! 4. post-registration tagging of every instance, as `tagging::run`'s 30 s pass finds
//!    them all due (`--tag-pace-ms` shortens the one-a-second pace; the calls are the same);
//! 5. steady state: what the controller repeats, each run `--repeat` times and counted
//!    apart — the shell's instance list (every 30 s), the class status refresh (every
//!    60 s, `status::run`), the interruption queue's long poll (20 s) — then per minute
//!    at those cadences;
//! 6. every instance terminated at once (a scale to zero), a failed one tried again 5 s
//!    later.
//!
//! And the latency kerf adds between a launch request (`Provider::create` entered) and
//! its CreateFleet call (an SDK interceptor sees the call start, by the claim tag it
//! carries), alone and at once.
//!
//! Not covered: the Kubernetes side (no control plane: `kerf-kwokbench` measures that),
//! the catalog and price refresh (every 12 h), the EC2NodeClass finalizer, interruption
//! messages (the queue is empty), and EC2's own latency and throttling (moto has neither).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::{Intercept, SharedInterceptor};
use aws_smithy_types::config_bag::ConfigBag;
use kerf_api::crd::{
    AMISelectorTerm, EC2NodeClass, EC2NodeClassSpec, SecurityGroupSelectorTerm, SubnetSelectorTerm,
};
use kerf_aws::interruption::Queue;
use kerf_aws::{AwsProvider, Clients, ClusterInfo, tagging, tags};
use kerf_cloud::{LaunchRequest, Offer, Provider};
use kerf_testcluster::moto::Moto;

const CLUSTER: &str = "kerf-bench";
const REGION: &str = "us-west-2";
const K8S: &str = "1.33";
/// The shell lists instances this often (`kerf-kube`'s `LIST_INTERVAL_MS`).
const LIST_EVERY: Duration = Duration::from_secs(30);
/// The class status writer resolves each class this often (`status::run`).
const RESOLVE_EVERY: Duration = Duration::from_secs(60);
/// The shell tries a failed launch again 5 s later (`kerf-kube`'s `LAUNCH_RETRY_MS`),
/// and a failed termination on a later step; the bench does both after 5 s, at most
/// `ATTEMPTS` times.
const RETRY_AFTER: Duration = Duration::from_secs(5);
const ATTEMPTS: usize = 10;

struct Args {
    nodes: usize,
    lone: usize,
    repeat: usize,
    tag_pace: Duration,
}

fn args() -> anyhow::Result<Args> {
    let mut args = Args {
        nodes: 1000,
        lone: 5,
        repeat: 3,
        tag_pace: tagging::PACE,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} takes a value"))?;
        match flag.as_str() {
            "--nodes" => args.nodes = value.parse()?,
            "--lone" => args.lone = value.parse()?,
            "--repeat" => args.repeat = value.parse()?,
            "--tag-pace-ms" => args.tag_pace = Duration::from_millis(value.parse()?),
            _ => bail!("unknown flag {flag}: --nodes, --lone, --repeat, --tag-pace-ms"),
        }
    }
    if args.lone > args.nodes {
        bail!("--lone {} is more than --nodes {}", args.lone, args.nodes);
    }
    Ok(args)
}

fn main() -> anyhow::Result<()> {
    let args = args()?;
    let audit = std::env::temp_dir().join(format!("kerf-api-calls-{}.jsonl", std::process::id()));
    let load_before = loadavg();
    let started = Instant::now();
    let moto = Moto::start_with_iam_stack(CLUSTER, REGION, K8S, &audit);
    eprintln!(
        "api_calls: moto with the IAM stack up in {:?}",
        started.elapsed()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = rt.block_on(run(&moto, &audit, &args));
    drop(moto);
    let _ = std::fs::remove_file(&audit);
    let report = report?;
    println!("{report}");
    println!(
        "load average before: {load_before}   after: {}   wall: {:.0} s",
        loadavg(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// When each claim's CreateFleet call started, by the claim tag it carries.
#[derive(Debug, Default)]
struct FleetClock(Mutex<BTreeMap<String, Instant>>);

impl FleetClock {
    fn at(&self, claim: &str) -> Option<Instant> {
        self.0.lock().ok()?.get(claim).copied()
    }
}

#[derive(Debug, Clone)]
struct FleetInterceptor(Arc<FleetClock>);

impl Intercept for FleetInterceptor {
    fn name(&self) -> &'static str {
        "kerf-bench-fleet-clock"
    }

    fn read_before_execution(
        &self,
        ctx: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let now = Instant::now();
        let Some(input) = ctx
            .input()
            .downcast_ref::<aws_sdk_ec2::operation::create_fleet::CreateFleetInput>()
        else {
            return Ok(());
        };
        let claim = input
            .tag_specifications()
            .iter()
            .flat_map(|s| s.tags())
            .find(|t| t.key() == Some(tags::NODECLAIM))
            .and_then(|t| t.value());
        if let (Some(claim), Ok(mut at)) = (claim, self.0.0.lock()) {
            at.entry(claim.to_string()).or_insert(now);
        }
        Ok(())
    }
}

/// Calls by action so far, from moto's IAM decision log, for `principal`.
fn calls(audit: &Path, principal: &str) -> anyhow::Result<BTreeMap<String, usize>> {
    let mut out = BTreeMap::new();
    for line in std::fs::read_to_string(audit)?.lines() {
        let d: serde_json::Value = serde_json::from_str(line)?;
        if d["principal"] == principal {
            let action = d["action"].as_str().unwrap_or_default().to_string();
            *out.entry(action).or_insert(0) += 1;
        }
    }
    Ok(out)
}

fn minus(after: &BTreeMap<String, usize>, before: &BTreeMap<String, usize>) -> Counts {
    Counts(
        after
            .iter()
            .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
            .filter(|(_, v)| *v > 0)
            .collect(),
    )
}

/// One phase's calls by action.
struct Counts(BTreeMap<String, usize>);

impl Counts {
    fn total(&self) -> usize {
        self.0.values().sum()
    }
}

/// The phases so far, each closed with the calls moto logged since the one before.
struct Phases<'a> {
    audit: &'a Path,
    principal: String,
    at: BTreeMap<String, usize>,
    done: Vec<Phase>,
}

impl Phases<'_> {
    fn close(
        &mut self,
        name: String,
        per: Option<(f64, &'static str)>,
        every: Option<Duration>,
    ) -> anyhow::Result<()> {
        let now = calls(self.audit, &self.principal)?;
        let counts = minus(&now, &self.at);
        self.done.push(Phase {
            name,
            counts,
            per,
            every,
        });
        self.at = now;
        Ok(())
    }

    /// Closes a phase that ran something the controller repeats `runs` times, counted
    /// per run and taken at the controller's cadence (`every`).
    fn close_repeated(
        &mut self,
        what: &str,
        runs: usize,
        run: &'static str,
        every: Duration,
    ) -> anyhow::Result<()> {
        let name = format!("{what}, {runs} times");
        self.close(name, Some((runs as f64, run)), Some(every))
    }
}

/// A phase: what it was, its calls, what they are counted per (`(n, "launch")`) and,
/// for what the controller repeats, how often it does.
struct Phase {
    name: String,
    counts: Counts,
    per: Option<(f64, &'static str)>,
    every: Option<Duration>,
}

struct Report {
    nodes: usize,
    phases: Vec<Phase>,
    lone: Vec<Duration>,
    burst: Vec<Duration>,
    burst_wall: Duration,
    failed: usize,
    /// Calls tried again after an error (each retry, launches and terminations).
    launch_retries: usize,
    termination_retries: usize,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "AWS calls by kerf-aws at {} nodes (moto's IAM log, user kerf-controller)",
            self.nodes
        )?;
        for p in &self.phases {
            let per = match p.per {
                Some((n, what)) => format!(
                    "  = {:.2} per {what}",
                    p.counts.total() as f64 / n.max(1e-9)
                ),
                None => String::new(),
            };
            writeln!(f, "  {}: {} calls{per}", p.name, p.counts.total())?;
            for (action, n) in &p.counts.0 {
                let per = match p.per {
                    Some((d, _)) => format!("  ({:.3})", *n as f64 / d.max(1e-9)),
                    None => String::new(),
                };
                writeln!(f, "      {action:<40} {n:>6}{per}")?;
            }
        }
        let mut per_minute: BTreeMap<&str, f64> = BTreeMap::new();
        for p in &self.phases {
            if let (Some((runs, _)), Some(every)) = (p.per, p.every) {
                let rate = 60.0 / every.as_secs_f64() / runs.max(1e-9);
                for (action, n) in &p.counts.0 {
                    *per_minute.entry(action).or_default() += *n as f64 * rate;
                }
            }
        }
        writeln!(
            f,
            "  steady state, per minute at the controller's cadences (list 30 s, refresh 60 s, poll 20 s): {:.1} calls",
            per_minute.values().sum::<f64>()
        )?;
        for (action, n) in &per_minute {
            writeln!(f, "      {action:<40} {n:>6.1}")?;
        }
        let ms = |d: &Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
        writeln!(
            f,
            "  latency from a launch request to its CreateFleet call:"
        )?;
        writeln!(
            f,
            "      alone, one after another: {}",
            self.lone.iter().map(ms).collect::<Vec<_>>().join(", ")
        )?;
        let mut sorted = self.burst.clone();
        sorted.sort();
        let q = |p: f64| {
            sorted
                .get(((sorted.len() as f64 - 1.0) * p).round() as usize)
                .map_or_else(|| "-".to_string(), ms)
        };
        writeln!(
            f,
            "      {} at once: p50 {}  p90 {}  p99 {}  max {}  (all launched in {:.1} s; {} failed)",
            sorted.len(),
            q(0.5),
            q(0.9),
            q(0.99),
            q(1.0),
            self.burst_wall.as_secs_f64(),
            self.failed,
        )?;
        writeln!(
            f,
            "  retried after an error, {} s later: {} launches, {} terminations",
            RETRY_AFTER.as_secs(),
            self.launch_retries,
            self.termination_retries,
        )
    }
}

async fn clients(moto: &Moto, interceptor: SharedInterceptor) -> anyhow::Result<Clients> {
    let (key, secret) = moto.keys("controller");
    Clients::with_keys(moto.endpoint(), REGION, (&key, &secret), Some(interceptor)).await
}

/// The end-to-end case's class: the stack's node role, AL2023, the seeded subnets and
/// security group.
fn node_class() -> EC2NodeClass {
    let discovery = BTreeMap::from([("karpenter.sh/discovery".to_string(), CLUSTER.to_string())]);
    let mut nc = EC2NodeClass::new(
        "default",
        EC2NodeClassSpec {
            role: Some(format!("KarpenterNodeRole-{CLUSTER}")),
            subnet_selector_terms: vec![SubnetSelectorTerm {
                tags: discovery.clone(),
                ..Default::default()
            }],
            security_group_selector_terms: vec![SecurityGroupSelectorTerm {
                tags: discovery,
                ..Default::default()
            }],
            ami_selector_terms: vec![AMISelectorTerm {
                alias: Some("al2023@latest".into()),
                ..Default::default()
            }],
            tags: BTreeMap::from([("team".to_string(), "platform".to_string())]),
            ..Default::default()
        },
    );
    nc.metadata.uid = Some("uid-default".into());
    nc.metadata.generation = Some(1);
    nc
}

/// What a claim of the end-to-end case's NodePool carries (c and m, amd64, under 9
/// vCPUs, on-demand): its types' on-demand offerings, the largest subnet's zone first
/// (moto starts a fleet's first override, where EC2 would choose by price, and the
/// seeded `a` subnet holds only 251 addresses).
fn options(provider: &AwsProvider) -> Vec<Offer> {
    let label =
        |t: &kerf_model::InstanceType, k: &str| t.labels.get(k).cloned().unwrap_or_default();
    let mut types: Vec<(f64, kerf_model::InstanceType)> = provider
        .instance_types()
        .into_iter()
        .filter(|t| {
            matches!(
                label(t, "karpenter.k8s.aws/instance-category").as_str(),
                "c" | "m"
            ) && label(t, "kubernetes.io/arch") == "amd64"
                && label(t, "karpenter.k8s.aws/instance-cpu")
                    .parse::<u32>()
                    .is_ok_and(|c| c < 9)
        })
        .filter_map(|t| {
            let price = t
                .offerings
                .iter()
                .filter(|o| o.capacity_type == "on-demand" && o.available)
                .map(|o| o.price)
                .fold(f64::INFINITY, f64::min);
            price.is_finite().then_some((price, t))
        })
        .collect();
    types.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.name.cmp(&b.1.name)));
    let mut out = Vec::new();
    for zone in ["c", "b", "a"].map(|z| format!("{REGION}{z}")) {
        for (_, t) in types.iter().take(20) {
            if t.offerings
                .iter()
                .any(|o| o.zone == zone && o.capacity_type == "on-demand" && o.available)
            {
                out.push(Offer {
                    instance_type: t.name.clone(),
                    zone: zone.clone(),
                    capacity_type: "on-demand".into(),
                });
            }
        }
    }
    out
}

fn request(claim: &str, options: &[Offer]) -> LaunchRequest {
    LaunchRequest {
        claim: claim.to_string(),
        nodepool: "default".into(),
        node_class: Some("default".into()),
        options: options.to_vec(),
        image_id: String::new(),
        labels: BTreeMap::from([
            ("karpenter.sh/nodepool".to_string(), "default".to_string()),
            ("team".to_string(), "platform".to_string()),
        ]),
        taints: vec![],
        startup_taints: vec![],
        now_ms: jiff::Timestamp::now().as_millisecond(),
    }
}

async fn run(moto: &Moto, audit: &Path, args: &Args) -> anyhow::Result<Report> {
    let principal = moto.info["iam"]["controller"]["arn"]
        .as_str()
        .context("the controller user's ARN")?
        .to_string();
    let clock = Arc::new(FleetClock::default());
    let clients = clients(
        moto,
        SharedInterceptor::new(FleetInterceptor(clock.clone())),
    )
    .await?;

    let mut phases = Phases {
        at: calls(audit, &principal)?,
        audit,
        principal,
        done: Vec::new(),
    };
    let provider = Arc::new(
        AwsProvider::new(
            clients.clone(),
            ClusterInfo {
                name: CLUSTER.into(),
                endpoint: "https://api.kerf-bench.example".into(),
                ca_bundle: "Q0EK".into(),
                cidr: None,
                k8s_version: K8S.into(),
            },
            Arc::new(RwLock::new(BTreeMap::new())),
            None,
        )
        .await?,
    );
    let nc = node_class();
    let status = provider.resolve_class(&nc).await;
    if !kerf_aws::resolve::is_ready(&status) {
        bail!(
            "the class is not ready: {}",
            kerf_aws::resolve::not_ready_message(&status)
        );
    }
    let options = options(&provider);
    let queue_name = moto.info["iam"]["queue"].as_str().context("the queue")?;
    let queue = Queue::new(clients.sqs.clone(), queue_name).await?;
    phases.close(
        "start-up: zones, instance types, the class resolved, the queue's URL".into(),
        None,
        None,
    )?;

    // Launches alone.
    let mut lone = Vec::new();
    let mut instances: Vec<(String, String)> = Vec::new();
    for i in 0..args.lone {
        let claim = format!("lone-{i}");
        let requested = Instant::now();
        let created = provider.create(request(&claim, &options)).await?;
        let sent = clock
            .at(&claim)
            .context("no CreateFleet for a lone launch")?;
        lone.push(sent - requested);
        instances.push((claim, created.instance.id));
    }
    phases.close(
        format!("{} launches, one after another", args.lone),
        Some((args.lone as f64, "launch")),
        None,
    )?;

    // Launches at once, one task each.
    let burst = args.nodes - args.lone;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..burst {
        let (provider, claim) = (provider.clone(), format!("claim-{i:04}"));
        let request = request(&claim, &options);
        tasks.spawn(async move {
            let requested = Instant::now();
            let mut attempts = 1;
            loop {
                let created = provider.create(request.clone()).await;
                if created.is_ok() || attempts == ATTEMPTS {
                    return (claim, requested, created, attempts);
                }
                if let Err(e) = &created {
                    eprintln!("api_calls: launching {claim} (attempt {attempts}): {e}");
                }
                attempts += 1;
                tokio::time::sleep(RETRY_AFTER).await;
            }
        });
    }
    let mut latencies = Vec::new();
    let (mut failed, mut launch_retries) = (0, 0);
    while let Some(done) = tasks.join_next().await {
        let (claim, requested, created, attempts) = done?;
        launch_retries += attempts - 1;
        match created {
            Ok(c) => {
                if let Some(sent) = clock.at(&claim) {
                    latencies.push(sent - requested);
                }
                instances.push((claim, c.instance.id));
            }
            Err(e) => {
                failed += 1;
                eprintln!("api_calls: launching {claim}: {e}");
            }
        }
    }
    let burst_wall = started.elapsed();
    phases.close(
        format!("{burst} launches at once"),
        Some((burst as f64, "launch")),
        None,
    )?;

    // Post-registration tagging: every claim due at once, as a tagging pass finds them.
    let ids: Vec<String> = instances
        .iter()
        .map(|(_, id)| kerf_aws::instance_id(id).to_string())
        .collect();
    let held = tagging::held_tags(&clients.ec2, &ids).await?;
    for ((claim, _), id) in instances.iter().zip(&ids) {
        let wanted = BTreeMap::from([
            (tagging::NAME.to_string(), format!("node-{claim}")),
            (tags::NODECLAIM.to_string(), claim.clone()),
            (tags::EKS_CLUSTER.to_string(), CLUSTER.to_string()),
        ]);
        tagging::add_missing(&clients.ec2, id, &wanted, held.get(id), args.tag_pace).await?;
    }
    phases.close(
        format!("tagging {} registered instances", instances.len()),
        Some((instances.len() as f64, "instance")),
        None,
    )?;

    // Steady state: what the controller repeats, each counted over `--repeat` runs, and
    // then at the cadence it runs at. (A run against moto takes far longer than against
    // EC2 at 1,000 instances, so calls over a wall-clock window would say more about
    // moto than about kerf.)
    for _ in 0..args.repeat {
        let listed = provider.list().await?.len();
        if listed != instances.len() {
            bail!(
                "the list found {listed} instances, {} were launched",
                instances.len()
            );
        }
    }
    phases.close_repeated("the instance list", args.repeat, "list", LIST_EVERY)?;
    for _ in 0..args.repeat {
        provider.resolve_class(&nc).await;
    }
    let refresh = "the class status refresh";
    phases.close_repeated(refresh, args.repeat, "refresh", RESOLVE_EVERY)?;
    for _ in 0..args.repeat {
        queue.poll_once(|_| async { Ok(()) }).await?;
    }
    let poll = Duration::from_secs(queue.wait_seconds.max(1) as u64);
    phases.close_repeated(
        "the interruption queue's long poll",
        args.repeat,
        "poll",
        poll,
    )?;

    // Every instance terminated at once.
    let mut tasks = tokio::task::JoinSet::new();
    for (_, id) in &instances {
        let (provider, id) = (provider.clone(), id.clone());
        tasks.spawn(async move {
            let mut attempts = 1;
            loop {
                let deleted = provider.delete(id.clone()).await;
                if deleted.is_ok() || attempts == ATTEMPTS {
                    return deleted.map(|()| attempts);
                }
                if let Err(e) = &deleted {
                    eprintln!("api_calls: terminating {id} (attempt {attempts}): {e}");
                }
                attempts += 1;
                tokio::time::sleep(RETRY_AFTER).await;
            }
        });
    }
    let mut termination_retries = 0;
    while let Some(done) = tasks.join_next().await {
        termination_retries += done?? - 1;
    }
    phases.close(
        format!("{} terminations at once", instances.len()),
        Some((instances.len() as f64, "termination")),
        None,
    )?;
    let left = provider.list().await?.len();
    if left > 0 {
        bail!("{left} instances still live after terminating them all");
    }
    Ok(Report {
        nodes: instances.len(),
        phases: phases.done,
        lone,
        burst: latencies,
        burst_wall,
        failed,
        launch_retries,
        termination_retries,
    })
}
