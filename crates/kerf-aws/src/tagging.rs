//! Post-registration tagging, as Karpenter's `nodeclaim.tagging` controller does it: once
//! a NodeClaim of an EC2NodeClass has registered (its `status.nodeName` is known), its
//! instance gets the tags only then knowable — `Name` (the node's name), and
//! `karpenter.sh/nodeclaim` and `eks:eks-cluster-name` where they are missing (kerf puts
//! both on at launch, so normally only `Name` is added) — and the claim is annotated
//! `karpenter.k8s.aws/tagged: "true"` (and Karpenter's
//! `compatibility.karpenter.k8s.aws/cluster-name-tagged: "true"`), after which it is
//! never looked at again. At most one `CreateTags` call a second, as Karpenter paces it:
//! it shares EC2's mutating-call budget with CreateFleet.
//!
//! A watch of NodeClaims and a pass over all of them every 30 s, so a claim whose tagging
//! failed (throttled, the API unreachable) is tried again. The claims a pass finds due
//! (every claim the 30 s list finds, or every watch event waiting, so the nodes that
//! registered while the last pass was tagging) have their instances' tags read by one
//! DescribeInstances per 200 instances, where Karpenter reads each instance's alone.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_ec2::types as ec2;
use futures::{FutureExt, StreamExt};
use kerf_api::crd::NodeClaim;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use tokio_util::sync::CancellationToken;

use crate::tags;

pub const ANNOTATION_TAGGED: &str = "karpenter.k8s.aws/tagged";
pub const ANNOTATION_CLUSTER_NAME_TAGGED: &str =
    "compatibility.karpenter.k8s.aws/cluster-name-tagged";
/// The instance's `Name` tag: its node's name.
pub const NAME: &str = "Name";

const RESYNC: Duration = Duration::from_secs(30);
/// At most one CreateTags call a second, as Karpenter's `nodeclaim.tagging`.
pub const PACE: Duration = Duration::from_secs(1);

/// The instance to tag and the tags it should carry, if the claim is due: an
/// EC2NodeClass's claim, registered, not deleting, not annotated as tagged yet.
pub fn due(claim: &NodeClaim, cluster: &str) -> Option<(String, BTreeMap<String, String>)> {
    let a = claim.annotations();
    if a.get(ANNOTATION_TAGGED).map(String::as_str) == Some("true")
        && a.get(ANNOTATION_CLUSTER_NAME_TAGGED).map(String::as_str) == Some("true")
    {
        return None;
    }
    if claim.metadata.deletion_timestamp.is_some()
        || claim.spec.node_class_ref.kind != "EC2NodeClass"
    {
        return None;
    }
    let status = claim.status.as_ref()?;
    let node = status.node_name.as_deref().filter(|n| !n.is_empty())?;
    let provider_id = status.provider_id.as_deref()?;
    if !provider_id.starts_with("aws:///") {
        return None;
    }
    let wanted = BTreeMap::from([
        (NAME.to_string(), node.to_string()),
        (tags::NODECLAIM.to_string(), claim.name_any()),
        (tags::EKS_CLUSTER.to_string(), cluster.to_string()),
    ]);
    Some((crate::instance_id(provider_id).to_string(), wanted))
}

/// The tag keys each of `instances` holds, by one DescribeInstances per 200 instances
/// (an `instance-id` filter: an instance that is gone is left out, not an error).
pub async fn held_tags(
    ec2: &aws_sdk_ec2::Client,
    instances: &[String],
) -> anyhow::Result<BTreeMap<String, BTreeSet<String>>> {
    let unique: BTreeSet<&String> = instances.iter().collect();
    let unique: Vec<String> = unique.into_iter().cloned().collect();
    let mut held = BTreeMap::new();
    for chunk in unique.chunks(crate::provider::MAX_FILTER_VALUES) {
        let filter = ec2::Filter::builder()
            .name("instance-id")
            .set_values(Some(chunk.to_vec()))
            .build();
        let found = crate::provider::describe_instances(ec2, vec![filter]).await?;
        for i in &found {
            if let Some(id) = i.instance_id() {
                let keys = i.tags().iter().filter_map(|t| t.key()).map(str::to_string);
                held.insert(id.to_string(), keys.collect());
            }
        }
    }
    Ok(held)
}

/// Adds to `instance` the tags of `wanted` that are not among `held` (its tag keys, from
/// [`held_tags`]), then waits `pace` if it made a CreateTags call (the controller's pace
/// is one a second). An instance with no `held` entry is gone and needs no tags: that is
/// no error (its claim's lifecycle deletes the claim).
pub async fn add_missing(
    ec2: &aws_sdk_ec2::Client,
    instance: &str,
    wanted: &BTreeMap<String, String>,
    held: Option<&BTreeSet<String>>,
    pace: Duration,
) -> anyhow::Result<()> {
    let Some(held) = held else {
        return Ok(());
    };
    let tags: Vec<ec2::Tag> = wanted
        .iter()
        .filter(|(k, _)| !held.contains(*k))
        .map(|(k, v)| ec2::Tag::builder().key(k).value(v).build())
        .collect();
    if tags.is_empty() {
        return Ok(());
    }
    let sent = ec2
        .create_tags()
        .resources(instance)
        .set_tags(Some(tags))
        .send()
        .await;
    tokio::time::sleep(pace).await;
    sent.map(|_| ()).map_err(|e| {
        anyhow::anyhow!(
            "CreateTags {instance}: {}",
            aws_sdk_ec2::error::DisplayErrorContext(e)
        )
    })
}

/// One claim due for tagging: its instance and the tags it should carry.
struct Due {
    instance: String,
    wanted: BTreeMap<String, String>,
}

/// Tags the instances of the `due` claims (by name), one CreateTags at most a
/// [`PACE`], and annotates each claim once its instance is done.
async fn tag_all(ec2: &aws_sdk_ec2::Client, claims: &Api<NodeClaim>, due: BTreeMap<String, Due>) {
    let instances: Vec<String> = due.values().map(|d| d.instance.clone()).collect();
    let held = match held_tags(ec2, &instances).await {
        Ok(held) => held,
        Err(e) => {
            tracing::warn!(claims = due.len(), error = %format!("{e:#}"), "reading instance tags for tagging");
            return;
        }
    };
    let tagged = serde_json::json!({
        ANNOTATION_TAGGED: "true",
        ANNOTATION_CLUSTER_NAME_TAGGED: "true",
    });
    for (name, d) in &due {
        let done = match add_missing(ec2, &d.instance, &d.wanted, held.get(&d.instance), PACE).await
        {
            Ok(()) => crate::annotate_claim(claims, name, tagged.clone())
                .await
                .map_err(|e| anyhow::anyhow!("annotating NodeClaim {name}: {e}")),
            Err(e) => Err(e),
        };
        match done {
            Ok(()) => tracing::debug!(nodeclaim = %name, instance = %d.instance, "tagged"),
            Err(e) => tracing::warn!(nodeclaim = %name, error = %format!("{e:#}"), "tagging"),
        }
    }
}

/// Runs until cancelled.
pub async fn run(
    ec2: aws_sdk_ec2::Client,
    claims: Api<NodeClaim>,
    cluster: String,
    cancel: CancellationToken,
) {
    let mut changes = std::pin::pin!(watcher::watcher(claims.clone(), watcher::Config::default()));
    let mut tick = tokio::time::interval(RESYNC);
    loop {
        let mut todo: Vec<NodeClaim> = tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => match claims.list(&Default::default()).await {
                Ok(list) => list.items,
                Err(e) => {
                    tracing::warn!(error = %e, "listing NodeClaims to tag");
                    continue;
                }
            },
            ev = changes.next() => match ev {
                Some(Ok(watcher::Event::Apply(c))) | Some(Ok(watcher::Event::InitApply(c))) => vec![c],
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "NodeClaim watch (tagging)");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                None => return,
            },
        };
        // The claims whose events are already waiting join this pass: nodes that
        // registered while the last pass was tagging are read in one call.
        while let Some(ev) = changes.next().now_or_never() {
            match ev {
                Some(Ok(watcher::Event::Apply(c) | watcher::Event::InitApply(c))) => todo.push(c),
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "NodeClaim watch (tagging)");
                    break;
                }
                None => return,
            }
        }
        // Each claim as last seen: a later version may no longer be due (tagged, deleting).
        let mut pending: BTreeMap<String, Due> = BTreeMap::new();
        for claim in todo {
            match due(&claim, &cluster) {
                Some((instance, wanted)) => {
                    pending.insert(claim.name_any(), Due { instance, wanted })
                }
                None => pending.remove(&claim.name_any()),
            };
        }
        if !pending.is_empty() {
            tag_all(&ec2, &claims, pending).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(node: Option<&str>, annotations: &[(&str, &str)]) -> NodeClaim {
        let mut c: NodeClaim = serde_json::from_value(serde_json::json!({
            "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
            "metadata": {"name": "default-1", "annotations": annotations.iter().cloned().collect::<BTreeMap<_, _>>()},
            "spec": {
                "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
                "requirements": [],
            },
            "status": {"providerID": "aws:///us-west-2a/i-0abc"},
        }))
        .unwrap();
        c.status.as_mut().unwrap().node_name = node.map(String::from);
        c
    }

    #[test]
    fn a_registered_claim_is_due_once() {
        assert_eq!(due(&claim(None, &[]), "c"), None, "not registered yet");
        let (instance, wanted) = due(&claim(Some("ip-10-0-0-1"), &[]), "c").unwrap();
        assert_eq!(instance, "i-0abc");
        assert_eq!(
            wanted,
            BTreeMap::from([
                ("Name".to_string(), "ip-10-0-0-1".to_string()),
                ("eks:eks-cluster-name".to_string(), "c".to_string()),
                (
                    "karpenter.sh/nodeclaim".to_string(),
                    "default-1".to_string()
                ),
            ])
        );
        let done = [
            (ANNOTATION_TAGGED, "true"),
            (ANNOTATION_CLUSTER_NAME_TAGGED, "true"),
        ];
        assert_eq!(due(&claim(Some("ip-10-0-0-1"), &done), "c"), None);
        // Tagged by a Karpenter older than the cluster-name tag: tagged again.
        assert!(due(&claim(Some("ip-10-0-0-1"), &done[..1]), "c").is_some());
    }
}
