//! `karpenter.sh/v1` NodePool: the wire type with Karpenter's defaults, and its
//! validation and conversion into [`kerf_model::NodePool`].
//!
//! Fields Karpenter's API server requires (`template.spec.requirements`,
//! `template.spec.nodeClassRef`, `disruption.consolidateAfter`) are `Option`s here and
//! marked required in the served schema: a manifest that omits one still parses, and the
//! omission is reported by [`nodepool_to_model`] together with every other problem.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kerf_model::nodepool::{
    Budget as ModelBudget, BudgetNodes, ConsolidationPolicy, Disruption as ModelDisruption,
    NodeClassRef,
};
use kerf_model::{Effect, Operator, Requirement, Requirements};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::nodeclaim::{NodeClassReference, NodeSelectorRequirementWithMinValues, Taint};
use super::validation::{Errors, cron_problem, label_value_problem, qualified_name_problem};
use super::{duration, schema};
use crate::FieldError;

/// A pool of nodes Karpenter may launch for unschedulable pods, and how it may disrupt
/// them.
// Each `printcolumn(...)` repeats `type_ = ...`, which clippy takes for a duplicated
// attribute; they are separate columns.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "karpenter.sh",
    version = "v1",
    kind = "NodePool",
    plural = "nodepools",
    category = "karpenter",
    status = "NodePoolStatus",
    derive = "PartialEq",
    doc = "NodePool is the Schema for the NodePools API",
    printcolumn(
        name = "NodeClass",
        type_ = "string",
        json_path = ".spec.template.spec.nodeClassRef.name"
    ),
    printcolumn(
        name = "Nodes",
        type_ = "string",
        json_path = ".status.resources.nodes"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Weight",
        type_ = "integer",
        json_path = ".spec.weight",
        priority = 1
    ),
    printcolumn(
        name = "CPU",
        type_ = "string",
        json_path = ".status.resources.cpu",
        priority = 1
    ),
    printcolumn(
        name = "Memory",
        type_ = "string",
        json_path = ".status.resources.memory",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
pub struct NodePoolSpec {
    /// The template of possibilities for the NodeClaims this pool launches.
    pub template: NodeClaimTemplate,
    /// How Karpenter may disrupt this pool's nodes.
    #[serde(default)]
    #[schemars(extend("default" = {"consolidateAfter": "0s"}))]
    pub disruption: Disruption,
    /// Bounds on the pool's total provisioned capacity; `nodes` bounds the node count.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "schema::quantity_map")]
    pub limits: BTreeMap<String, Quantity>,
    /// Priority among NodePools: higher weights are tried first; unset counts as 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub weight: Option<i32>,
}

/// What every NodeClaim launched from a NodePool starts from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeClaimTemplate {
    /// Labels and annotations for the NodeClaim and its node.
    #[serde(default, skip_serializing_if = "TemplateMetadata::is_empty")]
    pub metadata: TemplateMetadata,
    pub spec: NodeClaimTemplateSpec,
}

/// The metadata a NodePool template may set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateMetadata {
    /// Labels for every node; keys in Karpenter's restricted domains are rejected.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "schema::template_labels")]
    pub labels: BTreeMap<String, String>,
    /// Annotations for every node.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl TemplateMetadata {
    fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.annotations.is_empty()
    }
}

/// The NodeClaim spec a NodePool template carries; resource requests are omitted since
/// users do not set them on a pool.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = schema::require_template_spec_fields)]
pub struct NodeClaimTemplateSpec {
    /// Taints applied to every node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<Taint>,
    /// Taints applied to nodes at startup and expected to be removed by something else,
    /// typically a DaemonSet; pods need not tolerate them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub startup_taints: Vec<Taint>,
    /// Requirements every node satisfies; pods narrow them further.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::requirements")]
    pub requirements: Option<Vec<NodeSelectorRequirementWithMinValues>>,
    /// The provider-specific node class, e.g. an EC2NodeClass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_class_ref: Option<NodeClassReference>,
    /// The maximum time to wait for a node's pods to drain before deleting them anyway,
    /// measured from when deletion starts; unset waits indefinitely.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(s|m|h))+$"))]
    pub termination_grace_period: Option<String>,
    /// How long after creation a node is replaced; `Never` disables expiry.
    #[serde(default = "super::nodeclaim::default_expire_after")]
    #[schemars(regex(pattern = r"^(([0-9]+(s|m|h))+|Never)$"))]
    pub expire_after: String,
}

/// Karpenter's disruption settings for a NodePool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = schema::require_consolidate_after)]
pub struct Disruption {
    /// How long a node must be consolidatable before it is disrupted; `Never` disables
    /// consolidation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(([0-9]+(s|m|h))+|Never)$"))]
    pub consolidate_after: Option<String>,
    /// Which nodes consolidation may disrupt: `WhenEmpty`, `WhenEmptyOrUnderutilized` or
    /// `Balanced` (underutilized nodes too, when the saving justifies the disruption).
    #[serde(default = "default_consolidation_policy")]
    #[schemars(extend("enum" = ["WhenEmpty", "WhenEmptyOrUnderutilized", "Balanced"]))]
    pub consolidation_policy: String,
    /// Limits on how many nodes may be disrupted at once; the most restrictive active
    /// budget wins.
    #[serde(default = "default_budgets")]
    #[schemars(
        length(max = 50),
        extend("x-kubernetes-validations" = [{
            "message": "'schedule' must be set with 'duration'",
            "rule": "self.all(x, has(x.schedule) == has(x.duration))"
        }])
    )]
    pub budgets: Vec<Budget>,
}

impl Default for Disruption {
    fn default() -> Disruption {
        Disruption {
            consolidate_after: Some("0s".to_string()),
            consolidation_policy: default_consolidation_policy(),
            budgets: default_budgets(),
        }
    }
}

fn default_consolidation_policy() -> String {
    "WhenEmptyOrUnderutilized".to_string()
}

fn default_budgets() -> Vec<Budget> {
    vec![Budget {
        reasons: Vec::new(),
        nodes: default_budget_nodes(),
        schedule: None,
        duration: None,
    }]
}

fn default_budget_nodes() -> String {
    "10%".to_string()
}

/// A limit on the number of this pool's nodes being disrupted at once, optionally active
/// only during a cron-scheduled window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Budget {
    /// The disruption reasons this budget applies to (`Underutilized`, `Empty`,
    /// `Drifted`); empty means all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::budget_reasons")]
    pub reasons: Vec<String>,
    /// The most nodes that may be disrupted at once: a count (`5`) or a percentage of the
    /// pool (`10%`).
    #[serde(default = "default_budget_nodes")]
    #[schemars(regex(pattern = r"^((100|[0-9]{1,2})%|[0-9]+)$"))]
    pub nodes: String,
    /// When the budget becomes active, in cron syntax (UTC); unset means always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^(@(annually|yearly|monthly|weekly|daily|midnight|hourly))|((.+)\s(.+)\s(.+)\s(.+)\s(.+))$"
    ))]
    pub schedule: Option<String>,
    /// How long the budget stays active after each schedule hit; hours and minutes only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^((([0-9]+(h|m))|([0-9]+h[0-9]+m))(0s)?)$"))]
    pub duration: Option<String>,
}

/// The observed state of a NodePool.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodePoolStatus {
    /// The resources provisioned by this pool, summed over its nodes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "schema::quantity_map")]
    pub resources: BTreeMap<String, Quantity>,
    /// How many nodes this pool has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<i64>,
    /// Signals for health and readiness: ValidationSucceeded, NodeClassReady, Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Whether Karpenter forbids `key` in a NodePool's labels and requirements.
///
/// Karpenter exempts sub-domains of `node.kubernetes.io`, `node-restriction.kubernetes.io`
/// and `kops.k8s.io` from its restricted domains (`LabelDomainExceptions` in
/// `pkg/apis/v1/labels.go`), so `node.kubernetes.io/lifecycle` is a valid pool label; the
/// model's rule does not know all of those exceptions yet, so they are applied here first.
const WELL_KNOWN_HINT: &str = "use a well-known label (kubernetes.io/arch, kubernetes.io/os, \
     node.kubernetes.io/instance-type, topology.kubernetes.io/zone, \
     topology.kubernetes.io/region, karpenter.sh/capacity-type, karpenter.k8s.aws/instance-*) \
     or a custom key outside the kubernetes.io, k8s.io, karpenter.sh and karpenter.k8s.aws domains";

/// Validates a NodePool as Karpenter's API server and webhook would, applying Karpenter's
/// defaults, and converts it into the model. Every problem is reported, not just the first.
pub fn nodepool_to_model(np: &NodePool) -> Result<kerf_model::NodePool, Vec<FieldError>> {
    let name = np.metadata.name.clone().unwrap_or_default();
    let mut errs = Errors::new(format!("NodePool {name}"));
    if name.is_empty() {
        errs.push("metadata.name", "required: every NodePool needs a name");
    }
    let spec = &np.spec;
    let template = &spec.template;

    let mut labels = kerf_model::Labels::new();
    for (key, value) in &template.metadata.labels {
        let field = format!("spec.template.metadata.labels[{key}]");
        if let Some(why) = qualified_name_problem(key) {
            errs.push(&field, why);
        } else if kerf_model::labels::is_restricted_label(kerf_model::labels::normalized(key)) {
            errs.push(
                &field,
                format!("label {key:?} is restricted; {WELL_KNOWN_HINT}"),
            );
        }
        if let Some(why) = label_value_problem(value) {
            errs.push(&field, why);
        }
        labels.insert(key.clone(), value.clone());
    }

    let tspec = &template.spec;
    let requirements = convert_requirements(tspec.requirements.as_deref(), &mut errs);
    let mut seen_taints = BTreeMap::new();
    let taints = convert_taints(
        &tspec.taints,
        "spec.template.spec.taints",
        &mut seen_taints,
        &mut errs,
    );
    let startup_taints = convert_taints(
        &tspec.startup_taints,
        "spec.template.spec.startupTaints",
        &mut seen_taints,
        &mut errs,
    );

    let node_class = match &tspec.node_class_ref {
        None => {
            errs.push(
                "spec.template.spec.nodeClassRef",
                "required: set {group, kind, name}, e.g. {group: karpenter.k8s.aws, kind: \
                 EC2NodeClass, name: default}",
            );
            None
        }
        Some(r) => {
            for (field, value) in [("group", &r.group), ("kind", &r.kind), ("name", &r.name)] {
                if value.is_empty() {
                    errs.push(
                        format!("spec.template.spec.nodeClassRef.{field}"),
                        "required: must not be empty",
                    );
                }
            }
            if r.group.contains('/') {
                errs.push(
                    "spec.template.spec.nodeClassRef.group",
                    format!(
                        "{:?} contains '/': give the API group only (e.g. karpenter.k8s.aws), \
                         not group/version",
                        r.group
                    ),
                );
            }
            Some(NodeClassRef {
                group: r.group.clone(),
                kind: r.kind.clone(),
                name: r.name.clone(),
            })
        }
    };

    let expire_after = nillable(
        &tspec.expire_after,
        "spec.template.spec.expireAfter",
        &mut errs,
    );
    let termination_grace_period = tspec.termination_grace_period.as_ref().and_then(|tgp| {
        match duration::parse_with_units(tgp, &["h", "m", "s"]) {
            Ok(d) => Some(d),
            Err(e) => {
                errs.push(
                    "spec.template.spec.terminationGracePeriod",
                    format!("{e}; Never is not allowed here (leave it unset to wait indefinitely)"),
                );
                None
            }
        }
    });

    let disruption = convert_disruption(&spec.disruption, &mut errs);

    // A zero limit stays: it caps the pool at nothing rather than lifting the cap.
    let mut limits = kerf_model::Limits::new();
    for (resource, q) in &spec.limits {
        match kerf_model::Quantity::parse(&q.0) {
            Ok(parsed) => limits.set(resource, parsed),
            Err(e) => errs.push(format!("spec.limits[{resource}]"), e.to_string()),
        }
    }

    if let Some(w) = spec.weight
        && !(1..=100).contains(&w)
    {
        errs.push(
            "spec.weight",
            format!("{w} is out of range: must be 1-100, or unset for 0"),
        );
    }

    if !errs.list.is_empty() {
        return Err(errs.list);
    }
    Ok(kerf_model::NodePool {
        template_hash: nodepool_hash(np),
        name,
        weight: spec.weight.unwrap_or(0),
        requirements,
        labels,
        taints,
        startup_taints,
        limits,
        node_class,
        disruption,
        expire_after,
        termination_grace_period,
    })
}

/// kerf's NodePool template hash, written to `karpenter.sh/nodepool-hash` on the claims
/// it launches (with `karpenter.sh/nodepool-hash-version: kerf-v1`) and compared with it
/// to find drift.
///
/// Like Karpenter's, it covers `spec.template` (labels, annotations, taints, startup
/// taints, node class reference, `expireAfter`, `terminationGracePeriod`) and leaves out
/// `spec.template.spec.requirements`, whose drift is checked against the node's labels
/// instead. Unlike Karpenter's (Go `hashstructure`, which kerf cannot reproduce), it is
/// FNV-1a 64 over the template as canonical JSON (defaults applied, keys sorted, empty
/// fields omitted), printed as 16 hex digits. Lists keep their order, so reordering taints
/// changes the hash where Karpenter's `SlicesAsSets` would not.
pub fn nodepool_hash(np: &NodePool) -> String {
    let mut template = serde_json::to_value(&np.spec.template).unwrap_or_default();
    if let Some(spec) = template.get_mut("spec").and_then(|s| s.as_object_mut()) {
        spec.remove("requirements");
    }
    let canonical = super::sorted(template).to_string();
    format!("{:016x}", kerf_model::fnv1a_64(canonical.as_bytes()))
}

fn nillable(value: &str, field: &str, errs: &mut Errors) -> Option<std::time::Duration> {
    match duration::parse_nillable(value) {
        Ok(d) => d,
        Err(e) => {
            errs.push(field, format!("{e}, or \"Never\""));
            None
        }
    }
}

fn convert_requirements(
    reqs: Option<&[NodeSelectorRequirementWithMinValues]>,
    errs: &mut Errors,
) -> Requirements {
    let mut out = Requirements::new();
    let Some(reqs) = reqs else {
        errs.push(
            "spec.template.spec.requirements",
            "required: list the node requirements (an empty list allows everything)",
        );
        return out;
    };
    if reqs.len() > 100 {
        errs.push(
            "spec.template.spec.requirements",
            format!("{} requirements; at most 100 are allowed", reqs.len()),
        );
    }
    for (i, r) in reqs.iter().enumerate() {
        let at = format!("spec.template.spec.requirements[{i}]");
        let n_errors = errs.list.len();
        let key = kerf_model::labels::normalized(&r.key);
        if let Some(why) = qualified_name_problem(&r.key) {
            errs.push(format!("{at}.key"), why);
        } else if kerf_model::labels::is_restricted_label(key) {
            errs.push(
                format!("{at}.key"),
                format!("label {:?} is restricted; {WELL_KNOWN_HINT}", r.key),
            );
        }
        let operator = Operator::parse(&r.operator);
        let values = &r.values;
        match operator {
            None => errs.push(
                format!("{at}.operator"),
                format!(
                    "{:?} is not an operator; use one of {}",
                    r.operator,
                    Operator::ALL.join(", ")
                ),
            ),
            Some(Operator::In) if values.is_empty() => errs.push(
                format!("{at}.values"),
                "operator In needs at least one value",
            ),
            Some(op @ (Operator::Exists | Operator::DoesNotExist)) if !values.is_empty() => errs
                .push(
                    format!("{at}.values"),
                    format!("operator {op:?} takes no values, got {}", values.len()),
                ),
            Some(op @ (Operator::Gt | Operator::Lt | Operator::Gte | Operator::Lte)) => {
                let ok = matches!(values.as_slice(), [v] if v.parse::<u64>().is_ok());
                if !ok {
                    errs.push(
                        format!("{at}.values"),
                        format!(
                            "operator {op:?} needs exactly one non-negative integer value, got \
                             {values:?}"
                        ),
                    );
                }
            }
            Some(_) => {}
        }
        if matches!(operator, Some(Operator::In | Operator::NotIn)) {
            for (j, v) in values.iter().enumerate() {
                if let Some(why) = label_value_problem(v) {
                    errs.push(format!("{at}.values[{j}]"), why);
                }
            }
        }
        let mut min_values = None;
        if let Some(m) = r.min_values {
            if !(1..=50).contains(&m) {
                errs.push(
                    format!("{at}.minValues"),
                    format!("{m} is out of range: must be 1-50"),
                );
            } else if operator == Some(Operator::In) && (values.len() as i64) < m {
                errs.push(
                    format!("{at}.minValues"),
                    format!(
                        "minValues is {m} but only {} values are listed; list at least {m}",
                        values.len()
                    ),
                );
            } else {
                min_values = u32::try_from(m).ok();
            }
        }
        if errs.list.len() != n_errors {
            continue;
        }
        let Some(op) = operator else { continue };
        match Requirement::new(op, values.iter().cloned()) {
            Ok(req) => out.add(key, req.with_min_values(min_values)),
            // Unreachable after the checks above, but a model rule we did not mirror must
            // still surface as a field error rather than be dropped.
            Err(e) => errs.push(at, e.to_string()),
        }
    }
    out
}

fn convert_taints(
    taints: &[Taint],
    field: &str,
    seen: &mut BTreeMap<(String, String), String>,
    errs: &mut Errors,
) -> Vec<kerf_model::Taint> {
    let mut out = Vec::new();
    for (i, t) in taints.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let n_errors = errs.list.len();
        if let Some(why) = qualified_name_problem(&t.key) {
            errs.push(format!("{at}.key"), why);
        }
        let value = t.value.clone().unwrap_or_default();
        if let Some(why) = label_value_problem(&value) {
            errs.push(format!("{at}.value"), why);
        }
        let effect = Effect::parse(&t.effect);
        if effect.is_none() {
            errs.push(
                format!("{at}.effect"),
                format!(
                    "{:?} is not a taint effect; use NoSchedule, PreferNoSchedule or NoExecute",
                    t.effect
                ),
            );
        }
        if let Some(first) = seen.insert((t.key.clone(), t.effect.clone()), at.clone()) {
            errs.push(
                &at,
                format!(
                    "duplicate taint key/effect pair {}:{} (also at {first})",
                    t.key, t.effect
                ),
            );
        }
        if errs.list.len() != n_errors {
            continue;
        }
        if let Some(effect) = effect {
            out.push(kerf_model::Taint::new(t.key.clone(), value, effect));
        }
    }
    out
}

fn convert_disruption(d: &Disruption, errs: &mut Errors) -> ModelDisruption {
    let consolidation_policy = match d.consolidation_policy.as_str() {
        "WhenEmpty" => ConsolidationPolicy::WhenEmpty,
        "WhenEmptyOrUnderutilized" => ConsolidationPolicy::WhenEmptyOrUnderutilized,
        "Balanced" => ConsolidationPolicy::Balanced,
        other => {
            errs.push(
                "spec.disruption.consolidationPolicy",
                format!(
                    "{other:?} is not a policy; use WhenEmpty, WhenEmptyOrUnderutilized or Balanced"
                ),
            );
            ConsolidationPolicy::WhenEmptyOrUnderutilized
        }
    };
    let consolidate_after = match &d.consolidate_after {
        Some(c) => nillable(c, "spec.disruption.consolidateAfter", errs),
        None => {
            errs.push(
                "spec.disruption.consolidateAfter",
                "required when disruption is set: a duration such as \"30s\" or \"0s\", or \
                 \"Never\"",
            );
            None
        }
    };
    if d.budgets.len() > 50 {
        errs.push(
            "spec.disruption.budgets",
            format!("{} budgets; at most 50 are allowed", d.budgets.len()),
        );
    }
    let budgets = d
        .budgets
        .iter()
        .enumerate()
        .filter_map(|(i, b)| convert_budget(b, &format!("spec.disruption.budgets[{i}]"), errs))
        .collect();
    ModelDisruption {
        consolidation_policy,
        consolidate_after,
        budgets,
    }
}

fn convert_budget(b: &Budget, at: &str, errs: &mut Errors) -> Option<ModelBudget> {
    let n_errors = errs.list.len();
    let nodes = match b.nodes.strip_suffix('%') {
        Some(pct) => match pct.parse::<u32>() {
            Ok(p) if p <= 100 && !pct.starts_with('+') => Some(BudgetNodes::Percent(p)),
            _ => None,
        },
        None => b
            .nodes
            .parse::<u32>()
            .ok()
            .filter(|_| !b.nodes.starts_with('+'))
            .map(BudgetNodes::Count),
    };
    if nodes.is_none() {
        errs.push(
            format!("{at}.nodes"),
            format!(
                "{:?} is not a node count or percentage; use a whole number (\"5\") or a \
                 percentage from 0% to 100% (\"10%\")",
                b.nodes
            ),
        );
    }
    for (j, reason) in b.reasons.iter().enumerate() {
        if !matches!(reason.as_str(), "Underutilized" | "Empty" | "Drifted") {
            errs.push(
                format!("{at}.reasons[{j}]"),
                format!(
                    "{reason:?} is not a disruption reason; use Underutilized, Empty or Drifted"
                ),
            );
        }
    }
    if b.schedule.is_some() != b.duration.is_some() {
        errs.push(
            at,
            "'schedule' must be set with 'duration': set both for a scheduled budget, or \
             neither for one that is always active",
        );
    }
    if let Some(schedule) = &b.schedule
        && let Some(why) = cron_problem(schedule)
    {
        errs.push(format!("{at}.schedule"), why);
    }
    let window = b.duration.as_ref().and_then(|d| {
        // Karpenter's pattern admits hours and minutes, with the `0s` Go appends after them.
        let trimmed = d
            .strip_suffix("0s")
            .filter(|t| t.ends_with(['h', 'm']))
            .unwrap_or(d);
        match duration::parse_with_units(trimmed, &["h", "m"]) {
            Ok(parsed) => Some(parsed),
            Err(e) => {
                errs.push(
                    format!("{at}.duration"),
                    format!(
                        "{e}; a budget window is in hours and minutes, e.g. \"8h\" or \"1h30m\""
                    ),
                );
                None
            }
        }
    });
    if errs.list.len() != n_errors {
        return None;
    }
    Some(ModelBudget {
        nodes: nodes?,
        schedule: b.schedule.clone(),
        duration: window,
        reasons: b.reasons.clone(),
    })
}
