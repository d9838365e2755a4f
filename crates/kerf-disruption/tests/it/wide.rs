//! kerf-kwokbench's Wide shape without a control plane: 30 Deployments of the kwok
//! benchmark's pod sizes on the `kwok` catalog, launched by `solve` and bound by a model
//! of kube-scheduler's default scoring, then each Deployment scaled to 70 % (the pods the
//! ReplicaSet controller would delete first: those doubled up on a node with more of
//! their Deployment), and disruption passes applied until none acts.

use std::collections::BTreeMap;
use std::time::Duration;

use kerf_disruption::{
    Config, Destination, Outcome, Snapshot, compute_commands, compute_commands_among,
};
use kerf_model::nodepool::{Budget, BudgetNodes, ConsolidationPolicy};
use kerf_model::pod::Owner;
use kerf_model::requirements::Operator;
use kerf_model::{
    InstanceType, Labels, Node, NodeClaim, NodePool, Pod, Quantity, Requirement, labels,
};

const NOW: i64 = 1_795_521_600; // 2026-11-24T12:00:00Z
const CPUS: [&str; 6] = ["250m", "500m", "750m", "1", "1500m", "2"];
const MEMS: [&str; 5] = ["512Mi", "1Gi", "2Gi", "3Gi", "4Gi"];

/// The benchmark's NodePool: amd64, on-demand, kwok types below 32 vCPU, consolidating
/// underutilized nodes at once, 10 % of the nodes at a time.
fn kwok_pool() -> NodePool {
    let mut pool = NodePool::new("default");
    pool.template_hash = "wide".to_string();
    pool.expire_after = None;
    pool.requirements
        .add(labels::ARCH, Requirement::single("amd64"));
    pool.requirements.add(
        labels::CAPACITY_TYPE,
        Requirement::single(labels::CAPACITY_TYPE_ON_DEMAND),
    );
    pool.requirements.add(
        kerf_model::catalog::kwok::INSTANCE_CPU,
        Requirement::new(Operator::Lt, ["32"]).unwrap(),
    );
    pool.disruption.consolidation_policy = ConsolidationPolicy::WhenEmptyOrUnderutilized;
    pool.disruption.consolidate_after = Some(Duration::ZERO);
    pool.disruption.budgets = vec![Budget {
        nodes: BudgetNodes::Percent(10),
        schedule: None,
        duration: None,
        reasons: Vec::new(),
    }];
    pool
}

/// `Scenario::wide(deployments, pods)`'s Deployments: (name, replicas, replicas after the
/// scale-down, cpu, memory).
fn deployments(deployments: i32, pods: i32) -> Vec<(String, i32, i32, &'static str, &'static str)> {
    let mut out = Vec::new();
    let mut after_left = pods * 7 / 10;
    for i in 0..deployments {
        let replicas = pods / deployments + i32::from(i < pods % deployments);
        let scaled = if i == deployments - 1 {
            after_left
        } else {
            (replicas * 7 + 5) / 10
        };
        after_left -= scaled;
        let i = i as usize;
        out.push((
            format!("wide-{i:02}"),
            replicas,
            scaled,
            CPUS[i % CPUS.len()],
            MEMS[(i + i / CPUS.len()) % MEMS.len()],
        ));
    }
    out
}

fn node_and_claim(name: &str, it: &InstanceType, zone: &str, pool: &NodePool) -> (Node, NodeClaim) {
    let mut node_labels: Labels = it.labels.clone();
    node_labels.insert(labels::ZONE.to_string(), zone.to_string());
    node_labels.insert(
        labels::CAPACITY_TYPE.to_string(),
        labels::CAPACITY_TYPE_ON_DEMAND.to_string(),
    );
    node_labels.insert(labels::NODEPOOL.to_string(), pool.name.clone());
    let mut node = Node::new(name, node_labels.clone(), it.allocatable());
    node.created_at = Some(NOW - 3_600);
    let annotations = Labels::from([
        (
            labels::ANNOTATION_NODEPOOL_HASH_VERSION.to_string(),
            labels::NODEPOOL_HASH_VERSION.to_string(),
        ),
        (
            labels::ANNOTATION_NODEPOOL_HASH.to_string(),
            pool.template_hash.clone(),
        ),
    ]);
    let claim = NodeClaim {
        name: format!("claim-{name}"),
        labels: node_labels,
        annotations,
        node_name: Some(name.to_string()),
        image_id: None,
        created_at: node.created_at,
        deleting: false,
        initialized: true,
        last_pod_event: Some(NOW - 600),
        expire_after: None,
        termination_grace_period: None,
    };
    (node, claim)
}

/// A pod `name` of Deployment `app` (label `app`, owned by a ReplicaSet of that name),
/// not bound.
fn replica(app: &str, name: &str, cpu: &str, memory: &str) -> Pod {
    let mut requests = kerf_model::Resources::new();
    requests.set("cpu", Quantity::parse(cpu).unwrap());
    requests.set("memory", Quantity::parse(memory).unwrap());
    requests.set("pods", Quantity::from_units(1));
    let mut pod = Pod::new("default", name, requests);
    pod.labels.insert("app".to_string(), app.to_string());
    pod.owner = Some(Owner {
        kind: "ReplicaSet".to_string(),
        name: app.to_string(),
    });
    pod
}

/// The Wide cluster after its scale-down: `pods` pods of `n` Deployments on the nodes one
/// solve launches for them, bound by kube-scheduler (and the nodes launched for those it
/// could not bind), then each Deployment at 70 %.
fn wide_cluster(n: i32, pods: i32) -> Snapshot {
    let instance_types = kerf_model::catalog::by_name("kwok").unwrap();
    let pool = kwok_pool();
    let deps = deployments(n, pods);
    let mut pending = Vec::new();
    for (name, replicas, _, cpu, mem) in &deps {
        for r in 0..*replicas {
            pending.push((r, replica(name, &format!("{name}-{r:03}"), cpu, mem)));
        }
    }
    // The ReplicaSet controllers create them round-robin over the Deployments.
    pending.sort_by_key(|(r, p)| (*r, p.labels["app"].clone()));
    let mut snapshot = Snapshot {
        bound_pods: pending.into_iter().map(|(_, p)| p).collect(),
        nodepools: vec![pool],
        instance_types,
        ..Snapshot::default()
    };
    let mut serial = 0;
    provision_stuck(&mut snapshot, "node", &mut serial);
    let bound = std::mem::take(&mut snapshot.bound_pods);
    // The scale-down: the ReplicaSet controller deletes first the pods doubled up most
    // with their own kind on a node, the newest of those first.
    let mut keep = vec![true; bound.len()];
    for (name, replicas, scaled, _, _) in &deps {
        let mine: Vec<usize> = (0..bound.len())
            .filter(|&i| bound[i].labels["app"] == *name)
            .collect();
        let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
        for &i in &mine {
            *per_node
                .entry(bound[i].node_name.as_deref().unwrap())
                .or_default() += 1;
        }
        let mut order = mine.clone();
        order.sort_by(|&a, &b| {
            let rank = |i: usize| per_node[bound[i].node_name.as_deref().unwrap()];
            rank(b).cmp(&rank(a)).then(b.cmp(&a))
        });
        for &i in &order[..(replicas - scaled) as usize] {
            keep[i] = false;
        }
    }
    snapshot.bound_pods = (bound.into_iter().zip(keep))
        .filter_map(|(p, k)| k.then_some(p))
        .collect();
    snapshot
}

/// kube-scheduler's default scoring (NodeResourcesFit LeastAllocated plus
/// NodeResourcesBalancedAllocation) for `pods`, in order, over `nodes` not in `skip`:
/// each pod to the feasible node with the highest score. Returns the pods that fit nowhere.
fn kube_schedule(snapshot: &mut Snapshot, pods: &[usize], skip: &[String]) -> usize {
    let mut used: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for p in &snapshot.bound_pods {
        if let Some(n) = &p.node_name {
            let e = used.entry(n.clone()).or_default();
            e.0 += p.requests.get("cpu").0;
            e.1 += p.requests.get("memory").0;
        }
    }
    let mut stuck = 0;
    for &i in pods {
        let (cpu, mem) = (
            snapshot.bound_pods[i].requests.get("cpu").0,
            snapshot.bound_pods[i].requests.get("memory").0,
        );
        let mut best: Option<(f64, &str)> = None;
        for n in &snapshot.nodes {
            if skip.contains(&n.name) {
                continue;
            }
            let (ac, am) = (n.allocatable.get("cpu").0, n.allocatable.get("memory").0);
            let (uc, um) = used.get(&n.name).copied().unwrap_or_default();
            if uc + cpu > ac || um + mem > am {
                continue;
            }
            let fc = (uc + cpu) as f64 / ac as f64;
            let fm = (um + mem) as f64 / am as f64;
            let least = ((1.0 - fc) + (1.0 - fm)) / 2.0;
            let balanced = 1.0 - (fc - fm).abs() / 2.0;
            let score = least + balanced;
            if best.is_none_or(|(b, _)| score > b + 1e-12) {
                best = Some((score, n.name.as_str()));
            }
        }
        match best {
            Some((_, name)) => {
                let name = name.to_string();
                let e = used.entry(name.clone()).or_default();
                e.0 += cpu;
                e.1 += mem;
                snapshot.bound_pods[i].node_name = Some(name);
            }
            None => {
                stuck += 1;
                snapshot.bound_pods[i].node_name = None;
            }
        }
    }
    stuck
}

/// kerf's provisioner for the pods kube-scheduler left unbound: the nodes `solve` launches
/// for them, where kube-scheduler then binds them (and again for any it still cannot).
fn provision_stuck(snapshot: &mut Snapshot, prefix: &str, serial: &mut usize) {
    loop {
        let stuck: Vec<usize> = (0..snapshot.bound_pods.len())
            .filter(|&i| snapshot.bound_pods[i].node_name.is_none())
            .collect();
        if stuck.is_empty() {
            return;
        }
        let input = kerf_scheduling::Input {
            pods: stuck
                .iter()
                .map(|&i| snapshot.bound_pods[i].clone())
                .collect(),
            nodepools: snapshot.nodepools.clone(),
            instance_types: snapshot.instance_types.clone(),
            ..kerf_scheduling::Input::default()
        };
        let plan = kerf_scheduling::solve(&input, &kerf_scheduling::Config::default());
        assert!(plan.unschedulable.is_empty());
        for claim in &plan.new_claims {
            *serial += 1;
            let name = format!("{prefix}-{serial:03}");
            let it = (snapshot.instance_types.iter())
                .find(|t| t.name == claim.launch.instance_type)
                .unwrap();
            let (node, nc) = node_and_claim(&name, it, &claim.launch.zone, &snapshot.nodepools[0]);
            snapshot.nodes.push(node);
            snapshot.nodeclaims.push(nc);
        }
        kube_schedule(snapshot, &stuck, &[]);
    }
}

/// Applies a pass's commands as if they finished: replacements come up as initialized
/// nodes, the nodes go, and kube-scheduler binds their pods where it scores best (not
/// where the command planned them), the provisioner launching for any it cannot bind.
fn apply(snapshot: &mut Snapshot, outcome: &Outcome, serial: &mut usize) {
    for command in &outcome.commands {
        let mut replacement_names = Vec::new();
        for claim in &command.replacements {
            *serial += 1;
            let name = format!("repl-{serial:03}");
            let it = (snapshot.instance_types.iter())
                .find(|t| t.name == claim.launch.instance_type)
                .unwrap()
                .clone();
            let (node, nc) = node_and_claim(&name, &it, &claim.launch.zone, &snapshot.nodepools[0]);
            snapshot.nodes.push(node);
            snapshot.nodeclaims.push(nc);
            replacement_names.push(name);
        }
        assert!(
            (command.moves.iter()).all(|m| m.to != Destination::Pending),
            "a command strands a pod"
        );
        let moved: Vec<usize> = (0..snapshot.bound_pods.len())
            .filter(|&i| {
                (snapshot.bound_pods[i].node_name.as_ref())
                    .is_some_and(|n| command.nodes.contains(n))
            })
            .collect();
        // kerf drains largest first (`kerf_controllers`' termination), so the pods reach
        // kube-scheduler in that order; `WIDE_EVICT=created` binds them in the order
        // they were created instead, as when a drain evicted them all at once.
        let mut moved = moved;
        if std::env::var("WIDE_EVICT").as_deref() != Ok("created") {
            moved.sort_by_key(|&i| {
                let r = &snapshot.bound_pods[i].requests;
                std::cmp::Reverse((r.get("cpu").0, r.get("memory").0))
            });
        }
        kube_schedule(snapshot, &moved, &command.nodes);
        snapshot.nodes.retain(|n| !command.nodes.contains(&n.name));
        snapshot
            .nodeclaims
            .retain(|c| !command.nodes.contains(c.node_name.as_ref().unwrap()));
        provision_stuck(snapshot, "prov", serial);
    }
}

fn summary(outcome: &Outcome) -> String {
    let mut kept: BTreeMap<String, usize> = BTreeMap::new();
    for k in &outcome.kept {
        *kept.entry(k.reason.kind().to_string()).or_default() += 1;
    }
    let commands: Vec<String> = outcome
        .commands
        .iter()
        .map(|c| {
            format!(
                "{} {:?} {} nodes -> {} ({:.4}/h saved)",
                c.method.as_str(),
                c.decision,
                c.nodes.len(),
                c.replacements
                    .iter()
                    .map(|r| r.launch.instance_type.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                c.savings_per_hour
            )
        })
        .collect();
    format!("{commands:?} kept {kept:?}")
}

fn cost(snapshot: &Snapshot) -> f64 {
    snapshot
        .nodes
        .iter()
        .filter_map(|n| {
            let t = n.labels.get(labels::INSTANCE_TYPE)?;
            let it = snapshot.instance_types.iter().find(|i| &i.name == t)?;
            it.offerings.iter().map(|o| o.price).reduce(f64::max)
        })
        .sum()
}

/// What a fixpoint came to.
struct Settled {
    /// Passes that decided a command.
    passes: usize,
    nodes: usize,
    cost: f64,
}

/// Passes over the Wide cluster of `pods` pods until one decides nothing (or 100 passes),
/// each command done before the next pass, its pods bound by kube-scheduler's default
/// scoring and any it cannot bind provisioned for. Prints what each pass decided, and for
/// `pairs_at`, every pair of nodes that consolidates on its own.
fn settle(pods: i32, pairs_at: Option<usize>) -> Settled {
    let mut snapshot = wide_cluster(30, pods);
    let types = snapshot.nodes.iter().fold(BTreeMap::new(), |mut m, n| {
        *m.entry(n.labels[labels::INSTANCE_TYPE].as_str())
            .or_insert(0) += 1;
        m
    });
    println!(
        "after scale-down: {} nodes ({types:?}), {} pods, {:.3}/h",
        snapshot.nodes.len(),
        snapshot.bound_pods.len(),
        cost(&snapshot)
    );
    let (mut serial, mut now, mut passes) = (0, NOW, 0);
    for pass in 1..=100 {
        let outcome = compute_commands(&snapshot, now, &Config::default());
        let mut unlimited = snapshot.clone();
        unlimited.nodepools[0].disruption.budgets[0].nodes = BudgetNodes::Percent(100);
        let without_budget = compute_commands(&unlimited, now, &Config::default());
        println!(
            "pass {pass}: {} nodes: {}\n    without the budget: {}",
            snapshot.nodes.len(),
            summary(&outcome),
            summary(&without_budget)
        );
        if pairs_at == Some(pass) {
            print_pairs(&snapshot, now);
        }
        if outcome.commands.is_empty() {
            break;
        }
        passes += 1;
        apply(&mut snapshot, &outcome, &mut serial);
        now += 60;
    }
    Settled {
        passes,
        nodes: snapshot.nodes.len(),
        cost: cost(&snapshot),
    }
}

/// Every node with its pods, fewest first, and the pairs of nodes that consolidate
/// together (a pass among just those two), best first.
fn print_pairs(snapshot: &Snapshot, now: i64) {
    let mut rows: Vec<(usize, String)> = (snapshot.nodes.iter())
        .map(|n| {
            let pods: Vec<&Pod> = (snapshot.bound_pods.iter())
                .filter(|p| p.node_name.as_deref() == Some(&n.name))
                .collect();
            let cpu: i64 = pods.iter().map(|p| p.requests.get("cpu").0).sum();
            let mem: i64 = pods.iter().map(|p| p.requests.get("memory").0).sum();
            let row = format!(
                "{} {} pods={} cpu={}/{} mem={}/{}Mi",
                n.name,
                n.labels[labels::INSTANCE_TYPE],
                pods.len(),
                cpu,
                n.allocatable.get("cpu").0,
                mem / 1000 / (1 << 20),
                n.allocatable.get("memory").0 / 1000 / (1 << 20)
            );
            (pods.len(), row)
        })
        .collect();
    rows.sort();
    for (_, row) in &rows {
        println!("    {row}");
    }
    let names: Vec<String> = snapshot.nodes.iter().map(|n| n.name.clone()).collect();
    let mut found: Vec<(f64, String)> = Vec::new();
    for a in 0..names.len() {
        for b in a + 1..names.len() {
            let among = [names[a].clone(), names[b].clone()];
            let o = compute_commands_among(snapshot, now, &Config::default(), &among);
            for c in o.commands.iter().filter(|c| c.nodes.len() == 2) {
                let types: Vec<&str> = (c.replacements.iter())
                    .map(|r| r.launch.instance_type.as_str())
                    .collect();
                let what = format!("{:?} {:?} -> {types:?}", c.nodes, c.decision);
                found.push((c.savings_per_hour, what));
            }
        }
    }
    found.sort_by(|x, y| y.0.total_cmp(&x.0));
    println!("  pairs that consolidate together: {}", found.len());
    for (saved, what) in found.iter().take(8) {
        println!("    {saved:.4}/h {what}");
    }
}

/// Wide's consolidation after its scale-down settles: with the displaced pods reaching
/// kube-scheduler largest first, as kerf drains them, for 800, 900 and 1,000 pods in
/// 12-22 passes. Bound in the order they were created (`WIDE_EVICT=created`), 800 and
/// 900 pods never settle: a multi-node replace and a single-node replace follow each
/// other for good, the pods each strands launching a node the other then removes.
///
/// Each run prints what every pass decided, and what it would have decided without the
/// budget; to see it for one size, and the pairs that would consolidate together from a
/// given pass on: `WIDE_PODS=1000 WIDE_PAIRS=7 cargo test -p kerf-disruption --test it
/// wide_settles -- --nocapture`.
///
/// What it shows (7 December, at `ee6b720`, with `WIDE_EVICT=created`): for 1,000 pods,
/// 81 nodes after the scale-down; multi-node deletes of 9, 8, 7 and 6 nodes, the budget's
/// 10 % (without it, one delete of 28); then, at about 50 nodes and ~97 % CPU, the budget
/// no longer binds (the pass decides the same without it) and consolidation goes one to
/// three nodes a command: a group's pods beyond the free room must fit one replacement of
/// at most 16 vCPU, and the groups that do are pairs — a node of a dear type (m-8x, m-16x)
/// or a small one with another, saving 0.30-0.32 $/h — which no prefix in either order
/// holds, so single-node consolidation re-types one node for 0.034 $/h instead. Most
/// commands leave pods kube-scheduler cannot bind, the provisioner launches a small node
/// for them, and later passes consolidate that again; for 800 or 900 pods this never
/// settles.
#[test]
fn wide_settles() {
    let var = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
    };
    let sizes = var("WIDE_PODS").map_or(vec![800, 900, 1000], |p| vec![p as i32]);
    for pods in sizes {
        let settled = settle(pods, var("WIDE_PAIRS"));
        println!(
            "end: {} passes, {} nodes, {:.3}/h",
            settled.passes, settled.nodes, settled.cost
        );
        assert!(
            settled.passes <= 30,
            "{pods} pods: {} passes, {} nodes at {:.3}/h",
            settled.passes,
            settled.nodes,
            settled.cost
        );
    }
}

/// A node `name` of kwok type `ty` with `pods` pods of `cpu` each (1 GiB). A node `kept`
/// has `do-not-disrupt` (a destination only); any other takes no more pods than it has
/// (its `pods` allocatable), so no candidate takes another's.
fn place(snapshot: &mut Snapshot, name: &str, ty: &str, pods: usize, cpu: &str, kept: bool) {
    let it = (snapshot.instance_types.iter())
        .find(|t| t.name == ty)
        .unwrap_or_else(|| panic!("{ty}"))
        .clone();
    let (mut node, claim) = node_and_claim(name, &it, "test-zone-a", &snapshot.nodepools[0]);
    if kept {
        (node.annotations).insert(labels::ANNOTATION_DO_NOT_DISRUPT.into(), "true".into());
    } else {
        node.allocatable
            .set("pods", Quantity::from_units(pods as i64));
    }
    snapshot.nodes.push(node);
    snapshot.nodeclaims.push(claim);
    for i in 0..pods {
        let mut pod = replica(name, &format!("{name}-{i}"), cpu, "1Gi");
        pod.node_name = Some(name.to_string());
        snapshot.bound_pods.push(pod);
    }
}

fn kwok_snapshot() -> Snapshot {
    let mut snapshot = Snapshot {
        nodepools: vec![kwok_pool()],
        instance_types: kerf_model::catalog::by_name("kwok").unwrap(),
        ..Snapshot::default()
    };
    snapshot.nodepools[0].disruption.budgets[0].nodes = BudgetNodes::Percent(100);
    snapshot
}

/// Five 900m pods on a c-16x: one c-8x holds them for half the price, and that is the
/// replacement. The provisioner's solve would split that claim into five c-1x (cheaper
/// still, and what it launches for such pods), and consolidation, which launches one
/// node, took the five for "needs 5 new nodes" and kept the c-16x.
#[test]
fn a_node_is_replaced_by_one_node_that_holds_its_pods() {
    let mut snapshot = kwok_snapshot();
    place(&mut snapshot, "a", "c-16x-amd64-linux", 5, "900m", false);
    let outcome = compute_commands(&snapshot, NOW, &Config::default());
    let [command] = outcome.commands.as_slice() else {
        panic!("one command: {}", summary(&outcome));
    };
    let types: Vec<&str> = (command.replacements.iter())
        .map(|r| r.launch.instance_type.as_str())
        .collect();
    assert_eq!(types, ["c-8x-amd64-linux"], "{}", summary(&outcome));
}

/// Validation judges a multi-node command's nodes as one group, as Karpenter's validator
/// simulates exactly them. Decided: a, b and cc (their pods past d's room onto one c-8x).
/// Then two more pods' room opens on d: a and b alone now save more (their leftover fits
/// a c-4x), but the three still consolidate, for the same decision, and the command
/// stands. Searching their subsets again rejected it, for the pair a validation later.
#[test]
fn a_multi_node_command_is_validated_as_its_whole_group() {
    let mut snapshot = kwok_snapshot();
    place(&mut snapshot, "d", "c-16x-amd64-linux", 14, "900m", true);
    place(&mut snapshot, "a", "c-16x-amd64-linux", 5, "900m", false);
    place(&mut snapshot, "b", "c-16x-amd64-linux", 4, "900m", false);
    place(&mut snapshot, "cc", "c-2x-amd64-linux", 2, "900m", false);
    let decided = compute_commands(&snapshot, NOW, &Config::default());
    let sorted = |nodes: &[String]| {
        let mut nodes = nodes.to_vec();
        nodes.sort();
        nodes
    };
    let [command] = decided.commands.as_slice() else {
        panic!("one command: {}", summary(&decided));
    };
    assert_eq!(
        sorted(&command.nodes),
        ["a", "b", "cc"],
        "{}",
        summary(&decided)
    );
    assert_eq!(command.decision, kerf_disruption::Decision::Replace);
    for _ in 0..2 {
        let i = (snapshot.bound_pods.iter())
            .position(|p| p.node_name.as_deref() == Some("d"))
            .unwrap();
        snapshot.bound_pods.remove(i);
    }
    // A fresh pass now prefers the pair.
    let fresh = compute_commands(&snapshot, NOW, &Config::default());
    assert_eq!(
        sorted(&fresh.commands[0].nodes),
        ["a", "b"],
        "{}",
        summary(&fresh)
    );
    let again = compute_commands_among(&snapshot, NOW, &Config::default(), &command.nodes);
    assert!(
        again
            .commands
            .iter()
            .any(|c| c.decision == command.decision && sorted(&c.nodes) == sorted(&command.nodes)),
        "{}",
        summary(&again)
    );
}
