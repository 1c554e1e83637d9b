//! The bulk path of the embed stage: the HNSW index dropped for a large backlog and built once at the
//! end, also when the stage is killed mid-load, and a bulk backfill for a new model beside the old one.

use super::*;

/// Names of the HNSW indexes on `embeddings` in the test's schema.
async fn hnsw_indexes(cfg: &Config) -> Vec<String> {
    let client = crmflow::store::connect(cfg).await.unwrap();
    client
        .query(
            "SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = 'embeddings' AND indexdef ILIKE '%USING hnsw%' ORDER BY 1",
            &[&cfg.postgres.schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn bulk_rows(cfg: &Config) -> Vec<(String, String)> {
    let client = crmflow::store::connect(cfg).await.unwrap();
    client
        .query("SELECT model, entity FROM embed_bulk ORDER BY 1, 2", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// The bulk path: a backlog past `embed.bulk_threshold` drops the side's HNSW index, loads
/// through the same guarded writes, and builds the index once when caught up. SIGKILLed while
/// loading, it neither loses nor doubles a vector, keeps skipping unchanged text, applies the
/// tombstones, and the run that catches up builds the index and ends the bulk load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_path_killed_mid_load_converges_and_builds_the_index_once() {
    use crmflow::stages::embed::store::index_name;
    use crmflow::stages::embed::text::Entity;
    let sim = {
        let mut args = SimArgs::for_tests();
        args.latency_ms = 30;
        Simulator::start(args).await.unwrap()
    };
    let mut cfg = config("embedbulk", &sim);
    cfg.kafka.session_timeout_ms = 6_000;
    cfg.embed.bulk_threshold = 500;
    prepare(&cfg).await;
    // Round 0 and a round 1 with the same text (a new version: skipped by its hash), then
    // tombstones for every 25th id.
    let mut latest = HashMap::new();
    let mut batch = Vec::new();
    for round in 0..2i64 {
        for id in 1..=1_500u64 {
            let c = candidate(id, T0 + round, "Engineer", &summary(id, 0), "a@x.io", false);
            batch.push(c.clone());
            latest.insert(id, c);
        }
    }
    for id in (25..=1_500u64).step_by(25) {
        let c = candidate(id, T0 + 5, "Engineer", &summary(id, 0), "a@x.io", true);
        batch.push(c.clone());
        latest.insert(id, c);
    }
    produce_candidates(&cfg, &batch).await;
    produce_positions(
        &cfg,
        &(1..=20u64)
            .map(|id| position(id, T0, "Engineer", &summary(id, 0), &["Rust"]))
            .collect::<Vec<_>>(),
    )
    .await;
    let url = sim.base_url().to_string();
    let env = [
        ("ML_SERVICE_URL", url.as_str()),
        ("CRMFLOW_EMBED__BATCH_SIZE", "50"),
        ("CRMFLOW_EMBED__LINGER_MS", "20"),
        ("CRMFLOW_EMBED__BULK_THRESHOLD", "500"),
        ("CRMFLOW_KAFKA__SESSION_TIMEOUT_MS", "6000"),
        ("CRMFLOW_KAFKA__GROUP_INSTANCE_ID", "embedbulk"),
    ];
    let model = cfg.ml.model.clone();
    let cand_index = index_name(&model, Entity::Candidate, cfg.embed.storage);
    let pos_index = index_name(&model, Entity::Position, cfg.embed.storage);

    // The first run takes the bulk path for candidates (3,060 waiting) but not positions (20).
    let mut child = spawn_stage(&cfg, "embed", &env, false);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while bulk_rows(&cfg).await.is_empty() {
        assert!(std::time::Instant::now() < deadline, "bulk path not taken");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        bulk_rows(&cfg).await,
        [(model.clone(), "candidate".to_owned())]
    );
    let indexes = hnsw_indexes(&cfg).await;
    assert!(
        !indexes.contains(&cand_index),
        "candidate index dropped: {indexes:?}"
    );
    assert!(
        indexes.contains(&pos_index),
        "position index kept: {indexes:?}"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    for i in 0..4u64 {
        let mut child = spawn_stage(&cfg, "embed", &env, false);
        tokio::time::sleep(Duration::from_millis(900 + (i * 137) % 400)).await;
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        if bulk_rows(&cfg).await.is_empty() {
            break; // caught up and built before the kill
        }
        assert!(
            !hnsw_indexes(&cfg).await.contains(&cand_index),
            "no index while loading"
        );
    }
    let mut last = spawn_stage(&cfg, "embed", &env, true);
    let status = tokio::task::spawn_blocking(move || last.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "final one-shot embed exited {status}");
    assert_vectors(
        &cfg,
        &vectors(&cfg, &model).await,
        &latest,
        "after the bulk load and kills",
    );
    assert!(bulk_rows(&cfg).await.is_empty(), "the bulk load ended");
    let indexes = hnsw_indexes(&cfg).await;
    assert!(
        indexes.contains(&cand_index) && indexes.contains(&pos_index),
        "{indexes:?}"
    );
    // Round 1 repeated round 0's text: only kills may have re-sent a text, never a whole round.
    let embedded = sim.stats().inputs_embedded;
    assert!(
        embedded < 2 * 1_500,
        "unchanged text is skipped on the bulk path too ({embedded} texts embedded)"
    );

    // Matching answers with the new index; no list points at a deleted candidate.
    one_shot(&cfg, &[StageName::Embed, StageName::Match]).await;
    let client = crmflow::store::connect(&cfg).await.unwrap();
    let (lists, dangling): (i64, i64) = {
        let r = client
            .query_one(
                "SELECT count(DISTINCT from_id) FILTER (WHERE from_entity = 'position'),
                        count(*) FILTER (WHERE to_entity = 'candidate' AND to_id::bigint % 25 = 0)
                 FROM matches WHERE model = $1",
                &[&model],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(lists, 20, "every position has its list");
    assert_eq!(dangling, 0, "deleted candidates are in no list");
    let plan: String = client
        .query(
            &format!(
                "EXPLAIN SELECT crm_id FROM embeddings WHERE model = '{model}' AND entity = 'candidate'
                 ORDER BY embedding::vector(384) <=> (SELECT embedding FROM embeddings LIMIT 1)::vector(384) LIMIT 5"
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        plan.contains(&cand_index),
        "k-NN uses the built index:\n{plan}"
    );
}

/// `embed backfill` for a new model past the threshold loads in bulk and builds the index at
/// the end; the old model's index is never touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_backfill_builds_the_new_models_index_and_keeps_the_old_one() {
    use crmflow::stages::embed::store::index_name;
    use crmflow::stages::embed::text::Entity;
    let sim = sim().await;
    let cfg = config("embedbulkbf", &sim);
    prepare(&cfg).await;
    let cands: Vec<Candidate> = (1..=300u64)
        .map(|id| candidate(id, T0, "Engineer", &summary(id, 0), "a@x.io", false))
        .collect();
    produce_candidates(&cfg, &cands).await;
    one_shot(&cfg, &[StageName::Sink, StageName::Embed]).await;
    let old_index = index_name(&cfg.ml.model, Entity::Candidate, cfg.embed.storage);
    assert!(hnsw_indexes(&cfg).await.contains(&old_index));

    let mut v2 = cfg.clone();
    v2.ml.model = "sim-bow-384-v2".into();
    v2.embed.bulk_threshold = 100;
    v2.embed.storage = crmflow::config::VectorStorage::Halfvec;
    let report = crmflow::stages::embed::backfill::run(&v2).await.unwrap();
    assert_eq!((report.updated, report.failed), (300, 0), "{report:?}");
    assert!(bulk_rows(&v2).await.is_empty());
    let indexes = hnsw_indexes(&v2).await;
    let new_index = index_name(&v2.ml.model, Entity::Candidate, v2.embed.storage);
    assert!(indexes.contains(&new_index), "{indexes:?}");
    assert!(
        indexes.contains(&old_index),
        "old model's index untouched: {indexes:?}"
    );
    assert_eq!(vectors(&v2, &v2.ml.model).await.len(), 300);
}
