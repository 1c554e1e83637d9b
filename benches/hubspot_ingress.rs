//! Webhook ingress benchmark: signed HubSpot webhook batches (100 `contact.propertyChange` events
//! each, distinct contacts) POSTed by 16 concurrent senders to the in-process ingress, which
//! verifies, de-duplicates, batch-reads the contacts from the in-process simulator and answers 200
//! only after Kafka acknowledged every event. Prints events/s end to end (request sent to 200
//! received, so Kafka's acks are inside) and the p50/p99 request latency. Target: >= 5,000
//! events/s.
//!
//! The simulator's rate limits are off here: this measures the ingress. Against HubSpot, each
//! request costs one batch read (100 ids), so the account's 10-second limit bounds re-reads at
//! (limit / 10) x 100 events/s (1,900 events/s at 190 requests/10 s).
//!
//! Needs the local services. `cargo bench -p crmflow --bench hubspot_ingress`
//! (env `BENCH_EVENTS` overrides the event count).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crmflow::config::{HubspotConfig, HubspotObject};
use crmflow_hubspot::signature::{sign_v3, SIGNATURE_V3_HEADER, TIMESTAMP_HEADER};
use crmflow_hubspot::sim::{SimConfig, Simulator};
use tokio_util::sync::CancellationToken;

const PER_REQUEST: usize = 100;
const SENDERS: usize = 16;

#[tokio::main]
async fn main() {
    let events: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let sim = Simulator::start(SimConfig {
        contacts: events,
        deals: 0,
        jobs: 1,
        ..SimConfig::for_tests()
    })
    .await
    .expect("simulator");
    let mut cfg = common::isolated_config("bench_hubspot_ingress");
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
        requests_per_10s: 1_000_000,
        max_concurrent_requests: 32,
        ..Default::default()
    });
    cfg.ingress.listen = "127.0.0.1:0".into();
    cfg.ingress.client_secret = Some(sim.config().webhook_key().to_owned().into());
    if let Err(e) = crmflow::store::migrate(&cfg).await {
        eprintln!(
            "hubspot_ingress bench needs the local services ({e}); run `scripts/services up`"
        );
        std::process::exit(1);
    }
    crmflow::kafka::ensure_topics(&cfg.kafka, &crmflow::pipeline::topic_specs(&cfg))
        .await
        .expect("topics");
    let stop = CancellationToken::new();
    let ing = crmflow::ingress::serve(&cfg, stop.clone())
        .await
        .expect("ingress");

    let ids: Vec<String> = sim
        .records("contacts")
        .unwrap()
        .into_iter()
        .filter(|o| !o.archived)
        .map(|o| o.id)
        .collect();
    let now = chrono::Utc::now().timestamp_millis();
    let bodies: Vec<String> = ids
        .chunks(PER_REQUEST)
        .enumerate()
        .map(|(r, chunk)| {
            let evs: Vec<String> = chunk
                .iter()
                .enumerate()
                .map(|(i, id)| {
                    format!(
                        r#"{{"eventId":{},"subscriptionId":1,"portalId":62515,"appId":54321,"occurredAt":{now},"subscriptionType":"contact.propertyChange","attemptNumber":0,"objectId":{id},"propertyName":"email","propertyValue":"x@example.com","changeSource":"CRM_UI"}}"#,
                        r * PER_REQUEST + i
                    )
                })
                .collect();
            format!("[{}]", evs.join(","))
        })
        .collect();
    let total_events = ids.len();
    let key = sim.config().webhook_key().to_owned();
    let url = ing.url.clone();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(SENDERS)
        .build()
        .unwrap();
    let queue = Arc::new(parking_lot::Mutex::new(bodies));
    let t = Instant::now();
    let senders = (0..SENDERS).map(|_| {
        let (queue, http, url, key) = (queue.clone(), http.clone(), url.clone(), key.clone());
        tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let Some(body) = queue.lock().pop() else {
                    return lat;
                };
                let ts = chrono::Utc::now().timestamp_millis().to_string();
                let sig = sign_v3(key.as_bytes(), "POST", &url, body.as_bytes(), &ts);
                let t0 = Instant::now();
                let r = http
                    .post(&url)
                    .header(SIGNATURE_V3_HEADER, sig)
                    .header(TIMESTAMP_HEADER, ts)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .expect("post");
                assert_eq!(r.status(), 200, "{:?}", r.text().await);
                lat.push(t0.elapsed());
            }
        })
    });
    let mut lat: Vec<Duration> = Vec::new();
    for s in futures::future::join_all(senders).await {
        lat.extend(s.unwrap());
    }
    let secs = t.elapsed().as_secs_f64();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1];
    println!(
        "hubspot webhook ingress: {total_events} events in {} requests, {secs:.2} s = {:.0} events/s end to end (target >= 5,000)",
        lat.len(),
        total_events as f64 / secs
    );
    println!(
        "  request latency (verify, batch read, produce, Kafka ack): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {SENDERS} senders x {PER_REQUEST} events",
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        lat.last().unwrap().as_secs_f64() * 1e3
    );
    stop.cancel();
    let _ = ing.task.await;
    sim.shutdown().await;
}
