//! Throughput of the all-MiniLM-L6-v2 encoder behind `crmflow ml serve`, on this machine's CPU.
//!
//! `cargo bench -p crmflow-embedding --features model --bench minilm` prints texts/s at 32 and 128 texts per
//! forward pass for candidate-like texts (~60-120 tokens), and the process's peak RSS: first the encoder called
//! directly, then `crmflow ml serve` over HTTP (TEI `/embed`, requests of that many texts, 2 in flight as the
//! embed stage sends them with `embed.max_in_flight = 2`), with the RSS growth of serving. Needs the model
//! (`scripts/model`; `CRMFLOW_MODEL_DIR` overrides the cached path); without it, prints why and exits.
//! `BENCH_TEXTS` sets how many texts per measurement (default 512). `RAYON_NUM_THREADS` caps the cores used.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crmflow_embedding::model::{serve, MiniLm, ServeArgs};
use crmflow_embedding::{ClientConfig, EmbeddingClient, Protocol};

fn texts(n: usize) -> Vec<String> {
    let titles = [
        "Senior Rust Engineer",
        "Registered Nurse",
        "Data Analyst",
        "Warehouse Associate",
        "Java Developer",
    ];
    let skills = [
        "Rust, Tokio, Kafka, PostgreSQL",
        "ICU, triage, patient care",
        "SQL, Python, Tableau",
        "forklift, inventory",
        "Java, Spring, Hibernate",
    ];
    (0..n)
        .map(|i| {
            format!(
                "{}\nSkills: {}\nCandidate {i} has {} years of experience in the field, worked with cross-functional teams \
                 on projects of varying size, and is looking for a role with growth opportunities near city {}.",
                titles[i % titles.len()],
                skills[(i / 5) % skills.len()],
                i % 17 + 1,
                i % 101
            )
        })
        .collect()
}

fn status_mib(key: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn peak_rss_mib() -> f64 {
    status_mib("VmHWM:")
}

/// `ml serve` with `batch` texts per forward pass, fed requests of `batch` texts, 2 in flight.
fn serve_throughput(dir: &std::path::Path, texts: &[String], batch: usize) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut args = ServeArgs::for_tests(dir.to_path_buf());
        args.batch_size = batch;
        let model = serve::load(&args).await.expect("model loads");
        let server = serve::start(&args, model).await.expect("server starts");
        let mut config = ClientConfig::new(server.base_url(), Protocol::Tei, serve::DEFAULT_MODEL_NAME);
        config.timeout = Duration::from_secs(600);
        let client = EmbeddingClient::new(config).expect("client");
        client.embed(&texts[..batch.min(texts.len())]).await.expect("warm-up");
        let started = Instant::now();
        let chunks: Vec<&[String]> = texts.chunks(batch).collect();
        let mut done = 0;
        for pair in chunks.chunks(2) {
            let results = futures::future::join_all(pair.iter().map(|c| client.embed(c))).await;
            for r in results {
                done += r.expect("server embeds").len();
            }
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "ml serve batch {batch:>3}: {:>7.1} texts/s over HTTP ({done} texts in requests of {batch}, 2 in flight, {secs:.2} s), RSS now {:.0} MiB, peak {:.0} MiB",
            done as f64 / secs,
            status_mib("VmRSS:"),
            peak_rss_mib()
        );
        server.shutdown().await.expect("server stops");
    });
}

fn main() {
    let dir = std::env::var_os("CRMFLOW_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("CRMFLOW_CACHE_DIR")
                .unwrap_or_else(|| "/var/cache/crmflow".into());
            PathBuf::from(cache).join("models/all-MiniLM-L6-v2-0.1.0")
        });
    if !MiniLm::present(&dir) {
        println!(
            "minilm bench skipped: no model in {} (run scripts/model)",
            dir.display()
        );
        return;
    }
    let n: usize = std::env::var("BENCH_TEXTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let texts = texts(n);
    let cores = candle_core::utils::get_num_threads();
    for batch in [32usize, 128] {
        let model = MiniLm::load(&dir, batch).expect("model loads");
        let tokens: usize = model
            .tokenize(&texts)
            .expect("tokenizes")
            .iter()
            .map(Vec::len)
            .sum();
        model.embed(&texts[..batch.min(n)]).expect("warm-up");
        let started = Instant::now();
        let vectors = model.embed(&texts).expect("embeds");
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(vectors.len(), n);
        println!(
            "minilm batch {batch:>3}: {:>7.1} texts/s ({n} texts, {:.0} tokens/text, {:.2} s, {cores} threads), peak RSS {:.0} MiB",
            n as f64 / secs,
            tokens as f64 / n as f64,
            secs,
            peak_rss_mib()
        );
    }
    for batch in [32usize, 128] {
        serve_throughput(&dir, &texts, batch);
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average (1/5/15 min) at the end: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
}
