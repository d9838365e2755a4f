//! The contract a real cloud provider implements for `kerf controller`: the same three
//! calls as [`crate::CloudProvider`], asynchronous, since a real call takes seconds and
//! can fail. The shell (`kerf-kube`) calls it, concurrently and with timeouts, and
//! reports each outcome to the loops as an event; the loops never see it.
//!
//! No runtime is named here: the futures are plain `Send` futures, so this crate keeps
//! no tokio and no I/O of its own.

use std::future::Future;

use kerf_model::{InstanceType, Labels, Taint};

use crate::{CreateError, Created, Instance, Offer};

/// Everything a provider needs to launch one NodeClaim's instance. Owned, so a shell can
/// move it into a task.
#[derive(Clone, Debug, PartialEq)]
pub struct LaunchRequest {
    pub claim: String,
    pub nodepool: String,
    /// The node class the NodePool names (`spec.template.spec.nodeClassRef.name`).
    pub node_class: Option<String>,
    /// Offerings to try, in order.
    pub options: Vec<Offer>,
    pub image_id: String,
    /// Labels and taints the node registers with (`karpenter.sh/unregistered` is the
    /// provider's to add: kubelet registers with it, or the provider writes it).
    pub labels: Labels,
    pub taints: Vec<Taint>,
    pub startup_taints: Vec<Taint>,
    /// Milliseconds since the Unix epoch, for the instance's `launched_at`.
    pub now_ms: i64,
}

/// A call that failed for a reason other than capacity.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    pub message: String,
    /// Worth retrying as it is (throttling, a timeout, a 5xx).
    pub retryable: bool,
}

impl ProviderError {
    pub fn new(message: impl Into<String>, retryable: bool) -> ProviderError {
        ProviderError {
            message: message.into(),
            retryable,
        }
    }
}

/// A cloud behind `kerf controller`. `create` must be idempotent per claim: a retried or
/// repeated launch for the same claim finds the instance it made (by its claim tag or
/// name) rather than starting a second one.
pub trait Provider: Send + Sync + 'static {
    /// `aws`, `kwok`.
    fn name(&self) -> &'static str;
    /// The instance types and offerings the decisions may choose from now.
    fn instance_types(&self) -> Vec<InstanceType>;
    /// The node class kinds this provider reads, as `(group, kind)`.
    fn node_class_kind(&self) -> (&'static str, &'static str);
    fn create(
        &self,
        request: LaunchRequest,
    ) -> impl Future<Output = Result<Created, CreateError>> + Send;
    /// Terminate; an instance already gone is not an error.
    fn delete(&self, id: String) -> impl Future<Output = Result<(), ProviderError>> + Send;
    /// Every instance of this cluster not yet gone, with its claim.
    fn list(&self) -> impl Future<Output = Result<Vec<Instance>, ProviderError>> + Send;
}
