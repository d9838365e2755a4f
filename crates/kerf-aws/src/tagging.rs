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
//! failed (throttled, the API unreachable) is tried again.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_ec2::types as ec2;
use futures::StreamExt;
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

/// Adds to `instance` the tags of `wanted` it lacks, then waits `pace` if it made a
/// CreateTags call (the controller's pace is one a second). An instance that is gone
/// needs no tags: that is no error (its claim's lifecycle deletes the claim).
pub async fn tag_instance(
    ec2: &aws_sdk_ec2::Client,
    instance: &str,
    mut wanted: BTreeMap<String, String>,
    pace: Duration,
) -> anyhow::Result<()> {
    let described = ec2.describe_instances().instance_ids(instance).send().await;
    let held: Vec<ec2::Tag> = match described {
        Ok(out) => out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .flat_map(|i| i.tags().to_vec())
            .collect(),
        Err(e)
            if aws_sdk_ec2::error::ProvideErrorMetadata::code(&e)
                == Some("InvalidInstanceID.NotFound") =>
        {
            wanted.clear();
            Vec::new()
        }
        Err(e) => {
            return Err(anyhow::anyhow!(
                "DescribeInstances {instance}: {}",
                aws_sdk_ec2::error::DisplayErrorContext(e)
            ));
        }
    };
    for t in &held {
        if let Some(k) = t.key() {
            wanted.remove(k);
        }
    }
    if wanted.is_empty() {
        return Ok(());
    }
    let tags: Vec<ec2::Tag> = wanted
        .iter()
        .map(|(k, v)| ec2::Tag::builder().key(k).value(v).build())
        .collect();
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

/// Tags one claim's instance ([`tag_instance`], at the controller's pace) and annotates
/// the claim.
async fn tag(
    ec2: &aws_sdk_ec2::Client,
    claims: &Api<NodeClaim>,
    claim: &NodeClaim,
    instance: &str,
    wanted: BTreeMap<String, String>,
) -> anyhow::Result<()> {
    tag_instance(ec2, instance, wanted, PACE).await?;
    let tagged = serde_json::json!({
        ANNOTATION_TAGGED: "true",
        ANNOTATION_CLUSTER_NAME_TAGGED: "true",
    });
    crate::annotate_claim(claims, &claim.name_any(), tagged)
        .await
        .map_err(|e| anyhow::anyhow!("annotating NodeClaim {}: {e}", claim.name_any()))
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
        let todo: Vec<NodeClaim> = tokio::select! {
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
        for claim in todo {
            let Some((instance, wanted)) = due(&claim, &cluster) else {
                continue;
            };
            match tag(&ec2, &claims, &claim, &instance, wanted).await {
                Ok(()) => tracing::debug!(nodeclaim = %claim.name_any(), instance, "tagged"),
                Err(e) => {
                    tracing::warn!(nodeclaim = %claim.name_any(), error = %format!("{e:#}"), "tagging")
                }
            }
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
