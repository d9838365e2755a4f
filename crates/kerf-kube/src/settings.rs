//! `kerf controller`'s settings: every one a flag and also Karpenter's environment
//! variable, with Karpenter's default, so a Karpenter Deployment's `env` carries over.
//! A bad value is an error naming the setting and what is valid.

use std::time::Duration;

use clap::Args;

/// The flags of `kerf controller`.
#[derive(Args, Clone, Debug)]
pub struct ControllerArgs {
    /// The cloud provider: `kwok` (fake nodes, no cloud) or `aws`.
    #[arg(long, env = "CLOUD_PROVIDER", default_value = "kwok")]
    pub cloud_provider: String,
    /// The cluster's name (tags, the instance profile, discovery).
    #[arg(long, env = "CLUSTER_NAME", default_value = "")]
    pub cluster_name: String,
    /// How long the batch waits after the last pending pod before solving.
    #[arg(long, env = "BATCH_IDLE_DURATION", default_value = "1s")]
    pub batch_idle_duration: String,
    /// The longest a batch stays open.
    #[arg(long, env = "BATCH_MAX_DURATION", default_value = "10s")]
    pub batch_max_duration: String,
    /// Comma-separated `Gate=true|false`, e.g. `SpotToSpotConsolidation=true`.
    #[arg(long, env = "FEATURE_GATES", default_value = "")]
    pub feature_gates: String,
    /// `Respect` or `Ignore` preferred affinities and ScheduleAnyway spreads.
    #[arg(long, env = "PREFERENCE_POLICY", default_value = "Respect")]
    pub preference_policy: String,
    /// Turn leader election off (one replica only).
    #[arg(long, env = "DISABLE_LEADER_ELECTION", default_value = "false")]
    pub disable_leader_election: String,
    #[arg(
        long,
        env = "LEADER_ELECTION_NAME",
        default_value = "karpenter-leader-election"
    )]
    pub leader_election_name: String,
    /// Empty: the namespace kerf runs in (`SYSTEM_NAMESPACE`, else the service
    /// account's), else `kube-system`.
    #[arg(long, env = "LEADER_ELECTION_NAMESPACE", default_value = "")]
    pub leader_election_namespace: String,
    #[arg(long, env = "METRICS_PORT", default_value = "8080")]
    pub metrics_port: String,
    #[arg(long, env = "HEALTH_PROBE_PORT", default_value = "8081")]
    pub health_probe_port: String,
    /// `debug`, `info`, `warn` or `error`.
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Write logs as JSON lines (as Karpenter's) instead of text.
    #[arg(long, env = "LOG_JSON", default_value = "false")]
    pub log_json: String,
    #[arg(long, env = "KUBE_CLIENT_QPS", default_value = "200")]
    pub kube_client_qps: String,
    #[arg(long, env = "KUBE_CLIENT_BURST", default_value = "300")]
    pub kube_client_burst: String,
    /// AWS: the cluster's VPC has no route to the internet, so the Pricing API is not
    /// called and on-demand prices are the fallback table's (Karpenter's `ISOLATED_VPC`).
    #[arg(long, env = "ISOLATED_VPC", default_value = "false")]
    pub isolated_vpc: String,
    /// This replica's identity in the lease; default the hostname (the pod name).
    #[arg(long, env = "POD_NAME", default_value = "")]
    pub identity: String,
}

/// The settings, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub cloud_provider: CloudProviderName,
    pub cluster_name: String,
    pub batch_idle: Duration,
    pub batch_max: Duration,
    pub spot_to_spot: bool,
    pub ignore_preferences: bool,
    pub leader_election: bool,
    pub leader_election_name: String,
    pub leader_election_namespace: String,
    pub metrics_port: u16,
    pub health_probe_port: u16,
    pub log_level: tracing::Level,
    pub log_json: bool,
    pub qps: u32,
    pub burst: u32,
    pub identity: String,
    pub isolated_vpc: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloudProviderName {
    Kwok,
    Aws,
}

/// A setting with a value it cannot take.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{setting}: {value:?} is not valid: {expected}")]
pub struct SettingError {
    pub setting: &'static str,
    pub value: String,
    pub expected: String,
}

fn bad(setting: &'static str, value: &str, expected: impl Into<String>) -> SettingError {
    SettingError {
        setting,
        value: value.to_string(),
        expected: expected.into(),
    }
}

fn duration(setting: &'static str, value: &str) -> Result<Duration, SettingError> {
    kerf_api::crd::duration::parse_with_units(value, &["h", "m", "s", "ms"])
        .map_err(|_| bad(setting, value, "a Go duration such as 1s, 500ms or 2m"))
}

fn boolean(setting: &'static str, value: &str) -> Result<bool, SettingError> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" | "" => Ok(false),
        _ => Err(bad(setting, value, "true or false")),
    }
}

fn number<T: std::str::FromStr>(setting: &'static str, value: &str) -> Result<T, SettingError> {
    value
        .parse()
        .map_err(|_| bad(setting, value, "a whole number"))
}

impl ControllerArgs {
    pub fn settings(&self) -> Result<Settings, SettingError> {
        let cloud_provider = match self.cloud_provider.as_str() {
            "kwok" => CloudProviderName::Kwok,
            "aws" => CloudProviderName::Aws,
            other => return Err(bad("CLOUD_PROVIDER", other, "kwok or aws")),
        };
        let mut spot_to_spot = false;
        for gate in self
            .feature_gates
            .split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
        {
            let Some((name, value)) = gate.split_once('=') else {
                return Err(bad(
                    "FEATURE_GATES",
                    gate,
                    "Name=true or Name=false, comma-separated",
                ));
            };
            let on = boolean("FEATURE_GATES", value)?;
            match name {
                "SpotToSpotConsolidation" => spot_to_spot = on,
                // Karpenter's other gates, accepted so its env carries over; kerf has
                // no behaviour behind them yet.
                "NodeRepair" | "ReservedCapacity" | "NodeOverlay" | "StaticCapacity" => {}
                other => {
                    return Err(bad(
                        "FEATURE_GATES",
                        other,
                        "one of SpotToSpotConsolidation, NodeRepair, ReservedCapacity, NodeOverlay, StaticCapacity",
                    ));
                }
            }
        }
        let ignore_preferences = match self.preference_policy.as_str() {
            "Respect" => false,
            "Ignore" => true,
            other => return Err(bad("PREFERENCE_POLICY", other, "Respect or Ignore")),
        };
        let log_level = match self.log_level.to_ascii_lowercase().as_str() {
            "debug" => tracing::Level::DEBUG,
            "info" => tracing::Level::INFO,
            "warn" => tracing::Level::WARN,
            "error" => tracing::Level::ERROR,
            other => return Err(bad("LOG_LEVEL", other, "debug, info, warn or error")),
        };
        let batch_idle = duration("BATCH_IDLE_DURATION", &self.batch_idle_duration)?;
        let batch_max = duration("BATCH_MAX_DURATION", &self.batch_max_duration)?;
        if batch_max < batch_idle {
            return Err(bad(
                "BATCH_MAX_DURATION",
                &self.batch_max_duration,
                format!(
                    "at least BATCH_IDLE_DURATION ({})",
                    self.batch_idle_duration
                ),
            ));
        }
        let namespace = if self.leader_election_namespace.is_empty() {
            std::env::var("SYSTEM_NAMESPACE")
                .ok()
                .filter(|n| !n.is_empty())
                .or_else(|| {
                    std::fs::read_to_string(
                        "/var/run/secrets/kubernetes.io/serviceaccount/namespace",
                    )
                    .ok()
                    .map(|n| n.trim().to_string())
                })
                .unwrap_or_else(|| "kube-system".to_string())
        } else {
            self.leader_election_namespace.clone()
        };
        let identity = if self.identity.is_empty() {
            std::env::var("HOSTNAME")
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| format!("kerf-{}", std::process::id()))
        } else {
            self.identity.clone()
        };
        Ok(Settings {
            cloud_provider,
            cluster_name: self.cluster_name.clone(),
            batch_idle,
            batch_max,
            spot_to_spot,
            ignore_preferences,
            leader_election: !boolean("DISABLE_LEADER_ELECTION", &self.disable_leader_election)?,
            leader_election_name: self.leader_election_name.clone(),
            leader_election_namespace: namespace,
            metrics_port: number("METRICS_PORT", &self.metrics_port)?,
            health_probe_port: number("HEALTH_PROBE_PORT", &self.health_probe_port)?,
            log_level,
            log_json: boolean("LOG_JSON", &self.log_json)?,
            qps: number("KUBE_CLIENT_QPS", &self.kube_client_qps)?,
            burst: number("KUBE_CLIENT_BURST", &self.kube_client_burst)?,
            identity,
            isolated_vpc: boolean("ISOLATED_VPC", &self.isolated_vpc)?,
        })
    }
}

impl Settings {
    /// The loops' configuration for these settings.
    pub fn controller_config(&self) -> kerf_controllers::Config {
        let mut config = kerf_controllers::Config {
            batch_idle_ms: self.batch_idle.as_millis() as i64,
            batch_max_ms: self.batch_max.as_millis() as i64,
            ..kerf_controllers::Config::default()
        };
        config.disruption.spot_to_spot = self.spot_to_spot;
        if self.ignore_preferences {
            config.scheduling.preference_policy = kerf_scheduling::PreferencePolicy::Ignore;
            config.disruption.scheduling.preference_policy =
                kerf_scheduling::PreferencePolicy::Ignore;
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ControllerArgs,
    }

    fn parse(args: &[&str]) -> Result<Settings, SettingError> {
        Cli::try_parse_from(std::iter::once("kerf").chain(args.iter().copied()))
            .unwrap()
            .args
            .settings()
    }

    #[test]
    fn karpenter_defaults() {
        let s = parse(&[]).unwrap();
        assert_eq!(s.batch_idle, Duration::from_secs(1));
        assert_eq!(s.batch_max, Duration::from_secs(10));
        assert_eq!((s.metrics_port, s.health_probe_port), (8080, 8081));
        assert_eq!(s.leader_election_name, "karpenter-leader-election");
        assert_eq!((s.qps, s.burst), (200, 300));
        assert!(s.leader_election && !s.spot_to_spot && !s.ignore_preferences);
        assert!(!s.isolated_vpc);
    }

    #[test]
    fn isolated_vpc_is_a_flag_and_karpenters_variable() {
        assert!(parse(&["--isolated-vpc", "true"]).unwrap().isolated_vpc);
        assert_eq!(
            parse(&["--isolated-vpc", "yes"]).unwrap_err().setting,
            "ISOLATED_VPC"
        );
        let arg = <Cli as clap::CommandFactory>::command()
            .get_arguments()
            .find(|a| a.get_id() == "isolated_vpc")
            .map(|a| a.get_env().map(|e| e.to_os_string()))
            .unwrap();
        assert_eq!(arg.as_deref(), Some(std::ffi::OsStr::new("ISOLATED_VPC")));
    }

    #[test]
    fn bad_values_name_the_setting() {
        let e = parse(&["--batch-idle-duration", "soon"]).unwrap_err();
        assert_eq!(e.setting, "BATCH_IDLE_DURATION");
        let e = parse(&["--feature-gates", "SpotToSpot=true"]).unwrap_err();
        assert_eq!(e.setting, "FEATURE_GATES");
        assert!(e.expected.contains("SpotToSpotConsolidation"));
        let e = parse(&["--preference-policy", "respect"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "PREFERENCE_POLICY: \"respect\" is not valid: Respect or Ignore"
        );
        assert!(
            parse(&["--feature-gates", "SpotToSpotConsolidation=true"])
                .unwrap()
                .spot_to_spot
        );
    }
}
