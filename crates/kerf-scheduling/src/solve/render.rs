//! The plan as the caller sees it: indices become pod keys and node names, and each claim
//! launches its cheapest carried option, with the labels, taints and requests its node
//! will have.

use kerf_model::labels;
use kerf_model::{InstanceType, Resources};

use super::Solver;
use crate::claim::{ClaimState, Pool};
use crate::{ExistingPlacement, Input, Launch, NewClaim, Plan, Unschedulable};

impl Solver<'_> {
    /// The plan as the caller sees it: pod keys and names, claims rendered.
    pub(super) fn into_plan(self) -> Plan {
        let input = self.facts.input;
        let pod_key = |p: usize| input.pods[p].key.clone();
        let mut plan = Plan::default();
        for (i, state) in self.nodes.iter().enumerate() {
            if !state.placed.is_empty() {
                let mut pods: Vec<_> = state.placed.iter().map(|&p| pod_key(p)).collect();
                pods.sort();
                plan.existing.push(ExistingPlacement {
                    node: input.nodes[i].name.clone(),
                    pods,
                });
            }
        }
        let catalog = self.catalog();
        for claim in &self.claims {
            // The cheapest carried option launches.
            let chosen = catalog.carried(claim.pool, &claim.reqs, &claim.options);
            let requests = self.facts.res.resources(&claim.requests);
            let pool = &self.pools[claim.pool];
            plan.new_claims
                .push(finish_claim(input, pool, claim, requests, &chosen));
        }
        plan.unschedulable = self
            .unschedulable
            .into_iter()
            .map(|(p, reason)| Unschedulable {
                pod: pod_key(p),
                reason,
            })
            .collect();
        plan
    }
}

/// Renders a claim launching the first of `priced` (option, offering), cheapest first.
fn finish_claim(
    input: &Input,
    pool: &Pool,
    claim: &ClaimState,
    requests: Resources,
    priced: &[(usize, usize)],
) -> NewClaim {
    let np = &input.nodepools[pool.nodepool];
    let priced: Vec<(usize, &kerf_model::Offering)> = priced
        .iter()
        .map(|&(o, i)| (o, &input.instance_types[pool.types[o]].offerings[i]))
        .collect();
    let (best, offering) = priced[0];
    let it: &InstanceType = &input.instance_types[pool.types[best]];
    let mut labels = claim.reqs.single_valued_labels();
    // A custom label the claim requires but does not pin (`Exists`, `In [a, b]`) still
    // goes on the node, with one allowed value, as Karpenter's `Requirements.Labels`.
    for (key, r) in claim.reqs.iter() {
        if !labels.contains_key(key)
            && key != labels::HOSTNAME
            && !labels::is_instance_defined(key)
            && let Some(v) = r.any_value()
        {
            labels.insert(key.to_string(), v);
        }
    }
    labels.extend(np.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    labels.extend(it.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    labels.insert(labels::NODEPOOL.to_string(), np.name.clone());
    labels.insert(labels::ZONE.to_string(), offering.zone.clone());
    labels.insert(
        labels::CAPACITY_TYPE.to_string(),
        offering.capacity_type.clone(),
    );
    let mut requests = requests;
    requests.add(&pool.overhead[best]);
    let mut pods: Vec<_> = claim
        .pods
        .iter()
        .map(|&p| input.pods[p].key.clone())
        .collect();
    pods.sort();
    NewClaim {
        nodepool: np.name.clone(),
        launch: Launch {
            instance_type: it.name.clone(),
            zone: offering.zone.clone(),
            capacity_type: offering.capacity_type.clone(),
            price: offering.price,
            price_is_estimate: offering.price_is_estimate,
        },
        instance_type_options: priced
            .iter()
            .map(|(o, _)| input.instance_types[pool.types[*o]].name.clone())
            .collect(),
        requirements: claim.reqs.clone(),
        labels,
        taints: np.taints.clone(),
        pods,
        requests,
    }
}
