//! NodeClaims between the API and the loops: the `Claim` the provisioner or the
//! disruption queue opened becomes a `karpenter.sh/v1` NodeClaim shaped as Karpenter
//! makes one (labels, hash annotations, an owner reference to its NodePool, requirements
//! narrowed to the chosen options, the termination finalizer before launch), and a stored
//! NodeClaim becomes the `Claim` the loops read — including one Karpenter made.
//!
//! One deliberate difference: the name is the loops' own (`<nodepool>-<ms>-<n>`), not an
//! API-server `generateName`, so a create that is retried after a lost answer finds the
//! claim it made (409) instead of making a second one.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, OwnerReference, Time};
use kerf_api::crd::{self, NodeClaim, NodeClaimSpec, NodeSelectorRequirementWithMinValues};
use kerf_cloud::Offer;
use kerf_controllers::{Claim, ConditionType, Shown};
use kerf_model::{Effect, InstanceType, Resources, Taint, labels};

/// The condition types a NodeClaim carries, in Karpenter's order.
pub const LAUNCHED: &str = "Launched";
pub const REGISTERED: &str = "Registered";
pub const INITIALIZED: &str = "Initialized";
pub const READY: &str = "Ready";
pub const DISRUPTION_REASON: &str = "DisruptionReason";

pub fn ms(t: &Time) -> i64 {
    t.0.as_millisecond()
}

pub fn time(ms: i64) -> Time {
    Time(Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH))
}

fn wire_taint(t: &Taint) -> crd::Taint {
    crd::Taint {
        key: t.key.clone(),
        value: (!t.value.is_empty()).then(|| t.value.clone()),
        effect: t.effect.as_str().to_string(),
        time_added: None,
    }
}

/// A taint as a Node carries it.
pub fn node_taint(t: &Taint) -> k8s_openapi::api::core::v1::Taint {
    k8s_openapi::api::core::v1::Taint {
        key: t.key.clone(),
        value: (!t.value.is_empty()).then(|| t.value.clone()),
        effect: t.effect.as_str().to_string(),
        time_added: None,
    }
}

/// Resources as a Node's or NodeClaim's `capacity`/`allocatable`.
pub fn quantities(resources: &Resources) -> BTreeMap<String, Quantity> {
    resources
        .iter()
        .map(|(name, q)| (name.to_string(), Quantity(Resources::render(name, q))))
        .collect()
}

fn model_taint(t: &crd::Taint) -> Option<Taint> {
    Some(Taint::new(
        t.key.clone(),
        t.value.clone().unwrap_or_default(),
        Effect::parse(&t.effect)?,
    ))
}

fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

fn requirement(key: &str, values: BTreeSet<&str>) -> NodeSelectorRequirementWithMinValues {
    NodeSelectorRequirementWithMinValues {
        key: key.to_string(),
        operator: "In".to_string(),
        values: values.into_iter().map(str::to_string).collect(),
        min_values: None,
    }
}

/// The NodeClaim to create for `claim`, owned by `pool` (its stored object, for the
/// owner reference, node class and template requirements).
pub fn to_nodeclaim(claim: &Claim, pool: &crd::NodePool) -> NodeClaim {
    let template = &pool.spec.template.spec;
    let narrowed = [labels::INSTANCE_TYPE, labels::CAPACITY_TYPE, labels::ZONE];
    let mut requirements: Vec<NodeSelectorRequirementWithMinValues> = template
        .requirements
        .iter()
        .flatten()
        .filter(|r| !narrowed.contains(&r.key.as_str()) && r.key != labels::NODEPOOL)
        .cloned()
        .collect();
    // `karpenter.sh/nodepool` is a label, not a requirement: the CRD refuses it there.
    let min_values = |key: &str| {
        template
            .requirements
            .iter()
            .flatten()
            .find(|r| r.key == key)
            .and_then(|r| r.min_values)
    };
    for (key, values) in [
        (
            labels::INSTANCE_TYPE,
            claim
                .options
                .iter()
                .map(|o| o.instance_type.as_str())
                .collect::<BTreeSet<_>>(),
        ),
        (
            labels::CAPACITY_TYPE,
            claim
                .options
                .iter()
                .map(|o| o.capacity_type.as_str())
                .collect(),
        ),
        (
            labels::ZONE,
            claim.options.iter().map(|o| o.zone.as_str()).collect(),
        ),
    ] {
        let mut r = requirement(key, values);
        r.min_values = min_values(key);
        requirements.push(r);
    }
    let owner = OwnerReference {
        api_version: "karpenter.sh/v1".into(),
        kind: "NodePool".into(),
        name: claim.nodepool.clone(),
        uid: pool.metadata.uid.clone().unwrap_or_default(),
        block_owner_deletion: Some(true),
        controller: None,
    };
    NodeClaim {
        metadata: ObjectMeta {
            name: Some(claim.name.clone()),
            labels: Some(claim.labels.clone()),
            annotations: Some(claim.annotations.clone()),
            owner_references: Some(vec![owner]),
            finalizers: Some(vec![labels::FINALIZER_TERMINATION.to_string()]),
            ..ObjectMeta::default()
        },
        spec: NodeClaimSpec {
            taints: claim.taints.iter().map(wire_taint).collect(),
            startup_taints: claim.startup_taints.iter().map(wire_taint).collect(),
            requirements,
            resources: crd::ResourceRequirements::default(),
            node_class_ref: template
                .node_class_ref
                .clone()
                .unwrap_or(crd::NodeClassReference {
                    group: String::new(),
                    kind: String::new(),
                    name: String::new(),
                }),
            termination_grace_period: claim.termination_grace_period.map(format_duration),
            expire_after: claim
                .expire_after
                .map_or_else(|| "Never".to_string(), format_duration),
        },
        status: None,
    }
}

fn condition_true(nc: &NodeClaim, type_: &str) -> bool {
    nc.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == "True")
    })
}

/// The offer lists of the claims read so far, by the requirements they come from
/// (instance types, zones, capacity types), so that claims with the same requirements
/// share one list: a claim allows tens of offerings, and a cluster has thousands of
/// claims from a handful of launches. The catalog is fixed for the process's life, so
/// the requirements alone say what the list is.
#[derive(Default)]
pub struct OfferLists {
    lists: BTreeMap<[Option<BTreeSet<String>>; 3], Arc<[Offer]>>,
    prune_at: usize,
}

impl OfferLists {
    fn get(
        &mut self,
        key: [Option<BTreeSet<String>>; 3],
        make: impl FnOnce(&[Option<BTreeSet<String>>; 3]) -> Vec<Offer>,
    ) -> Arc<[Offer]> {
        if let Some(list) = self.lists.get(&key) {
            return list.clone();
        }
        if self.lists.len() >= self.prune_at {
            // Lists no claim holds any more go; the threshold doubles with what stays.
            self.lists.retain(|_, list| Arc::strong_count(list) > 1);
            self.prune_at = (2 * self.lists.len()).max(64);
        }
        let list: Arc<[Offer]> = make(&key).into();
        self.lists.insert(key, list.clone());
        list
    }
}

/// The claim a stored NodeClaim is. Its options are the catalog's offerings its
/// requirements allow, cheapest first.
pub fn from_nodeclaim(nc: &NodeClaim, catalog: &[InstanceType], lists: &mut OfferLists) -> Claim {
    let meta = &nc.metadata;
    let labels_ = meta.labels.clone().unwrap_or_default();
    let values = |key: &str| -> Option<BTreeSet<String>> {
        nc.spec
            .requirements
            .iter()
            .find(|r| r.key == key && r.operator == "In")
            .map(|r| r.values.iter().cloned().collect())
    };
    let key = [
        values(labels::INSTANCE_TYPE),
        values(labels::ZONE),
        values(labels::CAPACITY_TYPE),
    ];
    let options = lists.get(key, |[types, zones, capacity_types]| {
        kerf_cloud::offers_cheapest_first(catalog, |it, o| {
            types.as_ref().is_none_or(|t| t.contains(&it.name))
                && zones.as_ref().is_none_or(|z| z.contains(&o.zone))
                && (capacity_types.as_ref()).is_none_or(|c| c.contains(&o.capacity_type))
        })
    });
    let status = nc.status.clone().unwrap_or_default();
    let provider_id = status.provider_id.clone().filter(|p| !p.is_empty());
    let launched = provider_id
        .as_ref()
        .and_then(|_| Offer::from_labels(&labels_));
    let deletion_reason = status
        .conditions
        .iter()
        .find(|c| c.type_ == DISRUPTION_REASON && c.status == "True")
        .and_then(|c| c.message.parse().ok());
    let shown = |type_: ConditionType| {
        (status.conditions.iter())
            .find(|c| c.type_ == type_.as_str())
            .map(|c| Shown {
                status: c.status.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
            })
    };
    Claim {
        name: meta.name.clone().unwrap_or_default(),
        nodepool: labels_.get(labels::NODEPOOL).cloned().unwrap_or_default(),
        annotations: meta.annotations.clone().unwrap_or_default(),
        taints: nc.spec.taints.iter().filter_map(model_taint).collect(),
        startup_taints: nc
            .spec
            .startup_taints
            .iter()
            .filter_map(model_taint)
            .collect(),
        options,
        created_at: meta.creation_timestamp.as_ref().map_or(0, ms),
        expire_after: crd::duration::parse_nillable(&nc.spec.expire_after).unwrap_or(None),
        termination_grace_period: nc
            .spec
            .termination_grace_period
            .as_deref()
            .and_then(|t| crd::duration::parse(t).ok()),
        provider_id,
        launched,
        image_id: status.image_id.clone(),
        node_name: status.node_name.clone().filter(|n| !n.is_empty()),
        initialized: condition_true(nc, INITIALIZED),
        deleting_since: meta.deletion_timestamp.as_ref().map(ms),
        deletion_reason,
        drifted: shown(ConditionType::Drifted),
        consolidatable: shown(ConditionType::Consolidatable),
        labels: labels_,
    }
}

/// Sets one condition, keeping its transition time when the status is unchanged, as
/// `operatorpkg`'s condition set does.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now_ms: i64,
) {
    let message = kerf_controllers::conditions::condition_message(message);
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = time(now_ms);
            }
            c.status = status.to_string();
            c.reason = reason.to_string();
            c.message = message;
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message,
            observed_generation: generation,
            last_transition_time: time(now_ms),
        }),
    }
}

/// The four lifecycle conditions a new NodeClaim starts with: Unknown, awaiting
/// reconciliation.
pub fn initial_conditions(generation: Option<i64>, now_ms: i64) -> Vec<Condition> {
    let mut conditions = Vec::new();
    for type_ in [LAUNCHED, REGISTERED, INITIALIZED, READY] {
        set_condition(
            &mut conditions,
            type_,
            "Unknown",
            "AwaitingReconciliation",
            "object is awaiting reconciliation",
            generation,
            now_ms,
        );
    }
    conditions
}

#[cfg(test)]
mod tests {
    use super::*;
    use kerf_model::Labels;

    fn pool() -> crd::NodePool {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "karpenter.sh/v1", "kind": "NodePool",
            "metadata": {"name": "default", "uid": "pool-uid"},
            "spec": {"template": {"spec": {
                "nodeClassRef": {"group": "karpenter.kwok.sh", "kind": "KWOKNodeClass", "name": "default"},
                "requirements": [
                    {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
                    {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot", "on-demand"]}
                ]}}}
        }))
        .unwrap()
    }

    #[test]
    fn a_claim_round_trips_through_its_nodeclaim() {
        let catalog = kerf_model::catalog::by_name("kwok").unwrap();
        let it = &catalog[0];
        let offer = Offer {
            instance_type: it.name.clone(),
            zone: it.offerings[0].zone.clone(),
            capacity_type: it.offerings[0].capacity_type.clone(),
        };
        let claim = Claim {
            name: "default-1764621234567-1".into(),
            nodepool: "default".into(),
            labels: Labels::from([(labels::NODEPOOL.to_string(), "default".to_string())]),
            annotations: Labels::new(),
            taints: vec![Taint::new("team", "a", Effect::NoSchedule)],
            startup_taints: vec![],
            options: vec![offer.clone()].into(),
            created_at: 0,
            expire_after: Some(Duration::from_secs(720 * 3600)),
            termination_grace_period: Some(Duration::from_secs(90)),
            provider_id: None,
            launched: None,
            image_id: None,
            node_name: None,
            initialized: false,
            deleting_since: None,
            deletion_reason: None,
            drifted: None,
            consolidatable: None,
        };
        let nc = to_nodeclaim(&claim, &pool());
        let meta = &nc.metadata;
        assert_eq!(
            meta.finalizers.as_deref(),
            Some(&[labels::FINALIZER_TERMINATION.to_string()][..])
        );
        assert_eq!(meta.owner_references.as_ref().unwrap()[0].uid, "pool-uid");
        assert_eq!(nc.spec.expire_after, "720h");
        assert_eq!(nc.spec.termination_grace_period.as_deref(), Some("90s"));
        let keys: Vec<&str> = nc
            .spec
            .requirements
            .iter()
            .map(|r| r.key.as_str())
            .collect();
        assert_eq!(
            keys,
            [
                labels::ARCH,
                labels::INSTANCE_TYPE,
                labels::CAPACITY_TYPE,
                labels::ZONE
            ]
        );
        let mut lists = OfferLists::default();
        let back = from_nodeclaim(&nc, &catalog, &mut lists);
        assert_eq!(*back.options, [offer]);
        // Another claim with the same requirements shares the list; one with others
        // gets its own.
        let mut twin = nc.clone();
        twin.metadata.name = Some("default-1764621234567-2".into());
        let twin = from_nodeclaim(&twin, &catalog, &mut lists);
        assert!(Arc::ptr_eq(&back.options, &twin.options));
        let mut other = nc.clone();
        other.spec.requirements.retain(|r| r.key != labels::ZONE);
        let other = from_nodeclaim(&other, &catalog, &mut lists);
        assert!(!Arc::ptr_eq(&back.options, &other.options));
        assert!(other.options.len() > back.options.len());
        assert_eq!(back.taints, claim.taints);
        assert_eq!(back.expire_after, claim.expire_after);
        assert_eq!(
            back.termination_grace_period,
            claim.termination_grace_period
        );
    }
}
