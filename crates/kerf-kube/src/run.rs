//! Wiring: the kube client, the watches, leader election, the HTTP endpoints, signals,
//! and the loop that owns the shell. Every task is spawned into one `JoinSet` and
//! stopped by one cancellation token; the process exits only after each has finished.
//!
//! All of it runs on one thread (`kerf controller` builds a current-thread runtime),
//! except leader election, which has a thread, a runtime and a client of its own. On one
//! thread glibc keeps one arena: each worker thread's arena held 10–15 MiB at the peak
//! of a 1,000-node scale-out (the watches' and connections' buffers), and Hostname
//! spread's peak RSS went from 101.6–103.5 MiB to 89.7–90.7 MiB. The lease stays on its own
//! thread so that a long step cannot delay a renewal: a leader must stop acting before
//! its lease can pass to another, whatever the step loop is doing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kerf_api::crd;
use kerf_cloud::Provider;
use kube::core::{DynamicObject, PartialObjectMeta};
use kube::runtime::WatchStreamExt;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::watcher::{self, Event as WatchEvent};
use kube::{Api, Client, ResourceExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::leader::{Elector, Role};
use crate::metrics::PodStartup;
use crate::settings::{CloudProviderName, Settings};
use crate::shell::Shell;
use crate::state::{Kind, SeenNode, SeenPod, State};

/// One change a watch saw. Each is boxed: the queue to the step loop holds up to 4,096
/// of them, and unboxed every slot would take the largest kind's size.
enum Change {
    Pod(Box<WatchEvent<SeenPod>>),
    Node(Box<WatchEvent<SeenNode>>),
    NodePool(Box<WatchEvent<crd::NodePool>>),
    NodeClaim(Box<WatchEvent<crd::NodeClaim>>),
    /// Only names matter here (the provider reads the class itself): a metadata-only
    /// watch of the provider's node class kind.
    NodeClass(Box<WatchEvent<PartialObjectMeta<DynamicObject>>>),
    DaemonSet(Box<WatchEvent<DaemonSet>>),
    Pdb(Box<WatchEvent<PodDisruptionBudget>>),
    Namespace(Box<WatchEvent<Namespace>>),
}

fn spawn_watch<K, F>(
    tasks: &mut JoinSet<()>,
    api: Api<K>,
    wrap: F,
    tx: mpsc::Sender<Change>,
    cancel: CancellationToken,
) where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
    F: Fn(WatchEvent<K>) -> Change + Send + 'static,
{
    tasks.spawn(async move {
        let stream = watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .modify(strip);
        forward(stream, wrap, tx, cancel).await;
    });
}

/// What no loop reads and no write sends back: `metadata.managedFields`, often half of
/// a Node or Pod. Dropped as each object arrives, it takes no room in the queue to the
/// step loop (up to 4,096 changes while a step runs) nor in the stored objects. An
/// update that omits it leaves the server's as they are.
fn strip<K: kube::Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
}

async fn forward<K, S, F>(stream: S, wrap: F, tx: mpsc::Sender<Change>, cancel: CancellationToken)
where
    S: Stream<Item = Result<WatchEvent<K>, watcher::Error>>,
    F: Fn(WatchEvent<K>) -> Change,
{
    let mut stream = std::pin::pin!(stream);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            next = stream.next() => match next {
                Some(Ok(event)) => {
                    if tx.send(wrap(event)).await.is_err() {
                        return;
                    }
                }
                // The watcher retries with backoff; the error is worth a line.
                Some(Err(e)) => tracing::warn!(error = %e, "watch error; retrying"),
                None => return,
            }
        }
    }
}

/// The event with its object mapped by `f`.
fn map_event<A, B>(event: WatchEvent<A>, f: impl Fn(A) -> B) -> WatchEvent<B> {
    match event {
        WatchEvent::Init => WatchEvent::Init,
        WatchEvent::InitApply(a) => WatchEvent::InitApply(f(a)),
        WatchEvent::Apply(a) => WatchEvent::Apply(f(a)),
        WatchEvent::InitDone => WatchEvent::InitDone,
        WatchEvent::Delete(a) => WatchEvent::Delete(f(a)),
    }
}

/// A metadata-only watch of node class kind `K`, its events carried untyped.
fn spawn_class_watch<K>(
    tasks: &mut JoinSet<()>,
    client: Client,
    tx: mpsc::Sender<Change>,
    cancel: CancellationToken,
) where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default,
{
    fn untyped<K>(m: PartialObjectMeta<K>) -> PartialObjectMeta<DynamicObject> {
        PartialObjectMeta {
            types: m.types,
            metadata: m.metadata,
            _phantom: std::marker::PhantomData,
        }
    }
    // `Api<PartialObjectMeta<K>>` makes metadata-only requests.
    let api = Api::<PartialObjectMeta<K>>::all(client);
    tasks.spawn(async move {
        let stream = watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .modify(strip);
        let wrap = |e| Change::NodeClass(Box::new(map_event(e, untyped)));
        forward(stream, wrap, tx, cancel).await;
    });
}

fn apply<K>(
    state: &mut State,
    kind: Kind,
    event: WatchEvent<K>,
    on_apply: impl Fn(&mut State, &K),
    key: impl Fn(&K) -> String,
) {
    match event {
        WatchEvent::Init => state.relist_started(kind),
        WatchEvent::InitApply(obj) | WatchEvent::Apply(obj) => on_apply(state, &obj),
        WatchEvent::InitDone => state.relist_done(kind),
        WatchEvent::Delete(obj) => state.delete(kind, &key(&obj)),
    }
}

fn ns_name<K: kube::Resource>(obj: &K) -> String {
    format!(
        "{}/{}",
        obj.meta().namespace.as_deref().unwrap_or_default(),
        obj.meta().name.as_deref().unwrap_or_default()
    )
}

fn name<K: kube::Resource>(obj: &K) -> String {
    obj.meta().name.clone().unwrap_or_default()
}

fn handle(state: &mut State, startup: &mut PodStartup, change: Change) {
    match change {
        Change::Pod(e) => {
            let e = *e;
            match &e {
                WatchEvent::InitApply(p) | WatchEvent::Apply(p) => startup.observe(p),
                WatchEvent::Delete(p) => startup.forget(p),
                WatchEvent::Init | WatchEvent::InitDone => {}
            }
            apply(state, Kind::Pod, e, State::apply_pod, |p| p.key.clone())
        }
        Change::Node(e) => apply(state, Kind::Node, *e, State::apply_node, SeenNode::name),
        Change::NodePool(e) => apply(state, Kind::NodePool, *e, State::apply_nodepool, name),
        Change::NodeClaim(e) => apply(state, Kind::NodeClaim, *e, State::apply_nodeclaim, name),
        Change::NodeClass(e) => apply(
            state,
            Kind::NodeClass,
            *e,
            |s, c: &PartialObjectMeta<DynamicObject>| {
                let version = c
                    .resource_version()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(u64::MAX);
                s.apply_node_class(&c.name_any(), version, c.annotations())
            },
            name,
        ),
        Change::DaemonSet(e) => apply(state, Kind::DaemonSet, *e, State::apply_daemonset, ns_name),
        Change::Pdb(e) => apply(state, Kind::Pdb, *e, State::apply_pdb, ns_name),
        Change::Namespace(e) => apply(state, Kind::Namespace, *e, State::apply_namespace, name),
    }
}

/// What the HTTP endpoints report.
#[derive(Default)]
struct Health {
    ready: AtomicBool,
}

/// Serves `router` on `port` until cancelled; failing to listen stops the controller.
fn spawn_http(
    tasks: &mut JoinSet<()>,
    what: &'static str,
    port: u16,
    router: axum::Router,
    cancel: CancellationToken,
) {
    let addr = SocketAddr::from(([0, 0, 0, 0], port));
    tasks.spawn(async move {
        let served = async {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            axum::serve(listener, router)
                .with_graceful_shutdown(cancel.clone().cancelled_owned())
                .await
                .context("HTTP server")
        };
        if let Err(e) = served.await {
            tracing::error!(error = %format!("{e:#}"), "{what} endpoint");
            cancel.cancel();
        }
    });
}

/// Runs `kerf controller` until SIGTERM/SIGINT (clean exit, lease released) or until
/// leadership is lost (an error: the process restarts as a standby).
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let mut config = kube::Config::infer()
        .await
        .context("no Kubernetes configuration found (KUBECONFIG, ~/.kube/config or in-cluster)")?;
    config.read_timeout = Some(Duration::from_secs(300));
    let client = kube::client::ClientBuilder::try_from(config.clone())
        .context("building the Kubernetes client")?
        .with_layer(&crate::pace::PaceLayer::new(settings.qps, settings.burst))
        .build();
    match settings.cloud_provider {
        CloudProviderName::Kwok => {
            let provider = Arc::new(crate::kwok::Kwok::new(client.clone()));
            run_with(settings, config, client, provider, None).await
        }
        CloudProviderName::Aws => {
            // The status writer, tagging, the finalizer and the interruption poller run
            // from the moment this replica leads until the run ends.
            let stop = CancellationToken::new();
            let (provider, background) = kerf_aws::controller::start(
                client.clone(),
                &settings.cluster_name,
                settings.isolated_vpc,
                stop.clone(),
            )
            .await?;
            let leading: OnLeading = Box::new(move || background.spawn());
            let result = run_with(settings, config, client, provider, Some(leading)).await;
            stop.cancel();
            result
        }
    }
}

/// Leader election on a thread of its own, with its own runtime and client (a kube
/// `Client` drives its requests from tasks on the runtime that built it): the step loop's
/// thread may be busy for a while, and the lease must be renewed, or given up, on time.
fn spawn_elector(
    mut config: kube::Config,
    settings: &Settings,
    role: watch::Sender<Role>,
    cancel: CancellationToken,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let (namespace, name, identity) = (
        settings.leader_election_namespace.clone(),
        settings.leader_election_name.clone(),
        settings.identity.clone(),
    );
    // Each lease request is a get, a create or an update: one that hangs must fail well
    // inside the renew deadline, so the elector tries again (or gives the lease up) in time.
    config.connect_timeout = Some(crate::leader::RETRY_PERIOD * 2);
    config.read_timeout = Some(crate::leader::RETRY_PERIOD * 2);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the leader election runtime")?;
    std::thread::Builder::new()
        .name("leader-election".into())
        .spawn(move || {
            runtime.block_on(async move {
                let client = match Client::try_from(config) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(error = %e, "building the leader election client");
                        cancel.cancel();
                        return;
                    }
                };
                let elector = Elector::new(client, &namespace, &name, &identity);
                elector.run(role, cancel).await
            })
        })
        .context("starting the leader election thread")
}

/// What a provider starts once this replica leads.
type OnLeading = Box<dyn FnOnce() + Send>;

async fn run_with<P: Provider>(
    settings: Settings,
    config: kube::Config,
    client: Client,
    provider: Arc<P>,
    mut on_leading: Option<OnLeading>,
) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    let mut tasks: JoinSet<()> = JoinSet::new();
    let health = Arc::new(Health::default());

    // Endpoints first, so probes answer while caches fill.
    let health_router = {
        let ready = health.clone();
        axum::Router::new()
            .route("/healthz", axum::routing::get(|| async { "ok" }))
            .route(
                "/readyz",
                axum::routing::get(move || {
                    let ready = ready.ready.load(Ordering::Relaxed);
                    async move {
                        if ready {
                            (axum::http::StatusCode::OK, "ok")
                        } else {
                            (
                                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                                "caches not synced",
                            )
                        }
                    }
                }),
            )
    };
    spawn_http(
        &mut tasks,
        "health",
        settings.health_probe_port,
        health_router,
        cancel.clone(),
    );
    let metrics = crate::metrics::install()?;
    crate::metrics::register(provider.name());
    let node_gauges = crate::metrics::NodeTable::default();
    let metrics_router = {
        let metrics = metrics.clone();
        let node_gauges = node_gauges.clone();
        axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let mut body = metrics.render();
                body.push_str(&node_gauges.render());
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        body,
                    )
                }
            }),
        )
    };
    spawn_http(
        &mut tasks,
        "metrics",
        settings.metrics_port,
        metrics_router,
        cancel.clone(),
    );

    let (tx, mut rx) = mpsc::channel::<Change>(4096);
    let c = || client.clone();
    // Pods and Nodes are converted on their watches' tasks (see `SeenPod`).
    spawn_watch(
        &mut tasks,
        Api::<Pod>::all(c()),
        |e| Change::Pod(Box::new(map_event(e, |p| SeenPod::of(&p)))),
        tx.clone(),
        cancel.clone(),
    );
    spawn_watch(
        &mut tasks,
        Api::<Node>::all(c()),
        |e| Change::Node(Box::new(map_event(e, |n| SeenNode::of(&n)))),
        tx.clone(),
        cancel.clone(),
    );
    spawn_watch(
        &mut tasks,
        Api::<crd::NodePool>::all(c()),
        |e| Change::NodePool(Box::new(e)),
        tx.clone(),
        cancel.clone(),
    );
    spawn_watch(
        &mut tasks,
        Api::<crd::NodeClaim>::all(c()),
        |e| Change::NodeClaim(Box::new(e)),
        tx.clone(),
        cancel.clone(),
    );
    match provider.node_class_kind() {
        ("karpenter.k8s.aws", "EC2NodeClass") => {
            spawn_class_watch::<crd::EC2NodeClass>(&mut tasks, c(), tx.clone(), cancel.clone())
        }
        _ => spawn_class_watch::<crd::KWOKNodeClass>(&mut tasks, c(), tx.clone(), cancel.clone()),
    }
    spawn_watch(
        &mut tasks,
        Api::<DaemonSet>::all(c()),
        |e| Change::DaemonSet(Box::new(e)),
        tx.clone(),
        cancel.clone(),
    );
    spawn_watch(
        &mut tasks,
        Api::<PodDisruptionBudget>::all(c()),
        |e| Change::Pdb(Box::new(e)),
        tx.clone(),
        cancel.clone(),
    );
    spawn_watch(
        &mut tasks,
        Api::<Namespace>::all(c()),
        |e| Change::Namespace(Box::new(e)),
        tx.clone(),
        cancel.clone(),
    );
    drop(tx);

    let (role_tx, role_rx) = watch::channel(if settings.leader_election {
        Role::Standby
    } else {
        Role::Leader
    });
    if settings.leader_election {
        let lease = spawn_elector(config, &settings, role_tx, cancel.clone())?;
        // The drain at the end waits for the lease's release like any task.
        tasks.spawn(async move {
            if let Ok(Err(_)) = tokio::task::spawn_blocking(move || lease.join()).await {
                tracing::error!("the leader election thread panicked");
            }
        });
    } else {
        drop(role_tx);
    }

    {
        let cancel = cancel.clone();
        tasks.spawn(async move {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot listen for SIGTERM");
                        return;
                    }
                };
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                _ = tokio::signal::ctrl_c() => tracing::info!("interrupt: shutting down"),
                _ = cancel.cancelled() => return,
            }
            cancel.cancel();
        });
    }

    let reporter = Reporter {
        controller: "karpenter".into(),
        instance: Some(settings.identity.clone()),
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let mut shell = Shell::new(
        client.clone(),
        provider,
        settings.controller_config(),
        recorder,
    );
    shell.gauges = crate::metrics::Gauges::new(node_gauges);
    tracing::info!(identity = %settings.identity, provider = shell.provider.name(), "kerf controller started");

    let mut lost = false;
    let mut was_leader = false;
    let mut startup = PodStartup::new(jiff::Timestamp::now().as_millisecond());
    loop {
        shell.maybe_list();
        let now = jiff::Timestamp::now().as_millisecond();
        // Only a leader with synced caches steps; until then the loops' deadlines mean
        // nothing (they would lie in the past and spin the loop): look again each second.
        let stepping = *role_rx.borrow() == Role::Leader && shell.state.synced();
        let wake = if stepping {
            shell.next_wake()
        } else {
            now + 1_000
        };
        let sleep = Duration::from_millis((wake - now).clamp(5, 60_000) as u64);
        tokio::select! {
            _ = cancel.cancelled() => break,
            change = rx.recv() => {
                let Some(change) = change else { break };
                handle(&mut shell.state, &mut startup, change);
                // Take everything already queued: one step per burst of changes.
                while let Ok(change) = rx.try_recv() {
                    handle(&mut shell.state, &mut startup, change);
                }
            }
            Some(done) = shell.tasks().join_next() => {
                match done {
                    Ok(done) => shell.complete(done),
                    Err(e) => tracing::error!(error = %e, "a task panicked"),
                }
                while let Some(Ok(done)) = shell.tasks().try_join_next() {
                    shell.complete(done);
                }
            }
            _ = tokio::time::sleep(sleep) => {}
        }
        let synced = shell.state.synced();
        health.ready.store(synced, Ordering::Relaxed);
        {
            let now = jiff::Timestamp::now().as_millisecond();
            if shell.gauges.refresh(&shell.state.view, synced, now) {
                // Rolls the summaries' windows and drops idle gauges.
                metrics.run_upkeep();
            }
        }
        let role = *role_rx.borrow();
        if role == Role::Lost {
            lost = true;
            break;
        }
        if role != Role::Leader || !synced {
            continue;
        }
        if !was_leader {
            was_leader = true;
            tracing::info!(identity = %settings.identity, "leading: stepping the loops");
            if let Some(start) = on_leading.take() {
                start();
            }
        }
        let mut intake = |state: &mut State| {
            while let Ok(change) = rx.try_recv() {
                handle(state, &mut startup, change);
            }
        };
        shell.step(&mut intake).await;
    }
    cancel.cancel();
    // Let each task finish what it was doing (the lease release, the HTTP servers).
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(10), drain)
        .await
        .is_err()
    {
        tracing::warn!("some tasks did not stop within 10s");
    }
    shell.tasks().abort_all();
    if lost {
        anyhow::bail!("leader election lost: stopping so a standby can lead");
    }
    tracing::info!("stopped");
    Ok(())
}
