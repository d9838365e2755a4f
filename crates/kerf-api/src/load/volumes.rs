//! PersistentVolumes, their claims and StorageClasses. A claim bound to a zonal volume
//! (an EBS volume lives in one zone) pins every pod that mounts it to that zone, which the
//! scheduler must know before it picks a node. Binding is read both ways: a claim's
//! `spec.volumeName`, or a volume's `spec.claimRef`, since a dump of a cluster may hold
//! only one side.
//!
//! A claim not bound yet pins its pods to the zones its StorageClass's
//! `allowedTopologies` allow (Karpenter's volume topology): the volume will be created in
//! one of them. With `volumeBindingMode: WaitForFirstConsumer` the volume follows the
//! pod, as planned. With `Immediate` it is created before the pod is scheduled, in a zone
//! kerf cannot know; Karpenter waits for such a claim to bind before provisioning for its
//! pod. kerf, a dry run over manifests that may not be applied yet, plans the pod within
//! the class's zones all the same, and warns that the volume may land in another of them.
//! A claim without `storageClassName` gets the default class (annotation
//! `storageclass.kubernetes.io/is-default-class: "true"`; the newest if several are), as
//! the API server's admission gives it; `storageClassName: ""` means no class.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1 as core;
use kerf_model::pod::VolumeZone;
use kerf_model::{Pod, Requirement, Requirements, labels};

use super::Problems;
use super::pods::node_selector_term;

/// Zone keys a volume's node affinity may use, all meaning the standard zone label.
const ZONE_KEYS: [&str; 3] = [
    labels::ZONE,
    // The EBS CSI driver's own topology key.
    "topology.ebs.csi.aws.com/zone",
    // The label Kubernetes used before 1.17, still on volumes provisioned back then.
    "failure-domain.beta.kubernetes.io/zone",
];

#[derive(Default)]
pub(crate) struct VolumeIndex {
    /// Volume name → the zones its node affinity allows, for zonal volumes.
    zones: BTreeMap<String, Requirement>,
    /// (namespace, claim) → volume, from volumes' `claimRef`.
    claimed_by: BTreeMap<(String, String), String>,
    /// (namespace, claim) → volume, from claims' `volumeName`.
    bound_to: BTreeMap<(String, String), String>,
    /// (namespace, claim) → the StorageClass it names, for every claim read or templated.
    class_of: BTreeMap<(String, String), ClassRef>,
    classes: BTreeMap<String, Class>,
}

/// Which StorageClass a claim uses.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ClassRef {
    Named(String),
    /// No `storageClassName`: the default class.
    Default,
    /// `storageClassName: ""`: none, only volumes bound by hand.
    None,
}

impl ClassRef {
    fn from_spec(name: Option<&String>) -> ClassRef {
        match name.map(String::as_str) {
            None => ClassRef::Default,
            Some("") => ClassRef::None,
            Some(n) => ClassRef::Named(n.to_string()),
        }
    }
}

struct Class {
    /// The zones `allowedTopologies` allow; `None` when it does not restrict zones.
    zones: Option<Requirement>,
    immediate: bool,
    /// Marked default, with its creation time (the newest default wins).
    default: Option<Option<i64>>,
}

/// An unbound claim whose class binds `Immediate`ly, for the warning.
pub(crate) struct ImmediateClaim<'a> {
    pub(crate) class: &'a str,
    pub(crate) zones: &'a Requirement,
}

impl VolumeIndex {
    pub(crate) fn add_volume(
        &mut self,
        name: &str,
        pv: &core::PersistentVolume,
        problems: &mut Problems,
    ) {
        let Some(spec) = pv.spec.as_ref() else { return };
        if let Some(claim) = spec.claim_ref.as_ref()
            && let Some(claim_name) = claim.name.as_ref()
        {
            let namespace = claim.namespace.clone().unwrap_or_else(|| "default".into());
            self.claimed_by
                .insert((namespace, claim_name.clone()), name.to_string());
        }
        let Some(selector) = spec
            .node_affinity
            .as_ref()
            .and_then(|a| a.required.as_ref())
        else {
            return;
        };
        let mut term_zones = Vec::new();
        for (i, term) in selector.node_selector_terms.iter().enumerate() {
            let path = format!("spec.nodeAffinity.required.nodeSelectorTerms[{i}]");
            let Some(requirements) = node_selector_term(term, &path, problems) else {
                continue;
            };
            term_zones.push(zone_of_term(&requirements));
        }
        if let Some(zone) = union(term_zones) {
            self.zones.insert(name.to_string(), zone);
        }
    }

    pub(crate) fn add_class(
        &mut self,
        name: &str,
        sc: &k8s_openapi::api::storage::v1::StorageClass,
    ) {
        let mut term_zones = Vec::new();
        for term in sc.allowed_topologies.iter().flatten() {
            let mut requirements = Requirements::new();
            for e in term.match_label_expressions.iter().flatten() {
                requirements.add(&e.key, Requirement::any_of(e.values.clone()));
            }
            term_zones.push(zone_of_term(&requirements));
        }
        let annotations = sc.metadata.annotations.as_ref();
        let marked = |key: &str| {
            annotations
                .and_then(|a| a.get(key))
                .is_some_and(|v| v == "true")
        };
        let default = (marked("storageclass.kubernetes.io/is-default-class")
            || marked("storageclass.beta.kubernetes.io/is-default-class"))
        .then(|| {
            sc.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_second())
        });
        self.classes.insert(
            name.to_string(),
            Class {
                zones: union(term_zones),
                // The API server's default binding mode.
                immediate: sc.volume_binding_mode.as_deref().unwrap_or("Immediate") == "Immediate",
                default,
            },
        );
    }

    /// A claim a pod's template creates (a StatefulSet's volumeClaimTemplates, an
    /// ephemeral volume), when the input has no PersistentVolumeClaim of that name.
    pub(crate) fn add_template_claim(
        &mut self,
        namespace: &str,
        name: &str,
        class: Option<&String>,
    ) {
        self.class_of
            .entry((namespace.to_string(), name.to_string()))
            .or_insert_with(|| ClassRef::from_spec(class));
    }

    pub(crate) fn add_claim(
        &mut self,
        namespace: &str,
        name: &str,
        pvc: &core::PersistentVolumeClaim,
    ) {
        self.class_of.insert(
            (namespace.to_string(), name.to_string()),
            ClassRef::from_spec(
                pvc.spec
                    .as_ref()
                    .and_then(|s| s.storage_class_name.as_ref()),
            ),
        );
        if let Some(volume) = pvc
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_ref())
            .filter(|v| !v.is_empty())
        {
            self.bound_to
                .insert((namespace.to_string(), name.to_string()), volume.clone());
        }
    }

    /// The zones a pod mounting this claim may run in: those of the zonal volume it is
    /// bound to; for a claim not bound yet, those its StorageClass allows.
    pub(crate) fn zone_of_claim(&self, namespace: &str, claim: &str) -> Option<&Requirement> {
        let key = (namespace.to_string(), claim.to_string());
        match self
            .bound_to
            .get(&key)
            .or_else(|| self.claimed_by.get(&key))
        {
            Some(volume) => self.zones.get(volume),
            None => self.class_of_claim(&key)?.1.zones.as_ref(),
        }
    }

    /// The claim's class, when it is not bound and its class is among those read and
    /// binds `Immediate`ly and restricts zones: its volume goes to one of them, before
    /// and whatever the pod.
    pub(crate) fn immediate_unbound(
        &self,
        namespace: &str,
        claim: &str,
    ) -> Option<ImmediateClaim<'_>> {
        let key = (namespace.to_string(), claim.to_string());
        if self.bound_to.contains_key(&key) || self.claimed_by.contains_key(&key) {
            return None;
        }
        let (class, c) = self.class_of_claim(&key)?;
        Some(ImmediateClaim {
            class,
            zones: c.zones.as_ref().filter(|_| c.immediate)?,
        })
    }

    fn class_of_claim(&self, key: &(String, String)) -> Option<(&str, &Class)> {
        match self.class_of.get(key)? {
            ClassRef::Named(name) => self
                .classes
                .get_key_value(name)
                .map(|(n, c)| (n.as_str(), c)),
            ClassRef::Default => self
                .classes
                .iter()
                .filter_map(|(n, c)| Some((c.default?, n)))
                // The newest default, as admission picks it; by name when undated.
                .max()
                .map(|(_, n)| (n.as_str(), &self.classes[n])),
            ClassRef::None => None,
        }
    }
}

/// The zone requirement of one term, all zone keys intersected; `None` if the term says
/// nothing about zones.
fn zone_of_term(term: &Requirements) -> Option<Requirement> {
    ZONE_KEYS
        .iter()
        .filter_map(|k| term.get(k))
        .fold(None, |acc: Option<Requirement>, r| {
            Some(acc.map_or_else(|| r.clone(), |a| a.intersection(r)))
        })
}

/// Terms are ORed. A volume is zonal only when every term names zones; several terms
/// combine when each lists its zones (`In`), which is how every provisioner writes them.
fn union(terms: Vec<Option<Requirement>>) -> Option<Requirement> {
    let mut terms: Vec<Requirement> = terms.into_iter().collect::<Option<_>>()?;
    match terms.len() {
        0 => None,
        1 => terms.pop(),
        _ => {
            let mut values = Vec::new();
            for t in &terms {
                values.extend(t.values()?.iter().cloned());
            }
            Some(Requirement::any_of(values))
        }
    }
}

/// Confines the pod to the zones of the volume bound to `claim`. The zones stay apart
/// from the pod's node affinity: they restrict where it may run, but a topology spread's
/// domains come from its node affinity and the nodes alone, as kube-scheduler counts them
/// (Karpenter issues 1239 and 2777).
pub(crate) fn pin_zone(pod: &mut Pod, claim: &str, zone: &Requirement) {
    pod.volume_zones.push(VolumeZone {
        claim: claim.to_string(),
        zones: zone.clone(),
    });
}
