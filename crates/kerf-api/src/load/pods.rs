//! A Kubernetes pod spec → `kerf_model::Pod`: effective requests computed exactly as
//! kube-scheduler computes them, and every scheduling constraint (node selector and
//! affinity, tolerations, topology spread, pod (anti-)affinity, host ports) validated and
//! converted. Validation follows the API server's, so that what kerf accepts a cluster
//! would accept too.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as WireQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use kerf_model::pod::{
    AffinityTerm, HostPort, InclusionPolicy, NamespaceScope, NodeAffinity, Owner, TopologySpread,
    Weighted, WhenUnsatisfiable,
};
use kerf_model::{
    Effect, LabelSelector, Labels, Operator, Pod, Quantity, Requirement, Requirements, Resources,
    Toleration, TolerationOperator, labels, resources,
};

use super::Problems;
use super::syntax::{label_key_problem, label_value_problem, map_key};

/// What a pod takes from its own metadata or from its workload's template.
pub(crate) struct PodMeta<'a> {
    pub(crate) namespace: &'a str,
    pub(crate) name: &'a str,
    pub(crate) labels: Labels,
    pub(crate) annotations: Labels,
    pub(crate) owner: Option<Owner>,
    /// `metadata` or `spec.template.metadata`, for error paths.
    pub(crate) meta_path: &'a str,
}

/// Converts a pod spec; `spec_path` is where it sits in the object (`spec` or
/// `spec.template.spec`), for error paths.
pub(crate) fn convert(
    meta: PodMeta<'_>,
    spec: &core::PodSpec,
    spec_path: &str,
    problems: &mut Problems,
) -> Pod {
    check_labels(
        &meta.labels,
        &format!("{}.labels", meta.meta_path),
        problems,
    );
    let mut pod = Pod::new(
        meta.namespace,
        meta.name,
        effective_requests(spec, spec_path, problems),
    );
    pod.node_name = spec.node_name.clone().filter(|n| !n.is_empty());
    pod.priority = spec.priority.unwrap_or(0);
    pod.node_affinity = node_affinity(spec, spec_path, problems);
    pod.tolerations = spec
        .tolerations
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, t)| toleration(t, &format!("{spec_path}.tolerations[{i}]"), problems))
        .collect();
    pod.topology_spread = spec
        .topology_spread_constraints
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, c)| {
            let path = format!("{spec_path}.topologySpreadConstraints[{i}]");
            topology_spread(c, &meta.labels, &path, problems)
        })
        .collect();
    let affinity = spec.affinity.as_ref();
    let ctx = TermContext {
        namespace: meta.namespace,
        labels: &meta.labels,
    };
    if let Some(a) = affinity.and_then(|a| a.pod_affinity.as_ref()) {
        let path = format!("{spec_path}.affinity.podAffinity");
        pod.affinity = required_terms(
            a.required_during_scheduling_ignored_during_execution
                .as_deref(),
            &path,
            &ctx,
            problems,
        );
        pod.preferred_affinity = preferred_terms(
            a.preferred_during_scheduling_ignored_during_execution
                .as_deref(),
            &path,
            &ctx,
            problems,
        );
    }
    if let Some(a) = affinity.and_then(|a| a.pod_anti_affinity.as_ref()) {
        let path = format!("{spec_path}.affinity.podAntiAffinity");
        pod.anti_affinity = required_terms(
            a.required_during_scheduling_ignored_during_execution
                .as_deref(),
            &path,
            &ctx,
            problems,
        );
        pod.preferred_anti_affinity = preferred_terms(
            a.preferred_during_scheduling_ignored_during_execution
                .as_deref(),
            &path,
            &ctx,
            problems,
        );
    }
    pod.host_ports = host_ports(spec, spec_path, problems);
    pod.labels = meta.labels;
    pod.annotations = meta.annotations;
    pod.owner = meta.owner;
    pod
}

/// Reports every label whose key or value the API server would reject.
pub(crate) fn check_labels(labels: &Labels, path: &str, problems: &mut Problems) {
    for (key, value) in labels {
        if let Some(p) = label_key_problem(key).or_else(|| label_value_problem(value)) {
            problems.push(map_key(path, key), p);
        }
    }
}

/// Parses a resource map (`requests`, `capacity`, `overhead`, …). Every resource but CPU
/// is read in whole units, rounded up, as kube-scheduler reads it.
pub(crate) fn quantities(
    map: Option<&BTreeMap<String, WireQuantity>>,
    path: &str,
    problems: &mut Problems,
) -> Resources {
    let mut out = Resources::new();
    for (name, q) in map.into_iter().flatten() {
        match Quantity::parse(&q.0) {
            Ok(v) if v < Quantity::ZERO => problems.push(
                map_key(path, name),
                format!(
                    "{:?} is negative; resource quantities must be zero or more",
                    q.0
                ),
            ),
            Ok(v) if name == kerf_model::resources::CPU => out.set(name, v),
            Ok(v) => out.set(name, v.ceil_units()),
            Err(e) => problems.push(map_key(path, name), e.to_string()),
        }
    }
    out
}

/// A container's requests after Kubernetes' defaulting: a resource with a limit and no
/// request requests its limit.
fn container_requests(
    resources: Option<&core::ResourceRequirements>,
    path: &str,
    problems: &mut Problems,
) -> Resources {
    let requests_raw = resources.and_then(|r| r.requests.as_ref());
    let requests_path = format!("{path}.resources.requests");
    let requests = quantities(requests_raw, &requests_path, problems);
    let limits = quantities(
        resources.and_then(|r| r.limits.as_ref()),
        &format!("{path}.resources.limits"),
        problems,
    );
    let mut out = requests.clone();
    for (name, limit) in limits.iter() {
        if !requests_raw.is_some_and(|r| r.contains_key(name)) {
            out.set(name, limit);
        } else if requests.get(name) > limit {
            problems.push(
                map_key(&requests_path, name),
                format!(
                    "request {} is more than the limit {}; a request must not exceed its limit",
                    Resources::render(name, requests.get(name)),
                    Resources::render(name, limit)
                ),
            );
        }
    }
    out
}

/// The pod's effective requests, as kube-scheduler's `resourcehelper.PodRequests`
/// computes them: regular containers and sidecars (restartable init containers) run
/// together; each ordinary init container runs alone alongside the sidecars started before
/// it; the pod needs the larger of the two, plus its overhead, plus one pod slot.
fn effective_requests(spec: &core::PodSpec, spec_path: &str, problems: &mut Problems) -> Resources {
    let mut total = Resources::new();
    for (i, c) in spec.containers.iter().enumerate() {
        let path = format!("{spec_path}.containers[{i}]");
        total.add(&container_requests(c.resources.as_ref(), &path, problems));
        if c.restart_policy.is_some() {
            problems.push(
                format!("{path}.restartPolicy"),
                "only init containers may set restartPolicy (Always, to make a sidecar)",
            );
        }
    }
    let mut sidecars = Resources::new();
    let mut init_peak = Resources::new();
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        let path = format!("{spec_path}.initContainers[{i}]");
        let requests = container_requests(c.resources.as_ref(), &path, problems);
        match c.restart_policy.as_deref() {
            Some("Always") => {
                total.add(&requests);
                sidecars.add(&requests);
                init_peak.max_with(&sidecars);
            }
            None => init_peak.max_with(&requests.plus(&sidecars)),
            Some(other) => problems.push(
                format!("{path}.restartPolicy"),
                format!("{other:?} is not valid; the only value is Always (a sidecar)"),
            ),
        }
    }
    total.max_with(&init_peak);

    // Pod-level resources (`spec.resources`) replace the containers' sum for the resources
    // they name; a limit with no request requests the limit, as for containers.
    if let Some(pod_level) = spec.resources.as_ref() {
        let pod_requests = container_requests(Some(pod_level), spec_path, problems);
        for (name, q) in pod_requests.iter() {
            total.set(name, q);
        }
    }
    total.add(&quantities(
        spec.overhead.as_ref(),
        &format!("{spec_path}.overhead"),
        problems,
    ));
    total.set(
        resources::PODS,
        total.get(resources::PODS) + Quantity::from_units(1),
    );
    total
}

const NODE_OPERATORS: &str = "In, NotIn, Exists, DoesNotExist, Gt, Lt";

/// One node-selector requirement (`matchExpressions` entry), validated.
pub(crate) fn node_requirement(
    expression: &core::NodeSelectorRequirement,
    path: &str,
    problems: &mut Problems,
) -> Option<Requirement> {
    if let Some(p) = label_key_problem(&expression.key) {
        problems.push(format!("{path}.key"), p);
    }
    let operator = match Operator::parse(&expression.operator) {
        // Gte and Lte are Karpenter's NodePool extensions, not Kubernetes operators.
        Some(op) if !matches!(op, Operator::Gte | Operator::Lte) => op,
        _ => {
            problems.push(
                format!("{path}.operator"),
                format!(
                    "{:?} is not a node selector operator; expected one of {NODE_OPERATORS}",
                    expression.operator
                ),
            );
            return None;
        }
    };
    let values = expression.values.clone().unwrap_or_default();
    if matches!(operator, Operator::In | Operator::NotIn) {
        for (i, v) in values.iter().enumerate() {
            if let Some(p) = label_value_problem(v) {
                problems.push(format!("{path}.values[{i}]"), p);
            }
        }
    }
    match Requirement::new(operator, values) {
        Ok(r) => Some(r),
        Err(e) => {
            problems.push(format!("{path}.values"), e.to_string());
            None
        }
    }
}

/// One node selector term; `None` for a term with no expressions and no fields, which
/// Kubernetes says matches no node.
pub(crate) fn node_selector_term(
    term: &core::NodeSelectorTerm,
    path: &str,
    problems: &mut Problems,
) -> Option<Requirements> {
    let mut requirements = Requirements::new();
    let mut n_entries = 0;
    for (i, e) in term.match_expressions.iter().flatten().enumerate() {
        n_entries += 1;
        if let Some(r) = node_requirement(e, &format!("{path}.matchExpressions[{i}]"), problems) {
            requirements.add(labels::normalized(&e.key), r);
        }
    }
    for (i, f) in term.match_fields.iter().flatten().enumerate() {
        n_entries += 1;
        let path = format!("{path}.matchFields[{i}]");
        if f.key != "metadata.name" {
            problems.push(
                format!("{path}.key"),
                format!(
                    "{:?} is not a supported field; matchFields supports only metadata.name",
                    f.key
                ),
            );
            continue;
        }
        if !matches!(f.operator.as_str(), "In" | "NotIn") {
            problems.push(
                format!("{path}.operator"),
                format!(
                    "{:?} is not valid for matchFields; expected In or NotIn",
                    f.operator
                ),
            );
            continue;
        }
        // A node's name is its hostname label on every node kerf launches or reads.
        let expression = core::NodeSelectorRequirement {
            key: labels::HOSTNAME.to_string(),
            ..f.clone()
        };
        if let Some(r) = node_requirement(&expression, &path, problems) {
            requirements.add(labels::HOSTNAME, r);
        }
    }
    (n_entries > 0).then_some(requirements)
}

/// `nodeSelector` merged into each required node-affinity term, plus preferred terms.
fn node_affinity(spec: &core::PodSpec, spec_path: &str, problems: &mut Problems) -> NodeAffinity {
    let mut from_selector = Requirements::new();
    for (key, value) in spec.node_selector.iter().flatten() {
        let path = map_key(&format!("{spec_path}.nodeSelector"), key);
        if let Some(p) = label_key_problem(key).or_else(|| label_value_problem(value)) {
            problems.push(path, p);
            continue;
        }
        // As Karpenter: a deprecated beta key means the current one.
        from_selector.add(labels::normalized(key), Requirement::single(value.clone()));
    }
    let node_affinity = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref());
    let path = format!("{spec_path}.affinity.nodeAffinity");
    let mut required = Vec::new();
    if let Some(selector) = node_affinity.and_then(|n| {
        n.required_during_scheduling_ignored_during_execution
            .as_ref()
    }) {
        let terms_path =
            format!("{path}.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms");
        if selector.node_selector_terms.is_empty() {
            problems.push(
                &terms_path,
                "must list at least one term (terms are ORed; leave out requiredDuringScheduling… to allow any node)",
            );
        }
        for (i, term) in selector.node_selector_terms.iter().enumerate() {
            if let Some(r) = node_selector_term(term, &format!("{terms_path}[{i}]"), problems) {
                required.push(r);
            }
        }
        if required.is_empty() && !selector.node_selector_terms.is_empty() {
            // Every term was empty, and an empty term matches no node: keep one term no
            // node satisfies, so the pod is reported as unschedulable rather than free.
            let mut none = Requirements::new();
            none.add(labels::HOSTNAME, Requirement::any_of(Vec::<String>::new()));
            required.push(none);
        }
    }
    if !from_selector.is_empty() {
        if required.is_empty() {
            required.push(from_selector);
        } else {
            for term in &mut required {
                *term = term.intersection(&from_selector);
            }
        }
    }
    let mut preferred = Vec::new();
    for (i, p) in node_affinity
        .and_then(|n| {
            n.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .into_iter()
        .flatten()
        .enumerate()
    {
        let path = format!("{path}.preferredDuringSchedulingIgnoredDuringExecution[{i}]");
        check_weight(p.weight, &path, problems);
        // An empty preference matches no node, so it never adds to a score.
        if let Some(term) =
            node_selector_term(&p.preference, &format!("{path}.preference"), problems)
        {
            preferred.push(Weighted {
                weight: p.weight,
                term,
            });
        }
    }
    NodeAffinity {
        required,
        preferred,
    }
}

fn check_weight(weight: i32, path: &str, problems: &mut Problems) {
    if !(1..=100).contains(&weight) {
        problems.push(
            format!("{path}.weight"),
            format!("{weight} is out of range; a preference weight is 1 to 100"),
        );
    }
}

fn toleration(t: &core::Toleration, path: &str, problems: &mut Problems) -> Option<Toleration> {
    let key = t.key.clone().unwrap_or_default();
    let value = t.value.clone().unwrap_or_default();
    let operator = match t.operator.as_deref() {
        None | Some("") | Some("Equal") => TolerationOperator::Equal,
        Some("Exists") => TolerationOperator::Exists,
        Some(other) => {
            problems.push(
                format!("{path}.operator"),
                format!("{other:?} is not valid; expected Equal (the default) or Exists"),
            );
            return None;
        }
    };
    let effect = match t.effect.as_deref() {
        None | Some("") => None,
        Some(s) => match Effect::parse(s) {
            Some(e) => Some(e),
            None => {
                problems.push(
                    format!("{path}.effect"),
                    format!(
                        "{s:?} is not valid; expected NoSchedule, PreferNoSchedule, NoExecute or empty (every effect)"
                    ),
                );
                return None;
            }
        },
    };
    if key.is_empty() && operator == TolerationOperator::Equal {
        problems.push(
            format!("{path}.operator"),
            "an empty key needs operator Exists (which tolerates every taint)",
        );
        return None;
    }
    if operator == TolerationOperator::Exists && !value.is_empty() {
        problems.push(
            format!("{path}.value"),
            format!("{value:?} must be empty with operator Exists"),
        );
        return None;
    }
    Some(Toleration {
        key,
        operator,
        value,
        effect,
    })
}

/// A `LabelSelector`; only In, NotIn, Exists and DoesNotExist are allowed in one.
pub(crate) fn label_selector(
    selector: &meta::LabelSelector,
    path: &str,
    problems: &mut Problems,
) -> LabelSelector {
    let mut out = LabelSelector::everything();
    for (key, value) in selector.match_labels.iter().flatten() {
        let field = map_key(&format!("{path}.matchLabels"), key);
        match label_key_problem(key).or_else(|| label_value_problem(value)) {
            Some(p) => problems.push(field, p),
            None => out.add(key.clone(), Requirement::single(value.clone())),
        }
    }
    for (i, e) in selector.match_expressions.iter().flatten().enumerate() {
        let path = format!("{path}.matchExpressions[{i}]");
        if let Some(p) = label_key_problem(&e.key) {
            problems.push(format!("{path}.key"), p);
            continue;
        }
        let operator = match e.operator.as_str() {
            "In" | "NotIn" | "Exists" | "DoesNotExist" => Operator::parse(&e.operator),
            _ => None,
        };
        let Some(operator) = operator else {
            problems.push(
                format!("{path}.operator"),
                format!(
                    "{:?} is not a label selector operator; expected one of In, NotIn, Exists, DoesNotExist",
                    e.operator
                ),
            );
            continue;
        };
        if let Err(err) = out.add_expression(
            e.key.clone(),
            operator,
            e.values.clone().unwrap_or_default(),
        ) {
            problems.push(format!("{path}.values"), err.to_string());
        }
    }
    out
}

/// Narrows a selector by `matchLabelKeys` (`key In [pod's value]`) or
/// `mismatchLabelKeys` (`key NotIn [pod's value]`); keys the pod lacks are ignored, as
/// Kubernetes ignores them.
fn fold_label_keys(
    selector: &mut LabelSelector,
    keys: Option<&Vec<String>>,
    pod_labels: &Labels,
    mismatch: bool,
) {
    for key in keys.into_iter().flatten() {
        if let Some(value) = pod_labels.get(key) {
            let requirement = if mismatch {
                // `Requirement::new` cannot fail for NotIn.
                Requirement::new(Operator::NotIn, [value.clone()])
                    .unwrap_or_else(|_| Requirement::any())
            } else {
                Requirement::single(value.clone())
            };
            selector.add(key.clone(), requirement);
        }
    }
}

fn topology_spread(
    c: &core::TopologySpreadConstraint,
    pod_labels: &Labels,
    path: &str,
    problems: &mut Problems,
) -> Option<TopologySpread> {
    let n_before = problems.errors.len();
    if c.max_skew <= 0 {
        problems.push(
            format!("{path}.maxSkew"),
            format!("{} is not valid; maxSkew must be at least 1", c.max_skew),
        );
    }
    if c.topology_key.is_empty() {
        problems.push(
            format!("{path}.topologyKey"),
            "must not be empty; e.g. topology.kubernetes.io/zone",
        );
    } else if let Some(p) = label_key_problem(&c.topology_key) {
        problems.push(format!("{path}.topologyKey"), p);
    }
    let when_unsatisfiable = match c.when_unsatisfiable.as_str() {
        "DoNotSchedule" => WhenUnsatisfiable::DoNotSchedule,
        "ScheduleAnyway" => WhenUnsatisfiable::ScheduleAnyway,
        other => {
            problems.push(
                format!("{path}.whenUnsatisfiable"),
                format!("{other:?} is not valid; expected DoNotSchedule or ScheduleAnyway"),
            );
            WhenUnsatisfiable::DoNotSchedule
        }
    };
    if let Some(min_domains) = c.min_domains {
        if min_domains <= 0 {
            problems.push(
                format!("{path}.minDomains"),
                format!("{min_domains} is not valid; minDomains must be at least 1"),
            );
        } else if when_unsatisfiable != WhenUnsatisfiable::DoNotSchedule {
            problems.push(
                format!("{path}.minDomains"),
                "can only be set with whenUnsatisfiable: DoNotSchedule",
            );
        }
    }
    let policy = |value: Option<&str>, default, field: &str, problems: &mut Problems| match value {
        None | Some("") => default,
        Some("Honor") => InclusionPolicy::Honor,
        Some("Ignore") => InclusionPolicy::Ignore,
        Some(other) => {
            problems.push(
                format!("{path}.{field}"),
                format!("{other:?} is not valid; expected Honor or Ignore"),
            );
            default
        }
    };
    let node_affinity_policy = policy(
        c.node_affinity_policy.as_deref(),
        InclusionPolicy::Honor,
        "nodeAffinityPolicy",
        problems,
    );
    let node_taints_policy = policy(
        c.node_taints_policy.as_deref(),
        InclusionPolicy::Ignore,
        "nodeTaintsPolicy",
        problems,
    );
    let mut selector = match c.label_selector.as_ref() {
        Some(s) => label_selector(s, &format!("{path}.labelSelector"), problems),
        // A spread constraint without a selector counts no pods.
        None => LabelSelector::nothing(),
    };
    if c.match_label_keys.as_ref().is_some_and(|k| !k.is_empty()) && c.label_selector.is_none() {
        problems.push(
            format!("{path}.matchLabelKeys"),
            "needs a labelSelector to narrow",
        );
    }
    fold_label_keys(
        &mut selector,
        c.match_label_keys.as_ref(),
        pod_labels,
        false,
    );
    (problems.errors.len() == n_before).then(|| TopologySpread {
        max_skew: c.max_skew,
        topology_key: c.topology_key.clone(),
        when_unsatisfiable,
        selector,
        min_domains: c.min_domains,
        node_affinity_policy,
        node_taints_policy,
    })
}

/// What an affinity term needs from the pod it belongs to.
struct TermContext<'a> {
    namespace: &'a str,
    labels: &'a Labels,
}

fn affinity_term(
    term: &core::PodAffinityTerm,
    path: &str,
    ctx: &TermContext<'_>,
    problems: &mut Problems,
) -> AffinityTerm {
    let mut selector = match term.label_selector.as_ref() {
        Some(s) => label_selector(s, &format!("{path}.labelSelector"), problems),
        // A term without a selector selects no pods.
        None => LabelSelector::nothing(),
    };
    for (field, keys) in [
        ("matchLabelKeys", &term.match_label_keys),
        ("mismatchLabelKeys", &term.mismatch_label_keys),
    ] {
        if keys.as_ref().is_some_and(|k| !k.is_empty()) && term.label_selector.is_none() {
            problems.push(format!("{path}.{field}"), "needs a labelSelector to narrow");
        }
    }
    fold_label_keys(
        &mut selector,
        term.match_label_keys.as_ref(),
        ctx.labels,
        false,
    );
    fold_label_keys(
        &mut selector,
        term.mismatch_label_keys.as_ref(),
        ctx.labels,
        true,
    );
    if term.topology_key.is_empty() {
        problems.push(
            format!("{path}.topologyKey"),
            "must not be empty; e.g. kubernetes.io/hostname or topology.kubernetes.io/zone",
        );
    } else if let Some(p) = label_key_problem(&term.topology_key) {
        problems.push(format!("{path}.topologyKey"), p);
    }
    let names: BTreeSet<String> = term.namespaces.iter().flatten().cloned().collect();
    let namespace_selector = term
        .namespace_selector
        .as_ref()
        .map(|s| label_selector(s, &format!("{path}.namespaceSelector"), problems));
    let namespaces = if names.is_empty() && namespace_selector.is_none() {
        NamespaceScope::own(ctx.namespace)
    } else {
        NamespaceScope {
            names,
            selector: namespace_selector,
        }
    };
    AffinityTerm {
        selector,
        namespaces,
        topology_key: term.topology_key.clone(),
    }
}

fn required_terms(
    terms: Option<&[core::PodAffinityTerm]>,
    path: &str,
    ctx: &TermContext<'_>,
    problems: &mut Problems,
) -> Vec<AffinityTerm> {
    terms
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, t)| {
            let path = format!("{path}.requiredDuringSchedulingIgnoredDuringExecution[{i}]");
            affinity_term(t, &path, ctx, problems)
        })
        .collect()
}

fn preferred_terms(
    terms: Option<&[core::WeightedPodAffinityTerm]>,
    path: &str,
    ctx: &TermContext<'_>,
    problems: &mut Problems,
) -> Vec<Weighted<AffinityTerm>> {
    terms
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, t)| {
            let path = format!("{path}.preferredDuringSchedulingIgnoredDuringExecution[{i}]");
            check_weight(t.weight, &path, problems);
            Weighted {
                weight: t.weight,
                term: affinity_term(
                    &t.pod_affinity_term,
                    &format!("{path}.podAffinityTerm"),
                    ctx,
                    problems,
                ),
            }
        })
        .collect()
}

/// Host ports of regular containers and sidecars (the containers running while the pod
/// runs). With `hostNetwork`, every container port is a host port, as the API server's
/// defaulting makes it.
fn host_ports(spec: &core::PodSpec, spec_path: &str, problems: &mut Problems) -> Vec<HostPort> {
    let host_network = spec.host_network == Some(true);
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .enumerate()
        .filter(|(_, c)| c.restart_policy.as_deref() == Some("Always"))
        .map(|(i, c)| (format!("{spec_path}.initContainers[{i}]"), c));
    let regular = spec
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("{spec_path}.containers[{i}]"), c));
    let mut out = Vec::new();
    for (path, c) in regular.chain(sidecars) {
        for (j, port) in c.ports.iter().flatten().enumerate() {
            let path = format!("{path}.ports[{j}]");
            let host_port = match port.host_port {
                Some(p) if p != 0 => p,
                _ if host_network => port.container_port,
                _ => continue,
            };
            if !(1..=65535).contains(&host_port) {
                problems.push(
                    format!("{path}.hostPort"),
                    format!("{host_port} is not a port; expected 1 to 65535"),
                );
                continue;
            }
            let protocol = port.protocol.clone().unwrap_or_else(|| "TCP".to_string());
            if !matches!(protocol.as_str(), "TCP" | "UDP" | "SCTP") {
                problems.push(
                    format!("{path}.protocol"),
                    format!("{protocol:?} is not valid; expected TCP (the default), UDP or SCTP"),
                );
                continue;
            }
            out.push(HostPort {
                port: host_port,
                protocol,
                host_ip: port.host_ip.clone().unwrap_or_default(),
            });
        }
    }
    out
}

/// The PersistentVolumeClaims a pod named `pod_name` mounts: `persistentVolumeClaim`
/// volumes, and generic ephemeral volumes, whose claim Kubernetes names
/// `<pod>-<volume>`.
/// The claims the pod's ephemeral volumes create (`<pod>-<volume>`), each with the
/// `storageClassName` its template names (`None`: the default class). Such a claim does
/// not exist before its pod does, so only its template says where its volume may go.
pub(crate) fn ephemeral_claim_classes(
    spec: &core::PodSpec,
    pod_name: &str,
) -> Vec<(String, Option<String>)> {
    spec.volumes
        .iter()
        .flatten()
        .filter_map(|v| {
            let template = v.ephemeral.as_ref()?.volume_claim_template.as_ref();
            Some((
                format!("{pod_name}-{}", v.name),
                template.and_then(|t| t.spec.storage_class_name.clone()),
            ))
        })
        .collect()
}

/// The pod's `runtimeClassName` when it sets no `overhead` of its own: the RuntimeClass
/// admission controller fills the overhead in from the class (`overhead.podFixed`), which
/// kerf does once every RuntimeClass is read. A pod read back from a cluster already
/// carries it.
pub(crate) fn runtime_class_without_overhead(spec: &core::PodSpec) -> Option<String> {
    spec.runtime_class_name
        .clone()
        .filter(|c| !c.is_empty() && spec.overhead.is_none())
}

pub(crate) fn claim_names(spec: &core::PodSpec, pod_name: &str) -> Vec<String> {
    spec.volumes
        .iter()
        .flatten()
        .filter_map(|v| {
            if let Some(pvc) = &v.persistent_volume_claim {
                Some(pvc.claim_name.clone())
            } else {
                v.ephemeral
                    .as_ref()
                    .map(|_| format!("{pod_name}-{}", v.name))
            }
        })
        .collect()
}
