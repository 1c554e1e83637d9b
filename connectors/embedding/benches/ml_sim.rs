//! Throughput of the ML simulator: its embedding function alone, and end to end through the client.
//!
//! Run with `cargo bench -p crmflow-embedding --features sim --bench ml_sim`. Batches are 500 texts of about
//! 1 KB, the embed stage's micro-batch; the end-to-end part keeps 5 batches in flight against a simulator with
//! no added latency, so it measures what the simulator and client cost, which must stay far below the 100 ms per
//! batch the stage is benchmarked with.

use std::time::{Duration, Instant};

use crmflow_embedding::sim::vectors::embed_text;
use crmflow_embedding::sim::{SimArgs, Simulator};
use crmflow_embedding::{ClientConfig, EmbeddingClient, Protocol};

const BATCH: usize = 500;
const TEXT_BYTES: usize = 1000;
const DIM: usize = 384;
const IN_FLIGHT: usize = 5;

const VOCABULARY: &[&str] = &[
    "senior",
    "engineer",
    "rust",
    "java",
    "python",
    "kafka",
    "postgres",
    "cloud",
    "aws",
    "azure",
    "nurse",
    "ward",
    "patient",
    "finance",
    "analyst",
    "excel",
    "audit",
    "sales",
    "manager",
    "account",
    "london",
    "berlin",
    "remote",
    "contract",
    "permanent",
    "salary",
    "team",
    "lead",
    "years",
    "experience",
    "degree",
    "certified",
    "project",
    "delivery",
    "agile",
    "scrum",
    "design",
    "customer",
    "support",
    "logistics",
    "warehouse",
    "forklift",
    "driver",
    "teacher",
    "school",
    "curriculum",
    "marketing",
    "brand",
    "campaign",
    "data",
    "science",
    "machine",
    "learning",
    "recruiter",
    "candidate",
    "position",
    "skills",
    "summary",
    "responsible",
    "built",
    "improved",
    "migrated",
];

/// `n` texts of about `bytes` bytes each, deterministic (xorshift) so runs compare.
fn corpus(n: usize, bytes: usize) -> Vec<String> {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    (0..n)
        .map(|i| {
            let mut text = format!("record {i}:");
            while text.len() < bytes {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                text.push(' ');
                text.push_str(VOCABULARY[(state % VOCABULARY.len() as u64) as usize]);
            }
            text
        })
        .collect()
}

fn bench_embedding_function(texts: &[String]) {
    // Warm up caches and the stop-word table.
    for text in texts {
        std::hint::black_box(embed_text(text, DIM));
    }
    let started = Instant::now();
    let mut batches = 0u64;
    while started.elapsed() < Duration::from_secs(2) {
        for text in texts {
            std::hint::black_box(embed_text(text, DIM));
        }
        batches += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let per_batch_ms = elapsed * 1000.0 / batches as f64;
    let texts_per_sec = (batches as usize * texts.len()) as f64 / elapsed;
    let mb_per_sec = texts_per_sec * TEXT_BYTES as f64 / 1e6;
    println!(
        "embedding function: {texts_per_sec:>10.0} texts/s  ({per_batch_ms:.2} ms per batch of {BATCH} x ~{TEXT_BYTES} B, \
         {mb_per_sec:.0} MB/s, dim {DIM})"
    );
}

/// The wire cost both sides pay per batch: a 500 x 384 response as JSON, written by the simulator and read by
/// the client. It, not the hashing, dominates the end-to-end figure.
fn bench_json(texts: &[String]) {
    let vectors: Vec<Vec<f32>> = texts.iter().map(|t| embed_text(t, DIM)).collect();
    let rounds = 20;
    let started = Instant::now();
    let mut body = Vec::new();
    for _ in 0..rounds {
        body = serde_json::to_vec(&vectors).expect("serialise");
    }
    let encode_ms = started.elapsed().as_secs_f64() * 1000.0 / rounds as f64;
    let started = Instant::now();
    for _ in 0..rounds {
        let parsed: Vec<Vec<f32>> = serde_json::from_slice(&body).expect("parse");
        std::hint::black_box(parsed);
    }
    let decode_ms = started.elapsed().as_secs_f64() * 1000.0 / rounds as f64;
    println!(
        "response JSON ({BATCH} x {DIM}, {:.1} MB): encode {encode_ms:.2} ms, decode {decode_ms:.2} ms per batch",
        body.len() as f64 / 1e6
    );
}

async fn bench_end_to_end(texts: &[String], protocol: Protocol) {
    let args = SimArgs {
        max_batch: BATCH,
        ..SimArgs::for_tests()
    };
    let sim = Simulator::start(args).await.expect("simulator starts");
    let client =
        EmbeddingClient::new(ClientConfig::new(sim.base_url(), protocol, "bench")).expect("client");
    // Warm-up: connections and allocator.
    client.embed(texts).await.expect("warm-up batch");
    sim.reset_stats();

    let rounds = 8;
    let started = Instant::now();
    let mut latencies = Vec::new();
    for _ in 0..rounds {
        let calls = (0..IN_FLIGHT).map(|_| async {
            let sent = Instant::now();
            client.embed(texts).await.expect("batch embedded");
            sent.elapsed()
        });
        latencies.extend(futures::future::join_all(calls).await);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let stats = sim.stats();
    assert_eq!(
        stats.inputs_embedded,
        (rounds * IN_FLIGHT * BATCH) as u64,
        "every text served once"
    );
    latencies.sort();
    let p50 = latencies[latencies.len() / 2].as_secs_f64() * 1000.0;
    let max = latencies.last().unwrap().as_secs_f64() * 1000.0;
    println!(
        "client -> sim {protocol:>6?}: {:>10.0} texts/s  ({} batches of {BATCH}, {IN_FLIGHT} in flight, latency 0; \
         per batch p50 {p50:.1} ms, max {max:.1} ms)",
        stats.inputs_embedded as f64 / elapsed,
        stats.batches,
    );
    sim.shutdown().await.expect("simulator stops");
}

fn main() {
    let texts = corpus(BATCH, TEXT_BYTES);
    bench_embedding_function(&texts);
    bench_json(&texts);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        bench_end_to_end(&texts, Protocol::Tei).await;
        bench_end_to_end(&texts, Protocol::OpenAi).await;
    });
}
