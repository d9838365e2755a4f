//! EC2NodeClass resolution: selectors → what EC2, SSM and IAM answer → the status.
//!
//! The calls are thin ([`Resolver`]); what they answer is turned into the status by pure
//! functions ([`order_subnets`], [`select_images`], [`conditions`]) that unit tests drive
//! directly.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::error::DisplayErrorContext;
use k8s_openapi::api::core::v1::NodeSelectorRequirement;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kerf_api::crd::{
    AMI, AMISelectorTerm, EC2NodeClass, EC2NodeClassSpec, EC2NodeClassStatus, SecurityGroup, Subnet,
};
use kube::ResourceExt;
use sha2::{Digest, Sha256};

use crate::ami::{self, AliasParameter};
use crate::filters::{self, FilterSet};
use crate::{Clients, tags};

pub const SUBNETS_READY: &str = "SubnetsReady";
pub const SECURITY_GROUPS_READY: &str = "SecurityGroupsReady";
pub const AMIS_READY: &str = "AMIsReady";
pub const INSTANCE_PROFILE_READY: &str = "InstanceProfileReady";
pub const READY: &str = "Ready";

/// A subnet as DescribeSubnets reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct FoundSubnet {
    pub id: String,
    pub zone: String,
    pub zone_id: Option<String>,
    pub free_addresses: i32,
}

/// Most free addresses first, then by ID so the order is stable.
pub fn order_subnets(mut found: Vec<FoundSubnet>) -> Vec<Subnet> {
    found.sort_by(|a, b| {
        b.free_addresses
            .cmp(&a.free_addresses)
            .then_with(|| a.id.cmp(&b.id))
    });
    let mut seen = BTreeSet::new();
    found
        .into_iter()
        .filter(|s| seen.insert(s.id.clone()))
        .map(|s| Subnet {
            id: s.id,
            zone: s.zone,
            zone_id: s.zone_id,
        })
        .collect()
}

/// An image a term matched, with the requirements it carries.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub id: String,
    pub name: Option<String>,
    /// RFC 3339, as EC2 reports it; compared as text (same format throughout).
    pub created: String,
    pub deprecated: bool,
    pub requirements: Vec<NodeSelectorRequirement>,
}

fn requirements_key(r: &[NodeSelectorRequirement]) -> String {
    let mut parts: Vec<String> = r
        .iter()
        .map(|q| {
            let mut values = q.values.clone().unwrap_or_default();
            values.sort();
            format!("{} {} {}", q.key, q.operator, values.join(","))
        })
        .collect();
    parts.sort();
    parts.join(";")
}

/// The newest non-deprecated image per requirement set (a deprecated one only where the
/// set has nothing else), newest first.
pub fn select_images(candidates: Vec<Candidate>) -> Vec<AMI> {
    let mut best: BTreeMap<String, Candidate> = BTreeMap::new();
    for c in candidates {
        let key = requirements_key(&c.requirements);
        let better = match best.get(&key) {
            None => true,
            Some(b) => (!c.deprecated, &c.created, &c.id) > (!b.deprecated, &b.created, &b.id),
        };
        if better {
            best.insert(key, c);
        }
    }
    let mut chosen: Vec<Candidate> = best.into_values().collect();
    chosen.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
    chosen
        .into_iter()
        .map(|c| AMI {
            id: c.id,
            deprecated: c.deprecated,
            name: c.name,
            requirements: c.requirements,
        })
        .collect()
}

/// One part's outcome: ready, or why not (`reason`, `message`).
pub type Part = Result<(), (String, String)>;

fn condition(type_: &str, part: &Part, generation: Option<i64>, now: &Time) -> Condition {
    let (status, reason, message) = match part {
        Ok(()) => ("True", type_.to_string(), String::new()),
        Err((reason, message)) => ("False", reason.clone(), message.clone()),
    };
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason,
        message,
        observed_generation: generation,
        last_transition_time: now.clone(),
    }
}

/// The five conditions; a condition whose status did not change keeps its
/// `lastTransitionTime`.
pub fn conditions(
    parts: [(&str, Part); 4],
    previous: &[Condition],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let not_ready: Vec<&str> = parts
        .iter()
        .filter(|(_, p)| p.is_err())
        .map(|(t, _)| *t)
        .collect();
    let ready: Part = if not_ready.is_empty() {
        Ok(())
    } else {
        Err((
            "NotReady".to_string(),
            format!("{} not ready", not_ready.join(", ")),
        ))
    };
    let mut out: Vec<Condition> = parts
        .iter()
        .map(|(t, p)| condition(t, p, generation, now))
        .collect();
    out.push(condition(READY, &ready, generation, now));
    for c in &mut out {
        if let Some(prev) = previous.iter().find(|p| p.type_ == c.type_)
            && prev.status == c.status
        {
            c.last_transition_time = prev.last_transition_time.clone();
        }
    }
    out
}

/// Whether the status says the class may launch.
pub fn is_ready(status: &EC2NodeClassStatus) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == READY && c.status == "True")
}

/// The message of the first condition that is not True, for a launch refused because of it.
pub fn not_ready_message(status: &EC2NodeClassStatus) -> String {
    status
        .conditions
        .iter()
        .find(|c| c.type_ != READY && c.status != "True")
        .map(|c| format!("{}: {}", c.type_, c.message))
        .unwrap_or_else(|| "not resolved yet".to_string())
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// The instance profile kerf makes for a class with `role`: `<cluster>_<hash>`, the hash
/// of region, class name and UID (a class recreated under the same name gets its own).
pub fn managed_profile_name(cluster: &str, region: &str, class: &str, uid: &str) -> String {
    let digest = Sha256::digest(format!("{region}/{class}/{uid}"));
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{cluster}_{hex}")
}

/// The IAM path of the instance profile kerf makes for a class:
/// `/karpenter/<region>/<cluster>/<uid>/`, Karpenter's. Only a profile there is kerf's.
pub fn managed_profile_path(cluster: &str, region: &str, uid: &str) -> String {
    format!("/karpenter/{region}/{cluster}/{uid}/")
}

/// `GetInstanceProfile`, with a profile that does not exist as `None`; any other error as
/// the SDK's text.
pub(crate) async fn get_instance_profile(
    iam: &aws_sdk_iam::Client,
    name: &str,
) -> Result<Option<aws_sdk_iam::types::InstanceProfile>, String> {
    match iam
        .get_instance_profile()
        .instance_profile_name(name)
        .send()
        .await
    {
        Ok(out) => Ok(out.instance_profile),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_no_such_entity_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(DisplayErrorContext(e).to_string()),
    }
}

/// The UIDs of classes whose managed instance profile the termination finalizer has
/// deleted ([`crate::termination::cleanup`]), held while a managed profile is created or
/// deleted: a resolution that was under way when its class was deleted cannot create the
/// profile again after the cleanup (in this process).
pub(crate) static MANAGED_PROFILES_DELETED: tokio::sync::Mutex<BTreeSet<String>> =
    tokio::sync::Mutex::const_new(BTreeSet::new());

/// What resolution needs to know about the cluster.
#[derive(Clone, Debug)]
pub struct Resolver {
    pub clients: Clients,
    pub cluster: String,
    /// `major.minor`, for the alias parameters.
    pub k8s_version: String,
}

fn sdk_err<E: std::error::Error>(what: &str, e: E) -> (String, String) {
    (
        "DescribeFailed".to_string(),
        format!("{what}: {}", DisplayErrorContext(e)),
    )
}

impl Resolver {
    /// Resolves `nc` into a status (conditions included). Never fails: what went wrong
    /// is in the conditions.
    pub async fn resolve(&self, nc: &EC2NodeClass, now: jiff::Timestamp) -> EC2NodeClassStatus {
        let spec = &nc.spec;
        let name = nc.name_any();
        let previous = nc.status.clone().unwrap_or_default();
        let (subnets, sn_part) = match self.subnets(spec).await {
            Ok(s) if s.is_empty() => (
                Vec::new(),
                Err((
                    "SubnetsNotFound".to_string(),
                    format!(
                        "no subnet matches subnetSelectorTerms {}",
                        json(&spec.subnet_selector_terms)
                    ),
                )),
            ),
            Ok(s) => (s, Ok(())),
            Err(e) => (Vec::new(), Err(e)),
        };
        let (groups, sg_part) = match self.security_groups(spec).await {
            Ok(s) if s.is_empty() => (
                Vec::new(),
                Err((
                    "SecurityGroupsNotFound".to_string(),
                    format!(
                        "no security group matches securityGroupSelectorTerms {}",
                        json(&spec.security_group_selector_terms)
                    ),
                )),
            ),
            Ok(s) => (s, Ok(())),
            Err(e) => (Vec::new(), Err(e)),
        };
        let (amis, ami_part) = match self.amis(spec, now).await {
            Ok(a) if a.is_empty() => (
                Vec::new(),
                Err((
                    "AMINotFound".to_string(),
                    format!(
                        "no image matches amiSelectorTerms {}",
                        json(&spec.ami_selector_terms)
                    ),
                )),
            ),
            Ok(a) => (a, Ok(())),
            Err(e) => (Vec::new(), Err(e)),
        };
        let uid = nc.uid().unwrap_or_default();
        let (profile, ip_part) = match self.instance_profile(spec, &name, &uid).await {
            Ok(p) => (Some(p), Ok(())),
            Err(e) => (None, Err(e)),
        };
        let now = Time(now);
        EC2NodeClassStatus {
            subnets,
            security_groups: groups,
            amis,
            instance_profile: profile,
            conditions: conditions(
                [
                    (SUBNETS_READY, sn_part),
                    (SECURITY_GROUPS_READY, sg_part),
                    (AMIS_READY, ami_part),
                    (INSTANCE_PROFILE_READY, ip_part),
                ],
                &previous.conditions,
                nc.metadata.generation,
                &now,
            ),
        }
    }

    pub async fn subnets(&self, spec: &EC2NodeClassSpec) -> Result<Vec<Subnet>, (String, String)> {
        let mut found = Vec::new();
        for set in filters::subnet_filter_sets(&spec.subnet_selector_terms) {
            let out = self
                .clients
                .ec2
                .describe_subnets()
                .set_filters(Some(sdk_filters(&set)))
                .send()
                .await
                .map_err(|e| sdk_err("DescribeSubnets", e))?;
            for s in out.subnets() {
                found.push(FoundSubnet {
                    id: s.subnet_id().unwrap_or_default().to_string(),
                    zone: s.availability_zone().unwrap_or_default().to_string(),
                    zone_id: s.availability_zone_id().map(str::to_string),
                    free_addresses: s.available_ip_address_count().unwrap_or(0),
                });
            }
        }
        Ok(order_subnets(found))
    }

    pub async fn security_groups(
        &self,
        spec: &EC2NodeClassSpec,
    ) -> Result<Vec<SecurityGroup>, (String, String)> {
        let mut out: BTreeMap<String, SecurityGroup> = BTreeMap::new();
        for set in filters::security_group_filter_sets(&spec.security_group_selector_terms) {
            let answer = self
                .clients
                .ec2
                .describe_security_groups()
                .set_filters(Some(sdk_filters(&set)))
                .send()
                .await
                .map_err(|e| sdk_err("DescribeSecurityGroups", e))?;
            for g in answer.security_groups() {
                let id = g.group_id().unwrap_or_default().to_string();
                out.insert(
                    id.clone(),
                    SecurityGroup {
                        id,
                        name: g.group_name().map(str::to_string),
                    },
                );
            }
        }
        Ok(out.into_values().collect())
    }

    pub async fn amis(
        &self,
        spec: &EC2NodeClassSpec,
        now: jiff::Timestamp,
    ) -> Result<Vec<AMI>, (String, String)> {
        let mut candidates = Vec::new();
        // Aliases and SSM terms name images through parameters; the rest are queries.
        let mut by_parameter: Vec<AliasParameter> = Vec::new();
        for term in &spec.ami_selector_terms {
            if let Some(alias) = &term.alias {
                by_parameter.extend(
                    ami::alias_parameters(alias, &self.k8s_version)
                        .map_err(|e| ("AMINotFound".to_string(), e.to_string()))?,
                );
            } else if let Some(p) = &term.ssm_parameter {
                by_parameter.push(AliasParameter {
                    path: p.clone(),
                    requirements: Vec::new(),
                });
            }
        }
        if !by_parameter.is_empty() {
            let ids = self.parameters(&by_parameter).await?;
            let wanted: Vec<String> = ids
                .values()
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            if !wanted.is_empty() {
                let images = self
                    .describe_images(
                        &[filters::Filter::new("image-id", wanted.clone())],
                        &[],
                        now,
                    )
                    .await?;
                for p in &by_parameter {
                    let Some(id) = ids.get(&p.path) else { continue };
                    let Some(image) = images.iter().find(|i| &i.id == id) else {
                        continue;
                    };
                    let mut c = image.clone();
                    if !p.requirements.is_empty() {
                        c.requirements = p.requirements.clone();
                    }
                    candidates.push(c);
                }
            }
        }
        for q in filters::image_queries(&spec.ami_selector_terms) {
            candidates.extend(self.describe_images(&q.filters, &q.owners, now).await?);
        }
        Ok(select_images(candidates))
    }

    /// Reads parameters in batches of 10 (GetParameters); names that do not exist are
    /// simply absent from the answer.
    async fn parameters(
        &self,
        params: &[AliasParameter],
    ) -> Result<BTreeMap<String, String>, (String, String)> {
        let names: Vec<String> = params
            .iter()
            .map(|p| p.path.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut out = BTreeMap::new();
        for chunk in names.chunks(10) {
            let answer = self
                .clients
                .ssm
                .get_parameters()
                .set_names(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| sdk_err("SSM GetParameters", e))?;
            for p in answer.parameters() {
                if let (Some(n), Some(v)) = (p.name(), p.value()) {
                    out.insert(n.to_string(), v.to_string());
                }
            }
        }
        Ok(out)
    }

    async fn describe_images(
        &self,
        filters: &[filters::Filter],
        owners: &[String],
        now: jiff::Timestamp,
    ) -> Result<Vec<Candidate>, (String, String)> {
        let mut req = self
            .clients
            .ec2
            .describe_images()
            .set_filters(Some(filters.iter().map(filters::Filter::sdk).collect()));
        if !owners.is_empty() {
            req = req.set_owners(Some(owners.to_vec()));
        }
        let answer = req.send().await.map_err(|e| sdk_err("DescribeImages", e))?;
        Ok(answer
            .images()
            .iter()
            .map(|i| {
                let deprecated = i
                    .deprecation_time()
                    .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                    .is_some_and(|t| t <= now);
                let arch = i
                    .architecture()
                    .map(|a| a.as_str().to_string())
                    .unwrap_or_else(|| "x86_64".to_string());
                Candidate {
                    id: i.image_id().unwrap_or_default().to_string(),
                    name: i.name().map(str::to_string),
                    created: i.creation_date().unwrap_or_default().to_string(),
                    deprecated,
                    requirements: vec![ami::req(ami::ARCH, "In", &[ami::kube_arch(&arch)])],
                }
            })
            .collect())
    }

    /// `instanceProfile` is checked to exist; `role` gets a profile kerf creates (tagged
    /// as Karpenter tags its own), holding that role and nothing else.
    pub async fn instance_profile(
        &self,
        spec: &EC2NodeClassSpec,
        class: &str,
        uid: &str,
    ) -> Result<String, (String, String)> {
        let iam = &self.clients.iam;
        let err =
            |what: &str, e: String| ("InstanceProfileError".to_string(), format!("{what}: {e}"));
        if let Some(profile) = &spec.instance_profile {
            return match get_instance_profile(iam, profile).await {
                Ok(Some(_)) => Ok(profile.clone()),
                Ok(None) => Err((
                    "InstanceProfileNotFound".to_string(),
                    format!("spec.instanceProfile {profile:?} does not exist"),
                )),
                Err(e) => Err(err("GetInstanceProfile", e)),
            };
        }
        let Some(role) = &spec.role else {
            return Err((
                "InstanceProfileNotFound".to_string(),
                "neither spec.role nor spec.instanceProfile is set".to_string(),
            ));
        };
        let region = &self.clients.region;
        let name = managed_profile_name(&self.cluster, region, class, uid);
        let deleted = MANAGED_PROFILES_DELETED.lock().await;
        if deleted.contains(uid) {
            return Err((
                "InstanceProfileNotFound".to_string(),
                "the class is being deleted: its instance profile is gone".to_string(),
            ));
        }
        let existing = get_instance_profile(iam, &name)
            .await
            .map_err(|e| err("GetInstanceProfile", e))?;
        let roles: Vec<String> = match &existing {
            Some(p) => p
                .roles()
                .iter()
                .map(|r| r.role_name().to_string())
                .collect(),
            None => {
                let mut tag_list = vec![
                    (tags::cluster_owned(&self.cluster), "owned".to_string()),
                    (tags::EKS_CLUSTER.to_string(), self.cluster.clone()),
                    (tags::NODECLASS.to_string(), class.to_string()),
                    (tags::REGION.to_string(), region.clone()),
                ];
                tag_list.extend(spec.tags.iter().map(|(k, v)| (k.clone(), v.clone())));
                let iam_tags = tag_list
                    .into_iter()
                    .filter_map(|(k, v)| {
                        aws_sdk_iam::types::Tag::builder()
                            .key(k)
                            .value(v)
                            .build()
                            .ok()
                    })
                    .collect();
                iam.create_instance_profile()
                    .instance_profile_name(&name)
                    .path(managed_profile_path(&self.cluster, region, uid))
                    .set_tags(Some(iam_tags))
                    .send()
                    .await
                    .map_err(|e| {
                        err("CreateInstanceProfile", DisplayErrorContext(e).to_string())
                    })?;
                Vec::new()
            }
        };
        if roles.iter().any(|r| r == role) {
            return Ok(name);
        }
        for other in &roles {
            iam.remove_role_from_instance_profile()
                .instance_profile_name(&name)
                .role_name(other)
                .send()
                .await
                .map_err(|e| {
                    err(
                        "RemoveRoleFromInstanceProfile",
                        DisplayErrorContext(e).to_string(),
                    )
                })?;
        }
        iam.add_role_to_instance_profile()
            .instance_profile_name(&name)
            .role_name(role)
            .send()
            .await
            .map_err(|e| {
                (
                    "InstanceProfileError".to_string(),
                    format!(
                        "spec.role {role:?}: AddRoleToInstanceProfile: {}",
                        DisplayErrorContext(e)
                    ),
                )
            })?;
        Ok(name)
    }
}

fn sdk_filters(set: &FilterSet) -> Vec<aws_sdk_ec2::types::Filter> {
    set.iter().map(filters::Filter::sdk).collect()
}

/// Whether `term` is an alias term (the family is then implied).
pub fn has_alias(terms: &[AMISelectorTerm]) -> Option<&str> {
    terms.iter().find_map(|t| t.alias.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(id: &str, created: &str, deprecated: bool, arch: &str) -> Candidate {
        Candidate {
            id: id.into(),
            name: None,
            created: created.into(),
            deprecated,
            requirements: vec![ami::req(ami::ARCH, "In", &[arch])],
        }
    }

    #[test]
    fn newest_non_deprecated_per_requirement_set() {
        let got = select_images(vec![
            cand("ami-old", "2025-01-01T00:00:00.000Z", false, "amd64"),
            cand("ami-new-dep", "2025-06-01T00:00:00.000Z", true, "amd64"),
            cand("ami-mid", "2025-03-01T00:00:00.000Z", false, "amd64"),
            cand("ami-arm-dep", "2025-02-01T00:00:00.000Z", true, "arm64"),
        ]);
        let ids: Vec<&str> = got.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, vec!["ami-mid", "ami-arm-dep"]);
        assert!(got[1].deprecated);
    }

    #[test]
    fn subnets_most_free_first() {
        let s = |id: &str, free| FoundSubnet {
            id: id.into(),
            zone: "z".into(),
            zone_id: None,
            free_addresses: free,
        };
        let got = order_subnets(vec![s("a", 10), s("b", 300), s("c", 10), s("b", 300)]);
        let ids: Vec<&str> = got.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, vec!["b", "a", "c"]);
    }

    #[test]
    fn ready_only_when_every_part_is_and_transitions_are_kept() {
        let t0 = Time("2026-01-01T00:00:00Z".parse().unwrap());
        let t1 = Time("2026-01-01T00:01:00Z".parse().unwrap());
        let bad: Part = Err(("SubnetsNotFound".into(), "no subnet".into()));
        let first = conditions(
            [
                (SUBNETS_READY, bad.clone()),
                (SECURITY_GROUPS_READY, Ok(())),
                (AMIS_READY, Ok(())),
                (INSTANCE_PROFILE_READY, Ok(())),
            ],
            &[],
            Some(1),
            &t0,
        );
        let ready = first.iter().find(|c| c.type_ == READY).unwrap();
        assert_eq!(ready.status, "False");
        assert_eq!(ready.message, "SubnetsReady not ready");
        let second = conditions(
            [
                (SUBNETS_READY, Ok(())),
                (SECURITY_GROUPS_READY, Ok(())),
                (AMIS_READY, Ok(())),
                (INSTANCE_PROFILE_READY, Ok(())),
            ],
            &first,
            Some(1),
            &t1,
        );
        let sn = second.iter().find(|c| c.type_ == SUBNETS_READY).unwrap();
        assert_eq!(
            (sn.status.as_str(), &sn.last_transition_time),
            ("True", &t1)
        );
        let sg = second
            .iter()
            .find(|c| c.type_ == SECURITY_GROUPS_READY)
            .unwrap();
        assert_eq!(sg.last_transition_time, t0);
    }
}
