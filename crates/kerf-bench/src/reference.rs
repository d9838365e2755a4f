//! A reference packer: Karpenter's provisioning algorithm for new NodeClaims, as its
//! scheduler (`pkg/controllers/provisioning/scheduling/scheduler.go`, `nodeclaim.go`) and
//! documentation describe it, so the `cost` suite can say what Karpenter would have paid
//! for the same pods.
//!
//! 1. Pending pods are sorted by CPU request, then memory request, both descending (the
//!    queue's `byCPUAndMemoryDescending`); ties keep input order.
//! 2. Each pod is offered to the claims already opened, **fewest pods first** (Karpenter
//!    re-sorts `newNodeClaims` by pod count before every pod; ties here go to the older
//!    claim, where Go's unstable sort leaves them unspecified). A claim keeps the set of
//!    instance types that can still hold all its pods plus DaemonSet overhead, and accepts
//!    a pod only if that set stays non-empty.
//! 3. A pod no open claim accepts opens a new claim with every instance type of the pool
//!    that fits it.
//! 4. Each claim launches the cheapest instance type left in its set (on-demand launches use
//!    EC2 Fleet's `lowest-price` strategy, so the cheapest offering wins).
//!
//! Zone topology spread (`DoNotSchedule`) is honoured as Karpenter does: a claim is pinned to
//! one zone when a spread pod joins it, chosen as the least-loaded zone of the pod's spread
//! group (ties by name) among those the claim can still launch in; a pinned claim accepts a
//! spread pod only while its zone keeps the skew within `maxSkew`. Pods are counted in a
//! group's domain once their claim's zone is known, as Karpenter's topology records them;
//! only the pod's own namespace is counted.
//!
//! Not modelled, because it cannot change the cost here: Karpenter truncates a NodeClaim's
//! instance types to the 60 cheapest before launching. The cheapest type is always kept, and
//! it is the one launched, so the price is the same. NodePool limits, existing nodes,
//! affinities and preferences are outside what the `cost` suite's mixes use; an input with
//! more than one NodePool is refused.

use kerf_model::labels;
use kerf_model::pod::WhenUnsatisfiable;
use kerf_model::{LabelSelector, Pod};
use kerf_scheduling::Input;

use crate::Error;
use crate::fleet::{Fleet, Vector, add, fits, pod_vector};

/// One claim the reference packer would launch.
#[derive(Clone, Debug, PartialEq)]
pub struct ReferenceClaim {
    /// The cheapest type left in the claim's set.
    pub instance_type: String,
    /// The zone the claim is pinned to, if a spread pod pinned it.
    pub zone: Option<String>,
    /// Dollars per hour.
    pub price: f64,
    /// Indices into `Input::pods`, in the order they joined.
    pub pods: Vec<usize>,
    /// The pods' requests (DaemonSet overhead excluded).
    pub requests: Vector,
    /// How many instance types the claim could still launch as.
    pub options: usize,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReferencePlan {
    pub claims: Vec<ReferenceClaim>,
    /// Indices into `Input::pods` of pods no claim could hold.
    pub unschedulable: Vec<usize>,
}

impl ReferencePlan {
    pub fn cost_per_hour(&self) -> f64 {
        self.claims.iter().fold(0.0, |sum, c| sum + c.price)
    }
}

/// A zone spread constraint shared by the pods that carry it.
#[derive(Clone, Debug, PartialEq)]
struct SpreadGroup {
    namespace: String,
    selector: LabelSelector,
    max_skew: i32,
    /// Matching pods per zone (index into `Fleet::zones`).
    counts: Vec<i64>,
}

impl SpreadGroup {
    fn allows(&self, zone: usize) -> bool {
        let min = self.counts.iter().copied().min().unwrap_or(0);
        self.counts[zone] + 1 - min <= i64::from(self.max_skew)
    }
}

/// A claim while pods are still being added.
struct OpenClaim {
    /// Indices into `Fleet::types` that still hold every pod.
    options: Vec<usize>,
    /// Element-wise maximum of the options' room: a pod that does not fit under it cannot
    /// join, which rejects full claims without scanning their options.
    max_avail: Vector,
    requests: Vector,
    zone: Option<usize>,
    pods: Vec<usize>,
}

/// Packs the input's pending pods the way Karpenter would.
pub fn pack(input: &Input) -> Result<ReferencePlan, Error> {
    let fleet = Fleet::of(input)?;
    let requests: Vec<Vector> = input
        .pods
        .iter()
        .map(pod_vector)
        .collect::<Result<_, _>>()?;
    let mut groups: Vec<SpreadGroup> = Vec::new();
    let pod_groups: Vec<Vec<usize>> = input
        .pods
        .iter()
        .map(|pod| spread_groups(pod, &fleet, &mut groups))
        .collect();

    let mut order: Vec<usize> = (0..input.pods.len()).collect();
    // Stable: equal requests keep input order.
    order.sort_by(|&a, &b| {
        let (ra, rb) = (&requests[a], &requests[b]);
        rb[0].cmp(&ra[0]).then(rb[1].cmp(&ra[1]))
    });

    let mut claims: Vec<OpenClaim> = Vec::new();
    // Claim indices, fewest pods first, then oldest first.
    let mut by_load: Vec<usize> = Vec::new();
    let mut unschedulable = Vec::new();
    for p in order {
        let placed = by_load.iter().position(|&c| {
            try_add(
                &mut claims[c],
                p,
                &requests[p],
                &pod_groups[p],
                &fleet,
                &mut groups,
                &input.pods,
            )
        });
        match placed {
            Some(pos) => {
                // The claim gained a pod: move it back past claims that now hold fewer.
                let mut i = pos;
                while i + 1 < by_load.len()
                    && claim_key(&claims, by_load[i + 1]) < claim_key(&claims, by_load[i])
                {
                    by_load.swap(i, i + 1);
                    i += 1;
                }
            }
            None => {
                let mut claim = OpenClaim {
                    options: (0..fleet.types.len()).collect(),
                    max_avail: max_avail(&fleet, 0..fleet.types.len()),
                    requests: [0; 3],
                    zone: None,
                    pods: Vec::new(),
                };
                if try_add(
                    &mut claim,
                    p,
                    &requests[p],
                    &pod_groups[p],
                    &fleet,
                    &mut groups,
                    &input.pods,
                ) {
                    claims.push(claim);
                    let c = claims.len() - 1;
                    // One pod: after every claim with none (there are none) and before
                    // every claim with more; among one-pod claims, the youngest goes last.
                    let at = by_load.partition_point(|&o| claim_key(&claims, o) < (1, c));
                    by_load.insert(at, c);
                } else {
                    unschedulable.push(p);
                }
            }
        }
    }
    unschedulable.sort_unstable();
    let claims = claims.into_iter().map(|c| launch(&fleet, c)).collect();
    Ok(ReferencePlan {
        claims,
        unschedulable,
    })
}

fn claim_key(claims: &[OpenClaim], c: usize) -> (usize, usize) {
    (claims[c].pods.len(), c)
}

/// The spread groups a pod's `DoNotSchedule` zone constraints belong to, created on first
/// sight.
fn spread_groups(pod: &Pod, fleet: &Fleet, groups: &mut Vec<SpreadGroup>) -> Vec<usize> {
    pod.topology_spread
        .iter()
        .filter(|s| {
            s.topology_key == labels::ZONE
                && s.when_unsatisfiable == WhenUnsatisfiable::DoNotSchedule
        })
        .map(|s| {
            let namespace = &pod.key.namespace;
            match groups.iter().position(|g| {
                g.namespace == *namespace && g.selector == s.selector && g.max_skew == s.max_skew
            }) {
                Some(g) => g,
                None => {
                    groups.push(SpreadGroup {
                        namespace: namespace.clone(),
                        selector: s.selector.clone(),
                        max_skew: s.max_skew,
                        counts: vec![0; fleet.zones.len()],
                    });
                    groups.len() - 1
                }
            }
        })
        .collect()
}

/// Karpenter's `NodeClaim.Add`: the pod joins if some instance type still holds everything
/// and, for a spread pod, the claim's zone (or the zone it would now be pinned to) keeps
/// every spread group within its skew.
fn try_add(
    claim: &mut OpenClaim,
    p: usize,
    request: &Vector,
    pod_groups: &[usize],
    fleet: &Fleet,
    groups: &mut [SpreadGroup],
    pods: &[Pod],
) -> bool {
    let total = add(&claim.requests, request);
    if !fits(&claim.max_avail, &total) {
        return false;
    }
    let zone = if pod_groups.is_empty() {
        claim.zone
    } else {
        let candidates: Vec<usize> = match claim.zone {
            Some(z) => vec![z],
            None => (0..fleet.zones.len())
                .filter(|&z| {
                    claim
                        .options
                        .iter()
                        .any(|&t| fleet.types[t].zone_price[z].is_some())
                })
                .collect(),
        };
        let allowed = candidates
            .into_iter()
            .filter(|&z| pod_groups.iter().all(|&g| groups[g].allows(z)))
            .min_by_key(|&z| {
                let load: i64 = pod_groups.iter().map(|&g| groups[g].counts[z]).sum();
                (load, z)
            });
        match allowed {
            Some(z) => Some(z),
            None => return false,
        }
    };
    let options: Vec<usize> = claim
        .options
        .iter()
        .copied()
        .filter(|&t| {
            let nt = &fleet.types[t];
            nt.fits(&total) && zone.is_none_or(|z| nt.zone_price[z].is_some())
        })
        .collect();
    if options.is_empty() {
        return false;
    }
    claim.max_avail = max_avail(fleet, options.iter().copied());
    claim.options = options;
    claim.requests = total;
    claim.pods.push(p);
    if claim.zone.is_none() && zone.is_some() {
        claim.zone = zone;
    }
    if let Some(z) = zone {
        let pod = &pods[p];
        for g in groups.iter_mut() {
            if g.namespace == pod.key.namespace && g.selector.matches(&pod.labels) {
                g.counts[z] += 1;
            }
        }
    }
    true
}

fn max_avail(fleet: &Fleet, options: impl Iterator<Item = usize>) -> Vector {
    options.fold([0; 3], |m, t| {
        let a = fleet.types[t].avail;
        [m[0].max(a[0]), m[1].max(a[1]), m[2].max(a[2])]
    })
}

/// The cheapest option, in the claim's zone if it has one; ties by name (the fleet is
/// sorted by price, then name).
fn launch(fleet: &Fleet, claim: OpenClaim) -> ReferenceClaim {
    let price_of = |t: usize| match claim.zone {
        Some(z) => fleet.types[t].zone_price[z].expect("options are filtered by zone"),
        None => fleet.types[t].price,
    };
    let best = claim
        .options
        .iter()
        .copied()
        .min_by(|&a, &b| price_of(a).total_cmp(&price_of(b)).then(a.cmp(&b)))
        .expect("a claim keeps at least one option");
    ReferenceClaim {
        instance_type: fleet.types[best].name.clone(),
        zone: claim.zone.map(|z| fleet.zones[z].clone()),
        price: price_of(best),
        pods: claim.pods,
        requests: claim.requests,
        options: claim.options.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kerf_model::pod::{InclusionPolicy, TopologySpread};
    use kerf_model::{InstanceType, Labels, NodePool, Offering, Resources};

    fn it(name: &str, cpu: &str, mem: &str, price: f64) -> InstanceType {
        let mut labels = Labels::new();
        labels.insert(labels::INSTANCE_TYPE.into(), name.into());
        InstanceType {
            name: name.into(),
            labels,
            capacity: Resources::parse([("cpu", cpu), ("memory", mem), ("pods", "110")]).unwrap(),
            overhead: Resources::new(),
            offerings: ["a", "b", "c"]
                .iter()
                .map(|z| Offering {
                    zone: (*z).into(),
                    capacity_type: "on-demand".into(),
                    price,
                    price_is_estimate: false,
                    available: true,
                })
                .collect(),
        }
    }

    fn pod(name: &str, cpu: &str, mem: &str) -> Pod {
        Pod::new(
            "default",
            name,
            Resources::parse([("cpu", cpu), ("memory", mem), ("pods", "1")]).unwrap(),
        )
    }

    fn input(pods: Vec<Pod>, types: Vec<InstanceType>) -> Input {
        Input {
            pods,
            nodepools: vec![NodePool::new("default")],
            instance_types: types,
            ..Input::default()
        }
    }

    #[test]
    fn a_claim_launches_the_cheapest_type_that_holds_all_its_pods() {
        let plan = pack(&input(
            (0..3).map(|i| pod(&format!("p{i}"), "1", "1Gi")).collect(),
            vec![it("small", "2", "4Gi", 0.1), it("large", "8", "16Gi", 0.4)],
        ))
        .unwrap();
        assert!(plan.unschedulable.is_empty());
        assert_eq!(plan.claims.len(), 1);
        assert_eq!(plan.claims[0].instance_type, "large");
        assert_eq!(plan.claims[0].pods.len(), 3);
    }

    #[test]
    fn pods_go_to_the_claim_with_fewest_pods_first() {
        // The 3-core pods open two 4-core claims (they cannot share), then each 1-core pod
        // tops one up; with fewest-pods-first both claims get one, as in Karpenter.
        let types = vec![it("n4", "4", "16Gi", 1.0)];
        let pods = vec![
            pod("big-0", "3", "1Gi"),
            pod("big-1", "3", "1Gi"),
            pod("small-0", "1", "1Gi"),
            pod("small-1", "1", "1Gi"),
        ];
        let plan = pack(&input(pods, types)).unwrap();
        assert_eq!(plan.claims.len(), 2);
        assert!(plan.claims.iter().all(|c| c.pods.len() == 2), "{plan:?}");
        assert!((plan.cost_per_hour() - 2.0).abs() < 1e-9);
    }

    #[test]
    fn daemonset_overhead_is_kept_free_on_every_claim() {
        let mut ds = pod("agent", "1", "1Gi");
        ds.key.namespace = "kube-system".into();
        let mut inp = input(
            (0..4).map(|i| pod(&format!("p{i}"), "1", "1Gi")).collect(),
            vec![it("n4", "4", "16Gi", 1.0)],
        );
        inp.daemonsets = vec![ds];
        let plan = pack(&inp).unwrap();
        // Three pods fit beside the agent; the fourth needs a second node.
        assert_eq!(plan.claims.len(), 2);
    }

    #[test]
    fn zone_spread_pins_claims_to_the_least_loaded_zones() {
        let mut sel = Labels::new();
        sel.insert("app".into(), "web".into());
        let pods = (0..3)
            .map(|i| {
                let mut p = pod(&format!("web-{i}"), "1", "1Gi");
                p.labels = sel.clone();
                p.topology_spread.push(TopologySpread {
                    max_skew: 1,
                    topology_key: labels::ZONE.into(),
                    when_unsatisfiable: WhenUnsatisfiable::DoNotSchedule,
                    selector: LabelSelector::from_match_labels(&sel),
                    min_domains: None,
                    node_affinity_policy: InclusionPolicy::Honor,
                    node_taints_policy: InclusionPolicy::Ignore,
                });
                p
            })
            .collect();
        let plan = pack(&input(pods, vec![it("n8", "8", "32Gi", 1.0)])).unwrap();
        let mut zones: Vec<_> = plan.claims.iter().map(|c| c.zone.clone()).collect();
        zones.sort();
        assert_eq!(
            zones,
            vec![Some("a".into()), Some("b".into()), Some("c".into())]
        );
    }

    #[test]
    fn a_pod_no_type_holds_is_unschedulable() {
        let plan = pack(&input(
            vec![pod("huge", "16", "1Gi"), pod("ok", "1", "1Gi")],
            vec![it("n4", "4", "16Gi", 1.0)],
        ))
        .unwrap();
        assert_eq!(plan.unschedulable, vec![0]);
        assert_eq!(plan.claims.len(), 1);
    }
}
