//! The embed stage's bulk path against its incremental path, in one run, on the same backlog
//! (needs the local services: `scripts/services up`).
//!
//! `N` canonical candidates (`EMBED_BENCH_RECORDS`, default 200,000) go to the bulk namespace
//! (topic prefix + schema) and `M` (`EMBED_BENCH_INCREMENTAL_RECORDS`, default the smaller of
//! `N` and 50,000) to the incremental one: the incremental path runs ~500 records/s, so 200,000
//! would take minutes more, and its per-record cost grows with the graph (log n), so a smaller
//! sample flatters it, never the bulk path. The stage runs one-shot over each with the ML
//! simulator at 100 ms per batch of 500, 5 in flight: first with `embed.bulk_threshold = 0`
//! (every vector inserted into the HNSW index as it comes), then with the bulk path (index
//! dropped, built once at the end, included in the time). The ratio compares records/s. Then, on the bulk-built index: recall@10 of 200 k-NN queries (the
//! stored vectors of random records) against exact search on the same vectors, and the bytes per
//! 100,000 vectors of the table and of the index for `vector` and for `halfvec` (the halfvec
//! index is built here on the same rows, timed, and its recall measured the same way).

mod common;

use std::collections::HashSet;
use std::time::Instant;

use rdkafka::message::OwnedHeaders;

use crmflow::config::{Config, VectorStorage};
use crmflow::kafka::{Producer, Topics};
use crmflow::model::Candidate;
use crmflow::runtime::StageName;
use crmflow::stages::embed::store::IndexParams;
use crmflow_embedding::sim::{SimArgs, Simulator};

const QUERIES: usize = 200;

fn config(tag: &str) -> Config {
    let mut cfg = Config::default();
    if let Ok(v) = std::env::var("KAFKA_BOOTSTRAP_SERVERS") {
        cfg.kafka.bootstrap_servers = v;
    }
    if let Ok(v) = std::env::var("DB_HOST") {
        cfg.postgres.host = v;
    }
    let ns = format!("bench_bulk_{tag}_{:08x}", rand::random::<u32>());
    cfg.kafka.topic_prefix = format!("{ns}.");
    cfg.kafka.partitions = 6;
    cfg.postgres.schema = ns;
    cfg.embed.batch_size = 500;
    cfg.embed.max_in_flight = 5;
    cfg.embed.linger_ms = 200;
    cfg.metrics.listen = String::new();
    cfg
}

fn candidate(id: u64) -> Candidate {
    common::embed_candidate(id, true)
}

async fn produce(cfg: &Config, n: u64) -> anyhow::Result<()> {
    crmflow::kafka::ensure_topics(&cfg.kafka, &crmflow::pipeline::topic_specs(cfg)).await?;
    let topic = Topics::new(&cfg.kafka).canonical("candidate");
    let producer = Producer::new(&cfg.kafka)?;
    let mut acks = Vec::with_capacity(n as usize);
    for id in 1..=n {
        let bytes = crmflow::codec::candidate().encode(&candidate(id))?;
        let key = format!("bullhorn:{id}");
        acks.push(
            producer
                .send(&topic, key.as_bytes(), &bytes, OwnedHeaders::new())
                .await?,
        );
    }
    for a in acks {
        a.await?;
    }
    Ok(())
}

/// Runs the embed stage one-shot; returns its wall-clock seconds.
async fn run_stage(cfg: &Config, n: u64) -> anyhow::Result<f64> {
    let started = Instant::now();
    crmflow::run::run(cfg.clone(), &[StageName::Embed], true).await?;
    let secs = started.elapsed().as_secs_f64();
    let client = crmflow::store::connect(cfg).await?;
    let written: i64 = client
        .query_one("SELECT count(*) FROM embeddings", &[])
        .await?
        .get(0);
    assert_eq!(written as u64, n, "every record embedded");
    Ok(secs)
}

/// Mean recall@10 of the HNSW index (`params`' expression) against exact search.
async fn recall_at_10(
    client: &tokio_postgres::Client,
    params: &IndexParams,
    model: &str,
    ids: &[String],
) -> anyhow::Result<f64> {
    let (col, param) = (params.column_expr(), params.param_expr("$1"));
    let knn = format!(
        "SELECT crm_id FROM embeddings WHERE model = '{model}' AND entity = 'candidate' ORDER BY {col} <=> {param} LIMIT 10"
    );
    let exact = format!(
        "SELECT crm_id FROM embeddings WHERE model = '{model}' AND entity = 'candidate' ORDER BY embedding <=> $1::vector LIMIT 10"
    );
    let mut total = 0.0;
    for id in ids {
        let v: pgvector::Vector = client
            .query_one(
                &format!("SELECT embedding FROM embeddings WHERE entity = 'candidate' AND crm = 'bullhorn' AND crm_id = $1 AND model = '{model}'"),
                &[id],
            )
            .await?
            .get(0);
        client.batch_execute("SET enable_seqscan = off").await?;
        let got: HashSet<String> = client
            .query(&knn, &[&v])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        client
            .batch_execute("RESET enable_seqscan; SET enable_indexscan = off")
            .await?;
        let truth: HashSet<String> = client
            .query(&exact, &[&v])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        client.batch_execute("RESET enable_indexscan").await?;
        total += got.intersection(&truth).count() as f64 / truth.len().max(1) as f64;
    }
    Ok(total / ids.len() as f64)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let n: u64 = std::env::var("EMBED_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let m: u64 = std::env::var("EMBED_BENCH_INCREMENTAL_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(n.min(50_000));
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut incremental = config("inc");
    let mut bulk = config("bulk");
    if let Err(e) = crmflow::store::migrate(&incremental).await {
        println!("embed_bulk bench skipped: needs the local services (scripts/services up): {e}");
        return Ok(());
    }
    crmflow::store::migrate(&bulk).await?;
    let mut args = SimArgs::for_tests();
    args.latency_ms = 100;
    let sim = Simulator::start(args).await?;
    incremental.ml.url = sim.base_url().to_string();
    bulk.ml.url = sim.base_url().to_string();
    incremental.embed.bulk_threshold = 0;
    bulk.embed.bulk_threshold = 1_000;
    produce(&incremental, m).await?;
    produce(&bulk, n).await?;

    let inc_secs = run_stage(&incremental, m).await?;
    let bulk_started = Instant::now();
    let bulk_secs = run_stage(&bulk, n).await?;
    let client = crmflow::store::connect(&bulk).await?;
    // The build ran at the end of the run: from the last vector written to the run's end.
    let last_write: f64 = client
        .query_one(
            "SELECT extract(epoch FROM now() - max(updated_at))::float8 FROM embeddings",
            &[],
        )
        .await?
        .get(0);
    let build_secs = last_write.min(bulk_started.elapsed().as_secs_f64());
    let (inc_rate, bulk_rate) = (m as f64 / inc_secs, n as f64 / bulk_secs);
    let load_secs = bulk_secs - build_secs;
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    let model = bulk.ml.model.clone();
    let ids: Vec<String> = (0..QUERIES)
        .map(|_| (1 + rand::random::<u64>() % n).to_string())
        .collect();
    let vector_params = IndexParams::from_config(&bulk);
    let recall_vector = recall_at_10(&client, &vector_params, &model, &ids).await?;
    let size = |sql: &str| {
        let client = &client;
        let sql = sql.to_owned();
        async move {
            client
                .query_one(&sql, &[])
                .await
                .map(|r| r.get::<_, i64>(0))
        }
    };
    let table_bytes = size("SELECT pg_table_size('embeddings')").await?;
    let vector_index_bytes = size(&format!(
        "SELECT pg_relation_size('{}')",
        crmflow::stages::embed::store::index_name(
            &model,
            crmflow::stages::embed::text::Entity::Candidate,
            VectorStorage::Vector
        )
    ))
    .await?;

    // halfvec: the same rows, an index on embedding::halfvec(384), built here.
    let mut half = bulk.clone();
    half.embed.storage = VectorStorage::Halfvec;
    let half_params = IndexParams::from_config(&half);
    let started = Instant::now();
    client
        .batch_execute(&format!(
            "SET maintenance_work_mem = '{}MB'; SET max_parallel_maintenance_workers = {}; {}",
            half.embed.index_build_mem_mb,
            half.embed.index_build_workers,
            half_params.create_sql(&model, crmflow::stages::embed::text::Entity::Candidate)
        ))
        .await?;
    let half_build = started.elapsed().as_secs_f64();
    let half_index_bytes = size(&format!(
        "SELECT pg_relation_size('{}')",
        crmflow::stages::embed::store::index_name(
            &model,
            crmflow::stages::embed::text::Entity::Candidate,
            VectorStorage::Halfvec
        )
    ))
    .await?;
    let recall_half = recall_at_10(&client, &half_params, &model, &ids).await?;
    let per_100k = |bytes: i64| bytes as f64 * 100_000.0 / n as f64 / (1024.0 * 1024.0);

    println!(
        "embed bulk ({n} records) vs incremental ({m} records), ML sim 100 ms per batch of 500, 5 in flight:"
    );
    println!("  incremental (per-row HNSW inserts): {inc_secs:>8.1} s  {inc_rate:>8.0} records/s  ({m} records)");
    println!(
        "  bulk (no index, one build at end):  {bulk_secs:>8.1} s  {bulk_rate:>8.0} records/s  ({n} records; loading ~{load_secs:.1} s = {:.0}/s, index build ~{build_secs:.1} s)",
        n as f64 / load_secs.max(0.001)
    );
    println!(
        "  bulk / incremental:                 {:>8.2}x",
        bulk_rate / inc_rate
    );
    println!(
        "  recall@10 vs exact ({QUERIES} queries, m={}, ef_construction={}, ef_search=40): vector {recall_vector:.3}, halfvec {recall_half:.3}",
        vector_params.m, vector_params.ef_construction
    );
    println!(
        "  per 100k vectors: table {:.1} MiB; HNSW index vector {:.1} MiB, halfvec {:.1} MiB (halfvec build {half_build:.1} s)",
        per_100k(table_bytes),
        per_100k(vector_index_bytes),
        per_100k(half_index_bytes)
    );
    println!(
        "  load average (1/5/15 min) before: {}, after: {}",
        load_before
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        load_after
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    // The two namespaces hold ~2 GB at 200,000 records: drop them (topics stay, as in the other
    // benches).
    for cfg in [&incremental, &bulk] {
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {} CASCADE",
                cfg.postgres.schema
            ))
            .await?;
    }
    Ok(())
}
