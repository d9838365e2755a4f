//! User data per AMI family: AL2023's `nodeadm` NodeConfig in a MIME multipart document,
//! and Bottlerocket's TOML. Both register the node with its labels and taints, and
//! always with `karpenter.sh/unregistered:NoExecute`, which kerf removes once the node
//! has registered (Karpenter's `launchtemplate` provider does the same).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use kerf_api::crd::KubeletConfiguration;
use kerf_model::{Effect, Taint};

pub const UNREGISTERED: &str = "karpenter.sh/unregistered";
pub const BOUNDARY: &str = "//";

/// What a node needs to join.
#[derive(Clone, Debug, PartialEq)]
pub struct Bootstrap<'a> {
    pub cluster_name: &'a str,
    pub endpoint: &'a str,
    /// Base64 PEM, as EKS reports it.
    pub ca_bundle: &'a str,
    pub cluster_cidr: Option<&'a str>,
    pub labels: &'a BTreeMap<String, String>,
    /// Taints and startup taints; `karpenter.sh/unregistered` is added here.
    pub taints: &'a [Taint],
    pub kubelet: Option<&'a KubeletConfiguration>,
    /// The class's own `userData`, merged as its own part.
    pub custom: Option<&'a str>,
}

fn with_unregistered(taints: &[Taint]) -> Vec<Taint> {
    let mut all = taints.to_vec();
    if !all.iter().any(|t| t.key == UNREGISTERED) {
        all.push(Taint::new(UNREGISTERED, "", Effect::NoExecute));
    }
    all
}

fn taint_flag(taints: &[Taint]) -> String {
    taints
        .iter()
        .map(|t| {
            if t.value.is_empty() {
                format!("{}:{}", t.key, t.effect.as_str())
            } else {
                format!("{}={}:{}", t.key, t.value, t.effect.as_str())
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn label_flag(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// AL2023: a MIME multipart document whose `application/node.eks.aws` part is the
/// NodeConfig; the class's own user data, if any, is a part before it (as Karpenter
/// merges it), a shell script or a NodeConfig of its own.
pub fn al2023(b: &Bootstrap) -> String {
    let mut nc = String::new();
    let _ = writeln!(nc, "apiVersion: node.eks.aws/v1alpha1");
    let _ = writeln!(nc, "kind: NodeConfig");
    let _ = writeln!(nc, "spec:");
    let _ = writeln!(nc, "  cluster:");
    let _ = writeln!(nc, "    name: {}", yaml_str(b.cluster_name));
    let _ = writeln!(nc, "    apiServerEndpoint: {}", yaml_str(b.endpoint));
    let _ = writeln!(nc, "    certificateAuthority: {}", yaml_str(b.ca_bundle));
    if let Some(cidr) = b.cluster_cidr {
        let _ = writeln!(nc, "    cidr: {}", yaml_str(cidr));
    }
    let _ = writeln!(nc, "  kubelet:");
    if let Some(k) = b.kubelet {
        let mut config = serde_json::to_value(k).unwrap_or_default();
        if let Some(obj) = config.as_object_mut() {
            obj.retain(|_, v| !v.is_null());
        }
        if config.as_object().is_some_and(|o| !o.is_empty()) {
            // JSON is YAML: one line, exact.
            let _ = writeln!(nc, "    config: {config}");
        }
    }
    let _ = writeln!(nc, "    flags:");
    let labels = label_flag(b.labels);
    if !labels.is_empty() {
        let _ = writeln!(nc, "    - {}", yaml_str(&format!("--node-labels={labels}")));
    }
    let taints = taint_flag(&with_unregistered(b.taints));
    let _ = writeln!(
        nc,
        "    - {}",
        yaml_str(&format!("--register-with-taints={taints}"))
    );

    let mut out = String::new();
    let _ = write!(
        out,
        "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"{BOUNDARY}\"\r\n\r\n"
    );
    if let Some(custom) = b.custom {
        let kind = if custom.starts_with("#!") {
            "text/x-shellscript; charset=\"us-ascii\""
        } else {
            "application/node.eks.aws"
        };
        let _ = write!(
            out,
            "--{BOUNDARY}\r\nContent-Type: {kind}\r\n\r\n{custom}\r\n"
        );
    }
    let _ = write!(
        out,
        "--{BOUNDARY}\r\nContent-Type: application/node.eks.aws\r\n\r\n{nc}\r\n--{BOUNDARY}--\r\n"
    );
    out
}

fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Bottlerocket: TOML settings; the class's own TOML goes first (kerf's keys win where
/// both set one, because they come last).
pub fn bottlerocket(b: &Bootstrap) -> String {
    let mut out = String::new();
    if let Some(custom) = b.custom {
        let _ = writeln!(out, "{custom}");
    }
    let _ = writeln!(out, "[settings.kubernetes]");
    let _ = writeln!(out, "cluster-name = {}", toml_str(b.cluster_name));
    let _ = writeln!(out, "api-server = {}", toml_str(b.endpoint));
    let _ = writeln!(out, "cluster-certificate = {}", toml_str(b.ca_bundle));
    if let Some(k) = b.kubelet
        && let Some(max) = k.max_pods
    {
        let _ = writeln!(out, "max-pods = {max}");
    }
    let _ = writeln!(out, "\n[settings.kubernetes.node-labels]");
    for (k, v) in b.labels {
        let _ = writeln!(out, "{} = {}", toml_str(k), toml_str(v));
    }
    let _ = writeln!(out, "\n[settings.kubernetes.node-taints]");
    let mut by_key: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let taints = with_unregistered(b.taints);
    for t in &taints {
        by_key.entry(t.key.as_str()).or_default().push(format!(
            "{}:{}",
            t.value,
            t.effect.as_str()
        ));
    }
    for (k, vs) in by_key {
        let list: Vec<String> = vs.iter().map(|v| toml_str(v)).collect();
        let _ = writeln!(out, "{} = [{}]", toml_str(k), list.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("karpenter.sh/nodepool".to_string(), "default".to_string()),
            ("team".to_string(), "a".to_string()),
        ])
    }

    #[test]
    fn al2023_node_config_registers_unregistered_taint_and_labels() {
        let labels = labels();
        let taints = [Taint::new("gpu", "true", Effect::NoSchedule)];
        let kubelet = KubeletConfiguration {
            max_pods: Some(110),
            ..Default::default()
        };
        let ud = al2023(&Bootstrap {
            cluster_name: "c1",
            endpoint: "https://api.example",
            ca_bundle: "Q0E=",
            cluster_cidr: None,
            labels: &labels,
            taints: &taints,
            kubelet: Some(&kubelet),
            custom: None,
        });
        assert!(
            ud.starts_with("MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"//\"")
        );
        assert!(ud.contains("Content-Type: application/node.eks.aws"));
        assert!(ud.contains("    name: \"c1\""));
        assert!(ud.contains("apiServerEndpoint: \"https://api.example\""));
        assert!(ud.contains("\"maxPods\":110"));
        assert!(ud.contains(
            "\"--register-with-taints=gpu=true:NoSchedule,karpenter.sh/unregistered:NoExecute\""
        ));
        assert!(ud.contains("\"--node-labels=karpenter.sh/nodepool=default,team=a\""));
        assert!(ud.ends_with("--//--\r\n"));
    }

    #[test]
    fn bottlerocket_toml_has_taints_by_key() {
        let labels = labels();
        let ud = bottlerocket(&Bootstrap {
            cluster_name: "c1",
            endpoint: "https://api.example",
            ca_bundle: "Q0E=",
            cluster_cidr: None,
            labels: &labels,
            taints: &[],
            kubelet: None,
            custom: None,
        });
        assert!(ud.contains("\"karpenter.sh/unregistered\" = [\":NoExecute\"]"));
        assert!(ud.contains("\"team\" = \"a\""));
    }
}
