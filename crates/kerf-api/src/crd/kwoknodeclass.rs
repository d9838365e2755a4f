//! `karpenter.kwok.sh/v1alpha1` KWOKNodeClass: the node class of Karpenter's kwok
//! provider, which launches fake nodes in a cluster with no cloud. It has no settings;
//! NodePools reference it so that Karpenter's kwok manifests work unchanged.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A KWOKNodeClass; its spec is empty.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "karpenter.kwok.sh",
    version = "v1alpha1",
    kind = "KWOKNodeClass",
    plural = "kwoknodeclasses",
    category = "karpenter",
    status = "KWOKNodeClassStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "KWOKNodeClass is the Schema for the KWOKNodeClass API"
)]
pub struct KWOKNodeClassSpec {}

/// The observed state of a KWOKNodeClass.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KWOKNodeClassStatus {
    /// `Ready`, set by the controller.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
