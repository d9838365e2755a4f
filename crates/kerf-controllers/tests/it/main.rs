//! The loops on hand-built views, one step at a time: what they do is the actions they
//! return.

use kerf_cloud::{Instance, InstanceState, Offer};
use kerf_controllers::{
    Action, Claim, ClusterView, ConditionType, Config, Controller, Event, PodState, Shown,
};
use kerf_model::nodepool::{Budget, BudgetNodes};
use kerf_model::{Drift, DriftReason, Labels, Node, NodePool, Pod, Resources, labels};

const TYPE: &str = "m6i.large";

fn offer() -> Offer {
    Offer {
        instance_type: TYPE.into(),
        zone: "us-east-1a".into(),
        capacity_type: "on-demand".into(),
    }
}

/// One initialized node of pool `default`, with its claim and instance.
fn view() -> ClusterView {
    let mut pool = NodePool::new("default");
    pool.disruption.budgets = vec![Budget {
        nodes: BudgetNodes::Count(1),
        schedule: None,
        duration: None,
        reasons: Vec::new(),
    }];
    pool.template_hash = "h".into();
    let catalog = kerf_model::catalog::by_name("aws").unwrap();
    let it = catalog.iter().find(|t| t.name == TYPE).unwrap().clone();
    let mut node_labels: Labels = it.labels.clone();
    node_labels.insert(labels::NODEPOOL.into(), "default".into());
    node_labels.insert(labels::ZONE.into(), "us-east-1a".into());
    node_labels.insert(labels::CAPACITY_TYPE.into(), "on-demand".into());
    let node = Node::new("n1", node_labels.clone(), it.allocatable());
    let instance = Instance {
        id: "i-1".into(),
        claim: "c1".into(),
        offer: offer(),
        image_id: "ami-1".into(),
        price: 0.096,
        launched_at: 0,
        state: InstanceState::Running,
        drift: None,
    };
    let claim = Claim {
        name: "c1".into(),
        nodepool: "default".into(),
        labels: node_labels,
        annotations: Labels::new(),
        taints: Vec::new(),
        startup_taints: Vec::new(),
        options: vec![offer()].into(),
        created_at: 0,
        expire_after: None,
        termination_grace_period: None,
        provider_id: Some("i-1".into()),
        launched: Some(offer()),
        image_id: Some("ami-1".into()),
        node_name: Some("n1".into()),
        initialized: true,
        deleting_since: None,
        deletion_reason: None,
        drifted: None,
        consolidatable: None,
    };
    let mut v = ClusterView {
        nodepools: vec![pool],
        instance_types: catalog,
        ..ClusterView::default()
    };
    v.nodes.insert("n1".into(), node);
    v.node_provider_ids.insert("n1".into(), "i-1".into());
    v.instances.insert("i-1".into(), instance);
    v.claims.insert("c1".into(), claim);
    v
}

fn controller() -> Controller {
    Controller::new(Config::default())
}

fn pod(name: &str, node: Option<&str>) -> PodState {
    let mut pod = Pod::new(
        "default",
        name,
        Resources::parse([("cpu", "100m")]).unwrap(),
    );
    pod.node_name = node.map(String::from);
    PodState {
        pod,
        created_at: 0,
        nominated: None,
    }
}

fn deletes(actions: &[Action]) -> Vec<(&str, &str)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::DeleteClaim { claim, reason } => Some((claim.as_str(), reason.kind())),
            _ => None,
        })
        .collect()
}

#[test]
fn an_empty_node_is_deleted_after_the_validation_delay() {
    let v = view();
    let mut c = controller();
    let first = c.step(600_000, &v, &[]);
    assert!(
        deletes(&first).is_empty(),
        "nothing acts before validation: {first:?}"
    );
    let early = c.step(610_000, &v, &[]);
    assert!(deletes(&early).is_empty());
    let later = c.step(615_000, &v, &[]);
    assert_eq!(deletes(&later), vec![("c1", "emptiness")]);
    assert!(
        later
            .iter()
            .any(|a| matches!(a, Action::Taint { node, .. } if node == "n1"))
    );
}

/// A pass that found nothing because `consolidateAfter` had not run out is repeated
/// when it runs out, though the view has not changed: not only at the five-minute
/// idle recheck.
#[test]
fn a_node_kept_for_consolidate_after_is_passed_again_when_it_runs_out() {
    // An empty node created 200 s before the first pass, and a 300 s consolidateAfter:
    // it may go from 700 s on.
    let mut v = view();
    v.nodepools[0].disruption.consolidate_after = Some(std::time::Duration::from_secs(300));
    v.claims.get_mut("c1").unwrap().created_at = 400_000;
    let mut c = controller();
    let mut now = 600_000;
    let mut decided = None;
    while now < 900_000 {
        let actions = c.step(now, &v, &[]);
        if (actions.iter()).any(|a| matches!(a, Action::Taint { node, .. } if node == "n1")) {
            decided = Some(now);
            break;
        }
        let wake = c.next_wake(now, &v);
        assert!(wake > now, "at {now}: wakes at {wake}");
        now = wake;
    }
    // Decided at 700 s, then validated for 15 s.
    assert_eq!(
        decided,
        Some(715_000),
        "the empty node's command was started at"
    );
}

#[test]
fn after_a_delete_the_next_pass_runs_as_soon_as_its_nodes_are_gone() {
    // Two empty nodes and a budget of one node: emptiness takes one per command.
    let mut v = view();
    add_second_node(&mut v);
    let mut c = controller();
    c.step(600_000, &v, &[]);
    let started = c.step(615_000, &v, &[]);
    let first = deletes(&started);
    assert_eq!(first.len(), 1, "{first:?}");
    let (gone, other) = match first[0].0 {
        "c1" => ("c1", "c2"),
        _ => ("c2", "c1"),
    };
    // While its node is in the view it holds the budget: no pass yet.
    assert!(deletes(&c.step(616_000, &v, &[])).is_empty());
    // The node goes: the next pass runs at once (617 s), and its command after its
    // validation (632 s), not after the interval (625 s) and a validation (640 s).
    let node = v.claims[gone].node_name.clone().unwrap();
    let id = v.claims[gone].provider_id.clone().unwrap();
    v.nodes.remove(&node);
    v.node_provider_ids.remove(&node);
    v.instances.remove(&id);
    v.claims.remove(gone);
    v.generation += 1;
    assert!(deletes(&c.step(617_000, &v, &[])).is_empty());
    assert!(deletes(&c.step(631_999, &v, &[])).is_empty());
    assert_eq!(
        deletes(&c.step(632_000, &v, &[])),
        vec![(other, "emptiness")]
    );
}

#[test]
fn a_command_that_no_longer_holds_after_the_delay_is_dropped() {
    let mut v = view();
    let mut c = controller();
    c.step(600_000, &v, &[]);
    // A pod lands on the node while the command waits: it is no longer empty.
    v.insert_pod(pod("p", Some("n1")));
    let later = c.step(615_000, &v, &[]);
    assert!(deletes(&later).is_empty(), "{later:?}");
    assert!(later.iter().any(|a| matches!(
        a,
        Action::Record {
            reason: kerf_controllers::Reason::ConsolidationRejected,
            ..
        }
    )));
}

/// As Karpenter's emptiness validator: the nodes still empty after the delay go, the
/// one that took a pod stays, and the command is not rejected for it.
#[test]
fn an_emptiness_command_goes_on_with_the_nodes_still_empty() {
    let mut v = view();
    v.nodepools[0].disruption.budgets[0].nodes = BudgetNodes::Count(2);
    add_second_node(&mut v);
    let mut c = controller();
    c.step(600_000, &v, &[]);
    v.insert_pod(pod("p", Some("n2")));
    let later = c.step(615_000, &v, &[]);
    assert_eq!(deletes(&later), vec![("c1", "emptiness")], "{later:?}");
    assert!(
        !later.iter().any(|a| matches!(
            a,
            Action::Record {
                reason: kerf_controllers::Reason::ConsolidationRejected,
                ..
            }
        )),
        "{later:?}"
    );
    assert!(
        !later
            .iter()
            .any(|a| matches!(a, Action::Taint { node, .. } if node == "n2")),
        "{later:?}"
    );
}

/// While one command waits out its validation the next pass runs, counting the first
/// command's nodes as leaving, so the two validate together instead of one after the
/// other: in one step, the second due with the first. A millisecond apart, the second
/// was validated after the shell had created the first's replacement, onto which its
/// pods then went (a node not yet initialized: rejected).
#[test]
fn a_second_command_is_decided_while_the_first_validates() {
    // n2 is empty (emptiness); n1 drifted and its pod cannot go to n2 (a taint it does
    // not tolerate), so it needs a replacement. A budget of two nodes.
    let mut v = view();
    v.nodepools[0].disruption.budgets[0].nodes = BudgetNodes::Count(2);
    add_second_node(&mut v);
    let dedicated = kerf_model::Taint::new("dedicated", "x", kerf_model::Effect::NoSchedule);
    v.nodes.get_mut("n2").unwrap().taints.push(dedicated);
    v.insert_pod(big_pod("p1", "n1"));
    ami_drifted(&mut v, "i-1");
    let mut c = controller();
    assert!(deletes(&c.step(600_000, &v, &[])).is_empty());
    // The next pass runs at once, with n2 held for the emptiness command.
    assert!(c.next_wake(600_000, &v) <= 600_001);
    let second = c.step(600_001, &v, &[]);
    assert!(deletes(&second).is_empty(), "{second:?}");
    // Both are waiting; a third pass finds the budget used, and then nothing is due
    // before the first validation.
    assert!(deletes(&c.step(600_002, &v, &[])).is_empty());
    assert_eq!(c.next_wake(600_002, &v), 615_000);
    let drift = c.step(615_000, &v, &[]);
    assert_eq!(deletes(&drift), vec![("c2", "emptiness")]);
    assert!(
        drift
            .iter()
            .any(|a| matches!(a, Action::Taint { node, .. } if node == "n1")),
        "{drift:?}"
    );
    assert!(
        drift.iter().any(|a| matches!(a, Action::CreateClaim(_))),
        "{drift:?}"
    );
}

/// A pod whose `do-not-disrupt` duration runs out on a draining node is evicted then:
/// the controller asks to be woken at that time, not at the next list or change.
#[test]
fn a_draining_node_wakes_when_a_do_not_disrupt_duration_runs_out() {
    let mut v = view();
    let mut protected = pod("p", Some("n1"));
    (protected.pod.annotations).insert(labels::ANNOTATION_DO_NOT_DISRUPT.into(), "1m".into());
    protected.pod.started_at = Some(100);
    v.insert_pod(protected);
    v.claims.get_mut("c1").unwrap().deleting_since = Some(120_000);
    let mut c = controller();
    let held = c.step(130_000, &v, &[]);
    assert!(
        !held.iter().any(|a| matches!(a, Action::Evict { .. })),
        "{held:?}"
    );
    // The provisioner solves for the draining node's pod once the batch window closes;
    // after that, nothing is due before the protection ends.
    c.step(131_000, &v, &[]);
    assert_eq!(c.next_wake(131_000, &v), 160_000);
    let freed = c.step(160_000, &v, &[]);
    assert!(
        freed.iter().any(|a| matches!(a, Action::Evict { .. })),
        "{freed:?}"
    );
}

/// A drain evicts the largest pods first, one size at a time, so their controllers
/// recreate them, and kube-scheduler binds them, in the order consolidation packed them
/// (small pods first fill the replacement, and the large ones then fit nowhere); after
/// `LARGEST_FIRST_MS` whatever is left goes at once, so a pod that does not leave holds
/// the others back no longer than that.
#[test]
fn a_drain_evicts_the_largest_pods_first() {
    let mut v = view();
    let sized = |name: &str, cpu: &str, memory: &str| {
        let mut state = pod(name, Some("n1"));
        state.pod.requests = Resources::parse([("cpu", cpu), ("memory", memory)]).unwrap();
        state
    };
    v.insert_pod(sized("large", "2", "4Gi"));
    v.insert_pod(sized("mid-a", "1", "2Gi"));
    v.insert_pod(sized("mid-b", "1", "2Gi"));
    v.insert_pod(sized("mid-c", "1", "1Gi"));
    v.insert_pod(sized("small", "250m", "512Mi"));
    v.claims.get_mut("c1").unwrap().deleting_since = Some(120_000);
    let evicted = |actions: &[Action]| {
        let mut pods: Vec<String> = (actions.iter())
            .filter_map(|a| match a {
                Action::Evict { pod } => Some(pod.name.clone()),
                _ => None,
            })
            .collect();
        pods.sort();
        pods
    };
    let mut c = controller();
    assert_eq!(evicted(&c.step(120_000, &v, &[])), ["large"]);
    // Asked again until it goes; then the next size.
    assert_eq!(evicted(&c.step(120_500, &v, &[])), ["large"]);
    v.remove_pod(&kerf_model::pod::PodKey {
        namespace: "default".into(),
        name: "large".into(),
    });
    assert_eq!(evicted(&c.step(121_000, &v, &[])), ["mid-a", "mid-b"]);
    // mid-a and mid-b do not leave (say a PDB refuses them): at the end of the
    // largest-first stretch the rest goes too, and the controller wakes for it.
    assert!(c.next_wake(121_000, &v) <= 125_000);
    assert_eq!(
        evicted(&c.step(125_000, &v, &[])),
        ["mid-a", "mid-b", "mid-c", "small"]
    );
}

/// A replace command's drain evicts the pods its pass placed on the replacement first,
/// and holds back those it placed on nodes that stay until the first have left and
/// nothing waits to be scheduled: kube-scheduler binds each pod to the emptiest node,
/// the new replacement, so pods meant for the staying nodes' room, evicted alongside,
/// took the replacement's. A pod that does not leave holds them back for
/// `LARGEST_FIRST_MS` at most.
#[test]
fn a_replace_drain_evicts_the_replacements_pods_before_the_rest() {
    let run = |leaves: bool| {
        // n1 drifted. Its 1500m pod fits on n2 (300m used) and goes there, as the
        // largest; its 1000m pod then fits nowhere and goes to the replacement.
        let mut v = view();
        add_second_node(&mut v);
        ami_drifted(&mut v, "i-1");
        let sized = |name: &str, node: &str, cpu: &str| {
            let mut state = pod(name, Some(node));
            state.pod.requests = Resources::parse([("cpu", cpu)]).unwrap();
            state
        };
        v.insert_pod(sized("to-n2", "n1", "1500m"));
        v.insert_pod(sized("to-new", "n1", "1"));
        v.insert_pod(sized("p2", "n2", "300m"));
        let mut c = controller();
        c.step(600_000, &v, &[]);
        let started = c.step(615_000, &v, &[]);
        let mut replacement = (started.iter())
            .find_map(|a| match a {
                Action::CreateClaim(claim) => Some(claim.as_ref().clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("a replacement for n1: {started:?}"));
        v.nodes.get_mut("n1").unwrap().taints.push(disrupted());
        (replacement.provider_id, replacement.initialized) = (Some("i-9".into()), true);
        let mut instance = v.instances["i-1"].clone();
        (instance.id, instance.claim) = ("i-9".into(), replacement.name.clone());
        v.instances.insert("i-9".into(), instance);
        let new_node = replacement.name.clone();
        v.claims.insert(new_node.clone(), replacement);
        v.generation += 1;
        assert_eq!(deletes(&c.step(616_000, &v, &[])), vec![("c1", "drift")]);
        v.claims.get_mut("c1").unwrap().deleting_since = Some(616_000);
        v.generation += 1;

        let evicted = |actions: &[Action]| -> Vec<String> {
            (actions.iter())
                .filter_map(|a| match a {
                    Action::Evict { pod } => Some(pod.name.clone()),
                    _ => None,
                })
                .collect()
        };
        let mut seen = vec![evicted(&c.step(616_000, &v, &[]))];
        if leaves {
            // It goes; its ReplicaSet's new pod waits to be scheduled, then binds.
            v.remove_pod(&kerf_model::pod::PodKey {
                namespace: "default".into(),
                name: "to-new".into(),
            });
            v.insert_pod(pod("to-new-2", None));
            seen.push(evicted(&c.step(616_500, &v, &[])));
            v.remove_pod(&kerf_model::pod::PodKey {
                namespace: "default".into(),
                name: "to-new-2".into(),
            });
            v.insert_pod(pod("to-new-2", Some(&new_node)));
            seen.push(evicted(&c.step(617_000, &v, &[])));
        } else {
            seen.push(evicted(&c.step(620_999, &v, &[])));
            assert!(c.next_wake(620_999, &v) <= 621_000);
            seen.push(evicted(&c.step(621_000, &v, &[])));
        }
        seen
    };
    assert_eq!(run(true), [vec!["to-new"], vec![], vec!["to-n2"]]);
    assert_eq!(
        run(false),
        [vec!["to-new"], vec!["to-new"], vec!["to-n2", "to-new"]]
    );
}

/// An evicted pod stays in the view, terminating, until it is gone. The drain waits for
/// it without evicting it again, and the provisioner launches nothing for it: its
/// ReplicaSet's new pod is pending already and is solved on its own (counted twice, it
/// launched a node that the next consolidation pass removed again).
#[test]
fn a_terminating_pod_on_a_draining_node_is_not_evicted_again_or_provisioned_for() {
    let run = |terminating: bool| {
        let mut v = view();
        let mut state = big_pod("evicted", "n1");
        state.pod.terminating = terminating;
        v.insert_pod(state);
        v.claims.get_mut("c1").unwrap().deleting_since = Some(120_000);
        let mut c = controller();
        let mut actions = Vec::new();
        for t in (120_000..=132_000).step_by(500) {
            actions.extend(c.step(t, &v, &[]));
        }
        let evicts = (actions.iter())
            .filter(|a| matches!(a, Action::Evict { .. }))
            .count();
        let creates = (actions.iter())
            .filter(|a| matches!(a, Action::CreateClaim(_)))
            .count();
        let terminates = (actions.iter())
            .filter(|a| matches!(a, Action::TerminateInstance { .. }))
            .count();
        (evicts, creates, terminates)
    };
    // Running, it is evicted (again each step until it goes) and a claim is made for it;
    // terminating, neither. Either way the instance waits until the pod is gone.
    let (evicts, creates, terminates) = run(false);
    assert!(
        evicts > 0 && creates == 1 && terminates == 0,
        "{evicts} {creates} {terminates}"
    );
    assert_eq!(run(true), (0, 0, 0));
}

/// Commands rejected at validation leave the budget they held: the next pass comes
/// one interval later, not after the idle recheck that a pass which found nothing while
/// they waited would otherwise call for (the view has not changed since).
#[test]
fn after_waiting_commands_are_rejected_the_next_pass_comes_in_one_interval() {
    // n2 and n3 are empty; n1 drifted and its pod can go to neither (a taint it does not
    // tolerate). A budget of two nodes: emptiness takes n2 and n3, and drift must wait.
    let mut v = view();
    v.nodepools[0].disruption.budgets[0].nodes = BudgetNodes::Count(2);
    add_second_node(&mut v);
    let dedicated = kerf_model::Taint::new("dedicated", "x", kerf_model::Effect::NoSchedule);
    v.nodes.get_mut("n2").unwrap().taints.push(dedicated);
    add_third_node(&mut v);
    v.insert_pod(big_pod("p1", "n1"));
    ami_drifted(&mut v, "i-1");
    let mut c = controller();
    c.step(600_000, &v, &[]);
    // The next pass finds the budget held by the emptiness command.
    c.step(600_001, &v, &[]);
    // n2 and n3 take pods while it waits: it is rejected, and holds no budget now.
    v.insert_pod(pod("p2", Some("n2")));
    v.insert_pod(pod("p3", Some("n3")));
    v.generation += 1;
    let rejected = c.step(615_000, &v, &[]);
    assert!(deletes(&rejected).is_empty(), "{rejected:?}");
    // One interval later a pass decides n1's drift, which starts after its validation.
    c.step(625_000, &v, &[]);
    let drift = c.step(640_000, &v, &[]);
    assert!(
        drift
            .iter()
            .any(|a| matches!(a, Action::Taint { node, .. } if node == "n1")),
        "{drift:?}"
    );
}

/// A waiting command validates on the view it was decided on: the commands decided after
/// it assumed it would go, so their nodes are not leaving for its validation.
#[test]
fn a_command_validates_without_the_commands_decided_after_it() {
    // n1 and n2 drifted, a big pod each; n3 has room for one big pod. Drift decides n1
    // first (its pod to n3), then n2 with n1 leaving (its pod has nowhere to go but a
    // replacement). A budget of two nodes.
    let mut v = view();
    v.nodepools[0].disruption.budgets[0].nodes = BudgetNodes::Count(2);
    ami_drifted(&mut v, "i-1");
    add_second_node(&mut v);
    add_third_node(&mut v);
    v.insert_pod(big_pod("p1", "n1"));
    v.insert_pod(big_pod("p2", "n2"));
    v.insert_pod(pod("p3", Some("n3")));
    let mut c = controller();
    assert!(deletes(&c.step(600_000, &v, &[])).is_empty());
    let second = c.step(600_001, &v, &[]);
    assert!(deletes(&second).is_empty(), "{second:?}");
    // Nothing changed: n1's command holds as decided. Had n2 counted as leaving for it,
    // n2's pod would have taken n3's room and n1's command been rejected.
    let first = c.step(615_000, &v, &[]);
    assert_eq!(deletes(&first), vec![("c1", "drift")], "{first:?}");
}

#[test]
fn an_instance_without_a_claim_is_terminated_after_the_grace() {
    let mut v = view();
    v.claims.clear();
    v.nodes.clear();
    v.node_provider_ids.clear();
    let mut c = controller();
    assert!(
        !c.step(10_000, &v, &[])
            .contains(&Action::TerminateInstance {
                instance_id: "i-1".into()
            })
    );
    assert!(
        c.step(40_000, &v, &[])
            .contains(&Action::TerminateInstance {
                instance_id: "i-1".into()
            })
    );
}

#[test]
fn a_claim_whose_instance_vanished_is_deleted() {
    let mut v = view();
    v.instances.clear();
    let actions = controller().step(1_000, &v, &[]);
    assert_eq!(deletes(&actions), vec![("c1", "instance-terminated")]);
}

#[test]
fn an_instance_launched_before_a_restart_is_adopted_not_launched_again() {
    let mut v = view();
    let claim = v.claims.get_mut("c1").unwrap();
    claim.provider_id = None;
    claim.launched = None;
    claim.node_name = None;
    claim.initialized = false;
    let actions = controller().step(1_000, &v, &[]);
    assert!(actions.contains(&Action::MarkLaunched {
        claim: "c1".into(),
        instance_id: "i-1".into()
    }));
    assert!(!actions.iter().any(|a| matches!(a, Action::Launch { .. })));
}

/// `karpenter.sh/disrupted:NoSchedule`, as a disruption command taints its nodes.
fn disrupted() -> kerf_model::Taint {
    kerf_model::Taint::new(labels::TAINT_DISRUPTED, "", kerf_model::Effect::NoSchedule)
}

#[test]
fn a_restarted_controller_untaints_nodes_a_lost_command_tainted() {
    let mut v = view();
    v.nodes.get_mut("n1").unwrap().taints.push(disrupted());
    let actions = controller().step(1_000, &v, &[]);
    assert!(actions.contains(&Action::Untaint {
        node: "n1".into(),
        key: labels::TAINT_DISRUPTED.into()
    }));
}

/// An untaint that failed (a 409, the API server away) is not lost: a running
/// controller untaints a disrupted node in no command of its own on a later step.
#[test]
fn a_running_controller_untaints_a_disrupted_node_in_no_command() {
    let mut v = view();
    let mut c = controller();
    let quiet = c.step(1_000, &v, &[]);
    assert!(
        !quiet.iter().any(|a| matches!(a, Action::Untaint { .. })),
        "{quiet:?}"
    );
    v.nodes.get_mut("n1").unwrap().taints.push(disrupted());
    v.generation += 1;
    let actions = c.step(2_000, &v, &[]);
    assert!(
        actions.contains(&Action::Untaint {
            node: "n1".into(),
            key: labels::TAINT_DISRUPTED.into()
        }),
        "{actions:?}"
    );
    // A node whose claim is deleting is termination's to keep tainted.
    v.claims.get_mut("c1").unwrap().deleting_since = Some(2_500);
    v.generation += 1;
    let actions = c.step(3_000, &v, &[]);
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Untaint { .. })),
        "{actions:?}"
    );
}

#[test]
fn a_spot_interruption_deletes_the_claim_and_skips_the_offering() {
    let mut v = view();
    let mut c = controller();
    let actions = c.step(
        1_000,
        &v,
        &[Event::SpotInterruption {
            instance_id: "i-1".into(),
        }],
    );
    assert_eq!(deletes(&actions), vec![("c1", "interruption")]);
    // A new claim with only that offering finds nothing to launch for three minutes.
    let mut claim = v.claims["c1"].clone();
    claim.name = "c2".into();
    claim.provider_id = None;
    claim.launched = None;
    claim.node_name = None;
    claim.initialized = false;
    v.claims.insert("c2".into(), claim);
    // A shell bumps the generation on every change; the loops may skip an unchanged view.
    v.generation += 1;
    let actions = c.step(2_000, &v, &[]);
    assert!(
        deletes(&actions).contains(&("c2", "insufficient-capacity")),
        "{actions:?}"
    );
}

#[test]
fn a_batch_closes_after_one_idle_second_or_ten_seconds_in_all() {
    let mut v = view();
    let mut c = controller();
    let pending = |v: &mut ClusterView, name: &str| {
        v.insert_pod(pod(name, None));
        Event::PodPending(kerf_model::pod::PodKey {
            namespace: "default".into(),
            name: name.into(),
        })
    };
    let creates = |a: &[Action]| {
        a.iter()
            .any(|a| matches!(a, Action::Nominate { .. } | Action::CreateClaim(_)))
    };
    // Pods keep arriving every half second: the batch closes at ten seconds.
    let mut closed_at = None;
    for i in 0..30 {
        let now = 100_000 + i * 500;
        let e = pending(&mut v, &format!("p{i}"));
        if creates(&c.step(now, &v, &[e])) {
            closed_at = Some(now);
            break;
        }
    }
    assert_eq!(closed_at, Some(110_000));
}

/// What the provisioner does for one pending pod once its batch closes.
fn provision_one(v: &mut ClusterView) -> Vec<Action> {
    let mut c = controller();
    v.insert_pod(pod("p", None));
    let e = Event::PodPending(kerf_model::pod::PodKey {
        namespace: "default".into(),
        name: "p".into(),
    });
    let mut actions = c.step(100_000, v, &[e]);
    for i in 1..=12 {
        if actions
            .iter()
            .any(|a| matches!(a, Action::Nominate { .. } | Action::CreateClaim(_)))
        {
            break;
        }
        actions = c.step(100_000 + i * 1_000, v, &[]);
    }
    actions
}

#[test]
fn a_registered_node_still_initializing_takes_pods_past_the_taints_it_will_shed() {
    use kerf_model::{Effect, Taint};
    let agent = Taint::new("example.com/agent-not-ready", "", Effect::NoExecute);
    let mut v = view();
    let claim = v.claims.get_mut("c1").unwrap();
    claim.initialized = false;
    claim.startup_taints = vec![agent.clone()];
    let node = v.nodes.get_mut("n1").unwrap();
    node.ready = false;
    node.taints = vec![
        Taint::new("node.kubernetes.io/not-ready", "", Effect::NoSchedule),
        agent,
    ];
    let nominated = |actions: &[Action]| {
        actions
            .iter()
            .any(|a| matches!(a, Action::Nominate { claim, .. } if claim == "c1"))
    };
    let creates = |actions: &[Action]| actions.iter().any(|a| matches!(a, Action::CreateClaim(_)));
    let actions = provision_one(&mut v.clone());
    assert!(nominated(&actions) && !creates(&actions), "{actions:?}");

    // A taint the node is not expected to shed still keeps the pod off it.
    v.nodes.get_mut("n1").unwrap().taints.push(Taint::new(
        "example.com/maintenance",
        "",
        Effect::NoSchedule,
    ));
    let actions = provision_one(&mut v);
    assert!(!nominated(&actions) && creates(&actions), "{actions:?}");
}

#[test]
fn a_ready_node_still_tainted_not_ready_is_not_initialized_and_keeps_its_pods() {
    // kube-controller-manager removes `node.kubernetes.io/not-ready:NoSchedule` some time
    // after the node turns Ready; until then the claim stays in flight, and the pod
    // nominated to it waits for it rather than getting a claim of its own.
    use kerf_model::{Effect, Taint};
    let mut v = view();
    v.claims.get_mut("c1").unwrap().initialized = false;
    let not_ready = Taint::new("node.kubernetes.io/not-ready", "", Effect::NoSchedule);
    v.nodes.get_mut("n1").unwrap().taints = vec![not_ready];
    v.insert_pod(pod("p", None));
    let run = |v: &ClusterView| {
        let mut c = controller();
        let e = Event::PodPending(kerf_model::pod::PodKey {
            namespace: "default".into(),
            name: "p".into(),
        });
        let mut all = c.step(100_000, v, &[e]);
        for i in 1..=12 {
            all.extend(c.step(100_000 + i * 1_000, v, &[]));
        }
        all
    };
    let initializes = |actions: &[Action]| {
        actions
            .iter()
            .any(|a| matches!(a, Action::Initialize { claim } if claim == "c1"))
    };
    let creates = |actions: &[Action]| actions.iter().any(|a| matches!(a, Action::CreateClaim(_)));
    let actions = run(&v);
    assert!(!initializes(&actions), "{actions:?}");
    assert!(!creates(&actions), "the pod waits for c1: {actions:?}");

    v.nodes.get_mut("n1").unwrap().taints.clear();
    assert!(initializes(&run(&v)));
}

fn recorded(actions: &[Action], reason: kerf_controllers::Reason) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Record {
                reason: r,
                about,
                message,
            } if *r == reason => Some(format!("{about}: {message}")),
            _ => None,
        })
        .collect()
}

#[test]
fn a_node_a_pdb_holds_is_reported_blocked_once_per_two_minutes() {
    use kerf_controllers::Reason::DisruptionBlocked;
    let mut v = view();
    v.insert_pod(pod("web-1", Some("n1")));
    v.pdbs.push(kerf_model::Pdb {
        namespace: "default".into(),
        name: "web".into(),
        selector: kerf_model::LabelSelector::everything(),
        min_available: None,
        max_unavailable: Some(kerf_model::IntOrPercent::Int(0)),
        disruptions_allowed: None,
    });
    let mut c = controller();
    let first = c.step(600_000, &v, &[]);
    let told = [
        "node/n1: PDB default/web allows 0 disruptions (pod default/web-1)",
        "nodeclaim/c1: PDB default/web allows 0 disruptions (pod default/web-1)",
    ];
    assert_eq!(recorded(&first, DisruptionBlocked), told);
    // The next passes (the view changed, so they run) do not repeat it...
    v.generation += 1;
    let again = c.step(610_000, &v, &[]);
    assert!(recorded(&again, DisruptionBlocked).is_empty(), "{again:?}");
    // ...until Karpenter's two-minute dedupe window has passed.
    v.generation += 1;
    let later = c.step(720_000, &v, &[]);
    assert_eq!(recorded(&later, DisruptionBlocked), told);
}

#[test]
fn a_do_not_disrupt_pod_is_the_users_choice_and_not_reported() {
    let mut v = view();
    let mut p = pod("batch-1", Some("n1"));
    p.pod
        .annotations
        .insert(labels::ANNOTATION_DO_NOT_DISRUPT.into(), "true".into());
    v.insert_pod(p);
    let mut c = controller();
    let out = c.step(600_000, &v, &[]);
    for reason in [
        kerf_controllers::Reason::DisruptionBlocked,
        kerf_controllers::Reason::Unconsolidatable,
    ] {
        assert!(recorded(&out, reason).is_empty(), "{out:?}");
    }
}

#[test]
fn a_node_nothing_cheaper_can_replace_is_reported_unconsolidatable() {
    use kerf_controllers::Reason::Unconsolidatable;
    let mut v = view();
    // Only the node's own type may be launched: no replacement is cheaper.
    let mut reqs = kerf_model::Requirements::new();
    reqs.add(labels::INSTANCE_TYPE, kerf_model::Requirement::single(TYPE));
    v.nodepools[0].requirements = reqs;
    v.insert_pod(pod("web-1", Some("n1")));
    let mut c = controller();
    let out = c.step(600_000, &v, &[]);
    let told = recorded(&out, Unconsolidatable);
    assert_eq!(told.len(), 2, "{out:?}");
    assert!(told[0].starts_with("node/n1: "), "{told:?}");
    assert!(told[1].starts_with("nodeclaim/c1: "), "{told:?}");
    assert!(deletes(&out).is_empty());
    // Fifteen minutes of dedupe (Karpenter's for this reason).
    v.generation += 1;
    assert!(recorded(&c.step(1_000_000, &v, &[]), Unconsolidatable).is_empty());
    v.generation += 1;
    assert_eq!(
        recorded(&c.step(1_500_000, &v, &[]), Unconsolidatable).len(),
        2
    );
}

#[test]
fn a_nodepool_whose_requirements_match_no_instance_type_says_so() {
    use kerf_controllers::Reason::NoCompatibleInstanceTypes;
    let mut v = view();
    let mut impossible = NodePool::new("impossible");
    let mut reqs = kerf_model::Requirements::new();
    reqs.add(
        labels::INSTANCE_TYPE,
        kerf_model::Requirement::single("m9z.nonexistent"),
    );
    impossible.requirements = reqs;
    v.nodepools.push(impossible);
    v.insert_pod(pod("web-1", None));
    v.pending.insert(v.pods.keys().next().unwrap().clone());
    let mut c = controller();
    let mut out = Vec::new();
    // The batch closes after a second of quiet.
    for t in [0, 1_000, 2_000] {
        out.extend(c.step(t, &v, &[]));
    }
    assert_eq!(
        recorded(&out, NoCompatibleInstanceTypes),
        vec![
            "nodepool/impossible: NodePool requirements filtered out all compatible available instance types"
        ],
        "{out:?}"
    );
}

#[test]
fn a_nodepool_whose_budget_blocks_a_reason_says_so_once_a_minute() {
    use kerf_controllers::Reason::DisruptionBlocked;
    let mut v = view();
    v.nodepools[0].disruption.budgets = vec![
        Budget {
            nodes: BudgetNodes::Count(0),
            schedule: None,
            duration: None,
            reasons: vec!["Underutilized".into()],
        },
        Budget {
            nodes: BudgetNodes::Count(1),
            schedule: None,
            duration: None,
            reasons: Vec::new(),
        },
    ];
    v.insert_pod(pod("web-1", Some("n1")));
    let mut c = controller();
    let pool_events = |out: &[Action]| -> Vec<String> {
        recorded(out, DisruptionBlocked)
            .into_iter()
            .filter(|m| m.starts_with("nodepool/"))
            .collect()
    };
    let told = vec![
        "nodepool/default: No allowed disruptions for disruption reason Underutilized due to blocking budget",
    ];
    assert_eq!(pool_events(&c.step(600_000, &v, &[])), told);
    v.generation += 1;
    assert!(pool_events(&c.step(630_000, &v, &[])).is_empty());
    v.generation += 1;
    assert_eq!(pool_events(&c.step(660_000, &v, &[])), told);
}

#[test]
fn an_instance_the_cloud_finds_drifted_drifts_its_claim() {
    let mut v = view();
    // No emptiness (consolidateAfter: Never): only drift may take this empty node.
    v.nodepools[0].disruption.consolidate_after = None;
    let mut c = controller();
    c.step(600_000, &v, &[]);
    assert!(deletes(&c.step(615_000, &v, &[])).is_empty());

    v.instances.get_mut("i-1").unwrap().drift = Some(Drift::new(
        DriftReason::SecurityGroupDrift,
        "security groups [sg-1] are no longer EC2NodeClass default's [sg-2]",
    ));
    v.generation += 1;
    let mut c = controller();
    c.step(600_000, &v, &[]);
    assert_eq!(deletes(&c.step(615_000, &v, &[])), vec![("c1", "drift")]);
}

/// The condition writes among `actions`.
fn condition_writes(actions: &[Action]) -> Vec<(ConditionType, Option<Shown>)> {
    (actions.iter())
        .filter_map(|a| match a {
            Action::SetCondition {
                claim,
                condition,
                to,
            } if claim == "c1" => Some((*condition, to.clone())),
            _ => None,
        })
        .collect()
}

/// What a fresh controller's first pass writes on `v` (a fresh one: a command waiting
/// for validation holds the next full pass back).
fn first_pass_writes(v: &ClusterView) -> Vec<(ConditionType, Option<Shown>)> {
    condition_writes(&controller().step(600_000, v, &[]))
}

/// Shows on claim `c1` what the writes ask, as a shell would once they are done.
fn show(v: &mut ClusterView, writes: Vec<(ConditionType, Option<Shown>)>) {
    let c1 = v.claims.get_mut("c1").unwrap();
    for (condition, to) in writes {
        match condition {
            ConditionType::Drifted => c1.drifted = to,
            ConditionType::Consolidatable => c1.consolidatable = to,
        }
    }
    v.generation += 1;
}

#[test]
fn drifted_is_written_with_karpenters_reason_once_and_removed_when_it_no_longer_holds() {
    let mut v = view();
    v.nodepools[0].disruption.consolidate_after = None;
    assert_eq!(
        first_pass_writes(&v),
        vec![],
        "nothing to say on a fresh claim"
    );

    let why = "security groups [sg-1] are no longer EC2NodeClass default's [sg-2]";
    v.instances.get_mut("i-1").unwrap().drift =
        Some(Drift::new(DriftReason::SecurityGroupDrift, why));
    v.generation += 1;
    let writes = first_pass_writes(&v);
    assert_eq!(
        writes,
        vec![(
            ConditionType::Drifted,
            Some(Shown::true_("SecurityGroupDrift", why))
        )]
    );
    show(&mut v, writes);
    assert_eq!(first_pass_writes(&v), vec![], "shown already: no write");

    // A claim not launched is not drifted (Karpenter clears the condition), even when
    // its NodePool's template has changed since it was made.
    let mut unlaunched = v.clone();
    let c1 = unlaunched.claims.get_mut("c1").unwrap();
    c1.provider_id = None;
    c1.annotations.extend([
        (labels::ANNOTATION_NODEPOOL_HASH.into(), "old".into()),
        (
            labels::ANNOTATION_NODEPOOL_HASH_VERSION.into(),
            labels::NODEPOOL_HASH_VERSION.into(),
        ),
    ]);
    let mut launched = unlaunched.clone();
    launched.claims.get_mut("c1").unwrap().provider_id = Some("i-1".into());
    let writes = first_pass_writes(&launched);
    assert_eq!(writes.len(), 1);
    assert_eq!(
        writes[0].1.as_ref().map(|s| s.reason.as_str()),
        Some("NodePoolDrifted"),
        "the template hash comes first"
    );
    assert_eq!(
        first_pass_writes(&unlaunched),
        vec![(ConditionType::Drifted, None)]
    );
    // Nor is a claim being deleted written at all.
    let mut deleting = unlaunched;
    deleting.claims.get_mut("c1").unwrap().deleting_since = Some(1);
    assert_eq!(first_pass_writes(&deleting), vec![]);

    v.instances.get_mut("i-1").unwrap().drift = None;
    v.generation += 1;
    assert_eq!(
        first_pass_writes(&v),
        vec![(ConditionType::Drifted, None)],
        "removed, not written False"
    );
}

#[test]
fn consolidatable_is_written_once_consolidate_after_has_run_and_never_under_never() {
    let mut v = view();
    // consolidateAfter: 0s, and the node has been up for ten minutes.
    let writes = first_pass_writes(&v);
    assert_eq!(
        writes,
        vec![(
            ConditionType::Consolidatable,
            Some(Shown::true_("Consolidatable", ""))
        )]
    );
    show(&mut v, writes);
    assert_eq!(first_pass_writes(&v), vec![], "shown already: no write");

    // A pod bound a minute ago restarts a 5-minute consolidateAfter.
    v.nodepools[0].disruption.consolidate_after = Some(std::time::Duration::from_secs(300));
    let mut p = pod("p1", Some("n1"));
    p.pod.bound_at = Some(540);
    v.insert_pod(p);
    assert_eq!(
        first_pass_writes(&v),
        vec![(ConditionType::Consolidatable, None)]
    );
    v.nodepools[0].disruption.consolidate_after = None;
    v.generation += 1;
    assert_eq!(
        first_pass_writes(&v),
        vec![(ConditionType::Consolidatable, None)]
    );
}

/// A second node like `n1`: `n2`, its claim `c2` and instance `i-2`.
fn add_second_node(v: &mut ClusterView) {
    let mut node = v.nodes["n1"].clone();
    node.name = "n2".into();
    v.nodes.insert("n2".into(), node);
    v.node_provider_ids.insert("n2".into(), "i-2".into());
    let mut instance = v.instances["i-1"].clone();
    (instance.id, instance.claim) = ("i-2".into(), "c2".into());
    v.instances.insert("i-2".into(), instance);
    let mut claim = v.claims["c1"].clone();
    claim.name = "c2".into();
    claim.provider_id = Some("i-2".into());
    claim.node_name = Some("n2".into());
    v.claims.insert("c2".into(), claim);
}

/// A third node, `n3`, like `n2` (its taints included) but not drifted.
fn add_third_node(v: &mut ClusterView) {
    let mut node = v.nodes["n2"].clone();
    node.name = "n3".into();
    v.nodes.insert("n3".into(), node);
    v.node_provider_ids.insert("n3".into(), "i-3".into());
    let mut instance = v.instances["i-2"].clone();
    (instance.id, instance.claim, instance.drift) = ("i-3".into(), "c3".into(), None);
    v.instances.insert("i-3".into(), instance);
    let mut claim = v.claims["c2"].clone();
    (claim.name, claim.provider_id, claim.node_name) =
        ("c3".into(), Some("i-3".into()), Some("n3".into()));
    v.claims.insert("c3".into(), claim);
}

/// The instance's image is no longer selected.
fn ami_drifted(v: &mut ClusterView, instance: &str) {
    v.instances.get_mut(instance).unwrap().drift = Some(Drift::new(
        DriftReason::AmiDrift,
        "image ami-1 is no longer selected",
    ));
}

fn big_pod(name: &str, node: &str) -> PodState {
    let mut state = pod(name, Some(node));
    state.pod.requests = Resources::parse([("cpu", "1500m")]).unwrap();
    state
}

#[test]
fn a_second_command_starts_while_the_first_waits_for_its_replacement() {
    // n1 drifted; its pod may not go to n2 (a taint it does not tolerate), so it needs
    // a replacement. As the shell applies the step that starts it: n1 tainted, the
    // replacement created but not up yet.
    let (mut v, mut c, replacement, started) = drift_started(2);
    assert!(deletes(&started).is_empty(), "{started:?}");
    // n2's pod goes away, leaving n2 empty.
    v.remove_pod(&kerf_model::pod::PodKey {
        namespace: "default".into(),
        name: "p2".into(),
    });
    v.generation += 1;

    // The next pass does not wait for the first command's replacement to come up: n1
    // stays in the view, so it runs one interval (10 s) after the first command
    // started, not at once. It counts that replacement as where n1's pod goes: n2 is
    // empty, and deleted after its validation.
    let mut deleted = Vec::new();
    for t in [615_001, 624_999] {
        let actions = c.step(t, &v, &[]);
        assert!(
            deletes(&actions).is_empty(),
            "no pass before the interval: {actions:?}"
        );
    }
    for t in [625_000, 640_000] {
        let actions = c.step(t, &v, &[]);
        deleted
            .extend((deletes(&actions).into_iter()).map(|(c, r)| (c.to_string(), r.to_string())));
    }
    assert_eq!(deleted, vec![("c2".to_string(), "emptiness".to_string())]);

    // The replacement comes up: the first command finishes.
    let up = v.claims.get_mut(&replacement.name).unwrap();
    (up.provider_id, up.initialized) = (Some("i-9".into()), true);
    let mut instance = v.instances["i-1"].clone();
    (instance.id, instance.claim) = ("i-9".into(), replacement.name.clone());
    v.instances.insert("i-9".into(), instance);
    v.generation += 1;
    assert_eq!(deletes(&c.step(641_000, &v, &[])), vec![("c1", "drift")]);
}

/// Two commands that validate in one step each launch their own replacement. Each used
/// to name its claims from 1 again, so both asked for `default-<now>-1`; the shell took
/// the second create's 409 for its own answer lost, and the second command counted the
/// first's replacement as its own and drained its node with nowhere for its pods to go.
#[test]
fn commands_started_in_one_step_name_their_replacements_apart() {
    // n1 and n2 drifted, each full (neither's pod fits the other), a budget of two.
    let mut v = view();
    v.nodepools[0].disruption.budgets[0].nodes = BudgetNodes::Count(2);
    add_second_node(&mut v);
    v.insert_pod(big_pod("p1", "n1"));
    v.insert_pod(big_pod("p2", "n2"));
    ami_drifted(&mut v, "i-1");
    ami_drifted(&mut v, "i-2");
    let mut c = controller();
    c.step(600_000, &v, &[]);
    c.step(600_001, &v, &[]);
    let started = c.step(615_001, &v, &[]);
    let mut names: Vec<&str> = (started.iter())
        .filter_map(|a| match a {
            Action::CreateClaim(claim) => Some(claim.name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(names.len(), 2, "two replacements: {names:?}");
    names.dedup();
    assert_eq!(names.len(), 2, "one name for both replacements: {names:?}");
}

/// n1 drifted and needing a replacement (its pod may not go to n2), the pool's budget
/// `budget` nodes: the controller that started the command, the replacement it created,
/// the actions of the step that started it, and the view once the shell has applied them
/// (n1 tainted, the replacement created and not up yet).
fn drift_started(budget: u32) -> (ClusterView, Controller, Claim, Vec<Action>) {
    let mut v = view();
    v.nodepools[0].disruption.budgets[0].nodes = BudgetNodes::Count(budget);
    add_second_node(&mut v);
    let dedicated = kerf_model::Taint::new("dedicated", "x", kerf_model::Effect::NoSchedule);
    v.nodes.get_mut("n2").unwrap().taints.push(dedicated);
    v.insert_pod(big_pod("p1", "n1"));
    v.insert_pod(big_pod("p2", "n2"));
    ami_drifted(&mut v, "i-1");
    let mut c = controller();
    c.step(600_000, &v, &[]);
    let started = c.step(615_000, &v, &[]);
    let replacement = started
        .iter()
        .find_map(|a| match a {
            Action::CreateClaim(claim) => Some(claim.as_ref().clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("a replacement for n1: {started:?}"));
    v.nodes.get_mut("n1").unwrap().taints.push(disrupted());
    let mut waiting = replacement.clone();
    (waiting.provider_id, waiting.node_name, waiting.initialized) = (None, None, false);
    v.claims.insert(waiting.name.clone(), waiting);
    v.generation += 1;
    (v, c, replacement, started)
}

#[test]
fn a_restarted_controller_resumes_a_command_its_replacement_names() {
    let (mut v, _, replacement, _) = drift_started(1);
    assert_eq!(
        replacement
            .annotations
            .get(labels::ANNOTATION_REPLACES)
            .map(String::as_str),
        Some("drift/1: c1"),
        "the replacement says what it replaces"
    );
    // Killed here: a new controller finds n1 tainted and its replacement launching. It
    // keeps n1 tainted, launches nothing more, and deletes nothing yet.
    let mut restarted = controller();
    let first = restarted.step(616_000, &v, &[]);
    assert!(
        !first.iter().any(|a| matches!(a, Action::Untaint { .. })),
        "{first:?}"
    );
    for t in [616_000, 626_000, 641_000, 656_000] {
        let actions = if t == 616_000 {
            first.clone()
        } else {
            v.generation += 1;
            restarted.step(t, &v, &[])
        };
        assert!(
            !actions.iter().any(|a| matches!(a, Action::CreateClaim(_))),
            "at {t}: {actions:?}"
        );
        assert!(deletes(&actions).is_empty(), "at {t}: {actions:?}");
    }
    // The replacement comes up: the resumed command deletes n1's claim, for drift.
    let up = v.claims.get_mut(&replacement.name).unwrap();
    (up.provider_id, up.initialized) = (Some("i-9".into()), true);
    let mut instance = v.instances["i-1"].clone();
    (instance.id, instance.claim) = ("i-9".into(), replacement.name.clone());
    v.instances.insert("i-9".into(), instance);
    v.generation += 1;
    assert_eq!(
        deletes(&restarted.step(657_000, &v, &[])),
        vec![("c1", "drift")]
    );
}

/// A command's taint write that failed is made again while its replacement launches:
/// the scheduler must not put pods on a node about to be drained.
#[test]
fn a_command_in_flight_taints_its_node_again_if_the_taint_did_not_land() {
    let (mut v, mut c, _, started) = drift_started(1);
    assert!(
        started
            .iter()
            .any(|a| matches!(a, Action::Taint { node, .. } if node == "n1")),
        "{started:?}"
    );
    let actions = c.step(616_000, &v, &[]);
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::Taint { .. } | Action::Untaint { .. })),
        "the taint landed: {actions:?}"
    );
    v.nodes.get_mut("n1").unwrap().taints.clear();
    v.generation += 1;
    let actions = c.step(617_000, &v, &[]);
    assert!(
        actions.iter().any(|a| matches!(a, Action::Taint { node, taint } if node == "n1" && taint.key == labels::TAINT_DISRUPTED)),
        "{actions:?}"
    );
}

#[test]
fn a_restarted_controller_untaints_nodes_whose_command_lost_a_replacement() {
    let (mut v, _, replacement, _) = drift_started(1);
    // The replacement failed and is being deleted: the command cannot be resumed.
    v.claims.get_mut(&replacement.name).unwrap().deleting_since = Some(615_500);
    let actions = controller().step(616_000, &v, &[]);
    assert!(
        actions.contains(&Action::Untaint {
            node: "n1".into(),
            key: labels::TAINT_DISRUPTED.into()
        }),
        "{actions:?}"
    );
}

/// The shell steps whenever the view changes and at `next_wake`: on a view that stays
/// the same, a wake already past would make it step in a spin.
#[test]
fn a_quiet_cluster_asks_for_no_step_before_its_next_deadline() {
    let mut v = view();
    v.nodepools[0].disruption.consolidation_policy =
        kerf_model::nodepool::ConsolidationPolicy::WhenEmpty;
    v.insert_pod(pod("busy", Some("n1")));
    // A pod no instance type can hold: it waits, and is solved again now and then.
    let mut huge = pod("huge", None);
    huge.pod.requests = Resources::parse([("cpu", "1000")]).unwrap();
    v.insert_pod(huge);
    let mut c = controller();
    let pending = Event::PodPending(kerf_model::pod::PodKey {
        namespace: "default".into(),
        name: "huge".into(),
    });
    c.step(600_000, &v, &[pending]);
    c.step(601_000, &v, &[]);
    for now in [620_000, 700_000, 900_000] {
        c.step(now, &v, &[]);
        let wake = c.next_wake(now, &v);
        assert!(
            wake >= 601_000 + 60_000 && wake > now + 1,
            "at {now}: wakes at {wake}, though nothing is due before the minute's retry or the idle recheck"
        );
    }
}

#[test]
fn a_restarted_controller_resumes_neither_of_two_commands_naming_one_node() {
    let (mut v, _, replacement, _) = drift_started(1);
    // A replacement left over from an earlier command on the same claim, killed before
    // its taint landed: it names c1 too, for another method.
    let mut stale = replacement.clone();
    stale.name = "default-1-1".into();
    (stale.annotations).insert(
        labels::ANNOTATION_REPLACES.into(),
        "single-node-consolidation/1: c1".into(),
    );
    (stale.provider_id, stale.initialized) = (Some("i-8".into()), true);
    let mut instance = v.instances["i-1"].clone();
    (instance.id, instance.claim) = ("i-8".into(), stale.name.clone());
    v.instances.insert("i-8".into(), instance);
    v.claims.insert(stale.name.clone(), stale);
    let actions = controller().step(616_000, &v, &[]);
    assert!(deletes(&actions).is_empty(), "{actions:?}");
    assert!(
        actions.contains(&Action::Untaint {
            node: "n1".into(),
            key: labels::TAINT_DISRUPTED.into()
        }),
        "{actions:?}"
    );
}
