//! `crmflow demo` as a user runs it: the built binary, small numbers, its own namespace and a
//! free metrics port. It must exit 0, and its JSON summary must equal what Postgres and the
//! dead-letter topic hold and what the simulator generated: rows + dead letters = records,
//! vectors = live rows (minus records embed dead-lettered), top matches present.

use std::collections::HashMap;
use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crmflow::demo::Summary;
use crmflow_bullhorn::sim::{SimConfig, Simulator};

use crate::common::{crmflow_cmd, isolated_config, ChildGuard};

const CANDIDATES: usize = 300;
const JOB_ORDERS: usize = 40;

fn tail(path: &std::path::Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_to_completion_and_its_summary_matches_postgres() {
    let cfg = isolated_config("demo");
    let dir = std::env::temp_dir();
    let json_path = dir.join(format!("{}.summary.json", cfg.postgres.schema));
    let log_path = dir.join(format!("{}.demo.log", cfg.postgres.schema));
    let log = std::fs::File::create(&log_path).unwrap();
    let started = Instant::now();
    let mut child = ChildGuard(
        crmflow_cmd(&cfg)
            .args([
                "demo",
                "--candidates",
                &CANDIDATES.to_string(),
                "--job-orders",
                &JOB_ORDERS.to_string(),
                "--salesforce-contacts",
                "300",
                "--salesforce-positions",
                "40",
                "--summary-json",
            ])
            .arg(&json_path)
            // Tests run in parallel: never a fixed port.
            .env("CRMFLOW_METRICS__LISTEN", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn crmflow demo"),
    );
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(240) {
            panic!(
                "crmflow demo did not finish within 240 s; log:\n{}",
                tail(&log_path)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let took = started.elapsed();
    assert!(
        status.success(),
        "crmflow demo exited with {status}; log:\n{}",
        tail(&log_path)
    );
    let out = std::fs::read_to_string(&log_path).unwrap();
    assert!(out.contains("== crmflow demo summary =="), "{out}");
    assert!(out.contains("metrics: http://127.0.0.1:"), "{out}");
    let s: Summary = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    eprintln!("demo took {took:?}; summary: {s:#?}");
    assert_eq!(
        (s.topic_prefix.as_str(), s.schema.as_str()),
        (
            cfg.kafka.topic_prefix.as_str(),
            cfg.postgres.schema.as_str()
        ),
        "the demo honours a configured namespace"
    );
    assert!(s.caught_up && s.complete, "{s:#?}");

    // The simulator's ground truth: the same seed and sizes generate the same records.
    let sim = Simulator::start(SimConfig {
        candidates: CANDIDATES,
        job_orders: JOB_ORDERS,
        ..SimConfig::for_tests()
    })
    .await
    .unwrap();
    for (entity, counts) in [
        ("Candidate", &s.source.candidates),
        ("JobOrder", &s.source.job_orders),
    ] {
        let records = sim.records(entity).unwrap();
        let deleted = records
            .iter()
            .filter(|r| r["isDeleted"].as_bool().unwrap_or(false))
            .count();
        assert_eq!(
            (counts.records, counts.deleted),
            (records.len() as u64, deleted as u64),
            "{entity}"
        );
    }
    sim.shutdown().await;
    assert!(s.source.candidates.deleted > 0, "some deletes to tombstone");

    // Postgres, counted here.
    let client = crmflow::store::connect(&cfg).await.unwrap();
    let count = |sql: &'static str| {
        let client = &client;
        async move {
            client
                .query_one(sql, &[])
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .get::<_, i64>(0)
        }
    };
    let c = &s.candidates;
    assert_eq!(c.rows, count("SELECT count(*) FROM candidates").await);
    assert_eq!(
        c.live,
        count("SELECT count(*) FROM candidates WHERE deleted_at IS NULL").await
    );
    assert_eq!(
        c.tombstoned,
        count("SELECT count(*) FROM candidates WHERE deleted_at IS NOT NULL").await
    );
    assert_eq!(
        c.vectors,
        count("SELECT count(*) FROM embeddings WHERE entity = 'candidate'").await
    );
    let p = &s.positions;
    assert_eq!(p.rows, count("SELECT count(*) FROM positions").await);
    assert_eq!(
        p.live,
        count("SELECT count(*) FROM positions WHERE deleted_at IS NULL").await
    );
    assert_eq!(
        p.vectors,
        count("SELECT count(*) FROM embeddings WHERE entity = 'position'").await
    );
    assert_eq!(s.matches, count("SELECT count(*) FROM matches").await);
    assert!(s.matches > 0);

    // Every record (Bullhorn's and HubSpot's) is a row or a dead letter; every live row has a
    // vector (or a dead letter).
    let hs = s
        .hubspot
        .clone()
        .expect("the demo runs HubSpot beside Bullhorn");
    assert!(hs.contacts.records > 0 && hs.jobs.records > 0, "{hs:?}");
    let sf = s
        .salesforce
        .clone()
        .expect("the demo runs Salesforce beside Bullhorn and HubSpot");
    assert_eq!(
        (sf.contacts.records, sf.positions.records, sf.mode.as_str()),
        (300, 40, "cdc"),
        "{sf:?}"
    );
    assert_eq!(
        s.candidate_records().records,
        s.source.candidates.records + hs.contacts.records + sf.contacts.records
    );
    assert_eq!(
        s.position_records().records,
        s.source.job_orders.records + hs.jobs.records + sf.positions.records
    );
    assert_eq!(
        (c.rows + c.dead_lettered) as u64,
        s.candidate_records().records
    );
    assert_eq!(
        (p.rows + p.dead_lettered) as u64,
        s.position_records().records
    );
    assert!(
        c.rows_by_crm["hubspot"] > 0 && c.rows_by_crm["bullhorn"] > 0,
        "{:?}",
        c.rows_by_crm
    );
    assert!(
        p.rows_by_crm["hubspot"] > 0 && p.rows_by_crm["bullhorn"] > 0,
        "{:?}",
        p.rows_by_crm
    );
    assert!(out.contains("HubSpot (simulator)"), "{out}");
    assert!(out.contains("Salesforce (simulator)"), "{out}");
    assert!(
        c.rows_by_crm["salesforce"] > 0 && p.rows_by_crm["salesforce"] > 0,
        "{:?} {:?}",
        c.rows_by_crm,
        p.rows_by_crm
    );
    assert_eq!(c.vectors + c.not_embedded, c.live);
    assert_eq!(p.vectors + p.not_embedded, p.live);
    assert_eq!(
        c.tombstoned as u64,
        s.candidate_records().deleted,
        "every deleted candidate (and archived contact) is a tombstone"
    );

    // The dead-letter topic, read here.
    let by_rule = tokio::task::spawn_blocking({
        let cfg = cfg.clone();
        move || {
            use crmflow::dlq::{H_CLASS, H_RULE, H_STAGE};
            let mut by_rule: HashMap<(String, String), u64> = HashMap::new();
            crmflow::dlq::scan(&cfg, &Default::default(), |e| {
                let stage = e.header(H_STAGE).unwrap_or("-").to_owned();
                let rule = e.header(H_RULE).or(e.header(H_CLASS)).unwrap_or("-");
                *by_rule.entry((stage, rule.to_owned())).or_default() += 1;
                true
            })
            .unwrap();
            by_rule
        }
    })
    .await
    .unwrap();
    assert_eq!(s.dead_letters, by_rule.values().sum::<u64>());
    assert!(
        s.dead_letters > 0,
        "the simulator's dirty records are rejected"
    );
    let summarized: HashMap<(String, String), u64> = s
        .dead_letters_by_rule
        .iter()
        .map(|r| ((r.stage.clone(), r.rule.clone()), r.count))
        .collect();
    assert_eq!(summarized, by_rule);

    // Top matches: up to three positions, each with up to three candidates, as stored.
    assert!(!s.top_matches.is_empty());
    assert!(s.top_matches.len() <= 3);
    for pm in &s.top_matches {
        assert!(
            !pm.candidates.is_empty() && pm.candidates.len() <= 3,
            "{pm:?}"
        );
        let stored: Vec<(i32, String)> = client
            .query(
                "SELECT rank, to_id FROM matches WHERE from_entity = 'position' AND from_id = $1 AND rank <= 3 ORDER BY rank",
                &[&pm.position_id],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let shown: Vec<(i32, String)> = pm
            .candidates
            .iter()
            .map(|c| (c.rank, c.candidate_id.clone()))
            .collect();
        assert_eq!(shown, stored, "{}", pm.title);
        assert!(pm.candidates.windows(2).all(|w| w[0].score >= w[1].score));
    }
    let _ = std::fs::remove_file(&json_path);
}
