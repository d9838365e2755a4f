//! One disruption pass: expiration, then the first of emptiness, drift, multi-node and
//! single-node consolidation that acts; a reason for every managed node left alone.

use std::collections::BTreeMap;

use kerf_model::nodepool::ConsolidationPolicy;

use crate::budget::{Reason, allowance};
use crate::facts::{self, Facts};
use crate::world::{Consolidation, World};
use crate::{
    Command, Config, Decision, Destination, Held, Kept, Method, Outcome, Snapshot, render_duration,
};

/// Computes one disruption pass over `snapshot` at `now` (Unix seconds, UTC).
pub fn compute_commands(snapshot: &Snapshot, now: i64, config: &Config) -> Outcome {
    pass(snapshot, now, config, None)
}

/// A pass with only `nodes` as candidates for emptiness, drift and consolidation; every
/// other node stays a destination. This is what validating a command needs: as
/// Karpenter's validator, it asks whether this command's own nodes would still be
/// chosen, for the same decision, not whether the whole cluster would choose it again,
/// which costs a simulation per candidate in the cluster. Expiration still covers every
/// node, as it does in a full pass.
pub fn compute_commands_among(
    snapshot: &Snapshot,
    now: i64,
    config: &Config,
    nodes: &[String],
) -> Outcome {
    pass(snapshot, now, config, Some(nodes))
}

fn pass(snapshot: &Snapshot, now: i64, config: &Config, among: Option<&[String]>) -> Outcome {
    let facts = facts::judge(snapshot, now);
    let n = facts.len();
    let mut world = World::new(snapshot, facts, now);
    let mut reasons: Vec<Option<String>> = vec![None; n];
    // Set where a reason is one Karpenter reports; every other reason is quiet.
    let mut held = vec![Held::Quiet; n];
    let mut commands: Vec<Command> = Vec::new();
    let mut in_command = vec![false; n];
    let managed = |f: &Facts| f.pool_name.is_some();

    // Nodes already being deleted are no destination, and their pods need room on the
    // nodes that stay: place them first and count them there from then on.
    let deleting: Vec<usize> = (0..n).filter(|&i| world.facts[i].deleting).collect();
    let mut assumed_moves = Vec::new();
    if !deleting.is_empty() {
        assumed_moves = world.place(&deleting, false, config).moves;
        world.apply(&deleting, &assumed_moves);
        for &i in &deleting {
            reasons[i] = Some("already being deleted".to_string());
        }
    }

    // Expiration: forceful, whatever the budgets say. Indexing (not iterating) because
    // each expiry changes the world the next one is simulated in. It expires NodeClaims:
    // a node without one never expires.
    #[allow(clippy::needless_range_loop)]
    for i in 0..n {
        let f = &world.facts[i];
        if !managed(f) || f.deleting || f.claim.is_none() {
            continue;
        }
        let Some(why) = f.expired.clone() else {
            continue;
        };
        let sim = world.place(&[i], true, config);
        let f = &world.facts[i];
        let mut notes = Vec::new();
        if let Some(blocked) = &f.blocked {
            let grace = f
                .claim
                .and_then(|c| c.termination_grace_period)
                .or_else(|| f.pool.and_then(|p| p.termination_grace_period));
            notes.push(match grace {
                Some(g) => format!(
                    "the drain waits while {blocked}, until terminationGracePeriod {} runs out",
                    render_duration(g.as_secs() as i64)
                ),
                None => format!(
                    "the drain waits while {blocked}, indefinitely: no terminationGracePeriod is set"
                ),
            });
        }
        for u in &sim.plan.unschedulable {
            notes.push(format!("pod {} has nowhere to go: {}", u.pod, u.reason));
        }
        let replacement_price: f64 = sim.plan.new_claims.iter().map(|c| c.launch.price).sum();
        commands.push(Command {
            method: Method::Expiration,
            decision: if sim.plan.new_claims.is_empty() {
                Decision::Delete
            } else {
                Decision::Replace
            },
            nodes: vec![f.node.name.clone()],
            why,
            replacements: sim.plan.new_claims.clone(),
            moves: sim.moves.clone(),
            savings_per_hour: f.price.unwrap_or(0.0) - replacement_price,
            notes,
        });
        world.apply(&[i], &sim.moves);
        in_command[i] = true;
    }

    // Budgets: per pool, initialized nodes with a NodeClaim (Karpenter's managed nodes),
    // and those already disrupting.
    let mut pool_nodes: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    for (i, f) in world.facts.iter().enumerate() {
        if let (Some(pool), true) = (f.pool_name, f.initialized && f.claim.is_some()) {
            let entry = pool_nodes.entry(pool).or_default();
            entry.0 += 1;
            if f.disrupting || in_command[i] {
                entry.1 += 1;
            }
        }
    }
    let budget = |i: usize, reason: Reason| -> (u32, String) {
        let f = &world.facts[i];
        let (pool, name) = (
            f.pool.expect("candidates have a pool"),
            f.pool_name.unwrap_or(""),
        );
        let (n_nodes, disrupting) = pool_nodes.get(name).copied().unwrap_or_default();
        let a = allowance(&pool.disruption.budgets, reason, n_nodes, now);
        let available = a.limit.map_or(u32::MAX, |l| l.saturating_sub(disrupting));
        let why = if a.limit == Some(0) {
            format!(
                "budget of nodepool {name} ({}) allows no {} disruptions now",
                a.description,
                reason.as_str()
            )
        } else {
            format!("budget of nodepool {name} ({}) already used", a.description)
        };
        (available, why)
    };

    // Nominated nodes: where the scheduler would put pending pods.
    let mut nominated: Vec<Vec<String>> = vec![Vec::new(); n];
    if !snapshot.pending_pods.is_empty() {
        for e in world
            .solve_pending(snapshot.pending_pods.clone(), config)
            .existing
        {
            if let Some(i) = snapshot.nodes.iter().position(|node| node.name == e.node) {
                nominated[i] = e.pods.iter().map(|p| p.to_string()).collect();
            }
        }
    }

    // Candidates, cheapest to disrupt first.
    let mut candidates = Vec::new();
    for i in 0..n {
        let f = &world.facts[i];
        if !managed(f) || in_command[i] || reasons[i].is_some() {
            continue;
        }
        let why = if f.claim.is_none() {
            // Karpenter disrupts only what it launched: a candidate is a Node with a
            // NodeClaim. The label alone may be copied onto any node.
            Some((
                "no NodeClaim: Karpenter disrupts only nodes it launched, each with a NodeClaim (the karpenter.sh/nodepool label alone does not make it one)"
                    .to_string(),
                Held::Quiet,
            ))
        } else if f.pool.is_none() {
            Some((
                format!(
                    "its NodePool {:?} (label karpenter.sh/nodepool) does not exist",
                    f.pool_name.unwrap_or("")
                ),
                Held::Blocked,
            ))
        } else if !f.initialized {
            Some(("not initialized yet".to_string(), Held::Blocked))
        } else if among.is_some_and(|among| !among.contains(&f.node.name)) {
            Some((
                "not among the nodes being validated".to_string(),
                Held::Quiet,
            ))
        } else if !nominated[i].is_empty() {
            Some((
                format!("nominated for pending pods ({})", nominated[i].join(", ")),
                Held::Blocked,
            ))
        } else {
            f.blocked.as_ref().map(|b| {
                let told = if b.chosen { Held::Quiet } else { Held::Blocked };
                (b.why.clone(), told)
            })
        };
        match why {
            Some((why, told)) => {
                reasons[i] = Some(why);
                held[i] = told;
            }
            None => candidates.push(i),
        }
    }
    candidates.sort_by(|&a, &b| {
        let (fa, fb) = (&world.facts[a], &world.facts[b]);
        fa.disruption_cost
            .total_cmp(&fb.disruption_cost)
            .then_with(|| fa.node.name.cmp(&fb.node.name))
    });

    let consolidatable = |i: usize| -> Result<(), String> {
        let f = &world.facts[i];
        let pool = f.pool.expect("candidates have a pool");
        match pool.disruption.consolidate_after {
            None => Err("consolidateAfter is Never".to_string()),
            Some(after) => match f.since_pod_event {
                Some(since) if since < after.as_secs() as i64 => Err(format!(
                    "consolidateAfter {} not elapsed ({} since last pod event)",
                    render_duration(after.as_secs() as i64),
                    render_duration(since)
                )),
                _ => Ok(()),
            },
        }
    };

    // The first method that acts wins the pass.
    let mut acted: Option<Command> = None;
    let take =
        |pool_used: &mut BTreeMap<String, u32>, i: usize, reason: Reason| -> Result<(), String> {
            let (available, why) = budget(i, reason);
            let used = pool_used
                .entry(world.facts[i].pool_name.unwrap_or("").to_string())
                .or_default();
            if *used < available {
                *used += 1;
                Ok(())
            } else {
                Err(why)
            }
        };

    // Emptiness.
    {
        let mut used = BTreeMap::new();
        let mut nodes = Vec::new();
        let mut savings = 0.0;
        for &i in &candidates {
            if !world.facts[i].reschedulable.is_empty() {
                continue;
            }
            let outcome = consolidatable(i).and_then(|()| take(&mut used, i, Reason::Empty));
            match outcome {
                Ok(()) => {
                    nodes.push(i);
                    savings += world.facts[i].price.unwrap_or(0.0);
                }
                Err(why) => reasons[i] = Some(format!("empty, but {why}")),
            }
        }
        if !nodes.is_empty() {
            acted = Some(Command {
                method: Method::Emptiness,
                decision: Decision::Delete,
                nodes: nodes
                    .iter()
                    .map(|&i| world.facts[i].node.name.clone())
                    .collect(),
                why: "empty: nothing but DaemonSet or static pods runs there".to_string(),
                replacements: Vec::new(),
                moves: Vec::new(),
                savings_per_hour: savings,
                notes: Vec::new(),
            });
            for i in nodes {
                in_command[i] = true;
            }
        }
    }

    // Drift: empty drifted nodes all at once, else the first drifted node whose pods
    // all have somewhere to go.
    {
        let mut used = BTreeMap::new();
        let drifted: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&i| !in_command[i] && world.facts[i].drift.is_some())
            .collect();
        let mut empty = Vec::new();
        for &i in drifted
            .iter()
            .filter(|&&i| world.facts[i].reschedulable.is_empty())
        {
            let drift = world.facts[i].drift.clone().unwrap_or_default();
            match take(&mut used, i, Reason::Drifted) {
                Ok(()) if acted.is_none() => empty.push(i),
                Ok(()) => {
                    reasons[i] = Some(format!(
                        "drifted ({drift}); waits for a later pass: {} acts first",
                        acted.as_ref().map_or("", |c| c.method.as_str())
                    ));
                }
                Err(why) => reasons[i] = Some(format!("drifted ({drift}), but {why}")),
            }
        }
        if acted.is_none() && !empty.is_empty() {
            acted = Some(Command {
                method: Method::Drift,
                decision: Decision::Delete,
                nodes: empty
                    .iter()
                    .map(|&i| world.facts[i].node.name.clone())
                    .collect(),
                why: format!(
                    "drifted: {}",
                    world.facts[empty[0]].drift.clone().unwrap_or_default()
                ),
                replacements: Vec::new(),
                moves: Vec::new(),
                savings_per_hour: empty
                    .iter()
                    .map(|&i| world.facts[i].price.unwrap_or(0.0))
                    .sum(),
                notes: Vec::new(),
            });
            for &i in &empty {
                in_command[i] = true;
            }
        }
        for &i in drifted
            .iter()
            .filter(|&&i| !world.facts[i].reschedulable.is_empty())
        {
            let drift = world.facts[i].drift.clone().unwrap_or_default();
            if reasons[i].is_some() {
                continue;
            }
            let (available, why) = budget(i, Reason::Drifted);
            if available == 0 {
                reasons[i] = Some(format!("drifted ({drift}), but {why}"));
                continue;
            }
            if let Some(first) = &acted {
                reasons[i] = Some(format!(
                    "drifted ({drift}); waits for a later pass: {} acts first",
                    first.method.as_str()
                ));
                continue;
            }
            let sim = world.simulate(&[i], true, config);
            if let Some(why) = crate::world::waits_for_uninitialized(&sim.plan) {
                reasons[i] = Some(format!("drifted ({drift}), but {why}"));
                continue;
            }
            if let Some(u) = sim.plan.unschedulable.first() {
                reasons[i] = Some(format!(
                    "drifted ({drift}), but pod {} has nowhere to go: {}",
                    u.pod, u.reason
                ));
                continue;
            }
            let f = &world.facts[i];
            let replacement_price: f64 = sim.plan.new_claims.iter().map(|c| c.launch.price).sum();
            acted = Some(Command {
                method: Method::Drift,
                decision: if sim.plan.new_claims.is_empty() {
                    Decision::Delete
                } else {
                    Decision::Replace
                },
                nodes: vec![f.node.name.clone()],
                why: format!("drifted: {drift}"),
                replacements: sim.plan.new_claims.clone(),
                moves: sim.moves,
                savings_per_hour: f.price.unwrap_or(0.0) - replacement_price,
                notes: Vec::new(),
            });
            in_command[i] = true;
        }
    }

    // Consolidation candidates: underutilized-eligible, past consolidateAfter.
    let mut eligible = Vec::new();
    for &i in &candidates {
        if in_command[i] || reasons[i].is_some() {
            continue;
        }
        let f = &world.facts[i];
        let pool = f.pool.expect("candidates have a pool");
        if pool.disruption.consolidation_policy == ConsolidationPolicy::WhenEmpty {
            reasons[i] = Some(format!(
                "consolidationPolicy WhenEmpty and it runs {}",
                crate::budget::plural(f.reschedulable.len() as u32, "pod")
            ));
            continue;
        }
        match consolidatable(i) {
            Ok(()) => eligible.push(i),
            Err(why) => reasons[i] = Some(why),
        }
    }

    // Balanced (Karpenter v1.14): a consolidation acts only when the share of its pools'
    // cost it saves is at least half the share of their disruption cost it causes.
    let balanced = |nodes: &[usize], savings: f64| -> Result<(), String> {
        let facts = &world.facts;
        if !nodes.iter().any(|&i| {
            facts[i]
                .pool
                .is_some_and(|p| p.disruption.consolidation_policy == ConsolidationPolicy::Balanced)
        }) {
            return Ok(());
        }
        let pools: Vec<&str> = nodes.iter().filter_map(|&i| facts[i].pool_name).collect();
        let (mut total_cost, mut total_disruption) = (0.0, 0.0);
        for (i, f) in facts.iter().enumerate() {
            if !world.gone[i] && f.pool_name.is_some_and(|p| pools.contains(&p)) {
                total_cost += f.price.unwrap_or(0.0);
                total_disruption += f.disruption_cost;
            }
        }
        let disruption: f64 = nodes.iter().map(|&i| facts[i].disruption_cost).sum();
        if total_cost <= 0.0 || total_disruption <= 0.0 || disruption <= 0.0 {
            return Ok(());
        }
        let (saved, disrupted) = (savings / total_cost, disruption / total_disruption);
        let score = saved / disrupted;
        if score >= 0.5 {
            Ok(())
        } else {
            Err(format!(
                "consolidationPolicy Balanced: it would save {:.0}% of the pool's cost for {:.0}% of its disruption cost (score {score:.2}, needs 0.50)",
                saved * 100.0,
                disrupted * 100.0
            ))
        }
    };

    // Multi-node consolidation: every budget-allowed prefix of the candidates in two
    // orders — disruption cost (Karpenter's), and least utilized first (where packing
    // gains hide) — keeping the group that saves most; ties go to the first found.
    {
        let utilization = |i: usize| {
            let f = &world.facts[i];
            let alloc = f.node.allocatable.get("cpu").0.max(1) as f64;
            let used: i64 = f
                .reschedulable
                .iter()
                .map(|&p| world.pods[p].requests.get("cpu").0)
                .sum();
            used as f64 / alloc
        };
        let mut by_utilization = eligible.clone();
        by_utilization.sort_by(|&a, &b| utilization(a).total_cmp(&utilization(b)));
        let largest_cpu = snapshot
            .instance_types
            .iter()
            .map(|it| it.allocatable().get("cpu").0 as f64 / 1000.0)
            .fold(0.0, f64::max);
        let mut best: Option<(Vec<usize>, Consolidation)> = None;
        for order in [&eligible, &by_utilization] {
            if acted.is_some() {
                break;
            }
            let mut used = BTreeMap::new();
            // A group asks each PDB for the evictions of all its nodes' pods at once: a
            // node joins only while every PDB still allows them, or no more than one of
            // its nodes asks on its own. Karpenter checks PDBs node by node, so two
            // nodes each with one pod of a `maxUnavailable: 1` Deployment could go
            // together; one node's drain asking more than its PDB allows is paced by the
            // eviction API, as in Karpenter (blocking such nodes would stall drift).
            // Per PDB: evictions asked so far, and the most one node asked.
            let mut pdb_used: BTreeMap<usize, (i32, i32)> = BTreeMap::new();
            let group: Vec<usize> = order
                .iter()
                .copied()
                .filter(|&i| {
                    // Past the budget nothing joins: skip the PDB count.
                    let (available, _) = budget(i, Reason::Underutilized);
                    let pool = world.facts[i].pool_name.unwrap_or("");
                    if used.get(pool).copied().unwrap_or(0) >= available {
                        return false;
                    }
                    let asks = world.pdb_asks(i);
                    let over = asks.iter().any(|&(pdb, n)| {
                        let (total, most) = pdb_used.get(&pdb).copied().unwrap_or((0, 0));
                        total + n > world.pdb_allowed[pdb].max(most.max(n))
                    });
                    if over || take(&mut used, i, Reason::Underutilized).is_err() {
                        return false;
                    }
                    for (pdb, n) in asks {
                        let entry = pdb_used.entry(pdb).or_default();
                        entry.0 += n;
                        entry.1 = entry.1.max(n);
                    }
                    true
                })
                .collect();
            // Largest group first: a group can save at most its nodes' price, which only
            // shrinks as the group does, so the search stops once that bound cannot beat
            // the best found.
            for k in (2..=group.len()).rev() {
                let prefix = &group[..k];
                let bound: f64 = prefix
                    .iter()
                    .map(|&i| world.facts[i].price.unwrap_or(0.0))
                    .sum();
                if best
                    .as_ref()
                    .is_some_and(|(_, b)| bound <= b.savings + 1e-9)
                {
                    break;
                }
                let (need, free) = world.cpu_need_and_free(prefix);
                if need > free + largest_cpu {
                    continue;
                }
                if let Ok(c) = world.consolidate(prefix, config)
                    && balanced(prefix, c.savings).is_ok()
                    && best
                        .as_ref()
                        .is_none_or(|(_, b)| c.savings > b.savings + 1e-9)
                {
                    best = Some((prefix.to_vec(), c));
                }
            }
        }
        if let Some((group, c)) = best {
            acted = Some(consolidation_command(
                &world,
                Method::MultiNodeConsolidation,
                &group,
                c,
            ));
            for &i in &group {
                in_command[i] = true;
            }
        }
    }

    // Single-node consolidation: candidates in disruption-cost order, each evaluated
    // (for its reason) until one works and acts.
    for &i in &eligible {
        if in_command[i] {
            continue;
        }
        // As in Karpenter, nothing more is simulated once a command has won the pass.
        if let Some(first) = &acted {
            reasons[i] = Some(format!(
                "not evaluated in this pass: {} acts first",
                first.method.as_str()
            ));
            continue;
        }
        let (available, why) = budget(i, Reason::Underutilized);
        if available == 0 {
            reasons[i] = Some(why);
            continue;
        }
        let consolidation = world
            .consolidate(&[i], config)
            .and_then(|c| balanced(&[i], c.savings).map(|()| c));
        match consolidation {
            Err(why) => {
                reasons[i] = Some(why);
                held[i] = Held::Unconsolidatable;
            }
            Ok(c) => {
                acted = Some(consolidation_command(
                    &world,
                    Method::SingleNodeConsolidation,
                    &[i],
                    c,
                ));
                in_command[i] = true;
            }
        }
    }

    commands.extend(acted);
    let kept = (0..n)
        .filter(|&i| managed(&world.facts[i]) && !in_command[i])
        .map(|i| Kept {
            node: world.facts[i].node.name.clone(),
            reason: reasons[i]
                .clone()
                .unwrap_or_else(|| "nothing to do".to_string()),
            held: held[i],
        })
        .collect();
    let before: f64 = world.facts.iter().filter_map(|f| f.price).sum();
    let saved: f64 = commands.iter().map(|c| c.savings_per_hour).sum();
    Outcome {
        assumed_moves,
        commands,
        kept,
        cost_per_hour_before: round(before),
        cost_per_hour_after: round(before - saved),
    }
}

fn consolidation_command(
    world: &World,
    method: Method,
    nodes: &[usize],
    c: Consolidation,
) -> Command {
    let names: Vec<String> = nodes
        .iter()
        .map(|&i| world.facts[i].node.name.clone())
        .collect();
    let why = match c.decision {
        Decision::Delete => "underutilized: its pods fit on the other nodes".to_string(),
        Decision::Replace => {
            "underutilized: its pods fit on the other nodes and one cheaper node".to_string()
        }
    };
    let moves = c.moves;
    debug_assert!(moves.iter().all(|m| m.to != Destination::Pending));
    Command {
        method,
        decision: c.decision,
        nodes: names,
        why,
        replacements: c.replacement.into_iter().collect(),
        moves,
        savings_per_hour: c.savings,
        notes: Vec::new(),
    }
}

/// Rounds away float noise from sums of prices.
fn round(x: f64) -> f64 {
    let r = (x * 1e6).round() / 1e6;
    if r == 0.0 { 0.0 } else { r }
}
