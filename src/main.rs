//! The `crmflow` binary: parses the command line, loads configuration, installs telemetry and
//! hands over to the library. `anyhow` lives here and in tests only.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crmflow::config::Config;

#[derive(Parser)]
#[command(
    name = "crmflow",
    version,
    about = "CRM change-data-capture into PostgreSQL and pgvector, through Kafka"
)]
struct Cli {
    /// TOML configuration file (default: $CRMFLOW_CONFIG, else ./crmflow.toml when present).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply database migrations (also done at start-up by `run`).
    Migrate,
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Create the Kafka topics of this deployment (also done at start-up by `run`).
    Topics,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration (defaults < file < environment), secrets redacted.
    Check,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let cfg = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let _telemetry = match crmflow::telemetry::init(&cfg.telemetry) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("telemetry setup failed: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(cli.command, cfg).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, cfg: Config) -> anyhow::Result<()> {
    match command {
        Command::Migrate => {
            let applied = crmflow::store::migrate(&cfg).await.context("migrate")?;
            if applied.is_empty() {
                println!("schema {} is up to date", cfg.postgres.schema);
            } else {
                println!("applied: {}", applied.join(", "));
            }
        }
        Command::Config {
            command: ConfigCommand::Check,
        } => {
            print!("{}", cfg.redacted_toml());
        }
        Command::Topics => {
            let specs = crmflow::pipeline::topic_specs(&cfg);
            crmflow::kafka::ensure_topics(&cfg.kafka, &specs).await?;
            for s in specs {
                println!(
                    "{} partitions={} compacted={}",
                    s.name, s.partitions, s.compacted
                );
            }
        }
    }
    Ok(())
}
