//! PersistentVolumes and their claims. A claim bound to a zonal volume (an EBS volume
//! lives in one zone) pins every pod that mounts it to that zone, which the scheduler must
//! know before it picks a node. Binding is read both ways: a claim's `spec.volumeName`,
//! or a volume's `spec.claimRef`, since a dump of a cluster may hold only one side.

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

    pub(crate) fn add_claim(
        &mut self,
        namespace: &str,
        name: &str,
        pvc: &core::PersistentVolumeClaim,
    ) {
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

    /// The zones a pod mounting this claim may run in, when the claim is bound to a zonal
    /// volume.
    pub(crate) fn zone_of_claim(&self, namespace: &str, claim: &str) -> Option<&Requirement> {
        let key = (namespace.to_string(), claim.to_string());
        let volume = self
            .bound_to
            .get(&key)
            .or_else(|| self.claimed_by.get(&key))?;
        self.zones.get(volume)
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
