//! Karpenter v1 custom resources: `karpenter.sh/v1` NodePool and NodeClaim,
//! `karpenter.k8s.aws/v1` EC2NodeClass.
//!
//! The types carry Karpenter's field names, defaults (applied when deserializing, as the
//! API server would from the CRD schema) and schema rules; [`nodepool_to_model`] and
//! [`validate_ec2nodeclass`] apply the rules the schema alone cannot, and report every
//! problem in an object at once. [`crds`] and [`crds_yaml`] render the definitions kerf
//! serves, committed under `config/crd/`.

pub mod duration;
mod ec2nodeclass;
mod kwoknodeclass;
mod nodeclaim;
mod nodepool;
mod schema;
mod validation;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::CustomResourceExt;

pub use ec2nodeclass::{
    AMI, AMISelectorTerm, BlockDevice, BlockDeviceMapping, CapacityReservationSelectorTerm,
    EC2NodeClass, EC2NodeClassSpec, EC2NodeClassStatus, KubeletConfiguration, MetadataOptions,
    SecurityGroup, SecurityGroupSelectorTerm, Subnet, SubnetSelectorTerm, validate_ec2nodeclass,
};
pub use kwoknodeclass::{KWOKNodeClass, KWOKNodeClassSpec, KWOKNodeClassStatus};
pub use nodeclaim::{
    DEFAULT_EXPIRE_AFTER, NodeClaim, NodeClaimSpec, NodeClaimStatus, NodeClassReference,
    NodeSelectorRequirementWithMinValues, ResourceRequirements, Taint,
};
pub use nodepool::{
    Budget, Disruption, NodeClaimTemplate, NodeClaimTemplateSpec, NodePool, NodePoolSpec,
    NodePoolStatus, TemplateMetadata, nodepool_hash, nodepool_to_model,
};

/// Why the served CRDs could not be rendered as YAML.
#[derive(Debug, thiserror::Error)]
pub enum CrdRenderError {
    #[error("cannot convert the CustomResourceDefinitions to JSON")]
    Json(#[source] serde_json::Error),
    #[error("cannot write the CustomResourceDefinitions as YAML")]
    Yaml(#[source] serde_saphyr::SerializeError),
}

/// The CustomResourceDefinitions kerf serves, in a fixed order: NodePool, NodeClaim,
/// EC2NodeClass.
pub fn crds() -> Vec<CustomResourceDefinition> {
    [NodePool::crd(), NodeClaim::crd(), EC2NodeClass::crd()]
        .into_iter()
        .map(as_karpenter_serves)
        .collect()
}

/// The CRD of the `kwok` provider's node class, KWOKNodeClass (`kerf crds --cloud-provider
/// kwok` prints it in place of EC2NodeClass).
pub fn kwok_crd() -> CustomResourceDefinition {
    let mut crd = as_karpenter_serves(KWOKNodeClass::crd());
    // The spec has no fields: `kind: KWOKNodeClass` with only a name is valid, as in
    // Karpenter's kwok manifests.
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            && let Some(required) = schema.required.as_mut()
        {
            required.retain(|r| r != "spec");
        }
    }
    crd
}

/// Undoes two things kube's schema rewriting does that Karpenter's CRDs do not:
/// `nullable: true` on every optional field (Karpenter's API server prunes a null instead of
/// storing it), and untyped `anyOf` branches on quantities (Karpenter's CRDs have
/// `anyOf: [{type: integer}, {type: string}]`, as controller-gen writes them).
fn as_karpenter_serves(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    fn fix(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                map.remove("nullable");
                if map.get("x-kubernetes-int-or-string") == Some(&serde_json::Value::Bool(true))
                    && map.contains_key("anyOf")
                {
                    map.insert(
                        "anyOf".to_string(),
                        serde_json::json!([{"type": "integer"}, {"type": "string"}]),
                    );
                }
                map.values_mut().for_each(fix);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(fix),
            _ => {}
        }
    }
    let Some(mut schema) = serde_json::to_value(&crd).ok() else {
        return crd;
    };
    fix(&mut schema);
    // Only keys were removed and schema-valid values inserted, so this cannot fail; if it
    // somehow did, serving kube's rendering is still a working CRD.
    serde_json::from_value(schema).unwrap_or(crd)
}

/// The file each CRD is committed as under `config/crd/`, named as Karpenter names them
/// (`<group>_<plural>.yaml`).
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural)
}

/// One CRD as a YAML document, every mapping's keys sorted so the output is byte-identical
/// whatever order the schema generator inserted them in.
pub fn crd_yaml(crd: &CustomResourceDefinition) -> Result<String, CrdRenderError> {
    let value = serde_json::to_value(crd).map_err(CrdRenderError::Json)?;
    let mut options = serde_saphyr::SerializerOptions::default();
    // Long single-line strings (patterns, CEL rules) stay on one line rather than being
    // folded, so the files read like controller-gen's and diff line by line.
    options.folded_wrap_chars = usize::MAX;
    serde_saphyr::to_string_with_options(&sorted(value), options).map_err(CrdRenderError::Yaml)
}

/// Every served CRD as one multi-document YAML stream, as `kerf crds` prints it.
pub fn crds_yaml() -> Result<String, CrdRenderError> {
    render_all(&crds())
}

/// The CRDs a cluster running the `kwok` provider needs: NodePool, NodeClaim and
/// KWOKNodeClass (`kerf crds --cloud-provider kwok`).
pub fn kwok_crds_yaml() -> Result<String, CrdRenderError> {
    let mut all = crds();
    all.truncate(2);
    all.push(kwok_crd());
    render_all(&all)
}

fn render_all(crds: &[CustomResourceDefinition]) -> Result<String, CrdRenderError> {
    let docs = crds.iter().map(crd_yaml).collect::<Result<Vec<_>, _>>()?;
    Ok(docs
        .iter()
        .map(|doc| format!("---\n{doc}"))
        .collect::<String>())
}

pub(crate) fn sorted(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.into_iter().collect();
            entries.sort_by(|(a, _), (b, _)| a.cmp(b));
            serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(sorted).collect())
        }
        other => other,
    }
}
