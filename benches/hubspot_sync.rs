//! HubSpot initial sync benchmark: a snapshot of 20,000 contacts from the in-process HubSpot
//! simulator under HubSpot's smallest burst limit (100 requests per rolling 10 s, enforced by the
//! simulator with 429s) through the real producer into Kafka, cursors in Postgres. Prints records/s
//! against the ceiling that limit allows: 10 requests/s x 100 records per list page = 1,000
//! records/s. Target: 80% of the ceiling.
//!
//! Needs the local services (`scripts/services up`; settings from `scripts/services env`).
//! `cargo bench -p crmflow --bench hubspot_sync` (env `BENCH_CONTACTS` overrides the count).

mod common;

use std::time::Instant;

use crmflow::config::{HubspotConfig, HubspotObject};
use crmflow_hubspot::sim::{SimConfig, Simulator};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() {
    let contacts: usize = std::env::var("BENCH_CONTACTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let ten_secondly = 100u32;
    let page = 100u32;
    let sim = Simulator::start(SimConfig {
        contacts,
        deals: 0,
        jobs: 1,
        ten_secondly_limit: ten_secondly,
        search_per_sec: 4,
        index_lag_ms: 2_000,
        latency_ms: 20,
        ..SimConfig::for_tests()
    })
    .await
    .expect("simulator");
    let mut cfg = common::isolated_config("bench_hubspot_sync");
    cfg.bullhorn.enabled = false;
    cfg.hubspot = Some(HubspotConfig {
        base_url: sim.base_url(),
        access_token: Some(sim.private_app_token().into()),
        objects: vec![HubspotObject {
            entity: "contact".into(),
            object_type: "contacts".into(),
            object_type_id: Some("0-1".into()),
            properties: vec![],
        }],
        page_size: page,
        ..Default::default()
    });
    if let Err(e) = crmflow::store::migrate(&cfg).await {
        eprintln!("hubspot_sync bench needs the local services ({e}); run `scripts/services up`");
        std::process::exit(1);
    }
    crmflow::kafka::ensure_topics(&cfg.kafka, &crmflow::pipeline::topic_specs(&cfg))
        .await
        .expect("topics");

    let t = Instant::now();
    crmflow::sources::hubspot::run_with(&cfg, CancellationToken::new(), true)
        .await
        .expect("sync");
    let secs = t.elapsed().as_secs_f64();
    let stats = sim.stats();
    let rate = contacts as f64 / secs;
    let ceiling = f64::from(ten_secondly) / 10.0 * f64::from(page);
    println!("hubspot initial sync: {contacts} contacts in {secs:.1} s = {rate:.0} records/s");
    println!(
        "  ceiling under {ten_secondly} requests/10 s x {page} per page = {ceiling:.0} records/s; achieved {:.0}% (target >= 80%)",
        100.0 * rate / ceiling
    );
    println!(
        "  API requests {}, 429s {:?}, client budget 90/10 s (HubSpot default of the client)",
        stats.total_requests, stats.rate_limited
    );
    sim.shutdown().await;
}
