//! A launch, planned without calling AWS: which offerings survive (zones the class has
//! subnets in, offerings not marked unavailable, an image that suits the type), which
//! image each type gets, the launch templates (named by a hash of their content), the
//! CreateFleet overrides (instance type × zonal subnet, at most 60 types) and the tags.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::NodeSelectorRequirement;
use kerf_api::crd::{BlockDeviceMapping, EC2NodeClassSpec, EC2NodeClassStatus};
use kerf_cloud::{LaunchRequest, Offer};
use kerf_model::InstanceType;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::ice::Unavailable;
use crate::tags;
use crate::userdata::{self, Bootstrap};

pub const MAX_INSTANCE_TYPES: usize = 60;

/// Whether an instance type's labels meet an image's requirements.
pub fn meets(labels: &BTreeMap<String, String>, reqs: &[NodeSelectorRequirement]) -> bool {
    reqs.iter().all(|r| {
        let got = labels.get(&r.key);
        let values = r.values.as_deref().unwrap_or_default();
        match r.operator.as_str() {
            "In" => got.is_some_and(|v| values.contains(v)),
            "NotIn" => got.is_none_or(|v| !values.contains(v)),
            "Exists" => got.is_some(),
            "DoesNotExist" => got.is_none(),
            "Gt" | "Lt" => {
                let (Some(g), Some(bound)) = (
                    got.and_then(|v| v.parse::<i64>().ok()),
                    values.first().and_then(|v| v.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if r.operator == "Gt" {
                    g > bound
                } else {
                    g < bound
                }
            }
            _ => false,
        }
    })
}

/// The cluster facts user data needs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterFacts {
    pub name: String,
    pub endpoint: String,
    pub ca_bundle: String,
    pub cidr: Option<String>,
}

/// A launch template's content; its name is the hash of this.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TemplateContent {
    pub image_id: String,
    pub user_data: String,
    pub security_group_ids: Vec<String>,
    pub instance_profile: String,
    pub http_tokens: String,
    pub http_endpoint: String,
    pub http_put_response_hop_limit: i64,
    pub block_devices: Vec<BlockDeviceMapping>,
    pub detailed_monitoring: bool,
    pub associate_public_ip: Option<bool>,
    pub tags: BTreeMap<String, String>,
}

impl TemplateContent {
    /// `karpenter.k8s.aws/<hash>`, as Karpenter names its templates.
    pub fn name(&self) -> String {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        let digest = Sha256::digest(bytes);
        let hex: String = digest.iter().take(10).map(|b| format!("{b:02x}")).collect();
        format!("karpenter.k8s.aws/{hex}")
    }
}

/// One CreateFleet override.
#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    pub instance_type: String,
    pub zone: String,
    pub subnet_id: String,
    pub image_id: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TemplatePlan {
    pub content: TemplateContent,
    pub overrides: Vec<Override>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LaunchPlan {
    /// `spot` or `on-demand`.
    pub capacity_type: String,
    pub templates: Vec<TemplatePlan>,
    /// On the instance, its volumes and the fleet.
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("no offering of NodeClaim {claim} can launch: {why}")]
    Nothing { claim: String, why: String },
}

/// The tags on everything a launch creates: the class's own, then Karpenter's (which the
/// class may not override).
pub fn launch_tags(
    spec: &EC2NodeClassSpec,
    cluster: &str,
    request: &LaunchRequest,
) -> BTreeMap<String, String> {
    let mut t = spec.tags.clone();
    t.insert(tags::cluster_owned(cluster), "owned".to_string());
    t.insert(tags::EKS_CLUSTER.to_string(), cluster.to_string());
    t.insert(tags::NODEPOOL.to_string(), request.nodepool.clone());
    t.insert(
        tags::NODECLASS.to_string(),
        request.node_class.clone().unwrap_or_default(),
    );
    t.insert(tags::NODECLAIM.to_string(), request.claim.clone());
    t
}

/// The family the class's user data is written for.
pub fn family(spec: &EC2NodeClassSpec) -> String {
    if let Some(alias) = crate::resolve::has_alias(&spec.ami_selector_terms)
        && let Some(f) = crate::ami::alias_family(alias)
    {
        return f.to_string();
    }
    spec.ami_family
        .clone()
        .unwrap_or_else(|| "AL2023".to_string())
}

pub struct PlanInput<'a> {
    pub request: &'a LaunchRequest,
    pub spec: &'a EC2NodeClassSpec,
    pub status: &'a EC2NodeClassStatus,
    pub catalog: &'a [InstanceType],
    pub unavailable: &'a Unavailable,
    pub cluster: &'a ClusterFacts,
    pub now_ms: i64,
}

pub fn plan(input: &PlanInput) -> Result<LaunchPlan, PlanError> {
    let PlanInput {
        request,
        spec,
        status,
        catalog,
        unavailable,
        cluster,
        now_ms,
    } = input;
    let nothing = |why: String| PlanError::Nothing {
        claim: request.claim.clone(),
        why,
    };
    let instance_profile = status
        .instance_profile
        .clone()
        .ok_or_else(|| nothing("the EC2NodeClass has no instance profile yet".into()))?;
    // Spot whenever the claim allows it (Karpenter's rule); else on-demand.
    let capacity_type = if request.options.iter().any(|o| o.capacity_type == "spot") {
        "spot"
    } else {
        "on-demand"
    };
    let mut overrides: Vec<Override> = Vec::new();
    let mut types_seen: Vec<String> = Vec::new();
    let mut dropped = Vec::new();
    for o in request
        .options
        .iter()
        .filter(|o| o.capacity_type == capacity_type)
    {
        if unavailable.is_unavailable(o, *now_ms) {
            dropped.push(format!("{o}: recently out of capacity"));
            continue;
        }
        // The subnet with the most free addresses in the zone (status order).
        let Some(subnet) = status.subnets.iter().find(|s| s.zone == o.zone) else {
            dropped.push(format!("{o}: no selected subnet in {}", o.zone));
            continue;
        };
        let Some(it) = catalog.iter().find(|t| t.name == o.instance_type) else {
            dropped.push(format!("{o}: not in the catalog"));
            continue;
        };
        let Some(image) = status
            .amis
            .iter()
            .find(|a| meets(&it.labels, &a.requirements))
        else {
            dropped.push(format!("{o}: no resolved image suits it"));
            continue;
        };
        if !types_seen.contains(&o.instance_type) {
            if types_seen.len() == MAX_INSTANCE_TYPES {
                continue;
            }
            types_seen.push(o.instance_type.clone());
        }
        overrides.push(Override {
            instance_type: o.instance_type.clone(),
            zone: o.zone.clone(),
            subnet_id: subnet.id.clone(),
            image_id: image.id.clone(),
        });
    }
    if overrides.is_empty() {
        return Err(nothing(if dropped.is_empty() {
            "no options were given".into()
        } else {
            dropped.join("; ")
        }));
    }
    let tags = launch_tags(spec, &cluster.name, request);
    let mut taints = request.taints.clone();
    taints.extend(request.startup_taints.iter().cloned());
    let boot = Bootstrap {
        cluster_name: &cluster.name,
        endpoint: &cluster.endpoint,
        ca_bundle: &cluster.ca_bundle,
        cluster_cidr: cluster.cidr.as_deref(),
        labels: &request.labels,
        taints: &taints,
        kubelet: spec.kubelet.as_ref(),
        custom: spec.user_data.as_deref(),
    };
    let user_data = match family(spec).as_str() {
        "Bottlerocket" => userdata::bottlerocket(&boot),
        _ => userdata::al2023(&boot),
    };
    let mut by_image: BTreeMap<String, Vec<Override>> = BTreeMap::new();
    for o in overrides {
        by_image.entry(o.image_id.clone()).or_default().push(o);
    }
    let md = &spec.metadata_options;
    let templates = by_image
        .into_iter()
        .map(|(image_id, overrides)| TemplatePlan {
            content: TemplateContent {
                image_id,
                user_data: user_data.clone(),
                security_group_ids: status
                    .security_groups
                    .iter()
                    .map(|g| g.id.clone())
                    .collect(),
                instance_profile: instance_profile.clone(),
                http_tokens: md.http_tokens.clone().unwrap_or_else(|| "required".into()),
                http_endpoint: md.http_endpoint.clone().unwrap_or_else(|| "enabled".into()),
                http_put_response_hop_limit: md.http_put_response_hop_limit.unwrap_or(1),
                block_devices: spec.block_device_mappings.clone(),
                detailed_monitoring: spec.detailed_monitoring.unwrap_or(false),
                associate_public_ip: spec.associate_public_ip_address,
                // The template carries the class's and the cluster's tags, not the
                // claim's: one template serves every claim of its content.
                tags: tags
                    .iter()
                    .filter(|(k, _)| k.as_str() != tags::NODECLAIM)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            },
            overrides,
        })
        .collect();
    Ok(LaunchPlan {
        capacity_type: capacity_type.to_string(),
        templates,
        tags,
    })
}

/// The offers a fleet error names, for marking them unavailable.
pub fn offer_of(o: &Override, capacity_type: &str) -> Offer {
    Offer {
        instance_type: o.instance_type.clone(),
        zone: o.zone.clone(),
        capacity_type: capacity_type.to_string(),
    }
}
