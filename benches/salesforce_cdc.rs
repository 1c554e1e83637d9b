//! Salesforce CDC benchmark: change events into Kafka. The CDC source snapshots `BENCH_CONTACTS`
//! (default 20,000) contacts, is stopped, the simulator publishes `BENCH_EVENTS` (default 50,000)
//! UPDATE change events (field updates of random contacts), then the source is started again and
//! the clock runs until its stored replay id — saved only after Kafka acknowledged every event
//! before it — reaches the simulator's newest event. UPDATE events carry only the changed fields,
//! so every batch's records are read again by REST (composite reads of up to 2,000 ids).
//! Target: >= 5,000 events/s.
//!
//! Needs the local services (`scripts/services up`; settings from `scripts/services env`).
//! `cargo bench -p crmflow --bench salesforce_cdc`.

mod common;

use std::time::{Duration, Instant};

use crmflow::config::SalesforceMode;
use crmflow_salesforce::sim::{SimConfig, Simulator};
use rand::Rng;
use tokio_util::sync::CancellationToken;

fn env_or(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn stored_replay(client: &tokio_postgres::Client) -> u64 {
    let hex: Option<String> = client
        .query_opt(
            "SELECT cursor->>'replay_id' FROM source_cursors WHERE source = 'salesforce' AND entity = 'Contact#cdc'",
            &[],
        )
        .await
        .expect("cursor")
        .and_then(|r| r.get(0));
    hex.and_then(|h| u64::from_str_radix(&h, 16).ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let contacts = env_or("BENCH_CONTACTS", 20_000);
    let events = env_or("BENCH_EVENTS", 50_000);
    let sim = Simulator::start(SimConfig {
        contacts,
        positions: 1,
        ..SimConfig::for_tests()
    })
    .await
    .expect("simulator");
    let mut cfg = common::isolated_config("bench_sf_cdc");
    cfg.bullhorn.enabled = false;
    let ca = std::env::temp_dir().join(format!("{}-ca.pem", cfg.postgres.schema));
    std::fs::write(&ca, sim.ca_pem()).expect("CA file");
    let s = &mut cfg.salesforce;
    s.enabled = true;
    s.mode = SalesforceMode::Cdc;
    s.login_url = sim.base_url();
    s.pubsub_endpoint = Some(sim.base_url());
    s.client_id = Some(sim.config().client_id.clone());
    s.client_secret = Some(sim.config().client_secret.clone().into());
    s.ca_file = Some(ca);
    s.objects = vec!["Contact".into()];
    if let Err(e) = crmflow::store::migrate(&cfg).await {
        eprintln!("salesforce_cdc bench needs the local services ({e}); run `scripts/services up`");
        std::process::exit(1);
    }
    crmflow::kafka::ensure_topics(&cfg.kafka, &crmflow::pipeline::topic_specs(&cfg))
        .await
        .expect("topics");
    let pg = crmflow::store::connect(&cfg).await.expect("postgres");

    // Snapshot, then streaming until a replay id is stored (updates before the subscription are
    // read by the snapshot, so keep writing until one arrives as an event); then the source is down.
    let ids: Vec<String> = sim
        .records("Contact")
        .unwrap()
        .iter()
        .filter(|r| r["IsDeleted"] == false)
        .map(|r| r["Id"].as_str().unwrap().to_string())
        .collect();
    let t = Instant::now();
    let stop = CancellationToken::new();
    let task = {
        let cfg = cfg.clone();
        let stop = stop.clone();
        tokio::spawn(async move { crmflow::sources::salesforce::run_with(&cfg, stop, false).await })
    };
    while stored_replay(&pg).await == 0 {
        sim.update(
            "Contact",
            &ids[0],
            serde_json::json!({"Title": format!("warm-up {}", rand::random::<u32>())}),
        )
        .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "snapshot within 600 s"
        );
    }
    println!(
        "salesforce CDC bench: snapshot of {contacts} contacts and first event in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    stop.cancel();
    task.await.unwrap().expect("snapshot");

    let t = Instant::now();
    let mut rng = rand::rng();
    for i in 0..events {
        let id = &ids[rng.random_range(0..ids.len())];
        sim.update(
            "Contact",
            id,
            serde_json::json!({"Title": format!("Title {i}")}),
        )
        .unwrap();
    }
    let tip = sim.stats()["tip_replay"].as_u64().unwrap();
    println!(
        "  published {events} UPDATE events in {:.1} s (tip replay id {tip})",
        t.elapsed().as_secs_f64()
    );
    let before = sim.stats();

    let stop = CancellationToken::new();
    let task = {
        let cfg = cfg.clone();
        let stop = stop.clone();
        tokio::spawn(async move { crmflow::sources::salesforce::run_with(&cfg, stop, false).await })
    };
    let t = Instant::now();
    loop {
        if stored_replay(&pg).await >= tip {
            break;
        }
        if t.elapsed() > Duration::from_secs(600) {
            panic!("not caught up after 600 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    stop.cancel();
    task.await.unwrap().expect("source");
    let after = sim.stats();
    let composite = after["by_route"]["composite/sobjects"]
        .as_u64()
        .unwrap_or(0)
        - before["by_route"]["composite/sobjects"]
            .as_u64()
            .unwrap_or(0);
    let rate = events as f64 / secs;
    println!(
        "  {events} events acknowledged in Kafka in {secs:.2} s = {rate:.0} events/s (target >= 5,000/s)"
    );
    println!(
        "  REST re-reads: {composite} composite requests ({:.0} events per request)",
        events as f64 / composite.max(1) as f64
    );
    sim.shutdown().await;
}
