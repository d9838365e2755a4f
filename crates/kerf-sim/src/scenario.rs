//! Scenario files: the starting cluster (the same manifests `kerf plan` reads), the
//! catalog, the cloud's behaviour, a duration, a seed and a timeline of events. The
//! format is documented in `docs/simulate.md`. A scenario is read and checked once, here;
//! the engine never re-checks it.

use std::path::{Path, PathBuf};

use kerf_api::Manifests;
use kerf_cloud::{Latency, Shortage, SimCloudConfig};
use kerf_model::InstanceType;
use serde::Deserialize;

/// A scenario that cannot run, with the file, the field and what would be valid.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: not valid YAML: {message}")]
    Yaml { file: String, message: String },
    #[error("{file}: {field}: {message}")]
    Field {
        file: String,
        field: String,
        message: String,
    },
    #[error("{file}: {field}: the manifests are invalid")]
    Manifests {
        file: String,
        field: String,
        #[source]
        source: kerf_api::Error,
    },
}

// ---- The wire shape (YAML). -------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: Option<String>,
    /// RFC 3339; default 2026-11-24T00:00:00Z.
    start: Option<String>,
    duration: String,
    #[serde(default)]
    seed: u64,
    catalog: Option<String>,
    /// Manifest files or directories, relative to the scenario file.
    #[serde(default)]
    manifests: Vec<String>,
    /// Inline manifests (a multi-document YAML string).
    cluster: Option<String>,
    sample_interval: Option<String>,
    #[serde(default)]
    controller: ControllerSpec,
    #[serde(default)]
    cloud: CloudSpec,
    /// `timeline:` with nothing under it is an empty timeline.
    #[serde(default)]
    timeline: Option<Vec<Entry>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ControllerSpec {
    batch_idle: Option<String>,
    batch_max: Option<String>,
    #[serde(default)]
    spot_to_spot: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CloudSpec {
    boot: Option<LatencySpec>,
    registration: Option<LatencySpec>,
    shutdown: Option<LatencySpec>,
    spot_interruptions_per_hour: Option<f64>,
    #[serde(default)]
    shortages: Vec<ShortageSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LatencySpec {
    min: String,
    max: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShortageSpec {
    instance_type: Option<String>,
    zone: Option<String>,
    capacity_type: Option<String>,
    /// Default: from the entry's time (or the start).
    from: Option<String>,
    /// How long it lasts; default until the end.
    #[serde(rename = "for")]
    lasts: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    at: String,
    apply: Option<String>,
    apply_file: Option<String>,
    delete: Option<DeleteSpec>,
    scale: Option<ScaleSpec>,
    curve: Option<CurveSpec>,
    publish_ami: Option<AmiSpec>,
    interrupt: Option<InterruptSpec>,
    maintenance: Option<InterruptSpec>,
    shortage: Option<ShortageSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteSpec {
    kind: String,
    #[serde(default = "default_namespace")]
    namespace: String,
    name: String,
}

fn default_namespace() -> String {
    "default".to_string()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScaleSpec {
    /// `namespace/name` of a Deployment, StatefulSet or ReplicaSet.
    workload: String,
    replicas: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CurveSpec {
    workload: String,
    min: u32,
    max: u32,
    /// Hour of the day (UTC, 0–24) when replicas peak.
    peak_hour: f64,
    /// How often replicas are re-set; default 10m.
    every: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AmiSpec {
    nodeclass: String,
    image: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InterruptSpec {
    #[serde(default = "one")]
    count: u32,
    nodepool: Option<String>,
    capacity_type: Option<String>,
}

fn one() -> u32 {
    1
}

// ---- The checked scenario. --------------------------------------------------------

/// A scenario ready to run. Times are milliseconds from the start.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: String,
    /// Unix seconds at time 0.
    pub epoch_secs: i64,
    pub duration_ms: i64,
    pub seed: u64,
    pub instance_types: Vec<InstanceType>,
    pub initial: Manifests,
    pub cloud: SimCloudConfig,
    pub batch_idle_ms: i64,
    pub batch_max_ms: i64,
    pub spot_to_spot: bool,
    pub sample_interval_ms: i64,
    /// In time order (stable for equal times).
    pub timeline: Vec<(i64, Happening)>,
}

/// A timeline event.
#[derive(Clone, Debug)]
pub enum Happening {
    Apply(Box<Manifests>),
    Delete {
        kind: String,
        namespace: String,
        name: String,
    },
    Scale {
        workload: String,
        replicas: u32,
    },
    Curve {
        workload: String,
        curve: Curve,
    },
    PublishAmi {
        nodeclass: String,
        image: String,
    },
    Interrupt(Selection),
    Maintenance(Selection),
    Shortage(Shortage),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Curve {
    pub min: u32,
    pub max: u32,
    pub peak_hour: f64,
    pub every_ms: i64,
}

impl Curve {
    /// Replicas at `hour` of the day: a cosine from `min` (12 h from the peak) to `max`.
    pub fn replicas(&self, hour: f64) -> u32 {
        let phase = (hour - self.peak_hour) / 24.0 * std::f64::consts::TAU;
        let share = (1.0 + phase.cos()) / 2.0;
        (f64::from(self.min) + f64::from(self.max.saturating_sub(self.min)) * share).round() as u32
    }
}

/// Which instances an interruption hits.
#[derive(Clone, Debug)]
pub struct Selection {
    pub count: u32,
    pub nodepool: Option<String>,
    pub capacity_type: Option<String>,
}

/// `1h30m`, `45s`, `500ms`, `2d`: milliseconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let bad =
        || format!("{text:?} is not a duration; expected e.g. \"90s\", \"15m\", \"1h30m\", \"2d\"");
    let mut total = 0i64;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(bad)?;
        let number: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => 1.0,
            "s" => 1_000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            "d" => 86_400_000.0,
            _ => return Err(bad()),
        };
        total += (number * unit).round() as i64;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// Reads a scenario file; manifests it names are read relative to it.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "scenario".into());
    parse(
        &path.display().to_string(),
        &stem,
        path.parent().unwrap_or(Path::new(".")),
        &text,
    )
}

/// Parses scenario text; `file` names it in errors, `dir` resolves manifest paths.
pub fn parse(
    file: &str,
    default_name: &str,
    dir: &Path,
    text: &str,
) -> Result<Scenario, ScenarioError> {
    let value: serde_json::Value =
        serde_saphyr::from_str(text).map_err(|e| ScenarioError::Yaml {
            file: file.to_string(),
            message: e.to_string(),
        })?;
    let raw: File = serde_path_to_error::deserialize(value).map_err(|e| ScenarioError::Field {
        file: file.to_string(),
        field: e.path().to_string(),
        message: e.into_inner().to_string(),
    })?;
    let field = |field: &str, message: String| ScenarioError::Field {
        file: file.to_string(),
        field: field.to_string(),
        message,
    };
    let duration = |name: &str, text: &str| parse_duration(text).map_err(|m| field(name, m));

    let start = raw.start.as_deref().unwrap_or("2026-11-24T00:00:00Z");
    let epoch_secs = start
        .parse::<jiff::Timestamp>()
        .map_err(|_| {
            field(
                "start",
                format!("{start:?} is not an RFC 3339 time such as 2026-11-24T00:00:00Z"),
            )
        })?
        .as_second();
    let duration_ms = duration("duration", &raw.duration)?;
    if duration_ms <= 0 {
        return Err(field("duration", "must be positive".into()));
    }
    let catalog = raw.catalog.as_deref().unwrap_or("aws");
    let instance_types =
        kerf_model::catalog::by_name(catalog).map_err(|e| field("catalog", e.to_string()))?;

    let mut paths: Vec<PathBuf> = raw.manifests.iter().map(|m| dir.join(m)).collect();
    let mut initial = if paths.is_empty() {
        Manifests::default()
    } else {
        paths.sort();
        kerf_api::load_paths(&paths).map_err(|source| ScenarioError::Manifests {
            file: file.to_string(),
            field: "manifests".into(),
            source,
        })?
    };
    if let Some(cluster) = &raw.cluster {
        let inline =
            kerf_api::load_str(&format!("{file} (cluster)"), cluster).map_err(|source| {
                ScenarioError::Manifests {
                    file: file.to_string(),
                    field: "cluster".into(),
                    source,
                }
            })?;
        if paths.is_empty() {
            initial = inline;
        } else {
            return Err(field(
                "cluster",
                "give the starting cluster as `manifests` or `cluster`, not both".into(),
            ));
        }
    }

    let latency = |name: &str, spec: &Option<LatencySpec>, default: Latency| match spec {
        None => Ok(default),
        Some(s) => Ok(Latency {
            min: duration(&format!("cloud.{name}.min"), &s.min)?,
            max: duration(&format!("cloud.{name}.max"), &s.max)?,
        }),
    };
    let defaults = SimCloudConfig::default();
    let shortage = |at: i64, name: &str, s: &ShortageSpec| -> Result<Shortage, ScenarioError> {
        let from = match &s.from {
            Some(f) => duration(&format!("{name}.from"), f)?,
            None => at,
        };
        let to = match &s.lasts {
            Some(l) => from + duration(&format!("{name}.for"), l)?,
            None => i64::MAX,
        };
        Ok(Shortage {
            instance_type: s.instance_type.clone(),
            zone: s.zone.clone(),
            capacity_type: s.capacity_type.clone(),
            from,
            to,
        })
    };
    let cloud = SimCloudConfig {
        seed: raw.seed,
        boot: latency("boot", &raw.cloud.boot, defaults.boot)?,
        registration: latency(
            "registration",
            &raw.cloud.registration,
            defaults.registration,
        )?,
        shutdown: latency("shutdown", &raw.cloud.shutdown, defaults.shutdown)?,
        spot_interruption_rate: raw.cloud.spot_interruptions_per_hour.unwrap_or(0.0),
        rebalance_share: defaults.rebalance_share,
        shortages: raw
            .cloud
            .shortages
            .iter()
            .enumerate()
            .map(|(i, s)| shortage(0, &format!("cloud.shortages[{i}]"), s))
            .collect::<Result<_, _>>()?,
    };

    let mut timeline = Vec::new();
    for (i, e) in raw.timeline.iter().flatten().enumerate() {
        let name = format!("timeline[{i}]");
        let at = duration(&format!("{name}.at"), &e.at)?;
        let mut happenings = Vec::new();
        if let Some(text) = &e.apply {
            let m =
                kerf_api::load_str(&format!("{file} ({name}.apply)"), text).map_err(|source| {
                    ScenarioError::Manifests {
                        file: file.to_string(),
                        field: format!("{name}.apply"),
                        source,
                    }
                })?;
            happenings.push(Happening::Apply(Box::new(m)));
        }
        if let Some(path) = &e.apply_file {
            let m = kerf_api::load_paths(&[dir.join(path)]).map_err(|source| {
                ScenarioError::Manifests {
                    file: file.to_string(),
                    field: format!("{name}.apply_file"),
                    source,
                }
            })?;
            happenings.push(Happening::Apply(Box::new(m)));
        }
        if let Some(d) = &e.delete {
            happenings.push(Happening::Delete {
                kind: d.kind.clone(),
                namespace: d.namespace.clone(),
                name: d.name.clone(),
            });
        }
        if let Some(s) = &e.scale {
            happenings.push(Happening::Scale {
                workload: qualified(&s.workload),
                replicas: s.replicas,
            });
        }
        if let Some(c) = &e.curve {
            if c.min > c.max {
                return Err(field(
                    &format!("{name}.curve"),
                    format!("min {} is above max {}", c.min, c.max),
                ));
            }
            let every_ms = match &c.every {
                Some(t) => duration(&format!("{name}.curve.every"), t)?,
                None => 600_000,
            };
            if every_ms <= 0 {
                return Err(field(
                    &format!("{name}.curve.every"),
                    "must be positive".into(),
                ));
            }
            happenings.push(Happening::Curve {
                workload: qualified(&c.workload),
                curve: Curve {
                    min: c.min,
                    max: c.max,
                    peak_hour: c.peak_hour,
                    every_ms,
                },
            });
        }
        if let Some(a) = &e.publish_ami {
            happenings.push(Happening::PublishAmi {
                nodeclass: a.nodeclass.clone(),
                image: a.image.clone(),
            });
        }
        let selection = |s: &InterruptSpec| Selection {
            count: s.count,
            nodepool: s.nodepool.clone(),
            capacity_type: s.capacity_type.clone(),
        };
        if let Some(s) = &e.interrupt {
            happenings.push(Happening::Interrupt(selection(s)));
        }
        if let Some(s) = &e.maintenance {
            happenings.push(Happening::Maintenance(selection(s)));
        }
        if let Some(s) = &e.shortage {
            happenings.push(Happening::Shortage(shortage(
                at,
                &format!("{name}.shortage"),
                s,
            )?));
        }
        if happenings.len() != 1 {
            return Err(field(
                &name,
                format!(
                    "has {} events; each entry holds exactly one of: apply, apply_file, delete, scale, curve, publish_ami, interrupt, maintenance, shortage",
                    happenings.len()
                ),
            ));
        }
        timeline.push((at, happenings.remove(0)));
    }
    timeline.sort_by_key(|(at, _)| *at);

    Ok(Scenario {
        name: raw.name.unwrap_or_else(|| default_name.to_string()),
        epoch_secs,
        duration_ms,
        seed: raw.seed,
        instance_types,
        initial,
        cloud,
        batch_idle_ms: match &raw.controller.batch_idle {
            Some(t) => duration("controller.batch_idle", t)?,
            None => 1_000,
        },
        batch_max_ms: match &raw.controller.batch_max {
            Some(t) => duration("controller.batch_max", t)?,
            None => 10_000,
        },
        spot_to_spot: raw.controller.spot_to_spot,
        sample_interval_ms: match &raw.sample_interval {
            Some(t) => duration("sample_interval", t)?.max(1_000),
            None => 300_000,
        },
        timeline,
    })
}

/// `web` is `default/web`.
fn qualified(workload: &str) -> String {
    if workload.contains('/') {
        workload.to_string()
    } else {
        format!("default/{workload}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration("500ms"), Ok(500));
        assert_eq!(parse_duration("2d"), Ok(172_800_000));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("10").is_err());
    }

    #[test]
    fn curve_peaks_and_troughs() {
        let c = Curve {
            min: 10,
            max: 60,
            peak_hour: 14.0,
            every_ms: 1,
        };
        assert_eq!(c.replicas(14.0), 60);
        assert_eq!(c.replicas(2.0), 10);
    }

    #[test]
    fn errors_name_the_field() {
        let err = parse(
            "s.yaml",
            "s",
            Path::new("."),
            "duration: 1h\ntimeline:\n  - at: 5x\n    scale: {workload: web, replicas: 3}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("s.yaml: timeline[0].at:"), "{err}");
        let err = parse("s.yaml", "s", Path::new("."), "duration: 1h\nseeds: 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("seeds"), "{err}");
    }
}
