//! Reading Kubernetes YAML (files, directories, stdin; multi-document) into model values.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kerf_model::{Labels, Node, NodePool, Pod};

use crate::Error;

/// Everything kerf read from its inputs, converted and validated.
#[derive(Clone, Debug, Default)]
pub struct Manifests {
    /// Pods with no `spec.nodeName` that are not terminal, workload replicas included,
    /// sorted by namespace/name.
    pub pending_pods: Vec<Pod>,
    /// Pods bound to a node (`spec.nodeName`), sorted by namespace/name.
    pub bound_pods: Vec<Pod>,
    pub nodes: Vec<Node>,
    pub nodepools: Vec<NodePool>,
    /// One template pod per DaemonSet (owner kind `DaemonSet`).
    pub daemonsets: Vec<Pod>,
    /// Namespace labels, for affinity `namespaceSelector`s.
    pub namespaces: BTreeMap<String, Labels>,
    /// Names of EC2NodeClasses read and validated.
    pub node_classes: Vec<String>,
    /// One line per object skipped (unknown kind), for the user to see.
    pub warnings: Vec<String>,
}

/// Reads every path (a file, a directory of `.yaml`/`.yml`/`.json` files read in name
/// order, or `-` for stdin).
pub fn load_paths(paths: &[PathBuf]) -> Result<Manifests, Error> {
    let _ = paths;
    Ok(Manifests::default())
}

/// Reads one YAML stream; `source` names it in errors.
pub fn load_str(source: &str, text: &str) -> Result<Manifests, Error> {
    let _ = (source, text);
    Ok(Manifests::default())
}
