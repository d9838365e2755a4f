//! EC2NodeClass drift, as Karpenter's AWS provider finds it (`cloudprovider/drift.go`):
//!
//! - **static** (`NodeClassDrift`): the class's `karpenter.k8s.aws/ec2nodeclass-hash`
//!   differs from the one its NodeClaim was launched under. [`class_hash`] is that hash;
//!   the status writer ([`crate::status`]) keeps it on the class, [`claim_annotations`]
//!   puts it on each claim at launch, and the disruption pass compares the two;
//! - **dynamic**, from the instance itself ([`instance_drift`]): its image is no longer
//!   among the class's `status.amis` (`AMIDrift`), its security groups are no longer
//!   exactly the class's (`SecurityGroupDrift`), its subnet is no longer among the
//!   class's (`SubnetDrift`) — in Karpenter's order. A class whose status lists none of
//!   a kind has not resolved it, and nothing drifts on it.
//!
//! kerf cannot reproduce the bytes of Karpenter's Go `hashstructure` hash, so it writes
//! its own under its own `ec2nodeclass-hash-version` ([`HASH_VERSION`]). A class stamped
//! under another version (Karpenter's `v6`) is treated as Karpenter treats a version
//! bump (`nodeclass/hash`): its NodeClaims are re-stamped with the new hash before the
//! class is, so moving between Karpenter and kerf drifts no node.

use std::collections::BTreeSet;

use kerf_api::crd::{EC2NodeClassSpec, EC2NodeClassStatus};
use kerf_model::{Drift, DriftReason, Labels, labels};
use serde_json::Value;

/// The `karpenter.k8s.aws/ec2nodeclass-hash-version` kerf writes.
pub const HASH_VERSION: &str = "kerf-v1";

/// The spec fields resolved through selectors, or read through another path: they drift
/// nodes through the status (images, subnets, security groups), not through the hash
/// (Karpenter's `hash:"ignore"` fields). `amiFamily` is hashed as resolved instead.
const NOT_HASHED: [&str; 6] = [
    "subnetSelectorTerms",
    "securityGroupSelectorTerms",
    "capacityReservationSelectorTerms",
    "ipPrefixCount",
    "amiSelectorTerms",
    "amiFamily",
];

/// The hash of a class's static fields, as Karpenter's `EC2NodeClass.Hash` takes them:
/// the spec without [`NOT_HASHED`], the AMI family as resolved (so writing
/// `amiFamily: AL2023` beside the `al2023@latest` alias drifts nothing), and the
/// cluster CA. Lists are taken as sets and zero values as absent
/// (`SlicesAsSets`, `IgnoreZeroValue`), so a reordered or defaulted field drifts nothing.
pub fn class_hash(spec: &EC2NodeClassSpec, ca_bundle: &str) -> String {
    let mut value = serde_json::to_value(spec).unwrap_or_default();
    if let Some(fields) = value.as_object_mut() {
        for key in NOT_HASHED {
            fields.remove(key);
        }
        fields.insert(
            "amiFamily".into(),
            Value::String(crate::launch::family(spec)),
        );
        fields.insert("caBundle".into(), Value::String(ca_bundle.into()));
    }
    let canonical = canonical(value).unwrap_or(Value::Null).to_string();
    format!("{}", kerf_model::fnv1a_64(canonical.as_bytes()))
}

/// Keys sorted, lists sorted as sets, zero values (null, false, 0, "", empty) dropped.
fn canonical(value: Value) -> Option<Value> {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map
                .into_iter()
                .filter_map(|(k, v)| Some((k, canonical(v)?)))
                .collect();
            entries.sort_by(|(a, _), (b, _)| a.cmp(b));
            (!entries.is_empty()).then(|| Value::Object(entries.into_iter().collect()))
        }
        Value::Array(items) => {
            let mut items: Vec<Value> = items.into_iter().filter_map(canonical).collect();
            items.sort_by_cached_key(Value::to_string);
            (!items.is_empty()).then_some(Value::Array(items))
        }
        Value::Null | Value::Bool(false) => None,
        Value::String(s) if s.is_empty() => None,
        Value::Number(n) if n.as_f64() == Some(0.0) => None,
        other => Some(other),
    }
}

/// What kerf writes on a NodeClaim it launches from `spec` and `status` (Karpenter's
/// `Create`): the class hash and its version, and the instance profile.
pub fn claim_annotations(
    spec: &EC2NodeClassSpec,
    status: &EC2NodeClassStatus,
    ca_bundle: &str,
) -> Labels {
    let mut out = Labels::new();
    out.insert(
        labels::ANNOTATION_EC2NODECLASS_HASH.into(),
        class_hash(spec, ca_bundle),
    );
    out.insert(
        labels::ANNOTATION_EC2NODECLASS_HASH_VERSION.into(),
        HASH_VERSION.into(),
    );
    if let Some(profile) = &status.instance_profile {
        out.insert(
            labels::ANNOTATION_INSTANCE_PROFILE_NAME.into(),
            profile.clone(),
        );
    }
    out
}

/// What an instance runs on, as `DescribeInstances` reports it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Placement<'a> {
    pub image: &'a str,
    pub subnet: &'a str,
    pub security_groups: BTreeSet<&'a str>,
}

/// Why an instance of class `class` no longer matches the class's resolved `status`, if
/// it does not: the first of `AMIDrift`, `SecurityGroupDrift`, `SubnetDrift`.
///
/// Karpenter compares the image only with the AMIs that fit the instance's type
/// (`MapToInstanceTypes`); kerf with all of the class's, which differs only when an
/// image stays selected for one architecture or accelerator and goes for another.
pub fn instance_drift(class: &str, status: &EC2NodeClassStatus, at: &Placement) -> Option<Drift> {
    if !status.amis.is_empty()
        && !at.image.is_empty()
        && !status.amis.iter().any(|a| a.id == at.image)
    {
        let images: Vec<&str> = status.amis.iter().map(|a| a.id.as_str()).collect();
        let detail = format!(
            "image {} is no longer among EC2NodeClass {class}'s AMIs ({})",
            at.image,
            images.join(", ")
        );
        return Some(Drift::new(DriftReason::AmiDrift, detail));
    }
    let groups: BTreeSet<&str> = status
        .security_groups
        .iter()
        .map(|g| g.id.as_str())
        .collect();
    if !groups.is_empty() && groups != at.security_groups {
        let list = |s: &BTreeSet<&str>| s.iter().copied().collect::<Vec<_>>().join(", ");
        let detail = format!(
            "security groups [{}] are no longer EC2NodeClass {class}'s [{}]",
            list(&at.security_groups),
            list(&groups)
        );
        return Some(Drift::new(DriftReason::SecurityGroupDrift, detail));
    }
    if !status.subnets.is_empty()
        && !at.subnet.is_empty()
        && !status.subnets.iter().any(|s| s.id == at.subnet)
    {
        let subnets: Vec<&str> = status.subnets.iter().map(|s| s.id.as_str()).collect();
        let detail = format!(
            "subnet {} is no longer among EC2NodeClass {class}'s subnets ({})",
            at.subnet,
            subnets.join(", ")
        );
        return Some(Drift::new(DriftReason::SubnetDrift, detail));
    }
    None
}

#[cfg(test)]
mod tests {
    use kerf_api::crd::{AMI, SecurityGroup, Subnet};

    use super::*;

    fn spec(value: Value) -> EC2NodeClassSpec {
        serde_json::from_value(value).unwrap()
    }

    fn base() -> Value {
        serde_json::json!({
            "role": "KarpenterNodeRole",
            "amiSelectorTerms": [{"alias": "al2023@latest"}],
            "subnetSelectorTerms": [{"tags": {"karpenter.sh/discovery": "c"}}],
            "securityGroupSelectorTerms": [{"tags": {"karpenter.sh/discovery": "c"}}],
            "tags": {"team": "a"},
        })
    }

    fn with(field: &str, value: Value) -> Value {
        let mut v = base();
        v[field] = value;
        v
    }

    #[test]
    fn the_hash_moves_with_static_fields_and_not_with_selectors() {
        let hash = |v: Value| class_hash(&spec(v), "ca");
        let base = hash(base());
        assert_eq!(base, hash(self::base()), "deterministic");
        // Selector terms drift through the status, not the hash.
        let selected = serde_json::json!([{"tags": {"karpenter.sh/discovery": "d"}}]);
        assert_eq!(base, hash(with("subnetSelectorTerms", selected.clone())));
        assert_eq!(base, hash(with("securityGroupSelectorTerms", selected)));
        assert_eq!(
            base,
            hash(with(
                "amiSelectorTerms",
                serde_json::json!([{"alias": "al2023@v20250101"}])
            ))
        );
        // The family as resolved: naming the alias's own family changes nothing.
        assert_eq!(base, hash(with("amiFamily", "AL2023".into())));
        // Zero values are absent.
        assert_eq!(base, hash(with("detailedMonitoring", false.into())));
        // What changes the instances does drift.
        for changed in [
            with("tags", serde_json::json!({"team": "b"})),
            with("role", "OtherRole".into()),
            with("userData", "echo hi".into()),
            with("detailedMonitoring", true.into()),
            with("kubelet", serde_json::json!({"maxPods": 20})),
        ] {
            assert_ne!(base, hash(changed.clone()), "{changed}");
        }
        assert_ne!(base, class_hash(&spec(self::base()), "another ca"));
    }

    #[test]
    fn block_devices_are_a_set() {
        let xvda = serde_json::json!({"deviceName": "/dev/xvda", "ebs": {"volumeSize": "20Gi"}});
        let xvdb = serde_json::json!({"deviceName": "/dev/xvdb", "ebs": {"volumeSize": "100Gi"}});
        let hash = |v: Value| class_hash(&spec(v), "");
        let ab = hash(with("blockDeviceMappings", serde_json::json!([xvda, xvdb])));
        let ba = hash(with("blockDeviceMappings", serde_json::json!([xvdb, xvda])));
        assert_eq!(ab, ba);
        assert_ne!(ab, hash(base()));
    }

    fn status() -> EC2NodeClassStatus {
        EC2NodeClassStatus {
            subnets: ["subnet-a", "subnet-b"]
                .map(|id| Subnet {
                    id: id.into(),
                    ..Default::default()
                })
                .to_vec(),
            security_groups: ["sg-1", "sg-2"]
                .map(|id| SecurityGroup {
                    id: id.into(),
                    ..Default::default()
                })
                .to_vec(),
            amis: vec![AMI {
                id: "ami-new".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn at<'a>(image: &'a str, subnet: &'a str, groups: &[&'a str]) -> Placement<'a> {
        Placement {
            image,
            subnet,
            security_groups: groups.iter().copied().collect(),
        }
    }

    #[test]
    fn an_instance_drifts_on_image_then_security_groups_then_subnet() {
        let s = status();
        assert_eq!(
            instance_drift("c", &s, &at("ami-new", "subnet-a", &["sg-2", "sg-1"])),
            None
        );
        let all_wrong = at("ami-old", "subnet-z", &["sg-1"]);
        assert_eq!(
            instance_drift("c", &s, &all_wrong),
            Some(Drift::new(
                DriftReason::AmiDrift,
                "image ami-old is no longer among EC2NodeClass c's AMIs (ami-new)"
            ))
        );
        assert_eq!(
            instance_drift("c", &s, &at("ami-new", "subnet-z", &["sg-1"])),
            Some(Drift::new(
                DriftReason::SecurityGroupDrift,
                "security groups [sg-1] are no longer EC2NodeClass c's [sg-1, sg-2]"
            ))
        );
        // A superset is a change too: the set must be the class's exactly.
        assert!(
            instance_drift(
                "c",
                &s,
                &at("ami-new", "subnet-a", &["sg-1", "sg-2", "sg-3"])
            )
            .is_some()
        );
        assert_eq!(
            instance_drift("c", &s, &at("ami-new", "subnet-z", &["sg-1", "sg-2"])),
            Some(Drift::new(
                DriftReason::SubnetDrift,
                "subnet subnet-z is no longer among EC2NodeClass c's subnets (subnet-a, subnet-b)"
            ))
        );
    }

    #[test]
    fn nothing_unresolved_drifts() {
        let none = EC2NodeClassStatus::default();
        assert_eq!(
            instance_drift("c", &none, &at("ami-old", "subnet-z", &["sg-9"])),
            None
        );
    }

    #[test]
    fn claims_carry_the_hash_its_version_and_the_profile() {
        let mut s = status();
        s.instance_profile = Some("c_123".into());
        let a = claim_annotations(&spec(base()), &s, "ca");
        assert_eq!(
            a[labels::ANNOTATION_EC2NODECLASS_HASH],
            class_hash(&spec(base()), "ca")
        );
        assert_eq!(
            a[labels::ANNOTATION_EC2NODECLASS_HASH_VERSION],
            HASH_VERSION
        );
        assert_eq!(a[labels::ANNOTATION_INSTANCE_PROFILE_NAME], "c_123");
    }
}
