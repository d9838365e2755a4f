//! The yardsticks against real plans on small `cost` mixes: the lower bounds never exceed
//! what kerf or the reference packer pay, and the reference packer's claims are real
//! (every pod once, nothing overcommitted, spread within its skew).

use std::collections::BTreeMap;

use kerf_bench::fleet::{RESOURCES, Vector};
use kerf_bench::lower_bound::{self, Status};
use kerf_bench::{mix, reference};
use kerf_model::Resources;
use kerf_scheduling::validate::validate;
use kerf_scheduling::{Config, solve};

const SMALL: usize = 300;

fn vector(r: &Resources) -> Vector {
    RESOURCES.map(|name| r.get(name).0)
}

#[test]
fn the_lower_bound_is_below_every_plan_on_small_mixes() {
    for spread in [false, true] {
        let input = mix::input(SMALL, spread);
        let plan = solve(&input, &Config::default());
        assert!(plan.unschedulable.is_empty(), "{:?}", plan.unschedulable);
        assert_eq!(validate(&input, &plan), vec![]);
        let karpenter = reference::pack(&input).unwrap();
        assert!(karpenter.unschedulable.is_empty());
        // A few iterations keep the debug-build test quick; the bound is valid at any cap.
        let bounds = lower_bound::bounds(&input, 5).unwrap();
        let best = bounds.best();
        assert!(best > 0.0);
        assert!(
            best <= plan.cost_per_hour() * (1.0 + 1e-9),
            "{bounds:?} vs kerf {}",
            plan.cost_per_hour()
        );
        assert!(
            best <= karpenter.cost_per_hour() * (1.0 + 1e-9),
            "{bounds:?} vs reference {}",
            karpenter.cost_per_hour()
        );
        // The configuration bound is either proven optimal (and then at least the fluid one)
        // or says it is Farley's.
        if bounds.configuration.status == Status::Optimal {
            assert!(
                bounds.configuration.value >= bounds.fluid * (1.0 - 1e-6),
                "{bounds:?}"
            );
        }
    }
}

#[test]
fn reference_claims_hold_their_pods_on_the_launched_type() {
    for spread in [false, true] {
        let input = mix::input(SMALL, spread);
        let plan = reference::pack(&input).unwrap();
        let types: BTreeMap<&str, &kerf_model::InstanceType> = input
            .instance_types
            .iter()
            .map(|t| (t.name.as_str(), t))
            .collect();
        let mut overhead = Resources::new();
        for ds in &input.daemonsets {
            overhead.add(&ds.requests);
        }
        let mut seen = vec![0u32; input.pods.len()];
        for claim in &plan.claims {
            let t = types[claim.instance_type.as_str()];
            let mut used = overhead.clone();
            for &p in &claim.pods {
                used.add(&input.pods[p].requests);
                seen[p] += 1;
            }
            assert!(
                t.allocatable().fits(&used),
                "{} holds {used} but has {}",
                t.name,
                t.allocatable()
            );
            assert_eq!(vector(&used), {
                let o = vector(&overhead);
                [
                    claim.requests[0] + o[0],
                    claim.requests[1] + o[1],
                    claim.requests[2] + o[2],
                ]
            });
            // The launch is the cheapest on-demand offering of that type in its zone.
            let price = t
                .offerings
                .iter()
                .filter(|o| {
                    o.capacity_type == "on-demand"
                        && claim.zone.as_ref().is_none_or(|z| *z == o.zone)
                })
                .map(|o| o.price)
                .fold(f64::INFINITY, f64::min);
            assert_eq!(claim.price, price);
        }
        assert!(seen.iter().all(|&n| n == 1), "every pod exactly once");
        if spread {
            // Per app, pods per zone differ by at most one (maxSkew 1).
            let mut per_app: BTreeMap<&str, BTreeMap<&str, i64>> = BTreeMap::new();
            for claim in &plan.claims {
                for &p in &claim.pods {
                    let pod = &input.pods[p];
                    if pod.topology_spread.is_empty() {
                        continue;
                    }
                    let zone = claim
                        .zone
                        .as_deref()
                        .expect("a spread pod's claim is pinned");
                    *per_app
                        .entry(pod.labels["app"].as_str())
                        .or_default()
                        .entry(zone)
                        .or_default() += 1;
                }
            }
            assert!(!per_app.is_empty());
            for (app, zones) in per_app {
                let max = zones.values().copied().max().unwrap();
                let min = if zones.len() < 3 {
                    0
                } else {
                    zones.values().copied().min().unwrap()
                };
                assert!(max - min <= 1, "{app}: {zones:?}");
            }
        }
    }
}
