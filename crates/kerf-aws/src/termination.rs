//! The EC2NodeClass termination finalizer, `karpenter.k8s.aws/termination`, as
//! Karpenter's nodeclass controller has it: on every class; when the class is deleted it
//! waits for the NodeClaims whose `spec.nodeClassRef` names it (a
//! `WaitingOnNodeClaimTermination` event on the class every 10 minutes meanwhile), then
//! deletes what kerf made for the class — its launch templates (tagged
//! `eks:eks-cluster-name=<cluster>` and `karpenter.k8s.aws/ec2nodeclass=<name>`) and the
//! instance profile it manages for `spec.role` — and only then removes the finalizer.
//!
//! Every step is safe to repeat: what is already gone is NotFound and counts as done,
//! nothing is deleted that does not carry kerf's marks (both tags on a template; the
//! managed name and the class's path `/karpenter/<region>/<cluster>/<uid>/` on a
//! profile; a profile named by `spec.instanceProfile` is the user's and never touched),
//! and finalizer patches carry the `resourceVersion` they were computed from, so a
//! conflicting writer gets a 409 and the patch is recomputed on fresh state.
//!
//! [`decide`] is the decision, without I/O; [`cleanup`] makes the AWS calls; [`run`] is
//! the loop (kube-runtime's `Controller`, triggered by the classes and by the NodeClaims
//! that name them).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_ec2::types::Filter;
use futures::StreamExt;
use kerf_api::crd::{EC2NodeClass, NodeClaim};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use tokio_util::sync::CancellationToken;

use crate::{AwsProvider, Clients, resolve, tags};

pub const FINALIZER: &str = "karpenter.k8s.aws/termination";
pub const WAITING_ON_NODECLAIM_TERMINATION: &str = "WaitingOnNodeClaimTermination";
/// How often the waiting event is published again (Karpenter's requeue while waiting).
pub const WAITING_EVENT_EVERY_MS: i64 = 10 * 60 * 1000;
/// While waiting, the claims are listed again this often, besides on every change of a
/// claim naming the class.
const RECHECK: Duration = Duration::from_secs(60);

/// What to do next with one class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing: the class is live and carries the finalizer, or it is being deleted and
    /// the finalizer is no longer on it.
    Idle,
    /// A live class without the finalizer.
    AddFinalizer,
    /// Deleting, but these NodeClaims still use it; publish the waiting event when due.
    Wait {
        claims: Vec<String>,
        publish_event: bool,
    },
    /// Deleting and unused: delete its launch templates and managed instance profile,
    /// then (only when that succeeded) remove the finalizer.
    CleanUpThenRemoveFinalizer,
}

/// What [`decide`] looks at.
#[derive(Clone, Debug)]
pub struct Observed<'a> {
    pub deleting: bool,
    pub finalizers: &'a [String],
    /// The NodeClaims naming the class (deleting ones included); listed only when the
    /// class is deleting.
    pub claims: Vec<String>,
    /// When (ms) this process last published the waiting event about the class.
    pub last_event_ms: Option<i64>,
    pub now_ms: i64,
}

pub fn decide(o: &Observed) -> Step {
    let has = o.finalizers.iter().any(|f| f == FINALIZER);
    match (o.deleting, has) {
        (false, true) | (true, false) => Step::Idle,
        (false, false) => Step::AddFinalizer,
        (true, true) if !o.claims.is_empty() => {
            let mut claims = o.claims.clone();
            claims.sort();
            Step::Wait {
                claims,
                publish_event: o
                    .last_event_ms
                    .is_none_or(|t| o.now_ms - t >= WAITING_EVENT_EVERY_MS),
            }
        }
        (true, true) => Step::CleanUpThenRemoveFinalizer,
    }
}

/// Whether `claim`'s `spec.nodeClassRef` names the EC2NodeClass `class`.
pub fn uses(claim: &NodeClaim, class: &str) -> bool {
    let r = &claim.spec.node_class_ref;
    r.group == "karpenter.k8s.aws" && r.kind == "EC2NodeClass" && r.name == class
}

/// Karpenter's message: the first five names, then how many more.
pub fn waiting_message(claims: &[String]) -> String {
    let shown = claims
        .iter()
        .take(5)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if claims.len() > 5 {
        format!(
            "Waiting on NodeClaim termination for {shown} and {} other(s)",
            claims.len() - 5
        )
    } else {
        format!("Waiting on NodeClaim termination for {shown}")
    }
}

/// What [`cleanup`] deleted (or found already gone).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cleaned {
    /// Names of the launch templates deleted.
    pub launch_templates: Vec<String>,
    /// The managed instance profile, when one was found and deleted.
    pub instance_profile: Option<String>,
}

fn is_not_found(code: &str) -> bool {
    code.contains("NotFound") || code == "NoSuchEntity"
}

/// Deletes what kerf made for `nc` in `cluster`: the launch templates carrying both
/// `eks:eks-cluster-name=<cluster>` and `karpenter.k8s.aws/ec2nodeclass=<name>`, and the
/// instance profile kerf manages for the class (its roles removed first). Already gone
/// is done; an error leaves the rest for the next attempt.
pub async fn cleanup(
    clients: &Clients,
    cluster: &str,
    nc: &EC2NodeClass,
) -> Result<Cleaned, String> {
    let name = nc.name_any();
    let mut cleaned = Cleaned::default();
    let tag = |k: &str, v: &str| Filter::builder().name(format!("tag:{k}")).values(v).build();
    let mut pages = clients
        .ec2
        .describe_launch_templates()
        .filters(tag(tags::EKS_CLUSTER, cluster))
        .filters(tag(tags::NODECLASS, &name))
        .into_paginator()
        .send();
    let mut found = Vec::new();
    while let Some(page) = pages.next().await {
        let page =
            page.map_err(|e| format!("DescribeLaunchTemplates: {}", DisplayErrorContext(e)))?;
        for lt in page.launch_templates() {
            // The filter is the scope; the tags are checked again so that an endpoint
            // ignoring a filter cannot make kerf delete another's template.
            let has = |k: &str, v: &str| {
                lt.tags()
                    .iter()
                    .any(|t| t.key() == Some(k) && t.value() == Some(v))
            };
            if has(tags::EKS_CLUSTER, cluster)
                && has(tags::NODECLASS, &name)
                && let (Some(id), Some(n)) = (lt.launch_template_id(), lt.launch_template_name())
            {
                found.push((id.to_string(), n.to_string()));
            }
        }
    }
    for (id, lt_name) in found {
        match clients
            .ec2
            .delete_launch_template()
            .launch_template_id(&id)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| is_not_found(s.code().unwrap_or(""))) => {}
            Err(e) => {
                return Err(format!(
                    "DeleteLaunchTemplate {lt_name}: {}",
                    DisplayErrorContext(e)
                ));
            }
        }
        cleaned.launch_templates.push(lt_name);
    }

    let Some(uid) = nc.uid() else {
        return Ok(cleaned);
    };
    let region = &clients.region;
    let profile = resolve::managed_profile_name(cluster, region, &name, &uid);
    if nc.spec.instance_profile.as_deref() == Some(profile.as_str()) {
        // The user's own, even if named like kerf's.
        return Ok(cleaned);
    }
    // Held until the profile is gone, and recorded, so that a resolution of this class
    // still under way cannot make the profile again.
    let mut deleted = resolve::MANAGED_PROFILES_DELETED.lock().await;
    let iam = &clients.iam;
    let got = resolve::get_instance_profile(iam, &profile)
        .await
        .map_err(|e| format!("GetInstanceProfile {profile}: {e}"))?;
    if let Some(p) = got {
        let path = resolve::managed_profile_path(cluster, region, &uid);
        if p.path() != path {
            tracing::warn!(
                profile,
                path = p.path(),
                "instance profile not on the class's path: not kerf's, left alone"
            );
            deleted.insert(uid);
            return Ok(cleaned);
        }
        for role in p.roles() {
            match iam
                .remove_role_from_instance_profile()
                .instance_profile_name(&profile)
                .role_name(role.role_name())
                .send()
                .await
            {
                Ok(_) => {}
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_no_such_entity_exception()) => {}
                Err(e) => {
                    return Err(format!(
                        "RemoveRoleFromInstanceProfile {profile} {}: {}",
                        role.role_name(),
                        DisplayErrorContext(e)
                    ));
                }
            }
        }
        match iam
            .delete_instance_profile()
            .instance_profile_name(&profile)
            .send()
            .await
        {
            Ok(_) => cleaned.instance_profile = Some(profile),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_no_such_entity_exception()) => {}
            Err(e) => {
                return Err(format!(
                    "DeleteInstanceProfile {profile}: {}",
                    DisplayErrorContext(e)
                ));
            }
        }
    }
    deleted.insert(uid);
    Ok(cleaned)
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Failed(String);

struct Ctx {
    classes: Api<EC2NodeClass>,
    claims: Api<NodeClaim>,
    provider: Arc<AwsProvider>,
    cluster: String,
    recorder: Recorder,
    /// Class UID → when the waiting event was last published.
    waited: Mutex<BTreeMap<String, i64>>,
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Sets the class's finalizers to `change(current)` on the version they were read from;
/// on a 409 reads the class again and recomputes. `change` returning `None` means there
/// is nothing to write. A class already gone is done.
async fn patch_finalizers(
    api: &Api<EC2NodeClass>,
    nc: &EC2NodeClass,
    change: impl Fn(&EC2NodeClass) -> Option<Vec<String>>,
) -> Result<(), Failed> {
    let name = nc.name_any();
    let mut current = nc.clone();
    for _ in 0..5 {
        let Some(finalizers) = change(&current) else {
            return Ok(());
        };
        let body = serde_json::json!({"metadata": {
            "resourceVersion": current.resource_version(),
            "finalizers": finalizers,
        }});
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&body))
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => match api.get_opt(&name).await {
                Ok(Some(fresh)) => current = fresh,
                Ok(None) => return Ok(()),
                Err(e) => return Err(Failed(format!("EC2NodeClass {name}: {e}"))),
            },
            Err(e) => {
                return Err(Failed(format!(
                    "patching EC2NodeClass {name}'s finalizers: {e}"
                )));
            }
        }
    }
    Err(Failed(format!(
        "EC2NodeClass {name}: finalizers kept conflicting"
    )))
}

async fn reconcile(nc: Arc<EC2NodeClass>, ctx: Arc<Ctx>) -> Result<Action, Failed> {
    let name = nc.name_any();
    let uid = nc.uid().unwrap_or_default();
    let deleting = nc.meta().deletion_timestamp.is_some();
    let has = nc.finalizers().iter().any(|f| f == FINALIZER);
    let claims = if deleting && has {
        ctx.claims
            .list(&Default::default())
            .await
            .map_err(|e| Failed(format!("listing NodeClaims: {e}")))?
            .items
            .iter()
            .filter(|c| uses(c, &name))
            .map(ResourceExt::name_any)
            .collect()
    } else {
        Vec::new()
    };
    let now = now_ms();
    let last_event_ms = ctx.waited.lock().ok().and_then(|w| w.get(&uid).copied());
    let step = decide(&Observed {
        deleting,
        finalizers: nc.finalizers(),
        claims,
        last_event_ms,
        now_ms: now,
    });
    match step {
        Step::Idle => Ok(Action::await_change()),
        Step::AddFinalizer => {
            patch_finalizers(&ctx.classes, &nc, |c| {
                if c.meta().deletion_timestamp.is_some()
                    || c.finalizers().iter().any(|f| f == FINALIZER)
                {
                    return None;
                }
                let mut f = c.finalizers().to_vec();
                f.push(FINALIZER.to_string());
                Some(f)
            })
            .await?;
            Ok(Action::await_change())
        }
        Step::Wait {
            claims,
            publish_event,
        } => {
            tracing::debug!(class = %name, ?claims, "EC2NodeClass deleting: waiting on its NodeClaims");
            if publish_event {
                if let Ok(mut w) = ctx.waited.lock() {
                    w.insert(uid, now);
                }
                let event = Event {
                    type_: EventType::Normal,
                    reason: WAITING_ON_NODECLAIM_TERMINATION.into(),
                    note: Some(waiting_message(&claims)),
                    action: WAITING_ON_NODECLAIM_TERMINATION.into(),
                    secondary: None,
                };
                if let Err(e) = ctx.recorder.publish(&event, &nc.object_ref(&())).await {
                    tracing::debug!(class = %name, error = %e, "event not recorded");
                }
            }
            Ok(Action::requeue(RECHECK))
        }
        Step::CleanUpThenRemoveFinalizer => {
            let cleaned = cleanup(ctx.provider.clients(), &ctx.cluster, &nc)
                .await
                .map_err(|e| Failed(format!("EC2NodeClass {name}: cleanup: {e}")))?;
            ctx.provider
                .forget_templates(&cleaned.launch_templates)
                .await;
            tracing::info!(
                class = %name,
                launch_templates = ?cleaned.launch_templates,
                instance_profile = ?cleaned.instance_profile,
                "EC2NodeClass cleaned up"
            );
            patch_finalizers(&ctx.classes, &nc, |c| {
                if !c.finalizers().iter().any(|f| f == FINALIZER) {
                    return None;
                }
                Some(
                    c.finalizers()
                        .iter()
                        .filter(|f| *f != FINALIZER)
                        .cloned()
                        .collect(),
                )
            })
            .await?;
            if let Ok(mut w) = ctx.waited.lock() {
                w.remove(&uid);
            }
            Ok(Action::await_change())
        }
    }
}

fn error_policy(nc: Arc<EC2NodeClass>, e: &Failed, _: Arc<Ctx>) -> Action {
    tracing::warn!(class = %nc.name_any(), error = %e, "EC2NodeClass termination");
    Action::requeue(Duration::from_secs(10))
}

/// Runs until cancelled: reconciles every EC2NodeClass when it changes and when a
/// NodeClaim naming it changes or goes away.
pub async fn run(
    classes: Api<EC2NodeClass>,
    claims: Api<NodeClaim>,
    provider: Arc<AwsProvider>,
    cluster: String,
    recorder: Recorder,
    cancel: CancellationToken,
) {
    let ctx = Arc::new(Ctx {
        classes: classes.clone(),
        claims: claims.clone(),
        provider,
        cluster,
        recorder,
        waited: Mutex::new(BTreeMap::new()),
    });
    Controller::new(classes, watcher::Config::default())
        .watches(claims, watcher::Config::default(), |c: NodeClaim| {
            let r = &c.spec.node_class_ref;
            (r.group == "karpenter.k8s.aws" && r.kind == "EC2NodeClass")
                .then(|| ObjectRef::<EC2NodeClass>::new(&r.name))
        })
        .graceful_shutdown_on(async move { cancel.cancelled().await })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(deleting: bool, finalizers: &[String], claims: &[&str], last: Option<i64>) -> Step {
        decide(&Observed {
            deleting,
            finalizers,
            claims: claims.iter().map(|c| c.to_string()).collect(),
            last_event_ms: last,
            now_ms: 1_000_000_000,
        })
    }

    #[test]
    fn a_live_class_gets_the_finalizer_once() {
        assert_eq!(obs(false, &[], &[], None), Step::AddFinalizer);
        let others = vec!["example.com/keep".to_string()];
        assert_eq!(obs(false, &others, &[], None), Step::AddFinalizer);
        let ours = vec!["example.com/keep".to_string(), FINALIZER.to_string()];
        assert_eq!(obs(false, &ours, &[], None), Step::Idle);
        // Claims do not matter while it lives.
        assert_eq!(obs(false, &ours, &["a"], None), Step::Idle);
    }

    #[test]
    fn a_deleting_class_waits_for_its_claims_with_an_event_every_ten_minutes() {
        let ours = vec![FINALIZER.to_string()];
        let now = 1_000_000_000;
        let wait = |publish_event| Step::Wait {
            claims: vec!["a".into(), "b".into()],
            publish_event,
        };
        assert_eq!(obs(true, &ours, &["b", "a"], None), wait(true));
        assert_eq!(
            obs(true, &ours, &["b", "a"], Some(now - 60_000)),
            wait(false)
        );
        assert_eq!(
            obs(
                true,
                &ours,
                &["b", "a"],
                Some(now - WAITING_EVENT_EVERY_MS + 1)
            ),
            wait(false)
        );
        assert_eq!(
            obs(true, &ours, &["b", "a"], Some(now - WAITING_EVENT_EVERY_MS)),
            wait(true)
        );
    }

    #[test]
    fn an_unused_deleting_class_is_cleaned_up_and_then_left_alone() {
        let ours = vec![FINALIZER.to_string(), "example.com/keep".to_string()];
        assert_eq!(
            obs(true, &ours, &[], Some(0)),
            Step::CleanUpThenRemoveFinalizer
        );
        // Once the finalizer is off (ours removed, another's kept), nothing more; and a
        // deleting class never gets the finalizer back.
        let others = vec!["example.com/keep".to_string()];
        assert_eq!(obs(true, &others, &[], None), Step::Idle);
        assert_eq!(obs(true, &[], &["a"], None), Step::Idle);
    }

    #[test]
    fn the_waiting_message_names_five_claims() {
        let names: Vec<String> = (1..=7).map(|i| format!("c{i}")).collect();
        assert_eq!(
            waiting_message(&names[..2]),
            "Waiting on NodeClaim termination for c1, c2"
        );
        assert_eq!(
            waiting_message(&names),
            "Waiting on NodeClaim termination for c1, c2, c3, c4, c5 and 2 other(s)"
        );
    }

    fn claim(group: &str, kind: &str, name: &str) -> NodeClaim {
        let mut c: NodeClaim = serde_json::from_value(serde_json::json!({
            "apiVersion": "karpenter.sh/v1",
            "kind": "NodeClaim",
            "metadata": {"name": "c"},
            "spec": {
                "nodeClassRef": {"group": group, "kind": kind, "name": name},
                "requirements": [],
            },
        }))
        .unwrap();
        c.metadata.name = Some("c".into());
        c
    }

    #[test]
    fn a_claim_uses_the_class_its_node_class_ref_names() {
        assert!(uses(
            &claim("karpenter.k8s.aws", "EC2NodeClass", "default"),
            "default"
        ));
        assert!(!uses(
            &claim("karpenter.k8s.aws", "EC2NodeClass", "other"),
            "default"
        ));
        assert!(!uses(
            &claim("karpenter.kwok.sh", "KWOKNodeClass", "default"),
            "default"
        ));
    }
}
