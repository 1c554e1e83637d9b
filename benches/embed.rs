//! Embed stage throughput against its two ceilings, in one run (needs the local services:
//! `scripts/services up`; Postgres with pgvector on 127.0.0.1:5432, Kafka on 127.0.0.1:9092).
//!
//! 1. The ML ceiling: the in-process simulator answers each batch after `LATENCY_MS` (100 ms),
//!    so with batches of 500 and 5 in flight the ideal is 25,000 records/s.
//! 2. The Postgres ceiling: the same vectors binary-COPYed into a fresh `embeddings` table with
//!    its HNSW index, in the stage's batch size, one transaction per batch — and again without
//!    the index, which gives the HNSW index's share of the write cost.
//!
//! The stage runs one-shot (`--until-caught-up`) over `N` canonical candidates; its rate is taken
//! both over the whole run (consumer-group join included) and between its first and last commit.
//! Env: `EMBED_BENCH_RECORDS` (default 50,000).

mod common;

use std::pin::pin;
use std::time::{Duration, Instant};

use rdkafka::message::OwnedHeaders;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use crmflow::config::Config;
use crmflow::kafka::{Producer, Topics};
use crmflow::model::Candidate;
use crmflow::runtime::StageName;
use crmflow_embedding::sim::{SimArgs, Simulator};

const LATENCY_MS: u64 = 100;
const BATCH: usize = 500;
const IN_FLIGHT: usize = 5;

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn config() -> Config {
    let mut cfg = Config::default();
    if let Ok(v) = std::env::var("KAFKA_BOOTSTRAP_SERVERS") {
        cfg.kafka.bootstrap_servers = v;
    }
    if let Ok(v) = std::env::var("DB_HOST") {
        cfg.postgres.host = v;
    }
    let ns = format!("bench_embed_{:08x}", rand::random::<u32>());
    cfg.kafka.topic_prefix = format!("{ns}.");
    cfg.kafka.partitions = 6;
    cfg.postgres.schema = ns;
    cfg.embed.batch_size = BATCH;
    cfg.embed.max_in_flight = IN_FLIGHT;
    cfg.embed.linger_ms = 200;
    cfg
}

fn candidate(id: u64) -> Candidate {
    common::embed_candidate(id, false)
}

type Row = (String, String, pgvector::Vector);

/// One transaction per batch, each a binary COPY, on one connection.
async fn copy_batches(
    client: &tokio_postgres::Client,
    table: &str,
    vtype: &Type,
    batches: Vec<&[Row]>,
) -> anyhow::Result<()> {
    let types = [
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        vtype.clone(),
        Type::INT8,
    ];
    for chunk in batches {
        client.batch_execute("BEGIN").await?;
        let sink = client
            .copy_in(&format!(
                "COPY {table} (entity, crm, crm_id, model, content_hash, embedding, source_version) FROM STDIN BINARY"
            ))
            .await?;
        let mut w = pin!(BinaryCopyInWriter::new(sink, &types));
        for (id, hash, v) in chunk {
            let vals: [&(dyn ToSql + Sync); 7] =
                [&"candidate", &"bullhorn", id, &"bench", hash, v, &1i64];
            w.as_mut().write(&vals).await?;
        }
        w.finish().await?;
        client.batch_execute("COMMIT").await?;
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let n: u64 = std::env::var("EMBED_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let mut cfg = config();
    if let Err(e) = crmflow::store::migrate(&cfg).await {
        println!("embed bench skipped: needs the local services (scripts/services up): {e}");
        return Ok(());
    }
    crmflow::kafka::ensure_topics(&cfg.kafka, &crmflow::pipeline::topic_specs(&cfg)).await?;
    let mut args = SimArgs::for_tests();
    args.latency_ms = LATENCY_MS;
    let sim = Simulator::start(args).await?;
    cfg.ml.url = sim.base_url().to_string();

    // Input: N canonical candidates.
    let topic = Topics::new(&cfg.kafka).canonical("candidate");
    let producer = Producer::new(&cfg.kafka)?;
    let mut acks = Vec::with_capacity(n as usize);
    for id in 1..=n {
        let bytes = crmflow::codec::candidate().encode(&candidate(id))?;
        acks.push(
            producer
                .send(
                    &topic,
                    format!("bullhorn:{id}").as_bytes(),
                    &bytes,
                    OwnedHeaders::new(),
                )
                .await?,
        );
    }
    for a in acks {
        a.await?;
    }
    drop(producer);

    // 1. The stage.
    let started = Instant::now();
    crmflow::run::run(cfg.clone(), &[StageName::Embed], true).await?;
    let wall = started.elapsed();
    let rss_stage = peak_rss_mb();
    let client = crmflow::store::connect(&cfg).await?;
    let row = client
        .query_one(
            "SELECT count(*), extract(epoch FROM max(updated_at) - min(updated_at))::float8 FROM embeddings",
            &[],
        )
        .await?;
    let (written, span): (i64, f64) = (row.get(0), row.get(1));
    assert_eq!(written as u64, n, "every record embedded");
    let stats = sim.stats();
    // first-to-last commit covers n - one batch; add one batch interval back.
    let steady = written as f64 / (span + (BATCH as f64 / (written as f64 / span.max(1e-3))));

    // 2. Postgres alone, same vectors, same batch size, with and without the HNSW index.
    let vectors: Vec<Row> = client
        .query(
            "SELECT crm_id, content_hash, embedding FROM embeddings ORDER BY crm_id",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let vtype = client.prepare("SELECT $1::vector").await?.params()[0].clone();
    let chunks: Vec<&[Row]> = vectors.chunks(BATCH).collect();
    let mut ceiling = Vec::new();
    // (table, HNSW index, connections): the ceiling is the single COPY with the index;
    // the two-connection run is what the stage's two writers can reach on this machine.
    for (table, with_index, conns) in [
        ("ceiling_hnsw", true, 1usize),
        ("ceiling_hnsw2", true, 2),
        ("ceiling_plain", false, 1),
    ] {
        client
            .batch_execute(&format!(
                "CREATE TABLE {table} (LIKE embeddings INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)"
            ))
            .await?;
        if with_index {
            client
                .batch_execute(&format!(
                    "CREATE INDEX ON {table} USING hnsw ((embedding::vector({})) vector_cosine_ops) WHERE model = 'bench' AND entity = 'candidate'",
                    cfg.ml.dim
                ))
                .await?;
        }
        let mut clients = vec![crmflow::store::connect(&cfg).await?];
        for _ in 1..conns {
            clients.push(crmflow::store::connect(&cfg).await?);
        }
        let t = Instant::now();
        let runs = clients.iter().enumerate().map(|(i, c)| {
            let mine: Vec<&[Row]> = chunks.iter().skip(i).step_by(conns).copied().collect();
            copy_batches(c, table, &vtype, mine)
        });
        futures::future::try_join_all(runs).await?;
        ceiling.push(vectors.len() as f64 / t.elapsed().as_secs_f64());
    }
    let (pg_hnsw, pg_hnsw2, pg_plain) = (ceiling[0], ceiling[1], ceiling[2]);
    let ml_ideal = (BATCH * IN_FLIGHT) as f64 / (LATENCY_MS as f64 / 1000.0);
    let bound = ml_ideal.min(pg_hnsw);
    let hnsw_share = 1.0 - pg_hnsw / pg_plain;

    println!("embed stage benchmark: {n} candidates, batches of {BATCH}, {IN_FLIGHT} in flight, ML latency {LATENCY_MS} ms");
    println!(
        "  stage, whole run (incl. group join): {:>9.0} records/s ({:.1} s)",
        n as f64 / wall.as_secs_f64(),
        wall.as_secs_f64()
    );
    println!("  stage, first to last commit:        {steady:>9.0} records/s");
    println!("  ML ceiling (ideal):                  {ml_ideal:>9.0} records/s  (sim saw {} requests, {} inputs)", stats.requests_total, stats.inputs_embedded);
    println!("  Postgres ceiling, COPY + HNSW:       {pg_hnsw:>9.0} records/s");
    println!("  Postgres, 2 connections COPY + HNSW: {pg_hnsw2:>9.0} records/s  (what 2 writers can reach)");
    println!("  Postgres, COPY without HNSW:         {pg_plain:>9.0} records/s");
    println!(
        "  HNSW share of the write cost:        {:>9.0} %",
        hnsw_share * 100.0
    );
    println!(
        "  stage vs lower ceiling:              {:>9.0} % (steady) / {:.0} % (whole run)",
        steady / bound * 100.0,
        n as f64 / wall.as_secs_f64() / bound * 100.0
    );
    println!(
        "  stage vs 2-connection ceiling:       {:>9.0} % (steady)",
        steady / ml_ideal.min(pg_hnsw2) * 100.0
    );
    println!("  peak RSS after the stage run:        {rss_stage:>9.1} MiB (bench process: stage + simulator + producer)");

    client
        .batch_execute(&format!("DROP SCHEMA \"{}\" CASCADE", cfg.postgres.schema))
        .await?;
    let _ = Duration::ZERO;
    sim.shutdown().await?;
    Ok(())
}
