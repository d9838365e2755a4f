//! Reading Kubernetes YAML (files, directories, stdin; multi-document) into model values.
//!
//! Loading runs in two passes. The first parses every document of every source, checks
//! its `apiVersion`/`kind`, deserializes the typed object and converts it, collecting
//! every problem rather than stopping at the first. The second joins what only makes
//! sense across objects: volumes pin the zones of the pods that mount them, duplicate
//! objects are reported, and outputs are sorted. Nothing here schedules anything.

mod documents;
mod karpenter;
pub(crate) mod nodes;
pub(crate) mod pdbs;
mod pods;
mod strict;
mod syntax;
mod volumes;
pub(crate) mod workloads;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use kerf_model::{Labels, Node, NodeClaim, NodePool, Pdb, Pod};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::SourceError;
use crate::{Error, FieldError};

/// Everything kerf read from its inputs, converted and validated.
#[derive(Clone, Debug, Default)]
pub struct Manifests {
    /// Pods with no `spec.nodeName` that are not terminal, workload replicas the input's
    /// pods do not already account for included, sorted by namespace/name. Pods Karpenter
    /// never provisions for (scheduling gates, DaemonSet and mirror pods) are left out,
    /// each with a warning.
    pub pending_pods: Vec<Pod>,
    /// Pods bound to a node (`spec.nodeName`), sorted by namespace/name.
    pub bound_pods: Vec<Pod>,
    /// Sorted by name.
    pub nodes: Vec<Node>,
    /// Sorted by name.
    pub nodepools: Vec<NodePool>,
    /// One template pod per DaemonSet (owner kind `DaemonSet`), named after the DaemonSet,
    /// sorted by namespace/name.
    pub daemonsets: Vec<Pod>,
    /// Namespace labels, for affinity `namespaceSelector`s. Every namespace a pod lives in
    /// has an entry, declared or not, carrying at least the automatic
    /// `kubernetes.io/metadata.name` label the API server adds.
    pub namespaces: BTreeMap<String, Labels>,
    /// Names of EC2NodeClasses read and validated, sorted.
    pub node_classes: Vec<String>,
    /// The image IDs each EC2NodeClass resolved to (`status.amis[].id`), by class name;
    /// a class whose input has no status is absent.
    pub node_class_images: BTreeMap<String, Vec<String>>,
    /// Each EC2NodeClass's hash annotations (`karpenter.k8s.aws/ec2nodeclass-hash` and its
    /// version), by class name; a class without them is absent.
    pub node_class_annotations: BTreeMap<String, Labels>,
    /// Existing NodeClaims, sorted by name.
    pub nodeclaims: Vec<NodeClaim>,
    /// PodDisruptionBudgets, sorted by namespace/name.
    pub pdbs: Vec<Pdb>,
    /// Lines for the user to see: what was skipped (one line per kind kerf does not use,
    /// with a count; a pod Karpenter would not provision for; a symlinked directory) and
    /// what kerf could only assume (an unknown PriorityClass or RuntimeClass, a claim of
    /// an `Immediate` StorageClass not bound yet).
    pub warnings: Vec<String>,
}

/// Reads every path (a file, a directory of `.yaml`/`.yml`/`.json` files read in name
/// order, recursively, or `-` for stdin).
pub fn load_paths(paths: &[PathBuf]) -> Result<Manifests, Error> {
    let mut loader = Loader::default();
    for path in paths {
        loader.inputs.push(path.display().to_string());
        if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|source| Error::Io {
                    path: path.clone(),
                    source,
                })?;
            loader.add_source("<stdin>", &text);
            continue;
        }
        let metadata = std::fs::metadata(path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        if metadata.is_dir() {
            let mut files = Vec::new();
            manifest_files(path, &mut files, &mut loader.manifests.warnings)?;
            // Whole paths sort so that a directory's files and subdirectories interleave by
            // name, the order `ls -R`-style listings and `kubectl apply -R` users expect.
            files.sort();
            for file in files {
                let text = read_file(&file)?;
                loader.add_source(&file.display().to_string(), &text);
            }
        } else {
            let text = read_file(path)?;
            loader.add_source(&path.display().to_string(), &text);
        }
    }
    loader.finish()
}

/// Reads one YAML stream; `source` names it in errors.
pub fn load_str(source: &str, text: &str) -> Result<Manifests, Error> {
    let mut loader = Loader::default();
    loader.inputs.push(source.to_string());
    loader.add_source(source, text);
    loader.finish()
}

fn read_file(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Every `.yaml`, `.yml` and `.json` file under `dir`, recursively. Symlinked
/// directories are not followed, as kubectl's walk does not follow them: a link back up
/// the tree would otherwise be read again and again. Symlinked files are read.
fn manifest_files(
    dir: &Path,
    out: &mut Vec<PathBuf>,
    warnings: &mut Vec<String>,
) -> Result<(), Error> {
    let io_error = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io_error)? {
        let entry = entry.map_err(io_error)?;
        let path = entry.path();
        let file_type = entry.file_type().map_err(io_error)?;
        if file_type.is_dir() {
            manifest_files(&path, out, warnings)?;
            continue;
        }
        if file_type.is_symlink() && path.is_dir() {
            warnings.push(format!(
                "{}: skipped: a symlink to a directory; directories are walked without following symlinks, as kubectl does (name the target to read it)",
                path.display()
            ));
            continue;
        }
        if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// Problems found with one object, so a converter can report several and carry on.
pub(crate) struct Problems {
    object: String,
    pub(crate) errors: Vec<FieldError>,
    /// Not errors: unknown fields of an object read back from a cluster.
    warnings: Vec<FieldError>,
}

impl Problems {
    pub(crate) fn new(object: impl Into<String>) -> Problems {
        Problems {
            object: object.into(),
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors
            .push(FieldError::new(self.object.clone(), field, message));
    }

    pub(crate) fn extend(&mut self, errors: impl IntoIterator<Item = FieldError>) {
        self.errors.extend(errors);
    }
}

/// Where a pod goes once every object has been read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PodRole {
    Pending,
    Bound,
    DaemonSet,
}

/// A converted pod waiting for the cross-object pass.
pub(crate) struct StagedPod {
    pub(crate) pod: Pod,
    pub(crate) role: PodRole,
    /// Names of the PersistentVolumeClaims (in the pod's namespace) it mounts.
    pub(crate) claims: Vec<String>,
    /// The claims among them that a template creates (ephemeral volumes, StatefulSet
    /// volumeClaimTemplates), with the `storageClassName` the template names: where the
    /// input has no such PersistentVolumeClaim yet, this is what it will be.
    pub(crate) claim_classes: Vec<(String, Option<String>)>,
    /// `spec.runtimeClassName` of a pod without `spec.overhead`: its overhead comes from
    /// the RuntimeClass, once every object is read.
    pub(crate) runtime_class: Option<String>,
    /// Where the pod's priority comes from, resolved once every PriorityClass is read.
    pub(crate) priority: PriorityFrom,
    /// The index of the source and the object the pod came from, for errors.
    pub(crate) source: usize,
    pub(crate) object: String,
    /// Where the pod spec sits in that object: `spec` or `spec.template.spec`.
    pub(crate) spec_path: &'static str,
}

/// How a pod's priority is decided, as the API server's admission would.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PriorityFrom {
    /// `spec.priority` is set (a pod read back from a cluster always has it).
    Explicit,
    /// `spec.priorityClassName` names a class.
    Class(String),
    /// Neither: the `globalDefault` PriorityClass, else 0.
    Default,
}

/// The kinds kerf reads, each with the one `apiVersion` it accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Pod,
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    Job,
    Node,
    Namespace,
    PersistentVolume,
    PersistentVolumeClaim,
    PriorityClass,
    NodePool,
    NodeClaim,
    EC2NodeClass,
    PodDisruptionBudget,
    StorageClass,
    RuntimeClass,
}

impl Kind {
    const ALL: [(Kind, &'static str, &'static str, bool); 17] = [
        (Kind::Pod, "v1", "Pod", true),
        (Kind::Deployment, "apps/v1", "Deployment", true),
        (Kind::ReplicaSet, "apps/v1", "ReplicaSet", true),
        (Kind::StatefulSet, "apps/v1", "StatefulSet", true),
        (Kind::DaemonSet, "apps/v1", "DaemonSet", true),
        (Kind::Job, "batch/v1", "Job", true),
        (Kind::Node, "v1", "Node", false),
        (Kind::Namespace, "v1", "Namespace", false),
        (Kind::PersistentVolume, "v1", "PersistentVolume", false),
        (
            Kind::PersistentVolumeClaim,
            "v1",
            "PersistentVolumeClaim",
            true,
        ),
        (
            Kind::PriorityClass,
            "scheduling.k8s.io/v1",
            "PriorityClass",
            false,
        ),
        (Kind::NodePool, "karpenter.sh/v1", "NodePool", false),
        (Kind::NodeClaim, "karpenter.sh/v1", "NodeClaim", false),
        (
            Kind::PodDisruptionBudget,
            "policy/v1",
            "PodDisruptionBudget",
            true,
        ),
        (
            Kind::EC2NodeClass,
            "karpenter.k8s.aws/v1",
            "EC2NodeClass",
            false,
        ),
        (
            Kind::StorageClass,
            "storage.k8s.io/v1",
            "StorageClass",
            false,
        ),
        (Kind::RuntimeClass, "node.k8s.io/v1", "RuntimeClass", false),
    ];

    /// What kerf makes of an `apiVersion`/`kind`.
    fn resolve(api_version: &str, kind: &str) -> Resolved {
        let group = |v: &str| v.rsplit_once('/').map_or("", |(g, _)| g).to_string();
        let Some(&(k, version, _, _)) = Kind::ALL.iter().find(|(_, _, name, _)| *name == kind)
        else {
            return Resolved::Unused;
        };
        if api_version == version {
            return Resolved::Read(k);
        }
        let same_group = group(api_version) == group(version)
            // Workloads lived in `extensions` before `apps`.
            || (group(version) == "apps" && group(api_version) == "extensions");
        if same_group {
            Resolved::OldVersion(format!(
                "apiVersion {api_version} is not supported for {kind}; kerf reads {version}"
            ))
        } else {
            Resolved::OtherGroup(format!(
                "kerf reads {kind} only as {version}, not {api_version} (another API group's kind of the same name)"
            ))
        }
    }
}

/// What kerf makes of an object's `apiVersion`/`kind`.
enum Resolved {
    /// A kind kerf reads.
    Read(Kind),
    /// A kind kerf reads, in a version of its group kerf does not (an old `apps/v1beta2`
    /// Deployment, a `karpenter.sh/v1beta1` NodePool): an error naming the version kerf
    /// reads.
    OldVersion(String),
    /// A kind of that name in another group (`example.com/v1` NodePool): skipped with a
    /// warning naming the group/version kerf reads.
    OtherGroup(String),
    /// A kind kerf does not use: skipped with a warning.
    Unused,
}

#[derive(Default)]
struct Loader {
    /// The paths as the user gave them, for the error when none holds an object.
    inputs: Vec<String>,
    /// Objects read, valid or not, skipped or not; list items count, lists do not.
    n_objects: usize,
    manifests: Manifests,
    sources: Vec<SourceError>,
    /// Every object read, by (kind, namespace, name), with where it was first seen, so a
    /// second definition is reported rather than silently winning.
    seen: BTreeMap<(String, String, String), String>,
    pods: Vec<StagedPod>,
    /// Workloads, expanded once every Pod is read (`workloads::expand`).
    workloads: Vec<workloads::Workload>,
    /// Every Pod read that has not finished, skipped or not.
    existing: Vec<workloads::ExistingPod>,
    volumes: volumes::VolumeIndex,
    priority_classes: BTreeMap<String, i32>,
    /// The value of the PriorityClass marked `globalDefault`, for pods naming no class.
    default_priority: Option<i32>,
    /// Each RuntimeClass's `overhead.podFixed`, by name.
    runtime_classes: BTreeMap<String, kerf_model::Resources>,
    /// Objects of kinds kerf skips, by (kind, why): how many, from which sources, the
    /// first one's label, and where its warning goes in `Manifests::warnings` (one line
    /// per kind, written once every object is read).
    skipped: BTreeMap<(String, String), Skipped>,
    /// Names of namespaces declared with a Namespace object.
    declared_namespaces: BTreeSet<String>,
    /// A counter per `metadata.generateName` prefix, for objects without a name.
    generated: BTreeMap<String, usize>,
}

impl Loader {
    fn add_source(&mut self, source: &str, text: &str) {
        let parsed = documents::parse(source, text);
        let source_idx = self.sources.len();
        self.sources.push(SourceError {
            source: source.to_string(),
            syntax: parsed.syntax,
            errors: Vec::new(),
        });
        for (label, document) in &parsed.documents {
            if !document.is_null() {
                self.add_object(source_idx, label, document);
            }
        }
    }

    fn error(&mut self, source: usize, error: FieldError) {
        self.sources[source].errors.push(error);
    }

    fn add_object(&mut self, source: usize, document: &str, value: &Value) {
        let Some(object) = value.as_object() else {
            self.error(
                source,
                FieldError::new(
                    document,
                    ".",
                    format!(
                        "expected a Kubernetes object (a mapping with apiVersion, kind and metadata), found {}",
                        json_type(value)
                    ),
                ),
            );
            return;
        };
        let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        if kind.is_empty() || api_version.is_empty() {
            let field = if kind.is_empty() {
                "kind"
            } else {
                "apiVersion"
            };
            self.error(
                source,
                FieldError::new(
                    document,
                    field,
                    "missing; every Kubernetes object needs a string apiVersion and kind, e.g. apiVersion: v1, kind: Pod",
                ),
            );
            return;
        }
        if kind.ends_with("List")
            && let Some(items) = object.get("items").and_then(Value::as_array)
        {
            for (i, item) in items.iter().enumerate() {
                self.add_object(source, &format!("{document} items[{i}]"), item);
            }
            return;
        }
        self.n_objects += 1;

        let metadata = object.get("metadata");
        let meta_str = |key: &str| {
            metadata
                .and_then(|m| m.get(key))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let resolved = Kind::resolve(api_version, kind);
        let namespaced = Kind::ALL
            .iter()
            .find(|(_, _, name, _)| *name == kind)
            .map_or(meta_str("namespace").is_some(), |(_, _, _, namespaced)| {
                *namespaced
            });
        let namespace = meta_str("namespace").unwrap_or("default").to_string();
        let name = match (meta_str("name"), meta_str("generateName")) {
            (Some(name), _) => Some(name.to_string()),
            (None, Some(prefix)) => {
                let n = self.generated.entry(prefix.to_string()).or_insert(0);
                let name = format!("{prefix}{n}");
                *n += 1;
                Some(name)
            }
            (None, None) => None,
        };
        let label = match (&name, namespaced) {
            (Some(name), true) => format!("{kind} {namespace}/{name}"),
            (Some(name), false) => format!("{kind} {name}"),
            (None, _) => format!("{kind} ({document})"),
        };

        let kind_id = match resolved {
            Resolved::Read(k) => k,
            Resolved::Unused | Resolved::OtherGroup(_) => {
                let why = match resolved {
                    Resolved::OtherGroup(why) => why,
                    _ => "kerf does not use this kind".to_string(),
                };
                let skipped = self
                    .skipped
                    .entry((kind.to_string(), why))
                    .or_insert_with(|| {
                        // Hold the place of the first, so warnings keep the input's order.
                        self.manifests.warnings.push(String::new());
                        Skipped {
                            count: 0,
                            sources: BTreeSet::new(),
                            first: label.clone(),
                            slot: self.manifests.warnings.len() - 1,
                        }
                    });
                skipped.count += 1;
                skipped.sources.insert(source);
                return;
            }
            Resolved::OldVersion(message) => {
                self.error(source, FieldError::new(label, "apiVersion", message));
                return;
            }
        };
        let Some(name) = name else {
            let message = match metadata.and_then(|m| m.get("name")) {
                // YAML 1.1 reads `name: no` as a boolean, as kubectl does; say so.
                Some(v) if !v.is_string() && !v.is_null() => format!(
                    "must be a string, found {}; quote it (name: \"{}\")",
                    json_type(v),
                    v
                ),
                _ => "missing; every object needs a name (or metadata.generateName)".to_string(),
            };
            self.error(source, FieldError::new(label, "metadata.name", message));
            return;
        };

        let key = (
            kind.to_string(),
            if namespaced {
                namespace.clone()
            } else {
                String::new()
            },
            name.clone(),
        );
        let here = format!("{} {document}", self.sources[source].source);
        if let Some(first) = self.seen.get(&key) {
            let message = format!("defined twice: first in {first}, again in {here}");
            self.error(source, FieldError::new(label, "metadata.name", message));
            return;
        }
        self.seen.insert(key, here);

        let mut problems = Problems::new(label.clone());
        let object = ObjectRef {
            source,
            label: &label,
            namespace: &namespace,
            name: &name,
        };
        match kind_id {
            Kind::Pod => {
                if let Some(pod) = typed::<k8s_openapi::api::core::v1::Pod>(value, &mut problems) {
                    let staged = workloads::bare_pod(&object, &pod, &mut problems);
                    if !workloads::is_terminal(&pod) {
                        // Skipped or not, the pod exists: its workload does not add it
                        // again, and no replica takes its name.
                        self.existing
                            .push(workloads::ExistingPod::new(&pod, &namespace, &name));
                        if let Some(why) = workloads::not_provisionable(&pod) {
                            let source_name = &self.sources[source].source;
                            self.manifests
                                .warnings
                                .push(format!("{source_name}: skipped {label}: {why}"));
                        } else {
                            self.pods.extend(staged);
                        }
                    }
                }
            }
            Kind::Deployment => {
                if let Some(d) = typed(value, &mut problems) {
                    self.workloads
                        .extend(workloads::deployment(&object, &d, &mut problems));
                }
            }
            Kind::ReplicaSet => {
                if let Some(rs) = typed(value, &mut problems) {
                    self.workloads
                        .extend(workloads::replica_set(&object, &rs, &mut problems));
                }
            }
            Kind::StatefulSet => {
                if let Some(sts) = typed(value, &mut problems) {
                    self.workloads
                        .extend(workloads::stateful_set(&object, &sts, &mut problems));
                }
            }
            Kind::DaemonSet => {
                if let Some(ds) = typed(value, &mut problems) {
                    self.pods
                        .extend(workloads::daemon_set(&object, &ds, &mut problems));
                }
            }
            Kind::Job => {
                if let Some(job) = typed(value, &mut problems) {
                    self.workloads
                        .extend(workloads::job(&object, &job, &mut problems));
                }
            }
            Kind::Node => {
                if let Some(node) = typed(value, &mut problems) {
                    self.manifests
                        .nodes
                        .push(nodes::node(&name, &node, &mut problems));
                }
            }
            Kind::Namespace => {
                if let Some(ns) = typed(value, &mut problems) {
                    let labels = nodes::namespace(&name, &ns, &mut problems);
                    self.declared_namespaces.insert(name.clone());
                    self.manifests.namespaces.insert(name.clone(), labels);
                }
            }
            Kind::PersistentVolume => {
                if let Some(pv) = typed(value, &mut problems) {
                    self.volumes.add_volume(&name, &pv, &mut problems);
                }
            }
            Kind::PersistentVolumeClaim => {
                if let Some(pvc) = typed(value, &mut problems) {
                    self.volumes.add_claim(&namespace, &name, &pvc);
                }
            }
            Kind::PriorityClass => {
                if let Some(pc) =
                    typed::<k8s_openapi::api::scheduling::v1::PriorityClass>(value, &mut problems)
                {
                    self.priority_classes.insert(name.clone(), pc.value);
                    if pc.global_default == Some(true) {
                        self.default_priority = Some(pc.value);
                    }
                }
            }
            Kind::StorageClass => {
                if let Some(sc) = typed(value, &mut problems) {
                    self.volumes.add_class(&name, &sc);
                }
            }
            Kind::RuntimeClass => {
                if let Some(rc) =
                    typed::<k8s_openapi::api::node::v1::RuntimeClass>(value, &mut problems)
                {
                    let overhead = pods::quantities(
                        rc.overhead.as_ref().and_then(|o| o.pod_fixed.as_ref()),
                        "overhead.podFixed",
                        &mut problems,
                    );
                    self.runtime_classes.insert(name.clone(), overhead);
                }
            }
            Kind::NodePool => {
                if let Some(pool) = karpenter::nodepool(value, &mut problems) {
                    self.manifests.nodepools.push(pool);
                }
            }
            Kind::EC2NodeClass => {
                if karpenter::ec2_node_class(value, &mut problems) {
                    self.manifests.node_classes.push(name.clone());
                    let images = karpenter::ec2_node_class_images(value);
                    if !images.is_empty() {
                        self.manifests
                            .node_class_images
                            .insert(name.clone(), images);
                    }
                    let hashes: Labels = kerf_model::labels::EC2NODECLASS_HASH_ANNOTATIONS
                        .into_iter()
                        .filter_map(|k| {
                            let v = value.pointer(&format!(
                                "/metadata/annotations/{}",
                                k.replace('~', "~0").replace('/', "~1")
                            ))?;
                            Some((k.to_string(), v.as_str()?.to_string()))
                        })
                        .collect();
                    if !hashes.is_empty() {
                        self.manifests
                            .node_class_annotations
                            .insert(name.clone(), hashes);
                    }
                }
            }
            Kind::NodeClaim => {
                if let Some(claim) = karpenter::nodeclaim(value, &name, &mut problems) {
                    self.manifests.nodeclaims.push(claim);
                }
            }
            Kind::PodDisruptionBudget => {
                if let Some(pdb) = typed(value, &mut problems) {
                    self.manifests
                        .pdbs
                        .push(pdbs::pdb(&namespace, &name, &pdb, &mut problems));
                }
            }
        }
        self.sources[source].errors.extend(problems.errors);
        let source_name = &self.sources[source].source;
        self.manifests.warnings.extend(
            (problems.warnings.iter())
                .map(|w| format!("{source_name}: {w} (ignored: the cluster accepted it)")),
        );
    }

    fn finish(mut self) -> Result<Manifests, Error> {
        let mut manifests = std::mem::take(&mut self.manifests);
        for ((kind, why), s) in std::mem::take(&mut self.skipped) {
            let where_ = match s.sources.iter().collect::<Vec<_>>()[..] {
                [one] => format!("{}: ", self.sources[*one].source),
                _ => String::new(),
            };
            manifests.warnings[s.slot] = match (s.count, s.sources.len()) {
                (1, _) => format!("{where_}skipped {}: {why}", s.first),
                (n, 1) => format!("{where_}skipped {n} {kind} objects: {why}"),
                (n, files) => format!("skipped {n} {kind} objects in {files} sources: {why}"),
            };
        }
        let mut pods = std::mem::take(&mut self.pods);
        // Replicas are named around the pods that exist, so no two pods share a name.
        pods.extend(workloads::expand(&self.workloads, &self.existing));
        pods.sort_by(|a, b| a.pod.key.cmp(&b.pod.key));
        // Replicas share their object's warnings: report each once per object, not per pod.
        let mut reported = BTreeSet::new();
        // Claims only templates describe (the input has no such PersistentVolumeClaim)
        // take their template's StorageClass.
        for staged in &pods {
            for (claim, class) in &staged.claim_classes {
                self.volumes
                    .add_template_claim(&staged.pod.key.namespace, claim, class.as_ref());
            }
        }
        for staged in &mut pods {
            self.runtime_overhead(staged, &mut reported, &mut manifests.warnings);
            if staged.role == PodRole::Pending {
                for claim in &staged.claims {
                    let Some(immediate) = self
                        .volumes
                        .immediate_unbound(&staged.pod.key.namespace, claim)
                    else {
                        continue;
                    };
                    if reported.insert((staged.source, staged.object.clone(), claim.clone())) {
                        manifests.warnings.push(format!(
                            "{}: {}: claim {claim:?} is not bound yet and StorageClass {} binds Immediately: Karpenter waits for its volume before provisioning; kerf plans within the class's zones ({}), and the volume may land in another of them",
                            self.sources[staged.source].source,
                            staged.object,
                            immediate.class,
                            immediate.zones.values().map_or_else(
                                || "any".to_string(),
                                |v| v.iter().cloned().collect::<Vec<_>>().join(", ")
                            ),
                        ));
                    }
                }
            }
        }
        for staged in &mut pods {
            match std::mem::replace(&mut staged.priority, PriorityFrom::Explicit) {
                PriorityFrom::Explicit => {}
                PriorityFrom::Default => staged.pod.priority = self.default_priority.unwrap_or(0),
                PriorityFrom::Class(class) => {
                    let value = builtin_priority(&class)
                        .or_else(|| self.priority_classes.get(&class).copied());
                    match value {
                        Some(value) => staged.pod.priority = value,
                        // The class may exist in the cluster without being in the input;
                        // the API server would resolve it, kerf can only say it did not.
                        None if !reported.insert((
                            staged.source,
                            staged.object.clone(),
                            class.clone(),
                        )) => {}
                        None => manifests.warnings.push(format!(
                            "{}: {}: {}.priorityClassName {class:?} is not among the PriorityClasses read; using priority 0",
                            self.sources[staged.source].source, staged.object, staged.spec_path
                        )),
                    }
                }
            }
            let mut pinned = BTreeSet::new();
            for claim in &staged.claims {
                if let Some(zone) = self.volumes.zone_of_claim(&staged.pod.key.namespace, claim) {
                    volumes::pin_zone(&mut staged.pod, claim, zone);
                    pinned.insert(format!(
                        "{claim:?} ({})",
                        zone.values().map_or_else(
                            || "a zone".to_string(),
                            |v| v.iter().cloned().collect::<Vec<_>>().join(" or ")
                        )
                    ));
                }
            }
            let no_zone_left = staged.pod.volume_requirements().is_some_and(|volumes| {
                let any_node = [kerf_model::Requirements::new()];
                let required = &staged.pod.node_affinity.required;
                let terms = if required.is_empty() {
                    &any_node[..]
                } else {
                    required
                };
                terms.iter().all(|term| {
                    term.intersection(&volumes)
                        .get(kerf_model::labels::ZONE)
                        .is_some_and(|r| !r.allows_some_value())
                })
            });
            if !pinned.is_empty()
                && no_zone_left
                && staged.role == PodRole::Pending
                && reported.insert((staged.source, staged.object.clone(), "volume zone".into()))
            {
                manifests.warnings.push(format!(
                    "{}: {}: no zone satisfies both its node selector or affinity and its bound volumes' zones (claims {}): its pods cannot be scheduled",
                    self.sources[staged.source].source,
                    staged.object,
                    pinned.into_iter().collect::<Vec<_>>().join(", "),
                ));
            }
            if !self.declared_namespaces.contains(&staged.pod.key.namespace) {
                manifests
                    .namespaces
                    .entry(staged.pod.key.namespace.clone())
                    .or_insert_with(|| {
                        nodes::automatic_namespace_labels(&staged.pod.key.namespace)
                    });
            }
        }
        for staged in pods {
            match staged.role {
                PodRole::Pending => manifests.pending_pods.push(staged.pod),
                PodRole::Bound => manifests.bound_pods.push(staged.pod),
                PodRole::DaemonSet => manifests.daemonsets.push(staged.pod),
            }
        }
        manifests.nodes.sort_by(|a, b| a.name.cmp(&b.name));
        manifests.nodepools.sort_by(|a, b| a.name.cmp(&b.name));
        manifests.nodeclaims.sort_by(|a, b| a.name.cmp(&b.name));
        manifests
            .pdbs
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        manifests.node_classes.sort();

        let invalid: Vec<SourceError> = self
            .sources
            .into_iter()
            .filter(|s| !s.errors.is_empty() || !s.syntax.is_empty())
            .collect();
        if !invalid.is_empty() {
            Err(Error::Invalid(invalid))
        } else if self.n_objects == 0 {
            Err(Error::NoObjects(self.inputs))
        } else {
            Ok(manifests)
        }
    }
}

/// Objects of one kind kerf skips, counted for a single warning.
struct Skipped {
    count: usize,
    sources: BTreeSet<usize>,
    /// `Kind namespace/name` of the first, named when it is the only one.
    first: String,
    /// Its line in `Manifests::warnings`.
    slot: usize,
}

impl Loader {
    /// Adds the RuntimeClass's `overhead.podFixed` to the requests of a pod that names the
    /// class and sets no overhead, as the RuntimeClass admission controller does.
    fn runtime_overhead(
        &self,
        staged: &mut StagedPod,
        reported: &mut BTreeSet<(usize, String, String)>,
        warnings: &mut Vec<String>,
    ) {
        let Some(class) = staged.runtime_class.take() else {
            return;
        };
        match self.runtime_classes.get(&class) {
            Some(overhead) => staged.pod.requests.add(overhead),
            None => {
                if reported.insert((staged.source, staged.object.clone(), class.clone())) {
                    warnings.push(format!(
                        "{}: {}: {}.runtimeClassName {class:?} is not among the RuntimeClasses read; its overhead is not counted",
                        self.sources[staged.source].source, staged.object, staged.spec_path
                    ));
                }
            }
        }
    }
}

/// The object being converted, for converters that stage pods.
pub(crate) struct ObjectRef<'a> {
    pub(crate) source: usize,
    /// `Kind namespace/name`.
    pub(crate) label: &'a str,
    pub(crate) namespace: &'a str,
    pub(crate) name: &'a str,
}

/// Deserializes a typed object, naming the failing field when the document does not fit
/// and every field the type does not have (kubectl's strict validation).
fn typed<T: DeserializeOwned + JsonSchema>(value: &Value, problems: &mut Problems) -> Option<T> {
    let mut unknown = Vec::new();
    let mut record = |path: serde_ignored::Path<'_>| {
        let steps = strict::steps(&path);
        if strict::is_checked(&steps) {
            unknown.push(steps);
        }
    };
    let result = serde_path_to_error::deserialize::<_, T>(serde_ignored::Deserializer::new(
        value,
        &mut record,
    ));
    // An object the API server has stored (it carries a uid or resourceVersion) was
    // valid there: a field kerf does not know comes from a newer Kubernetes or Karpenter
    // than the schemas kerf reads with, not from a typo, and is worth a warning only.
    let from_cluster = value
        .get("metadata")
        .is_some_and(|m| m.get("uid").is_some() || m.get("resourceVersion").is_some());
    for steps in &unknown {
        let error = FieldError::new(
            problems.object.clone(),
            strict::render(steps),
            strict::message::<T>(steps),
        );
        if from_cluster {
            problems.warnings.push(error);
        } else {
            problems.errors.push(error);
        }
    }
    match result {
        Ok(object) => Some(object),
        Err(e) => {
            problems.push(
                e.path().to_string(),
                plain_type_names(&e.inner().to_string()),
            );
            None
        }
    }
}

/// serde's message with Rust's type names in Kubernetes' words: `expected i32` reads
/// `expected an integer`, `expected Quantity` reads `expected a quantity such as "500m"`.
fn plain_type_names(message: &str) -> String {
    let Some((head, expected)) = message.split_once(", expected ") else {
        return message.to_string();
    };
    let plain = match expected {
        "i32" | "i64" | "u32" | "u64" | "u16" | "u8" | "i16" | "i8" => "an integer",
        "f32" | "f64" => "a number",
        "a boolean" | "bool" => "true or false",
        "Quantity" => "a quantity such as \"500m\", \"2\" or \"1.5Gi\"",
        "IntOrString" => "an integer or a string such as \"10%\"",
        other => other,
    };
    format!("{head}, expected {plain}")
}

/// The priority classes every cluster has, which need no object in the input.
pub(crate) fn builtin_priority(class: &str) -> Option<i32> {
    match class {
        "system-node-critical" => Some(2_000_001_000),
        "system-cluster-critical" => Some(2_000_000_000),
        _ => None,
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::plain_type_names;

    #[test]
    fn type_errors_read_in_kubernetes_words() {
        assert_eq!(
            plain_type_names("invalid type: string \"high\", expected i32"),
            "invalid type: string \"high\", expected an integer"
        );
        assert_eq!(
            plain_type_names("invalid type: sequence, expected a map"),
            "invalid type: sequence, expected a map"
        );
        assert_eq!(
            plain_type_names("missing field `name`"),
            "missing field `name`"
        );
    }
}
