//! Instance types and their offerings: what a cloud can launch, where, and at what price.

use crate::Resources;
use crate::labels;
use crate::requirements::{Requirement, Requirements};
use crate::selector::Labels;

/// A place and purchase option an instance type can be launched with.
#[derive(Clone, Debug, PartialEq)]
pub struct Offering {
    pub zone: String,
    /// `on-demand`, `spot` or `reserved`.
    pub capacity_type: String,
    /// US dollars per hour.
    pub price: f64,
    /// A price derived by a rule rather than a published list price (simulated spot).
    pub price_is_estimate: bool,
    /// False while the cloud reports no capacity for this offering.
    pub available: bool,
}

impl Offering {
    pub fn matches(&self, requirements: &Requirements) -> bool {
        requirements
            .get(labels::ZONE)
            .is_none_or(|r| r.has(&self.zone))
            && requirements
                .get(labels::CAPACITY_TYPE)
                .is_none_or(|r| r.has(&self.capacity_type))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct InstanceType {
    pub name: String,
    /// Labels every node of this type carries: instance type, arch, os and the
    /// `karpenter.k8s.aws/instance-*` family. Zone and capacity type come from the offering.
    pub labels: Labels,
    pub capacity: Resources,
    /// kube-reserved + system-reserved + eviction threshold: what the kubelet keeps back.
    pub overhead: Resources,
    pub offerings: Vec<Offering>,
}

impl InstanceType {
    /// What pods can use: capacity less overhead.
    pub fn allocatable(&self) -> Resources {
        self.capacity.minus(&self.overhead)
    }

    /// The labels as requirements, plus zone and capacity type as the sets its available
    /// offerings span.
    pub fn requirements(&self) -> Requirements {
        let mut r = Requirements::from_labels(&self.labels);
        let available = self.offerings.iter().filter(|o| o.available);
        r.add(
            labels::ZONE,
            Requirement::any_of(available.clone().map(|o| o.zone.clone())),
        );
        r.add(
            labels::CAPACITY_TYPE,
            Requirement::any_of(available.map(|o| o.capacity_type.clone())),
        );
        r
    }

    /// The cheapest available offering compatible with `requirements`. Ties break by
    /// zone then capacity type so the choice is deterministic.
    pub fn cheapest_offering(&self, requirements: &Requirements) -> Option<&Offering> {
        self.offerings
            .iter()
            .filter(|o| o.available && o.matches(requirements))
            .min_by(|a, b| {
                a.price
                    .total_cmp(&b.price)
                    .then_with(|| a.zone.cmp(&b.zone))
                    .then_with(|| a.capacity_type.cmp(&b.capacity_type))
            })
    }
}
