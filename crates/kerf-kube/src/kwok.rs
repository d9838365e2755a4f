//! The `kwok` cloud provider, as Karpenter's (`kwok/cloudprovider`): a launch writes the
//! Node itself — there is no kubelet — with providerID `kwok://<name>`, label and
//! annotation `kwok.x-k8s.io/node: fake`, capacity and allocatable from the `kwok`
//! catalog's type, the zone and capacity-type labels, and the
//! `karpenter.sh/unregistered:NoExecute` taint kubelet would register with. The kwok
//! controller (`sigs.k8s.io/kwok`) then makes such Nodes Ready and their pods Running.
//! Listing is the Nodes with that label; deleting deletes the Node.
//!
//! A Node being deleted is a terminated instance once kerf asked for that (or once
//! nothing holds it: no `karpenter.sh/termination` finalizer). A Node someone else
//! deleted (`kubectl delete node`) still runs until kerf's termination has drained it and
//! asks the provider to terminate it, as a cloud instance outlives its Node object.
//!
//! The Node is named after its NodeClaim (Karpenter picks a random name and sets the
//! hostname label to the claim's), so a repeated launch meets its own Node (409) and
//! never makes a second one. Nodes Karpenter made are found by that hostname label.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Node, NodeSpec, NodeStatus, Taint as WireTaint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kerf_cloud::{
    CreateError, Created, Instance, InstanceState, LaunchRequest, Offer, Provider, ProviderError,
};
use kerf_model::{InstanceType, labels};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client, ResourceExt};

use crate::claims;

pub const PROVIDER_PREFIX: &str = "kwok://";
pub const KWOK_LABEL: &str = "kwok.x-k8s.io/node";
pub const KWOK_VALUE: &str = "fake";
/// Karpenter's kwok nodes are spread over partitions its kwok controllers select.
pub const PARTITION_LABEL: &str = "kwok-partition";

/// Nodes per page when listing the fleet.
const LIST_PAGE: u32 = 100;

pub struct Kwok {
    nodes: Api<Node>,
    catalog: Vec<InstanceType>,
    /// Nodes kerf asked to terminate that may still exist (held by a finalizer). Losing
    /// it in a restart costs one more delete call for each.
    terminated: std::sync::Mutex<BTreeSet<String>>,
}

impl Kwok {
    pub fn new(client: Client) -> Kwok {
        Kwok {
            nodes: Api::all(client),
            catalog: kerf_model::catalog::by_name("kwok").unwrap_or_default(),
            terminated: std::sync::Mutex::new(BTreeSet::new()),
        }
    }

    fn instance(&self, node: &Node) -> Option<Instance> {
        let id = node.spec.as_ref()?.provider_id.clone()?;
        if !id.starts_with(PROVIDER_PREFIX) {
            return None;
        }
        if node.metadata.deletion_timestamp.is_some() {
            let held = node
                .finalizers()
                .iter()
                .any(|f| f == labels::FINALIZER_TERMINATION);
            if !held || self.was_terminated(&node.name_any()) {
                return None;
            }
        }
        let node_labels = node.labels();
        let offer = Offer::from_labels(node_labels)?;
        let price = self
            .catalog
            .iter()
            .find(|t| t.name == offer.instance_type)
            .and_then(|t| {
                t.offerings
                    .iter()
                    .find(|o| o.zone == offer.zone && o.capacity_type == offer.capacity_type)
            })
            .map_or(0.0, |o| o.price);
        Some(Instance {
            id,
            claim: node_labels
                .get(labels::HOSTNAME)
                .cloned()
                .unwrap_or_else(|| node.name_any()),
            offer,
            image_id: String::new(),
            price,
            launched_at: node
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or(0, crate::claims::ms),
            state: InstanceState::Running,
            drift: None,
        })
    }
}

impl Kwok {
    fn was_terminated(&self, name: &str) -> bool {
        self.terminated
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(name)
    }
}

fn api_error(e: kube::Error) -> ProviderError {
    let retryable = match &e {
        kube::Error::Api(s) => s.code == 429 || s.code >= 500,
        _ => true,
    };
    ProviderError::new(e.to_string(), retryable)
}

impl Provider for Kwok {
    fn name(&self) -> &'static str {
        "kwok"
    }

    fn instance_types(&self) -> Vec<InstanceType> {
        self.catalog.clone()
    }

    fn node_class_kind(&self) -> (&'static str, &'static str) {
        ("karpenter.kwok.sh", "KWOKNodeClass")
    }

    async fn create(&self, request: LaunchRequest) -> Result<Created, CreateError> {
        // kwok has no capacity limits: the first option the loops offer launches.
        let Some(offer) = request.options.first().cloned() else {
            return Err(CreateError::NoOptions(request.claim));
        };
        let Some(it) = self.catalog.iter().find(|t| t.name == offer.instance_type) else {
            return Err(CreateError::UnknownType(offer.instance_type));
        };
        let name = request.claim.clone();
        let mut node_labels = request.labels.clone();
        node_labels.extend(it.labels.clone());
        for (k, v) in [
            (labels::INSTANCE_TYPE, offer.instance_type.as_str()),
            (labels::ZONE, offer.zone.as_str()),
            (labels::CAPACITY_TYPE, offer.capacity_type.as_str()),
            (labels::HOSTNAME, name.as_str()),
            (KWOK_LABEL, KWOK_VALUE),
            (PARTITION_LABEL, "a"),
        ] {
            node_labels.insert(k.to_string(), v.to_string());
        }
        let mut taints: Vec<WireTaint> = request.taints.iter().map(claims::node_taint).collect();
        taints.extend(request.startup_taints.iter().map(claims::node_taint));
        taints.push(claims::node_taint(&kerf_model::Taint::new(
            labels::TAINT_UNREGISTERED,
            "",
            kerf_model::Effect::NoExecute,
        )));
        let node = Node {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(node_labels),
                annotations: Some(BTreeMap::from([(
                    KWOK_LABEL.to_string(),
                    KWOK_VALUE.to_string(),
                )])),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec {
                provider_id: Some(format!("{PROVIDER_PREFIX}{name}")),
                taints: Some(taints),
                ..NodeSpec::default()
            }),
            status: Some(NodeStatus {
                capacity: Some(claims::quantities(&it.capacity)),
                allocatable: Some(claims::quantities(&it.allocatable())),
                phase: Some("Pending".into()),
                ..NodeStatus::default()
            }),
        };
        let stored = match self.nodes.create(&PostParams::default(), &node).await {
            Ok(n) => n,
            // Launched before (a retry, or a restart between launch and status): the
            // Node is the instance.
            Err(kube::Error::Api(s)) if s.code == 409 => self
                .nodes
                .get(&name)
                .await
                .map_err(|e| CreateError::Provider(e.to_string()))?,
            Err(e) => return Err(CreateError::Provider(e.to_string())),
        };
        let instance = self.instance(&stored).ok_or_else(|| {
            CreateError::Provider(format!("node {name} exists but is being deleted"))
        })?;
        Ok(Created {
            instance,
            refused: Vec::new(),
            annotations: Default::default(),
        })
    }

    async fn delete(&self, id: String) -> Result<(), ProviderError> {
        let name = id.strip_prefix(PROVIDER_PREFIX).unwrap_or(&id).to_string();
        self.terminated
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.clone());
        match self.nodes.delete(&name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(api_error(e)),
        }
    }

    /// Pages of [`LIST_PAGE`] Nodes: a Node with its status is some 15 KB, and the
    /// whole fleet in one answer was the largest thing on kerf's heap.
    async fn list(&self) -> Result<Vec<Instance>, ProviderError> {
        let mut params = ListParams::default()
            .labels(&format!("{KWOK_LABEL}={KWOK_VALUE}"))
            .limit(LIST_PAGE);
        let mut names = BTreeSet::new();
        let mut instances = Vec::new();
        loop {
            let page = self.nodes.list(&params).await.map_err(api_error)?;
            names.extend(page.items.iter().map(|n| n.name_any()));
            instances.extend(page.items.iter().filter_map(|n| self.instance(n)));
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
        // Forget terminated nodes that are gone.
        self.terminated
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|n| names.contains(n));
        Ok(instances)
    }
}
