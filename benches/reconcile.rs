//! Reconcile benchmark: one Bullhorn entity of 1,000,000 candidates in the in-process simulator (its rate
//! limit 1,500 requests/minute; `BENCH_LATENCY_MS` added per request, default 0), Postgres seeded with the
//! same (id, version, deleted) rows directly, then drift: 0.1% hard-deleted in the CRM, ~0.1% set back and
//! ~0.1% removed in Postgres. Part 1 reconciles the entity with the whole budget (`api_share` 0.98 of
//! 1,500/min) and prints records/s against the ceiling (1,500 requests/min x 500 ids = 12,500 ids/s),
//! requests and peak RSS. Part 2 measures how long a scheduled reconcile (default share 0.2) holds ingest
//! back: the latency from a JobOrder update in the simulator to its event on the raw topic, with the
//! poller at its share of the budget, idle and while the reconcile runs.
//!
//! Needs the local services (`scripts/services up`; `eval "$(scripts/services env)"`).
//! `cargo bench -p crmflow --bench reconcile` (`BENCH_RECORDS` overrides the record count).

mod common;

use std::time::{Duration, Instant};

use crmflow::config::Config;
use crmflow::reconcile::{self, Options};
use crmflow_bullhorn::sim::{SimConfig, SimHandle, Simulator};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

const CEILING_RPM: u32 = 1_500;

fn env<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn seed_postgres(cfg: &Config, sim: &SimHandle) -> usize {
    let versions = sim.versions("Candidate").unwrap();
    let client = crmflow::store::connect(cfg).await.unwrap();
    let topic = crmflow::kafka::Topics::new(&cfg.kafka).raw("bullhorn", "Candidate");
    for chunk in versions.chunks(20_000) {
        let ids: Vec<String> = chunk.iter().map(|r| r.0.to_string()).collect();
        let vs: Vec<i64> = chunk.iter().map(|r| r.1).collect();
        let ds: Vec<bool> = chunk.iter().map(|r| r.2).collect();
        client
            .execute(
                "INSERT INTO candidates (crm, crm_id, source_version, deleted_at, event_id, raw_topic, raw_partition, raw_offset)
                 SELECT 'bullhorn', id, v, CASE WHEN d THEN now() END, 'bench', $4, 0, 0
                 FROM unnest($1::text[], $2::int8[], $3::bool[]) AS t(id, v, d)",
                &[&ids, &vs, &ds, &topic],
            )
            .await
            .unwrap();
    }
    client.batch_execute("ANALYZE candidates").await.unwrap();
    versions.len()
}

/// Drift: every 1000th record hard-deleted in the CRM, every 997th set back and every 1009th removed
/// in Postgres. Returns (gone, stale, missing) as made.
async fn drift(cfg: &Config, sim: &SimHandle) -> (usize, usize, usize) {
    let versions = sim.versions("Candidate").unwrap();
    let client = crmflow::store::connect(cfg).await.unwrap();
    let (mut gone, mut stale, mut missing) = (Vec::new(), Vec::new(), Vec::new());
    for (i, (id, _, deleted)) in versions.iter().enumerate() {
        if *deleted {
            continue;
        }
        if i % 1000 == 0 {
            gone.push(*id);
        } else if i % 997 == 0 {
            stale.push(id.to_string());
        } else if i % 1009 == 0 {
            missing.push(id.to_string());
        }
    }
    for id in &gone {
        sim.hard_delete("Candidate", *id).unwrap();
    }
    client
        .execute(
            "UPDATE candidates SET source_version = source_version - 1 WHERE crm_id = ANY($1)",
            &[&stale],
        )
        .await
        .unwrap();
    client
        .execute("DELETE FROM candidates WHERE crm_id = ANY($1)", &[&missing])
        .await
        .unwrap();
    (gone.len(), stale.len(), missing.len())
}

/// Latency from a JobOrder update to its event on the raw topic, `n` samples.
async fn ingest_latencies(
    sim: &SimHandle,
    consumer: &BaseConsumer,
    ids: &[i64],
    n: usize,
) -> Vec<Duration> {
    let mut out = Vec::new();
    for i in 0..n {
        let id = ids[i % ids.len()];
        let version = sim
            .update(
                "JobOrder",
                id,
                serde_json::json!({"numOpenings": i as i64 % 7 + 1}),
            )
            .unwrap();
        let t = Instant::now();
        let key = id.to_string();
        loop {
            let got = tokio::task::block_in_place(|| consumer.poll(Duration::from_millis(20)));
            if let Some(Ok(m)) = got {
                let ev = m
                    .payload()
                    .and_then(|p| crmflow::codec::change_event().decode(p).ok());
                if m.key() == Some(key.as_bytes())
                    && ev.is_some_and(|e| e.source_version >= version)
                {
                    out.push(t.elapsed());
                    break;
                }
            }
            if t.elapsed() > Duration::from_secs(60) {
                panic!("JobOrder {id} update not ingested within 60 s");
            }
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    out
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn summary(v: &[Duration]) -> String {
    let mut ms: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let p = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    format!(
        "p50 {:.0} ms, p90 {:.0} ms, max {:.0} ms ({} samples)",
        p(0.5),
        p(0.9),
        ms[ms.len() - 1],
        ms.len()
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let records: usize = env("BENCH_RECORDS", 1_000_000);
    let latency: u64 = env("BENCH_LATENCY_MS", 0);
    let mut cfg = common::isolated_config("bench_reconcile");
    let t = Instant::now();
    let sim = Simulator::start(SimConfig {
        candidates: records,
        job_orders: 20,
        rate_limit_per_min: CEILING_RPM,
        latency_ms: latency,
        ..SimConfig::for_tests()
    })
    .await
    .expect("simulator");
    eprintln!(
        "simulator with {records} candidates in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let c = sim.credentials();
    let b = &mut cfg.bullhorn;
    b.rest_url = sim.rest_services_url();
    b.client_id = Some(c.client_id);
    b.client_secret = Some(c.client_secret.into());
    b.username = Some(c.username);
    b.password = Some(c.password.into());
    b.requests_per_minute = CEILING_RPM;
    b.entities = vec!["Candidate".into()];
    b.poll_interval_secs = 1;
    crmflow::store::migrate(&cfg).await.expect("migrate");
    crmflow::kafka::ensure_topics(&cfg.kafka, &crmflow::pipeline::topic_specs(&cfg))
        .await
        .expect("topics");
    let t = Instant::now();
    let seeded = seed_postgres(&cfg, &sim).await;
    eprintln!(
        "postgres seeded with {seeded} rows in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let (gone, stale, missing) = drift(&cfg, &sim).await;

    // Part 1: the whole budget.
    let mut full = cfg.clone();
    full.reconcile.api_share = 0.98;
    sim.reset_stats();
    let rss_before = common::vm_kib("VmRSS:");
    let hwm_before = common::vm_kib("VmHWM:");
    let load_before = loadavg();
    let t = Instant::now();
    let reports = reconcile::run(&full, &Options::default())
        .await
        .expect("reconcile");
    let elapsed = t.elapsed().as_secs_f64();
    let r = &reports[0];
    let stats = sim.stats();
    let count = |prefix: &str| -> u64 {
        stats
            .requests
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .flat_map(|(_, m)| m.values())
            .sum()
    };
    let status = |s: &str| -> u64 {
        stats
            .requests
            .iter()
            .filter(|(k, _)| !k.starts_with("sim/"))
            .filter_map(|(_, m)| m.get(s))
            .sum()
    };
    let ids_per_s = r.listed as f64 / elapsed;
    let ceiling = f64::from(CEILING_RPM) * 500.0 / 60.0;
    let rpm = r.requests as f64 / elapsed * 60.0;
    let (rate, burst) = full.reconcile.per_minute_limit(CEILING_RPM);
    println!(
        "reconcile bench: {records} Bullhorn candidates, sim limit {CEILING_RPM} req/min, sim latency {latency} ms, client budget {} req/min (api_share 0.98: rate {rate}/min + burst {burst}), list_concurrency {}; load average before: {load_before}",
        full.reconcile.budget(CEILING_RPM),
        full.reconcile.concurrency(),
    );
    println!("  made drift       gone {gone}, stale {stale}, missing {missing}");
    println!(
        "  found            listed {}, missing {}, stale {}, gone {}, newer_in_pg {}, in_dlq {}; repaired {}",
        r.listed, r.missing, r.stale, r.gone, r.newer_in_pg, r.in_dlq, r.repaired
    );
    println!("  elapsed          {elapsed:.1} s");
    println!(
        "  ids/s            {ids_per_s:.0} ({:.0}% of the {ceiling:.0}/s ceiling)",
        ids_per_s / ceiling * 100.0
    );
    println!(
        "  requests         {} ({rpm:.0}/min; query {}, entity {}; 429: {})",
        r.requests,
        count("query/"),
        count("entity/"),
        status("429")
    );
    println!("  load average     {} (after part 1)", loadavg());
    println!(
        "  peak RSS         {} MiB (VmHWM, simulator with {records} records included; before the run: RSS {} MiB, VmHWM {} MiB)",
        common::vm_kib("VmHWM:") / 1024,
        rss_before / 1024,
        hwm_before / 1024
    );
    assert_eq!(r.gone as usize, gone, "every hard delete found");
    assert_eq!(r.stale as usize, stale);
    assert_eq!(r.missing as usize, missing);

    // Part 2: ingest (JobOrder, poll mode, at its share) alone, then beside a scheduled-share reconcile.
    let mut ingest = cfg.clone();
    ingest.bullhorn.entities = vec!["JobOrder".into()];
    ingest.bullhorn.requests_per_minute = cfg.reconcile.ingest_budget(CEILING_RPM);
    let stop = CancellationToken::new();
    let poller = {
        let (ingest, stop) = (ingest.clone(), stop.clone());
        tokio::spawn(
            async move { crmflow::sources::bullhorn::run_with(&ingest, stop, false).await },
        )
    };
    let topic = crmflow::kafka::Topics::new(&cfg.kafka).raw("bullhorn", "JobOrder");
    let consumer: BaseConsumer = crmflow::kafka::client_config(&cfg.kafka)
        .set("group.id", "bench-reconcile")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..cfg.kafka.partitions {
        tpl.add_partition_offset(&topic, p, Offset::End).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let jobs: Vec<i64> = sim
        .versions("JobOrder")
        .unwrap()
        .iter()
        .filter(|r| !r.2)
        .map(|r| r.0)
        .collect();
    // Let the poller finish its first sync.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle = ingest_latencies(&sim, &consumer, &jobs, 15).await;
    let scheduled_stop = CancellationToken::new();
    let t = Instant::now();
    let rec = {
        let (cfg, stop) = (cfg.clone(), scheduled_stop.clone());
        tokio::spawn(async move {
            let opts = Options::default();
            let mut lock = reconcile::runs::ReconcileLock::try_acquire(&cfg)
                .await
                .unwrap()
                .unwrap();
            let listers = reconcile::listers(&cfg, &opts).await.unwrap();
            let r = reconcile::engine::run_all(&cfg, &mut lock, &listers, &opts, &stop).await;
            lock.release().await;
            r
        })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = ingest_latencies(&sim, &consumer, &jobs, 15).await;
    scheduled_stop.cancel();
    let partial = rec.await.unwrap().expect("scheduled-share reconcile");
    let window = t.elapsed().as_secs_f64();
    stop.cancel();
    let _ = poller.await;
    let p = partial.first().cloned().unwrap_or_default();
    println!(
        "  ingest latency   idle: {}; beside a reconcile at share {:.2}: {}",
        summary(&idle),
        cfg.reconcile.share(),
        summary(&during)
    );
    // The limiter lets through at most `burst + rate x window` in a window: a short window's
    // requests scaled to a minute overstate the rate by the burst.
    let (rate, burst) = cfg.reconcile.per_minute_limit(CEILING_RPM);
    let allowed = f64::from(burst) + f64::from(rate) * window / 60.0;
    println!(
        "  scheduled share  reconcile listed {} ids in {window:.1} s ({:.0} ids/s), {} requests (the limiter allows at most {allowed:.0} in {window:.1} s: burst {burst} + {rate}/min; steady rate {:.0}/min of its {} req/min share), ingest budget {} req/min; load average {}",
        p.listed,
        p.listed as f64 / window,
        p.requests,
        (p.requests as f64 - f64::from(burst)).max(0.0) / window * 60.0,
        cfg.reconcile.budget(CEILING_RPM),
        ingest.bullhorn.requests_per_minute,
        loadavg()
    );
    assert!(
        p.requests as f64 <= allowed + 1.0,
        "the scheduled reconcile overshot its share"
    );
    sim.shutdown().await;
}
