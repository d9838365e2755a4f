//! A pod as the scheduler sees it: what it asks for and every constraint on where it may
//! run. Built once from Kubernetes objects by `kerf-api`; the core never re-parses.

use std::collections::BTreeSet;

use crate::requirements::{Requirement, Requirements};
use crate::selector::{LabelSelector, Labels};
use crate::taints::{Taint, Toleration, first_untolerated};
use crate::{Resources, labels};

/// The priority of `system-cluster-critical`, the lower of Kubernetes' two system
/// priority classes.
pub const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// `namespace/name`, the way every output names a pod.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodKey {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for PodKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The workload a pod came from, e.g. `("DaemonSet", "fluent-bit")`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Owner {
    pub kind: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pod {
    pub key: PodKey,
    pub labels: Labels,
    pub annotations: Labels,
    pub owner: Option<Owner>,
    /// Effective requests: max(sum of containers + restartable init containers, largest
    /// init container step) plus pod overhead, plus `pods: 1`.
    pub requests: Resources,
    /// Bound node, for running pods.
    pub node_name: Option<String>,
    pub priority: i32,
    pub node_affinity: NodeAffinity,
    /// The zones the pod's bound volumes confine it to, one entry per claim bound to a
    /// zonal volume. A placement restriction like `node_affinity` (kube-scheduler's
    /// VolumeBinding filter), but kept apart from it: topology spread counts its domains
    /// from the node affinity and the nodes, never from volumes.
    pub volume_zones: Vec<VolumeZone>,
    pub tolerations: Vec<Toleration>,
    pub topology_spread: Vec<TopologySpread>,
    pub affinity: Vec<AffinityTerm>,
    pub anti_affinity: Vec<AffinityTerm>,
    pub preferred_affinity: Vec<Weighted<AffinityTerm>>,
    pub preferred_anti_affinity: Vec<Weighted<AffinityTerm>>,
    pub host_ports: Vec<HostPort>,
    /// When the pod was bound to its node, Unix seconds: the `PodScheduled` condition's
    /// `lastTransitionTime`, else `status.startTime`, else `metadata.creationTimestamp`.
    /// `None` for pods not bound, and when the input says nothing.
    pub bound_at: Option<i64>,
    /// `status.startTime` (the kubelet accepted the pod), Unix seconds, when known.
    pub started_at: Option<i64>,
    /// Being deleted (`metadata.deletionTimestamp` set, e.g. evicted): it holds its node's
    /// room until it is gone, but needs no new home (its controller makes a new pod), as
    /// Karpenter's `IsReschedulable` leaves terminating pods out.
    pub terminating: bool,
}

impl Pod {
    /// A pod with the given requests and no constraints.
    pub fn new(namespace: &str, name: &str, requests: Resources) -> Pod {
        Pod {
            key: PodKey {
                namespace: namespace.to_string(),
                name: name.to_string(),
            },
            labels: Labels::new(),
            annotations: Labels::new(),
            owner: None,
            requests,
            node_name: None,
            priority: 0,
            node_affinity: NodeAffinity::default(),
            volume_zones: Vec::new(),
            tolerations: Vec::new(),
            topology_spread: Vec::new(),
            affinity: Vec::new(),
            anti_affinity: Vec::new(),
            preferred_affinity: Vec::new(),
            preferred_anti_affinity: Vec::new(),
            host_ports: Vec::new(),
            bound_at: None,
            started_at: None,
            terminating: false,
        }
    }

    /// Whether `karpenter.sh/do-not-disrupt` protects the pod at `now` (Unix seconds), as
    /// Karpenter's `IsDoNotDisruptActive` decides: `"true"` always does; a positive Go
    /// duration (`"10m"`, `"1h30m"`) does until that long after the pod started
    /// (`status.startTime`), and always when the start is unknown; any other value is
    /// ignored, as if the annotation were absent.
    pub fn do_not_disrupt_at(&self, now: i64) -> bool {
        let Some(value) = self
            .annotations
            .get(crate::labels::ANNOTATION_DO_NOT_DISRUPT)
        else {
            return false;
        };
        match DoNotDisrupt::parse(value) {
            DoNotDisrupt::Always => true,
            DoNotDisrupt::For(d) => self
                .started_at
                .is_none_or(|started| ((now - started) as f64) < d.as_secs_f64()),
            DoNotDisrupt::Invalid => false,
        }
    }

    /// When a `karpenter.sh/do-not-disrupt` duration stops protecting the pod (Unix
    /// seconds, rounded up): `None` for no protection, `"true"`, or an unknown start,
    /// which no time ends.
    pub fn do_not_disrupt_until(&self) -> Option<i64> {
        let value = self
            .annotations
            .get(crate::labels::ANNOTATION_DO_NOT_DISRUPT)?;
        match DoNotDisrupt::parse(value) {
            DoNotDisrupt::For(d) => Some(self.started_at? + d.as_secs_f64().ceil() as i64),
            DoNotDisrupt::Always | DoNotDisrupt::Invalid => None,
        }
    }

    pub fn is_daemon(&self) -> bool {
        self.owner.as_ref().is_some_and(|o| o.kind == "DaemonSet")
    }

    /// Whether Karpenter's drain treats the pod as critical, evicting it only after the
    /// others: a priority of the system classes (`system-cluster-critical` and up).
    pub fn is_critical(&self) -> bool {
        self.priority >= SYSTEM_CRITICAL_PRIORITY
    }

    /// Whether this pod, a DaemonSet's, would run on a node with these labels and taints:
    /// its required node affinity matches the labels and it tolerates every taint with a
    /// hard effect (`PreferNoSchedule` never keeps it off).
    pub fn daemon_runs_on(&self, node_labels: &Labels, taints: &[Taint]) -> bool {
        self.node_affinity.matches_labels(node_labels)
            && first_untolerated(taints, &self.tolerations).is_none()
    }

    /// The pod's volume zones as node requirements, to hold alongside every required
    /// node-affinity term; `None` when no volume confines it.
    pub fn volume_requirements(&self) -> Option<Requirements> {
        if self.volume_zones.is_empty() {
            return None;
        }
        let mut reqs = Requirements::new();
        for v in &self.volume_zones {
            reqs.add(labels::ZONE, v.zones.clone());
        }
        Some(reqs)
    }

    /// The first of the pod's zonal volumes a node with these labels is outside of.
    pub fn volume_zone_conflict(&self, node_labels: &Labels) -> Option<&VolumeZone> {
        let zone = node_labels.get(labels::ZONE).map(String::as_str);
        self.volume_zones.iter().find(|v| !v.zones.admits(zone))
    }

    /// Whether the pod has a topology spread or a pod (anti-)affinity term, required or
    /// preferred: a constraint that looks at other pods, not just at a node.
    pub fn has_inter_pod_terms(&self) -> bool {
        !self.topology_spread.is_empty()
            || !self.affinity.is_empty()
            || !self.anti_affinity.is_empty()
            || !self.preferred_affinity.is_empty()
            || !self.preferred_anti_affinity.is_empty()
    }
}

/// A claim the pod mounts, bound to a volume that lives in some zones (an EBS volume lives
/// in one).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct VolumeZone {
    /// The PersistentVolumeClaim's name, in the pod's namespace.
    pub claim: String,
    /// The zones the volume's node affinity allows.
    pub zones: Requirement,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Weighted<T> {
    pub weight: i32,
    pub term: T,
}

/// Node selection: `nodeSelector` merged into each required node-affinity term.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct NodeAffinity {
    /// Terms are ORed; each term's requirements are ANDed. Empty means any node.
    pub required: Vec<Requirements>,
    pub preferred: Vec<Weighted<Requirements>>,
}

impl NodeAffinity {
    /// Whether a node with these labels satisfies the required terms.
    pub fn matches_labels(&self, labels: &Labels) -> bool {
        self.required.is_empty() || self.required.iter().any(|t| t.matches_labels(labels))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WhenUnsatisfiable {
    DoNotSchedule,
    ScheduleAnyway,
}

/// Whether a spread constraint counts only nodes that pass the pod's node affinity /
/// taints (`Honor`) or all nodes (`Ignore`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum InclusionPolicy {
    Honor,
    Ignore,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TopologySpread {
    pub max_skew: i32,
    pub topology_key: String,
    pub when_unsatisfiable: WhenUnsatisfiable,
    /// Already narrowed by `matchLabelKeys` with the pod's own label values.
    pub selector: LabelSelector,
    pub min_domains: Option<i32>,
    /// Default `Honor`.
    pub node_affinity_policy: InclusionPolicy,
    /// Default `Ignore`.
    pub node_taints_policy: InclusionPolicy,
}

/// Which namespaces an affinity term's selector looks in.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NamespaceScope {
    pub names: BTreeSet<String>,
    /// `namespaceSelector`; `Some(everything)` for `{}` (all namespaces).
    pub selector: Option<LabelSelector>,
}

impl NamespaceScope {
    /// Only the pod's own namespace: the default when neither field is set.
    pub fn own(namespace: &str) -> NamespaceScope {
        NamespaceScope {
            names: BTreeSet::from([namespace.to_string()]),
            selector: None,
        }
    }

    pub fn contains(&self, namespace: &str, namespace_labels: Option<&Labels>) -> bool {
        self.names.contains(namespace)
            || self.selector.as_ref().is_some_and(|s| {
                s.is_everything() || namespace_labels.is_some_and(|l| s.matches(l))
            })
    }
}

/// One pod (anti-)affinity term: pods matching `selector` in `namespaces`, in the same
/// `topology_key` domain.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AffinityTerm {
    pub selector: LabelSelector,
    pub namespaces: NamespaceScope,
    pub topology_key: String,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostPort {
    pub port: i32,
    pub protocol: String,
    /// Empty or `0.0.0.0` binds every address.
    pub host_ip: String,
}

impl HostPort {
    pub fn conflicts(&self, other: &HostPort) -> bool {
        let wildcard = |ip: &str| ip.is_empty() || ip == "0.0.0.0";
        self.port == other.port
            && self.protocol == other.protocol
            && (wildcard(&self.host_ip)
                || wildcard(&other.host_ip)
                || self.host_ip == other.host_ip)
    }
}

/// A `karpenter.sh/do-not-disrupt` pod annotation's value, read as Karpenter reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DoNotDisrupt {
    /// `"true"`.
    Always,
    /// A positive Go duration: protected for that long after the pod started.
    For(std::time::Duration),
    /// Anything else (`"false"`, `"0s"`, `"soon"`): Karpenter ignores the annotation.
    Invalid,
}

impl DoNotDisrupt {
    pub fn parse(value: &str) -> DoNotDisrupt {
        if value == "true" {
            return DoNotDisrupt::Always;
        }
        match parse_go_duration(value) {
            Some(d) if !d.is_zero() => DoNotDisrupt::For(d),
            _ => DoNotDisrupt::Invalid,
        }
    }
}

/// Go's `time.ParseDuration`: a sequence of decimal numbers, each with an optional
/// fraction and a unit (`ns`, `us`/`µs`/`μs`, `ms`, `s`, `m`, `h`), such as `"1h30m"`
/// or `"1.5h"`; an optional sign; `"0"` alone. `None` when it is not one, or negative.
pub fn parse_go_duration(text: &str) -> Option<std::time::Duration> {
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Some(std::time::Duration::ZERO);
    }
    if rest.is_empty() {
        return None;
    }
    let mut nanos: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after) = rest.split_at(int_len);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(a) => {
                let n = a.bytes().take_while(u8::is_ascii_digit).count();
                a.split_at(n)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return None;
        }
        let unit_len = after
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(after.len(), |(i, _)| i);
        let (unit, after) = after.split_at(unit_len);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            _ => return None,
        };
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().ok()?
        };
        nanos = nanos.checked_add(int.checked_mul(scale)?)?;
        if !frac_part.is_empty() {
            // Digits past nanosecond precision cannot change the result.
            let digits = &frac_part[..frac_part.len().min(20)];
            let frac: u128 = digits.parse().ok()?;
            nanos = nanos.checked_add(frac * scale / 10u128.pow(digits.len() as u32))?;
        }
        rest = after;
    }
    if negative && nanos > 0 {
        return None;
    }
    let secs = u64::try_from(nanos / 1_000_000_000).ok()?;
    Some(std::time::Duration::new(
        secs,
        (nanos % 1_000_000_000) as u32,
    ))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{DoNotDisrupt, Pod, parse_go_duration};
    use crate::Resources;
    use crate::requirements::Requirements;
    use crate::taints::{Effect, Taint, Toleration, TolerationOperator};

    #[test]
    fn go_durations_parse_as_go_parses_them() {
        assert_eq!(parse_go_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_go_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("+2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_go_duration(".5s"), Some(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("300ms"), Some(Duration::from_millis(300)));
        assert_eq!(
            parse_go_duration("2\u{b5}s"),
            Some(Duration::from_micros(2))
        );
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        for bad in ["", "10", "1d", "m", "-5m", "1h 30m", "true", "."] {
            assert_eq!(parse_go_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn do_not_disrupt_values_follow_karpenter() {
        assert_eq!(DoNotDisrupt::parse("true"), DoNotDisrupt::Always);
        assert_eq!(
            DoNotDisrupt::parse("10m"),
            DoNotDisrupt::For(Duration::from_secs(600))
        );
        for ignored in ["false", "True", "0s", "-1h", "soon"] {
            assert_eq!(
                DoNotDisrupt::parse(ignored),
                DoNotDisrupt::Invalid,
                "{ignored}"
            );
        }
        let mut pod = Pod::new("default", "p", Resources::new());
        assert!(!pod.do_not_disrupt_at(1_000));
        pod.annotations.insert(
            crate::labels::ANNOTATION_DO_NOT_DISRUPT.to_string(),
            "10m".to_string(),
        );
        // The start unknown: protected, as Karpenter fails safe.
        assert!(pod.do_not_disrupt_at(1_000));
        pod.started_at = Some(1_000);
        assert!(pod.do_not_disrupt_at(1_000 + 599));
        assert!(!pod.do_not_disrupt_at(1_000 + 600));
        pod.annotations.insert(
            crate::labels::ANNOTATION_DO_NOT_DISRUPT.to_string(),
            "yes".to_string(),
        );
        assert!(!pod.do_not_disrupt_at(1_000));
    }

    #[test]
    fn system_priorities_are_critical() {
        let mut pod = Pod::new("kube-system", "p", Resources::new());
        assert!(!pod.is_critical());
        pod.priority = 1_000_000_000;
        assert!(!pod.is_critical());
        // system-cluster-critical and system-node-critical.
        for priority in [2_000_000_000, 2_000_001_000] {
            pod.priority = priority;
            assert!(pod.is_critical(), "{priority}");
        }
    }

    #[test]
    fn a_daemon_runs_where_its_affinity_matches_and_hard_taints_are_tolerated() {
        let labels = |pairs: &[(&str, &str)]| -> crate::Labels {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let gpu = labels(&[("gpu", "true")]);
        let mut ds = Pod::new("kube-system", "agent", Resources::new());
        assert!(ds.daemon_runs_on(&crate::Labels::new(), &[]));

        ds.node_affinity.required = vec![Requirements::from_labels(&gpu)];
        assert!(ds.daemon_runs_on(&gpu, &[]));
        assert!(!ds.daemon_runs_on(&labels(&[("gpu", "false")]), &[]));
        assert!(!ds.daemon_runs_on(&crate::Labels::new(), &[]));

        // A soft taint never keeps it off; hard ones do until tolerated.
        let soft = Taint::new("spot", "", Effect::PreferNoSchedule);
        assert!(ds.daemon_runs_on(&gpu, std::slice::from_ref(&soft)));
        for effect in [Effect::NoSchedule, Effect::NoExecute] {
            let hard = Taint::new("dedicated", "ml", effect);
            assert!(!ds.daemon_runs_on(&gpu, &[soft.clone(), hard.clone()]));
            let mut tolerating = ds.clone();
            tolerating.tolerations.push(Toleration {
                key: "dedicated".into(),
                operator: TolerationOperator::Equal,
                value: "ml".into(),
                effect: Some(effect),
            });
            assert!(tolerating.daemon_runs_on(&gpu, &[soft.clone(), hard]));
            // Tolerating the taint does not lift the affinity.
            assert!(!tolerating.daemon_runs_on(&crate::Labels::new(), &[]));
        }
    }
}
