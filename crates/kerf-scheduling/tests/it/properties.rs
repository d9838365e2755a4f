//! Properties of `solve` over generated clusters, checked by the independent validator.
//!
//! The generator draws a compact [`Spec`] of small numbers and builds the `Input` from it, so
//! proptest shrinks a failure to few pools, nodes and deployments with plain constraints. The
//! inputs use the real `aws` and `kwok` catalogs, because their shapes (many near-identical
//! types, several zones, spot and on-demand) are where packing and topology go wrong.

use kerf_model::catalog;
use kerf_model::labels;
use kerf_model::pod::{
    AffinityTerm, HostPort, InclusionPolicy, NamespaceScope, NodeAffinity, Owner, TopologySpread,
    VolumeZone, Weighted, WhenUnsatisfiable,
};
use kerf_model::{
    Effect, InstanceType, LabelSelector, Labels, Node, NodePool, Operator, Pod, Quantity,
    Requirement, Requirements, Resources, Taint, Toleration, TolerationOperator,
};
use kerf_scheduling::validate::validate;
use kerf_scheduling::{Config, Input, Plan, PreferencePolicy, fold_bound_pods, solve};
use proptest::prelude::*;
use proptest::sample::Index;

const CPUS: [&str; 8] = ["50m", "100m", "250m", "500m", "1", "2", "4", "8"];
const MEMS: [&str; 10] = [
    "64Mi", "128Mi", "256Mi", "512Mi", "1Gi", "2Gi", "4Gi", "8Gi", "16Gi", "32Gi",
];
const TEAMS: [&str; 2] = ["a", "b"];
const TEAM: &str = "example.com/team";
const DEDICATED: &str = "example.com/dedicated";
const SOFT: &str = "example.com/soft";

fn cases(n: u32) -> ProptestConfig {
    // No regression files: they would land in the source tree of a crate shared by many
    // engineers. A failure prints its minimal input instead. `PROPTEST_CASES` runs deeper.
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
    weight: i32,
    /// 0 none, 1 In amd64, 2 In arm64, 3 NotIn arm64.
    arch: u8,
    /// 0 none, 1 spot, 2 on-demand, 3 both.
    capacity_type: u8,
    /// Bit i allows zone i; 0 leaves zones open.
    zones: u8,
    /// Bit i allows family (aws category / kwok family) i; 0 leaves them open.
    families: u8,
    /// Allow only types with fewer than this many vCPUs.
    cpu_below: Option<u8>,
    team: Option<u8>,
    /// 0 none, 1 dedicated=x:NoSchedule, 2 soft:PreferNoSchedule, 3 startup taint,
    /// 4 dedicated=y:NoExecute.
    taint: u8,
    /// 0 none, 1 cpu, 2 nodes, 3 cpu of zero, 4 nodes of zero (a pool that launches
    /// nothing, which `Resources` would have read as no limit at all).
    limit: u8,
    limit_amount: u8,
}

#[derive(Clone, Debug)]
struct NodeSpec {
    instance_type: Index,
    zone: Index,
    spot: bool,
    pool: Option<Index>,
    /// As `PoolSpec::taint`.
    taint: u8,
    /// 0 ready and schedulable, 1 cordoned, 2 not ready, otherwise fine.
    condition: u8,
    bound: Vec<Index>,
}

#[derive(Clone, Debug)]
struct DaemonSpec {
    cpu: u8,
    mem: u8,
    tolerate_all: bool,
    amd64_only: bool,
    /// 0 none, 1 port 9100, 2 port 8080 (the port deployments use, so pods and the
    /// DaemonSet compete for it).
    host_port: u8,
    /// 0 as `cpu` and `mem` say, 1 memory 200Gi, 2 cpu 100: more than most types (or
    /// any) have, so pods that ask for little of it must still not land beside it.
    huge: u8,
}

/// One node-affinity expression: key, operator and value, each an index into a table.
type Expr = (u8, u8, u8);

#[derive(Clone, Debug)]
struct DeploySpec {
    replicas: u8,
    cpu: u8,
    mem: u8,
    /// 0 cpu and memory, 1 cpu only, 2 neither (only the pod slot).
    asks: u8,
    gpu: bool,
    other_namespace: bool,
    /// nodeSelector on arch, zone, capacity type and team; 0 means no entry.
    selector: (u8, u8, u8, u8),
    required: Vec<Vec<Expr>>,
    preferred: Vec<(Expr, u8)>,
    /// 0 none, 1 dedicated=x Equal, 2 dedicated Exists, 3 everything, 4 soft.
    toleration: u8,
    /// (hard, maxSkew, policy bits: 1 minDomains, 2 taints Honor, 4 affinity Ignore).
    zone_spread: Option<(bool, u8, u8)>,
    host_spread: Option<(bool, u8)>,
    /// Hostname anti-affinity: 0 none, 1 required, 2 preferred, against the deployment's
    /// own label; 3 required, 4 preferred, against `anti_target`'s label (a pod of that
    /// other deployment, with no term of its own, must keep off this one's node too).
    anti_host: u8,
    anti_target: Index,
    /// (target deployment, 0 preferred, 1 required, 2 required plus a second term: a pod
    /// with `tier: front` on the same host, so only pods matching both terms count).
    zone_affinity: Option<(Index, u8)>,
    host_port: bool,
    /// Each replica mounts a volume in one zone, from this one on, a zone further per
    /// replica (a StatefulSet's claims): where it may run, not where its spread counts.
    volume_zone: Option<Index>,
}

#[derive(Clone, Debug)]
struct Spec {
    kwok: bool,
    types: Vec<Index>,
    unavailable: Vec<Index>,
    pools: Vec<PoolSpec>,
    nodes: Vec<NodeSpec>,
    daemonsets: Vec<DaemonSpec>,
    deployments: Vec<DeploySpec>,
}

fn pool_spec() -> impl Strategy<Value = PoolSpec> {
    (
        0..3i32,
        prop::sample::select(vec![0u8, 0, 0, 1, 2, 3]),
        prop::sample::select(vec![0u8, 0, 0, 1, 2, 3]),
        prop::sample::select(vec![0u8, 0, 0, 1, 3, 6, 7, 12]),
        prop::sample::select(vec![0u8, 0, 0, 1, 3, 6]),
        prop::option::weighted(0.2, 0..4u8),
        prop::option::weighted(0.3, 0..2u8),
        prop::sample::select(vec![0u8, 0, 0, 0, 0, 1, 2, 3, 4]),
        prop::sample::select(vec![0u8, 0, 0, 0, 1, 2, 3, 4]),
        0..8u8,
    )
        .prop_map(
            |(
                weight,
                arch,
                capacity_type,
                zones,
                families,
                cpu_below,
                team,
                taint,
                limit,
                limit_amount,
            )| PoolSpec {
                weight,
                arch,
                capacity_type,
                zones,
                families,
                cpu_below,
                team,
                taint,
                limit,
                limit_amount,
            },
        )
}

fn node_spec() -> impl Strategy<Value = NodeSpec> {
    (
        any::<Index>(),
        any::<Index>(),
        any::<bool>(),
        prop::option::of(any::<Index>()),
        prop::sample::select(vec![0u8, 0, 0, 1, 2, 4]),
        0..8u8,
        prop::collection::vec(any::<Index>(), 0..4),
    )
        .prop_map(
            |(instance_type, zone, spot, pool, taint, condition, bound)| NodeSpec {
                instance_type,
                zone,
                spot,
                pool,
                taint,
                condition,
                bound,
            },
        )
}

fn daemon_spec() -> impl Strategy<Value = DaemonSpec> {
    (
        0..4u8,
        0..4u8,
        any::<bool>(),
        any::<bool>(),
        0..3u8,
        prop::sample::select(vec![0u8, 0, 0, 0, 0, 0, 1, 2]),
    )
        .prop_map(
            |(cpu, mem, tolerate_all, amd64_only, host_port, huge)| DaemonSpec {
                cpu,
                mem,
                tolerate_all,
                amd64_only,
                host_port,
                huge,
            },
        )
}

fn expr() -> impl Strategy<Value = Expr> {
    (
        prop::sample::select(vec![0u8, 0, 1, 1, 2, 3, 3, 4, 5, 6]),
        prop::sample::select(vec![0u8, 0, 1, 1, 2, 3, 4, 5]),
        0..4u8,
    )
}

fn deploy_spec() -> impl Strategy<Value = DeploySpec> {
    let shape = (
        1..20u8,
        prop::sample::select(vec![0u8, 1, 1, 2, 2, 3, 3, 4, 4, 5, 6, 7]),
        prop::sample::select(vec![0u8, 1, 2, 3, 3, 4, 4, 5, 5, 6, 7, 8, 9]),
        prop::bool::weighted(0.05),
        prop::bool::weighted(0.2),
        prop::sample::select(vec![0u8, 0, 0, 0, 0, 0, 0, 0, 1, 2]),
        (
            prop::sample::select(vec![0u8, 0, 0, 0, 0, 1, 2]),
            prop::sample::select(vec![0u8, 0, 0, 0, 1, 2, 3, 4]),
            prop::sample::select(vec![0u8, 0, 0, 0, 0, 1, 2]),
            prop::sample::select(vec![0u8, 0, 0, 0, 0, 1, 2]),
        ),
    );
    let constraints = (
        prop::sample::select(vec![0usize, 0, 0, 1, 2])
            .prop_flat_map(|n| prop::collection::vec(prop::collection::vec(expr(), 1..3), n)),
        prop::collection::vec((expr(), 1..100u8), 0..3),
        prop::sample::select(vec![0u8, 0, 1, 1, 2, 3, 4]),
        prop::option::of((any::<bool>(), 1..3u8, 0..8u8)),
        prop::option::of((any::<bool>(), 1..3u8)),
        (
            prop::sample::select(vec![0u8, 0, 0, 1, 2, 3, 3, 4]),
            any::<Index>(),
        ),
        prop::option::weighted(0.3, (any::<Index>(), 0..3u8)),
        prop::bool::weighted(0.15),
        prop::option::weighted(0.15, any::<Index>()),
    );
    (shape, constraints).prop_map(
        |(
            (replicas, cpu, mem, gpu, other_namespace, asks, selector),
            (
                required,
                preferred,
                toleration,
                zone_spread,
                host_spread,
                (anti_host, anti_target),
                zone_affinity,
                host_port,
                volume_zone,
            ),
        )| DeploySpec {
            replicas,
            cpu,
            mem,
            asks,
            gpu,
            other_namespace,
            selector,
            required,
            preferred,
            toleration,
            zone_spread,
            host_spread,
            anti_host,
            anti_target,
            zone_affinity,
            host_port,
            volume_zone,
        },
    )
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        any::<bool>(),
        prop::collection::vec(any::<Index>(), 3..24),
        prop::collection::vec(any::<Index>(), 0..6),
        prop::collection::vec(pool_spec(), 1..4),
        prop::collection::vec(node_spec(), 0..6),
        prop::collection::vec(daemon_spec(), 0..3),
        prop::collection::vec(deploy_spec(), 1..5),
    )
        .prop_map(
            |(kwok, types, unavailable, pools, nodes, daemonsets, deployments)| Spec {
                kwok,
                types,
                unavailable,
                pools,
                nodes,
                daemonsets,
                deployments,
            },
        )
}

/// The catalog-specific vocabulary the generator draws values from.
struct Vocab {
    zones: Vec<&'static str>,
    family_key: &'static str,
    families: Vec<&'static str>,
    cpu_key: &'static str,
}

fn vocab(kwok: bool) -> Vocab {
    if kwok {
        Vocab {
            zones: catalog::kwok::ZONES.to_vec(),
            family_key: catalog::kwok::INSTANCE_FAMILY,
            families: vec!["c", "s", "m"],
            cpu_key: catalog::kwok::INSTANCE_CPU,
        }
    } else {
        Vocab {
            zones: catalog::aws::ZONES.to_vec(),
            family_key: labels::INSTANCE_CATEGORY,
            families: vec!["c", "m", "r"],
            cpu_key: labels::INSTANCE_CPU,
        }
    }
}

fn one(v: &str) -> Requirement {
    Requirement::single(v)
}

fn req(op: Operator, values: &[&str]) -> Requirement {
    Requirement::new(op, values.iter().copied()).expect("generated requirements are well formed")
}

fn quantity(s: &str) -> Quantity {
    Quantity::parse(s).expect("generated quantities parse")
}

/// Even deployments are `tier: front`, odd ones `back`, so some targets of a two-term affinity
/// match both terms and some only one.
const TIERS: [&str; 2] = ["front", "back"];

fn app_selector(app: &str) -> LabelSelector {
    let mut l = Labels::new();
    l.insert("app".into(), app.into());
    LabelSelector::from_match_labels(&l)
}

fn taint(kind: u8) -> Option<Taint> {
    match kind {
        1 => Some(Taint::new(DEDICATED, "x", Effect::NoSchedule)),
        2 => Some(Taint::new(SOFT, "", Effect::PreferNoSchedule)),
        4 => Some(Taint::new(DEDICATED, "y", Effect::NoExecute)),
        _ => None,
    }
}

fn expression(v: &Vocab, (key, op, value): Expr) -> (String, Requirement) {
    let (key, values): (&str, Vec<&str>) = match key {
        0 => (labels::ZONE, v.zones.clone()),
        1 => (labels::ARCH, vec!["amd64", "arm64"]),
        2 => (labels::CAPACITY_TYPE, vec!["spot", "on-demand"]),
        3 => (v.cpu_key, vec!["2", "4", "8", "16"]),
        4 => (TEAM, TEAMS.to_vec()),
        5 => (v.family_key, v.families.clone()),
        _ => ("example.com/absent", vec!["x"]),
    };
    let a = values[value as usize % values.len()];
    let b = values[(value as usize + 1) % values.len()];
    let r = match op {
        0 => req(Operator::In, &[a]),
        1 => req(Operator::NotIn, &[a, b]),
        2 => req(Operator::Exists, &[]),
        3 => req(Operator::DoesNotExist, &[]),
        4 => req(Operator::Gt, &[["1", "3", "7"][value as usize % 3]]),
        _ => req(Operator::Lt, &[["3", "9", "20"][value as usize % 3]]),
    };
    (key.to_string(), r)
}

fn build(spec: &Spec) -> Input {
    let v = vocab(spec.kwok);
    let all = catalog::by_name(if spec.kwok { "kwok" } else { "aws" }).unwrap();
    let mut picked: Vec<usize> = spec.types.iter().map(|i| i.index(all.len())).collect();
    picked.sort_unstable();
    picked.dedup();
    let mut instance_types: Vec<InstanceType> = picked.iter().map(|&i| all[i].clone()).collect();
    for u in &spec.unavailable {
        let t = u.index(instance_types.len());
        let n = instance_types[t].offerings.len();
        instance_types[t].offerings[u.index(n * 7) % n].available = false;
    }

    let nodepools: Vec<NodePool> = spec
        .pools
        .iter()
        .enumerate()
        .map(|(i, ps)| {
            let mut np = NodePool::new(&format!("pool-{i}"));
            np.weight = ps.weight;
            let r = &mut np.requirements;
            match ps.arch {
                1 => r.add(labels::ARCH, one("amd64")),
                2 => r.add(labels::ARCH, one("arm64")),
                3 => r.add(labels::ARCH, req(Operator::NotIn, &["arm64"])),
                _ => {}
            }
            match ps.capacity_type {
                1 => r.add(labels::CAPACITY_TYPE, one("spot")),
                2 => r.add(labels::CAPACITY_TYPE, one("on-demand")),
                3 => r.add(
                    labels::CAPACITY_TYPE,
                    Requirement::any_of(["spot", "on-demand"]),
                ),
                _ => {}
            }
            let bits = |mask: u8, values: &[&'static str]| -> Vec<&'static str> {
                values
                    .iter()
                    .enumerate()
                    .filter(|(b, _)| mask & (1 << b) != 0)
                    .map(|(_, z)| *z)
                    .collect()
            };
            let zones = bits(ps.zones, &v.zones);
            if !zones.is_empty() {
                r.add(labels::ZONE, Requirement::any_of(zones));
            }
            let families = bits(ps.families, &v.families);
            if !families.is_empty() {
                r.add(v.family_key, Requirement::any_of(families));
            }
            if let Some(c) = ps.cpu_below {
                r.add(
                    v.cpu_key,
                    req(Operator::Lt, &[["5", "9", "17", "65"][c as usize]]),
                );
            }
            if let Some(t) = ps.team {
                np.labels.insert(TEAM.into(), TEAMS[t as usize].into());
            }
            if ps.taint == 3 {
                np.startup_taints
                    .push(Taint::new("example.com/booting", "", Effect::NoSchedule));
            }
            np.taints.extend(taint(ps.taint));
            let amount = i64::from(ps.limit_amount);
            match ps.limit {
                1 => np.limits.set("cpu", Quantity::from_units(8 + amount * 24)),
                2 => np.limits.set("nodes", Quantity::from_units(1 + amount / 2)),
                3 => np.limits.set("cpu", Quantity::ZERO),
                4 => np.limits.set("nodes", Quantity::ZERO),
                _ => {}
            }
            np
        })
        .collect();

    let deployments: Vec<Pod> = spec
        .deployments
        .iter()
        .enumerate()
        .map(|(i, ds)| deployment(&v, spec, i, ds))
        .collect();

    let mut nodes = Vec::new();
    let mut bound_pods = Vec::new();
    for (i, ns) in spec.nodes.iter().enumerate() {
        let t = &all[ns.instance_type.index(all.len())];
        let name = format!("node-{i}");
        let mut l = t.labels.clone();
        l.insert(
            labels::ZONE.into(),
            v.zones[ns.zone.index(v.zones.len())].into(),
        );
        l.insert(
            labels::CAPACITY_TYPE.into(),
            if ns.spot { "spot" } else { "on-demand" }.into(),
        );
        if let Some(p) = &ns.pool {
            let np = &nodepools[p.index(nodepools.len())];
            l.insert(labels::NODEPOOL.into(), np.name.clone());
            l.extend(np.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let mut node = Node::new(&name, l, t.allocatable());
        node.capacity = t.capacity.clone();
        node.taints.extend(taint(ns.taint));
        node.unschedulable = ns.condition == 1;
        node.ready = ns.condition != 2;
        for (b, d) in ns.bound.iter().enumerate() {
            let mut p = deployments[d.index(deployments.len())].clone();
            p.key.name = format!("{}-bound-{i}-{b}", p.key.name);
            p.node_name = Some(name.clone());
            bound_pods.push(p);
        }
        nodes.push(node);
    }

    let daemonsets = spec
        .daemonsets
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let (cpu, mem) = match d.huge {
                1 => (CPUS[d.cpu as usize], "200Gi"),
                2 => ("100", MEMS[d.mem as usize]),
                _ => (CPUS[d.cpu as usize], MEMS[d.mem as usize]),
            };
            let mut p = Pod::new("kube-system", &format!("ds-{i}"), requests(cpu, mem, false));
            p.labels.insert("app".into(), format!("ds-{i}"));
            p.owner = Some(Owner {
                kind: "DaemonSet".into(),
                name: format!("ds-{i}"),
            });
            if d.tolerate_all {
                p.tolerations.push(Toleration {
                    key: String::new(),
                    operator: TolerationOperator::Exists,
                    value: String::new(),
                    effect: None,
                });
            }
            if d.amd64_only {
                let mut r = Requirements::new();
                r.add(labels::ARCH, one("amd64"));
                p.node_affinity.required.push(r);
            }
            if d.host_port > 0 {
                p.host_ports.push(HostPort {
                    port: if d.host_port == 1 { 9100 } else { 8080 },
                    protocol: "TCP".into(),
                    host_ip: String::new(),
                });
            }
            p
        })
        .collect();

    let mut pods = Vec::new();
    for (template, ds) in deployments.iter().zip(&spec.deployments) {
        for r in 0..ds.replicas {
            if pods.len() == 60 {
                break;
            }
            let mut p = template.clone();
            p.key.name = format!("{}-{r}", p.key.name);
            if let Some(z) = &ds.volume_zone {
                let zone = v.zones[(z.index(v.zones.len()) + r as usize) % v.zones.len()];
                p.volume_zones.push(VolumeZone {
                    claim: format!("data-{}", p.key.name),
                    zones: one(zone),
                });
            }
            pods.push(p);
        }
    }

    Input {
        pods,
        bound_pods,
        nodes,
        nodepools,
        instance_types,
        daemonsets,
        namespaces: Default::default(),
    }
}

fn requests(cpu: &str, mem: &str, gpu: bool) -> Resources {
    let mut r = Resources::new();
    r.set("cpu", quantity(cpu));
    r.set("memory", quantity(mem));
    r.set("pods", Quantity::from_units(1));
    if gpu {
        r.set("nvidia.com/gpu", Quantity::from_units(1));
    }
    r
}

/// The pod template of deployment `i`; replicas differ only in name.
fn deployment(v: &Vocab, spec: &Spec, i: usize, ds: &DeploySpec) -> Pod {
    let app = format!("d{i}");
    let namespace = if ds.other_namespace {
        "team-b"
    } else {
        "default"
    };
    let mut asked = requests(CPUS[ds.cpu as usize], MEMS[ds.mem as usize], ds.gpu);
    if ds.asks >= 1 {
        asked.set("memory", Quantity::ZERO);
    }
    if ds.asks >= 2 {
        asked.set("cpu", Quantity::ZERO);
    }
    let mut p = Pod::new(namespace, &app, asked);
    p.labels.insert("app".into(), app.clone());
    p.labels.insert("tier".into(), TIERS[i % 2].into());
    p.owner = Some(Owner {
        kind: "ReplicaSet".into(),
        name: app.clone(),
    });

    let mut selector = Requirements::new();
    let (arch, zone, ct, team) = ds.selector;
    if arch > 0 {
        selector.add(labels::ARCH, one(["amd64", "arm64"][arch as usize - 1]));
    }
    if zone > 0 {
        // Zone 4 does not exist in the aws catalog: such pods must be explained, not placed.
        let z = if zone as usize > v.zones.len() {
            "nowhere-1z"
        } else {
            v.zones[zone as usize - 1]
        };
        selector.add(labels::ZONE, one(z));
    }
    if ct > 0 {
        selector.add(
            labels::CAPACITY_TYPE,
            one(["spot", "on-demand"][ct as usize - 1]),
        );
    }
    if team > 0 {
        selector.add(TEAM, one(TEAMS[team as usize - 1]));
    }
    let mut terms: Vec<Requirements> = ds
        .required
        .iter()
        .map(|exprs| {
            let mut t = Requirements::new();
            for &e in exprs {
                let (k, r) = expression(v, e);
                t.add(k, r);
            }
            t.intersection(&selector)
        })
        .collect();
    if terms.is_empty() && !selector.is_empty() {
        terms.push(selector);
    }
    p.node_affinity = NodeAffinity {
        required: terms,
        preferred: ds
            .preferred
            .iter()
            .map(|&(e, weight)| {
                let (k, r) = expression(v, e);
                let mut term = Requirements::new();
                term.add(k, r);
                Weighted {
                    weight: i32::from(weight),
                    term,
                }
            })
            .collect(),
    };

    let toleration = |key: &str, operator, value: &str| Toleration {
        key: key.into(),
        operator,
        value: value.into(),
        effect: None,
    };
    match ds.toleration {
        1 => p
            .tolerations
            .push(toleration(DEDICATED, TolerationOperator::Equal, "x")),
        2 => p
            .tolerations
            .push(toleration(DEDICATED, TolerationOperator::Exists, "")),
        3 => p
            .tolerations
            .push(toleration("", TolerationOperator::Exists, "")),
        4 => p
            .tolerations
            .push(toleration(SOFT, TolerationOperator::Exists, "")),
        _ => {}
    }

    let when = |hard: bool| {
        if hard {
            WhenUnsatisfiable::DoNotSchedule
        } else {
            WhenUnsatisfiable::ScheduleAnyway
        }
    };
    if let Some((hard, skew, policy)) = ds.zone_spread {
        p.topology_spread.push(TopologySpread {
            max_skew: i32::from(skew),
            topology_key: labels::ZONE.into(),
            when_unsatisfiable: when(hard),
            selector: app_selector(&app),
            // Kubernetes accepts minDomains only with DoNotSchedule.
            min_domains: (hard && policy & 1 != 0).then_some(3),
            node_affinity_policy: if policy & 4 != 0 {
                InclusionPolicy::Ignore
            } else {
                InclusionPolicy::Honor
            },
            node_taints_policy: if policy & 2 != 0 {
                InclusionPolicy::Honor
            } else {
                InclusionPolicy::Ignore
            },
        });
    }
    if let Some((hard, skew)) = ds.host_spread {
        p.topology_spread.push(TopologySpread {
            max_skew: i32::from(skew),
            topology_key: labels::HOSTNAME.into(),
            when_unsatisfiable: when(hard),
            selector: app_selector(&app),
            min_domains: None,
            node_affinity_policy: InclusionPolicy::Honor,
            node_taints_policy: InclusionPolicy::Ignore,
        });
    }
    let term = |target: &str, key: &str| AffinityTerm {
        selector: app_selector(target),
        namespaces: NamespaceScope::own(namespace),
        topology_key: key.into(),
    };
    let other = format!("d{}", ds.anti_target.index(spec.deployments.len()));
    match ds.anti_host {
        1 => p.anti_affinity.push(term(&app, labels::HOSTNAME)),
        2 => p.preferred_anti_affinity.push(Weighted {
            weight: 50,
            term: term(&app, labels::HOSTNAME),
        }),
        3 => p.anti_affinity.push(term(&other, labels::HOSTNAME)),
        4 => p.preferred_anti_affinity.push(Weighted {
            weight: 50,
            term: term(&other, labels::HOSTNAME),
        }),
        _ => {}
    }
    if let Some((target, kind)) = &ds.zone_affinity {
        let target = format!("d{}", target.index(spec.deployments.len()));
        if *kind > 0 {
            p.affinity.push(term(&target, labels::ZONE));
        }
        if *kind == 2 {
            let mut tier = Labels::new();
            tier.insert("tier".into(), TIERS[0].into());
            p.affinity.push(AffinityTerm {
                selector: LabelSelector::from_match_labels(&tier),
                namespaces: NamespaceScope::own(namespace),
                topology_key: labels::HOSTNAME.into(),
            });
        }
        if *kind == 0 {
            p.preferred_affinity.push(Weighted {
                weight: 30,
                term: term(&target, labels::ZONE),
            });
        }
    }
    if ds.host_port {
        p.host_ports.push(HostPort {
            port: 8080,
            protocol: "TCP".into(),
            host_ip: String::new(),
        });
    }
    p
}

fn config(policy: PreferencePolicy) -> Config {
    Config {
        preference_policy: policy,
        ..Config::default()
    }
}

fn render_violations(plan: &Plan, violations: &[kerf_scheduling::validate::Violation]) -> String {
    let lines: Vec<String> = violations.iter().map(|v| format!("  {v}")).collect();
    format!("{}\nplan: {plan:#?}", lines.join("\n"))
}

/// A permutation from a seed, so the same case permutes the same way on every run.
fn permute<T>(items: &mut [T], seed: u64) {
    let mut state = seed | 1;
    for i in (1..items.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        items.swap(i, (state % (i as u64 + 1)) as usize);
    }
}

proptest! {
    #![proptest_config(cases(96))]

    /// (a) Every plan is one kube-scheduler would accept, under both preference policies.
    #[test]
    fn plans_pass_the_validator(spec in spec()) {
        let input = build(&spec);
        for policy in [PreferencePolicy::Respect, PreferencePolicy::Ignore] {
            let plan = solve(&input, &config(policy));
            let violations = validate(&input, &plan);
            prop_assert!(
                violations.is_empty(),
                "{policy:?}:\n{}",
                render_violations(&plan, &violations)
            );
        }
    }
}

proptest! {
    #![proptest_config(cases(96))]

    /// (a') Folding the bound pods the pending pods cannot see into their nodes'
    /// allocatable (what disruption's simulations and the simulator's kube-scheduler do
    /// for speed) gives the same plan, under both preference policies.
    #[test]
    fn folding_bound_pods_keeps_the_plan(spec in spec()) {
        let input = build(&spec);
        let mut folded = input.clone();
        fold_bound_pods(&mut folded);
        for policy in [PreferencePolicy::Respect, PreferencePolicy::Ignore] {
            prop_assert_eq!(solve(&input, &config(policy)), solve(&folded, &config(policy)));
        }
    }
}

proptest! {
    #![proptest_config(cases(64))]

    /// (b) The same input gives the same plan, whatever order NodePools and instance types
    /// arrive in.
    #[test]
    fn plans_are_deterministic(spec in spec(), seed in any::<u64>()) {
        let input = build(&spec);
        let config = Config::default();
        let plan = solve(&input, &config);
        prop_assert_eq!(&plan, &solve(&input, &config));
        let mut permuted = input.clone();
        permute(&mut permuted.nodepools, seed);
        permute(&mut permuted.instance_types, seed.rotate_left(17));
        prop_assert_eq!(&plan, &solve(&permuted, &config));
    }

    /// (c) Every unschedulable pod is explained: each NodePool's clause says something, and
    /// the reason names a NodePool, a resource or a label key.
    #[test]
    fn unschedulable_reasons_name_a_cause(spec in spec()) {
        let input = build(&spec);
        let plan = solve(&input, &Config::default());
        for u in &plan.unschedulable {
            prop_assert!(!u.reason.trim().is_empty(), "{} has an empty reason", u.pod);
            let pod = input.pods.iter().find(|p| p.key == u.pod).unwrap();
            for np in &input.nodepools {
                let tag = format!("nodepool {}: ", np.name);
                if let Some(at) = u.reason.find(&tag) {
                    let clause = u.reason[at + tag.len()..].split("; nodepool ").next().unwrap();
                    prop_assert!(
                        !clause.trim().is_empty(),
                        "{}: empty clause for {} in {:?}", u.pod, np.name, u.reason
                    );
                }
            }
            let mut names: Vec<String> =
                input.nodepools.iter().map(|np| format!("nodepool {}", np.name)).collect();
            names.extend(pod.requests.names().map(str::to_string));
            names.extend(
                pod.node_affinity.required.iter().flat_map(|t| t.keys().map(str::to_string)),
            );
            names.extend(pod.topology_spread.iter().map(|s| s.topology_key.clone()));
            names.extend(pod.affinity.iter().chain(&pod.anti_affinity).map(|t| t.topology_key.clone()));
            prop_assert!(
                names.iter().any(|n| u.reason.contains(n.as_str())),
                "{}: reason names nothing: {:?}", u.pod, u.reason
            );
        }
    }

    /// (d) With one unconstrained NodePool and pods that each fit the largest type, nothing
    /// is left unschedulable.
    #[test]
    fn unconstrained_pods_always_fit(
        kwok in any::<bool>(),
        types in prop::collection::vec(any::<Index>(), 1..12),
        pods in prop::collection::vec((0..CPUS.len(), 0..MEMS.len()), 1..60),
    ) {
        let all = catalog::by_name(if kwok { "kwok" } else { "aws" }).unwrap();
        let mut instance_types: Vec<InstanceType> =
            types.iter().map(|i| all[i.index(all.len())].clone()).collect();
        instance_types.sort_by(|a, b| a.name.cmp(&b.name));
        instance_types.dedup_by(|a, b| a.name == b.name);
        let largest = instance_types
            .iter()
            .map(InstanceType::allocatable)
            .max_by_key(|a| (a.get("cpu"), a.get("memory")))
            .unwrap();
        let pods: Vec<Pod> = pods
            .iter()
            .enumerate()
            .map(|(i, &(c, m))| {
                // Scale a request down until it fits the largest type.
                let fit = |table: &[&'static str], mut k: usize, name: &str| {
                    while k > 0 && quantity(table[k]) > largest.get(name) {
                        k -= 1;
                    }
                    table[k]
                };
                Pod::new(
                    "default",
                    &format!("p{i}"),
                    requests(fit(&CPUS, c, "cpu"), fit(&MEMS, m, "memory"), false),
                )
            })
            .collect();
        prop_assume!(pods.iter().all(|p| largest.fits(&p.requests)));
        let input = Input {
            pods,
            nodepools: vec![NodePool::new("default")],
            instance_types,
            ..Input::default()
        };
        let plan = solve(&input, &Config::default());
        prop_assert!(plan.unschedulable.is_empty(), "{:#?}", plan.unschedulable);
        let violations = validate(&input, &plan);
        prop_assert!(violations.is_empty(), "{}", render_violations(&plan, &violations));
    }
}
