//! What `kerf controller --cloud-provider aws` starts besides the provider: the catalog
//! refresh (prices at start and every 12 hours, instance types every 12 hours), the
//! EC2NodeClass status writer, the EC2NodeClass termination finalizer, post-registration
//! tagging and, when
//! `INTERRUPTION_QUEUE` is set, the interruption poller. Settings are Karpenter's
//! environment variables: `CLUSTER_NAME`, `CLUSTER_ENDPOINT`, `INTERRUPTION_QUEUE`,
//! `ISOLATED_VPC` (read by kerf-kube's settings and passed in); the
//! cluster CA comes from `CLUSTER_CA_BUNDLE` (base64 PEM) when set. The Kubernetes
//! version (for the AMI alias parameters) is the API server's.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use kerf_api::crd::EC2NodeClass;
use kube::runtime::events::{Recorder, Reporter};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use crate::interruption::{Handler, Queue};
use crate::provider::ResolvedClasses;
use crate::{AwsProvider, Clients, ClusterInfo};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

/// The tasks that write to the cluster and the account on their own: the catalog
/// refresh, the EC2NodeClass status writer, its finalizer, post-registration tagging and
/// the interruption poller. Like Karpenter's controllers they run only on the leader:
/// [`Background::spawn`] once this replica leads (a standby only keeps its caches).
pub struct Background(Vec<futures::future::BoxFuture<'static, ()>>);

impl Background {
    /// Starts every task on the current runtime; they stop when `start`'s token is cancelled.
    pub fn spawn(self) {
        for task in self.0 {
            tokio::spawn(task);
        }
    }
}

/// Builds the provider and its background tasks (not started: see [`Background`];
/// stopped by `cancel`).
pub async fn start(
    client: Client,
    cluster_name: &str,
    isolated_vpc: bool,
    cancel: CancellationToken,
) -> anyhow::Result<(Arc<AwsProvider>, Background)> {
    if cluster_name.is_empty() {
        anyhow::bail!(
            "CLUSTER_NAME: required with CLOUD_PROVIDER=aws (it tags and finds the cluster's instances)"
        );
    }
    let endpoint = env("CLUSTER_ENDPOINT");
    if endpoint.is_empty() {
        anyhow::bail!(
            "CLUSTER_ENDPOINT: required with CLOUD_PROVIDER=aws (nodes join the API server at this URL)"
        );
    }
    let version = client
        .apiserver_version()
        .await
        .map_err(|e| anyhow::anyhow!("reading the API server's version: {e}"))?;
    let minor: String = version
        .minor
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let k8s_version = format!("{}.{minor}", version.major);
    let clients = Clients::from_env().await?;
    let classes: ResolvedClasses = Arc::new(RwLock::new(BTreeMap::new()));
    let api: Api<EC2NodeClass> = Api::all(client.clone());
    let provider = Arc::new(
        AwsProvider::new(
            clients.clone(),
            ClusterInfo {
                name: cluster_name.to_string(),
                endpoint,
                ca_bundle: env("CLUSTER_CA_BUNDLE"),
                cidr: None,
                k8s_version,
            },
            classes.clone(),
            Some(api.clone()),
        )
        .await?
        .with_isolated_vpc(isolated_vpc),
    );
    let mut background: Vec<futures::future::BoxFuture<'static, ()>> = Vec::new();
    background.push(Box::pin(crate::catalog::run(
        provider.clone(),
        cancel.clone(),
    )));
    background.push(Box::pin(crate::status::run(
        api.clone(),
        crate::status::Writer {
            resolver: provider.resolver(),
            classes,
            claims: Api::all(client.clone()),
            ca_bundle: env("CLUSTER_CA_BUNDLE"),
        },
        cancel.clone(),
    )));
    // Events on the class as Karpenter's recorder publishes them.
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "karpenter".into(),
            instance: std::env::var("HOSTNAME").ok(),
        },
    );
    background.push(Box::pin(crate::termination::run(
        api,
        Api::all(client.clone()),
        provider.clone(),
        cluster_name.to_string(),
        recorder.clone(),
        cancel.clone(),
    )));
    background.push(Box::pin(crate::tagging::run(
        clients.ec2.clone(),
        Api::all(client.clone()),
        cluster_name.to_string(),
        cancel.clone(),
    )));
    let queue = env("INTERRUPTION_QUEUE");
    if !queue.is_empty() {
        let queue = Queue::new(clients.sqs.clone(), &queue).await?;
        let handler = Handler::new(
            Api::all(client.clone()),
            Api::all(client),
            provider.clone(),
            recorder,
        );
        background.push(Box::pin(async move {
            loop {
                let polled = tokio::select! {
                    _ = cancel.cancelled() => return,
                    p = queue.poll_once(|i| handler.handle(i)) => p,
                };
                if let Err(e) = polled {
                    tracing::warn!(error = %format!("{e:#}"), "interruption queue");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
        }));
    }
    Ok((provider, Background(background)))
}
