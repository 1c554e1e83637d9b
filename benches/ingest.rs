//! Ingest benchmark: initial sync of 50,000 candidates from the in-process Bullhorn simulator (50 ms added
//! latency per request, its default limit of 1,500 requests/minute) through the real producer into Kafka,
//! cursors in Postgres. Prints records/s, elapsed time, request counts and peak RSS (`VmHWM`).
//!
//! Needs the local services (`scripts/services up`; settings from `scripts/services env`). The ceiling under
//! the rate limit is 25 pages/s x 500 = 12,500 records/s; the target is 80% of it.
//!
//! `cargo bench -p crmflow --bench ingest` (env `BENCH_CANDIDATES` overrides the record count).

mod common;

use std::time::{Duration, Instant};

use crmflow::config::Config;
use crmflow_bullhorn::sim::{SimConfig, Simulator};
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio_util::sync::CancellationToken;

fn config() -> Config {
    let mut cfg = common::isolated_config("bench_ingest");
    cfg.bullhorn.entities = vec!["Candidate".into()];
    cfg
}

async fn services_up(cfg: &Config) -> Result<(), String> {
    crmflow::store::connect(cfg).await.map_err(|e| {
        format!(
            "Postgres at {}:{}: {e}",
            cfg.postgres.host, cfg.postgres.port
        )
    })?;
    let consumer: BaseConsumer = crmflow::kafka::client_config(&cfg.kafka)
        .create()
        .map_err(|e| format!("Kafka client: {e}"))?;
    consumer
        .fetch_metadata(None, Duration::from_secs(5))
        .map_err(|e| format!("Kafka at {}: {e}", cfg.kafka.bootstrap_servers))?;
    Ok(())
}

#[tokio::main]
async fn main() {
    let candidates: usize = std::env::var("BENCH_CANDIDATES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let mut cfg = config();
    if let Err(e) = services_up(&cfg).await {
        eprintln!("ingest bench needs the local services: {e}\nstart them with `scripts/services up` and `eval \"$(scripts/services env)\"`");
        std::process::exit(1);
    }

    let sim = Simulator::start(SimConfig {
        candidates,
        job_orders: 10,
        latency_ms: 50,
        rate_limit_per_min: 1_500,
        ..SimConfig::for_tests()
    })
    .await
    .expect("simulator");
    let c = sim.credentials();
    let b = &mut cfg.bullhorn;
    b.rest_url = sim.rest_services_url();
    b.client_id = Some(c.client_id);
    b.client_secret = Some(c.client_secret.into());
    b.username = Some(c.username);
    b.password = Some(c.password.into());
    crmflow::store::migrate(&cfg).await.expect("migrate");
    crmflow::kafka::ensure_topics(&cfg.kafka, &crmflow::pipeline::topic_specs(&cfg))
        .await
        .expect("topics");
    let rss_before = common::vm_kib("VmRSS:");
    let hwm_before = common::vm_kib("VmHWM:");

    let t = Instant::now();
    crmflow::sources::bullhorn::run_with(&cfg, CancellationToken::new(), true)
        .await
        .expect("ingest");
    let elapsed = t.elapsed();

    let topic = crmflow::kafka::Topics::new(&cfg.kafka).raw("bullhorn", "Candidate");
    let consumer: BaseConsumer = crmflow::kafka::client_config(&cfg.kafka)
        .create()
        .expect("consumer");
    let mut in_topic = 0i64;
    for p in 0..cfg.kafka.partitions {
        let (lo, hi) = consumer
            .fetch_watermarks(&topic, p, Duration::from_secs(10))
            .expect("watermarks");
        in_topic += hi - lo;
    }
    let stats = sim.stats();
    let count = |status: &str| -> u64 {
        stats
            .requests
            .iter()
            .filter(|(k, _)| !k.starts_with("sim/"))
            .filter_map(|(_, m)| m.get(status))
            .sum()
    };
    let rest: u64 = stats
        .requests
        .iter()
        .filter(|(k, _)| k.starts_with("search/") || k.starts_with("entity/"))
        .flat_map(|(_, m)| m.values())
        .sum();
    let rate = candidates as f64 / elapsed.as_secs_f64();
    println!("ingest bench: {candidates} candidates, sim latency 50 ms, sim limit 1,500 req/min, client budget {} req/min", cfg.bullhorn.requests_per_minute);
    println!("  elapsed          {:.2} s", elapsed.as_secs_f64());
    println!(
        "  records/s        {rate:.0} ({:.0}% of the 12,500/s ceiling)",
        rate / 12_500.0 * 100.0
    );
    println!("  events in topic  {in_topic}");
    println!(
        "  REST requests    {rest} (search + entity; 200: {}, 429: {}, 5xx: {})",
        count("200"),
        count("429"),
        count("500") + count("503")
    );
    println!(
        "  all requests     {} (including OAuth and login)",
        stats.total_requests
    );
    println!(
        "  peak RSS         {} MiB (VmHWM, simulator included; before the sync: RSS {} MiB, VmHWM {} MiB)",
        common::vm_kib("VmHWM:") / 1024,
        rss_before / 1024,
        hwm_before / 1024
    );
    assert_eq!(
        in_topic as usize, candidates,
        "every candidate is in the topic"
    );
    sim.shutdown().await;
}
