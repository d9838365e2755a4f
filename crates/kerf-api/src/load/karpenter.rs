//! Karpenter's own kinds: `karpenter.sh/v1` NodePool and `karpenter.k8s.aws/v1`
//! EC2NodeClass. The `crd` module owns their types, defaults and rules; this only reads
//! them from a document and passes on what it finds.

use kerf_model::NodePool;
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
