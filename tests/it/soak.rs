//! The soak's verdict (`crmflow::soak::verify`): after a clean one-shot run of every stage it finds
//! nothing wrong, and it catches each kind of damage — a lost row, a stale row, a phantom row, a
//! missing vector, a vector of a deleted record and a match to a deleted record — when Postgres is
//! tampered with; and over Salesforce rows against the Salesforce simulator's records.

use std::time::Duration;

use crmflow::runtime::StageName;
use crmflow::soak::verify;
use crmflow::stages::embed::text::Templates;
use crmflow_bullhorn::sim::{SimConfig, Simulator};

use crate::common::isolated_config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_verdict_passes_a_clean_run_and_catches_lost_stale_phantom_rows_and_bad_vectors() {
    let sim = Simulator::start(SimConfig {
        candidates: 200,
        job_orders: 30,
        ..SimConfig::for_tests()
    })
    .await
    .expect("simulator");
    // History: updates, soft deletes and dirty records.
    sim.random_changes(80);
    let ml = crmflow_embedding::sim::Simulator::start(crmflow_embedding::sim::SimArgs {
        latency_ms: 0,
        ..crmflow_embedding::sim::SimArgs::for_tests()
    })
    .await
    .expect("ML simulator");

    let mut cfg = isolated_config("soakverdict");
    let c = sim.credentials();
    cfg.bullhorn.rest_url = sim.rest_services_url();
    cfg.bullhorn.client_id = Some(c.client_id);
    cfg.bullhorn.client_secret = Some(c.client_secret.into());
    cfg.bullhorn.username = Some(c.username);
    cfg.bullhorn.password = Some(c.password.into());
    cfg.bullhorn.poll_interval_secs = 1;
    cfg.ml.url = ml.base_url().to_string().trim_end_matches('/').to_owned();
    cfg.metrics.listen = String::new();

    tokio::time::timeout(
        Duration::from_secs(300),
        crmflow::run::run(cfg.clone(), &StageName::ALL, true),
    )
    .await
    .expect("one-shot pipeline within 300 s")
    .expect("one-shot pipeline");

    let templates = Templates::from_config(&cfg.embed).unwrap();
    let mut truth = verify::Truth::new();
    verify::bullhorn_truth(&cfg, &templates, &sim, &mut truth).unwrap();
    let v = verify::check(&cfg, &truth).await.unwrap();
    assert_eq!(v.violations(), 0, "clean run:\n{}", v.details(5));
    assert_eq!(
        v.records,
        sim.count("Candidate").unwrap() + sim.count("JobOrder").unwrap()
    );
    assert!(v.rows > 0 && v.vectors > 0 && v.matches > 0, "{}", v.line());
    assert!(
        v.rejected_records > 0,
        "the seed has dirty records: {}",
        v.line()
    );

    // Damage Postgres, one kind of violation each.
    let db = crmflow::store::connect(&cfg).await.unwrap();
    let live = |table: &str, n: i64| {
        format!(
            "SELECT crm_id FROM {table} t WHERE deleted_at IS NULL
               AND EXISTS (SELECT 1 FROM embeddings e WHERE e.crm = t.crm AND e.crm_id = t.crm_id)
             ORDER BY crm_id OFFSET {n} LIMIT 1"
        )
    };
    let id = |row: tokio_postgres::Row| row.get::<_, String>(0);
    let lost = id(db.query_one(&live("candidates", 0), &[]).await.unwrap());
    let stale = id(db.query_one(&live("positions", 0), &[]).await.unwrap());
    let unembedded = id(db.query_one(&live("candidates", 1), &[]).await.unwrap());
    let tombstoned = id(db.query_one(&live("candidates", 2), &[]).await.unwrap());
    db.batch_execute(&format!(
        "DELETE FROM candidates WHERE crm_id = '{lost}';
         UPDATE positions SET source_version = source_version - 1 WHERE crm_id = '{stale}';
         DELETE FROM embeddings WHERE entity = 'candidate' AND crm_id = '{unembedded}';
         UPDATE candidates SET deleted_at = now() WHERE crm_id = '{tombstoned}';
         CREATE TEMP TABLE phantom AS SELECT * FROM candidates WHERE crm_id = '{unembedded}';
         UPDATE phantom SET crm_id = '999999999';
         INSERT INTO candidates SELECT * FROM phantom;"
    ))
    .await
    .unwrap();
    let v = verify::check(&cfg, &truth).await.unwrap();
    let has = |list: &[String], id: &str| list.iter().any(|e| e.contains(&format!(":{id}")));
    assert!(has(&v.lost, &lost), "lost:\n{}", v.details(5));
    assert!(has(&v.stale, &stale), "stale:\n{}", v.details(5));
    assert!(has(&v.stale, &tombstoned), "tombstoned:\n{}", v.details(5));
    assert!(has(&v.phantom, "999999999"), "phantom:\n{}", v.details(5));
    assert!(
        has(&v.missing_vectors, &unembedded),
        "missing vector:\n{}",
        v.details(5)
    );
    // The record Postgres thinks deleted still has its vector and its matches.
    assert!(
        has(&v.missing_vectors, &lost) || has(&v.extra_vectors, &lost) || !v.bad_matches.is_empty(),
        "{}",
        v.details(5)
    );
    assert!(has(&v.extra_vectors, &tombstoned), "{}", v.details(5));
    assert!(!v.bad_matches.is_empty(), "{}", v.details(5));
    sim.shutdown().await;
    let _ = ml.shutdown().await;
}

/// The verdict over Salesforce rows: after a clean one-shot run (poll mode, the soak's field list
/// with the contact's status and skills) it finds nothing wrong — so the truth it computes from
/// the simulator's records is what the source reads — and it catches a lost and a stale
/// `crm = 'salesforce'` row, and a live row of a record Salesforce has in its recycle bin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_verdict_covers_salesforce_rows_against_the_simulator_state() {
    use crmflow_salesforce::sim as sf;
    let sim = sf::Simulator::start(sf::SimConfig {
        contacts: 150,
        positions: 20,
        ..sf::SimConfig::for_tests()
    })
    .await
    .expect("salesforce simulator");
    // History: updates, deletes, undeletes, merges.
    sim.random_changes(60);
    let ml = crmflow_embedding::sim::Simulator::start(crmflow_embedding::sim::SimArgs {
        latency_ms: 0,
        ..crmflow_embedding::sim::SimArgs::for_tests()
    })
    .await
    .expect("ML simulator");

    let mut cfg = isolated_config("soakverdict_sf");
    cfg.bullhorn.enabled = false;
    let ca = std::env::temp_dir().join(format!("{}-ca.pem", cfg.postgres.schema));
    std::fs::write(&ca, sim.ca_pem()).unwrap();
    let s = &mut cfg.salesforce;
    s.enabled = true;
    s.login_url = sim.base_url();
    s.client_id = Some(sim.config().client_id.clone());
    s.client_secret = Some(sim.config().client_secret.clone().into());
    s.ca_file = Some(ca.clone());
    s.objects = vec!["Contact".into(), "Position__c".into()];
    s.fields
        .get_mut("Contact")
        .unwrap()
        .push_str(",Candidate_Status__c,Skills__c");
    s.poll_interval_secs = 1;
    cfg.ml.url = ml.base_url().to_string().trim_end_matches('/').to_owned();

    tokio::time::timeout(
        Duration::from_secs(300),
        crmflow::run::run(cfg.clone(), &StageName::ALL, true),
    )
    .await
    .expect("one-shot pipeline within 300 s")
    .expect("one-shot pipeline");

    let templates = Templates::from_config(&cfg.embed).unwrap();
    let mut truth = verify::Truth::new();
    verify::salesforce_truth(&cfg, &templates, &sim, &mut truth).unwrap();
    assert_eq!(
        truth.len(),
        sim.records("Contact").unwrap().len() + sim.records("Position__c").unwrap().len()
    );
    let v = verify::check(&cfg, &truth).await.unwrap();
    assert_eq!(v.violations(), 0, "clean run:\n{}", v.details(5));
    assert!(v.rows > 0 && v.vectors > 0 && v.matches > 0, "{}", v.line());
    assert!(v.rejected_records > 0, "dirty records: {}", v.line());

    let db = crmflow::store::connect(&cfg).await.unwrap();
    let one = |table: &str, deleted: bool, n: i64| {
        format!(
            "SELECT crm_id FROM {table} WHERE crm = 'salesforce' AND (deleted_at IS NOT NULL) = {deleted}
             ORDER BY crm_id OFFSET {n} LIMIT 1"
        )
    };
    let id = |row: tokio_postgres::Row| row.get::<_, String>(0);
    let lost = id(db
        .query_one(&one("candidates", false, 0), &[])
        .await
        .unwrap());
    let stale = id(db
        .query_one(&one("positions", false, 0), &[])
        .await
        .unwrap());
    let revived = id(db
        .query_one(&one("candidates", true, 0), &[])
        .await
        .unwrap());
    db.batch_execute(&format!(
        "DELETE FROM candidates WHERE crm = 'salesforce' AND crm_id = '{lost}';
         UPDATE positions SET source_version = source_version - 1
           WHERE crm = 'salesforce' AND crm_id = '{stale}';
         UPDATE candidates SET deleted_at = NULL WHERE crm = 'salesforce' AND crm_id = '{revived}';"
    ))
    .await
    .unwrap();
    let v = verify::check(&cfg, &truth).await.unwrap();
    let has =
        |list: &[String], id: &str| list.iter().any(|e| e.contains(&format!("salesforce:{id}")));
    assert!(has(&v.lost, &lost), "lost:\n{}", v.details(5));
    assert!(has(&v.stale, &stale), "stale:\n{}", v.details(5));
    assert!(has(&v.stale, &revived), "revived:\n{}", v.details(5));
    let _ = std::fs::remove_file(ca);
    sim.shutdown().await;
    let _ = ml.shutdown().await;
}
