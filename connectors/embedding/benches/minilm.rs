//! Throughput of the all-MiniLM-L6-v2 encoder behind `crmflow ml serve`, on this machine's CPU.
//!
//! `cargo bench -p crmflow-embedding --features model --bench minilm` prints texts/s at 32 and 128 texts per
//! forward pass for candidate-like texts (~60-120 tokens), and the process's peak RSS. Needs the model
//! (`scripts/model`; `CRMFLOW_MODEL_DIR` overrides the cached path); without it, prints why and exits.
//! `BENCH_TEXTS` sets how many texts per measurement (default 512). `RAYON_NUM_THREADS` caps the cores used.

use std::path::PathBuf;
use std::time::Instant;

use crmflow_embedding::model::MiniLm;

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

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
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
}
