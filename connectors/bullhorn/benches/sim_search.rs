//! Throughput of the simulator's hottest path: search pages of 500 candidates with a typical `fields` list.
//!
//! Starts the simulator in-process with 10,000 candidates on a runtime with ONE worker thread (so the figure
//! is per core), logs in through the real OAuth flow, then pages sequentially through
//! `isDeleted:0 AND dateLastModified:[0 TO *]` sorted by `dateLastModified,id` over HTTP with reqwest (client
//! on another thread), and finally calls the in-process search function alone. Prints pages/s, records/s and
//! MB/s, and pages per CPU-second of the simulator's thread (the figure that does not depend on how busy a shared
//! machine is). Run: `cargo bench -p crmflow-bullhorn --features sim --bench sim_search`.

use std::time::{Duration, Instant};

use crmflow_bullhorn::sim::{SimConfig, SimHandle, Simulator};
use crmflow_bullhorn::wire::{LoginResponse, TokenResponse};
use reqwest::redirect::Policy;
use reqwest::Client;
use serde_json::Value;

const TYPICAL_FIELDS: &str = "id,firstName,lastName,name,email,phone,mobile,status,occupation,companyName,\
address(city,state,zip,countryCode),owner(id,firstName,lastName),primarySkills[5](id,name),categories(id,name),\
dateAdded,dateLastModified,isDeleted,salary,source,skillSet";
const QUERY: &str = "isDeleted:0 AND dateLastModified:[0 TO *]";
const SORT: &str = "dateLastModified,id";
const MEASURE_FOR: Duration = Duration::from_secs(4);

async fn login(
    sim_base: &str,
    rest: &str,
    c: &crmflow_bullhorn::sim::Credentials,
) -> LoginResponse {
    let http = Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client");
    let resp = http
        .get(format!("{sim_base}/oauth/authorize"))
        .query(&[
            ("client_id", c.client_id.as_str()),
            ("response_type", "code"),
            ("action", "Login"),
            ("username", c.username.as_str()),
            ("password", c.password.as_str()),
        ])
        .send()
        .await
        .expect("authorize");
    let loc = resp.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    let code = url::Url::parse(&loc)
        .expect("url")
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("code");
    let tok: TokenResponse = http
        .post(format!("{sim_base}/oauth/token"))
        .query(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("client_id", c.client_id.as_str()),
            ("client_secret", c.client_secret.as_str()),
        ])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("token json");
    http.post(format!("{rest}/login"))
        .query(&[
            ("version", "*"),
            ("access_token", tok.access_token.as_str()),
            ("ttl", "60"),
        ])
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("login json")
}

struct Tally {
    pages: u64,
    records: u64,
    bytes: u64,
    elapsed: Duration,
    /// CPU time the simulator's side spent (server thread for HTTP, calling thread in-process).
    cpu: Duration,
}

impl Tally {
    fn print(&self, what: &str) {
        let s = self.elapsed.as_secs_f64();
        let cpu = self.cpu.as_secs_f64().max(1e-9);
        println!(
            "{what:<44} {:>7.1} pages/s wall {:>9.0} records/s {:>6.1} MB/s | {:>7.1} pages per sim CPU-second ({} pages, {:.2} s wall, {:.2} s sim CPU)",
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

/// CPU time (user + system) of the threads whose name starts with `prefix`, from /proc (Linux); zero elsewhere.
/// The machine may be shared, so wall-clock rates understate what one core does; CPU time does not.
fn threads_cpu(prefix: &str) -> Duration {
    let tick = 100.0; // USER_HZ on Linux
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let mut total = 0.0;
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim().starts_with(prefix) {
            total += task_ticks(&t.path()) / tick;
        }
    }
    Duration::from_secs_f64(total)
}

/// CPU time of the calling thread.
fn own_cpu() -> Duration {
    Duration::from_secs_f64(task_ticks(std::path::Path::new("/proc/thread-self")) / 100.0)
}

fn task_ticks(dir: &std::path::Path) -> f64 {
    let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
    // Fields after the parenthesised comm: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    f.get(11).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0)
}

async fn http_pages(session: &LoginResponse, fields: &str) -> Tally {
    let http = Client::new();
    let cpu0 = threads_cpu("bh-sim");
    let t0 = Instant::now();
    let (mut pages, mut records, mut bytes) = (0u64, 0u64, 0u64);
    while t0.elapsed() < MEASURE_FOR {
        let mut start = 0usize;
        loop {
            let body = http
                .get(format!("{}search/Candidate", session.rest_url))
                .query(&[
                    ("query", QUERY),
                    ("fields", fields),
                    ("sort", SORT),
                    ("start", &start.to_string()),
                    ("count", "500"),
                ])
                .header("BhRestToken", &session.bh_rest_token)
                .send()
                .await
                .expect("search")
                .bytes()
                .await
                .expect("body");
            // Parse like a real client would, so the figure is end-to-end.
            let v: Value = serde_json::from_slice(&body).expect("json");
            let n = v["count"].as_u64().unwrap_or(0);
            let total = v["total"].as_u64().unwrap_or(0) as usize;
            pages += 1;
            records += n;
            bytes += body.len() as u64;
            start += 500;
            if n == 0 || start >= total {
                break;
            }
        }
    }
    Tally {
        pages,
        records,
        bytes,
        elapsed: t0.elapsed(),
        cpu: threads_cpu("bh-sim") - cpu0,
    }
}

fn in_process_pages(sim: &SimHandle, fields: &str) -> Tally {
    let cpu0 = own_cpu();
    let t0 = Instant::now();
    let (mut pages, mut records, mut bytes) = (0u64, 0u64, 0u64);
    while t0.elapsed() < MEASURE_FOR {
        let mut start = 0usize;
        loop {
            let body = sim
                .search("Candidate", QUERY, Some(fields), Some(SORT), start, 500)
                .expect("search");
            // Count records without a full parse: the envelope's count is near the start.
            let head = std::str::from_utf8(&body[..body.len().min(80)]).unwrap_or("");
            let n = head
                .split("\"count\":")
                .nth(1)
                .and_then(|s| s.split(',').next())
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0);
            pages += 1;
            records += n;
            bytes += body.len() as u64;
            start += 500;
            if n < 500 {
                break;
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

fn main() {
    let sim_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bh-sim")
        .enable_all()
        .build()
        .expect("sim runtime");
    let cfg = SimConfig {
        candidates: 10_000,
        job_orders: 1_000,
        ..SimConfig::for_tests()
    };
    let t = Instant::now();
    let sim = sim_rt.block_on(Simulator::start(cfg)).expect("simulator");
    println!(
        "generated 10,000 candidates and 1,000 job orders in {:.2} s",
        t.elapsed().as_secs_f64()
    );

    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let session = client_rt.block_on(login(
        &sim.base_url(),
        &sim.rest_services_url(),
        &sim.credentials(),
    ));

    let heavy = format!("{TYPICAL_FIELDS},description");
    if let Ok(f) = std::env::var("SIM_BENCH_FIELDS") {
        // Exploration: one in-process run with the given fields list only.
        in_process_pages(&sim, &f).print(&format!("in-process search, fields={f}"));
        return;
    }
    in_process_pages(&sim, TYPICAL_FIELDS).print("in-process search, typical fields");
    in_process_pages(&sim, &heavy).print("in-process search, typical + resume text");
    client_rt
        .block_on(http_pages(&session, TYPICAL_FIELDS))
        .print("HTTP search (1 server core), typical fields");
    client_rt
        .block_on(http_pages(&session, &heavy))
        .print("HTTP search, typical + resume text");
    drop(sim);
}
