//! What one NodePool can launch, reduced to the numbers the cost yardsticks need: for each
//! instance type the pool admits, what is left for pods after DaemonSet overhead and what the
//! cheapest offering costs.
//!
//! The lower bounds (`lower_bound.rs`) and the reference packer (`reference.rs`) both start
//! here, and neither shares code with the solver: compatibility, overhead and prices are
//! recomputed from the model, so a solver bug cannot flatter its own yardstick.
//!
//! Only `cpu`, `memory` and `pods` are modelled. A pod or DaemonSet that requests anything
//! else is an error rather than silently ignored, because ignoring a resource would make the
//! bounds optimistic in a way nobody would notice.

use kerf_model::resources::{CPU, MEMORY, PODS};
use kerf_model::taints::first_untolerated;
use kerf_model::{InstanceType, Pod, Requirement, Requirements, Resources, labels};
use kerf_scheduling::Input;

use crate::Error;

/// The resources the yardsticks model, in this order in every [`Vector`].
pub const RESOURCES: [&str; 3] = [CPU, MEMORY, PODS];

/// Quantities of [`RESOURCES`] in milli-units, exactly as `kerf_model::Quantity` holds them.
pub type Vector = [i64; 3];

/// Divisors that turn a [`Vector`] into cores, GiB and pods: the units the LPs are posed in,
/// so that coefficients stay within a few orders of magnitude of each other.
pub const LP_UNITS: [f64; 3] = [1e3, 1e3 * (1u64 << 30) as f64, 1e3];

/// One instance type as a node of the pool.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeType {
    /// Index into `Input::instance_types`.
    pub type_idx: usize,
    pub name: String,
    /// Allocatable less the overhead of the DaemonSets that would run on it.
    pub avail: Vector,
    /// Per entry of [`Fleet::zones`]: the cheapest offering the pool allows there.
    pub zone_price: Vec<Option<f64>>,
    /// The cheapest offering the pool allows in any zone.
    pub price: f64,
}

impl NodeType {
    pub fn fits(&self, request: &Vector) -> bool {
        fits(&self.avail, request)
    }
}

/// The instance types one NodePool can launch.
#[derive(Clone, Debug, PartialEq)]
pub struct Fleet {
    pub nodepool: String,
    /// The pool's template requirements (on-demand unless it says otherwise).
    pub template: Requirements,
    /// Zones some offering of some type is allowed in, sorted.
    pub zones: Vec<String>,
    /// Sorted by price, then name; types with no allowed offering or no room left after
    /// DaemonSet overhead are left out.
    pub types: Vec<NodeType>,
}

impl Fleet {
    /// The fleet of the input's only NodePool.
    pub fn of(input: &Input) -> Result<Fleet, Error> {
        let [np] = input.nodepools.as_slice() else {
            return Err(Error::NodePools(input.nodepools.len()));
        };
        let template = np.template_requirements();
        let mut zones: Vec<String> = Vec::new();
        for t in &input.instance_types {
            if !compatible(t, &template) {
                continue;
            }
            for o in t
                .offerings
                .iter()
                .filter(|o| o.available && o.matches(&template))
            {
                if !zones.contains(&o.zone) {
                    zones.push(o.zone.clone());
                }
            }
        }
        zones.sort();
        let mut types = Vec::new();
        for (type_idx, t) in input.instance_types.iter().enumerate() {
            if !compatible(t, &template) {
                continue;
            }
            let mut overhead = Resources::new();
            for ds in &input.daemonsets {
                if daemon_runs_on(ds, np, t) {
                    overhead.add(&ds.requests);
                }
            }
            let avail = vector_of(&t.allocatable().minus(&overhead), None)?;
            if avail.iter().any(|&q| q <= 0) {
                continue;
            }
            let zone_price: Vec<Option<f64>> = zones
                .iter()
                .map(|z| {
                    let mut reqs = template.clone();
                    reqs.add(labels::ZONE, Requirement::single(z.clone()));
                    t.cheapest_offering(&reqs).map(|o| o.price)
                })
                .collect();
            let Some(price) = zone_price.iter().flatten().copied().reduce(f64::min) else {
                continue;
            };
            types.push(NodeType {
                type_idx,
                name: t.name.clone(),
                avail,
                zone_price,
                price,
            });
        }
        types.sort_by(|a, b| {
            a.price
                .total_cmp(&b.price)
                .then_with(|| a.name.cmp(&b.name))
        });
        Ok(Fleet {
            nodepool: np.name.clone(),
            template,
            zones,
            types,
        })
    }
}

/// A pod's requests as a [`Vector`]; an error if it asks for a resource the yardsticks do
/// not model.
pub fn pod_vector(pod: &Pod) -> Result<Vector, Error> {
    vector_of(&pod.requests, Some(pod))
}

/// Whether `request` fits in `avail`, resource by resource.
pub fn fits(avail: &Vector, request: &Vector) -> bool {
    avail.iter().zip(request).all(|(a, r)| r <= a)
}

pub fn add(a: &Vector, b: &Vector) -> Vector {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}

fn vector_of(r: &Resources, pod: Option<&Pod>) -> Result<Vector, Error> {
    if let (Some(pod), Some(name)) = (pod, r.names().find(|n| !RESOURCES.contains(n))) {
        return Err(Error::UnmodelledResource {
            pod: pod.key.to_string(),
            resource: name.to_string(),
        });
    }
    Ok(RESOURCES.map(|name| r.get(name).0))
}

/// Whether a node of type `t` can satisfy the pool's template: its labels, an allowed
/// offering, and no required instance-defined label it lacks. Written from Karpenter's
/// semantics, independently of the solver's copy.
fn compatible(t: &InstanceType, template: &Requirements) -> bool {
    let labels_ok = template.iter().all(|(k, r)| match t.labels.get(k) {
        Some(v) => r.has(v),
        None if k == labels::ZONE || k == labels::CAPACITY_TYPE => true,
        None if labels::is_instance_defined(k) => r.allows_absent(),
        None => true,
    });
    labels_ok
        && t.offerings
            .iter()
            .any(|o| o.available && o.matches(template))
}

/// Whether a DaemonSet's pod would run on a node of this pool and type: it tolerates the
/// pool's taints and one of its required node-affinity terms is compatible with the pool's
/// template plus the type's labels (zone and capacity type are left open, as any offering
/// may be chosen). Not `Pod::daemon_runs_on`, which judges one node's labels: here the
/// node is still a pool and a type, whose zone and capacity type are not yet known.
fn daemon_runs_on(ds: &Pod, np: &kerf_model::NodePool, t: &InstanceType) -> bool {
    if first_untolerated(&np.taints, &ds.tolerations).is_some() {
        return false;
    }
    let mut node = np.template_requirements();
    for (k, v) in &t.labels {
        node.add(k.clone(), Requirement::single(v.clone()));
    }
    ds.node_affinity.required.is_empty()
        || ds.node_affinity.required.iter().any(|term| {
            node.conflict_with(term, |k| k == labels::ZONE || k == labels::CAPACITY_TYPE)
                .is_none()
        })
}
