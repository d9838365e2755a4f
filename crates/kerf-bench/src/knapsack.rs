//! An exact bounded knapsack over cpu, memory and pods: the pricing step of the configuration
//! bound (`lower_bound.rs`) asks, for one node type, which mix of pods is worth the most
//! under the current dual values.
//!
//! microlp's general branch and bound was tried first and ran out of hand on 30-class
//! instances (hundreds of MiB of open nodes in minutes), so this is a depth-first branch and
//! bound specialised to the problem: items in decreasing value density, each branched on
//! from the most copies that fit down to none, pruned with surrogate-relaxation bounds. The
//! bound for a subtree is the smallest of four fractional knapsacks, each on one weighted
//! sum of the resources (cpu alone, memory alone, pods alone, and all three normalised by
//! capacity); any non-negative weighting gives a valid relaxation, so their minimum is a
//! valid upper bound. Weights and capacities are exact integers; only values are floats.
//!
//! A node limit keeps the worst case bounded: a large node type with room for hundreds of
//! small pods of two dozen shapes has a search tree no bound prunes quickly. When the limit
//! is hit the search stops, the best packing found is still returned, and the reported upper
//! bound falls back to the smaller of the root's surrogate bound and its LP relaxation
//! ([`relaxation`], solved by microlp), so callers never over-state what the knapsack proved.

use crate::fleet::{Vector, fits};

/// One kind of pod: its dual value, its requests and how many copies may be packed.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub value: f64,
    pub weight: Vector,
    pub max: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// Copies of each item (same order as the input) in the best packing found.
    pub counts: Vec<u32>,
    /// That packing's value.
    pub value: f64,
    /// A proven upper bound on the optimum: `value` (with a relative slack of 1e-9 for
    /// float rounding) when the search finished, the root relaxation otherwise.
    pub upper_bound: f64,
    /// Whether the search finished within the node limit.
    pub exact: bool,
}

/// Relative slack on pruning and on the reported bound: float sums of the same values in a
/// different order may differ in the last bits.
const SLACK: f64 = 1e-9;

/// The best packing of `items` into `capacity`, searching at most `node_limit` nodes.
/// With the LP `relaxation`, its bound is reported when the search does not finish (if
/// smaller than the root's surrogate bound) and its rounded-down solution, topped up
/// greedily, is a first incumbent: close to the optimum on large nodes, which is what lets
/// the search prune at all there.
pub fn solve(
    capacity: &Vector,
    items: &[Item],
    node_limit: u64,
    relaxation: Option<&Relaxation>,
) -> Outcome {
    let search = Search::new(capacity, items);
    let root = search
        .bound(capacity, 0)
        .min(relaxation.map_or(f64::INFINITY, |r| r.bound));
    let mut state = State {
        counts: vec![0; search.order.len()],
        best: Vec::new(),
        best_value: 0.0,
        nodes: 0,
        limit: node_limit,
        aborted: false,
    };
    search.greedy(capacity, &vec![0; search.order.len()], &mut state);
    if let Some(r) = relaxation {
        let floor: Vec<u32> = search.order.iter().map(|&k| r.counts[k] as u32).collect();
        search.greedy(capacity, &floor, &mut state);
    }
    search.dfs(0, capacity, 0.0, &mut state);
    let mut counts = vec![0; items.len()];
    for (pos, &n) in state.best.iter().enumerate() {
        counts[search.order[pos]] = n;
    }
    let exact = !state.aborted;
    Outcome {
        counts,
        value: state.best_value,
        upper_bound: if exact {
            state.best_value * (1.0 + SLACK)
        } else {
            root.max(state.best_value)
        },
        exact,
    }
}

/// An upper bound on the optimum without searching: the root's surrogate relaxation.
pub fn upper_bound(capacity: &Vector, items: &[Item]) -> f64 {
    let search = Search::new(capacity, items);
    search.bound(capacity, 0)
}

/// The knapsack with fractional counts allowed.
#[derive(Clone, Debug, PartialEq)]
pub struct Relaxation {
    /// The LP optimum with a relative slack of 1e-7 for the LP solver's tolerance: an upper
    /// bound on the knapsack optimum, usually far tighter than the surrogate ones when many
    /// small items fill a large node.
    pub bound: f64,
    /// Fractional copies per item; rounded down, a packing that is almost as good (at most
    /// three items are fractional in a vertex of a three-row LP).
    pub counts: Vec<f64>,
}

/// Solves the LP relaxation with microlp.
pub fn relaxation(
    capacity: &Vector,
    items: &[Item],
) -> Result<Relaxation, good_lp::ResolutionError> {
    use good_lp::{Expression, ProblemVariables, Solution, SolverModel, constraint, variable};
    let mut vars = ProblemVariables::new();
    let mut chosen = Vec::new();
    for (k, item) in items.iter().enumerate() {
        let fit = (0..3)
            .filter(|&r| item.weight[r] > 0)
            .map(|r| capacity[r] / item.weight[r])
            .min()
            .map_or(i64::from(item.max), |n| n.min(i64::from(item.max)));
        if item.value > 0.0 && fit > 0 {
            chosen.push((k, item, vars.add(variable().min(0).max(fit as f64))));
        }
    }
    let mut counts = vec![0.0; items.len()];
    if chosen.is_empty() {
        return Ok(Relaxation { bound: 0.0, counts });
    }
    let value: Expression = chosen.iter().map(|(_, item, v)| item.value * *v).sum();
    let mut lp = vars.maximise(value.clone()).using(good_lp::microlp);
    for (r, &cap) in capacity.iter().enumerate() {
        // Scaled to the capacity, so every row's coefficients are of order one.
        let scale = cap.max(1) as f64;
        let used: Expression = chosen
            .iter()
            .map(|(_, item, v)| (item.weight[r] as f64 / scale) * *v)
            .sum();
        lp = lp.with(constraint!(used <= cap as f64 / scale));
    }
    let solution = lp.solve()?;
    for (k, _, v) in &chosen {
        counts[*k] = solution.value(*v).max(0.0);
    }
    Ok(Relaxation {
        bound: solution.eval(&value) * (1.0 + 1e-7),
        counts,
    })
}

/// The items worth packing, in branching order, and the surrogate weightings.
struct Search<'a> {
    items: &'a [Item],
    /// Indices into `items` with positive value that fit an empty node, by decreasing
    /// density under the normalised weighting.
    order: Vec<usize>,
    /// Per weighting: the positions in `order`, by decreasing density under it, and each
    /// position's surrogate weight.
    relaxations: Vec<(Vec<usize>, Vec<f64>, [f64; 3])>,
}

struct State {
    /// Copies per position in `order`.
    counts: Vec<u32>,
    best: Vec<u32>,
    best_value: f64,
    nodes: u64,
    limit: u64,
    aborted: bool,
}

impl<'a> Search<'a> {
    fn new(capacity: &Vector, items: &'a [Item]) -> Search<'a> {
        let scale = capacity.map(|c| if c > 0 { 1.0 / c as f64 } else { 0.0 });
        let weightings = [
            scale,
            [scale[0], 0.0, 0.0],
            [0.0, scale[1], 0.0],
            [0.0, 0.0, scale[2]],
        ];
        let surrogate = |w: &[f64; 3], item: &Item| -> f64 {
            (0..3).map(|r| w[r] * item.weight[r] as f64).sum()
        };
        let density = |w: &[f64; 3], item: &Item| -> f64 {
            let s = surrogate(w, item);
            if s > 0.0 {
                item.value / s
            } else {
                f64::INFINITY
            }
        };
        let mut order: Vec<usize> = (0..items.len())
            .filter(|&k| {
                items[k].value > 0.0 && items[k].max > 0 && fits(capacity, &items[k].weight)
            })
            .collect();
        order.sort_by(|&a, &b| {
            density(&weightings[0], &items[b])
                .total_cmp(&density(&weightings[0], &items[a]))
                .then(a.cmp(&b))
        });
        let relaxations = weightings
            .iter()
            .map(|w| {
                let mut by_density: Vec<usize> = (0..order.len()).collect();
                by_density.sort_by(|&a, &b| {
                    density(w, &items[order[b]])
                        .total_cmp(&density(w, &items[order[a]]))
                        .then(a.cmp(&b))
                });
                let weights = order.iter().map(|&k| surrogate(w, &items[k])).collect();
                (by_density, weights, *w)
            })
            .collect();
        Search {
            items,
            order,
            relaxations,
        }
    }

    /// How many copies of the item at `pos` fit in `room`, capped by its maximum.
    fn room_for(&self, pos: usize, room: &Vector) -> u32 {
        let item = &self.items[self.order[pos]];
        (0..3)
            .filter(|&r| item.weight[r] > 0)
            .map(|r| room[r] / item.weight[r])
            .min()
            .map_or(item.max, |n| n.clamp(0, i64::from(item.max)) as u32)
    }

    /// An upper bound on what positions `from..` can add in `room`.
    fn bound(&self, room: &Vector, from: usize) -> f64 {
        let mut best = f64::INFINITY;
        for (by_density, weights, w) in &self.relaxations {
            let mut cap: f64 = (0..3).map(|r| w[r] * room[r] as f64).sum();
            let mut ub = 0.0;
            for &pos in by_density {
                if pos < from {
                    continue;
                }
                let fit = self.room_for(pos, room);
                if fit == 0 {
                    continue;
                }
                let value = self.items[self.order[pos]].value;
                let take = if weights[pos] > 0.0 {
                    (cap / weights[pos]).min(f64::from(fit))
                } else {
                    f64::from(fit)
                };
                ub += take * value;
                cap -= take * weights[pos];
                if cap <= 0.0 {
                    break;
                }
            }
            best = best.min(ub);
        }
        if best.is_finite() { best } else { 0.0 }
    }

    /// An incumbent: `start` (copies per position, which must fit), topped up with as many
    /// copies as fit in branching order; kept if better than the current one.
    fn greedy(&self, capacity: &Vector, start: &[u32], state: &mut State) {
        let mut room = *capacity;
        let mut value = 0.0;
        let mut counts = start.to_vec();
        for (pos, &n) in start.iter().enumerate() {
            let item = &self.items[self.order[pos]];
            for (q, w) in room.iter_mut().zip(&item.weight) {
                *q -= i64::from(n) * w;
            }
            value += f64::from(n) * item.value;
        }
        if room.iter().any(|&q| q < 0)
            || counts
                .iter()
                .zip(&self.order)
                .any(|(&n, &k)| n > self.items[k].max)
        {
            return;
        }
        for (pos, count) in counts.iter_mut().enumerate() {
            let item = &self.items[self.order[pos]];
            let n = self
                .room_for(pos, &room)
                .min(item.max.saturating_sub(*count));
            for (q, w) in room.iter_mut().zip(&item.weight) {
                *q -= i64::from(n) * w;
            }
            value += f64::from(n) * item.value;
            *count += n;
        }
        if state.best.is_empty() || value > state.best_value {
            state.best = counts;
            state.best_value = value;
        }
    }

    fn dfs(&self, pos: usize, room: &Vector, value: f64, state: &mut State) {
        if state.aborted {
            return;
        }
        state.nodes += 1;
        if state.nodes > state.limit {
            state.aborted = true;
            return;
        }
        if pos == self.order.len() {
            if value > state.best_value {
                state.best_value = value;
                state.best.clone_from(&state.counts);
            }
            return;
        }
        if value + self.bound(room, pos) <= state.best_value * (1.0 + SLACK) {
            return;
        }
        let item = &self.items[self.order[pos]];
        for n in (0..=self.room_for(pos, room)).rev() {
            let rest = [
                room[0] - i64::from(n) * item.weight[0],
                room[1] - i64::from(n) * item.weight[1],
                room[2] - i64::from(n) * item.weight[2],
            ];
            state.counts[pos] = n;
            self.dfs(pos + 1, &rest, value + f64::from(n) * item.value, state);
            if state.aborted {
                return;
            }
        }
        state.counts[pos] = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(value: f64, cpu: i64, mem: i64, max: u32) -> Item {
        Item {
            value,
            weight: [cpu, mem, 1],
            max,
        }
    }

    /// Every packing, for checking the search on small instances.
    fn brute_force(capacity: &Vector, items: &[Item]) -> f64 {
        fn go(k: usize, room: Vector, items: &[Item]) -> f64 {
            if k == items.len() {
                return 0.0;
            }
            let mut best = 0.0_f64;
            let mut n = 0u32;
            let mut room_n = room;
            loop {
                best = best.max(f64::from(n) * items[k].value + go(k + 1, room_n, items));
                if n == items[k].max {
                    break;
                }
                n += 1;
                room_n = [
                    room_n[0] - items[k].weight[0],
                    room_n[1] - items[k].weight[1],
                    room_n[2] - items[k].weight[2],
                ];
                if room_n.iter().any(|&q| q < 0) {
                    break;
                }
            }
            best
        }
        go(0, *capacity, items)
    }

    #[test]
    fn the_search_beats_the_greedy_choice() {
        // By density the 5-cpu item goes first, and then nothing else fits 8 cpu (5.5); two
        // 4-cpu items are worth 8.4.
        let items = [item(5.5, 5, 1, 10), item(4.2, 4, 1, 10)];
        let out = solve(&[8, 100, 100], &items, 1_000_000, None);
        assert!(out.exact);
        assert!((out.value - 8.4).abs() < 1e-9, "{out:?}");
        assert_eq!(out.counts, vec![0, 2]);
    }

    #[test]
    fn matches_brute_force_on_small_random_instances() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for _ in 0..300 {
            let n = rng.random_range(1..6);
            let items: Vec<Item> = (0..n)
                .map(|_| {
                    item(
                        rng.random_range(0..100) as f64 / 10.0,
                        rng.random_range(1..6),
                        rng.random_range(0..6),
                        rng.random_range(0..5),
                    )
                })
                .collect();
            let cap = [
                rng.random_range(1..16),
                rng.random_range(1..16),
                rng.random_range(1..8),
            ];
            let out = solve(&cap, &items, u64::MAX, None);
            let want = brute_force(&cap, &items);
            assert!(
                (out.value - want).abs() < 1e-9,
                "{items:?} in {cap:?}: {out:?} vs {want}"
            );
            assert!(out.upper_bound >= want);
            assert!(upper_bound(&cap, &items) >= want - 1e-9);
            let lp = relaxation(&cap, &items).unwrap();
            assert!(lp.bound >= want - 1e-9);
            let seeded = solve(&cap, &items, u64::MAX, Some(&lp));
            assert!((seeded.value - want).abs() < 1e-9, "{seeded:?} vs {want}");
            // The packing is real.
            let used = out.counts.iter().zip(&items).fold([0; 3], |s, (&c, it)| {
                [
                    s[0] + i64::from(c) * it.weight[0],
                    s[1] + i64::from(c) * it.weight[1],
                    s[2] + i64::from(c) * it.weight[2],
                ]
            });
            assert!(fits(&cap, &used));
            assert!(out.counts.iter().zip(&items).all(|(&c, it)| c <= it.max));
        }
    }

    #[test]
    fn a_node_limit_reports_an_inexact_search_with_a_valid_bound() {
        let items: Vec<Item> = (1..=12)
            .map(|k| item(k as f64 + 0.37 * (k % 3) as f64, k, 13 - k, 5))
            .collect();
        let exact = solve(&[40, 40, 30], &items, u64::MAX, None);
        let lp = relaxation(&[40, 40, 30], &items).unwrap();
        let cut = solve(&[40, 40, 30], &items, 3, Some(&lp));
        assert!(exact.exact && !cut.exact);
        assert!(cut.upper_bound >= exact.value - 1e-9);
        assert!(cut.value <= exact.value + 1e-9);
        assert!(cut.upper_bound <= lp.bound);
    }
}
