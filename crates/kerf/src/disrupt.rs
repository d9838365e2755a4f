//! `kerf disrupt`: manifests in, one disruption pass rendered out.

use std::fmt::Write as _;

use kerf_api::Manifests;
use kerf_disruption::{Destination, Outcome, Snapshot};
use kerf_model::InstanceType;
use serde::Serialize;

/// The disruption snapshot for manifests read by `kerf-api` and a catalog.
pub fn snapshot(manifests: Manifests, instance_types: Vec<InstanceType>) -> Snapshot {
    Snapshot {
        nodes: manifests.nodes,
        nodeclaims: manifests.nodeclaims,
        bound_pods: manifests.bound_pods,
        pending_pods: manifests.pending_pods,
        nodepools: manifests.nodepools,
        pdbs: manifests.pdbs,
        node_class_images: manifests.node_class_images,
        node_class_annotations: manifests.node_class_annotations,
        cloud_drift: Default::default(),
        instance_types,
        daemonsets: manifests.daemonsets,
        namespaces: manifests.namespaces,
    }
}

/// The JSON shape of `kerf disrupt -o json`. Field order is the output order.
#[derive(Debug, Serialize)]
pub struct DisruptJson {
    pub commands: Vec<CommandJson>,
    pub kept: Vec<KeptJson>,
    pub cost_per_hour_before: f64,
    pub cost_per_hour_after: f64,
}

#[derive(Debug, Serialize)]
pub struct CommandJson {
    pub method: String,
    pub decision: String,
    pub nodes: Vec<String>,
    pub replacements: Vec<ReplacementJson>,
    pub moves: Vec<MoveJson>,
    pub savings_per_hour: f64,
}

#[derive(Debug, Serialize)]
pub struct ReplacementJson {
    pub nodepool: String,
    pub instance_type: String,
    pub capacity_type: String,
    pub zone: String,
    pub price: f64,
}

#[derive(Debug, Serialize)]
pub struct MoveJson {
    pub pod: String,
    /// A node name, `replacement-<index>`, or `pending` (expiration only).
    pub to: String,
}

#[derive(Debug, Serialize)]
pub struct KeptJson {
    pub node: String,
    pub reason: String,
}

fn round_price(x: f64) -> f64 {
    let r = (x * 1e6).round() / 1e6;
    if r == 0.0 { 0.0 } else { r }
}

fn destination(to: &Destination) -> String {
    match to {
        Destination::Node(name) => name.clone(),
        Destination::Replacement(i) => format!("replacement-{i}"),
        Destination::Pending => "pending".to_string(),
    }
}

pub fn to_json(outcome: &Outcome) -> DisruptJson {
    DisruptJson {
        commands: outcome
            .commands
            .iter()
            .map(|c| CommandJson {
                method: c.method.as_str().to_string(),
                decision: c.decision.as_str().to_string(),
                nodes: c.nodes.clone(),
                replacements: c
                    .replacements
                    .iter()
                    .map(|r| ReplacementJson {
                        nodepool: r.nodepool.clone(),
                        instance_type: r.launch.instance_type.clone(),
                        capacity_type: r.launch.capacity_type.clone(),
                        zone: r.launch.zone.clone(),
                        price: r.launch.price,
                    })
                    .collect(),
                moves: c
                    .moves
                    .iter()
                    .map(|m| MoveJson {
                        pod: m.pod.to_string(),
                        to: destination(&m.to),
                    })
                    .collect(),
                savings_per_hour: round_price(c.savings_per_hour),
            })
            .collect(),
        kept: outcome
            .kept
            .iter()
            .map(|k| KeptJson {
                node: k.node.clone(),
                reason: k.reason.to_string(),
            })
            .collect(),
        cost_per_hour_before: round_price(outcome.cost_per_hour_before),
        cost_per_hour_after: round_price(outcome.cost_per_hour_after),
    }
}

/// Pretty JSON with a trailing newline.
pub fn render_json(outcome: &Outcome) -> String {
    let mut s = serde_json::to_string_pretty(&to_json(outcome))
        .expect("disruption JSON has only string keys");
    s.push('\n');
    s
}

/// The readable report `kerf disrupt` prints by default.
pub fn render_table(outcome: &Outcome) -> String {
    let mut out = String::new();
    if !outcome.assumed_moves.is_empty() {
        let _ = writeln!(out, "Pods of nodes already being deleted, assumed to go:");
        for m in &outcome.assumed_moves {
            let _ = writeln!(out, "  {} -> {}", m.pod, destination(&m.to));
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "Commands: {}", outcome.commands.len());
    for (i, c) in outcome.commands.iter().enumerate() {
        let savings = round_price(c.savings_per_hour);
        let money = if savings < 0.0 {
            format!("costs ${:.4}/hour more", -savings)
        } else {
            format!("saves ${savings:.4}/hour")
        };
        let _ = writeln!(
            out,
            "  {i}. {} {} {} ({money})",
            c.method.as_str(),
            c.decision.as_str(),
            c.nodes.join(", "),
        );
        let _ = writeln!(out, "     why: {}", c.why);
        for (r, claim) in c.replacements.iter().enumerate() {
            let l = &claim.launch;
            let _ = writeln!(
                out,
                "     replacement-{r}: nodepool {} {} {} {} ${:.4}/hour ({} option{})",
                claim.nodepool,
                l.instance_type,
                l.zone,
                l.capacity_type,
                l.price,
                claim.instance_type_options.len(),
                if claim.instance_type_options.len() == 1 {
                    ""
                } else {
                    "s"
                }
            );
        }
        for m in &c.moves {
            let _ = writeln!(out, "     move {} -> {}", m.pod, destination(&m.to));
        }
        for note in &c.notes {
            let _ = writeln!(out, "     note: {note}");
        }
    }
    if !outcome.kept.is_empty() {
        let _ = writeln!(out, "\nLeft alone: {}", outcome.kept.len());
        for k in &outcome.kept {
            let _ = writeln!(out, "  {}: {}", k.node, k.reason);
        }
    }
    let _ = writeln!(
        out,
        "\nCost: ${:.4}/hour before, ${:.4}/hour after",
        round_price(outcome.cost_per_hour_before),
        round_price(outcome.cost_per_hour_after)
    );
    out
}
