//! The `crmflow` binary: parses the command line, loads configuration, installs telemetry and
//! hands over to the library. `anyhow` lives here and in tests only.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crmflow::config::Config;
use crmflow::runtime::StageName;
use crmflow::stages::replay::ReplayFrom;

/// mimalloc rather than the system allocator: the normalize stage allocates and frees a few
/// dozen strings per record on two threads, where glibc's malloc/free took a fifth of its CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Rewind a stage to an earlier point of its input topics (stopped or running).
    Replay {
        /// normalize, sink or embed.
        #[arg(long)]
        stage: StageName,
        /// `earliest`, an offset, or an RFC 3339 time.
        #[arg(long)]
        from: ReplayFrom,
        /// Only this partition (default: all).
        #[arg(long)]
        partition: Option<i32>,
    },
    /// Inspect and replay the dead-letter queue.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Embedding maintenance.
    Embed {
        #[command(subcommand)]
        command: EmbedCommand,
    },
    /// Run the embedding model locally.
    Ml {
        #[command(subcommand)]
        command: MlCommand,
    },
    /// Custom fields: check `[mapping]` against the CRMs' metadata, backfill a new attribute.
    Mapping {
        #[command(subcommand)]
        command: MappingCommand,
    },
    /// Run a simulator of an outside service.
    Sim {
        #[command(subcommand)]
        command: SimCommand,
    },
    /// One screen: each stage's lag and last error, each source's sync point and lag, and
    /// the dead-letter depth.
    Status {
        /// Print the status as JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Where a record came from: CRM version, raw and canonical offsets, the row, dead
    /// letters, vectors and matches, and its trace (read-only).
    Lineage {
        /// `<crm>:<entity>:<id>`, e.g. `bullhorn:candidate:4711` (entity: candidate or
        /// position, or the CRM's name such as JobOrder).
        record: crmflow::lineage::RecordRef,
        /// Print the journey as JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Compare each CRM's records (id, version, deleted) with Postgres and the DLQ, and repair
    /// what incremental capture missed: missing and stale records are re-read and emitted, records
    /// gone from the CRM get a tombstone, rows newer than the CRM are only reported. Repairs go
    /// through the raw topics (the running stages apply them). Resumes an interrupted run.
    Reconcile {
        /// Only this CRM (e.g. bullhorn).
        #[arg(long)]
        crm: Option<String>,
        /// Only this entity, as named in the raw topics (e.g. Candidate).
        #[arg(long)]
        entity: Option<String>,
        /// Report what differs without sending or recording anything.
        #[arg(long)]
        dry_run: bool,
        /// Print the report as JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// The whole pipeline on the local Kafka and PostgreSQL, with the Bullhorn and ML
    /// simulators in this process: live progress, then a summary read back from Postgres.
    Demo(crmflow::demo::DemoArgs),
    /// Chaos soak: every stage as its own process on the soak's own Kafka and PostgreSQL,
    /// SIGKILLed at random, broker and database crashes, CRM and ML fault storms; then a check
    /// against the simulators' ground truth (`scripts/soak` runs it).
    Soak(crmflow::soak::SoakArgs),
    /// Run pipeline stages (all of them by default) until SIGINT/SIGTERM.
    Run {
        /// Comma-separated: ingest, normalize, sink, embed, match.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "ingest,normalize,sink,embed,match"
        )]
        stages: Vec<StageName>,
        /// Comma-separated sources ingest reads (e.g. `bullhorn,hubspot`); every configured
        /// source by default.
        #[arg(long, value_delimiter = ',')]
        sources: Option<Vec<String>>,
        /// One-shot mode for schedulers: exit 0 once every source has caught up with its CRM
        /// and every listed stage has consumed its inputs to their end, all written.
        #[arg(long)]
        until_caught_up: bool,
    },
}

#[derive(clap::Args, Clone)]
struct DlqFilterArgs {
    /// Only dead letters of this stage (normalize, sink, embed).
    #[arg(long)]
    stage: Option<String>,
    /// Only dead letters that failed this rule.
    #[arg(long)]
    rule: Option<String>,
    /// Only dead letters written at or after this RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
}

impl DlqFilterArgs {
    fn to_filter(&self) -> anyhow::Result<crmflow::dlq::Filter> {
        let since_ms = match &self.since {
            Some(s) => Some(
                chrono::DateTime::parse_from_rfc3339(s)
                    .with_context(|| format!("--since {s:?} is not an RFC 3339 time"))?
                    .timestamp_millis(),
            ),
            None => None,
        };
        Ok(crmflow::dlq::Filter {
            stage: self.stage.clone(),
            rule: self.rule.clone(),
            since_ms,
        })
    }
}

#[derive(Subcommand)]
enum DlqCommand {
    /// One line per dead letter: position, time, stage, class, rule, reason, source.
    List {
        #[command(flatten)]
        filter: DlqFilterArgs,
        /// At most this many lines.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Headers and payload of one dead letter, given as PARTITION:OFFSET.
    Show { position: String },
    /// Send matching dead letters back to their source topic (each once).
    Replay {
        #[command(flatten)]
        filter: DlqFilterArgs,
        /// Say what would be replayed without sending anything.
        #[arg(long)]
        dry_run: bool,
        /// Refuse records already replayed this many times.
        #[arg(long, default_value_t = 3)]
        max_replays: u32,
    },
}

#[derive(Subcommand)]
enum EmbedCommand {
    /// Re-embed every live record in Postgres for the configured model (`ml.model`), skipping
    /// records whose vector is current; resumable. Prints {updated, skipped, failed,
    /// duration_seconds} as JSON.
    Backfill,
}

#[derive(Subcommand)]
enum MappingCommand {
    /// Check every `[mapping.<crm>.<entity>]` entry against the CRM's field metadata (Bullhorn
    /// meta/{entity}, HubSpot properties, Salesforce describe): one line per unknown field, wrong
    /// type or unreadable field; exit status 1 when there is any.
    Check,
    /// Fill a newly mapped attribute on the stored rows: re-reads only the records that have a
    /// value in its field, only that field, and merges it into `attributes`. Prints a JSON report.
    Backfill {
        /// The attribute (a key of a `[mapping.<crm>.<entity>]` table).
        #[arg(long)]
        attribute: String,
    },
}

#[derive(Subcommand)]
enum MlCommand {
    /// Serve sentence-transformers/all-MiniLM-L6-v2 (384 dimensions, CPU) on the ML simulator's
    /// endpoints (TEI `POST /embed`, OpenAI `POST /v1/embeddings`); the model directory comes
    /// from --model-dir or `ml.model_dir` (`scripts/model` fetches it and prints it).
    Serve(crmflow_embedding::model::ServeArgs),
}

#[derive(Subcommand)]
enum SimCommand {
    /// The Bullhorn REST API (OAuth, REST, event subscriptions), with seeded data and faults.
    Bullhorn(crmflow_bullhorn::sim::SimArgs),
    /// The ML embedding service (text-embeddings-inference and OpenAI-compatible).
    Ml(crmflow_embedding::sim::SimArgs),
    /// The HubSpot CRM v3 API (private-app and OAuth tokens, search, batch read, rate limits, signed
    /// webhooks), with seeded contacts, deals and a jobs custom object, and faults.
    Hubspot(Box<crmflow_hubspot::sim::SimArgs>),
    /// A Salesforce org over TLS (OAuth, SOAP login, REST/SOQL, Pub/Sub API over gRPC), with seeded data and
    /// faults.
    Salesforce(Box<crmflow_salesforce::sim::SimArgs>),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration (defaults < file < environment), secrets redacted.
    Check,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let mut cfg = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    if matches!(cli.command, Command::Demo(_) | Command::Soak(_)) {
        crmflow::demo::quiet_logs(&mut cfg.telemetry);
    }
    // Read-only commands print their answer, not library chatter (warnings still show).
    let read_only = matches!(
        cli.command,
        Command::Status { .. }
            | Command::Lineage { .. }
            | Command::Config { .. }
            | Command::Mapping {
                command: MappingCommand::Check
            }
            | Command::Dlq {
                command: DlqCommand::List { .. } | DlqCommand::Show { .. }
            }
    );
    if read_only && std::env::var_os("RUST_LOG").is_none() {
        cfg.telemetry.log_level = "warn".to_owned();
    }
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
        Command::Run {
            stages,
            sources,
            until_caught_up,
        } => {
            crmflow::run::run_sources(cfg, &stages, sources, until_caught_up).await?;
        }
        Command::Demo(args) => {
            crmflow::demo::run(cfg, args).await?;
        }
        Command::Soak(args) => {
            crmflow::soak::run(cfg, args).await?;
        }
        Command::Replay {
            stage,
            from,
            partition,
        } => {
            let rewound = crmflow::stages::replay::replay(&cfg, stage, &from, partition).await?;
            for r in rewound {
                println!(
                    "{} {}:{} -> offset {}",
                    stage.as_str(),
                    r.topic,
                    r.partition,
                    r.offset
                );
            }
        }
        Command::Dlq { command } => dlq(command, cfg).await?,
        Command::Reconcile {
            crm,
            entity,
            dry_run,
            json,
        } => {
            let opts = crmflow::reconcile::Options {
                crm,
                entity,
                dry_run,
            };
            let reports = crmflow::reconcile::run(&cfg, &opts)
                .await
                .context("reconcile")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&reports)?);
            } else {
                print!("{}", crmflow::reconcile::render(&reports));
            }
        }
        Command::Lineage { record, json } => {
            let journey = crmflow::lineage::read(&cfg, &record)
                .await
                .context("lineage")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&journey)?);
            } else {
                print!("{}", crmflow::lineage::render(&journey));
            }
        }
        Command::Status { json } => {
            let status = crmflow::status::read(&cfg).await.context("status")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", crmflow::status::render(&status));
            }
        }
        Command::Mapping {
            command: MappingCommand::Check,
        } => {
            let problems = crmflow::mapping::check(&cfg, None).await;
            for p in &problems {
                println!("{p}");
            }
            if !problems.is_empty() {
                anyhow::bail!("{} mapping problem(s)", problems.len());
            }
            let n: usize = cfg
                .mapping
                .values()
                .flat_map(|e| e.values())
                .map(|a| a.len())
                .sum();
            println!("mapping ok: {n} attribute(s) checked against the CRMs' metadata");
        }
        Command::Mapping {
            command: MappingCommand::Backfill { attribute },
        } => {
            let report = crmflow::mapping::backfill::run(&cfg, &attribute).await?;
            println!("{}", serde_json::to_string(&report)?);
        }
        Command::Embed {
            command: EmbedCommand::Backfill,
        } => {
            let report = crmflow::stages::embed::backfill::run(&cfg).await?;
            println!("{}", serde_json::to_string(&report)?);
        }
        Command::Ml {
            command: MlCommand::Serve(mut args),
        } => {
            if args.model_dir.is_none() {
                args.model_dir = cfg.ml.model_dir.as_ref().map(Into::into);
            }
            crmflow_embedding::model::serve::run(args).await?;
        }
        Command::Sim {
            command: SimCommand::Ml(args),
        } => crmflow_embedding::sim::run(args).await?,
        Command::Sim {
            command: SimCommand::Bullhorn(args),
        } => crmflow_bullhorn::sim::run(args).await?,
        Command::Sim {
            command: SimCommand::Hubspot(args),
        } => crmflow_hubspot::sim::run(*args).await?,
        Command::Sim {
            command: SimCommand::Salesforce(args),
        } => crmflow_salesforce::sim::run(*args).await?,
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

async fn dlq(command: DlqCommand, cfg: Config) -> anyhow::Result<()> {
    use crmflow::dlq::{
        H_CLASS, H_REASON, H_RULE, H_SOURCE_OFFSET, H_SOURCE_PARTITION, H_SOURCE_TOPIC, H_STAGE,
    };
    match command {
        DlqCommand::List { filter, limit } => {
            let filter = filter.to_filter()?;
            let mut shown = 0usize;
            tokio::task::spawn_blocking(move || {
                crmflow::dlq::scan(&cfg, &filter, |e| {
                    let time = e
                        .timestamp_ms
                        .and_then(chrono::DateTime::from_timestamp_millis)
                        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                        .unwrap_or_default();
                    let h = |k| e.header(k).unwrap_or("-");
                    println!(
                        "{}:{}\t{time}\t{}\t{}\t{}\t{}:{}:{}\t{}",
                        e.partition,
                        e.offset,
                        h(H_STAGE),
                        h(H_CLASS),
                        h(H_RULE),
                        h(H_SOURCE_TOPIC),
                        h(H_SOURCE_PARTITION),
                        h(H_SOURCE_OFFSET),
                        h(H_REASON)
                    );
                    shown += 1;
                    shown < limit
                })
            })
            .await??;
        }
        DlqCommand::Show { position } => {
            let (p, o) = position
                .split_once(':')
                .and_then(|(p, o)| Some((p.parse::<i32>().ok()?, o.parse::<i64>().ok()?)))
                .context("position must be PARTITION:OFFSET, e.g. 2:1041")?;
            let found = tokio::task::spawn_blocking(move || {
                let mut found = None;
                crmflow::dlq::scan(&cfg, &Default::default(), |e| {
                    if e.partition == p && e.offset == o {
                        found = Some(e);
                        false
                    } else {
                        true
                    }
                })
                .map(|_| found)
            })
            .await??
            .with_context(|| format!("no dead letter at {position}"))?;
            for (k, v) in &found.headers {
                println!("{k}: {v}");
            }
            if let Some(k) = &found.key {
                println!("key: {}", String::from_utf8_lossy(k));
            }
            let payload = found.payload.unwrap_or_default();
            match crmflow::codec::change_event().decode(&payload) {
                Ok(ev) => println!(
                    "value (ChangeEvent):\n{}",
                    serde_json::to_string_pretty(&ev)?
                ),
                Err(_) => println!(
                    "value ({} bytes):\n{}",
                    payload.len(),
                    String::from_utf8_lossy(&payload)
                ),
            }
        }
        DlqCommand::Replay {
            filter,
            dry_run,
            max_replays,
        } => {
            let report =
                crmflow::dlq::replay(&cfg, &filter.to_filter()?, dry_run, max_replays).await?;
            println!("{}", serde_json::to_string(&report)?);
        }
    }
    Ok(())
}
