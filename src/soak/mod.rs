//! `crmflow soak` (started by `scripts/soak`): the whole pipeline as separate processes under
//! chaos, then a check against the simulators' ground truth.
//!
//! The soak owns its outside world. It starts its own PostgreSQL and Kafka with
//! `scripts/services` (another state directory and other ports: the shared instances are never
//! touched), the Bullhorn, HubSpot and ML simulators in this process, and every stage instance
//! as its own `crmflow run` process: ingest per CRM, the webhook ingress, normalize, sink ×2,
//! embed ×2 and match. While the simulators keep changing records:
//! - every 1–5 s (`--kill-interval`) a random instance is SIGKILLed and started again;
//! - every few minutes (`--infra-every`) Kafka or PostgreSQL, in turn, is SIGKILLed and started
//!   again (crash recovery, not a clean stop);
//! - every few seconds (`--storm-every`) a fault storm hits a simulator through its `/sim`
//!   control endpoints: 429s, 5xx, hangs, expired sessions, ML failures.
//!
//! When the kills (`--kills`) or the time (`--minutes`) are used up, changes and faults stop,
//! every instance runs, and the soak checks [`verify::check`] until it holds (the time this took
//! is the convergence time) or `--converge-timeout` passes. It prints kills survived, restarts,
//! the convergence time and each instance's peak RSS, and fails on any violation.
//!
//! This module sits beside the pipeline: it only starts `crmflow` processes and reads the
//! simulators, Postgres and the DLQ; no stage imports it.

pub mod procs;
pub mod services;
pub mod verify;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::Mutex;

use crate::config::{Config, HubspotConfig, HubspotMode, HubspotObject, MlProtocol};
use crate::error::{Error, Result};
use procs::{Procs, Spec};
use services::{Service, Services};

/// Command line of `crmflow soak`.
#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// Stop the chaos after this many minutes (whichever of --minutes and --kills comes first).
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
    /// Stop the chaos after this many kills of stage processes (and, when crashes are on, at
    /// least one crash each of Kafka and PostgreSQL).
    #[arg(long)]
    pub kills: Option<u64>,
    /// Seconds between kills, as MIN-MAX (a random time in between each time), e.g. `1-5`.
    #[arg(long, default_value = "1-5")]
    pub kill_interval: Interval,
    /// Seconds between crashes of Kafka or PostgreSQL (in turn); 0: none.
    #[arg(long, default_value_t = 150)]
    pub infra_every: u64,
    /// Seconds between CRM/ML fault storms, as MIN-MAX; `0-0`: none.
    #[arg(long, default_value = "10-30")]
    pub storm_every: Interval,
    /// Record changes per second each CRM simulator makes during the chaos.
    #[arg(long, default_value_t = 10.0)]
    pub changes_per_sec: f64,
    /// Bullhorn candidates (HubSpot contacts: half as many).
    #[arg(long, default_value_t = 2_000)]
    pub candidates: usize,
    /// Bullhorn job orders (HubSpot jobs: half as many).
    #[arg(long, default_value_t = 200)]
    pub job_orders: usize,
    /// Longest wait for the pipeline to converge once the chaos stopped, seconds.
    #[arg(long, default_value_t = 900)]
    pub converge_timeout: u64,
    /// State directory of the soak's own PostgreSQL and Kafka, logs and report.
    #[arg(long, default_value = "/var/tmp/crmflow-soak")]
    pub state_dir: PathBuf,
    /// PostgreSQL port of the soak's own instance (below the ephemeral range 32768-60999, so
    /// no outgoing connection holds it when the database restarts).
    #[arg(long, default_value_t = 25432)]
    pub db_port: u16,
    /// Kafka port of the soak's own broker (the controller and SASL_SSL listeners take the next
    /// two; below the ephemeral range, like the database's).
    #[arg(long, default_value_t = 29092)]
    pub kafka_port: u16,
    /// `scripts/services`, which installs and starts PostgreSQL and Kafka.
    #[arg(long, default_value = "scripts/services")]
    pub services_script: PathBuf,
    /// Leave the soak's PostgreSQL and Kafka running at the end (for a post-mortem).
    #[arg(long)]
    pub keep_services: bool,
    /// `RUST_LOG` of the stage processes (their logs: <state-dir>/logs/<instance>.log).
    #[arg(long, default_value = "warn")]
    pub stage_log: String,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub report_json: Option<PathBuf>,
}

/// `MIN-MAX` seconds (or one number).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub min: f64,
    pub max: f64,
}

impl std::str::FromStr for Interval {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let num = |v: &str| {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| format!("{v:?} is not a number of seconds"))
        };
        let (min, max) = match s.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(s)?, num(s)?),
        };
        if min > max {
            return Err(format!("{s}: MIN is above MAX"));
        }
        Ok(Interval { min, max })
    }
}

impl Interval {
    fn is_off(&self) -> bool {
        self.max <= 0.0
    }

    fn sample(&self) -> Duration {
        let s = if self.max > self.min {
            rand::rng().random_range(self.min..=self.max)
        } else {
            self.min
        };
        Duration::from_secs_f64(s)
    }
}

/// The figures the soak prints (and writes with `--report-json`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    pub chaos_seconds: f64,
    pub kills: u64,
    /// Exits of stage processes the soak did not cause, all restarted.
    pub unforced_exits: u64,
    pub kafka_crashes: u64,
    pub postgres_crashes: u64,
    /// Longest time `scripts/services up` took to bring a crashed service back, seconds.
    pub longest_service_restart_seconds: f64,
    pub storms: u64,
    pub changes: u64,
    pub converged: bool,
    pub converge_seconds: f64,
    pub instances: std::collections::BTreeMap<String, procs::ProcStats>,
    pub load_average: String,
    pub verdict: verify::Verdict,
}

struct Sims {
    bullhorn: crmflow_bullhorn::sim::SimHandle,
    hubspot: crmflow_hubspot::sim::SimHandle,
    ml: crmflow_embedding::sim::SimHandle,
}

/// The stage instances: ingest per CRM, ingress, normalize, two sinks, two embeds, match.
fn specs() -> Vec<Spec> {
    let run = |name: &str, args: &[&str]| Spec {
        name: name.to_owned(),
        args: std::iter::once("run")
            .chain(args.iter().copied())
            .map(str::to_owned)
            .collect(),
    };
    vec![
        run(
            "ingest-bullhorn",
            &["--stages", "ingest", "--sources", "bullhorn"],
        ),
        run(
            "ingest-hubspot",
            &["--stages", "ingest", "--sources", "hubspot"],
        ),
        run("ingress", &["--stages", "ingress"]),
        run("normalize", &["--stages", "normalize"]),
        run("sink-1", &["--stages", "sink"]),
        run("sink-2", &["--stages", "sink"]),
        run("embed-1", &["--stages", "embed"]),
        run("embed-2", &["--stages", "embed"]),
        run("match", &["--stages", "match"]),
    ]
}

/// A free loopback port.
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| Error::Other(e.to_string()))?;
    Ok(l.local_addr()
        .map_err(|e| Error::Other(e.to_string()))?
        .port())
}

fn other(e: impl std::fmt::Display) -> Error {
    Error::Other(e.to_string())
}

/// The configuration every instance reads (secrets go to the environment, see [`secret_env`]).
fn soak_config(mut cfg: Config, args: &SoakArgs, sims: &Sims, ingress_port: u16) -> Config {
    let ns = format!(
        "soak_{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
    );
    cfg.kafka.bootstrap_servers = format!("127.0.0.1:{}", args.kafka_port);
    cfg.kafka.topic_prefix = format!("{ns}.");
    cfg.postgres.url = None;
    cfg.postgres.host = "127.0.0.1".into();
    cfg.postgres.port = args.db_port;
    cfg.postgres.dbname = "crmflow".into();
    cfg.postgres.user = "crmflow".into();
    cfg.postgres.password = "crmflow".to_owned().into();
    cfg.postgres.schema = ns;
    let creds = sims.bullhorn.credentials();
    cfg.bullhorn.enabled = true;
    cfg.bullhorn.rest_url = sims.bullhorn.rest_services_url();
    cfg.bullhorn.client_id = Some(creds.client_id);
    cfg.bullhorn.client_secret = Some(creds.client_secret.into());
    cfg.bullhorn.username = Some(creds.username);
    cfg.bullhorn.password = Some(creds.password.into());
    cfg.bullhorn.poll_interval_secs = 1;
    cfg.hubspot = Some(HubspotConfig {
        base_url: sims.hubspot.base_url(),
        // OAuth (access tokens refreshed ahead of expiry and on a 401), so the "expired
        // tokens" storm has something to expire.
        access_token: None,
        client_id: Some(sims.hubspot.config().client_id.clone()),
        client_secret: Some(sims.hubspot.config().client_secret.clone().into()),
        refresh_token: Some(sims.hubspot.config().refresh_token.clone().into()),
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
                object_type_id: Some(sims.hubspot.jobs_object_type_id()),
                properties: vec![],
            },
        ],
        mode: HubspotMode::Both,
        poll_interval_secs: 2,
        overlap_ms: 5_000,
        ..Default::default()
    });
    cfg.ingress.listen = format!("127.0.0.1:{ingress_port}");
    cfg.ingress.client_secret = Some(sims.hubspot.config().webhook_key().to_owned().into());
    cfg.ml.url = sims
        .ml
        .base_url()
        .to_string()
        .trim_end_matches('/')
        .to_owned();
    cfg.ml.protocol = MlProtocol::Tei;
    cfg.ml.api_key = None;
    // Nine processes on one host: no /metrics listeners to collide, no OTLP exporter.
    cfg.metrics.listen = String::new();
    cfg.telemetry.otlp_endpoint = None;
    cfg
}

/// The secrets of `cfg`, as the environment variables the instances read them from.
fn secret_env(cfg: &Config) -> Vec<(String, String)> {
    use secrecy::ExposeSecret;
    let mut env = vec![(
        "DB_PASSWORD".to_owned(),
        cfg.postgres.password.expose_secret().to_owned(),
    )];
    let mut add = |k: &str, v: &Option<secrecy::SecretString>| {
        if let Some(v) = v {
            env.push((k.to_owned(), v.expose_secret().to_owned()));
        }
    };
    add("BULLHORN_CLIENT_SECRET", &cfg.bullhorn.client_secret);
    add("BULLHORN_PASSWORD", &cfg.bullhorn.password);
    add("HUBSPOT_CLIENT_SECRET", &cfg.ingress.client_secret);
    if let Some(h) = &cfg.hubspot {
        add("HUBSPOT_ACCESS_TOKEN", &h.access_token);
        add("HUBSPOT_OAUTH_CLIENT_SECRET", &h.client_secret);
        add("HUBSPOT_REFRESH_TOKEN", &h.refresh_token);
    }
    env
}

async fn start_sims(args: &SoakArgs, ingress_port: u16) -> Result<Sims> {
    let bullhorn = crmflow_bullhorn::sim::Simulator::start(crmflow_bullhorn::sim::SimConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        candidates: args.candidates,
        job_orders: args.job_orders,
        // The soak makes the changes itself, so it can stop them.
        changes_per_sec: 0.0,
        ..Default::default()
    })
    .await
    .map_err(|e| Error::Other(format!("bullhorn simulator: {e}")))?;
    let hubspot = crmflow_hubspot::sim::Simulator::start(crmflow_hubspot::sim::SimConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        contacts: args.candidates / 2,
        deals: 0,
        jobs: args.job_orders / 2,
        changes_per_sec: 0.0,
        webhook_url: Some(format!(
            "http://127.0.0.1:{ingress_port}{}",
            crate::ingress::DEFAULT_PATH
        )),
        // Long enough to outlive a killed ingress; polling is the safety net beyond it.
        webhook_retry_ms: vec![500, 1_000, 2_000, 4_000, 8_000, 16_000],
        ..Default::default()
    })
    .await
    .map_err(|e| Error::Other(format!("hubspot simulator: {e}")))?;
    let ml = crmflow_embedding::sim::Simulator::start(crmflow_embedding::sim::SimArgs {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        latency_ms: 5,
        ..Default::default()
    })
    .await
    .map_err(|e| Error::Other(format!("ML simulator: {e}")))?;
    Ok(Sims {
        bullhorn,
        hubspot,
        ml,
    })
}

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

    let ingress_port = free_port()?;
    let sims = start_sims(&args, ingress_port).await?;
    let cfg = soak_config(cfg, &args, &sims, ingress_port);
    let config_path = args.state_dir.join("soak.toml");
    std::fs::write(&config_path, cfg.redacted_toml()).map_err(other)?;
    let mut env = secret_env(&cfg);
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
        specs(),
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
    sims.bullhorn.shutdown().await;
    sims.hubspot.shutdown().await;
    let _ = sims.ml.shutdown().await;
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

/// The shared counters of the chaos loops.
#[derive(Default)]
struct Counters {
    kills: AtomicU64,
    kafka_crashes: AtomicU64,
    postgres_crashes: AtomicU64,
    longest_restart_ms: AtomicU64,
    storms: AtomicU64,
    changes: AtomicU64,
}

async fn chaos_and_verify(
    cfg: &Config,
    args: &SoakArgs,
    services: &Services,
    sims: &Sims,
    procs: Arc<Mutex<Procs>>,
) -> Result<Report> {
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(Counters::default());
    let deadline = Instant::now() + Duration::from_secs_f64(args.minutes * 60.0);
    let chaos_started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();

    // The supervisor: restarts instances that exited, samples memory.
    let tending = Arc::new(AtomicBool::new(true));
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

    // Machine load (1-minute load average), every 5 s.
    let load = Arc::new(parking_lot::Mutex::new((0.0f64, 0.0f64, 0u32)));
    {
        let stop = stop.clone();
        let load = load.clone();
        tasks.spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                if let Some(l) = std::fs::read_to_string("/proc/loadavg")
                    .ok()
                    .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
                {
                    let mut g = load.lock();
                    g.0 = g.0.max(l);
                    g.1 += l;
                    g.2 += 1;
                }
                hold(Duration::from_secs(5), &stop).await;
            }
        });
    }

    // Changes.
    {
        let stop = stop.clone();
        let counters = counters.clone();
        let urls = [
            format!("{}/sim/changes", sims.bullhorn.base_url()),
            format!("{}/sim/changes", sims.hubspot.base_url()),
        ];
        let rate = args.changes_per_sec;
        tasks.spawn(async move {
            let http = reqwest::Client::new();
            let tick = Duration::from_millis(200);
            let mut owed = 0.0f64;
            while !stop.load(Ordering::SeqCst) {
                owed += rate * tick.as_secs_f64();
                let n = owed.floor() as usize;
                owed -= n as f64;
                if n > 0 {
                    for url in &urls {
                        // Through the simulators' control endpoint, as any test driver would.
                        match http
                            .post(format!("{url}?count={n}"))
                            .timeout(Duration::from_secs(10))
                            .send()
                            .await
                        {
                            Ok(r) if r.status().is_success() => {
                                let applied = r
                                    .json::<serde_json::Value>()
                                    .await
                                    .ok()
                                    .and_then(|v| v["applied"].as_u64())
                                    .unwrap_or(0);
                                counters.changes.fetch_add(applied, Ordering::Relaxed);
                            }
                            Ok(r) => say(&format!("changes: {url}: {}", r.status())),
                            Err(e) => say(&format!("changes: {url}: {e}")),
                        }
                    }
                }
                tokio::time::sleep(tick).await;
            }
        });
    }

    // Kills. Reaching --kills ends the chaos once the broker and the database each crashed
    // at least once (when crashes are on), so even a short soak has both.
    let kills_done = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        let counters = counters.clone();
        let procs = procs.clone();
        let interval = args.kill_interval;
        let max_kills = args.kills;
        let kills_done = kills_done.clone();
        tasks.spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(interval.sample()).await;
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let mut p = procs.lock().await;
                let i = rand::rng().random_range(0..p.len());
                match p.kill_and_restart(i).await {
                    Ok(Some(name)) => {
                        let n = counters.kills.fetch_add(1, Ordering::SeqCst) + 1;
                        if n % 25 == 0 {
                            say(&format!("{n} kills (last: {name})"));
                        }
                        if max_kills.is_some_and(|k| n >= k) {
                            kills_done.store(true, Ordering::SeqCst);
                        }
                    }
                    Ok(None) => {}
                    Err(e) => say(&format!("kill: {e}")),
                }
            }
        });
    }

    // Broker and database crashes.
    if args.infra_every > 0 {
        let stop = stop.clone();
        let counters = counters.clone();
        let services = services.clone();
        let every = Duration::from_secs(args.infra_every);
        tasks.spawn(async move {
            let mut next = Service::Kafka;
            'outer: loop {
                let wake = Instant::now() + every;
                while Instant::now() < wake {
                    if stop.load(Ordering::SeqCst) {
                        break 'outer;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                let s = services.clone();
                let which = next;
                let crashed = tokio::task::spawn_blocking(move || s.crash(which)).await;
                match crashed {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => say(&format!("crash {}: {e}", which.as_str())),
                    Err(e) => say(&format!("crash {}: {e}", which.as_str())),
                }
                // Down for a moment, as after a real crash.
                tokio::time::sleep(Duration::from_secs(2)).await;
                match services.up().await {
                    Ok(took) => {
                        let c = match which {
                            Service::Kafka => &counters.kafka_crashes,
                            Service::Postgres => &counters.postgres_crashes,
                        };
                        c.fetch_add(1, Ordering::SeqCst);
                        counters
                            .longest_restart_ms
                            .fetch_max(took.as_millis() as u64 + 2_000, Ordering::SeqCst);
                        say(&format!(
                            "{} SIGKILLed and back after {:.1} s",
                            which.as_str(),
                            took.as_secs_f64() + 2.0
                        ));
                    }
                    Err(e) => say(&format!("restart {}: {e}", which.as_str())),
                }
                next = match which {
                    Service::Kafka => Service::Postgres,
                    Service::Postgres => Service::Kafka,
                };
            }
        });
    }

    // Fault storms.
    if !args.storm_every.is_off() {
        let stop = stop.clone();
        let counters = counters.clone();
        let targets = StormTargets {
            bullhorn: sims.bullhorn.base_url(),
            hubspot: sims.hubspot.base_url(),
            ml: sims
                .ml
                .base_url()
                .to_string()
                .trim_end_matches('/')
                .to_owned(),
        };
        let every = args.storm_every;
        tasks.spawn(async move {
            let http = reqwest::Client::new();
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(every.sample()).await;
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let storm = rand::rng().random_range(0..STORMS);
                match storm_once(&http, &targets, storm, &stop).await {
                    Ok(()) => {
                        counters.storms.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => say(&format!("storm {storm}: {e}")),
                }
            }
            let _ = calm(&http, &targets).await;
        });
    }

    // Until the kills or the time are used up.
    let crashes_done = || {
        args.infra_every == 0
            || (counters.kafka_crashes.load(Ordering::SeqCst) > 0
                && counters.postgres_crashes.load(Ordering::SeqCst) > 0)
    };
    while !(kills_done.load(Ordering::SeqCst) && crashes_done()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop.store(true, Ordering::SeqCst);
    // Convergence is timed from here: the last change and the last fault.
    let converge_started = Instant::now();
    say("chaos over: changes and faults stop; waiting for the loops");
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r {
            say(&format!("a chaos loop failed: {e}"));
        }
    }
    let chaos_seconds = chaos_started.elapsed().as_secs_f64();
    let http = reqwest::Client::new();
    calm(
        &http,
        &StormTargets {
            bullhorn: sims.bullhorn.base_url(),
            hubspot: sims.hubspot.base_url(),
            ml: sims
                .ml
                .base_url()
                .to_string()
                .trim_end_matches('/')
                .to_owned(),
        },
    )
    .await?;
    services.up().await?;
    sims.hubspot.flush_index();

    // Converge.
    let templates =
        crate::stages::embed::text::Templates::from_config(&cfg.embed).map_err(Error::Other)?;
    let mut truth = verify::Truth::new();
    verify::bullhorn_truth(cfg, &templates, &sims.bullhorn, &mut truth)?;
    verify::hubspot_truth(cfg, &templates, &sims.hubspot, &mut truth)?;
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
    Ok(Report {
        chaos_seconds,
        kills: counters.kills.load(Ordering::SeqCst),
        unforced_exits: instances.values().map(|s| s.exits).sum(),
        kafka_crashes: counters.kafka_crashes.load(Ordering::SeqCst),
        postgres_crashes: counters.postgres_crashes.load(Ordering::SeqCst),
        longest_service_restart_seconds: counters.longest_restart_ms.load(Ordering::SeqCst) as f64
            / 1000.0,
        storms: counters.storms.load(Ordering::SeqCst),
        changes: counters.changes.load(Ordering::SeqCst),
        converged,
        converge_seconds,
        instances,
        load_average: {
            let (max, sum, n) = *load.lock();
            format!(
                "{:.1} mean, {max:.1} max over the chaos (1-minute load average, {} cores); at the end: {}",
                sum / f64::from(n.max(1)),
                std::thread::available_parallelism().map_or(0, |n| n.get()),
                std::fs::read_to_string("/proc/loadavg")
                    .unwrap_or_default()
                    .trim()
            )
        },
        verdict,
    })
}

struct StormTargets {
    bullhorn: String,
    hubspot: String,
    ml: String,
}

/// Number of distinct storms [`storm_once`] knows.
const STORMS: u32 = 10;

async fn post(http: &reqwest::Client, url: &str, body: serde_json::Value) -> Result<()> {
    let r = http
        .post(url)
        .json(&body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(other)?;
    if !r.status().is_success() {
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        return Err(Error::Other(format!("POST {url}: {status} {text}")));
    }
    Ok(())
}

/// Sleeps `d` or until the chaos stops.
async fn hold(d: Duration, stop: &AtomicBool) {
    let until = Instant::now() + d;
    while Instant::now() < until && !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One fault storm through a simulator's `/sim` control endpoints, undone at its end.
async fn storm_once(
    http: &reqwest::Client,
    t: &StormTargets,
    storm: u32,
    stop: &AtomicBool,
) -> Result<()> {
    use serde_json::json;
    let secs = Duration::from_secs(rand::rng().random_range(3..=12));
    let (bh, hs, ml) = (
        format!("{}/sim/faults", t.bullhorn),
        format!("{}/sim/faults", t.hubspot),
        format!("{}/sim/faults", t.ml),
    );
    let (what, result) = match storm {
        0 => ("bullhorn 429s", post(http, &bh, json!({"rate_limit_next": 40})).await),
        1 => {
            post(http, &bh, json!({"error_rate": 0.4})).await?;
            hold(secs, stop).await;
            ("bullhorn 5xx", post(http, &bh, json!({"error_rate": 0.0})).await)
        }
        2 => {
            // Slower than the client's timeout: requests hang.
            post(http, &bh, json!({"latency_ms": 35_000, "drop_rate": 0.2})).await?;
            hold(secs, stop).await;
            (
                "bullhorn hangs and drops",
                post(http, &bh, json!({"latency_ms": 0, "drop_rate": 0.0})).await,
            )
        }
        3 => (
            "bullhorn expired sessions",
            post(http, &format!("{}/sim/expire-sessions", t.bullhorn), json!({})).await,
        ),
        4 => (
            "hubspot 429s",
            post(http, &hs, json!({"rate_limit_next": 40})).await,
        ),
        5 => {
            post(http, &hs, json!({"error_rate": 0.4})).await?;
            hold(secs, stop).await;
            ("hubspot 5xx", post(http, &hs, json!({"error_rate": 0.0})).await)
        }
        6 => (
            "hubspot hangs",
            post(http, &hs, json!({"hang_next": 4, "hang_ms": 40_000})).await,
        ),
        7 => (
            "hubspot expired tokens",
            post(http, &format!("{}/sim/expire-tokens", t.hubspot), json!({})).await,
        ),
        8 => {
            post(http, &ml, json!({"error_rate": 0.5, "fail_status": 503})).await?;
            hold(secs, stop).await;
            ("ML 5xx", post(http, &ml, json!({"error_rate": 0.0})).await)
        }
        _ => (
            "ML hangs and 429s",
            post(
                http,
                &ml,
                json!({"hang_next": 2, "hang_secs": 45, "fail_next": 20, "fail_status": 429, "retry_after_secs": 1}),
            )
            .await,
        ),
    };
    say(&format!("storm: {what}"));
    result
}

/// Takes every fault away.
async fn calm(http: &reqwest::Client, t: &StormTargets) -> Result<()> {
    use serde_json::json;
    post(
        http,
        &format!("{}/sim/faults", t.bullhorn),
        json!({"rate_limit_next": 0, "error_rate": 0.0, "latency_ms": 0, "drop_rate": 0.0, "fail_next": 0, "drop_next": 0}),
    )
    .await?;
    post(
        http,
        &format!("{}/sim/faults", t.hubspot),
        json!({"rate_limit_next": 0, "error_rate": 0.0, "hang_next": 0, "fail_next": 0}),
    )
    .await?;
    post(
        http,
        &format!("{}/sim/faults", t.ml),
        json!({"error_rate": 0.0, "hang_next": 0, "fail_next": 0, "fail_status": 503}),
    )
    .await
}

/// The report as the terminal shows it.
pub fn render(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(o, "\n== crmflow soak ==");
    let _ = writeln!(
        o,
        "chaos              {:.0} s: {} kills survived, {} Kafka and {} PostgreSQL crashes (longest restart {:.1} s), {} fault storms, {} CRM changes",
        r.chaos_seconds,
        r.kills,
        r.kafka_crashes,
        r.postgres_crashes,
        r.longest_service_restart_seconds,
        r.storms,
        r.changes
    );
    let _ = writeln!(
        o,
        "exits              {} exits of stage processes the soak did not cause (all restarted)",
        r.unforced_exits
    );
    let _ = writeln!(
        o,
        "converged          {} after {:.1} s",
        if r.converged { "yes" } else { "NO" },
        r.converge_seconds
    );
    let _ = writeln!(o, "verdict            {}", r.verdict.line());
    let _ = write!(o, "{}", r.verdict.details(5));
    let _ = writeln!(
        o,
        "{:<18} {:>6} {:>6} {:>9} {:>14}",
        "instance", "kills", "exits", "restarts", "peak RSS (MiB)"
    );
    for (name, s) in &r.instances {
        let _ = writeln!(
            o,
            "{name:<18} {:>6} {:>6} {:>9} {:>14.1}",
            s.kills,
            s.exits,
            s.restarts,
            s.peak_rss_kib as f64 / 1024.0
        );
    }
    let _ = writeln!(o, "load average       {}", r.load_average);
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_as_min_max_or_one_number() {
        assert_eq!(
            "1-5".parse::<Interval>().unwrap(),
            Interval { min: 1.0, max: 5.0 }
        );
        assert_eq!(
            "2".parse::<Interval>().unwrap(),
            Interval { min: 2.0, max: 2.0 }
        );
        assert!("5-1".parse::<Interval>().is_err());
        assert!("x".parse::<Interval>().is_err());
        assert!("0-0".parse::<Interval>().unwrap().is_off());
        let d = "1-2".parse::<Interval>().unwrap().sample();
        assert!(d >= Duration::from_secs(1) && d <= Duration::from_secs(2));
    }

    #[test]
    fn every_stage_runs_and_sinks_and_embeds_run_twice() {
        let s = specs();
        let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
        for stage in ["ingress", "normalize", "match", "sink-2", "embed-2"] {
            assert!(names.contains(&stage), "{stage}");
        }
        assert!(s.iter().all(|s| s.args[0] == "run"));
    }
}
