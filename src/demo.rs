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
//!
//! The parts: [`bullhorn`], [`hubspot`], [`salesforce`] (each simulator: start, configuration,
//! ground truth), [`ml`] (the embedding service), [`summary`] (what the demo prints and whether
//! it adds up) and [`readback`] (the summary read back from Postgres and the dead-letter topic).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::{Config, TelemetryConfig};
use crate::error::{Error, Result};
use crate::observe::display::thousands;
use crate::runtime::StageName;

pub mod bullhorn;
pub mod hubspot;
pub mod ml;
pub mod readback;
pub mod salesforce;
pub mod summary;

pub use bullhorn::SourceTruth;
pub use hubspot::HubspotTruth;
pub use readback::read_summary;
pub use summary::{
    EntityCounts, MatchedCandidate, PositionMatches, RuleCount, SourceCounts, Summary,
};

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
    let changes_per_sec = if args.keep_running {
        args.changes_per_sec
    } else {
        0.0
    };
    let bullhorn = bullhorn::start(args.candidates, args.job_orders, changes_per_sec).await?;
    let (ml, ml_name) = ml::start(&mut cfg, &args).await?;
    let hubspot = hubspot::start(args.hubspot_contacts, args.hubspot_jobs, changes_per_sec).await?;
    if let Some(sim) = &hubspot {
        cfg.hubspot = Some(hubspot::config(sim, args.keep_running));
    }
    let sf_mode = if args.salesforce_mode == "poll" {
        crate::config::SalesforceMode::Poll
    } else {
        crate::config::SalesforceMode::Cdc
    };
    let sfdc = salesforce::start(
        args.salesforce_contacts,
        args.salesforce_positions,
        changes_per_sec,
    )
    .await?;
    if let Some(sim) = &sfdc {
        salesforce::configure(&mut cfg, sim, sf_mode, args.keep_running)?;
    }
    bullhorn::configure(&mut cfg, &bullhorn);

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
    let truth = bullhorn::truth(&bullhorn)?;
    bullhorn.shutdown().await;
    let hubspot_truth = match hubspot {
        Some(h) => {
            let t = hubspot::truth(&h)?;
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

#[cfg(test)]
mod tests;
