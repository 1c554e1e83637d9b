//! Pub/Sub delivery throughput: change events from the simulator to the crate's subscriber, decoded.
//!
//! Publishes `BENCH_EVENTS` (default 50,000) contact changes (inserts and updates) into the simulator's bus,
//! then subscribes from EARLIEST over TLS/HTTP2 and reads them all through `Subscription::next_event` (Avro
//! decoding with the cached schema, bitmap field lists resolved), for batch sizes 100 and 500. Prints
//! events/s. The Salesforce source's target is ≥ 5,000 events/s into Kafka, so this path must be well above
//! it. Run: `cargo bench -p crmflow-salesforce --features sim --bench pubsub`.

use std::time::Instant;

use crmflow_salesforce::client::{AuthConfig, ClientConfig, SalesforceClient};
use crmflow_salesforce::pubsub::{Credentials, PubSubClient, PubSubConfig, ReplayStart};
use crmflow_salesforce::sim::{SimConfig, Simulator};
use secrecy::SecretString;
use serde_json::json;

fn main() {
    let events: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut cfg = SimConfig::for_tests();
        cfg.contacts = 10;
        cfg.positions = 1;
        let sim = Simulator::start(cfg).await.expect("simulator");
        let t0 = Instant::now();
        let mut ids = Vec::new();
        for i in 0..events {
            if i % 2 == 0 || ids.is_empty() {
                let id = sim
                    .insert(
                        "Contact",
                        json!({"FirstName": "Bench", "LastName": format!("N{i}"), "Email": format!("b{i}@example.com"),
                               "Skills__c": "Rust, Kafka", "Title": "Engineer", "MailingCity": "Boston"}),
                    )
                    .expect("insert");
                ids.push(id);
            } else {
                let id = &ids[i % ids.len()];
                sim.update("Contact", id, json!({"Title": format!("Engineer {i}")})).expect("update");
            }
        }
        let publish = t0.elapsed().as_secs_f64();
        let c = sim.config().clone();
        let mut ccfg = ClientConfig::new(
            url::Url::parse(&sim.base_url()).expect("url"),
            AuthConfig::ClientCredentials {
                client_id: c.client_id.clone(),
                client_secret: SecretString::from(c.client_secret.clone()),
            },
        );
        ccfg.ca_pem = Some(sim.ca_pem().into_bytes());
        let rest = SalesforceClient::new(ccfg).expect("client");
        let creds = Credentials::from_session(&rest.session().await.expect("session")).expect("creds");
        println!("salesforce pubsub: {events} change events published in {publish:.2}s ({:.0}/s, Avro encoding included)", events as f64 / publish);
        for batch in [100, 500] {
            let mut pcfg = PubSubConfig::new(url::Url::parse(&sim.base_url()).expect("url"));
            pcfg.ca_pem = Some(sim.ca_pem().into_bytes());
            pcfg.batch_size = batch;
            let ps = PubSubClient::connect(&pcfg, creds.clone()).await.expect("connect");
            let mut sub = ps.subscribe("/data/ContactChangeEvent", ReplayStart::Earliest).await.expect("subscribe");
            let t = Instant::now();
            let mut n = 0usize;
            let mut fields = 0usize;
            while n < events {
                let e = sub.next_event().await.expect("event").expect("open");
                fields += e.fields.len();
                n += 1;
            }
            let secs = t.elapsed().as_secs_f64();
            println!(
                "  batch {batch}: {n} events received and decoded in {secs:.2}s = {:.0} events/s ({:.1} fields/event)",
                n as f64 / secs,
                fields as f64 / n as f64
            );
        }
        sim.shutdown().await;
    });
}
