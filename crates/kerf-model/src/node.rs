//! Nodes that already exist in the cluster.

use crate::Resources;
use crate::labels;
use crate::selector::Labels;
use crate::taints::Taint;

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub name: String,
    pub labels: Labels,
    pub annotations: Labels,
    pub taints: Vec<Taint>,
    pub capacity: Resources,
    pub allocatable: Resources,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
    pub ready: bool,
    /// `metadata.creationTimestamp` as seconds since the Unix epoch, when known.
    pub created_at: Option<i64>,
    /// `metadata.deletionTimestamp` is set: the node is already being drained.
    pub deleting: bool,
}

impl Node {
    pub fn new(name: &str, labels: Labels, allocatable: Resources) -> Node {
        let mut labels = labels;
        labels
            .entry(labels::HOSTNAME.to_string())
            .or_insert_with(|| name.to_string());
        Node {
            name: name.to_string(),
            labels,
            annotations: Labels::new(),
            taints: Vec::new(),
            capacity: allocatable.clone(),
            allocatable,
            unschedulable: false,
            ready: true,
            created_at: None,
            deleting: false,
        }
    }

    /// The NodePool that manages this node, if any.
    pub fn nodepool(&self) -> Option<&str> {
        self.labels.get(labels::NODEPOOL).map(String::as_str)
    }
}
