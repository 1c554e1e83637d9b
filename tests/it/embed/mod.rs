//! The embed stage and the match step against real Kafka and Postgres (pgvector), with the ML
//! simulator in-process: one vector per live record and model, unchanged text never re-sent,
//! ML faults and a poison input lose nothing, SIGKILL neither loses nor doubles a vector,
//! near-identical texts match at rank 1 (also when the position comes later), and a backfill
//! for a new model embeds everything again.

mod bulk;

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::message::OwnedHeaders;

use crmflow::codec;
use crmflow::config::Config;
use crmflow::kafka::{Producer, Topics};
use crmflow::model::{Candidate, Lineage, Position};
use crmflow::runtime::StageName;
use crmflow::stages::embed::text::{content_hash, Templates};
use crmflow::stages::{self, replay::ReplayFrom};
use crmflow_embedding::sim::{Faults, SimArgs, SimHandle, Simulator};

use crate::common::{isolated_config, spawn_stage};
use crate::fixtures::{dead_letters, prepare, T0};

fn lineage(id: &str, version: i64) -> Lineage {
    Lineage {
        crm: "bullhorn".into(),
        crm_id: id.into(),
        source_version: version,
        event_id: format!("e{id}-{version}"),
        raw_topic: "raw".into(),
        raw_partition: 0,
        raw_offset: 0,
        trace_id: None,
    }
}

fn candidate(
    id: u64,
    version: i64,
    occupation: &str,
    summary: &str,
    email: &str,
    deleted: bool,
) -> Candidate {
    Candidate {
        crm: "bullhorn".into(),
        crm_id: id.to_string(),
        source_version: version,
        deleted,
        first_name: Some(format!("First{id}")),
        last_name: Some("Doe".into()),
        email: Some(email.into()),
        phone: None,
        mobile: None,
        address: None,
        status: Some("Active".into()),
        occupation: Some(occupation.into()),
        company_name: None,
        skills: vec!["Rust".into(), "Kafka".into()],
        summary: Some(summary.into()),
        date_available: None,
        owner_id: None,
        owner_name: None,
        date_added: Some(T0),
        lineage: lineage(&id.to_string(), version),
        attributes: Default::default(),
    }
}

fn position(id: u64, version: i64, title: &str, description: &str, skills: &[&str]) -> Position {
    Position {
        crm: "bullhorn".into(),
        crm_id: id.to_string(),
        source_version: version,
        deleted: false,
        title: Some(title.into()),
        description: Some(description.into()),
        status: Some("Open".into()),
        is_open: Some(true),
        employment_type: None,
        salary: Some(1.0),
        salary_unit: None,
        pay_rate: None,
        num_openings: Some(1),
        start_date: None,
        skills: skills.iter().map(|s| s.to_string()).collect(),
        address: None,
        client_corporation_id: None,
        client_corporation_name: None,
        owner_id: None,
        owner_name: None,
        date_added: Some(T0),
        lineage: lineage(&id.to_string(), version),
        attributes: Default::default(),
    }
}

/// Generic, distinct texts per id so records are not all alike.
fn summary(id: u64, round: u32) -> String {
    const WORDS: [&str; 12] = [
        "streaming",
        "payments",
        "logistics",
        "retail",
        "compilers",
        "databases",
        "kernels",
        "networks",
        "frontend",
        "mobile",
        "analytics",
        "security",
    ];
    format!(
        "Worked on {} and {} for {} years, round {round}",
        WORDS[(id % 12) as usize],
        WORDS[((id / 12) % 12) as usize],
        id % 17
    )
}

/// Produces encoded canonical records (`(key, value)`) to the canonical topic of `entity`,
/// waiting for every ack.
async fn produce_canonical(cfg: &Config, entity: &str, records: Vec<(String, Vec<u8>)>) {
    let topic = Topics::new(&cfg.kafka).canonical(entity);
    let producer = Producer::new(&cfg.kafka).unwrap();
    let mut acks = Vec::new();
    for (key, bytes) in &records {
        acks.push(
            producer
                .send(&topic, key.as_bytes(), bytes, OwnedHeaders::new())
                .await
                .unwrap(),
        );
    }
    for a in acks {
        a.await.unwrap();
    }
}

async fn produce_candidates(cfg: &Config, records: &[Candidate]) {
    let encoded = records
        .iter()
        .map(|c| {
            let key = format!("{}:{}", c.crm, c.crm_id);
            (key, codec::candidate().encode(c).unwrap())
        })
        .collect();
    produce_canonical(cfg, "candidate", encoded).await;
}

async fn produce_positions(cfg: &Config, records: &[Position]) {
    let encoded = records
        .iter()
        .map(|p| {
            let key = format!("{}:{}", p.crm, p.crm_id);
            (key, codec::position().encode(p).unwrap())
        })
        .collect();
    produce_canonical(cfg, "position", encoded).await;
}

async fn sim() -> SimHandle {
    Simulator::start(SimArgs::for_tests()).await.unwrap()
}

fn config(test: &str, sim: &SimHandle) -> Config {
    let mut cfg = isolated_config(test);
    cfg.ml.url = sim.base_url().to_string();
    cfg.ml.timeout_secs = 1;
    cfg.embed.batch_size = 100;
    cfg.embed.linger_ms = 50;
    cfg
}

async fn one_shot(cfg: &Config, which: &[StageName]) {
    tokio::time::timeout(
        Duration::from_secs(120),
        crmflow::run::run(cfg.clone(), which, true),
    )
    .await
    .expect("one-shot run finished in time")
    .expect("one-shot run succeeded");
}

/// `(entity, crm_id) -> (content_hash, count)` of one model's vectors.
async fn vectors(cfg: &Config, model: &str) -> HashMap<(String, String), (String, i64)> {
    let client = crmflow::store::connect(cfg).await.unwrap();
    client
        .query(
            "SELECT entity, crm_id, min(content_hash), count(*) FROM embeddings WHERE model = $1 GROUP BY 1, 2",
            &[&model],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| ((r.get(0), r.get(1)), (r.get(2), r.get(3))))
        .collect()
}

fn hash_of_candidate(cfg: &Config, c: &Candidate) -> String {
    let t = Templates::from_config(&cfg.embed).unwrap();
    content_hash(&cfg.ml.model, &t.candidate.render_candidate(c))
}

/// Latest non-deleted version per id must have exactly one vector with its text's hash; deleted
/// and absent ids none.
fn assert_vectors(
    cfg: &Config,
    got: &HashMap<(String, String), (String, i64)>,
    latest: &HashMap<u64, Candidate>,
    what: &str,
) {
    let live: Vec<&Candidate> = latest.values().filter(|c| !c.deleted).collect();
    let cand_vectors = got.iter().filter(|((e, _), _)| e == "candidate").count();
    assert_eq!(
        cand_vectors,
        live.len(),
        "{what}: one vector per live candidate"
    );
    for c in live {
        let (hash, n) = got
            .get(&("candidate".to_owned(), c.crm_id.clone()))
            .unwrap_or_else(|| panic!("{what}: candidate {} has no vector", c.crm_id));
        assert_eq!(*n, 1, "{what}: candidate {} vectors", c.crm_id);
        assert_eq!(
            *hash,
            hash_of_candidate(cfg, c),
            "{what}: candidate {} has the latest text",
            c.crm_id
        );
    }
}

async fn top_match(
    cfg: &Config,
    from_entity: &str,
    from_id: &str,
) -> Option<(String, String, f32)> {
    let client = crmflow::store::connect(cfg).await.unwrap();
    client
        .query_opt(
            "SELECT to_entity, to_id, score FROM matches WHERE model = $1 AND from_entity = $2 AND from_id = $3 AND rank = 1",
            &[&cfg.ml.model, &from_entity, &from_id],
        )
        .await
        .unwrap()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeds_live_records_once_skips_unchanged_text_and_matches_late_positions() {
    let sim = sim().await;
    let cfg = config("embed", &sim);
    prepare(&cfg).await;

    // 300 candidates, every 15th deleted afterwards; one welder to be matched later.
    let mut latest: HashMap<u64, Candidate> = HashMap::new();
    let mut batch = Vec::new();
    for id in 1..=300u64 {
        let c = if id == 7 {
            candidate(
                id,
                T0,
                "Underwater welder",
                "Certified commercial diver welding offshore pipelines",
                "a@x.io",
                false,
            )
        } else {
            candidate(
                id,
                T0,
                "Software engineer",
                &summary(id, 0),
                "a@x.io",
                false,
            )
        };
        batch.push(c.clone());
        latest.insert(id, c);
    }
    for id in (15..=300u64).step_by(15) {
        let c = candidate(id, T0 + 1, "Software engineer", "", "a@x.io", true);
        batch.push(c.clone());
        latest.insert(id, c);
    }
    produce_candidates(&cfg, &batch).await;
    produce_positions(
        &cfg,
        &(1..=40u64)
            .map(|id| {
                position(
                    id,
                    T0,
                    &format!("Backend developer {id}"),
                    &summary(id * 7, 1),
                    &["Go", "SQL"],
                )
            })
            .collect::<Vec<_>>(),
    )
    .await;
    one_shot(&cfg, &[StageName::Embed, StageName::Match]).await;

    let got = vectors(&cfg, &cfg.ml.model).await;
    assert_vectors(&cfg, &got, &latest, "first pass");
    assert_eq!(got.iter().filter(|((e, _), _)| e == "position").count(), 40);
    let first_inputs = sim.stats().inputs_embedded;
    assert!(
        (280..=340).contains(&first_inputs),
        "inputs sent: {first_inputs}"
    );
    // Every candidate has a full top-k of positions; deleted ones have nothing.
    let client = crmflow::store::connect(&cfg).await.unwrap();
    let lists: i64 = client
        .query_one(
            "SELECT count(DISTINCT from_id) FROM matches WHERE from_entity = 'candidate'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(lists, 280);
    let max_rank: i32 = client
        .query_one("SELECT max(rank) FROM matches", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(max_rank, 20);
    let dangling: i64 = client
        .query_one(
            "SELECT count(*) FROM matches m WHERE NOT EXISTS (SELECT 1 FROM embeddings e
               WHERE e.model = m.model AND e.entity = m.to_entity AND e.crm = m.to_crm AND e.crm_id = m.to_id)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(dangling, 0, "no match points at a record without a vector");

    // Same text at a newer version (only the e-mail changed): nothing is sent.
    sim.reset_stats();
    let touched: Vec<Candidate> = (1..=100u64)
        .filter(|id| id % 15 != 0)
        .map(|id| {
            let mut c = latest[&id].clone();
            c.source_version += 10;
            c.email = Some("changed@x.io".into());
            c
        })
        .collect();
    produce_candidates(&cfg, &touched).await;
    one_shot(&cfg, &[StageName::Embed]).await;
    assert_eq!(
        sim.stats().inputs_embedded,
        0,
        "a change outside the template sends nothing"
    );

    // A changed summary re-embeds exactly those records.
    let changed: Vec<Candidate> = (101..=111u64)
        .filter(|id| id % 15 != 0)
        .map(|id| {
            let mut c = latest[&id].clone();
            c.source_version += 20;
            c.summary = Some(summary(id, 9));
            c
        })
        .collect();
    for c in &changed {
        latest.insert(c.crm_id.parse().unwrap(), c.clone());
    }
    produce_candidates(&cfg, &changed).await;
    one_shot(&cfg, &[StageName::Embed]).await;
    assert_eq!(sim.stats().inputs_embedded, 10);
    assert_vectors(
        &cfg,
        &vectors(&cfg, &cfg.ml.model).await,
        &latest,
        "after changes",
    );

    // A position written later with the welder's text: rank 1 both ways (reverse refresh).
    let late = position(
        500,
        T0,
        "Underwater welder",
        "Certified commercial diver welding offshore pipelines",
        &["Rust", "Kafka"],
    );
    produce_positions(&cfg, &[late]).await;
    one_shot(&cfg, &[StageName::Embed, StageName::Match]).await;
    let (e, id, score) = top_match(&cfg, "candidate", "7")
        .await
        .expect("candidate 7 has matches");
    assert_eq!(
        (e.as_str(), id.as_str()),
        ("position", "500"),
        "score {score}"
    );
    assert!(score > 0.99, "identical texts score {score}");
    let (e, id, _) = top_match(&cfg, "position", "500")
        .await
        .expect("position 500 has matches");
    assert_eq!((e.as_str(), id.as_str()), ("candidate", "7"));

    // Replay from the beginning: the same vectors, and nothing is re-sent.
    sim.reset_stats();
    let before = vectors(&cfg, &cfg.ml.model).await;
    stages::replay::replay(&cfg, StageName::Embed, &ReplayFrom::Earliest, None)
        .await
        .unwrap();
    one_shot(&cfg, &[StageName::Embed]).await;
    assert_eq!(vectors(&cfg, &cfg.ml.model).await, before);
    // Live records' texts are not re-sent. A deleted record has no stored state left to compare
    // with, so its old upsert is embedded again during the replay and removed again by its
    // delete (at most the 20 deleted candidates).
    let resent = sim.stats().inputs_embedded;
    assert!(resent <= 20, "replay re-sent {resent} texts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ml_faults_lose_nothing_and_a_poison_input_is_dead_lettered_alone() {
    let sim = sim().await;
    let mut cfg = config("embedfault", &sim);
    cfg.embed.batch_size = 50;
    prepare(&cfg).await;
    let mut latest = HashMap::new();
    let mut batch = Vec::new();
    for id in 1..=400u64 {
        let text = if id == 123 {
            "has __POISON__ inside".to_owned()
        } else {
            summary(id, 0)
        };
        let c = candidate(id, T0, "Engineer", &text, "a@x.io", false);
        batch.push(c.clone());
        if id != 123 {
            latest.insert(id, c);
        }
    }
    produce_candidates(&cfg, &batch).await;
    // 429 storms (rate limit), 5xx bursts (random 503s and a run of them), hung requests
    // (longer than the client's 1 s timeout).
    sim.set_faults(Faults {
        fail_next: 6,
        fail_status: 503,
        retry_after_secs: None,
        hang_next: 3,
        hang_secs: 5,
        error_rate: 0.25,
        latency_ms: 5,
        rate_limit_per_sec: 4,
    });
    one_shot(&cfg, &[StageName::Embed]).await;
    let stats = sim.stats();
    assert!(
        stats.requests_with_status(429) > 0,
        "429s were served: {stats:?}"
    );
    assert!(
        stats.faults_injected > 0 && stats.hangs > 0,
        "faults were injected: {stats:?}"
    );

    assert_vectors(
        &cfg,
        &vectors(&cfg, &cfg.ml.model).await,
        &latest,
        "after faults",
    );
    let dl = dead_letters(&cfg);
    assert_eq!(
        dl,
        vec![(
            "embed".to_owned(),
            "ml.input_rejected".to_owned(),
            "bullhorn:123".to_owned()
        )],
        "only the poison record is dead-lettered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embed_killed_repeatedly_loses_and_doubles_no_vector() {
    let sim = {
        let mut args = SimArgs::for_tests();
        args.latency_ms = 30;
        Simulator::start(args).await.unwrap()
    };
    let mut cfg = config("embedkill", &sim);
    cfg.kafka.session_timeout_ms = 6_000;
    prepare(&cfg).await;
    // Two versions with different texts per record: the survivor must be the second.
    let mut latest = HashMap::new();
    let mut batch = Vec::new();
    for round in 0..2u32 {
        for id in 1..=2_000u64 {
            let c = candidate(
                id,
                T0 + round as i64,
                "Engineer",
                &summary(id, round),
                "a@x.io",
                false,
            );
            batch.push(c.clone());
            latest.insert(id, c);
        }
    }
    produce_candidates(&cfg, &batch).await;
    let url = sim.base_url().to_string();
    let env = [
        ("ML_SERVICE_URL", url.as_str()),
        ("CRMFLOW_EMBED__BATCH_SIZE", "50"),
        ("CRMFLOW_EMBED__LINGER_MS", "20"),
        ("CRMFLOW_KAFKA__SESSION_TIMEOUT_MS", "6000"),
        ("CRMFLOW_KAFKA__GROUP_INSTANCE_ID", "embedkill"),
    ];
    for i in 0..8u64 {
        let mut child = spawn_stage(&cfg, "embed", &env, false);
        let wait = 700 + (i * 211 + rand::random::<u64>() % 300) % 900;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
    }
    let mut last = spawn_stage(&cfg, "embed", &env, true);
    let status = tokio::task::spawn_blocking(move || last.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "final one-shot embed exited {status}");
    assert_vectors(
        &cfg,
        &vectors(&cfg, &cfg.ml.model).await,
        &latest,
        "after 8 kills",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_for_a_new_model_embeds_everything_again_and_reports_counts() {
    let sim = sim().await;
    let cfg = config("embedbackfill", &sim);
    prepare(&cfg).await;
    let cands: Vec<Candidate> = (1..=250u64)
        .map(|id| candidate(id, T0, "Engineer", &summary(id, 0), "a@x.io", id % 50 == 0))
        .collect();
    produce_candidates(&cfg, &cands).await;
    produce_positions(
        &cfg,
        &(1..=30u64)
            .map(|id| position(id, T0, "Dev", &summary(id, 3), &["Go"]))
            .collect::<Vec<_>>(),
    )
    .await;
    one_shot(&cfg, &[StageName::Sink, StageName::Embed]).await;
    let live = 245 + 30;
    assert_eq!(vectors(&cfg, &cfg.ml.model).await.len(), live);

    let mut v2 = cfg.clone();
    v2.ml.model = "sim-bow-384-v2".into();
    sim.reset_stats();
    let report = crmflow::stages::embed::backfill::run(&v2).await.unwrap();
    assert_eq!(
        (report.updated, report.skipped, report.failed),
        (live as u64, 0, 0),
        "{report:?}"
    );
    assert_eq!(sim.stats().inputs_embedded, live as u64);
    assert_eq!(vectors(&v2, &v2.ml.model).await.len(), live);
    assert_eq!(
        vectors(&cfg, &cfg.ml.model).await.len(),
        live,
        "the old model's vectors stay"
    );

    // Again: everything is current.
    let again = crmflow::stages::embed::backfill::run(&v2).await.unwrap();
    assert_eq!(
        (again.updated, again.skipped, again.failed),
        (0, live as u64, 0),
        "{again:?}"
    );

    // The CLI prints the same report as JSON.
    let out = std::process::Command::new(crate::common::crmflow_bin())
        .args(["embed", "backfill"])
        .env("CRMFLOW_KAFKA__TOPIC_PREFIX", &cfg.kafka.topic_prefix)
        .env("CRMFLOW_POSTGRES__SCHEMA", &cfg.postgres.schema)
        .env("DB_HOST", &cfg.postgres.host)
        .env("DB_PORT", cfg.postgres.port.to_string())
        .env("ML_SERVICE_URL", sim.base_url().to_string())
        .env("CRMFLOW_ML__MODEL", "sim-bow-384-v2")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["skipped"], live);
    assert_eq!(json["updated"], 0);
    assert!(json["duration_seconds"].is_number());
}

/// Found by the soak: a HubSpot contact archived at v2 and restored at v3 with the same text. The
/// restore (v3) reached the embed stage before the archive (v2), as the poller and the webhook
/// ingress deliver independently. v3's text was unchanged, so the stage skipped the ML call but
/// left the stored vector at v1; the late delete (v2 >= v1) then removed the vector of a record
/// that is live at v3 (the sink rightly ignored the older delete). A skip now moves the stored
/// vector's version forward, so the delete's version guard holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_delete_after_an_unchanged_newer_version_keeps_the_vector() {
    let sim = sim().await;
    let cfg = config("embedlatedelete", &sim);
    let v1 = candidate(
        7,
        1_000,
        "Rust engineer",
        "Builds pipelines",
        "a@example.com",
        false,
    );
    produce_candidates(&cfg, std::slice::from_ref(&v1)).await;
    one_shot(&cfg, &[StageName::Embed]).await;
    assert_eq!(vectors(&cfg, &cfg.ml.model).await.len(), 1);

    // v3: same text (the template's fields did not change), a new version.
    let v3 = candidate(
        7,
        3_000,
        "Rust engineer",
        "Builds pipelines",
        "a@example.com",
        false,
    );
    produce_candidates(&cfg, &[v3]).await;
    one_shot(&cfg, &[StageName::Embed]).await;
    let client = crmflow::store::connect(&cfg).await.unwrap();
    let version: i64 = client
        .query_one(
            "SELECT source_version FROM embeddings WHERE crm_id = '7'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, 3_000, "the skip moved the stored version forward");

    // The archive at v2 arrives last.
    let v2 = candidate(
        7,
        2_000,
        "Rust engineer",
        "Builds pipelines",
        "a@example.com",
        true,
    );
    produce_candidates(&cfg, &[v2]).await;
    one_shot(&cfg, &[StageName::Embed]).await;
    let got = vectors(&cfg, &cfg.ml.model).await;
    assert_eq!(
        got.get(&("candidate".to_owned(), "7".to_owned())),
        Some(&(hash_of_candidate(&cfg, &v1), 1)),
        "the record is live at v3: its vector stays"
    );
    sim.shutdown().await.unwrap();
}
