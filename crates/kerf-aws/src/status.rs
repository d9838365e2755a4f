//! The EC2NodeClass status writer: resolves every class when it changes and every
//! minute, writes `status` through the status subresource, and keeps the resolved
//! classes the provider launches from. A class being deleted is neither resolved nor
//! kept: [`crate::termination`] cleans up after it.

use std::time::Duration;

use futures::StreamExt;
use kerf_api::crd::EC2NodeClass;
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use tokio_util::sync::CancellationToken;

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

/// Runs until cancelled: a watch for changes, a full pass every minute.
pub async fn run(
    api: Api<EC2NodeClass>,
    resolver: Resolver,
    classes: ResolvedClasses,
    cancel: CancellationToken,
) {
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
