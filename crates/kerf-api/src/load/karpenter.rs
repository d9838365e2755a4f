//! Karpenter's own kinds: `karpenter.sh/v1` NodePool and `karpenter.k8s.aws/v1`
//! EC2NodeClass. The `crd` module owns their types, defaults and rules; this only reads
//! them from a document and passes on what it finds.

use kerf_model::{NodeClaim, NodePool};
use serde_json::Value;

use super::{Problems, typed};
use crate::crd;

/// A NodePool, defaulted, validated and converted; `None` when it has problems.
pub(crate) fn nodepool(value: &Value, problems: &mut Problems) -> Option<NodePool> {
    let pool: crd::NodePool = typed(value, problems)?;
    match crd::nodepool_to_model(&pool) {
        Ok(pool) => Some(pool),
        Err(errors) => {
            problems.extend(errors);
            None
        }
    }
}

/// Whether the document is a valid EC2NodeClass.
pub(crate) fn ec2_node_class(value: &Value, problems: &mut Problems) -> bool {
    let Some(class) = typed::<crd::EC2NodeClass>(value, problems) else {
        return false;
    };
    let errors = crd::validate_ec2nodeclass(&class);
    let valid = errors.is_empty();
    problems.extend(errors);
    valid
}

/// The image IDs an EC2NodeClass resolved to (`status.amis[].id`), sorted; empty when the
/// input carries no status.
pub(crate) fn ec2_node_class_images(value: &Value) -> Vec<String> {
    let Ok(class) = serde_json::from_value::<crd::EC2NodeClass>(value.clone()) else {
        return Vec::new();
    };
    let mut ids: Vec<String> = class
        .status
        .iter()
        .flat_map(|s| s.amis.iter().map(|a| a.id.clone()))
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// An existing NodeClaim, with the launch facts disruption needs.
pub(crate) fn nodeclaim(value: &Value, name: &str, problems: &mut Problems) -> Option<NodeClaim> {
    let claim: crd::NodeClaim = typed(value, problems)?;
    let meta = &claim.metadata;
    let labels = meta.labels.clone().unwrap_or_default();
    if !labels.contains_key(kerf_model::labels::NODEPOOL) {
        problems.push(
            "metadata.labels",
            format!(
                "has no {} label; a NodeClaim names the NodePool that launched it",
                kerf_model::labels::NODEPOOL
            ),
        );
    }
    let expire_after = match crd::duration::parse_nillable(&claim.spec.expire_after) {
        Ok(d) => d,
        Err(e) => {
            problems.push("spec.expireAfter", format!("{e}, or \"Never\""));
            None
        }
    };
    let termination_grace_period = claim
        .spec
        .termination_grace_period
        .as_deref()
        .and_then(
            |t| match crd::duration::parse_with_units(t, &["h", "m", "s"]) {
                Ok(d) => Some(d),
                Err(e) => {
                    problems.push("spec.terminationGracePeriod", e.to_string());
                    None
                }
            },
        );
    let status = claim.status.clone().unwrap_or_default();
    let initialized = status
        .conditions
        .iter()
        .any(|c| c.type_ == "Initialized" && c.status == "True");
    Some(NodeClaim {
        name: name.to_string(),
        labels,
        annotations: meta.annotations.clone().unwrap_or_default(),
        node_name: status.node_name.clone(),
        image_id: status.image_id.clone(),
        created_at: meta.creation_timestamp.as_ref().map(|t| t.0.as_second()),
        deleting: meta.deletion_timestamp.is_some(),
        initialized,
        last_pod_event: status.last_pod_event_time.as_ref().map(|t| t.0.as_second()),
        expire_after,
        termination_grace_period,
    })
}
