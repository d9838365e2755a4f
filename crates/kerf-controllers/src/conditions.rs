//! The NodeClaim conditions `Drifted` and `Consolidatable`, as Karpenter's NodeClaim
//! disruption controller (`nodeclaim/disruption/{drift,consolidation}.go`) keeps them.
//!
//! The disruption pass says what each claim's conditions are
//! (`kerf_disruption::ClaimConditions`); after every full pass the queue compares that
//! with what each claim shows and asks the shell to write only what differs, so a
//! steady cluster writes nothing. As in Karpenter v1, a condition that holds is True and
//! one that does not is removed, never written False:
//!
//! - `Drifted`: True with Karpenter's reason (`NodePoolDrifted`, `RequirementsDrifted`,
//!   `InstanceTypeNotFound`, `NodeClassDrift`, `AMIDrift`, …) and kerf's sentence as the
//!   message (Karpenter repeats the reason there), on a launched claim; removed from one
//!   not launched;
//! - `Consolidatable`: True (reason `Consolidatable`, as `operatorpkg`'s `SetTrue`) once
//!   the claim is initialized and its NodePool's `consolidateAfter`, not `Never`, has run
//!   since its last pod event, on the clock emptiness and consolidation wait on.
//!
//! A claim being deleted is left as it is, as Karpenter leaves it; so is one the pass
//! does not judge (its NodePool is gone, or it has no node and none it will be).

use kerf_disruption::ClaimConditions;

use crate::{Action, ClusterView};

/// A condition kerf keeps on NodeClaims for disruption.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConditionType {
    Drifted,
    Consolidatable,
}

impl ConditionType {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionType::Drifted => "Drifted",
            ConditionType::Consolidatable => "Consolidatable",
        }
    }
}

/// The longest condition message kerf writes, in characters; longer ones are cut.
pub const MESSAGE_MAX: usize = 300;

/// A message as a condition shows it: at most [`MESSAGE_MAX`] characters.
pub fn condition_message(message: &str) -> String {
    message.chars().take(MESSAGE_MAX).collect()
}

/// A condition as a claim shows it (its transition time aside).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Shown {
    pub status: String,
    pub reason: String,
    pub message: String,
}

impl Shown {
    /// Status True, with `reason` and `message` (cut to [`MESSAGE_MAX`]).
    pub fn true_(reason: &str, message: &str) -> Shown {
        Shown {
            status: "True".into(),
            reason: reason.into(),
            message: condition_message(message),
        }
    }
}

/// Asks for each condition of `judged` that the claim does not show as it should be.
pub(crate) fn reconcile(view: &ClusterView, judged: &[ClaimConditions], out: &mut Vec<Action>) {
    for j in judged {
        let Some(claim) = view.claims.get(&j.claim) else {
            continue;
        };
        if claim.deleting_since.is_some() {
            continue;
        }
        let drifted = (j.drifted.as_ref())
            .filter(|_| claim.provider_id.is_some())
            .map(|d| Shown::true_(d.reason.as_str(), &d.detail));
        let consolidatable =
            (j.consolidatable).then(|| Shown::true_(ConditionType::Consolidatable.as_str(), ""));
        for (condition, shown, to) in [
            (ConditionType::Drifted, &claim.drifted, drifted),
            (
                ConditionType::Consolidatable,
                &claim.consolidatable,
                consolidatable,
            ),
        ] {
            if *shown != to {
                out.push(Action::SetCondition {
                    claim: claim.name.clone(),
                    condition,
                    to,
                });
            }
        }
    }
}
