//! Why a NodeClaim has drifted: the reason Karpenter writes on its `Drifted` condition,
//! and kerf's sentence saying how.

use std::fmt;

/// Karpenter's drift reasons (`cloudprovider.DriftReason`): the core's
/// (`nodeclaim/disruption/drift.go`) and the AWS provider's (`cloudprovider/drift.go`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DriftReason {
    /// The NodePool's template hash differs from the claim's, under the same hash version.
    NodePoolDrifted,
    /// The claim's labels no longer satisfy the NodePool's requirements.
    RequirementsDrifted,
    /// The claim's instance type (or any compatible offering of it) no longer exists.
    InstanceTypeNotFound,
    /// The EC2NodeClass's static-field hash differs from the claim's.
    NodeClassDrift,
    /// The instance's image is no longer among the EC2NodeClass's AMIs.
    AmiDrift,
    /// The instance's subnet is no longer among the EC2NodeClass's.
    SubnetDrift,
    /// The instance's security groups are no longer exactly the EC2NodeClass's.
    SecurityGroupDrift,
}

impl DriftReason {
    /// The reason as Karpenter spells it on the condition.
    pub fn as_str(self) -> &'static str {
        match self {
            DriftReason::NodePoolDrifted => "NodePoolDrifted",
            DriftReason::RequirementsDrifted => "RequirementsDrifted",
            DriftReason::InstanceTypeNotFound => "InstanceTypeNotFound",
            DriftReason::NodeClassDrift => "NodeClassDrift",
            DriftReason::AmiDrift => "AMIDrift",
            DriftReason::SubnetDrift => "SubnetDrift",
            DriftReason::SecurityGroupDrift => "SecurityGroupDrift",
        }
    }
}

impl fmt::Display for DriftReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A drifted NodeClaim: Karpenter's reason, and a sentence saying how (`NodePool
/// default's template changed (hash 1, now 2)`). It displays (and serializes) as the
/// sentence alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drift {
    pub reason: DriftReason,
    pub detail: String,
}

impl Drift {
    pub fn new(reason: DriftReason, detail: impl Into<String>) -> Drift {
        Drift {
            reason,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

impl serde::Serialize for Drift {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drift_shows_its_sentence_and_names_karpenters_reason() {
        let d = Drift::new(DriftReason::AmiDrift, "image ami-1 is gone");
        assert_eq!(d.to_string(), "image ami-1 is gone");
        assert_eq!(d.reason.as_str(), "AMIDrift");
    }
}
