//! `crmflow soak` (started by `scripts/soak`): the whole pipeline as separate processes under
//! chaos, then a check against the simulators' ground truth.
//!
//! The soak owns its outside world. It starts its own PostgreSQL and Kafka with
//! `scripts/services` (another state directory and other ports: the shared instances are never
//! touched), the Bullhorn, HubSpot, Salesforce (TLS) and ML simulators in this process, and every
//! stage instance as its own `crmflow run` process: ingest per CRM (Salesforce in CDC mode), the
//! webhook ingress, normalize, sink ×2, embed ×2 and match. While the simulators keep changing records:
//! - every 1–5 s (`--kill-interval`) a random instance is SIGKILLed and started again;
//! - every few minutes (`--infra-every`) Kafka or PostgreSQL, in turn, is SIGKILLed and started
//!   again (crash recovery, not a clean stop);
//! - every few seconds (`--storm-every`) a fault storm hits a simulator through its `/sim`
//!   control endpoints: 429s and `REQUEST_LIMIT_EXCEEDED`, 5xx, hangs, expired sessions,
//!   Pub/Sub gaps, dropped streams and purged replay ids, ML failures.
//!
//! When the kills (`--kills`) or the time (`--minutes`) are used up, changes and faults stop,
//! every instance runs, and the soak checks [`verify::check`] until it holds (the time this took
//! is the convergence time) or `--converge-timeout` passes. It prints kills survived, restarts,
//! the convergence time and each instance's peak RSS, and fails on any violation.
//!
//! This module sits beside the pipeline: it only starts `crmflow` processes and reads the
//! simulators, Postgres and the DLQ; no stage imports it.
//!
//! Files: `options` (command line), `setup` (simulators, instances, configuration), `chaos` (the
//! chaos loops), `storms` (fault storms), `procs` (the stage processes), `services` (the soak's
//! PostgreSQL and Kafka), `verify` (the verdict), `report` (the figures).

pub mod chaos;
pub mod options;
pub mod procs;
pub mod report;
pub mod services;
pub mod setup;
pub mod storms;
pub mod verify;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use crate::config::Config;
use crate::error::{Error, Result};
pub use options::{Interval, SoakArgs};
use procs::Procs;
pub use report::{render, Report};
use services::Services;
use setup::Sims;

/// Runs the soak; returns its report (an error when the pipeline did not converge on the truth).
pub async fn run(cfg: Config, args: SoakArgs) -> Result<Report> {
    let services = Services {
        script: args.services_script.clone(),
        state_dir: args.state_dir.clone(),
        db_port: args.db_port,
        kafka_port: args.kafka_port,
    };
    let log_dir = args.state_dir.join("logs");
    // This run's logs only.
    let _ = std::fs::remove_dir_all(&log_dir);
    std::fs::create_dir_all(&log_dir).map_err(other)?;
    say(&format!(
        "starting the soak's own PostgreSQL (:{}) and Kafka (:{}) in {}",
        args.db_port,
        args.kafka_port,
        args.state_dir.display()
    ));
    if let Err(e) = services.up().await {
        // Whichever of the two did start is stopped again.
        let s = services.clone();
        let _ = tokio::task::spawn_blocking(move || s.stop()).await;
        return Err(e);
    }

    let ingress_port = setup::free_port()?;
    let salesforce_ca = args.state_dir.join("salesforce-ca.pem");
    let sims = setup::start_sims(&args, ingress_port, &salesforce_ca).await?;
    let cfg = setup::soak_config(cfg, &args, &sims, ingress_port, &salesforce_ca);
    let config_path = args.state_dir.join("soak.toml");
    std::fs::write(&config_path, cfg.redacted_toml()).map_err(other)?;
    let mut env = setup::secret_env(&cfg);
    env.push(("RUST_LOG".into(), args.stage_log.clone()));
    say(&format!(
        "namespace: topics {}*, schema {}; stage logs in {}",
        cfg.kafka.topic_prefix,
        cfg.postgres.schema,
        log_dir.display()
    ));
    crate::store::migrate(&cfg).await?;
    crate::kafka::ensure_topics(&cfg.kafka, &crate::pipeline::topic_specs(&cfg)).await?;

    let exe = std::env::current_exe().map_err(other)?;
    let procs = Arc::new(Mutex::new(Procs::new(
        exe,
        config_path,
        log_dir,
        env,
        setup::specs(),
    )));
    procs.lock().await.start_all()?;
    // Ctrl-C or SIGTERM ends the soak early, still stopping every process it started.
    let report = tokio::select! {
        r = chaos_and_verify(&cfg, &args, &services, &sims, procs.clone()) => r,
        _ = interrupted() => Err(Error::Other("interrupted".into())),
    };

    procs.lock().await.stop_all(Duration::from_secs(10)).await;
    // A passed soak leaves nothing behind (a failed one keeps its namespace for a post-mortem),
    // so repeated runs do not slow the broker's start with old partitions.
    if report.as_ref().is_ok_and(|r| r.converged) {
        if let Err(e) = drop_namespace(&cfg).await {
            say(&format!("could not drop the namespace: {e}"));
        }
    }
    sims.shutdown().await;
    if !args.keep_services {
        let s = services.clone();
        let _ = tokio::task::spawn_blocking(move || s.stop()).await;
    }
    let report = report?;
    print!("{}", render(&report));
    if let Some(path) = &args.report_json {
        let json = serde_json::to_vec_pretty(&report).map_err(other)?;
        std::fs::write(path, json).map_err(other)?;
    }
    if !report.converged {
        return Err(Error::Other(format!(
            "the pipeline did not converge on the simulators' ground truth within {} s: {}",
            args.converge_timeout,
            report.verdict.line()
        )));
    }
    Ok(report)
}

/// Drops the run's schema and deletes its topics.
async fn drop_namespace(cfg: &Config) -> Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    let db = crate::store::connect(cfg).await?;
    db.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
        cfg.postgres.schema
    ))
    .await?;
    let admin: AdminClient<DefaultClientContext> =
        crate::kafka::client_config(&cfg.kafka).create()?;
    let names: Vec<String> = crate::pipeline::topic_specs(cfg)
        .into_iter()
        .map(|t| t.name)
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    admin
        .delete_topics(
            &names,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await?;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn say(msg: &str) {
    println!("[soak {}] {msg}", chrono::Utc::now().format("%H:%M:%S"));
}

fn other(e: impl std::fmt::Display) -> Error {
    Error::Other(e.to_string())
}

/// The chaos ([`chaos::run`]), then the wait for the pipeline to converge on the simulators'
/// ground truth, while a supervisor restarts instances that exited on their own.
async fn chaos_and_verify(
    cfg: &Config,
    args: &SoakArgs,
    services: &Services,
    sims: &Sims,
    procs: Arc<Mutex<Procs>>,
) -> Result<Report> {
    // The supervisor: restarts instances that exited, samples memory.
    let tending = Arc::new(std::sync::atomic::AtomicBool::new(true));
    // In a JoinSet, so an interrupted soak aborts it (nothing restarts what was stopped).
    let mut supervisor = tokio::task::JoinSet::new();
    {
        let procs = procs.clone();
        let tending = tending.clone();
        supervisor.spawn(async move {
            while tending.load(Ordering::SeqCst) {
                match procs.lock().await.tend(Duration::from_secs(1)) {
                    Ok(restarted) => {
                        for name in restarted {
                            say(&format!("{name} had exited; started again"));
                        }
                    }
                    Err(e) => say(&format!("supervisor: {e}")),
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    }

    let targets = sims.targets()?;
    let outcome = chaos::run(args, services, &targets, procs.clone()).await;
    // Convergence is timed from the last change and the last fault.
    let converge_started = outcome.stopped_at;
    storms::calm(&targets).await?;
    services.up().await?;
    sims.hubspot.flush_index();

    // Converge.
    let templates =
        crate::stages::embed::text::Templates::from_config(&cfg.embed).map_err(Error::Other)?;
    let mut truth = verify::Truth::new();
    verify::bullhorn_truth(cfg, &templates, &sims.bullhorn, &mut truth)?;
    verify::hubspot_truth(cfg, &templates, &sims.hubspot, &mut truth)?;
    verify::salesforce_truth(cfg, &templates, &sims.salesforce, &mut truth)?;
    say(&format!(
        "{} records in the simulators; waiting for the pipeline to converge",
        truth.len()
    ));
    let timeout = Duration::from_secs(args.converge_timeout);
    let mut last_line = String::new();
    let (verdict, converged) = loop {
        let verdict = match verify::check(cfg, &truth).await {
            Ok(v) => v,
            Err(e) => {
                say(&format!("check failed: {e}"));
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        let all_running = procs.lock().await.all_running();
        if verdict.violations() == 0 && all_running {
            break (verdict, true);
        }
        if converge_started.elapsed() > timeout {
            break (verdict, false);
        }
        let line = verdict.line();
        if line != last_line {
            say(&format!(
                "{:.0} s: {line}",
                converge_started.elapsed().as_secs_f64()
            ));
            print!("{}", verdict.details(3));
            last_line = line;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    };
    let converge_seconds = converge_started.elapsed().as_secs_f64();
    tending.store(false, Ordering::SeqCst);
    while supervisor.join_next().await.is_some() {}
    let instances = procs.lock().await.stats();
    let c = &outcome.counters;
    let (max, sum, n) = outcome.load;
    Ok(Report {
        chaos_seconds: outcome.chaos_seconds,
        kills: c.kills.load(Ordering::SeqCst),
        unforced_exits: instances.values().map(|s| s.exits).sum(),
        kafka_crashes: c.kafka_crashes.load(Ordering::SeqCst),
        postgres_crashes: c.postgres_crashes.load(Ordering::SeqCst),
        longest_service_restart_seconds: c.longest_restart_ms.load(Ordering::SeqCst) as f64
            / 1000.0,
        storms: c.storms.load(Ordering::SeqCst),
        changes: c.changes.load(Ordering::SeqCst),
        converged,
        converge_seconds,
        instances,
        load_average: format!(
            "{:.1} mean, {max:.1} max over the chaos (1-minute load average, {} cores); at the end: {}",
            sum / f64::from(n.max(1)),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .trim()
        ),
        verdict,
    })
}
