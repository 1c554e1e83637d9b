//! Normalize and sink against real Kafka and Postgres, fed with synthetic raw events: latest
//! versions win, deletes are tombstones, bad records are dead-lettered with their rule, replay
//! reproduces the same state, and SIGKILL at random moments neither loses, doubles nor regresses
//! a row.

use std::collections::HashMap;
use std::time::Duration;

use crmflow::runtime::StageName;
use crmflow::stages::{self, replay::ReplayFrom};

use crate::common::{isolated_config, spawn_stage};
use crate::fixtures::*;

fn assert_state(
    state: &HashMap<String, (i64, bool)>,
    expected: &HashMap<String, Expected>,
    what: &str,
) {
    let live: HashMap<&String, &Expected> = expected.iter().filter(|(_, e)| !e.rejected).collect();
    assert_eq!(state.len(), live.len(), "{what}: row count");
    for (id, e) in live {
        assert_eq!(
            state.get(id),
            Some(&(e.version, e.deleted)),
            "{what}: row {id} version/deleted"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normalize_and_sink_write_latest_versions_and_dead_letter_the_rest() {
    let mut cfg = isolated_config("stages");
    cfg.sink.batch_size = 700;
    prepare(&cfg).await;
    let (cands, cand_exp) = candidate_history(1_500);
    let (jobs, job_exp) = job_history(300);
    produce_raw(&cfg, &cands).await;
    produce_raw(&cfg, &jobs).await;
    produce_garbage(&cfg, "Candidate", b"\x00\x01 definitely not avro").await;

    tokio::time::timeout(
        Duration::from_secs(180),
        crmflow::run::run(cfg.clone(), &[StageName::Normalize, StageName::Sink], true),
    )
    .await
    .expect("one-shot run finished in time")
    .expect("one-shot run succeeded");

    assert_state(
        &table_state(&cfg, "candidates").await,
        &cand_exp,
        "candidates",
    );
    assert_state(&table_state(&cfg, "positions").await, &job_exp, "positions");

    // Canonical fields arrive cleaned.
    let client = crmflow::store::connect(&cfg).await.unwrap();
    let row = client
        .query_one(
            "SELECT first_name, email, skills, summary, country_code, raw_topic, trace_id FROM candidates WHERE crm_id = '2'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "First2");
    assert_eq!(row.get::<_, String>(1), "cand.2@example.com");
    let skills: Vec<String> = row.get(2);
    assert!(
        skills.iter().any(|s| s == "Kafka") && skills.iter().any(|s| s == "Rust"),
        "{skills:?}"
    );
    assert!(!row.get::<_, String>(3).contains('<'));
    assert_eq!(row.get::<_, String>(4), "US");
    assert!(row
        .get::<_, String>(5)
        .ends_with("crm.raw.bullhorn.candidate"));
    assert_eq!(row.get::<_, Option<String>>(6).map(|t| t.len()), Some(32));

    // Dead letters: every version of every bad candidate, every bad job, the garbage message.
    let dl = dead_letters(&cfg);
    let bad_cand_events = cands
        .iter()
        .filter(|e| e.op == crmflow::model::Op::Upsert && e.record.contains("not-an-email"))
        .count();
    let by_rule = |rule: &str| dl.iter().filter(|(_, r, _)| r == rule).count();
    assert_eq!(by_rule("candidate.email.format"), bad_cand_events);
    assert_eq!(
        by_rule("position.salary.non_negative"),
        job_exp.values().filter(|e| e.rejected).count()
    );
    assert_eq!(by_rule("record.avro"), 1);
    assert!(dl.iter().all(|(stage, _, _)| stage == "normalize"));
    // Every record is accounted for: a row, or dead letters only.
    let rejected_ids: std::collections::HashSet<&String> = dl
        .iter()
        .filter(|(_, r, _)| r.starts_with("candidate."))
        .map(|(_, _, k)| k)
        .collect();
    let rows = table_state(&cfg, "candidates").await;
    for id in cand_exp.keys() {
        assert!(
            rows.contains_key(id) || rejected_ids.contains(id),
            "candidate {id} lost"
        );
    }

    // Replay the sink from the beginning: the same final state.
    let before = snapshot(&cfg).await;
    let rewound = stages::replay::replay(&cfg, StageName::Sink, &ReplayFrom::Earliest, None)
        .await
        .unwrap();
    assert!(!rewound.is_empty());
    client
        .execute(
            "UPDATE candidates SET first_name = 'tampered' WHERE crm_id = '3'",
            &[],
        )
        .await
        .unwrap();
    client
        .execute(
            "UPDATE candidates SET source_version = source_version - 1 WHERE crm_id = '3'",
            &[],
        )
        .await
        .unwrap();
    tokio::time::timeout(
        Duration::from_secs(120),
        crmflow::run::run(cfg.clone(), &[StageName::Sink], true),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        snapshot(&cfg).await,
        before,
        "replay reproduces the same state"
    );
}

/// Every column but `written_at`, as text, by table and key.
async fn snapshot(cfg: &crmflow::config::Config) -> Vec<String> {
    let client = crmflow::store::connect(cfg).await.unwrap();
    let mut out = Vec::new();
    for t in ["candidates", "positions"] {
        for r in client
            .query(
                &format!(
                    "SELECT (to_jsonb(x) - 'written_at')::text FROM {t} x ORDER BY crm, crm_id"
                ),
                &[],
            )
            .await
            .unwrap()
        {
            out.push(r.get(0));
        }
    }
    out
}

/// Polls the candidates table and fails if any row's version ever goes down.
fn watch_versions(
    cfg: crmflow::config::Config,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut max: HashMap<String, i64> = HashMap::new();
        let mut polls = 0;
        while !stop.is_cancelled() {
            for (id, (v, _)) in table_state(&cfg, "candidates").await {
                let m = max.entry(id.clone()).or_insert(v);
                assert!(v >= *m, "row {id} moved back from version {m} to {v}");
                *m = v;
            }
            polls += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        polls
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_killed_twenty_times_loses_doubles_and_regresses_nothing() {
    let mut cfg = isolated_config("sigkill");
    cfg.kafka.session_timeout_ms = 6_000;
    prepare(&cfg).await;
    let (cands, cand_exp) = candidate_history(6_000);
    produce_raw(&cfg, &cands).await;
    crmflow::run::run(cfg.clone(), &[StageName::Normalize], true)
        .await
        .unwrap();

    let stop = tokio_util::sync::CancellationToken::new();
    let watcher = watch_versions(cfg.clone(), stop.clone());
    let env = [
        ("CRMFLOW_SINK__BATCH_SIZE", "150"),
        ("CRMFLOW_SINK__LINGER_MS", "20"),
        ("CRMFLOW_KAFKA__SESSION_TIMEOUT_MS", "6000"),
        // Static membership: the restarted process takes its partitions back at once.
        ("CRMFLOW_KAFKA__GROUP_INSTANCE_ID", "sigkill-test"),
    ];
    let mut kills = 0;
    for i in 0..20u64 {
        let mut child = spawn_stage(&cfg, "sink", &env, false);
        let wait = 400 + (i * 137 + rand::random::<u64>() % 400) % 1_200;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        child.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
        child.wait().unwrap();
        kills += 1;
    }
    assert_eq!(kills, 20);
    let mut last = spawn_stage(&cfg, "sink", &env, true);
    let status = tokio::task::spawn_blocking(move || last.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "final one-shot sink exited {status}");
    stop.cancel();
    assert!(watcher.await.expect("no version regressed") > 0);
    assert_state(
        &table_state(&cfg, "candidates").await,
        &cand_exp,
        "after 20 kills",
    );
    let client = crmflow::store::connect(&cfg).await.unwrap();
    let dups: i64 = client
        .query_one(
            "SELECT count(*) - count(DISTINCT (crm, crm_id)) FROM candidates",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(dups, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sinks_share_the_work_and_one_dying_loses_nothing() {
    let mut cfg = isolated_config("scaleout");
    cfg.kafka.partitions = 4;
    prepare(&cfg).await;
    let (cands, cand_exp) = candidate_history(4_000);
    produce_raw(&cfg, &cands).await;
    crmflow::run::run(cfg.clone(), &[StageName::Normalize], true)
        .await
        .unwrap();

    let base = [
        ("CRMFLOW_SINK__BATCH_SIZE", "100"),
        ("CRMFLOW_SINK__LINGER_MS", "20"),
        ("CRMFLOW_KAFKA__SESSION_TIMEOUT_MS", "6000"),
    ];
    let mut a_env = base.to_vec();
    a_env.push(("CRMFLOW_KAFKA__GROUP_INSTANCE_ID", "a"));
    let mut b_env = base.to_vec();
    b_env.push(("CRMFLOW_KAFKA__GROUP_INSTANCE_ID", "b"));
    let mut a = spawn_stage(&cfg, "sink", &a_env, false);
    let mut b = spawn_stage(&cfg, "sink", &b_env, false);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    a.kill().unwrap();
    a.wait().unwrap();
    // b takes over a's partitions once a's session expires, and finishes everything.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let state = table_state(&cfg, "candidates").await;
        let live = cand_exp.values().filter(|e| !e.rejected).count();
        if state.len() == live
            && cand_exp
                .iter()
                .filter(|(_, e)| !e.rejected)
                .all(|(id, e)| state.get(id) == Some(&(e.version, e.deleted)))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "survivor did not finish: {} of {live} rows",
            state.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    b.kill().unwrap();
    b.wait().unwrap();
    assert_state(
        &table_state(&cfg, "candidates").await,
        &cand_exp,
        "after failover",
    );
}
