//! The cloud-provider contract kerf's shells perform launches through, and the simulated
//! cloud `kerf simulate` runs on.
//!
//! The contract is small and shaped like EC2's: `create` takes a NodeClaim's ordered
//! offering options and launches the first one with capacity (refusing the others with an
//! insufficient-capacity error each, as CreateFleet reports them); `delete` terminates;
//! `list` reports every instance with the NodeClaim it was tagged with, so garbage
//! collection and a restarted controller can rebuild what exists. The control loops never
//! call it: they emit actions, and a shell calls it.
//!
//! `SimCloud` is the simulated implementation: seeded latency distributions for boot and
//! registration, per-offering capacity shortages over time windows, spot interruptions
//! (a two-minute warning, then termination) at a rate or at given times, and prices from
//! the catalog. It reads no clock: every call takes the virtual time.

mod provider;
mod sim;

use kerf_model::InstanceType;
use serde::Serialize;

pub use provider::{LaunchRequest, Provider, ProviderError};
pub use sim::{CloudEvent, INTERRUPTION_NOTICE_MS, Latency, Shortage, SimCloud, SimCloudConfig};

/// One way to launch: an instance type in a zone with a capacity type.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Offer {
    pub instance_type: String,
    pub zone: String,
    pub capacity_type: String,
}

impl Offer {
    /// The offer of one of an instance type's offerings.
    pub fn of(instance_type: &str, offering: &kerf_model::Offering) -> Offer {
        Offer {
            instance_type: instance_type.to_string(),
            zone: offering.zone.clone(),
            capacity_type: offering.capacity_type.clone(),
        }
    }

    /// The offer a node or NodeClaim carries in its instance-type, zone and
    /// capacity-type labels, if it has all three.
    pub fn from_labels(labels: &kerf_model::Labels) -> Option<Offer> {
        use kerf_model::labels::{CAPACITY_TYPE, INSTANCE_TYPE, ZONE};
        Some(Offer {
            instance_type: labels.get(INSTANCE_TYPE)?.clone(),
            zone: labels.get(ZONE)?.clone(),
            capacity_type: labels.get(CAPACITY_TYPE)?.clone(),
        })
    }
}

/// The offerings of `types` that `keep` accepts, cheapest first (ties by type, zone and
/// capacity type, so the order is deterministic).
pub fn offers_cheapest_first<'a>(
    types: impl IntoIterator<Item = &'a InstanceType>,
    keep: impl Fn(&InstanceType, &kerf_model::Offering) -> bool,
) -> Vec<Offer> {
    let mut priced: Vec<(f64, Offer)> = types
        .into_iter()
        .flat_map(|it| {
            it.offerings
                .iter()
                .filter(|o| keep(it, o))
                .map(|o| (o.price, Offer::of(&it.name, o)))
                .collect::<Vec<_>>()
        })
        .collect();
    priced.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    priced.into_iter().map(|(_, o)| o).collect()
}

impl std::fmt::Display for Offer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.instance_type, self.zone, self.capacity_type
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum InstanceState {
    Running,
    /// Terminate was requested; the instance disappears from `list` once shut down.
    ShuttingDown,
}

/// An instance as the cloud reports it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Instance {
    /// The provider ID, e.g. `sim:///us-east-1a/i-0000000000000001`.
    pub id: String,
    /// The `karpenter.sh/nodeclaim` tag: the claim it was launched for.
    pub claim: String,
    pub offer: Offer,
    pub image_id: String,
    /// Dollars per hour.
    pub price: f64,
    /// Milliseconds of virtual time.
    pub launched_at: i64,
    pub state: InstanceState,
    /// Why the instance no longer matches its node class, when the provider can tell from
    /// the instance itself (Karpenter's `CloudProvider.IsDrifted`: on AWS an image, subnet
    /// or security groups the EC2NodeClass no longer resolves to). The disruption pass
    /// drifts its NodeClaim for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<kerf_model::Drift>,
}

/// Why a launch did not happen.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CreateError {
    /// Every option was refused for lack of capacity; the offerings are listed.
    #[error("insufficient capacity for every offering: {}", list(.0))]
    InsufficientCapacity(Vec<Offer>),
    #[error("no offering options were given for NodeClaim {0}")]
    NoOptions(String),
    #[error("instance type {0} is not in the catalog")]
    UnknownType(String),
    /// A real provider's call failed (an API error, a timeout); the message says why.
    #[error("{0}")]
    Provider(String),
}

fn list(offers: &[Offer]) -> String {
    offers
        .iter()
        .map(Offer::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A successful launch, and the offerings refused on the way.
#[derive(Clone, Debug, PartialEq)]
pub struct Created {
    pub instance: Instance,
    pub refused: Vec<Offer>,
    /// Annotations the provider puts on the NodeClaim with the launch (Karpenter's
    /// `Create` return: on AWS `karpenter.k8s.aws/ec2nodeclass-hash(-version)` and
    /// `karpenter.k8s.aws/instance-profile-name`).
    pub annotations: kerf_model::Labels,
}

/// What a shell needs from a cloud. `now` is milliseconds of the shell's clock.
pub trait CloudProvider {
    /// Launch one instance for `claim`, trying `options` in order.
    fn create(
        &mut self,
        now: i64,
        claim: &str,
        options: &[Offer],
        image_id: &str,
    ) -> Result<Created, CreateError>;
    /// Ask for an instance to be terminated. Unknown IDs are ignored (already gone).
    fn delete(&mut self, now: i64, id: &str);
    /// Every instance not yet gone, by ID.
    fn list(&self) -> Vec<&Instance>;
}

#[cfg(test)]
pub(crate) mod tests {
    use kerf_model::labels::{CAPACITY_TYPE, INSTANCE_TYPE, ZONE};
    use kerf_model::{InstanceType, Labels, Offering, Resources};

    use super::{Offer, offers_cheapest_first};

    /// An instance type with no labels or resources, offered as `(zone, capacity type,
    /// price)` each.
    pub(crate) fn instance_type(name: &str, offerings: &[(&str, &str, f64)]) -> InstanceType {
        InstanceType {
            name: name.to_string(),
            labels: Labels::new(),
            capacity: Resources::new(),
            overhead: Resources::new(),
            offerings: offerings
                .iter()
                .map(|&(zone, capacity_type, price)| Offering {
                    zone: zone.to_string(),
                    capacity_type: capacity_type.to_string(),
                    price,
                    price_is_estimate: false,
                    available: true,
                })
                .collect(),
        }
    }

    #[test]
    fn offers_come_cheapest_first_with_ties_in_name_order() {
        let types = [
            instance_type(
                "m5.large",
                &[("b", "on-demand", 0.096), ("a", "spot", 0.03)],
            ),
            instance_type(
                "c5.large",
                &[("b", "on-demand", 0.096), ("a", "on-demand", 0.085)],
            ),
            instance_type("a1.large", &[("a", "on-demand", 0.096)]),
        ];
        let all: Vec<String> = offers_cheapest_first(&types, |_, _| true)
            .iter()
            .map(Offer::to_string)
            .collect();
        assert_eq!(
            all,
            [
                "m5.large/a/spot",
                "c5.large/a/on-demand",
                "a1.large/a/on-demand",
                "c5.large/b/on-demand",
                "m5.large/b/on-demand",
            ]
        );
        let on_demand_in_b: Vec<String> = offers_cheapest_first(&types, |_, o| {
            o.zone == "b" && o.capacity_type == "on-demand"
        })
        .iter()
        .map(Offer::to_string)
        .collect();
        assert_eq!(
            on_demand_in_b,
            ["c5.large/b/on-demand", "m5.large/b/on-demand"]
        );
    }

    #[test]
    fn an_offer_is_read_from_labels_only_when_all_three_are_there() {
        let mut labels: Labels = [
            (INSTANCE_TYPE, "m5.large"),
            (ZONE, "us-east-1a"),
            (CAPACITY_TYPE, "spot"),
            ("team", "web"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            Offer::from_labels(&labels).map(|o| o.to_string()),
            Some("m5.large/us-east-1a/spot".to_string())
        );
        for key in [INSTANCE_TYPE, ZONE, CAPACITY_TYPE] {
            let value = labels.remove(key).unwrap();
            assert_eq!(Offer::from_labels(&labels), None, "without {key}");
            labels.insert(key.to_string(), value);
        }
    }
}
