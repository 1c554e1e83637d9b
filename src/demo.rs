//! `crmflow demo`: the whole pipeline on the local services, with the Bullhorn, HubSpot,
//! Salesforce and ML simulators running in this process (HubSpot contacts and jobs, Salesforce
//! contacts and `Position__c` records land beside Bullhorn's candidates and job orders,
//! `crm = 'hubspot'` / `'salesforce'`; the Salesforce part is [`salesforce`]).
//!
//! It checks that Kafka and PostgreSQL answer, starts both simulators on free loopback ports,
//! points the configuration at them, gives the run its own namespace (topic prefix and schema
//! `demo_<unix seconds>`, unless the configuration names its own), and runs every stage with
//! [`crate::run::run`], which shows live per-stage progress. A one-shot run (the default)
//! ends when every stage caught up, then prints a [`Summary`] read back from Postgres and the
//! dead-letter topic and compared with the simulator's own records. `--keep-running` leaves the
//! simulator's change generator and the pipeline going until Ctrl-C, then prints the same
//! summary.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, MlProtocol, TelemetryConfig};
use crate::error::{Error, Result};
use crate::observe::display::thousands;
use crate::runtime::StageName;

/// Command line of `crmflow demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Candidates the Bullhorn simulator generates.
    #[arg(long, default_value_t = 2_000)]
    pub candidates: usize,
    /// Job orders the Bullhorn simulator generates.
    #[arg(long, default_value_t = 200)]
    pub job_orders: usize,
    /// Contacts the HubSpot simulator generates (0 with --hubspot-jobs 0: no HubSpot).
    #[arg(long, default_value_t = 1_000)]
    pub hubspot_contacts: usize,
    /// Jobs (custom object) the HubSpot simulator generates.
    #[arg(long, default_value_t = 100)]
    pub hubspot_jobs: usize,
    /// Contacts the Salesforce simulator generates (0 with --salesforce-positions 0: no Salesforce).
    #[arg(long, default_value_t = 1_000)]
    pub salesforce_contacts: usize,
    /// `Position__c` records the Salesforce simulator generates.
    #[arg(long, default_value_t = 100)]
    pub salesforce_positions: usize,
    /// How the demo reads Salesforce: `cdc` (snapshot, then change events over the Pub/Sub API) or
    /// `poll`.
    #[arg(long, default_value = "cdc", value_parser = ["cdc", "poll"])]
    pub salesforce_mode: String,
    /// Keep the simulator changing records and the pipeline running until Ctrl-C (then print
    /// the summary), instead of stopping once everything is in Postgres.
    #[arg(long)]
    pub keep_running: bool,
    /// Inserts, updates and soft deletes per second the simulator makes with --keep-running.
    #[arg(long, default_value_t = 5.0)]
    pub changes_per_sec: f64,
    /// Latency the ML simulator adds to every embedding request, in milliseconds.
    #[arg(long, default_value_t = 20)]
    pub ml_latency_ms: u64,
    /// Also write the summary as JSON to this file.
    #[arg(long)]
    pub summary_json: Option<PathBuf>,
    /// Directory of the all-MiniLM-L6-v2 model (`scripts/model` fetches it and prints it;
    /// default `ml.model_dir`). When the model is there, the demo embeds with it (`crmflow ml
    /// serve`, in process) instead of the bag-of-words ML simulator.
    #[arg(long)]
    pub model_dir: Option<PathBuf>,
    /// Use the ML simulator even when the model is there.
    #[arg(long)]
    pub ml_sim: bool,
}

/// The log filter the demo uses when neither `RUST_LOG` nor `telemetry.log_level` was set:
/// warnings, plus the progress lines that the display logs when stderr is not a terminal.
pub const DEMO_LOG_LEVEL: &str = "warn,crmflow::observe::display=info";

/// Quiets the logs for the demo (progress and the summary are its output) unless the user
/// chose a level (`RUST_LOG` or a non-default `telemetry.log_level`).
pub fn quiet_logs(telemetry: &mut TelemetryConfig) {
    if std::env::var_os("RUST_LOG").is_none()
        && telemetry.log_level == TelemetryConfig::default().log_level
    {
        telemetry.log_level = DEMO_LOG_LEVEL.to_owned();
    }
}

/// What the simulator holds for one entity: the ground truth.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceCounts {
    /// Records, soft-deleted ones included (what a full sync reads).
    pub records: u64,
    /// Soft-deleted records.
    pub deleted: u64,
}

/// The simulated Bullhorn at the end of the run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceTruth {
    pub candidates: SourceCounts,
    pub job_orders: SourceCounts,
    /// REST and OAuth requests the simulator answered.
    pub requests: u64,
}

/// The simulated HubSpot at the end of the run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubspotTruth {
    /// Contacts, archived ones included (`deleted`: archived).
    pub contacts: SourceCounts,
    /// Jobs, archived ones included.
    pub jobs: SourceCounts,
    /// API requests the simulator answered.
    pub requests: u64,
}

/// What Postgres and the dead-letter topic hold for one entity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityCounts {
    /// Rows in the table (tombstones included).
    pub rows: i64,
    /// Rows without `deleted_at`.
    pub live: i64,
    /// Rows with `deleted_at`.
    pub tombstoned: i64,
    /// Vectors of the configured model.
    pub vectors: i64,
    /// Distinct records dead-lettered by normalize or sink (so they have no row).
    pub dead_lettered: i64,
    /// Distinct records dead-lettered by embed (a row, but no vector).
    pub not_embedded: i64,
    /// Rows per CRM (`bullhorn`, `hubspot`).
    #[serde(default)]
    pub rows_by_crm: BTreeMap<String, i64>,
}

/// Dead letters of one (stage, rule).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleCount {
    pub stage: String,
    /// The rule that rejected the record, or the error class when no rule was named.
    pub rule: String,
    pub count: u64,
    /// One example reason.
    pub example: String,
}

/// One matched candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchedCandidate {
    pub rank: i32,
    pub candidate_id: String,
    pub name: String,
    pub score: f32,
    /// The candidate's occupation, so a reader can judge the match.
    #[serde(default)]
    pub occupation: Option<String>,
    /// The candidate's first few skills.
    #[serde(default)]
    pub skills: Vec<String>,
}

/// The best candidates for one position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PositionMatches {
    pub position_id: String,
    pub title: String,
    pub candidates: Vec<MatchedCandidate>,
}

/// What the demo prints at the end (and writes with `--summary-json`): read back from Postgres
/// and the dead-letter topic, not from the stages' in-process counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub topic_prefix: String,
    pub schema: String,
    pub model: String,
    /// Wall time of the pipeline (start of `run` to its end).
    pub elapsed_seconds: f64,
    /// The one-shot run caught up (false for --keep-running and interrupted runs).
    pub caught_up: bool,
    pub source: SourceTruth,
    /// The HubSpot simulator, when the demo ran one.
    #[serde(default)]
    pub hubspot: Option<HubspotTruth>,
    /// The Salesforce simulator, when the demo ran one.
    #[serde(default)]
    pub salesforce: Option<salesforce::SalesforceTruth>,
    pub candidates: EntityCounts,
    pub positions: EntityCounts,
    /// Rows in `matches` for the model (both directions).
    pub matches: i64,
    /// Dead letters written during this run.
    pub dead_letters: u64,
    /// By stage and rule, largest first.
    pub dead_letters_by_rule: Vec<RuleCount>,
    /// Candidate and position rows per second of pipeline time.
    pub records_per_second: f64,
    /// Every record is a row or a dead letter, and every live row has a vector or a dead letter.
    pub complete: bool,
    /// Top 3 candidates for up to 3 positions (open ones first).
    pub top_matches: Vec<PositionMatches>,
}

impl Summary {
    fn entity_complete(c: &EntityCounts, source: &SourceCounts) -> bool {
        (c.rows + c.dead_lettered) as u64 == source.records && c.vectors + c.not_embedded == c.live
    }

    /// Candidate records of every simulator: Bullhorn candidates, HubSpot and Salesforce contacts.
    pub fn candidate_records(&self) -> SourceCounts {
        let h = self
            .hubspot
            .as_ref()
            .map(|h| h.contacts.clone())
            .unwrap_or_default();
        let sf = self
            .salesforce
            .as_ref()
            .map(|s| s.contacts.clone())
            .unwrap_or_default();
        SourceCounts {
            records: self.source.candidates.records + h.records + sf.records,
            deleted: self.source.candidates.deleted + h.deleted + sf.deleted,
        }
    }

    /// Position records of every simulator: Bullhorn job orders, HubSpot jobs, Salesforce positions.
    pub fn position_records(&self) -> SourceCounts {
        let h = self
            .hubspot
            .as_ref()
            .map(|h| h.jobs.clone())
            .unwrap_or_default();
        let sf = self
            .salesforce
            .as_ref()
            .map(|s| s.positions.clone())
            .unwrap_or_default();
        SourceCounts {
            records: self.source.job_orders.records + h.records + sf.records,
            deleted: self.source.job_orders.deleted + h.deleted + sf.deleted,
        }
    }

    /// Whether Postgres accounts for every record of the simulators.
    pub fn is_complete(&self) -> bool {
        Self::entity_complete(&self.candidates, &self.candidate_records())
            && Self::entity_complete(&self.positions, &self.position_records())
    }

    /// The summary as the terminal shows it.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let n = |v: i64| thousands(v);
        let _ = writeln!(o, "\n== crmflow demo summary ==");
        let _ = writeln!(
            o,
            "{:<22}{:.1} s, {} rows into Postgres, {} records/s{}",
            "time",
            self.elapsed_seconds,
            n(self.candidates.rows + self.positions.rows),
            n(self.records_per_second.round() as i64),
            if self.caught_up {
                ""
            } else {
                " (over the whole run, idle time included)"
            }
        );
        let _ = writeln!(
            o,
            "{:<22}{} candidates ({} deleted), {} job orders ({} deleted), {} API requests",
            "Bullhorn (simulator)",
            n(self.source.candidates.records as i64),
            n(self.source.candidates.deleted as i64),
            n(self.source.job_orders.records as i64),
            n(self.source.job_orders.deleted as i64),
            n(self.source.requests as i64)
        );
        if let Some(h) = &self.hubspot {
            let _ = writeln!(
                o,
                "{:<22}{} contacts ({} archived), {} jobs ({} archived), {} API requests",
                "HubSpot (simulator)",
                n(h.contacts.records as i64),
                n(h.contacts.deleted as i64),
                n(h.jobs.records as i64),
                n(h.jobs.deleted as i64),
                n(h.requests as i64)
            );
        }
        if let Some(sf) = &self.salesforce {
            let _ = writeln!(o, "{}", salesforce::render_line(sf));
        }
        let (cand, pos) = (self.candidate_records(), self.position_records());
        for (label, c, s) in [
            ("candidates", &self.candidates, &cand),
            ("positions", &self.positions, &pos),
        ] {
            let accounted = c.rows + c.dead_lettered;
            let check = if accounted as u64 == s.records {
                "all accounted for".to_owned()
            } else {
                format!("{} behind", n(s.records as i64 - accounted))
            };
            let _ = writeln!(
                o,
                "{label:<22}{} rows ({} live, {} tombstoned) + {} dead-lettered = {} of {} records: {check}",
                n(c.rows),
                n(c.live),
                n(c.tombstoned),
                n(c.dead_lettered),
                n(accounted),
                n(s.records as i64),
            );
            if c.rows_by_crm.len() > 1 {
                let per: Vec<String> = c
                    .rows_by_crm
                    .iter()
                    .map(|(crm, rows)| format!("{crm} {}", n(*rows)))
                    .collect();
                let _ = writeln!(o, "{:<22}rows by CRM: {}", "", per.join(", "));
            }
        }
        let _ = writeln!(
            o,
            "{:<22}{} candidates, {} positions ({}; not embedded: {} + {})",
            "vectors",
            n(self.candidates.vectors),
            n(self.positions.vectors),
            self.model,
            n(self.candidates.not_embedded),
            n(self.positions.not_embedded)
        );
        let _ = writeln!(o, "{:<22}{}", "matches", n(self.matches));
        let _ = writeln!(o, "{:<22}{}", "dead letters", n(self.dead_letters as i64));
        for r in &self.dead_letters_by_rule {
            let example: String = r.example.chars().take(60).collect();
            let _ = writeln!(
                o,
                "  {:>7}  {:<10} {:<32} e.g. {example}",
                n(r.count as i64),
                r.stage,
                r.rule
            );
        }
        let _ = writeln!(
            o,
            "{:<22}{}",
            "complete",
            if self.complete {
                "yes: every record is a row or a dead letter, every live row has a vector"
            } else if self.caught_up {
                "NO: Postgres does not account for every record"
            } else {
                "not checked (the pipeline was stopped while changes were flowing)"
            }
        );
        let _ = writeln!(o, "\n== top matches ==");
        if self.top_matches.is_empty() {
            let _ = writeln!(o, "  (no matches yet)");
        }
        for p in &self.top_matches {
            let _ = writeln!(o, "  {} (position {})", p.title, p.position_id);
            for c in &p.candidates {
                let _ = writeln!(
                    o,
                    "    {}. {:.3}  {} (candidate {}) — {}{}{}",
                    c.rank,
                    c.score,
                    c.name,
                    c.candidate_id,
                    c.occupation.as_deref().unwrap_or("(no occupation)"),
                    if c.skills.is_empty() { "" } else { "; " },
                    c.skills.join(", ")
                );
            }
        }
        let _ = writeln!(
            o,
            "\nnamespace: topics {}*, schema {}",
            self.topic_prefix, self.schema
        );
        o
    }
}

/// Gives the run its own namespace unless the configuration named one: a topic prefix when
/// none is set, a schema when it is `public`. Returns whether anything was chosen here.
pub fn fresh_namespace(cfg: &mut Config, unix_secs: u64) -> bool {
    let ns = format!("demo_{unix_secs}");
    let mut fresh = false;
    if cfg.kafka.topic_prefix.is_empty() {
        cfg.kafka.topic_prefix = format!("{ns}.");
        fresh = true;
    }
    if cfg.postgres.schema == "public" {
        cfg.postgres.schema = ns;
        fresh = true;
    }
    fresh
}

/// Resolves `metrics.listen` to an address that is free now: the configured one, or, when it
/// is taken (say by another crmflow), a free port on the same host. Port 0 becomes a concrete
/// port so it can be printed. Empty stays empty (endpoint off).
fn resolve_metrics_listen(listen: &str) -> Result<(String, Option<String>)> {
    let listen = listen.trim();
    if listen.is_empty() {
        return Ok((String::new(), None));
    }
    match std::net::TcpListener::bind(listen) {
        Ok(l) => Ok((l.local_addr().map_err(io_err)?.to_string(), None)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            let host = listen.rsplit_once(':').map_or("127.0.0.1", |(h, _)| h);
            let l =
                std::net::TcpListener::bind((host.trim_matches(['[', ']']), 0)).map_err(io_err)?;
            let addr = l.local_addr().map_err(io_err)?.to_string();
            Ok((
                addr.clone(),
                Some(format!(
                    "metrics.listen {listen} is in use (another crmflow?); serving metrics on {addr} instead"
                )),
            ))
        }
        Err(e) => Err(Error::Other(format!(
            "metrics.listen = {listen:?} (CRMFLOW_METRICS__LISTEN): cannot bind: {e}"
        ))),
    }
}

fn io_err(e: std::io::Error) -> Error {
    Error::Other(e.to_string())
}

/// Fails fast, with the fix, when the local services are not up.
async fn check_services(cfg: &Config) -> Result<()> {
    let hint = "start the local services with `scripts/services up` (scripts/demo does that), \
                or point DB_HOST/DB_PORT and KAFKA_BOOTSTRAP_SERVERS at yours";
    use crate::observe::server::{kafka_reachable, postgres_reachable};
    if let Err(e) = postgres_reachable(cfg).await {
        return Err(Error::Other(format!(
            "PostgreSQL at {}:{} does not answer ({e}); {hint}",
            cfg.postgres.host, cfg.postgres.port
        )));
    }
    let client: rdkafka::consumer::BaseConsumer<crate::kafka::LogContext> =
        crate::kafka::client_config(&cfg.kafka)
            .set("client.id", "crmflow-demo-check")
            .create_with_context(crate::kafka::LogContext)?;
    if let Err(e) = kafka_reachable(Arc::new(client)).await {
        return Err(Error::Other(format!(
            "Kafka at {} does not answer ({e}); {hint}",
            cfg.kafka.bootstrap_servers
        )));
    }
    Ok(())
}

/// Runs the demo; prints progress and the summary, returns the summary.
pub async fn run(mut cfg: Config, args: DemoArgs) -> Result<Summary> {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let fresh = fresh_namespace(&mut cfg, unix);
    let (listen, listen_note) = resolve_metrics_listen(&cfg.metrics.listen)?;
    cfg.metrics.listen = listen;
    if args.keep_running && cfg.bullhorn.poll_interval_secs == 30 {
        // The default suits a real CRM's rate limits; for watching changes flow, poll often.
        cfg.bullhorn.poll_interval_secs = 2;
    }
    if args.keep_running && cfg.metrics.refresh_secs == 10 {
        // Lag on the progress lines is measured this often.
        cfg.metrics.refresh_secs = 2;
    }
    check_services(&cfg).await?;

    // The simulators, on free loopback ports, in this process.
    let bullhorn = crmflow_bullhorn::sim::Simulator::start(crmflow_bullhorn::sim::SimConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        candidates: args.candidates,
        job_orders: args.job_orders,
        changes_per_sec: if args.keep_running {
            args.changes_per_sec
        } else {
            0.0
        },
        ..Default::default()
    })
    .await
    .map_err(|e| Error::Other(format!("bullhorn simulator: {e}")))?;
    let model_dir = args
        .model_dir
        .clone()
        .or_else(|| cfg.ml.model_dir.as_ref().map(PathBuf::from))
        .filter(|dir| !args.ml_sim && crmflow_embedding::model::MiniLm::present(dir));
    let (ml, ml_name) = match model_dir {
        Some(dir) => {
            let serve = crmflow_embedding::model::ServeArgs::for_tests(dir);
            let model = crmflow_embedding::model::serve::load(&serve)
                .await
                .map_err(|e| Error::Other(format!("ML model: {e}")))?;
            cfg.ml.dim = model.dim();
            cfg.ml.model = "all-MiniLM-L6-v2".into();
            // CPU-bound: one batch computing and one on the wire keeps both cores busy
            // without queueing work behind the model (see README, Performance).
            cfg.embed.max_in_flight = cfg.embed.max_in_flight.min(2);
            cfg.embed.batch_size = cfg.embed.batch_size.min(64);
            // A batch of long texts (256 tokens each) takes seconds on a busy CPU; a timeout
            // would only resend it.
            cfg.ml.timeout_secs = cfg.ml.timeout_secs.max(300);
            let handle = crmflow_embedding::model::serve::start(&serve, model)
                .await
                .map_err(|e| Error::Other(format!("ML server: {e}")))?;
            (handle, "ML model all-MiniLM-L6-v2 (crmflow ml serve)")
        }
        None => {
            let handle =
                crmflow_embedding::sim::Simulator::start(crmflow_embedding::sim::SimArgs {
                    listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                    dim: cfg.ml.dim,
                    latency_ms: args.ml_latency_ms,
                    ..Default::default()
                })
                .await
                .map_err(|e| Error::Other(format!("ML simulator: {e}")))?;
            (handle, "ML simulator")
        }
    };
    let hubspot = if args.hubspot_contacts + args.hubspot_jobs > 0 {
        let sim = crmflow_hubspot::sim::Simulator::start(crmflow_hubspot::sim::SimConfig {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            contacts: args.hubspot_contacts,
            deals: 0,
            jobs: args.hubspot_jobs,
            changes_per_sec: if args.keep_running {
                args.changes_per_sec
            } else {
                0.0
            },
            ..Default::default()
        })
        .await
        .map_err(|e| Error::Other(format!("hubspot simulator: {e}")))?;
        cfg.hubspot = Some(demo_hubspot_config(&sim, args.keep_running));
        Some(sim)
    } else {
        None
    };
    let sf_mode = if args.salesforce_mode == "poll" {
        crate::config::SalesforceMode::Poll
    } else {
        crate::config::SalesforceMode::Cdc
    };
    let sfdc = salesforce::start(
        args.salesforce_contacts,
        args.salesforce_positions,
        if args.keep_running {
            args.changes_per_sec
        } else {
            0.0
        },
    )
    .await?;
    if let Some(sim) = &sfdc {
        salesforce::configure(&mut cfg, sim, sf_mode, args.keep_running)?;
    }
    let creds = bullhorn.credentials();
    cfg.bullhorn.rest_url = bullhorn.rest_services_url();
    cfg.bullhorn.client_id = Some(creds.client_id);
    cfg.bullhorn.client_secret = Some(creds.client_secret.into());
    cfg.bullhorn.username = Some(creds.username);
    cfg.bullhorn.password = Some(creds.password.into());
    cfg.ml.url = ml.base_url().to_string().trim_end_matches('/').to_owned();
    cfg.ml.protocol = MlProtocol::Tei;
    cfg.ml.api_key = None;

    println!(
        "crmflow demo: {} candidates, {} job orders{}{}",
        thousands(args.candidates as i64),
        thousands(args.job_orders as i64),
        if hubspot.is_some() {
            format!(
                " (Bullhorn); {} contacts, {} jobs (HubSpot)",
                thousands(args.hubspot_contacts as i64),
                thousands(args.hubspot_jobs as i64)
            )
        } else {
            String::new()
        },
        if args.keep_running {
            format!(", then {} changes/s until Ctrl-C", args.changes_per_sec)
        } else {
            String::new()
        }
    );
    println!(
        "  Kafka {} (topics {}*), PostgreSQL {}:{}/{} (schema {}){}",
        cfg.kafka.bootstrap_servers,
        cfg.kafka.topic_prefix,
        cfg.postgres.host,
        cfg.postgres.port,
        cfg.postgres.dbname,
        cfg.postgres.schema,
        if fresh {
            ""
        } else {
            " — namespace from your configuration"
        }
    );
    println!(
        "  Bullhorn simulator {} (state: {}/sim/stats), {ml_name} {}",
        bullhorn.rest_services_url(),
        bullhorn.base_url(),
        cfg.ml.url
    );
    if let Some(h) = &hubspot {
        println!(
            "  HubSpot simulator {} (state: {}/sim/stats)",
            h.base_url(),
            h.base_url()
        );
    }
    if let Some(sf) = &sfdc {
        println!(
            "  Salesforce simulator {} (HTTPS + Pub/Sub; {} contacts, {} positions, {} mode; state: {}/sim/stats)",
            sf.base_url(),
            thousands(args.salesforce_contacts as i64),
            thousands(args.salesforce_positions as i64),
            args.salesforce_mode,
            sf.base_url()
        );
    }
    if let Some(note) = &listen_note {
        println!("  {note}");
    }
    if !cfg.metrics.listen.is_empty() {
        println!("  metrics: http://{}/metrics", cfg.metrics.listen);
    }
    if args.keep_running {
        println!(
            "  watch it from another shell: CRMFLOW_KAFKA__TOPIC_PREFIX={} CRMFLOW_POSTGRES__SCHEMA={} crmflow status",
            cfg.kafka.topic_prefix, cfg.postgres.schema
        );
    }
    println!();

    // Ctrl-C ends a --keep-running demo; in a one-shot run it means "interrupted".
    let interrupted = Arc::new(AtomicBool::new(false));
    let signal_watch = {
        let interrupted = interrupted.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                interrupted.store(true, Ordering::SeqCst);
            }
        })
    };
    // `run` shows progress itself in one-shot mode; with --keep-running the demo does.
    let stop_display = CancellationToken::new();
    let display = args.keep_running.then(|| {
        tokio::spawn(crate::observe::display::run(
            StageName::ALL.to_vec(),
            crate::observe::display::Mode::detect(),
            Duration::from_secs(cfg.metrics.progress_log_secs.max(1)),
            stop_display.clone(),
        ))
    });

    let started_ms = crate::observe::now_ms();
    let started = Instant::now();
    let outcome = crate::run::run(cfg.clone(), &StageName::ALL, !args.keep_running).await;
    let elapsed = started.elapsed();
    stop_display.cancel();
    if let Some(d) = display {
        let _ = d.await;
    }
    signal_watch.abort();
    let was_interrupted = interrupted.load(Ordering::SeqCst);
    if let Err(e) = outcome {
        bullhorn.shutdown().await;
        if let Some(h) = hubspot {
            h.shutdown().await;
        }
        if let Some(sf) = sfdc {
            sf.shutdown().await;
        }
        let _ = ml.shutdown().await;
        return Err(e);
    }
    // Stop the change generator first, so the ground truth stands still while it is read.
    let truth = source_truth(&bullhorn)?;
    bullhorn.shutdown().await;
    let hubspot_truth = match hubspot {
        Some(h) => {
            let t = hubspot_truth(&h)?;
            h.shutdown().await;
            Some(t)
        }
        None => None,
    };
    let salesforce_truth = match sfdc {
        Some(sf) => {
            let t = salesforce::truth(&sf, sf_mode)?;
            sf.shutdown().await;
            Some(t)
        }
        None => None,
    };
    let _ = ml.shutdown().await;

    let caught_up = !args.keep_running && !was_interrupted;
    let mut summary = tokio::select! {
        s = read_summary(&cfg, truth, hubspot_truth, elapsed, caught_up, started_ms) => s?,
        _ = tokio::signal::ctrl_c() => return Err(Error::Other("interrupted while reading the summary".into())),
    };
    summary.salesforce = salesforce_truth;
    summary.complete = summary.is_complete();
    print!("{}", summary.render());
    if let Some(path) = &args.summary_json {
        let json = serde_json::to_vec_pretty(&summary).map_err(|e| Error::Other(e.to_string()))?;
        std::fs::write(path, json)
            .map_err(|e| Error::Other(format!("--summary-json {}: {e}", path.display())))?;
    }
    if was_interrupted && !args.keep_running {
        return Err(Error::Other(
            "interrupted before the pipeline caught up".into(),
        ));
    }
    if caught_up && !summary.complete {
        return Err(Error::Other(
            "the pipeline caught up but Postgres does not account for every record".into(),
        ));
    }
    Ok(summary)
}

/// Counts of the simulator's records (soft-deleted ones included) and its requests.
fn source_truth(sim: &crmflow_bullhorn::sim::SimHandle) -> Result<SourceTruth> {
    let counts = |entity: &str| -> Result<SourceCounts> {
        let records = sim
            .records(entity)
            .map_err(|e| Error::Other(format!("bullhorn simulator: {e}")))?;
        let deleted = records
            .iter()
            .filter(|r| r["isDeleted"].as_bool().unwrap_or(false))
            .count();
        Ok(SourceCounts {
            records: records.len() as u64,
            deleted: deleted as u64,
        })
    };
    Ok(SourceTruth {
        candidates: counts("Candidate")?,
        job_orders: counts("JobOrder")?,
        requests: sim.stats().total_requests,
    })
}

/// The `[hubspot]` section for the demo's simulator: contacts and jobs, the simulator's token.
fn demo_hubspot_config(
    sim: &crmflow_hubspot::sim::SimHandle,
    keep_running: bool,
) -> crate::config::HubspotConfig {
    use crate::config::{HubspotConfig, HubspotObject};
    HubspotConfig {
        base_url: sim.base_url(),
        access_token: Some(sim.private_app_token().into()),
        objects: vec![
            HubspotObject {
                entity: "contact".into(),
                object_type: "contacts".into(),
                object_type_id: Some("0-1".into()),
                properties: vec![],
            },
            HubspotObject {
                entity: "job".into(),
                object_type: "jobs".into(),
                object_type_id: Some(sim.jobs_object_type_id()),
                properties: vec![],
            },
        ],
        // The default suits a real account's rate limits; for watching changes flow, poll often.
        poll_interval_secs: if keep_running { 2 } else { 30 },
        overlap_ms: 5_000,
        ..Default::default()
    }
}

/// Counts of the HubSpot simulator's objects (archived ones included) and its requests.
fn hubspot_truth(sim: &crmflow_hubspot::sim::SimHandle) -> Result<HubspotTruth> {
    let counts = |object: &str| -> Result<SourceCounts> {
        let records = sim
            .records(object)
            .map_err(|e| Error::Other(format!("hubspot simulator: {e}")))?;
        Ok(SourceCounts {
            records: records.len() as u64,
            deleted: records.iter().filter(|r| r.archived).count() as u64,
        })
    };
    Ok(HubspotTruth {
        contacts: counts("contacts")?,
        jobs: counts("jobs")?,
        requests: sim.stats().total_requests,
    })
}

/// Which entity a dead letter belongs to, from its source topic (`...candidate`,
/// `...joborder`, `...position`, HubSpot's `...contact`, `...job`, `...deal`).
fn entity_of_topic(topic: &str) -> Option<&'static str> {
    let last = topic.rsplit('.').next()?;
    match last {
        "candidate" | "contact" | "Contact" => Some("candidate"),
        "joborder" | "position" | "job" | "deal" | "Position__c" => Some("position"),
        _ => None,
    }
}

/// The CRM of a dead letter: the raw topic names it (`crm.raw.<crm>.<entity>`); a canonical
/// key carries it (`<crm>:<id>`).
fn record_key(topic: &str, key: &str) -> String {
    if key.contains(':') {
        return key.to_owned();
    }
    let mut parts = topic.rsplit('.');
    let _entity = parts.next();
    let crm = parts.next().unwrap_or("bullhorn");
    format!("{crm}:{key}")
}

/// Tallies of the dead-letter topic.
#[derive(Debug, Default)]
struct DeadLetterTally {
    total: u64,
    by_rule: BTreeMap<(String, String), (u64, String)>,
    /// (entity, record id) rejected before Postgres (normalize, sink).
    no_row: HashSet<(&'static str, String)>,
    /// (entity, record id) rejected by embed.
    no_vector: HashSet<(&'static str, String)>,
}

fn tally_dead_letters(cfg: &Config, since_ms: i64) -> Result<DeadLetterTally> {
    use crate::dlq::{H_CLASS, H_REASON, H_RULE, H_SOURCE_TOPIC, H_STAGE};
    let filter = crate::dlq::Filter {
        since_ms: Some(since_ms),
        ..Default::default()
    };
    let mut t = DeadLetterTally::default();
    crate::dlq::scan(cfg, &filter, |e| {
        t.total += 1;
        let stage = e.header(H_STAGE).unwrap_or("-").to_owned();
        let rule = e
            .header(H_RULE)
            .or(e.header(H_CLASS))
            .unwrap_or("-")
            .to_owned();
        let entry = t
            .by_rule
            .entry((stage.clone(), rule))
            .or_insert_with(|| (0, e.header(H_REASON).unwrap_or("").to_owned()));
        entry.0 += 1;
        let key = String::from_utf8_lossy(e.key.as_deref().unwrap_or_default()).into_owned();
        // Raw keys are the CRM id, canonical keys `<crm>:<id>`: one record, one `<crm>:<id>`.
        let id = record_key(e.header(H_SOURCE_TOPIC).unwrap_or_default(), &key);
        if let Some(entity) = e.header(H_SOURCE_TOPIC).and_then(entity_of_topic) {
            match stage.as_str() {
                "embed" => {
                    t.no_vector.insert((entity, id));
                }
                _ => {
                    t.no_row.insert((entity, id));
                }
            }
        }
        true
    })?;
    Ok(t)
}

/// Reads the summary back from Postgres and the dead-letter topic.
pub async fn read_summary(
    cfg: &Config,
    source: SourceTruth,
    hubspot: Option<HubspotTruth>,
    elapsed: Duration,
    caught_up: bool,
    dlq_since_ms: i64,
) -> Result<Summary> {
    let dlq = {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || tally_dead_letters(&cfg, dlq_since_ms))
            .await
            .map_err(|e| Error::Other(e.to_string()))??
    };
    let client = crate::store::connect(cfg).await?;
    let model = cfg.ml.model.clone();
    let entity = |table: &str, name: &'static str| {
        let client = &client;
        let model = model.clone();
        let sql = format!(
            "SELECT count(*), count(*) FILTER (WHERE deleted_at IS NULL),
                    (SELECT count(*) FROM embeddings WHERE model = $1 AND entity = $2)
             FROM {table}"
        );
        let dead_lettered = dlq.no_row.iter().filter(|(e, _)| *e == name).count() as i64;
        let not_embedded = dlq.no_vector.iter().filter(|(e, _)| *e == name).count() as i64;
        let by_crm = format!("SELECT crm, count(*) FROM {table} GROUP BY crm");
        async move {
            let r = client.query_one(&sql, &[&model, &name]).await?;
            let (rows, live, vectors): (i64, i64, i64) = (r.get(0), r.get(1), r.get(2));
            let rows_by_crm = client
                .query(&by_crm, &[])
                .await?
                .iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
                .collect();
            Ok::<_, Error>(EntityCounts {
                rows,
                live,
                tombstoned: rows - live,
                vectors,
                dead_lettered,
                not_embedded,
                rows_by_crm,
            })
        }
    };
    let candidates = entity("candidates", "candidate").await?;
    let positions = entity("positions", "position").await?;
    let matches: i64 = client
        .query_one("SELECT count(*) FROM matches WHERE model = $1", &[&model])
        .await?
        .get(0);
    let rows = client
        .query(
            "WITH p AS (
                 SELECT p.crm, p.crm_id, coalesce(p.title, '(untitled)') AS title,
                        -- A Rust engineering job first (semantic vectors should bring Rust and
                        -- systems people), then jobs of other fields, so a reader can judge.
                        CASE WHEN p.title ILIKE '%engineer%' AND 'Rust' = ANY(p.skills) THEN 0
                             WHEN p.title ILIKE '%nurse%' THEN 1
                             WHEN p.title ILIKE '%account%' OR p.title ILIKE '%financ%' THEN 2
                             ELSE 3 END AS kind,
                        coalesce(p.is_open, false) AS open
                 FROM positions p
                 WHERE p.deleted_at IS NULL
                   AND EXISTS (SELECT 1 FROM matches m WHERE m.model = $1 AND m.from_entity = 'position'
                               AND m.from_crm = p.crm AND m.from_id = p.crm_id)
                 ORDER BY kind, open DESC, length(p.crm_id), p.crm_id
                 LIMIT 3)
             SELECT p.crm_id, p.title, m.rank, m.to_id,
                    trim(coalesce(c.first_name, '') || ' ' || coalesce(c.last_name, '')), m.score,
                    c.occupation, coalesce(c.skills[1:4], '{}')
             FROM p
             JOIN matches m ON m.model = $1 AND m.from_entity = 'position' AND m.from_crm = p.crm
                           AND m.from_id = p.crm_id AND m.rank <= 3
             LEFT JOIN candidates c ON c.crm = m.to_crm AND c.crm_id = m.to_id
             ORDER BY p.kind, p.open DESC, length(p.crm_id), p.crm_id, m.rank",
            &[&model],
        )
        .await?;
    let mut top_matches: Vec<PositionMatches> = Vec::new();
    for r in rows {
        let position_id: String = r.get(0);
        if top_matches.last().map(|p| &p.position_id) != Some(&position_id) {
            top_matches.push(PositionMatches {
                position_id: position_id.clone(),
                title: r.get(1),
                candidates: Vec::new(),
            });
        }
        let name: String = r.get(4);
        if let Some(p) = top_matches.last_mut() {
            p.candidates.push(MatchedCandidate {
                rank: r.get(2),
                candidate_id: r.get(3),
                name: if name.is_empty() {
                    "(no name)".into()
                } else {
                    name
                },
                score: r.get(5),
                occupation: r.get(6),
                skills: r.get(7),
            });
        }
    }
    let mut by_rule: Vec<RuleCount> = dlq
        .by_rule
        .into_iter()
        .map(|((stage, rule), (count, example))| RuleCount {
            stage,
            rule,
            count,
            example,
        })
        .collect();
    by_rule.sort_by(|a, b| b.count.cmp(&a.count).then(a.rule.cmp(&b.rule)));
    let secs = elapsed.as_secs_f64().max(1e-3);
    let mut summary = Summary {
        topic_prefix: cfg.kafka.topic_prefix.clone(),
        schema: cfg.postgres.schema.clone(),
        model,
        elapsed_seconds: (secs * 10.0).round() / 10.0,
        caught_up,
        source,
        hubspot,
        salesforce: None,
        records_per_second: ((candidates.rows + positions.rows) as f64 / secs).round(),
        candidates,
        positions,
        matches,
        dead_letters: dlq.total,
        dead_letters_by_rule: by_rule,
        complete: false,
        top_matches,
    };
    summary.complete = summary.is_complete();
    Ok(summary)
}

pub mod salesforce;

#[cfg(test)]
mod tests;
