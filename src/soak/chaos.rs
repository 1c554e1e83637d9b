//! The chaos loops, run until the kills (`--kills`) or the time (`--minutes`) are used up: record
//! changes in every CRM simulator, SIGKILLs of stage instances, crashes of Kafka and PostgreSQL in
//! turn, fault storms, and a sampler of the machine's load.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::Mutex;

use super::options::SoakArgs;
use super::procs::Procs;
use super::say;
use super::services::{Service, Services};
use super::storms::{self, StormTargets};

/// The shared counters of the chaos loops.
#[derive(Default)]
pub struct Counters {
    pub kills: AtomicU64,
    pub kafka_crashes: AtomicU64,
    pub postgres_crashes: AtomicU64,
    pub longest_restart_ms: AtomicU64,
    pub storms: AtomicU64,
    pub changes: AtomicU64,
}

/// What the chaos left for the report.
pub struct Outcome {
    pub counters: Arc<Counters>,
    pub chaos_seconds: f64,
    /// When the last change and the last fault were made: convergence is timed from here.
    pub stopped_at: Instant,
    /// 1-minute load average over the chaos: (max, sum, samples).
    pub load: (f64, f64, u32),
}

/// Runs every chaos loop until the kills or the time are used up (and, when crashes are on,
/// Kafka and PostgreSQL each crashed at least once), then stops them all and takes every fault
/// away again.
pub async fn run(
    args: &SoakArgs,
    services: &Services,
    targets: &StormTargets,
    procs: Arc<Mutex<Procs>>,
) -> Outcome {
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(Counters::default());
    let deadline = args.time_limit().map(|d| Instant::now() + d);
    let chaos_started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();

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
                storms::hold(Duration::from_secs(5), &stop).await;
            }
        });
    }

    // Changes, in every CRM simulator, through its control endpoint as any test driver would.
    {
        let stop = stop.clone();
        let counters = counters.clone();
        let urls = targets.change_urls();
        let http = targets.http.clone();
        let rate = args.changes_per_sec;
        tasks.spawn(async move {
            let tick = Duration::from_millis(200);
            let mut owed = 0.0f64;
            while !stop.load(Ordering::SeqCst) {
                owed += rate * tick.as_secs_f64();
                let n = owed.floor() as usize;
                owed -= n as f64;
                if n > 0 {
                    for url in &urls {
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
        let targets = targets.clone();
        let every = args.storm_every;
        tasks.spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(every.sample()).await;
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let storm = rand::rng().random_range(0..storms::STORMS);
                match storms::storm_once(&targets, storm, &stop).await {
                    Ok(()) => {
                        counters.storms.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => say(&format!("storm {storm}: {e}")),
                }
            }
            let _ = storms::calm(&targets).await;
        });
    }

    // Until the kills or the time are used up.
    let crashes_done = || {
        args.infra_every == 0
            || (counters.kafka_crashes.load(Ordering::SeqCst) > 0
                && counters.postgres_crashes.load(Ordering::SeqCst) > 0)
    };
    while !(kills_done.load(Ordering::SeqCst) && crashes_done())
        && deadline.is_none_or(|d| Instant::now() < d)
    {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let stopped_at = Instant::now();
    say("chaos over: changes and faults stop; waiting for the loops");
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r {
            say(&format!("a chaos loop failed: {e}"));
        }
    }
    let load = *load.lock();
    Outcome {
        counters,
        chaos_seconds: chaos_started.elapsed().as_secs_f64(),
        stopped_at,
        load,
    }
}
