//! RBAC as the audit log proves it: the requests one user made (from the API server's
//! audit log) against the rules the chart binds to kerf's ServiceAccount, matched as
//! the RBAC authorizer matches them.

use std::collections::BTreeMap;

use serde_json::Value;

/// Grants the kwok run may not exercise, each with the code path that needs it: none of
/// them can be provoked on demand, so the test reports whether the run used them instead
/// of demanding it. Everything else the chart grants must be used.
const MAY_BE_UNUSED: &[(&str, &str, &str, &str)] = &[
    (
        "karpenter.sh",
        "nodeclaims",
        "get",
        "shell.rs create_claim: a create that meets the claim it made before (409)",
    ),
    (
        "",
        "nodes",
        "get",
        "kwok.rs create: a launch that meets the Node it made before (409)",
    ),
    (
        "karpenter.k8s.aws",
        "ec2nodeclasses",
        "get",
        "kerf-aws termination.rs: a finalizer patch that meets a newer class (409) re-reads it",
    ),
    (
        "events.k8s.io",
        "events",
        "patch",
        "kube-runtime's Recorder: the same event again within its cache's lifetime",
    ),
];

/// One request, as the audit log records it.
#[derive(Debug, Clone)]
pub struct Request {
    pub verb: String,
    pub group: String,
    /// `resource` or `resource/subresource`.
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub code: u16,
    pub uri: String,
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} ({}/{}, namespace {:?}, name {:?}): {}",
            self.verb,
            self.uri,
            self.group,
            self.resource,
            self.namespace.as_deref().unwrap_or(""),
            self.name.as_deref().unwrap_or(""),
            self.code
        )
    }
}

/// One (group, resource, verb) a rule grants, where: `namespace` `None` for a
/// ClusterRole bound cluster-wide, else the RoleBinding's namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    pub group: String,
    pub resource: String,
    pub verb: String,
    pub namespace: Option<String>,
    pub resource_names: Vec<String>,
    /// `ClusterRole kerf-core`, for the report.
    pub role: String,
}

impl Grant {
    fn key(&self) -> (String, String, String) {
        (self.group.clone(), self.resource.clone(), self.verb.clone())
    }

    /// As the RBAC authorizer decides: group, resource and verb match (or `*`), the
    /// namespace is the binding's, and `resourceNames`, when given, hold the request's
    /// name (a create or a collection request has none RBAC can see).
    fn allows(&self, r: &Request) -> bool {
        let any = |want: &str, have: &str| want == "*" || want == have;
        if !(any(&self.group, &r.group)
            && any(&self.resource, &r.resource)
            && any(&self.verb, &r.verb))
        {
            return false;
        }
        if let Some(ns) = &self.namespace
            && r.namespace.as_ref() != Some(ns)
        {
            return false;
        }
        if self.resource_names.is_empty() {
            return true;
        }
        let named = !matches!(
            r.verb.as_str(),
            "create" | "list" | "watch" | "deletecollection"
        );
        named
            && r.name
                .as_ref()
                .is_some_and(|n| self.resource_names.contains(n))
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The grants of every ClusterRoleBinding and RoleBinding in `docs` whose subjects
/// include ServiceAccount `namespace/name`, expanded to one per (group, resource, verb).
pub fn grants_for(docs: &[Value], namespace: &str, name: &str) -> Vec<Grant> {
    let mut grants = Vec::new();
    for binding in docs.iter().filter(|d| {
        (d["kind"] == "ClusterRoleBinding" || d["kind"] == "RoleBinding")
            && d["subjects"].as_array().is_some_and(|s| {
                s.iter().any(|s| {
                    s["kind"] == "ServiceAccount"
                        && s["name"] == name
                        && s["namespace"] == namespace
                })
            })
    }) {
        let role_kind = binding["roleRef"]["kind"].as_str().unwrap();
        let role_name = binding["roleRef"]["name"].as_str().unwrap();
        let scope = (binding["kind"] == "RoleBinding").then(|| {
            binding["metadata"]["namespace"]
                .as_str()
                .unwrap()
                .to_string()
        });
        let role = docs
            .iter()
            .find(|d| d["kind"] == role_kind && d["metadata"]["name"] == role_name)
            .unwrap_or_else(|| panic!("{role_kind} {role_name} is bound but not in the chart"));
        for rule in role["rules"].as_array().into_iter().flatten() {
            for group in strings(&rule["apiGroups"]) {
                for resource in strings(&rule["resources"]) {
                    for verb in strings(&rule["verbs"]) {
                        grants.push(Grant {
                            group: group.clone(),
                            resource: resource.clone(),
                            verb,
                            namespace: scope.clone(),
                            resource_names: strings(&rule["resourceNames"]),
                            role: format!("{role_kind} {role_name}"),
                        });
                    }
                }
            }
        }
    }
    grants.sort();
    grants
}

/// The requests `user` made, one per audit ID (a watch logs `ResponseStarted`, then
/// `ResponseComplete` when it ends; the last stage seen is kept).
pub fn requests_of(audit: &str, user: &str) -> Vec<Request> {
    let mut by_id: BTreeMap<String, Request> = BTreeMap::new();
    for line in audit.lines().filter(|l| !l.trim().is_empty()) {
        let event: Value = serde_json::from_str(line).expect("an audit event per line");
        if event["user"]["username"] != user {
            continue;
        }
        let object = &event["objectRef"];
        let resource = match object["subresource"].as_str() {
            Some(sub) => format!("{}/{sub}", object["resource"].as_str().unwrap_or("")),
            None => object["resource"].as_str().unwrap_or("").to_string(),
        };
        let request = Request {
            verb: event["verb"].as_str().unwrap_or("").to_string(),
            group: object["apiGroup"].as_str().unwrap_or("").to_string(),
            resource,
            namespace: object["namespace"].as_str().map(String::from),
            name: object["name"].as_str().map(String::from),
            code: event["responseStatus"]["code"].as_u64().unwrap_or(0) as u16,
            uri: event["requestURI"].as_str().unwrap_or("").to_string(),
        };
        by_id.insert(event["auditID"].as_str().unwrap_or("").to_string(), request);
    }
    by_id.into_values().collect()
}

/// What the audit log shows against the grants.
pub struct Report {
    /// Requests the API server refused (403).
    pub refused: Vec<String>,
    /// Requests no chart grant allows (something outside the chart allowed them).
    pub ungranted: Vec<String>,
    /// Grants no request used, less [`MAY_BE_UNUSED`].
    pub unused: Vec<String>,
    /// (group/resource verb → how many requests), for the summary.
    used: BTreeMap<String, usize>,
    /// The [`MAY_BE_UNUSED`] grants and whether this run used them.
    optional: Vec<(String, bool)>,
    n_requests: usize,
}

impl Report {
    pub fn summary(&self) -> String {
        let mut out = format!(
            "audit: {} requests by kerf, {} refused\n",
            self.n_requests,
            self.refused.len()
        );
        for (grant, n) in &self.used {
            out.push_str(&format!("  {n:>5}  {grant}\n"));
        }
        for (grant, used) in &self.optional {
            out.push_str(&format!(
                "  {grant}: {}\n",
                if *used {
                    "used in this run"
                } else {
                    "not provoked in this run"
                }
            ));
        }
        out
    }
}

fn label(group: &str, resource: &str, verb: &str) -> String {
    let group = if group.is_empty() { "core" } else { group };
    format!("{group}/{resource} {verb}")
}

/// Non-resource URLs every authenticated user may `get` through the API server's own
/// bootstrap ClusterRole `system:public-info-viewer` (bound to `system:authenticated`
/// and `system:unauthenticated`): no chart grants them, Karpenter's neither. kerf-aws
/// reads `/version` for the AMI alias parameters' Kubernetes version.
const PUBLIC_INFO: [&str; 5] = ["/healthz", "/livez", "/readyz", "/version", "/version/"];

pub fn check(requests: &[Request], grants: &[Grant]) -> Report {
    let mut used: BTreeMap<String, usize> = BTreeMap::new();
    let mut grant_used = vec![false; grants.len()];
    let mut refused = Vec::new();
    let mut ungranted = Vec::new();
    for r in requests {
        if r.code == 403 {
            refused.push(r.to_string());
        }
        let mut granted = false;
        for (i, g) in grants.iter().enumerate() {
            if g.allows(r) {
                granted = true;
                grant_used[i] = true;
            }
        }
        let path = r.uri.split('?').next().unwrap_or_default();
        let public = r.resource.is_empty() && PUBLIC_INFO.contains(&path);
        if !granted && !public {
            ungranted.push(r.to_string());
        }
        *used
            .entry(label(&r.group, &r.resource, &r.verb))
            .or_default() += 1;
    }
    let optional = |g: &Grant| {
        MAY_BE_UNUSED.iter().find(|(group, resource, verb, _)| {
            g.key() == (group.to_string(), resource.to_string(), verb.to_string())
        })
    };
    let mut unused = Vec::new();
    let mut optional_seen = Vec::new();
    for (g, was_used) in grants.iter().zip(&grant_used) {
        // The same (group, resource, verb) granted twice counts as used if either was.
        let any_used = grants
            .iter()
            .zip(&grant_used)
            .any(|(h, u)| *u && h.key() == g.key() && h.namespace == g.namespace);
        let text = format!(
            "{} ({}{})",
            label(&g.group, &g.resource, &g.verb),
            g.role,
            g.namespace
                .as_ref()
                .map(|n| format!(", namespace {n}"))
                .unwrap_or_default()
        );
        match optional(g) {
            Some((.., why)) => {
                optional_seen.push((format!("{text} [{why}]"), *was_used || any_used))
            }
            None if !any_used => unused.push(text),
            None => {}
        }
    }
    unused.dedup();
    optional_seen.dedup();
    Report {
        refused,
        ungranted,
        unused,
        used,
        optional: optional_seen,
        n_requests: requests.len(),
    }
}
