//! Hand-written OpenAPI fragments for the shapes schemars cannot derive as Karpenter's
//! CRDs have them: quantity maps (int-or-string with a pattern), requirement lists with
//! their CEL rules, and template labels with Karpenter's restricted-domain rules.

use schemars::{Schema, SchemaGenerator, json_schema};

use super::nodeclaim::NodeSelectorRequirementWithMinValues;

/// Kubernetes' quantity pattern, as in every generated CRD.
const QUANTITY_PATTERN: &str = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$";

/// A label value: empty, or up to 63 alphanumerics, `-`, `_`, `.`, alphanumeric at both ends.
const LABEL_VALUE_PATTERN: &str = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$";

/// Marks `fields` required and drops the `default` serde's leniency put on them.
///
/// The wire types parse a manifest that omits a field Karpenter requires, so the omission
/// is reported with every other problem rather than as a parse error; schemars then treats
/// the field as optional, and this puts back what Karpenter's API server enforces.
fn require(schema: &mut Schema, fields: &[&str]) {
    if let Some(props) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) {
        for field in fields {
            if let Some(prop) = props.get_mut(*field).and_then(|p| p.as_object_mut()) {
                prop.remove("default");
            }
        }
    }
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    let required = object
        .entry("required")
        .or_insert_with(|| serde_json::Value::Array(Vec::new()));
    if let Some(list) = required.as_array_mut() {
        for field in fields {
            if !list.iter().any(|v| v == field) {
                list.push(serde_json::Value::from(*field));
            }
        }
        list.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    }
}

/// `NodeClaimTemplateSpec`: Karpenter requires `requirements` and `nodeClassRef`.
pub(crate) fn require_template_spec_fields(schema: &mut Schema) {
    require(schema, &["nodeClassRef", "requirements"]);
}

/// `Disruption`: Karpenter requires `consolidateAfter` (its parent's default supplies it).
pub(crate) fn require_consolidate_after(schema: &mut Schema) {
    require(schema, &["consolidateAfter"]);
}

/// `EC2NodeClassSpec`: Karpenter requires the three selector term lists.
pub(crate) fn require_selector_terms(schema: &mut Schema) {
    require(
        schema,
        &[
            "amiSelectorTerms",
            "securityGroupSelectorTerms",
            "subnetSelectorTerms",
        ],
    );
}

/// A map of resource names to quantities (`limits`, `requests`, `capacity`, …).
pub(crate) fn quantity_map(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "additionalProperties": {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": true
        }
    })
}

/// A budget's disruption reasons.
pub(crate) fn budget_reasons(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": {"type": "string", "enum": ["Underutilized", "Empty", "Drifted"]},
        "maxItems": 50
    })
}

/// The CEL rules Karpenter puts on a label key, written for a key bound to `var`, so that
/// the same rules serve a single requirement key (`self`) and every key of a map
/// (`self.all(x, …)`).
fn restricted_key_rules(var: &str, wrap: impl Fn(String) -> String) -> serde_json::Value {
    let domain = format!("{var}.find(\"^([^/]+)\")");
    let rules = [
        (
            format!(
                "{var} in [\"beta.kubernetes.io/instance-type\", \"failure-domain.beta.kubernetes.io/region\", \
                 \"beta.kubernetes.io/os\", \"beta.kubernetes.io/arch\", \"failure-domain.beta.kubernetes.io/zone\", \
                 \"topology.kubernetes.io/zone\", \"topology.kubernetes.io/region\", \"kubernetes.io/arch\", \
                 \"kubernetes.io/os\", \"node.kubernetes.io/windows-build\"] || \
                 {domain}.endsWith(\"node.kubernetes.io\") || {domain}.endsWith(\"node-restriction.kubernetes.io\") || \
                 !{domain}.endsWith(\"kubernetes.io\")"
            ),
            "label domain \"kubernetes.io\" is restricted",
        ),
        (
            format!("{domain}.endsWith(\"kops.k8s.io\") || !{domain}.endsWith(\"k8s.io\")"),
            "label domain \"k8s.io\" is restricted",
        ),
        (
            format!(
                "{var} in [\"karpenter.sh/capacity-type\", \"karpenter.sh/nodepool\"] || \
                 !{domain}.endsWith(\"karpenter.sh\")"
            ),
            "label domain \"karpenter.sh\" is restricted",
        ),
        (
            format!(
                "{var} in [{}] || !{domain}.endsWith(\"karpenter.k8s.aws\")",
                kerf_model::labels::AWS_WELL_KNOWN
                    .map(|k| format!("\"{k}\""))
                    .join(", ")
            ),
            "label domain \"karpenter.k8s.aws\" is restricted",
        ),
        (
            format!("{var} != \"karpenter.sh/nodepool\""),
            "label \"karpenter.sh/nodepool\" is restricted",
        ),
        (
            format!("{var} != \"kubernetes.io/hostname\""),
            "label \"kubernetes.io/hostname\" is restricted",
        ),
    ];
    serde_json::Value::Array(
        rules
            .into_iter()
            .map(|(rule, message)| serde_json::json!({"message": message, "rule": wrap(rule)}))
            .collect(),
    )
}

/// NodePool template labels: label values, at most 100, no restricted keys.
pub(crate) fn template_labels(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "additionalProperties": {
            "type": "string",
            "maxLength": 63,
            "pattern": LABEL_VALUE_PATTERN
        },
        "maxProperties": 100,
        "x-kubernetes-validations": restricted_key_rules("x", |rule| format!("self.all(x, {rule})"))
    })
}

/// A requirement list with Karpenter's per-list CEL rules; the item schema is the derived
/// one plus the restricted-key rules on `key`.
pub(crate) fn requirements(generator: &mut SchemaGenerator) -> Schema {
    let mut item = generator.subschema_for::<NodeSelectorRequirementWithMinValues>();
    if let Some(key) = item
        .get_mut("properties")
        .and_then(|p| p.get_mut("key"))
        .and_then(|k| k.as_object_mut())
    {
        key.insert(
            "x-kubernetes-validations".to_string(),
            restricted_key_rules("self", |rule| rule),
        );
    }
    json_schema!({
        "type": "array",
        "items": item,
        "maxItems": 100,
        "x-kubernetes-validations": [
            {
                "message": "requirements with operator 'In' must have a value defined",
                "rule": "self.all(x, x.operator == 'In' ? x.values.size() != 0 : true)"
            },
            {
                "message": "requirements operator 'Gt', 'Lt', 'Gte', or 'Lte' must have a single positive integer value",
                "rule": "self.all(x, (x.operator == 'Gt' || x.operator == 'Lt' || x.operator == 'Gte' || x.operator == 'Lte') ? (x.values.size() == 1 && int(x.values[0]) >= 0) : true)"
            },
            {
                "message": "requirements with 'minValues' must have at least that many values specified in the 'values' field",
                "rule": "self.all(x, (x.operator == 'In' && has(x.minValues)) ? x.values.size() >= x.minValues : true)"
            }
        ]
    })
}
