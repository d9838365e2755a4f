//! Interruption: the EventBridge messages that say an instance is going away, read from
//! the SQS queue `INTERRUPTION_QUEUE` names (Karpenter `pkg/controllers/interruption`).
//!
//! [`parse`] turns a message body into an [`Interruption`]; [`Queue::poll_once`] long-polls
//! (`ReceiveMessage`, 10 messages, 20 s) and deletes each message that was handled or
//! could not be parsed — a message whose handling failed stays, to come back after its
//! visibility timeout.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sqs::error::DisplayErrorContext;
use k8s_openapi::api::core::v1::Node;
use kerf_api::crd::NodeClaim;
use kerf_cloud::Offer;
use kube::api::DeleteParams;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Resource, ResourceExt};
use serde::Deserialize;

use crate::AwsProvider;

pub const SPOT_INTERRUPTION: &str = "EC2 Spot Instance Interruption Warning";
pub const REBALANCE: &str = "EC2 Instance Rebalance Recommendation";
pub const STATE_CHANGE: &str = "EC2 Instance State-change Notification";
pub const HEALTH: &str = "AWS Health Event";
pub const CAPACITY_RESERVATION: &str = "EC2 Capacity Reservation Instance Interruption Warning";

/// What a message says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Interruption {
    /// Two minutes' warning: drain and replace now; the spot offering is marked unavailable.
    SpotInterruption { instance_id: String },
    /// Higher risk of interruption: an event only.
    Rebalance { instance_id: String },
    /// `stopping` / `stopped`.
    Stopped { instance_id: String, state: String },
    /// `shutting-down` / `terminated`.
    Terminated { instance_id: String, state: String },
    /// AWS Health, EC2, `scheduledChange`: the affected instances.
    ScheduledChange {
        instance_ids: Vec<String>,
        event_type: String,
    },
    CapacityReservationInterrupted {
        instance_id: String,
        reservation_id: Option<String>,
    },
    /// Well-formed, but nothing to do (a `running` state change, a Health event for
    /// another service): deleted all the same.
    Ignored { why: String },
}

impl Interruption {
    /// The instances it concerns.
    pub fn instance_ids(&self) -> Vec<&str> {
        match self {
            Interruption::SpotInterruption { instance_id }
            | Interruption::Rebalance { instance_id }
            | Interruption::Stopped { instance_id, .. }
            | Interruption::Terminated { instance_id, .. }
            | Interruption::CapacityReservationInterrupted { instance_id, .. } => {
                vec![instance_id.as_str()]
            }
            Interruption::ScheduledChange { instance_ids, .. } => {
                instance_ids.iter().map(String::as_str).collect()
            }
            Interruption::Ignored { .. } => Vec::new(),
        }
    }

    /// Karpenter's `reason` label for the disruption it causes.
    pub fn kind(&self) -> &'static str {
        match self {
            Interruption::SpotInterruption { .. } => "spot_interrupted",
            Interruption::Rebalance { .. } => "rebalance_recommendation",
            Interruption::Stopped { .. } => "instance_stopped",
            Interruption::Terminated { .. } => "instance_terminated",
            Interruption::ScheduledChange { .. } => "scheduled_change",
            Interruption::CapacityReservationInterrupted { .. } => {
                "capacity_reservation_interrupted"
            }
            Interruption::Ignored { .. } => "no_op",
        }
    }

    /// The event Karpenter publishes on the NodeClaim and its Node for this message
    /// (`pkg/controllers/interruption/events`); none for a message it ignores.
    pub fn notice(&self) -> Option<Notice> {
        let (reason, warning, message) = match self {
            Interruption::SpotInterruption { .. } => (
                "SpotInterrupted",
                true,
                "Spot interruption warning was triggered",
            ),
            Interruption::Rebalance { .. } => (
                "SpotRebalanceRecommendation",
                false,
                "Spot rebalance recommendation was triggered",
            ),
            Interruption::Stopped { .. } => ("InstanceStopping", true, "Instance is stopping"),
            Interruption::Terminated { .. } => {
                ("InstanceTerminating", true, "Instance is terminating")
            }
            Interruption::ScheduledChange { .. } => (
                "InstanceUnhealthy",
                true,
                "An unhealthy warning was triggered for the instance",
            ),
            Interruption::CapacityReservationInterrupted { .. } => (
                "CapacityReservationInstanceInterrupted",
                true,
                "Capacity Reservation interruption warning was triggered",
            ),
            Interruption::Ignored { .. } => return None,
        };
        Some(Notice {
            reason,
            warning,
            claim_message: message,
            node_message: message,
        })
    }

    /// Whether the node must go (everything but a rebalance recommendation).
    pub fn disrupts(&self) -> bool {
        !matches!(
            self,
            Interruption::Rebalance { .. } | Interruption::Ignored { .. }
        )
    }
}

/// One of Karpenter's interruption events, published on the NodeClaim and, when it has
/// one, on its Node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Notice {
    pub reason: &'static str,
    /// `Warning`, else `Normal`.
    pub warning: bool,
    pub claim_message: &'static str,
    pub node_message: &'static str,
}

/// Published when an interruption deletes a NodeClaim (Karpenter's
/// `TerminatingOnInterruption`; its message names the kind of object).
pub const TERMINATING_ON_INTERRUPTION: Notice = Notice {
    reason: "TerminatingOnInterruption",
    warning: true,
    claim_message: "Interruption triggered termination for the NodeClaim",
    node_message: "Interruption triggered termination for the Node",
};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParseError {
    #[error("not an EventBridge event: {0}")]
    Json(String),
    #[error("{detail_type} event without {field}")]
    Missing {
        detail_type: String,
        field: &'static str,
    },
}

#[derive(Deserialize)]
struct Envelope {
    version: String,
    source: String,
    #[serde(rename = "detail-type")]
    detail_type: String,
    #[serde(default)]
    detail: serde_json::Value,
}

fn field(detail: &serde_json::Value, names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| detail.get(*n).and_then(|v| v.as_str()).map(str::to_string))
}

pub fn parse(body: &str) -> Result<Interruption, ParseError> {
    let env: Envelope = serde_json::from_str(body).map_err(|e| ParseError::Json(e.to_string()))?;
    let missing = |field: &'static str| ParseError::Missing {
        detail_type: env.detail_type.clone(),
        field,
    };
    if env.version != "0" {
        return Ok(Interruption::Ignored {
            why: format!("event version {:?}", env.version),
        });
    }
    let d = &env.detail;
    let instance =
        || field(d, &["instance-id", "instanceId"]).ok_or_else(|| missing("detail.instance-id"));
    Ok(match (env.source.as_str(), env.detail_type.as_str()) {
        ("aws.ec2", SPOT_INTERRUPTION) => Interruption::SpotInterruption {
            instance_id: instance()?,
        },
        ("aws.ec2", REBALANCE) => Interruption::Rebalance {
            instance_id: instance()?,
        },
        ("aws.ec2", STATE_CHANGE) => {
            let instance_id = instance()?;
            let state = field(d, &["state"]).ok_or_else(|| missing("detail.state"))?;
            match state.as_str() {
                "stopping" | "stopped" => Interruption::Stopped { instance_id, state },
                "shutting-down" | "terminated" => Interruption::Terminated { instance_id, state },
                _ => Interruption::Ignored {
                    why: format!("instance {instance_id} is {state}"),
                },
            }
        }
        ("aws.ec2", CAPACITY_RESERVATION) => Interruption::CapacityReservationInterrupted {
            instance_id: instance()?,
            reservation_id: field(d, &["capacity-reservation-id", "capacityReservationId"]),
        },
        ("aws.health", HEALTH) => {
            let service = field(d, &["service"]).unwrap_or_default();
            let category = field(d, &["eventTypeCategory"]).unwrap_or_default();
            if service != "EC2" || category != "scheduledChange" {
                return Ok(Interruption::Ignored {
                    why: format!("health event for {service} {category}"),
                });
            }
            let instance_ids: Vec<String> = d
                .get("affectedEntities")
                .and_then(|a| a.as_array())
                .ok_or_else(|| missing("detail.affectedEntities"))?
                .iter()
                .filter_map(|e| e.get("entityValue").and_then(|v| v.as_str()))
                .map(str::to_string)
                .collect();
            Interruption::ScheduledChange {
                instance_ids,
                event_type: field(d, &["eventTypeCode"]).unwrap_or_default(),
            }
        }
        (source, kind) => Interruption::Ignored {
            why: format!("{source} {kind:?} is not an interruption"),
        },
    })
}

/// The event's `time` (RFC 3339), in milliseconds since the epoch.
pub fn event_time_ms(body: &str) -> Option<i64> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let t: jiff::Timestamp = v.get("time")?.as_str()?.parse().ok()?;
    Some(t.as_millisecond())
}

/// What one poll did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PollStats {
    pub received: usize,
    pub handled: usize,
    pub unparseable: usize,
    /// Handling failed: left on the queue.
    pub failed: usize,
}

pub struct Queue {
    sqs: aws_sdk_sqs::Client,
    pub url: String,
    pub wait_seconds: i32,
}

impl Queue {
    /// The queue by name (`GetQueueUrl`), or by URL when given one.
    pub async fn new(sqs: aws_sdk_sqs::Client, name_or_url: &str) -> anyhow::Result<Queue> {
        let url = if name_or_url.starts_with("http://") || name_or_url.starts_with("https://") {
            name_or_url.to_string()
        } else {
            sqs.get_queue_url()
                .queue_name(name_or_url)
                .send()
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "INTERRUPTION_QUEUE {name_or_url:?}: GetQueueUrl: {}",
                        DisplayErrorContext(e)
                    )
                })?
                .queue_url()
                .unwrap_or_default()
                .to_string()
        };
        Ok(Queue {
            sqs,
            url,
            wait_seconds: 20,
        })
    }

    /// One long poll: up to 10 messages, each parsed and handed to `handle`.
    pub async fn poll_once<H, F>(&self, handle: H) -> anyhow::Result<PollStats>
    where
        H: Fn(Interruption) -> F,
        F: Future<Output = Result<(), String>>,
    {
        let answer = self
            .sqs
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(10)
            .wait_time_seconds(self.wait_seconds)
            .visibility_timeout(20)
            .message_system_attribute_names(
                aws_sdk_sqs::types::MessageSystemAttributeName::SentTimestamp,
            )
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("ReceiveMessage: {}", DisplayErrorContext(e)))?;
        let mut stats = PollStats::default();
        for m in answer.messages() {
            stats.received += 1;
            let delete = match parse(m.body().unwrap_or_default()) {
                Ok(i) => {
                    let kind = i.kind();
                    metrics::counter!(
                        "karpenter_interruption_received_messages_total",
                        "message_type" => kind,
                    )
                    .increment(1);
                    match handle(i).await {
                        Ok(()) => {
                            stats.handled += 1;
                            // Karpenter's: from the event's `time` to when it was acted
                            // on; SQS's SentTimestamp when the event has no readable time.
                            let sent = event_time_ms(m.body().unwrap_or_default()).or_else(|| {
                                m.attributes()
                                    .and_then(|a| {
                                        a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::SentTimestamp)
                                    })
                                    .and_then(|t| t.parse::<i64>().ok())
                            });
                            if let Some(sent) = sent {
                                let secs = (jiff::Timestamp::now().as_millisecond() - sent).max(0)
                                    as f64
                                    / 1000.0;
                                metrics::histogram!(
                                    "karpenter_interruption_message_queue_duration_seconds"
                                )
                                .record(secs);
                            }
                            true
                        }
                        Err(e) => {
                            stats.failed += 1;
                            tracing::warn!(kind, error = %e, "interruption not handled; it will be redelivered");
                            false
                        }
                    }
                }
                Err(e) => {
                    // Deleted without being counted as received, as Karpenter does.
                    stats.unparseable += 1;
                    tracing::warn!(error = %e, "unparseable interruption message; deleting it");
                    true
                }
            };
            if delete && let Some(receipt) = m.receipt_handle() {
                self.sqs
                    .delete_message()
                    .queue_url(&self.url)
                    .receipt_handle(receipt)
                    .send()
                    .await
                    .map_err(|e| anyhow::anyhow!("DeleteMessage: {}", DisplayErrorContext(e)))?;
                metrics::counter!("karpenter_interruption_deleted_messages_total").increment(1);
            }
        }
        Ok(stats)
    }
}

/// What Karpenter does with one NodeClaim a message names (`interruption/utils.go
/// handleNodeClaim`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Published on the claim and its node first, whatever follows.
    pub notice: Option<Notice>,
    /// A spot interruption: the claim's spot offering, to be marked unavailable.
    pub unavailable: Option<Offer>,
    /// Delete the claim (cordon, drain, replace) — unless it is already being deleted,
    /// when there is nothing more to do and no `TerminatingOnInterruption`.
    pub delete: bool,
}

pub fn plan(i: &Interruption, claim: &NodeClaim) -> Plan {
    let l = claim.labels();
    let unavailable = match (
        i,
        l.get(kerf_model::labels::INSTANCE_TYPE),
        l.get(kerf_model::labels::ZONE),
    ) {
        (Interruption::SpotInterruption { .. }, Some(t), Some(z)) => Some(Offer {
            instance_type: t.clone(),
            zone: z.clone(),
            capacity_type: "spot".into(),
        }),
        _ => None,
    };
    Plan {
        notice: i.notice(),
        unavailable,
        delete: i.disrupts() && claim.metadata.deletion_timestamp.is_none(),
    }
}

/// How long the same event about the same object is not published again (Karpenter's
/// recorder: two minutes, keyed by reason and the object's UID).
const EVENT_DEDUPE: Duration = Duration::from_secs(120);

/// Acts on messages: finds the NodeClaims of the instances a message names (by the
/// instance ID at the end of `status.providerID`) and their Nodes (by the claim's
/// `status.nodeName`), publishes the kind's event on both, marks a spot-interrupted
/// offering unavailable and deletes the claims of an instance that is going away.
pub struct Handler {
    pub claims: Api<NodeClaim>,
    pub nodes: Api<Node>,
    pub provider: Arc<AwsProvider>,
    pub recorder: Recorder,
    published: Mutex<BTreeMap<(&'static str, String), Instant>>,
}

impl Handler {
    pub fn new(
        claims: Api<NodeClaim>,
        nodes: Api<Node>,
        provider: Arc<AwsProvider>,
        recorder: Recorder,
    ) -> Handler {
        Handler {
            claims,
            nodes,
            provider,
            recorder,
            published: Mutex::new(BTreeMap::new()),
        }
    }

    pub async fn handle(&self, i: Interruption) -> Result<(), String> {
        let ids = i.instance_ids();
        if ids.is_empty() {
            return Ok(());
        }
        let all = self
            .claims
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?;
        for id in ids {
            let suffix = format!("/{id}");
            for c in all.items.iter().filter(|c| {
                c.status
                    .as_ref()
                    .and_then(|s| s.provider_id.as_deref())
                    .is_some_and(|p| p.ends_with(&suffix) || p == id)
            }) {
                self.handle_claim(&i, id, c).await?;
            }
        }
        Ok(())
    }

    async fn handle_claim(
        &self,
        i: &Interruption,
        instance: &str,
        c: &NodeClaim,
    ) -> Result<(), String> {
        let plan = plan(i, c);
        let node_name = c.status.as_ref().and_then(|s| s.node_name.clone());
        let node = match node_name {
            Some(n) => self.nodes.get_opt(&n).await.map_err(|e| e.to_string())?,
            None => None,
        };
        if let Some(notice) = plan.notice {
            self.publish(notice, c, node.as_ref()).await;
        }
        if let Some(offer) = &plan.unavailable {
            self.provider.mark_unavailable(offer);
        }
        if !plan.delete {
            tracing::info!(claim = %c.name_any(), kind = i.kind(), instance, "interruption message");
            return Ok(());
        }
        match self
            .claims
            .delete(&c.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => {
                tracing::info!(claim = %c.name_any(), kind = i.kind(), instance, "initiating delete from interruption message");
                self.publish(TERMINATING_ON_INTERRUPTION, c, node.as_ref())
                    .await;
                // Karpenter's interruption controller labels the disruption by kind.
                let l = c.labels();
                let label = |k: &str| l.get(k).cloned().unwrap_or_default();
                metrics::counter!(
                    "karpenter_nodeclaims_disrupted_total",
                    "reason" => i.kind(),
                    "nodepool" => label(kerf_model::labels::NODEPOOL),
                    "capacity_type" => label(kerf_model::labels::CAPACITY_TYPE),
                )
                .increment(1);
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The event on the claim and on its node, each unless published in the last two
    /// minutes. Best effort: a failure is logged, not returned.
    async fn publish(&self, notice: Notice, claim: &NodeClaim, node: Option<&Node>) {
        let mut targets = vec![(claim.object_ref(&()), notice.claim_message)];
        if let Some(n) = node {
            targets.push((n.object_ref(&()), notice.node_message));
        }
        for (reference, message) in targets {
            let uid = reference.uid.clone().unwrap_or_default();
            let now = Instant::now();
            {
                let Ok(mut published) = self.published.lock() else {
                    return;
                };
                if published.len() > 4096 {
                    published.retain(|_, at| now.duration_since(*at) < EVENT_DEDUPE);
                }
                let key = (notice.reason, uid);
                if published
                    .get(&key)
                    .is_some_and(|at| now.duration_since(*at) < EVENT_DEDUPE)
                {
                    continue;
                }
                published.insert(key, now);
            }
            let event = Event {
                type_: if notice.warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason: notice.reason.into(),
                note: Some(message.into()),
                action: notice.reason.into(),
                secondary: None,
            };
            if let Err(e) = self.recorder.publish(&event, &reference).await {
                tracing::debug!(reason = notice.reason, error = %e, "event not recorded");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The documented EventBridge shapes (EC2 and AWS Health user guides).
    pub const SPOT: &str = r#"{"version":"0","id":"1e5527d7-bb36-4607-3370-4164db56a40e","detail-type":"EC2 Spot Instance Interruption Warning","source":"aws.ec2","account":"123456789012","time":"1970-01-01T00:00:00Z","region":"us-east-1","resources":["arn:aws:ec2:us-east-1b:instance/i-0b662ef9931388ba0"],"detail":{"instance-id":"i-0b662ef9931388ba0","instance-action":"terminate"}}"#;
    pub const REBAL: &str = r#"{"version":"0","id":"92453ca5-5b23-219e-8003-ab7283ca016b","detail-type":"EC2 Instance Rebalance Recommendation","source":"aws.ec2","account":"123456789012","time":"2020-10-26T14:14:14Z","region":"us-east-1","resources":["arn:aws:ec2:us-east-1b:instance/i-0b662ef9931388ba0"],"detail":{"instance-id":"i-0b662ef9931388ba0"}}"#;
    pub const STATE: &str = r#"{"version":"0","id":"7bf73129-1428-4cd3-a780-95db273d1602","detail-type":"EC2 Instance State-change Notification","source":"aws.ec2","account":"123456789012","time":"2015-11-11T21:29:54Z","region":"us-east-1","resources":["arn:aws:ec2:us-east-1:123456789012:instance/i-abcd1111"],"detail":{"instance-id":"i-abcd1111","state":"stopping"}}"#;
    pub const HEALTH_EV: &str = r#"{"version":"0","id":"121345678-1234-1234-1234-123456789012","detail-type":"AWS Health Event","source":"aws.health","account":"123456789012","time":"2016-06-05T06:27:57Z","region":"us-east-1","resources":["i-abcd1111"],"detail":{"eventArn":"arn:aws:health:us-east-1::event/EC2/AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED/AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED_123","service":"EC2","eventTypeCode":"AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED","eventTypeCategory":"scheduledChange","startTime":"Sat, 05 Jun 2016 15:10:09 GMT","eventDescription":[{"language":"en_US","latestDescription":"retirement"}],"affectedEntities":[{"entityValue":"i-abcd1111"},{"entityValue":"i-abcd2222"}]}}"#;
    pub const CR: &str = r#"{"version":"0","id":"5c9e2ad3-4e1b-4e7c-8f8f-1a2b3c4d5e6f","detail-type":"EC2 Capacity Reservation Instance Interruption Warning","source":"aws.ec2","account":"123456789012","time":"2025-01-01T00:00:00Z","region":"us-east-1","resources":["arn:aws:ec2:us-east-1:123456789012:instance/i-abcd3333"],"detail":{"capacity-reservation-id":"cr-0123456789abcdef0","instance-id":"i-abcd3333"}}"#;

    #[test]
    fn the_five_kinds() {
        assert_eq!(
            parse(SPOT).unwrap(),
            Interruption::SpotInterruption {
                instance_id: "i-0b662ef9931388ba0".into()
            }
        );
        assert_eq!(parse(REBAL).unwrap().kind(), "rebalance_recommendation");
        assert!(!parse(REBAL).unwrap().disrupts());
        assert_eq!(
            parse(STATE).unwrap(),
            Interruption::Stopped {
                instance_id: "i-abcd1111".into(),
                state: "stopping".into()
            }
        );
        assert_eq!(
            parse(HEALTH_EV).unwrap(),
            Interruption::ScheduledChange {
                instance_ids: vec!["i-abcd1111".into(), "i-abcd2222".into()],
                event_type: "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED".into()
            }
        );
        assert_eq!(
            parse(CR).unwrap(),
            Interruption::CapacityReservationInterrupted {
                instance_id: "i-abcd3333".into(),
                reservation_id: Some("cr-0123456789abcdef0".into())
            }
        );
    }

    #[test]
    fn running_and_other_services_are_ignored_and_garbage_is_an_error() {
        let running = STATE.replace("stopping", "running");
        assert!(matches!(
            parse(&running).unwrap(),
            Interruption::Ignored { .. }
        ));
        let rds = HEALTH_EV.replace("\"service\":\"EC2\"", "\"service\":\"RDS\"");
        assert!(matches!(parse(&rds).unwrap(), Interruption::Ignored { .. }));
        assert!(matches!(parse("not json"), Err(ParseError::Json(_))));
        let no_id = SPOT.replace("\"instance-id\":\"i-0b662ef9931388ba0\",", "");
        assert_eq!(
            parse(&no_id),
            Err(ParseError::Missing {
                detail_type: SPOT_INTERRUPTION.into(),
                field: "detail.instance-id"
            })
        );
    }

    fn claim(deleting: bool) -> NodeClaim {
        let mut c: NodeClaim = serde_json::from_value(serde_json::json!({
            "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
            "metadata": {"name": "default-abc", "uid": "u1", "labels": {
                "node.kubernetes.io/instance-type": "m5.large",
                "topology.kubernetes.io/zone": "us-east-1a",
                "karpenter.sh/capacity-type": "spot",
                "karpenter.sh/nodepool": "default"}},
            "spec": {"requirements": [], "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"}},
            "status": {"providerID": "aws:///us-east-1a/i-0b662ef9931388ba0"}
        }))
        .unwrap();
        if deleting {
            c.metadata.deletion_timestamp = Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
            );
        }
        c
    }

    #[test]
    fn each_kind_has_karpenters_event() {
        // pkg/controllers/interruption/events/events.go: reason, type, message.
        let expect = [
            (
                SPOT,
                "SpotInterrupted",
                true,
                "Spot interruption warning was triggered",
            ),
            (
                REBAL,
                "SpotRebalanceRecommendation",
                false,
                "Spot rebalance recommendation was triggered",
            ),
            (STATE, "InstanceStopping", true, "Instance is stopping"),
            (
                HEALTH_EV,
                "InstanceUnhealthy",
                true,
                "An unhealthy warning was triggered for the instance",
            ),
            (
                CR,
                "CapacityReservationInstanceInterrupted",
                true,
                "Capacity Reservation interruption warning was triggered",
            ),
        ];
        for (body, reason, warning, message) in expect {
            let n = parse(body).unwrap().notice().unwrap();
            assert_eq!(
                (n.reason, n.warning, n.claim_message, n.node_message),
                (reason, warning, message, message),
                "{body}"
            );
        }
        let terminated = STATE.replace("stopping", "shutting-down");
        let n = parse(&terminated).unwrap().notice().unwrap();
        assert_eq!(
            (n.reason, n.warning, n.claim_message),
            ("InstanceTerminating", true, "Instance is terminating")
        );
        let running = STATE.replace("stopping", "running");
        assert_eq!(parse(&running).unwrap().notice(), None);
        assert_eq!(parse(&running).unwrap().kind(), "no_op");
        assert_eq!(
            TERMINATING_ON_INTERRUPTION.claim_message,
            "Interruption triggered termination for the NodeClaim"
        );
        assert_eq!(
            TERMINATING_ON_INTERRUPTION.node_message,
            "Interruption triggered termination for the Node"
        );
    }

    #[test]
    fn the_plan_for_a_claim() {
        let spot = parse(SPOT).unwrap();
        let p = plan(&spot, &claim(false));
        assert_eq!(p.notice.unwrap().reason, "SpotInterrupted");
        assert!(p.delete);
        assert_eq!(
            p.unavailable,
            Some(Offer {
                instance_type: "m5.large".into(),
                zone: "us-east-1a".into(),
                capacity_type: "spot".into()
            })
        );
        // Already being deleted: the event still, but no second delete (and so no
        // TerminatingOnInterruption and no disruption counted).
        let p = plan(&spot, &claim(true));
        assert!(p.notice.is_some() && !p.delete);
        // A rebalance recommendation: the event only.
        let p = plan(&parse(REBAL).unwrap(), &claim(false));
        assert_eq!(p.notice.unwrap().reason, "SpotRebalanceRecommendation");
        assert!(!p.delete && p.unavailable.is_none());
        // Other disruptions delete without marking anything.
        for body in [STATE, HEALTH_EV, CR] {
            let p = plan(&parse(body).unwrap(), &claim(false));
            assert!(p.delete && p.unavailable.is_none(), "{body}");
        }
    }

    #[test]
    fn the_event_time_is_read_from_the_envelope() {
        assert_eq!(event_time_ms(SPOT), Some(0));
        assert_eq!(event_time_ms(REBAL), Some(1_603_721_654_000));
        assert_eq!(event_time_ms("not json"), None);
    }
}
