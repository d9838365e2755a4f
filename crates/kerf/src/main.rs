//! `kerf`: plan, and print the CRDs kerf serves.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

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
    /// Print the CustomResourceDefinitions kerf serves, as YAML.
    Crds,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
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
        }
        Command::Crds => {
            let yaml = kerf_api::crd::crds_yaml().context("rendering the CRDs")?;
            stdout
                .write_all(yaml.as_bytes())
                .context("writing the CRDs")?;
        }
    }
    Ok(())
}
