//! Properties of `compute_commands` over generated clusters: nothing graceful touches a
//! `do-not-disrupt` pod or asks a PDB for more evictions than it allows (counted per
//! command, over all its nodes; beyond what one node's own drain asks, which the
//! eviction API paces as in Karpenter), budgets hold, every displaced pod lands where
//! the scheduler's independent validator agrees it may, consolidation never raises cost,
//! and the same snapshot gives the same outcome.
//!
//! A compact [`Spec`] of small numbers builds the snapshot, so a failure shrinks to few
//! nodes and pods.

use std::time::Duration;

use kerf_disruption::{
    Config, Destination, EmptyHold, KeptReason, Method, Outcome, Reason, Snapshot, allowance,
    compute_commands, compute_commands_among,
};
use kerf_model::nodepool::{Budget, BudgetNodes, ConsolidationPolicy};
use kerf_model::{
    DriftReason, InstanceType, IntOrPercent, LabelSelector, Labels, Node, NodeClaim, NodePool, Pdb,
    Pod, Quantity, Requirement, labels,
};
use proptest::prelude::*;

const NOW: i64 = 1_795_521_600; // 2026-11-24T12:00:00Z
const TYPES: [&str; 6] = [
    "c6a.large",
    "c6a.xlarge",
    "m7i.large",
    "m7i.xlarge",
    "m7i.2xlarge",
    "r7i.large",
];
const ZONES: [&str; 2] = ["us-east-1a", "us-east-1b"];
const APPS: [&str; 3] = ["a", "b", "c"];

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(n),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

#[derive(Clone, Debug)]
struct PoolSpec {
    /// 0 WhenEmpty, 1 WhenEmptyOrUnderutilized, 2 Balanced.
    policy: u8,
    /// 0 = 0s, 1 = 5m, 2 = Never.
    after: u8,
    /// Count budget (`Some(n)`) or percent.
    budget: (bool, u8),
    spot: bool,
    /// A second budget that freezes one reason.
    frozen: Option<u8>,
}

#[derive(Clone, Debug)]
struct NodeSpec {
    /// `None`: unmanaged.
    pool: Option<u8>,
    itype: u8,
    zone: u8,
    spot: bool,
    ready: bool,
    deleting: bool,
    do_not_disrupt: bool,
    /// Days old: 40 expires under the 30-day default.
    age_days: u8,
    /// Minutes since the last pod event.
    idle_minutes: u8,
    drifted_hash: bool,
    /// Its NodeClaim has not initialized: it still carries the not-ready taint.
    booting: bool,
    pods: Vec<PodSpec>,
}

#[derive(Clone, Debug)]
struct PodSpec {
    /// Hundreds of millicores.
    cpu: u8,
    app: u8,
    /// The `karpenter.sh/do-not-disrupt` value, if any (`DND_VALUES`).
    do_not_disrupt: Option<u8>,
    daemon: bool,
    /// Minutes since the pod was bound and started, when the input says.
    bound_minutes_ago: Option<u8>,
}

/// Pod annotation values: always, for ten minutes after the start, and two Karpenter
/// ignores.
const DND_VALUES: [&str; 4] = ["true", "10m", "false", "soon"];

#[derive(Clone, Debug)]
struct PdbSpec {
    app: u8,
    /// `Int` or `Percent` of max unavailable / min available.
    max_unavailable: bool,
    value: u8,
    percent: bool,
}

#[derive(Clone, Debug)]
struct Spec {
    /// No node expired or drifted, so consolidation gets its turn.
    calm: bool,
    pools: Vec<PoolSpec>,
    nodes: Vec<NodeSpec>,
    pdbs: Vec<PdbSpec>,
}

fn pool_spec() -> impl Strategy<Value = PoolSpec> {
    (
        0u8..3,
        0u8..3,
        (any::<bool>(), 0u8..4),
        any::<bool>(),
        proptest::option::of(0u8..3),
    )
        .prop_map(|(policy, after, budget, spot, frozen)| PoolSpec {
            policy,
            after,
            budget,
            spot,
            frozen,
        })
}

fn pod_spec() -> impl Strategy<Value = PodSpec> {
    (
        1u8..12,
        0u8..3,
        proptest::option::weighted(0.15, 0u8..4),
        prop::bool::weighted(0.1),
        proptest::option::weighted(0.3, 0u8..20),
    )
        .prop_map(
            |(cpu, app, do_not_disrupt, daemon, bound_minutes_ago)| PodSpec {
                cpu,
                app,
                do_not_disrupt,
                daemon,
                bound_minutes_ago,
            },
        )
}

/// Whether the pod's `do-not-disrupt` protects it at `NOW`, as Karpenter reads the values
/// the generator writes (its own reading, not kerf's).
fn protected(pod: &Pod) -> bool {
    match pod
        .annotations
        .get(labels::ANNOTATION_DO_NOT_DISRUPT)
        .map(String::as_str)
    {
        Some("true") => true,
        Some("10m") => pod.started_at.is_none_or(|s| NOW - s < 600),
        _ => false,
    }
}

fn node_spec() -> impl Strategy<Value = NodeSpec> {
    (
        (
            proptest::option::weighted(0.85, 0u8..2),
            0u8..6,
            0u8..2,
            any::<bool>(),
        ),
        (
            prop::bool::weighted(0.9),
            prop::bool::weighted(0.1),
            prop::bool::weighted(0.1),
        ),
        (
            prop_oneof![4 => Just(1u8), 3 => Just(10), 1 => Just(40)],
            0u8..20,
            prop::bool::weighted(0.2),
        ),
        prop::bool::weighted(0.1),
        prop::collection::vec(pod_spec(), 0..4),
    )
        .prop_map(
            |(
                (pool, itype, zone, spot),
                (ready, deleting, dnd),
                (age_days, idle_minutes, drifted_hash),
                booting,
                pods,
            )| NodeSpec {
                pool,
                itype,
                zone,
                spot,
                ready,
                deleting,
                do_not_disrupt: dnd,
                age_days,
                idle_minutes,
                drifted_hash,
                booting,
                pods,
            },
        )
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop::collection::vec(pool_spec(), 2),
        prop::collection::vec(node_spec(), 1..9),
        prop::collection::vec(
            (0u8..3, any::<bool>(), 0u8..3, any::<bool>()).prop_map(
                |(app, max_unavailable, value, percent)| PdbSpec {
                    app,
                    max_unavailable,
                    value,
                    percent,
                },
            ),
            0..3,
        ),
    )
        .prop_flat_map(|(pools, nodes, pdbs)| {
            any::<bool>().prop_map(move |calm| Spec {
                calm,
                pools: pools.clone(),
                nodes: nodes.clone(),
                pdbs: pdbs.clone(),
            })
        })
}

fn catalog() -> Vec<InstanceType> {
    kerf_model::catalog::by_name("aws")
        .unwrap()
        .into_iter()
        .filter(|t| {
            t.name.starts_with("c6a.")
                || t.name.starts_with("m7i.")
                || t.name.starts_with("r7i.")
                || t.name.starts_with("c7a.")
        })
        .filter(|t| !t.name.contains("24x") && !t.name.contains("16x") && !t.name.contains("12x"))
        .collect()
}

fn build(spec: &Spec) -> Snapshot {
    let instance_types = catalog();
    let reasons = ["Empty", "Drifted", "Underutilized"];
    let nodepools: Vec<NodePool> = spec
        .pools
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut pool = NodePool::new(&format!("pool-{i}"));
            pool.template_hash = format!("hash-{i}");
            let ct = if p.spot {
                labels::CAPACITY_TYPE_SPOT
            } else {
                labels::CAPACITY_TYPE_ON_DEMAND
            };
            pool.requirements.add(
                labels::CAPACITY_TYPE,
                Requirement::any_of([ct, labels::CAPACITY_TYPE_ON_DEMAND]),
            );
            pool.requirements
                .add(labels::ARCH, Requirement::single("amd64"));
            pool.disruption.consolidation_policy = match p.policy {
                0 => ConsolidationPolicy::WhenEmpty,
                1 => ConsolidationPolicy::WhenEmptyOrUnderutilized,
                _ => ConsolidationPolicy::Balanced,
            };
            pool.disruption.consolidate_after = match p.after {
                0 => Some(Duration::ZERO),
                1 => Some(Duration::from_secs(300)),
                _ => None,
            };
            let nodes = if p.budget.0 {
                BudgetNodes::Count(u32::from(p.budget.1))
            } else {
                BudgetNodes::Percent([10, 34, 50, 100][usize::from(p.budget.1)])
            };
            pool.disruption.budgets = vec![Budget {
                nodes,
                schedule: None,
                duration: None,
                reasons: Vec::new(),
            }];
            if let Some(r) = p.frozen {
                pool.disruption.budgets.push(Budget {
                    nodes: BudgetNodes::Count(0),
                    schedule: Some("0 9 * * mon-fri".to_string()),
                    duration: Some(Duration::from_secs(8 * 3600)),
                    reasons: vec![reasons[usize::from(r)].to_string()],
                });
            }
            pool
        })
        .collect();
    let mut nodes = Vec::new();
    let mut nodeclaims = Vec::new();
    let mut bound_pods = Vec::new();
    for (n, ns) in spec.nodes.iter().enumerate() {
        let name = format!("node-{n}");
        let it = instance_types
            .iter()
            .find(|t| t.name == TYPES[usize::from(ns.itype)])
            .unwrap();
        let pool_spot = ns.pool.is_some_and(|p| spec.pools[usize::from(p)].spot);
        let ct = if ns.spot && (pool_spot || !spec.calm) {
            labels::CAPACITY_TYPE_SPOT
        } else {
            labels::CAPACITY_TYPE_ON_DEMAND
        };
        let mut node_labels: Labels = it.labels.clone();
        node_labels.insert(
            labels::ZONE.to_string(),
            ZONES[usize::from(ns.zone)].to_string(),
        );
        node_labels.insert(labels::CAPACITY_TYPE.to_string(), ct.to_string());
        if let Some(p) = ns.pool {
            node_labels.insert(labels::NODEPOOL.to_string(), format!("pool-{p}"));
        }
        let mut node = Node::new(&name, node_labels.clone(), it.allocatable());
        node.ready = ns.ready;
        node.deleting = ns.deleting;
        let booting = ns.booting && ns.pool.is_some();
        if booting {
            node.ready = false;
            node.taints.push(kerf_model::Taint::new(
                "node.kubernetes.io/not-ready",
                "",
                kerf_model::Effect::NoSchedule,
            ));
        }
        let age_days = if spec.calm { 1 } else { ns.age_days };
        node.created_at = Some(NOW - i64::from(age_days) * 86_400);
        if ns.do_not_disrupt {
            node.annotations.insert(
                labels::ANNOTATION_DO_NOT_DISRUPT.to_string(),
                "true".to_string(),
            );
        }
        if let Some(p) = ns.pool {
            let mut annotations = Labels::new();
            annotations.insert(
                labels::ANNOTATION_NODEPOOL_HASH_VERSION.to_string(),
                labels::NODEPOOL_HASH_VERSION.to_string(),
            );
            let hash = if ns.drifted_hash && !spec.calm {
                "old".to_string()
            } else {
                format!("hash-{p}")
            };
            annotations.insert(labels::ANNOTATION_NODEPOOL_HASH.to_string(), hash);
            nodeclaims.push(NodeClaim {
                name: format!("claim-{n}"),
                labels: node_labels,
                annotations,
                node_name: Some(name.clone()),
                image_id: None,
                created_at: node.created_at,
                deleting: false,
                initialized: !booting,
                last_pod_event: Some(NOW - i64::from(ns.idle_minutes) * 60),
                expire_after: Some(Duration::from_secs(720 * 3600)),
                termination_grace_period: None,
            });
        }
        // Pods that fit: skip any that would overcommit the node.
        let mut used = 0i64;
        let capacity = it.allocatable().get("cpu").0;
        for (k, ps) in ns.pods.iter().enumerate() {
            let cpu = i64::from(ps.cpu) * 100;
            if used + cpu > capacity {
                continue;
            }
            used += cpu;
            let mut requests = kerf_model::Resources::new();
            requests.set("cpu", Quantity::from_milli(cpu));
            requests.set("memory", Quantity::from_units(256 << 20));
            requests.set("pods", Quantity::from_units(1));
            let mut pod = Pod::new("default", &format!("{name}-p{k}"), requests);
            pod.node_name = Some(name.clone());
            pod.labels
                .insert("app".to_string(), APPS[usize::from(ps.app)].to_string());
            if let Some(v) = ps.do_not_disrupt {
                pod.annotations.insert(
                    labels::ANNOTATION_DO_NOT_DISRUPT.to_string(),
                    DND_VALUES[usize::from(v)].to_string(),
                );
            }
            if let Some(m) = ps.bound_minutes_ago {
                pod.bound_at = Some(NOW - i64::from(m) * 60);
                pod.started_at = pod.bound_at;
            }
            if ps.daemon {
                pod.owner = Some(kerf_model::pod::Owner {
                    kind: "DaemonSet".to_string(),
                    name: "ds".to_string(),
                });
            }
            bound_pods.push(pod);
        }
        nodes.push(node);
    }
    let pdbs = spec
        .pdbs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let value = if p.percent {
                IntOrPercent::Percent(i32::from(p.value) * 50)
            } else {
                IntOrPercent::Int(i32::from(p.value))
            };
            Pdb {
                namespace: "default".to_string(),
                name: format!("pdb-{i}"),
                selector: LabelSelector::from_match_labels(&Labels::from([(
                    "app".to_string(),
                    APPS[usize::from(p.app)].to_string(),
                )])),
                min_available: (!p.max_unavailable).then_some(value),
                max_unavailable: p.max_unavailable.then_some(value),
                disruptions_allowed: None,
            }
        })
        .collect();
    Snapshot {
        nodes,
        nodeclaims,
        bound_pods,
        nodepools,
        pdbs,
        instance_types,
        ..Snapshot::default()
    }
}

fn reason_of(method: Method) -> Option<Reason> {
    match method {
        Method::Expiration => None,
        Method::Emptiness => Some(Reason::Empty),
        Method::Drift => Some(Reason::Drifted),
        Method::MultiNodeConsolidation | Method::SingleNodeConsolidation => {
            Some(Reason::Underutilized)
        }
    }
}

fn pods_on<'a>(snapshot: &'a Snapshot, node: &'a str) -> impl Iterator<Item = &'a Pod> {
    snapshot
        .bound_pods
        .iter()
        .filter(move |p| p.node_name.as_deref() == Some(node))
}

fn check(snapshot: &Snapshot, outcome: &Outcome, config: &Config) -> Result<(), TestCaseError> {
    let node = |name: &str| snapshot.nodes.iter().find(|n| n.name == name).unwrap();
    // Evictions a PDB allows at the start of the pass, every selected bound pod healthy.
    let allowed = |pdb: &Pdb| {
        let selected = snapshot
            .bound_pods
            .iter()
            .filter(|p| pdb.selects(&p.key.namespace, &p.labels))
            .count() as i32;
        pdb.allowed(selected)
    };
    let expired: Vec<&str> = outcome
        .commands
        .iter()
        .filter(|c| c.method == Method::Expiration)
        .flat_map(|c| c.nodes.iter().map(String::as_str))
        .collect();
    for command in &outcome.commands {
        let graceful = command.method != Method::Expiration;
        for name in &command.nodes {
            let n = node(name);
            prop_assert!(n.nodepool().is_some(), "{name} is unmanaged");
            prop_assert!(!n.deleting, "{name} is already deleting");
            if !graceful {
                continue;
            }
            prop_assert!(
                !n.annotations
                    .contains_key(labels::ANNOTATION_DO_NOT_DISRUPT),
                "{name} is do-not-disrupt"
            );
            for pod in pods_on(snapshot, name) {
                prop_assert!(
                    !protected(pod),
                    "{} command evicts do-not-disrupt pod {}",
                    command.method.as_str(),
                    pod.key
                );
                let matching: Vec<&Pdb> = snapshot
                    .pdbs
                    .iter()
                    .filter(|p| p.selects(&pod.key.namespace, &pod.labels))
                    .collect();
                prop_assert!(
                    matching.len() <= 1,
                    "pod {} under two PDBs is evicted",
                    pod.key
                );
                for pdb in matching {
                    prop_assert!(
                        allowed(pdb) > 0,
                        "PDB {} allows no eviction of {}",
                        pdb.name,
                        pod.key
                    );
                }
            }
        }
        // Per command, not per node: the evictions all its nodes' drains ask of one PDB
        // together stay within what it allows, or within what one of them asks alone
        // (a single node's drain is paced by the eviction API, as in Karpenter).
        if graceful {
            for pdb in &snapshot.pdbs {
                let asks: Vec<i32> = command
                    .nodes
                    .iter()
                    .map(|name| {
                        pods_on(snapshot, name)
                            .filter(|p| !p.is_daemon() && pdb.selects(&p.key.namespace, &p.labels))
                            .count() as i32
                    })
                    .collect();
                let asked: i32 = asks.iter().sum();
                let alone = asks.iter().copied().max().unwrap_or(0);
                prop_assert!(
                    asked <= allowed(pdb).max(alone),
                    "{} command over {:?} asks PDB {} for {asked} evictions; it allows {}",
                    command.method.as_str(),
                    command.nodes,
                    pdb.name,
                    allowed(pdb)
                );
            }
        }
        if command.method != Method::Expiration {
            prop_assert!(
                command.moves.iter().all(|m| m.to != Destination::Pending),
                "a graceful command strands a pod"
            );
        }
        if matches!(
            command.method,
            Method::MultiNodeConsolidation | Method::SingleNodeConsolidation
        ) {
            prop_assert!(
                command.savings_per_hour > 0.0,
                "consolidation does not save: {}",
                command.savings_per_hour
            );
            prop_assert!(command.replacements.len() <= 1);
            for r in &command.replacements {
                prop_assert!(
                    command
                        .nodes
                        .iter()
                        .all(|n| node(n).labels.get(labels::INSTANCE_TYPE)
                            != Some(&r.launch.instance_type)),
                    "a replacement of the same instance type"
                );
                if !config.spot_to_spot {
                    prop_assert!(
                        !(command.nodes.iter().all(|n| node(n)
                            .labels
                            .get(labels::CAPACITY_TYPE)
                            .map(String::as_str)
                            == Some("spot"))
                            && r.launch.capacity_type == "spot"),
                        "spot-to-spot while disabled"
                    );
                }
            }
        }
        // Budgets: the graceful command plus nodes already disrupting stay within the
        // most restrictive active budget for its reason.
        if let Some(reason) = reason_of(command.method) {
            for pool in &snapshot.nodepools {
                // Karpenter's budget mapping counts only initialized nodes.
                let in_pool = |n: &Node| {
                    n.nodepool() == Some(pool.name.as_str())
                        && (snapshot.nodeclaims.iter())
                            .any(|c| c.node_name.as_deref() == Some(&n.name) && c.initialized)
                };
                let n_nodes = snapshot.nodes.iter().filter(|n| in_pool(n)).count() as u32;
                let disrupting = snapshot
                    .nodes
                    .iter()
                    .filter(|n| {
                        in_pool(n) && (n.deleting || !n.ready || expired.contains(&n.name.as_str()))
                    })
                    .count() as u32;
                let taken = command.nodes.iter().filter(|n| in_pool(node(n))).count() as u32;
                if let Some(limit) = allowance(&pool.disruption.budgets, reason, n_nodes, NOW).limit
                {
                    prop_assert!(
                        taken == 0 || taken + disrupting <= limit,
                        "pool {} budget {limit} for {:?}: {taken} taken, {disrupting} disrupting",
                        pool.name,
                        reason
                    );
                }
            }
        }
    }
    // Expiration is forceful: every managed node past expireAfter goes, whatever else.
    for n in &snapshot.nodes {
        let old = n.created_at.is_some_and(|c| NOW - c >= 720 * 3600);
        if n.nodepool().is_some() && !n.deleting && old {
            prop_assert!(
                expired.contains(&n.name.as_str()),
                "{} expired but stays",
                n.name
            );
        }
    }
    // Emptiness and consolidation wait consolidateAfter from the last pod event: the
    // NodeClaim's, or a pod's own bind time when later.
    for command in outcome.commands.iter().filter(|c| {
        matches!(
            c.method,
            Method::Emptiness | Method::MultiNodeConsolidation | Method::SingleNodeConsolidation
        )
    }) {
        for name in &command.nodes {
            let n = node(name);
            let pool = snapshot
                .nodepools
                .iter()
                .find(|p| Some(p.name.as_str()) == n.nodepool())
                .unwrap();
            let after = pool.disruption.consolidate_after;
            prop_assert!(after.is_some(), "{name}: consolidateAfter is Never");
            let after = after.unwrap().as_secs() as i64;
            let claim = snapshot
                .nodeclaims
                .iter()
                .find(|c| c.node_name.as_deref() == Some(name))
                .unwrap();
            let last = pods_on(snapshot, name)
                .filter(|p| !p.is_daemon())
                .filter_map(|p| p.bound_at)
                .chain(claim.last_pod_event)
                .max();
            prop_assert!(
                last.is_none_or(|t| NOW - t >= after),
                "{name} disrupted by {} {}s after a pod event; consolidateAfter {after}s",
                command.method.as_str(),
                last.map_or(0, |t| NOW - t)
            );
        }
    }
    // Emptiness removes only nodes running nothing but DaemonSet pods.
    for command in outcome
        .commands
        .iter()
        .filter(|c| c.method == Method::Emptiness)
    {
        for name in &command.nodes {
            prop_assert!(
                pods_on(snapshot, name).all(|p| p.is_daemon()),
                "emptiness deletes {name}, which runs pods"
            );
        }
    }
    // No graceful command counts on a node that has not initialized.
    let early = kerf_disruption::check::onto_uninitialized(snapshot, outcome);
    prop_assert!(
        early.is_empty(),
        "moves onto uninitialized nodes: {early:?}"
    );
    // Every displaced pod lands where kube-scheduler would accept it.
    for (i, (input, plan)) in kerf_disruption::check::replay(snapshot, outcome)
        .iter()
        .enumerate()
    {
        let violations = kerf_scheduling::validate::validate(input, plan);
        prop_assert!(
            violations.is_empty(),
            "command {i} ({:?} with replacements {:?}): {:?}",
            outcome.commands[i].method,
            outcome.commands[i].replacements,
            violations.iter().map(|v| v.to_string()).collect::<Vec<_>>()
        );
    }
    // Every managed node is in a command or kept, once.
    let managed = snapshot
        .nodes
        .iter()
        .filter(|n| n.nodepool().is_some())
        .count();
    let in_commands: usize = outcome.commands.iter().map(|c| c.nodes.len()).sum();
    prop_assert_eq!(managed, in_commands + outcome.kept.len());
    prop_assert!(
        outcome.cost_per_hour_after <= outcome.cost_per_hour_before + 1e-9
            || outcome
                .commands
                .iter()
                .any(|c| matches!(c.method, Method::Expiration | Method::Drift))
    );
    // The conditions agree with the decisions: a node drift disrupts (or keeps for
    // drift) shows Drifted, with the reason its sentence is of; a node emptiness or
    // consolidation disrupts shows Consolidatable.
    let claim_of = kerf_disruption::claims_by_node(&snapshot.nodeclaims);
    let conditions = |node: &str| {
        let claim = &snapshot.nodeclaims[claim_of[node]].name;
        outcome
            .conditions
            .iter()
            .find(|c| &c.claim == claim)
            .unwrap()
    };
    for command in &outcome.commands {
        for (i, node) in command.nodes.iter().enumerate() {
            let shown = conditions(node);
            match command.method {
                Method::Expiration => {}
                Method::Drift => {
                    let drift = shown.drifted.as_ref();
                    prop_assert!(drift.is_some(), "{} {}", node, command.why);
                    let drift = drift.unwrap();
                    let reason = if drift.detail.contains("'s template changed") {
                        DriftReason::NodePoolDrifted
                    } else {
                        DriftReason::RequirementsDrifted
                    };
                    prop_assert_eq!(drift.reason, reason, "{}", drift);
                    if i == 0 {
                        prop_assert_eq!(format!("drifted: {drift}"), command.why.clone());
                    }
                }
                _ => prop_assert!(shown.consolidatable, "{} {:?}", node, command.method),
            }
        }
    }
    for kept in &outcome.kept {
        if let KeptReason::Drifted { drift, .. } = &kept.reason {
            prop_assert_eq!(conditions(&kept.node).drifted.as_ref(), Some(drift));
        }
        if let KeptReason::Empty(EmptyHold::ConsolidateAfter(_)) = &kept.reason {
            prop_assert!(!conditions(&kept.node).consolidatable, "{}", kept.node);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(96))]

    #[test]
    fn commands_respect_pdbs_budgets_and_placement(spec in spec(), spot_to_spot in any::<bool>()) {
        let snapshot = build(&spec);
        let config = Config { spot_to_spot, ..Config::default() };
        let outcome = compute_commands(&snapshot, NOW, &config);
        check(&snapshot, &outcome, &config)?;
        prop_assert_eq!(&outcome, &compute_commands(&snapshot, NOW, &config), "not deterministic");
    }

    /// Validating a command with a pass over its own nodes only (what the controller
    /// does before it acts) finds the same command again on the same cluster.
    #[test]
    fn a_pass_among_a_commands_nodes_finds_it_again(spec in spec(), spot_to_spot in any::<bool>()) {
        let snapshot = build(&spec);
        let config = Config { spot_to_spot, ..Config::default() };
        let outcome = compute_commands(&snapshot, NOW, &config);
        let sorted = |nodes: &[String]| {
            let mut nodes = nodes.to_vec();
            nodes.sort();
            nodes
        };
        for command in outcome.commands.iter().filter(|c| c.method != Method::Expiration) {
            let again = compute_commands_among(&snapshot, NOW, &config, &command.nodes);
            prop_assert!(
                again.commands.iter().any(|c| c.decision == command.decision
                    && sorted(&c.nodes) == sorted(&command.nodes)),
                "{command:#?} not found again among its nodes: {:#?}", again.commands
            );
        }
    }
}
