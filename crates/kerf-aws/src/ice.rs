//! Offerings EC2 just refused for lack of capacity, kept out of the decisions for
//! 3 minutes (Karpenter's `UnavailableOfferings` cache), and the error codes that mean it.

use std::collections::BTreeMap;

use kerf_cloud::Offer;

pub const TTL_MS: i64 = 3 * 60 * 1000;

/// Fleet and API error codes that mean "no capacity for this offering now"
/// (Karpenter `pkg/errors/errors.go`).
pub const CODES: [&str; 8] = [
    "InsufficientInstanceCapacity",
    "MaxSpotInstanceCountExceeded",
    "VcpuLimitExceeded",
    "UnfulfillableCapacity",
    "Unsupported",
    "InsufficientFreeAddressesInSubnet",
    "MaxFleetCountExceeded",
    "ReservationCapacityExceeded",
];

pub fn is_capacity_error(code: &str) -> bool {
    CODES.contains(&code)
}

/// Throttling codes: retried with backoff, never marked unavailable.
pub fn is_throttle(code: &str) -> bool {
    matches!(
        code,
        "RequestLimitExceeded" | "Throttling" | "ThrottlingException" | "TooManyRequestsException"
    )
}

#[derive(Debug, Default)]
pub struct Unavailable {
    until: BTreeMap<(String, String, String), i64>,
}

fn key(o: &Offer) -> (String, String, String) {
    (
        o.instance_type.clone(),
        o.zone.clone(),
        o.capacity_type.clone(),
    )
}

impl Unavailable {
    pub fn mark(&mut self, offer: &Offer, now_ms: i64) {
        self.until.insert(key(offer), now_ms + TTL_MS);
    }

    pub fn is_unavailable(&self, offer: &Offer, now_ms: i64) -> bool {
        self.until.get(&key(offer)).is_some_and(|&t| t > now_ms)
    }

    /// Drops expired entries.
    pub fn expire(&mut self, now_ms: i64) {
        self.until.retain(|_, &mut t| t > now_ms);
    }

    pub fn len(&self) -> usize {
        self.until.len()
    }

    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marked_offering_is_unavailable_for_three_minutes() {
        let o = Offer {
            instance_type: "m5.large".into(),
            zone: "us-west-2a".into(),
            capacity_type: "spot".into(),
        };
        let mut u = Unavailable::default();
        u.mark(&o, 1_000);
        assert!(u.is_unavailable(&o, 1_000 + TTL_MS - 1));
        assert!(!u.is_unavailable(&o, 1_000 + TTL_MS));
        let other = Offer {
            capacity_type: "on-demand".into(),
            ..o.clone()
        };
        assert!(!u.is_unavailable(&other, 1_000));
        u.expire(1_000 + TTL_MS);
        assert!(u.is_empty());
    }
}
