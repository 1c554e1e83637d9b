//! Salesforce initial sync benchmark: a poll-mode snapshot of `BENCH_CONTACTS` (default 50,000)
//! contacts from the in-process Salesforce simulator (over TLS, `latency_ms` added to every REST
//! request) through the real producer into Kafka, cursors in Postgres.
//!
//! The ceiling it prints comes from the simulator's limits: a keyset cursor has one query in flight
//! per object, each answering at most `page_size` (Salesforce's maximum, 2,000) records in the
//! simulated latency, so the API allows `page_size / latency` records/s. `latency_ms` is each
//! request's whole answer time at the simulator — the answer leaves no sooner than that after the
//! request arrived, the simulator's own work (query evaluation, rendering) included — as a real
//! org's latency includes its compute; network transfer and the client's parsing come on top. It also prints how much
//! of the API budget the sync used: requests against `budget_share` of the daily allowance
//! (`daily_api_limit`), and the minimum a sync can do (one request per page). Target: >= 80% of
//! the ceiling. Then the per-page split: the query's round trip (and the simulator's compute in it),
//! how long the cycle waited for each page, and the time spent emitting, waiting for Kafka's
//! acknowledgements and saving the cursor (these overlap the next page's query), with the load
//! average: figures taken while other work runs on the machine are noisy.
//!
//! Needs the local services (`scripts/services up`; settings from `scripts/services env`).
//! `cargo bench -p crmflow --bench salesforce_sync`.

mod common;

use std::time::Instant;

use crmflow_salesforce::sim::{SimConfig, Simulator};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() {
    let contacts: usize = std::env::var("BENCH_CONTACTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let latency_ms: u64 = std::env::var("BENCH_LATENCY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let page = 2_000u32;
    let daily_api_limit = 100_000u64;
    let sim = Simulator::start(SimConfig {
        contacts,
        positions: 1,
        latency_ms,
        daily_api_limit,
        ..SimConfig::for_tests()
    })
    .await
    .expect("simulator");
    let mut cfg = common::isolated_config("bench_sf_sync");
    cfg.bullhorn.enabled = false;
    let ca = std::env::temp_dir().join(format!("{}-ca.pem", cfg.postgres.schema));
    std::fs::write(&ca, sim.ca_pem()).expect("CA file");
    let s = &mut cfg.salesforce;
    s.enabled = true;
    s.login_url = sim.base_url();
    s.client_id = Some(sim.config().client_id.clone());
    s.client_secret = Some(sim.config().client_secret.clone().into());
    s.ca_file = Some(ca);
    s.objects = vec!["Contact".into()];
    s.page_size = page;
    let share = s.budget_share;
    if let Err(e) = crmflow::store::migrate(&cfg).await {
        eprintln!(
            "salesforce_sync bench needs the local services ({e}); run `scripts/services up`"
        );
        std::process::exit(1);
    }
    crmflow::kafka::ensure_topics(&cfg.kafka, &crmflow::pipeline::topic_specs(&cfg))
        .await
        .expect("topics");

    let t = Instant::now();
    crmflow::sources::salesforce::run_with(&cfg, CancellationToken::new(), true)
        .await
        .expect("sync");
    let secs = t.elapsed().as_secs_f64();
    let stats = sim.stats();
    let rate = contacts as f64 / secs;
    let ceiling = f64::from(page) * 1000.0 / latency_ms.max(1) as f64;
    let requests = stats["requests"].as_u64().unwrap_or(0);
    let pages = stats["query_pages"].as_u64().unwrap_or(0);
    let min_pages = contacts.div_ceil(page as usize);
    println!("salesforce initial sync: {contacts} contacts in {secs:.1} s = {rate:.0} records/s");
    println!(
        "  ceiling: one keyset query in flight x {page} records per page / {latency_ms} ms simulated latency = {ceiling:.0} records/s; achieved {:.0}% (target >= 80%)",
        100.0 * rate / ceiling
    );
    println!(
        "  API budget: {requests} requests ({pages} query pages, minimum {min_pages}) = {:.2}% of the {:.0}% share of the {daily_api_limit}/day allowance",
        100.0 * requests as f64 / (share * daily_api_limit as f64),
        share * 100.0
    );
    let t = crmflow::sources::salesforce::poller::page_timings();
    let pages_read = t.pages.max(1) as f64;
    let ms = |us: u64| us as f64 / 1000.0 / pages_read;
    let sim_ms = stats["query_micros"].as_u64().unwrap_or(0) as f64 / 1000.0 / pages.max(1) as f64;
    println!(
        "  per page ({} pages of {:.0} records): query round trip {:.1} ms ({latency_ms} ms answer time at the simulator, its compute {sim_ms:.1} ms within it); the cycle waited {:.1} ms for a page; emit {:.1} ms, Kafka acks {:.1} ms, cursor save {:.1} ms",
        t.pages,
        t.records as f64 / pages_read,
        ms(t.query_us),
        ms(t.wait_us),
        ms(t.emit_us),
        ms(t.ack_us),
        ms(t.save_us),
    );
    let per_page = secs * 1000.0 / pages_read;
    println!(
        "  {per_page:.1} ms per page against {latency_ms} ms at the ceiling; load average at the end {}",
        std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "unknown".into())
    );
    sim.shutdown().await;
}
