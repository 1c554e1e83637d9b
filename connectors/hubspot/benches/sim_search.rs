//! Throughput of the simulator's hottest path: incremental search pages (`lastmodifieddate GTE 0`, ascending,
//! pages of 100 with a typical `properties` list) over 10,000 contacts.
//!
//! Starts the simulator in-process on a runtime with ONE worker thread (so the figure is per core), then pages
//! through the whole result set (100 pages of 100, the 10,000-result cap) again and again for a few seconds:
//! in-process (the search function alone), over HTTP with reqwest, and over HTTP with the crate's own
//! `HubSpotClient` (limits lifted), the clients running on another thread. Prints pages/s, records/s, MB/s,
//! and pages per CPU-second of the simulator's thread, the figure that does not depend on how busy a shared
//! machine is. Run: `cargo bench -p crmflow-hubspot --features sim --bench sim_search`
//! (`BENCH_SECS=` sets the time per measurement, default 3).

use std::time::{Duration, Instant};

use crmflow_hubspot::client::{ClientConfig, HubSpotClient};
use crmflow_hubspot::sim::{SimConfig, SimHandle, Simulator};
use crmflow_hubspot::wire::{modified_property, CrmObject, SearchPage};
use serde_json::Value;

const PROPERTIES: &[&str] = &[
    "email",
    "firstname",
    "lastname",
    "phone",
    "mobilephone",
    "jobtitle",
    "company",
    "city",
    "state",
    "country",
    "zip",
    "skills",
    "years_experience",
    "summary",
    "lifecyclestage",
    "hs_lead_status",
];
const LIMIT: u32 = 100;

fn measure_for() -> Duration {
    Duration::from_secs(
        std::env::var("BENCH_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3),
    )
}

struct Tally {
    pages: u64,
    records: u64,
    bytes: u64,
    elapsed: Duration,
    /// CPU time of the simulator's side (its runtime thread for HTTP, the calling thread in-process).
    cpu: Duration,
}

impl Tally {
    fn print(&self, what: &str) {
        let s = self.elapsed.as_secs_f64();
        let cpu = self.cpu.as_secs_f64().max(1e-9);
        println!(
            "{what:<46} {:>7.1} pages/s wall {:>8.0} records/s {:>6.1} MB/s | {:>7.1} pages per sim CPU-second ({} pages, {:.2} s wall, {:.2} s sim CPU)",
            self.pages as f64 / s,
            self.records as f64 / s,
            self.bytes as f64 / s / 1e6,
            self.pages as f64 / cpu,
            self.pages,
            s,
            cpu
        );
    }
}

/// CPU time (user + system) of the threads whose name starts with `prefix`, from /proc (Linux).
fn threads_cpu(prefix: &str) -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let mut total = 0.0;
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim().starts_with(prefix) {
            total += task_ticks(&t.path()) / 100.0;
        }
    }
    Duration::from_secs_f64(total)
}

fn own_cpu() -> Duration {
    Duration::from_secs_f64(task_ticks(std::path::Path::new("/proc/thread-self")) / 100.0)
}

fn task_ticks(dir: &std::path::Path) -> f64 {
    let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    f.get(11).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0)
}

fn request(after: Option<&str>) -> crmflow_hubspot::wire::SearchRequest {
    let props: Vec<String> = PROPERTIES.iter().map(|p| p.to_string()).collect();
    crmflow_hubspot::client::api::modified_search_request("contacts", 0, None, &props, after, LIMIT)
}

fn in_process(sim: &SimHandle) -> Tally {
    let cpu0 = own_cpu();
    let t0 = Instant::now();
    let (mut pages, mut records, mut bytes) = (0u64, 0u64, 0u64);
    while t0.elapsed() < measure_for() {
        let mut after: Option<String> = None;
        loop {
            let body = sim
                .search("contacts", &request(after.as_deref()))
                .expect("search");
            let page: SearchPage<serde::de::IgnoredAny> =
                serde_json::from_slice(&body).expect("json");
            pages += 1;
            records += page.results.len() as u64;
            bytes += body.len() as u64;
            match page.next_after() {
                Some(a) if a.parse::<u64>().unwrap_or(u64::MAX) < 10_000 => {
                    after = Some(a.to_string())
                }
                _ => break,
            }
        }
    }
    Tally {
        pages,
        records,
        bytes,
        elapsed: t0.elapsed(),
        cpu: own_cpu() - cpu0,
    }
}

async fn over_http(sim_base: &str, token: &str) -> Tally {
    let http = reqwest::Client::new();
    let cpu0 = threads_cpu("hs-sim");
    let t0 = Instant::now();
    let (mut pages, mut records, mut bytes) = (0u64, 0u64, 0u64);
    while t0.elapsed() < measure_for() {
        let mut after: Option<String> = None;
        loop {
            let body = http
                .post(format!("{sim_base}/crm/v3/objects/contacts/search"))
                .bearer_auth(token)
                .json(&request(after.as_deref()))
                .send()
                .await
                .expect("search")
                .bytes()
                .await
                .expect("body");
            // Parse like a real client would, so the figure is end-to-end.
            let v: Value = serde_json::from_slice(&body).expect("json");
            pages += 1;
            records += v["results"].as_array().map_or(0, |r| r.len() as u64);
            bytes += body.len() as u64;
            match v["paging"]["next"]["after"].as_str() {
                Some(a) if a.parse::<u64>().unwrap_or(u64::MAX) < 10_000 => {
                    after = Some(a.to_string())
                }
                _ => break,
            }
        }
    }
    Tally {
        pages,
        records,
        bytes,
        elapsed: t0.elapsed(),
        cpu: threads_cpu("hs-sim") - cpu0,
    }
}

async fn with_client(client: &HubSpotClient) -> Tally {
    let props: Vec<String> = PROPERTIES.iter().map(|p| p.to_string()).collect();
    let cpu0 = threads_cpu("hs-sim");
    let t0 = Instant::now();
    let (mut pages, mut records) = (0u64, 0u64);
    while t0.elapsed() < measure_for() {
        let mut after: Option<String> = None;
        loop {
            let page = client
                .search_modified::<CrmObject>(
                    "contacts",
                    0,
                    None,
                    &props,
                    after.as_deref(),
                    Some(LIMIT),
                )
                .await
                .expect("search");
            pages += 1;
            records += page.results.len() as u64;
            match page.next_after() {
                Some(a) if a.parse::<u64>().unwrap_or(u64::MAX) < 10_000 => {
                    after = Some(a.to_string())
                }
                _ => break,
            }
        }
    }
    Tally {
        pages,
        records,
        bytes: 0,
        elapsed: t0.elapsed(),
        cpu: threads_cpu("hs-sim") - cpu0,
    }
}

fn main() {
    let sim_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("hs-sim")
        .enable_all()
        .build()
        .expect("sim runtime");
    let cfg = SimConfig {
        contacts: 10_000,
        deals: 1_000,
        jobs: 1_000,
        ..SimConfig::for_tests()
    };
    let t = Instant::now();
    let sim = sim_rt.block_on(Simulator::start(cfg)).expect("simulator");
    println!(
        "generated 10,000 contacts, 1,000 deals, 1,000 jobs in {:.2} s; modified-time property {}",
        t.elapsed().as_secs_f64(),
        modified_property("contacts")
    );
    in_process(&sim).print("in-process search, 16 properties, pages of 100");
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    client_rt
        .block_on(over_http(&sim.base_url(), &sim.private_app_token()))
        .print("HTTP search (1 server core), reqwest + JSON");
    let mut ccfg = ClientConfig::private_app(sim.base_url(), sim.private_app_token().into());
    ccfg.requests_per_10s = 1_000_000;
    ccfg.search_requests_per_sec = 1_000_000;
    let client = HubSpotClient::new(ccfg).expect("client");
    client_rt
        .block_on(with_client(&client))
        .print("HTTP search, HubSpotClient (limits lifted)");
    drop(sim);
}
