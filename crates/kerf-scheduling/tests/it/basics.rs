//! Small hand-built inputs that pin the core behaviours.

use kerf_model::labels;
use kerf_model::pod::{InclusionPolicy, TopologySpread, WhenUnsatisfiable};
use kerf_model::{InstanceType, LabelSelector, Labels, NodePool, Offering, Pod, Resources};
use kerf_scheduling::{Config, Input, solve};

fn it(name: &str, cpu: &str, mem: &str, price: f64) -> InstanceType {
    let mut labels = Labels::new();
    labels.insert(labels::INSTANCE_TYPE.into(), name.into());
    labels.insert(labels::ARCH.into(), "amd64".into());
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

#[test]
fn packs_pods_onto_the_cheapest_type_that_fits() {
    let input = Input {
        pods: (0..4).map(|i| pod(&format!("p{i}"), "1", "1Gi")).collect(),
        nodepools: vec![NodePool::new("default")],
        instance_types: vec![it("small", "2", "4Gi", 0.1), it("large", "8", "16Gi", 0.4)],
        ..Input::default()
    };
    let plan = solve(&input, &Config::default());
    assert!(plan.unschedulable.is_empty(), "{:?}", plan.unschedulable);
    // First fit grows one claim to a large ($0.40); two smalls hold two pods each for
    // $0.20, so the claim is split.
    let launched: Vec<(&str, usize)> = plan
        .new_claims
        .iter()
        .map(|c| (c.launch.instance_type.as_str(), c.pods.len()))
        .collect();
    assert_eq!(launched, [("small", 2), ("small", 2)]);
}

#[test]
fn a_claim_is_not_split_when_splitting_saves_nothing() {
    // Linear prices: two smalls cost what one large does, so the large stays.
    let input = Input {
        pods: (0..4).map(|i| pod(&format!("p{i}"), "1", "1Gi")).collect(),
        nodepools: vec![NodePool::new("default")],
        instance_types: vec![it("small", "2", "4Gi", 0.1), it("large", "4", "8Gi", 0.2)],
        ..Input::default()
    };
    let plan = solve(&input, &Config::default());
    assert_eq!(plan.new_claims.len(), 1);
    assert_eq!(plan.new_claims[0].launch.instance_type, "large");
}

#[test]
fn zone_spread_pins_claims_to_distinct_zones() {
    let mut pods = Vec::new();
    for i in 0..3 {
        let mut p = pod(&format!("web-{i}"), "1", "1Gi");
        p.labels.insert("app".into(), "web".into());
        let mut sel = Labels::new();
        sel.insert("app".into(), "web".into());
        p.topology_spread.push(TopologySpread {
            max_skew: 1,
            topology_key: labels::ZONE.into(),
            when_unsatisfiable: WhenUnsatisfiable::DoNotSchedule,
            selector: LabelSelector::from_match_labels(&sel),
            min_domains: None,
            node_affinity_policy: InclusionPolicy::Honor,
            node_taints_policy: InclusionPolicy::Ignore,
        });
        pods.push(p);
    }
    let input = Input {
        pods,
        nodepools: vec![NodePool::new("default")],
        instance_types: vec![it("large", "8", "16Gi", 0.4)],
        ..Input::default()
    };
    let plan = solve(&input, &Config::default());
    assert!(plan.unschedulable.is_empty(), "{:?}", plan.unschedulable);
    let mut zones: Vec<_> = plan
        .new_claims
        .iter()
        .map(|c| c.launch.zone.clone())
        .collect();
    zones.sort();
    assert_eq!(zones, ["a", "b", "c"]);
}

#[test]
fn too_big_pod_is_explained() {
    let input = Input {
        pods: vec![pod("huge", "64", "1Gi")],
        nodepools: vec![NodePool::new("default")],
        instance_types: vec![it("large", "8", "16Gi", 0.4)],
        ..Input::default()
    };
    let plan = solve(&input, &Config::default());
    assert_eq!(plan.unschedulable.len(), 1);
    assert_eq!(
        plan.unschedulable[0].reason,
        "nodepool default: needs cpu=64 but the largest compatible instance type, large, has 8 allocatable after daemonset overhead"
    );
}

#[test]
fn daemonset_host_ports_are_reserved_on_new_nodes() {
    use kerf_model::pod::{HostPort, Owner};
    let port = HostPort {
        port: 8080,
        protocol: "TCP".into(),
        host_ip: String::new(),
    };
    let mut ds = pod("node-exporter", "100m", "64Mi");
    ds.owner = Some(Owner {
        kind: "DaemonSet".into(),
        name: "node-exporter".into(),
    });
    ds.host_ports.push(port.clone());
    let mut web = pod("web", "1", "1Gi");
    web.host_ports.push(port);
    let input = Input {
        pods: vec![web],
        nodepools: vec![NodePool::new("default")],
        instance_types: vec![it("large", "8", "16Gi", 0.4)],
        daemonsets: vec![ds],
        ..Input::default()
    };
    let plan = solve(&input, &Config::default());
    assert!(plan.new_claims.is_empty());
    assert_eq!(
        plan.unschedulable[0].reason,
        "nodepool default: host port 8080/TCP is bound by a DaemonSet that would run on the node"
    );
    assert!(kerf_scheduling::validate::validate(&input, &plan).is_empty());
}

/// Regression (found by the property test in CI): narrowing a claim to a zone for a
/// spread constraint re-filtered its instance types without the pod's host ports, so
/// a type whose DaemonSet binds the same port came back and was launched.
#[test]
fn zone_narrowing_keeps_daemonset_host_ports_in_mind() {
    use kerf_model::pod::{HostPort, Owner};
    use kerf_model::requirements::{Requirement, Requirements};
    let port = HostPort {
        port: 8080,
        protocol: "TCP".into(),
        host_ip: String::new(),
    };
    let mut ds = pod("exporter", "100m", "64Mi");
    ds.owner = Some(Owner {
        kind: "DaemonSet".into(),
        name: "exporter".into(),
    });
    ds.host_ports.push(port.clone());
    let mut amd64_only = Requirements::new();
    amd64_only.add(labels::ARCH, Requirement::single("amd64"));
    ds.node_affinity.required.push(amd64_only);
    let mut web = pod("web", "1", "1Gi");
    web.host_ports.push(port);
    web.labels.insert("app".into(), "web".into());
    let mut sel = Labels::new();
    sel.insert("app".into(), "web".into());
    web.topology_spread.push(TopologySpread {
        max_skew: 1,
        topology_key: labels::ZONE.into(),
        when_unsatisfiable: WhenUnsatisfiable::DoNotSchedule,
        selector: LabelSelector::from_match_labels(&sel),
        min_domains: None,
        node_affinity_policy: InclusionPolicy::Honor,
        node_taints_policy: InclusionPolicy::Ignore,
    });
    let mut arm = it("arm-large", "8", "16Gi", 0.5);
    arm.labels.insert(labels::ARCH.into(), "arm64".into());
    let input = Input {
        pods: vec![web],
        nodepools: vec![NodePool::new("default")],
        instance_types: vec![it("amd-large", "8", "16Gi", 0.4), arm],
        daemonsets: vec![ds],
        ..Input::default()
    };
    let plan = solve(&input, &Config::default());
    assert!(plan.unschedulable.is_empty(), "{:?}", plan.unschedulable);
    assert_eq!(plan.new_claims[0].launch.instance_type, "arm-large");
    assert_eq!(plan.new_claims[0].instance_type_options, ["arm-large"]);
    assert!(kerf_scheduling::validate::validate(&input, &plan).is_empty());
}

/// Required hostname anti-affinity against *another* workload's label holds whichever
/// pod comes first: the pod with the term opens a claim, and a pod of the other workload,
/// with no term of its own, arriving later must not join it; nor, the other way round,
/// may the term's owner join the other pod's claim.
#[test]
fn anti_affinity_against_another_workloads_label_holds_both_ways() {
    use kerf_model::pod::{AffinityTerm, NamespaceScope};
    let mut avoid_batch = Labels::new();
    avoid_batch.insert("app".into(), "batch".into());
    let term = AffinityTerm {
        selector: LabelSelector::from_match_labels(&avoid_batch),
        namespaces: NamespaceScope::own("default"),
        topology_key: labels::HOSTNAME.into(),
    };
    // Larger CPU goes first: (web, batch) sizes put the owner first, then last.
    for (web_cpu, batch_cpu) in [("2", "1"), ("1", "2")] {
        let mut web = pod("web", web_cpu, "1Gi");
        web.labels.insert("app".into(), "web".into());
        web.anti_affinity.push(term.clone());
        let mut batch = pod("batch", batch_cpu, "1Gi");
        batch.labels.insert("app".into(), "batch".into());
        let input = Input {
            pods: vec![web, batch],
            nodepools: vec![NodePool::new("default")],
            instance_types: vec![it("large", "8", "16Gi", 0.4)],
            ..Input::default()
        };
        let plan = solve(&input, &Config::default());
        assert!(plan.unschedulable.is_empty(), "{:?}", plan.unschedulable);
        let sizes: Vec<usize> = plan.new_claims.iter().map(|c| c.pods.len()).collect();
        assert_eq!(sizes, [1, 1], "web {web_cpu}, batch {batch_cpu}: {plan:#?}");
        assert!(kerf_scheduling::validate::validate(&input, &plan).is_empty());
    }
}
