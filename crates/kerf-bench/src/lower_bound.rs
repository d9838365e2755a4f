//! Lower bounds on what any plan for a set of pending pods must cost per hour: the yardstick
//! the `cost` suite measures kerf (and the reference packer) against.
//!
//! Both bounds look at one NodePool's [`Fleet`]: each instance type with its allocatable less
//! DaemonSet overhead and its cheapest allowed offering. Both ignore every scheduling
//! constraint other than resources (topology spread, affinity, zones), so they stay valid
//! lower bounds for constrained inputs too; they are merely looser there.
//!
//! - **Fluid bound.** Resources as a liquid: minimise `Σ price_t·x_t` subject to
//!   `Σ x_t·avail_{t,r} ≥ demand_r` for cpu, memory and pods, `x ≥ 0`. Any real plan is a
//!   feasible integer point of this LP, so its optimum is a lower bound. It ignores that pods
//!   are indivisible, so it is loose when pods are large relative to nodes.
//! - **Configuration bound** (Gilmore–Gomory). Pods are grouped into classes with identical
//!   requests; a *pattern* is one node of type `t` holding `n_k` pods of each class `k` that
//!   fit together. Minimise `Σ price_p·λ_p` subject to `Σ_p n_{k,p}·λ_p ≥ demand_k`,
//!   `λ ≥ 0`. Every real plan is a set of patterns, so this too is a lower bound, and at its
//!   optimum it is never below the fluid one (a Farley bound reported before convergence can
//!   be, which is why the suite reports the larger of the two). There are far too many patterns to list, so they are
//!   generated: solve the LP over the patterns found so far (its dual, which microlp can
//!   solve directly: `max Σ demand_k·y_k` subject to `Σ_k n_{k,p}·y_k ≤ price_p`), then for
//!   each type find the pattern of largest dual value with an exact integer knapsack
//!   (`knapsack.rs`); a pattern worth more than its price joins the LP. When none is, the LP
//!   is optimal over all patterns.
//!
//! At every iteration the dual values also give a bound that does not need convergence
//! (Farley's): with `θ = max_t knapsack_t(y) / price_t`, `y/θ` is feasible for the dual of
//! the full LP, so `Σ demand_k·y_k / max(1, θ)` is a valid lower bound. It needs only upper
//! bounds on the knapsack optima, which the knapsack search proves even when it stops at its
//! node limit. The configuration bound reported is the best of these; if the iteration cap
//! or the knapsack node limit stops generation first, the report says so instead of calling
//! it optimal.
//!
//! Finally the master LP's own solution, every pattern count rounded up, is a real packing:
//! its price (`ConfigurationBound::rounded_up`) is an upper bound on the resource-only
//! optimum, so together with the lower bound it says how much of a plan's distance from the
//! bound could be recovered at all.

use std::collections::BTreeMap;

use good_lp::{
    Expression, ProblemVariables, Solution, SolverModel, Variable, constraint, microlp, variable,
};
use kerf_model::Pod;

use crate::Error;
use crate::fleet::{Fleet, LP_UNITS, Vector, add, pod_vector};
use crate::knapsack::{self, Item, Relaxation};

/// Column generation stops after this many master solves by default.
pub const DEFAULT_MAX_ITERATIONS: usize = 200;

/// Search nodes one pricing knapsack may visit before it settles for its bound.
pub const KNAPSACK_NODE_LIMIT: u64 = 50_000;

/// Improving patterns added to the master per iteration, at most.
const PATTERNS_PER_ITERATION: usize = 8;

/// A pattern priced at this relative margin above its price is treated as not improving:
/// it keeps floating-point noise in the duals from generating columns forever. The Farley
/// bound uses the exact ratio, so the bound stays valid whatever this is.
const PRICING_TOLERANCE: f64 = 1e-7;

/// Pods with identical requests, in ascending request order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classes {
    pub requests: Vec<Vector>,
    pub counts: Vec<u32>,
}

impl Classes {
    pub fn of(pods: &[Pod]) -> Result<Classes, Error> {
        let mut by_request: BTreeMap<Vector, u32> = BTreeMap::new();
        for pod in pods {
            *by_request.entry(pod_vector(pod)?).or_default() += 1;
        }
        Ok(Classes {
            requests: by_request.keys().copied().collect(),
            counts: by_request.values().copied().collect(),
        })
    }

    /// Total requests of every pod.
    pub fn demand(&self) -> Vector {
        self.requests
            .iter()
            .zip(&self.counts)
            .fold([0; 3], |sum, (r, &n)| {
                add(&sum, &r.map(|q| q * i64::from(n)))
            })
    }
}

/// How the configuration bound ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// No pattern prices out: the LP is solved over every pattern.
    Optimal,
    /// The iteration cap stopped column generation; the value is the best Farley bound.
    IterationCap,
    /// A pricing knapsack hit its node limit without finding an improving pattern, though it
    /// could not rule one out; the value is the best Farley bound.
    PricingLimit,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Optimal => "optimal",
            Status::IterationCap => "farley-at-cap",
            Status::PricingLimit => "farley-pricing",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ConfigurationBound {
    /// Dollars per hour.
    pub value: f64,
    pub status: Status,
    /// Master LPs solved.
    pub iterations: usize,
    /// Patterns in the final master LP.
    pub patterns: usize,
    /// The master LP's solution with every pattern count rounded up: the cost of a real
    /// packing (resources only: it ignores topology spread and every other constraint), so
    /// an upper bound on the resource-only optimum. With `value` it brackets that optimum,
    /// which tells how much of a plan's distance from the bound is the plan's own.
    pub rounded_up: f64,
}

/// Both bounds for one input.
#[derive(Clone, Debug, PartialEq)]
pub struct Bounds {
    pub fluid: f64,
    pub configuration: ConfigurationBound,
}

impl Bounds {
    /// The strongest valid bound.
    pub fn best(&self) -> f64 {
        self.fluid.max(self.configuration.value)
    }
}

/// Both bounds for the input's pending pods on its only NodePool.
pub fn bounds(input: &kerf_scheduling::Input, max_iterations: usize) -> Result<Bounds, Error> {
    let fleet = Fleet::of(input)?;
    let classes = Classes::of(&input.pods)?;
    Ok(Bounds {
        fluid: fluid(&fleet, &classes.demand())?,
        configuration: configuration(&fleet, &classes, max_iterations)?,
    })
}

/// The fluid LP's optimum, dollars per hour.
pub fn fluid(fleet: &Fleet, demand: &Vector) -> Result<f64, Error> {
    if demand.iter().all(|&d| d == 0) {
        return Ok(0.0);
    }
    let mut vars = ProblemVariables::new();
    let x: Vec<Variable> = fleet
        .types
        .iter()
        .map(|_| vars.add(variable().min(0)))
        .collect();
    let cost: Expression = x.iter().zip(&fleet.types).map(|(&v, t)| t.price * v).sum();
    let mut lp = vars.minimise(cost.clone()).using(microlp);
    for r in 0..3 {
        let supply: Expression = x
            .iter()
            .zip(&fleet.types)
            .map(|(&v, t)| (t.avail[r] as f64 / LP_UNITS[r]) * v)
            .sum();
        lp = lp.with(constraint!(supply >= demand[r] as f64 / LP_UNITS[r]));
    }
    let solution = lp.solve().map_err(|source| Error::Lp {
        what: "the fluid LP",
        source,
    })?;
    Ok(solution.eval(&cost))
}

/// A node of one type holding a number of pods of each class.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Pattern {
    /// Index into `Fleet::types`.
    node_type: usize,
    counts: Vec<u32>,
}

/// The configuration LP bound by column generation, dollars per hour.
pub fn configuration(
    fleet: &Fleet,
    classes: &Classes,
    max_iterations: usize,
) -> Result<ConfigurationBound, Error> {
    let n_classes = classes.requests.len();
    if n_classes == 0 {
        return Ok(ConfigurationBound {
            value: 0.0,
            status: Status::Optimal,
            iterations: 0,
            patterns: 0,
            rounded_up: 0.0,
        });
    }
    // Start from the cheapest-per-pod single-class pattern of each class, so every class is
    // covered and the dual is bounded.
    let mut patterns: Vec<Pattern> = Vec::new();
    for (k, request) in classes.requests.iter().enumerate() {
        let best = fleet
            .types
            .iter()
            .enumerate()
            .filter_map(|(t, nt)| {
                let n = homogeneous(&nt.avail, request).min(i64::from(classes.counts[k]));
                (n > 0).then(|| (nt.price / n as f64, t, n))
            })
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let Some((_, t, n)) = best else {
            return Err(Error::NoFit {
                request: *request,
                nodepool: fleet.nodepool.clone(),
            });
        };
        let mut counts = vec![0; n_classes];
        counts[k] = n as u32;
        patterns.push(Pattern {
            node_type: t,
            counts,
        });
    }
    let mut best_bound = 0.0_f64;
    for iteration in 1..=max_iterations {
        let duals = master_duals(fleet, classes, &patterns)?;
        let dual_value: f64 = duals
            .iter()
            .zip(&classes.counts)
            .map(|(y, &d)| y * f64::from(d))
            .sum();
        // Pricing: every type's best pattern under these duals. `theta` is the largest
        // value-to-price ratio proven possible; a type whose relaxation cannot beat it (nor
        // its price) can neither price out nor raise the Farley bound, so its search is
        // skipped.
        let items: Vec<Item> = classes
            .requests
            .iter()
            .zip(&classes.counts)
            .zip(&duals)
            .map(|((request, &count), &value)| Item {
                value,
                weight: *request,
                max: count,
            })
            .collect();
        // Types in decreasing order of what their LP relaxation says they could be worth
        // per dollar, searched until a few improving patterns are found; the types not
        // searched enter the Farley bound through their relaxation, which in this order is
        // at most the first unsearched one's.
        let mut ranked: Vec<(Relaxation, usize)> = Vec::with_capacity(fleet.types.len());
        for (t, nt) in fleet.types.iter().enumerate() {
            if knapsack::upper_bound(&nt.avail, &items) <= nt.price {
                continue;
            }
            let relaxed = knapsack::relaxation(&nt.avail, &items).map_err(|source| Error::Lp {
                what: "a pricing knapsack's relaxation",
                source,
            })?;
            if relaxed.bound > nt.price {
                ranked.push((relaxed, t));
            }
        }
        ranked.sort_by(|a, b| {
            let ratio = |(r, t): &(Relaxation, usize)| r.bound / fleet.types[*t].price;
            ratio(b).total_cmp(&ratio(a)).then(a.1.cmp(&b.1))
        });
        let mut theta = 1.0_f64;
        let mut fresh: Vec<Pattern> = Vec::new();
        for (relaxed, t) in &ranked {
            let nt = &fleet.types[*t];
            if fresh.len() >= PATTERNS_PER_ITERATION {
                theta = theta.max(relaxed.bound / nt.price);
                break;
            }
            let best = knapsack::solve(&nt.avail, &items, KNAPSACK_NODE_LIMIT, Some(relaxed));
            theta = theta.max(best.upper_bound / nt.price);
            if best.value > nt.price * (1.0 + PRICING_TOLERANCE) {
                fresh.push(Pattern {
                    node_type: *t,
                    counts: best.counts,
                });
            }
        }
        best_bound = best_bound.max(dual_value / theta);
        fresh.retain(|p| !patterns.contains(p));
        if fresh.is_empty() {
            // Converged when no type can beat its price by more than the tolerance; else a
            // search was cut short and the LP may not be optimal over all patterns.
            let status = if theta <= 1.0 + PRICING_TOLERANCE {
                Status::Optimal
            } else {
                Status::PricingLimit
            };
            return Ok(ConfigurationBound {
                value: best_bound,
                status,
                iterations: iteration,
                patterns: patterns.len(),
                rounded_up: rounded_up(fleet, classes, &patterns)?,
            });
        }
        patterns.extend(fresh);
    }
    Ok(ConfigurationBound {
        value: best_bound,
        status: Status::IterationCap,
        iterations: max_iterations,
        patterns: patterns.len(),
        rounded_up: rounded_up(fleet, classes, &patterns)?,
    })
}

/// Solves the master LP over `patterns` (the primal this time) and prices its solution
/// with every count rounded up. Rounding up only adds nodes, so the patterns still cover
/// every class: it is the cost of a real packing.
fn rounded_up(fleet: &Fleet, classes: &Classes, patterns: &[Pattern]) -> Result<f64, Error> {
    let mut vars = ProblemVariables::new();
    let lambda: Vec<Variable> = patterns
        .iter()
        .map(|_| vars.add(variable().min(0)))
        .collect();
    let cost: Expression = lambda
        .iter()
        .zip(patterns)
        .map(|(&v, p)| fleet.types[p.node_type].price * v)
        .sum();
    let mut lp = vars.minimise(cost).using(microlp);
    for (k, &demand) in classes.counts.iter().enumerate() {
        let covered: Expression = lambda
            .iter()
            .zip(patterns)
            .filter(|(_, p)| p.counts[k] > 0)
            .map(|(&v, p)| f64::from(p.counts[k]) * v)
            .sum();
        lp = lp.with(constraint!(covered >= f64::from(demand)));
    }
    let solution = lp.solve().map_err(|source| Error::Lp {
        what: "the configuration LP's primal",
        source,
    })?;
    Ok(lambda
        .iter()
        .zip(patterns)
        .map(|(&v, p)| {
            // A count within the solver's tolerance of an integer is that integer.
            let n = (solution.value(v) - 1e-6).ceil().max(0.0);
            n * fleet.types[p.node_type].price
        })
        .sum())
}

/// How many pods of one request fit on an empty node.
fn homogeneous(avail: &Vector, request: &Vector) -> i64 {
    (0..3)
        .filter(|&r| request[r] > 0)
        .map(|r| avail[r] / request[r])
        .min()
        .unwrap_or(0)
}

/// The master LP's dual: `max Σ demand_k·y_k` subject to `Σ_k n_{k,p}·y_k ≤ price_p` for
/// every pattern, `y ≥ 0`. Its optimum equals the master's (strong duality), and its
/// solution is the duals the pricing step needs, which good_lp's microlp backend does not
/// expose for the primal.
fn master_duals(fleet: &Fleet, classes: &Classes, patterns: &[Pattern]) -> Result<Vec<f64>, Error> {
    let mut vars = ProblemVariables::new();
    let y: Vec<Variable> = classes
        .counts
        .iter()
        .map(|_| vars.add(variable().min(0)))
        .collect();
    let objective: Expression = y
        .iter()
        .zip(&classes.counts)
        .map(|(&v, &d)| f64::from(d) * v)
        .sum();
    let mut lp = vars.maximise(objective).using(microlp);
    for p in patterns {
        let value: Expression = y
            .iter()
            .zip(&p.counts)
            .filter(|(_, n)| **n > 0)
            .map(|(&v, &n)| f64::from(n) * v)
            .sum();
        lp = lp.with(constraint!(value <= fleet.types[p.node_type].price));
    }
    let solution = lp.solve().map_err(|source| Error::Lp {
        what: "the configuration LP's dual",
        source,
    })?;
    Ok(y.iter().map(|&v| solution.value(v).max(0.0)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::NodeType;

    const CORE: i64 = 1000;
    const GIB: i64 = 1000 << 30;
    const POD: i64 = 1000;

    /// One node type of 4 cores, 16 GiB, 110 pods at $1/h.
    fn one_type() -> Fleet {
        Fleet {
            nodepool: "default".into(),
            template: kerf_model::Requirements::new(),
            zones: vec!["a".into()],
            types: vec![NodeType {
                type_idx: 0,
                name: "n4".into(),
                avail: [4 * CORE, 16 * GIB, 110 * POD],
                zone_price: vec![Some(1.0)],
                price: 1.0,
            }],
        }
    }

    fn classes(shapes: &[(i64, i64, u32)]) -> Classes {
        Classes {
            requests: shapes
                .iter()
                .map(|&(cpu, gib, _)| [cpu, gib * GIB, POD])
                .collect(),
            counts: shapes.iter().map(|&(_, _, n)| n).collect(),
        }
    }

    #[test]
    fn pods_that_do_not_divide_a_node_lift_the_configuration_bound_above_the_fluid_one() {
        // Five 3-core pods: only one fits a 4-core node, so five nodes are needed. The fluid
        // bound sees 15 cores on 4-core nodes: 3.75 nodes.
        let fleet = one_type();
        let c = classes(&[(3 * CORE, 1, 5)]);
        let fluid = fluid(&fleet, &c.demand()).unwrap();
        assert!((fluid - 3.75).abs() < 1e-6, "{fluid}");
        let conf = configuration(&fleet, &c, 50).unwrap();
        assert_eq!(conf.status, Status::Optimal);
        assert!((conf.value - 5.0).abs() < 1e-6, "{conf:?}");
        assert!((conf.rounded_up - 5.0).abs() < 1e-6, "{conf:?}");
    }

    #[test]
    fn two_classes_that_pair_up_need_column_generation() {
        // 3-core and 1-core pods pair perfectly on a 4-core node: four of each fill four
        // nodes. The start patterns are single-class (one 3-core pod, or four 1-core pods per
        // node: 4 + 1 nodes); only a generated mixed pattern reaches 4.
        let fleet = one_type();
        let c = classes(&[(3 * CORE, 1, 4), (CORE, 1, 4)]);
        let conf = configuration(&fleet, &c, 50).unwrap();
        assert_eq!(conf.status, Status::Optimal);
        assert!((conf.value - 4.0).abs() < 1e-6, "{conf:?}");
        assert!(conf.iterations > 1, "{conf:?}");
    }

    #[test]
    fn memory_can_be_the_binding_resource() {
        // 1-core, 10 GiB pods: one per 16 GiB node although CPU would allow four.
        let fleet = one_type();
        let c = classes(&[(CORE, 10, 3)]);
        assert!((fluid(&fleet, &c.demand()).unwrap() - 30.0 / 16.0).abs() < 1e-6);
        let conf = configuration(&fleet, &c, 50).unwrap();
        assert!((conf.value - 3.0).abs() < 1e-6, "{conf:?}");
    }

    #[test]
    fn the_fluid_bound_mixes_types_to_match_the_demand_shape() {
        // A CPU-rich and a memory-rich type at the same price: a demand of 8 cores and
        // 32 GiB is met exactly by one of each, which neither type alone can do for $2.
        let mut fleet = one_type();
        fleet.types = vec![
            NodeType {
                type_idx: 0,
                name: "cpu".into(),
                avail: [8 * CORE, 0, 110 * POD],
                zone_price: vec![Some(1.0)],
                price: 1.0,
            },
            NodeType {
                type_idx: 1,
                name: "mem".into(),
                avail: [0, 32 * GIB, 110 * POD],
                zone_price: vec![Some(1.0)],
                price: 1.0,
            },
        ];
        let v = fluid(&fleet, &[8 * CORE, 32 * GIB, 2 * POD]).unwrap();
        assert!((v - 2.0).abs() < 1e-6, "{v}");
    }

    #[test]
    fn a_pod_no_type_can_hold_is_an_error_naming_the_pool() {
        let fleet = one_type();
        let c = classes(&[(8 * CORE, 1, 1)]);
        let err = configuration(&fleet, &c, 10).unwrap_err();
        assert!(err.to_string().contains("default"), "{err}");
    }

    #[test]
    fn the_iteration_cap_is_reported_rather_than_called_optimal() {
        let fleet = one_type();
        let c = classes(&[(3 * CORE, 1, 4), (CORE, 1, 4)]);
        let conf = configuration(&fleet, &c, 1).unwrap();
        assert_eq!(conf.status, Status::IterationCap);
        // Farley's bound after one master solve is still a valid bound.
        assert!(conf.value <= 4.0 + 1e-6, "{conf:?}");
    }
}
