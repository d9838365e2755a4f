//! The EC2NodeClass status writer: resolves every class when it changes and every
//! minute, writes `status` through the status subresource, and keeps the resolved
//! classes the provider launches from. A class being deleted is neither resolved nor
//! kept: [`crate::termination`] cleans up after it.
//!
//! It also keeps each class's `karpenter.k8s.aws/ec2nodeclass-hash` annotation, as
//! Karpenter's `nodeclass/hash` controller does ([`stamp_hash`]).

use std::time::Duration;

use futures::StreamExt;
use kerf_api::crd::{EC2NodeClass, NodeClaim};
use kerf_model::labels;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use tokio_util::sync::CancellationToken;

use crate::drift;
use crate::provider::ResolvedClasses;
use crate::resolve::Resolver;

pub const REFRESH: Duration = Duration::from_secs(60);

/// Resolves and writes one class's status; returns whether it is Ready.
pub async fn refresh_one(
    api: &Api<EC2NodeClass>,
    resolver: &Resolver,
    classes: &ResolvedClasses,
    nc: &EC2NodeClass,
) -> Result<bool, kube::Error> {
    let name = nc.name_any();
    let status = resolver.resolve(nc, jiff::Timestamp::now()).await;
    let ready = crate::resolve::is_ready(&status);
    if nc.status.as_ref() != Some(&status) {
        let patch = serde_json::json!({ "status": status });
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    if let Ok(mut c) = classes.write() {
        c.insert(name, (nc.spec.clone(), status));
    }
    Ok(ready)
}

/// Writes the class's hash annotations when they are not [`drift::class_hash`] under
/// [`drift::HASH_VERSION`]. A class stamped under another version (Karpenter's, or an
/// older kerf's) first has its NodeClaims re-stamped, as Karpenter's hash controller
/// does, so the change of hash drifts none of them; a claim that already carries a
/// `Drifted` condition keeps its old hash and stays drifted.
pub async fn stamp_hash(
    api: &Api<EC2NodeClass>,
    claims: &Api<NodeClaim>,
    nc: &EC2NodeClass,
    ca_bundle: &str,
) -> Result<(), kube::Error> {
    let name = nc.name_any();
    let hash = drift::class_hash(&nc.spec, ca_bundle);
    let annotations = nc.annotations();
    let other_version = annotations
        .get(labels::ANNOTATION_EC2NODECLASS_HASH_VERSION)
        .map(String::as_str)
        != Some(drift::HASH_VERSION);
    if other_version {
        let selector = format!("{}={name}", labels::NODECLASS_EC2);
        let list = claims
            .list(&ListParams::default().labels(&selector))
            .await?;
        for claim in list.items {
            let held = claim.annotations();
            if held
                .get(labels::ANNOTATION_EC2NODECLASS_HASH_VERSION)
                .map(String::as_str)
                == Some(drift::HASH_VERSION)
            {
                continue;
            }
            let drifted = claim
                .status
                .as_ref()
                .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Drifted"));
            let mut stamp = serde_json::Map::new();
            stamp.insert(
                labels::ANNOTATION_EC2NODECLASS_HASH_VERSION.into(),
                drift::HASH_VERSION.into(),
            );
            if !drifted {
                stamp.insert(
                    labels::ANNOTATION_EC2NODECLASS_HASH.into(),
                    hash.clone().into(),
                );
            }
            crate::annotate_claim(claims, &claim.name_any(), stamp.into()).await?;
        }
    }
    if other_version || annotations.get(labels::ANNOTATION_EC2NODECLASS_HASH) != Some(&hash) {
        let patch = serde_json::json!({"metadata": {"annotations": {
            labels::ANNOTATION_EC2NODECLASS_HASH: hash,
            labels::ANNOTATION_EC2NODECLASS_HASH_VERSION: drift::HASH_VERSION,
        }}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    Ok(())
}

/// What the status writer needs besides the class API.
pub struct Writer {
    pub resolver: Resolver,
    pub classes: ResolvedClasses,
    pub claims: Api<NodeClaim>,
    /// The cluster CA, part of the class hash (as Karpenter's `caBundle`).
    pub ca_bundle: String,
}

/// Runs until cancelled: a watch for changes, a full pass every minute.
pub async fn run(api: Api<EC2NodeClass>, writer: Writer, cancel: CancellationToken) {
    let Writer {
        resolver,
        classes,
        claims,
        ca_bundle,
    } = writer;
    let mut changes = std::pin::pin!(watcher::watcher(api.clone(), watcher::Config::default()));
    let mut tick = tokio::time::interval(REFRESH);
    loop {
        let todo: Vec<EC2NodeClass> = tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => match api.list(&Default::default()).await {
                Ok(list) => list.items,
                Err(e) => {
                    tracing::warn!(error = %e, "listing EC2NodeClasses");
                    continue;
                }
            },
            ev = changes.next() => match ev {
                Some(Ok(watcher::Event::Apply(nc))) | Some(Ok(watcher::Event::InitApply(nc))) => vec![nc],
                Some(Ok(watcher::Event::Delete(nc))) => {
                    if let Ok(mut c) = classes.write() {
                        c.remove(&nc.name_any());
                    }
                    continue;
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "EC2NodeClass watch");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                None => return,
            },
        };
        for nc in todo {
            if nc.metadata.deletion_timestamp.is_some() {
                // Being deleted: not resolved again (that could make its instance
                // profile again after the finalizer's cleanup) and not launched from.
                if let Ok(mut c) = classes.write() {
                    c.remove(&nc.name_any());
                }
                continue;
            }
            if let Err(e) = stamp_hash(&api, &claims, &nc, &ca_bundle).await {
                tracing::warn!(class = %nc.name_any(), error = %e, "writing the EC2NodeClass hash");
            }
            // A status write is itself a change; an unchanged status is not rewritten,
            // so the watch settles.
            match refresh_one(&api, &resolver, &classes, &nc).await {
                Ok(ready) => {
                    tracing::debug!(class = %nc.name_any(), ready, "EC2NodeClass resolved")
                }
                Err(e) => {
                    tracing::warn!(class = %nc.name_any(), error = %e, "writing EC2NodeClass status")
                }
            }
        }
    }
}
