//! Simulator query throughput: SOQL pages of 2,000 contacts over HTTPS through the crate's own client.
//!
//! Starts the simulator in-process with `BENCH_CONTACTS` (default 20,000) contacts on a runtime with ONE
//! worker thread, then repeatedly runs the sync's query (`WHERE SystemModstamp >= .. ORDER BY SystemModstamp,
//! Id`, typical field list) and follows `nextRecordsUrl` to the end, from a client on its own runtime.
//! Prints pages/s, records/s and pages per CPU-second of the process (simulator + client; less sensitive
//! to a busy machine). Run: `cargo bench -p crmflow-salesforce --features sim --bench sim_query`.

use std::time::{Duration, Instant};

use crmflow_salesforce::client::{AuthConfig, ClientConfig, SalesforceClient};
use crmflow_salesforce::sim::{SimConfig, Simulator};
use secrecy::SecretString;

const SOQL: &str = "SELECT Id, FirstName, LastName, Email, Phone, Title, MailingCity, MailingState, MailingCountry, \
Skills__c, Candidate_Status__c, Description, LastModifiedDate, SystemModstamp, IsDeleted FROM Contact \
WHERE SystemModstamp >= 2000-01-01T00:00:00Z ORDER BY SystemModstamp, Id";
const MEASURE_FOR: Duration = Duration::from_secs(5);

/// CPU time (user + system) of the whole process, from /proc/self/stat (clock ticks of 10 ms).
fn process_cpu() -> Duration {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let f: Vec<String> = s
                .rsplit(')')
                .next()?
                .split_whitespace()
                .map(str::to_string)
                .collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn main() {
    let contacts: usize = std::env::var("BENCH_CONTACTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let sim_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let sim = sim_rt.block_on(async {
        let mut cfg = SimConfig::for_tests();
        cfg.contacts = contacts;
        cfg.positions = 10;
        cfg.daily_api_limit = u64::MAX / 2;
        Simulator::start(cfg).await.expect("simulator")
    });
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let c = sim.config().clone();
    let mut cfg = ClientConfig::new(
        url::Url::parse(&sim.base_url()).expect("url"),
        AuthConfig::ClientCredentials {
            client_id: c.client_id.clone(),
            client_secret: SecretString::from(c.client_secret.clone()),
        },
    );
    cfg.ca_pem = Some(sim.ca_pem().into_bytes());
    cfg.query_batch_size = Some(2000);
    let client = SalesforceClient::new(cfg).expect("client");
    client_rt.block_on(async {
        // Warm-up: login, connection, one full pass.
        let n = client.query_collect(SOQL, false).await.expect("query").len();
        let cpu0 = process_cpu();
        let t0 = Instant::now();
        let (mut pages, mut records) = (0u64, 0u64);
        while t0.elapsed() < MEASURE_FOR {
            let mut page = client.query(SOQL).await.expect("query");
            loop {
                pages += 1;
                records += page.records.len() as u64;
                match (page.done, page.next_records_url.take()) {
                    (false, Some(next)) => page = client.query_more(&next).await.expect("more"),
                    _ => break,
                }
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        let cpu = (process_cpu() - cpu0).as_secs_f64();
        println!("salesforce sim_query: {contacts} contacts ({n} live), pages of 2000 over HTTPS, client and simulator in one process");
        println!("  {pages} pages in {secs:.2}s = {:.1} pages/s, {:.0} records/s", pages as f64 / secs, records as f64 / secs);
        println!(
            "  process CPU {cpu:.2}s (simulator + client): {:.1} pages per CPU-second",
            if cpu > 0.0 { pages as f64 / cpu } else { 0.0 }
        );
    });
    drop(sim);
}
