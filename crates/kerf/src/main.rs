//! `kerf`: plan, disrupt, simulate, and print the CRDs kerf serves.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{CommandFactory as _, Parser, Subcommand, ValueEnum};

/// `kerf plan`'s exit code when some pod cannot be placed (the plan is still printed):
/// a script can tell "planned everything" (0) from "planned, but not everything" (2)
/// and from an error (1).
const EXIT_UNSCHEDULABLE: i32 = 2;

#[derive(Parser)]
#[command(
    name = "kerf",
    version,
    about = "A Kubernetes node autoscaler, API-compatible with Karpenter v1"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Dry run: which NodeClaims would be launched for the pending pods in these
    /// manifests, where each pod goes, what it costs, and why any pod cannot be placed.
    /// Exits 2 when some pod cannot be placed, 1 on an error.
    Plan {
        /// YAML or JSON files, directories, or - for stdin. Repeatable.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
        output: Output,
        /// The simulated instance catalog.
        #[arg(long, default_value = "aws", value_parser = clap::builder::PossibleValuesParser::new(kerf_model::catalog::NAMES))]
        catalog: String,
        /// Ignore preferred affinities and ScheduleAnyway spreads (Karpenter's
        /// --preference-policy=Ignore).
        #[arg(long)]
        ignore_preferences: bool,
    },
    /// Dry run of one disruption pass: which nodes would be removed or replaced
    /// (expiration, emptiness, drift, consolidation), where their pods go, what it saves,
    /// and why every other managed node is left alone.
    Disrupt {
        /// YAML or JSON files, directories, or - for stdin. Repeatable.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
        output: Output,
        /// The time of the pass, RFC 3339 (e.g. 2026-11-24T12:00:00Z); default now.
        #[arg(long)]
        now: Option<String>,
        /// The simulated instance catalog.
        #[arg(long, default_value = "aws", value_parser = clap::builder::PossibleValuesParser::new(kerf_model::catalog::NAMES))]
        catalog: String,
        /// Allow replacing spot nodes with cheaper spot nodes (Karpenter's
        /// SpotToSpotConsolidation feature gate).
        #[arg(long)]
        spot_to_spot: bool,
    },
    /// Replay a scenario over virtual time through kerf's control loops on a simulated
    /// cloud; report cost, nodes, utilization, pod pending time and disruptions.
    Simulate(kerf::simulate::Args),
    /// Run the controller against a cluster: provision, disrupt and terminate nodes.
    /// The kubeconfig is found as kubectl finds it (KUBECONFIG, ~/.kube/config,
    /// in-cluster); every flag is also Karpenter's environment variable.
    Controller(Box<kerf_kube::ControllerArgs>),
    /// Print the CustomResourceDefinitions kerf serves, as YAML.
    Crds {
        /// Whose node class to include: `aws` (EC2NodeClass) or `kwok` (KWOKNodeClass).
        #[arg(long, default_value = "aws", value_parser = ["aws", "kwok"])]
        cloud_provider: String,
    },
    /// Print a shell completion script, e.g. `kerf completion bash > /etc/bash_completion.d/kerf`.
    Completion {
        /// bash, zsh or fish (elvish and powershell work too).
        shell: clap_complete::Shell,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
}

fn main() {
    match run(Cli::parse()) {
        Ok(0) => {}
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

/// Runs the command; the exit code on success.
fn run(cli: Cli) -> anyhow::Result<i32> {
    let mut stdout = std::io::stdout().lock();
    match cli.command {
        Command::Plan {
            files,
            output,
            catalog,
            ignore_preferences,
        } => {
            let manifests = kerf_api::load_paths(&files)?;
            for w in &manifests.warnings {
                eprintln!("warning: {w}");
            }
            for note in kerf::plan::leaving_notes(&manifests) {
                eprintln!("note: {note}");
            }
            let types = kerf_model::catalog::by_name(&catalog)?;
            let input = kerf::plan::input(manifests, types);
            let config = kerf_scheduling::Config {
                preference_policy: if ignore_preferences {
                    kerf_scheduling::PreferencePolicy::Ignore
                } else {
                    kerf_scheduling::PreferencePolicy::Respect
                },
                ..Default::default()
            };
            let plan = kerf_scheduling::solve(&input, &config);
            let text = match output {
                Output::Table => kerf::plan::render_table(&plan),
                Output::Json => kerf::plan::render_json(&plan),
            };
            stdout
                .write_all(text.as_bytes())
                .context("writing the plan")?;
            stdout.flush().context("writing the plan")?;
            if !plan.unschedulable.is_empty() {
                return Ok(EXIT_UNSCHEDULABLE);
            }
        }
        Command::Disrupt {
            files,
            output,
            now,
            catalog,
            spot_to_spot,
        } => {
            let now = match now {
                Some(text) => text.parse::<jiff::Timestamp>().with_context(|| {
                    format!("--now {text:?} is not an RFC 3339 time such as 2026-11-24T12:00:00Z")
                })?,
                // The only wall-clock read: decisions take the time as a parameter.
                None => jiff::Timestamp::now(),
            };
            let manifests = kerf_api::load_paths(&files)?;
            for w in &manifests.warnings {
                eprintln!("warning: {w}");
            }
            let types = kerf_model::catalog::by_name(&catalog)?;
            let snapshot = kerf::disrupt::snapshot(manifests, types);
            let config = kerf_disruption::Config {
                spot_to_spot,
                ..Default::default()
            };
            let outcome = kerf_disruption::compute_commands(&snapshot, now.as_second(), &config);
            let text = match output {
                Output::Table => kerf::disrupt::render_table(&outcome),
                Output::Json => kerf::disrupt::render_json(&outcome),
            };
            stdout
                .write_all(text.as_bytes())
                .context("writing the disruption pass")?;
        }
        Command::Simulate(args) => {
            let text = kerf::simulate::run(&args)?;
            stdout
                .write_all(text.as_bytes())
                .context("writing the summary")?;
        }
        Command::Controller(args) => {
            let settings = args.settings()?;
            kerf_kube::init_logging(&settings);
            // One thread (leader election has its own; see kerf_kube::run): kerf's
            // work is one loop over its view, and each thread glibc sees keeps an arena.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(kerf_kube::run(settings))?;
        }
        Command::Crds { cloud_provider } => {
            let yaml = if cloud_provider == "kwok" {
                kerf_api::crd::kwok_crds_yaml()
            } else {
                kerf_api::crd::crds_yaml()
            }
            .context("rendering the CRDs")?;
            stdout
                .write_all(yaml.as_bytes())
                .context("writing the CRDs")?;
        }
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "kerf", &mut stdout);
        }
    }
    stdout.flush().context("writing the output")?;
    Ok(0)
}
