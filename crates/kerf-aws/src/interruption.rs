//! Interruption: the EventBridge messages that say an instance is going away, read from
//! the SQS queue `INTERRUPTION_QUEUE` names (Karpenter `pkg/controllers/interruption`).
//!
//! [`parse`] turns a message body into an [`Interruption`]; [`Queue::poll_once`] long-polls
//! (`ReceiveMessage`, 10 messages, 20 s) and deletes each message that was handled or
//! could not be parsed — a message whose handling failed stays, to come back after its
//! visibility timeout.

use std::future::Future;

use aws_sdk_sqs::error::DisplayErrorContext;
use serde::Deserialize;

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
            Interruption::Ignored { .. } => "noop",
        }
    }

    /// Whether the node must go (everything but a rebalance recommendation).
    pub fn disrupts(&self) -> bool {
        !matches!(
            self,
            Interruption::Rebalance { .. } | Interruption::Ignored { .. }
        )
    }
}

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
                            // From when SQS took the message to when it was acted on.
                            let sent = m
                                .attributes()
                                .and_then(|a| {
                                    a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::SentTimestamp)
                                })
                                .and_then(|t| t.parse::<i64>().ok());
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
                    // Karpenter's kind for a message it cannot act on.
                    metrics::counter!(
                        "karpenter_interruption_received_messages_total",
                        "message_type" => "no_op",
                    )
                    .increment(1);
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
}
