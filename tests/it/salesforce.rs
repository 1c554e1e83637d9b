//! The Salesforce poll source against the Salesforce simulator (in-process, over TLS), real Kafka and real
//! Postgres: a full sync equals the simulator's ground truth (live and recycle-bin records, ops from
//! `IsDeleted`), later writes (updates, deletes, undeletes, merges) arrive through expired sessions and 503s,
//! and a purged delete log makes the poller resync the object.

use std::collections::HashMap;
use std::time::Duration;

use crmflow::config::{Config, SalesforceAuth};
use crmflow::model::{ChangeEvent, Op};
use crmflow::sources::salesforce;
use crmflow_salesforce::sim::{FaultsPatch, SimConfig, SimHandle, Simulator};
use crmflow_salesforce::wire::parse_datetime;
use tokio_util::sync::CancellationToken;

use crate::common::isolated_config;
use crate::ingest::raw_events_of;

async fn setup(test: &str, sim: &SimHandle) -> Config {
    let mut cfg = isolated_config(test);
    let ca = std::env::temp_dir().join(format!("{}-ca.pem", cfg.postgres.schema));
    std::fs::write(&ca, sim.ca_pem()).expect("CA file");
    let c = sim.config();
    let s = &mut cfg.salesforce;
    s.enabled = true;
    s.login_url = sim.base_url();
    s.auth = SalesforceAuth::ClientCredentials;
    s.client_id = Some(c.client_id.clone());
    s.client_secret = Some(c.client_secret.clone().into());
    s.ca_file = Some(ca);
    s.objects = vec!["Contact".into(), "Position__c".into()];
    s.fields
        .insert("Position__c".into(), "Name,Status__c,Skills__c".into());
    s.page_size = 300;
    s.poll_interval_secs = 1;
    crmflow::store::migrate(&cfg).await.expect("migrate");
    crmflow::kafka::ensure_topics(&cfg.kafka, &crmflow::pipeline::topic_specs(&cfg))
        .await
        .expect("topics");
    cfg
}

async fn sync(cfg: &Config) {
    tokio::time::timeout(
        Duration::from_secs(120),
        salesforce::run_with(cfg, CancellationToken::new(), true),
    )
    .await
    .expect("ingest within 120 s")
    .expect("ingest");
}

/// Every simulator record is on the raw topic at its current `SystemModstamp`, DELETE iff `IsDeleted`.
async fn assert_complete(cfg: &Config, sim: &SimHandle, object: &str) -> usize {
    let events = raw_events_of(cfg, "salesforce", object).await;
    let mut latest: HashMap<String, &ChangeEvent> = HashMap::new();
    for e in &events {
        assert_eq!((e.crm.as_str(), e.entity.as_str()), ("salesforce", object));
        let record: serde_json::Value = serde_json::from_str(&e.record).expect("JSON record");
        assert_eq!(record["Id"].as_str(), Some(e.record_id.as_str()));
        let slot = latest.entry(e.record_id.clone()).or_insert(e);
        if e.source_version > slot.source_version {
            *slot = e;
        }
    }
    let truth = sim.records(object).expect("records");
    let mut missing = Vec::new();
    for r in &truth {
        let id = r["Id"].as_str().expect("Id").to_string();
        let version = parse_datetime(r["SystemModstamp"].as_str().expect("modstamp"))
            .expect("datetime")
            .timestamp_millis();
        let deleted = r["IsDeleted"].as_bool().unwrap_or(false);
        match latest.get(&id) {
            Some(e) if e.source_version == version => {
                assert_eq!(e.op == Op::Delete, deleted, "{object} {id}: op {:?}", e.op)
            }
            other => missing.push((id, version, other.map(|e| e.source_version))),
        }
    }
    assert!(
        missing.is_empty(),
        "{object}: {} of {} missing or stale, e.g. {:?}",
        missing.len(),
        truth.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(
        latest.len(),
        truth.len(),
        "{object}: no records beyond the truth"
    );
    events.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_poll_sync_changes_faults_and_resync() {
    let sim = Simulator::start(SimConfig {
        contacts: 2_000,
        positions: 150,
        tie_share: 0.5,
        ..SimConfig::for_tests()
    })
    .await
    .expect("simulator");
    let cfg = setup("sf_poll", &sim).await;

    sync(&cfg).await;
    let first = assert_complete(&cfg, &sim, "Contact").await;
    assert_complete(&cfg, &sim, "Position__c").await;
    assert!(
        sim.records("Contact")
            .unwrap()
            .iter()
            .any(|r| r["IsDeleted"] == true),
        "data has deletes"
    );

    // Writes of every kind, then a sync through an expired session and a burst of 503s.
    let ids: Vec<String> = sim
        .records("Contact")
        .unwrap()
        .iter()
        .filter(|r| r["IsDeleted"] == false)
        .take(3)
        .map(|r| r["Id"].as_str().unwrap().to_string())
        .collect();
    sim.merge("Contact", &ids[0], &ids[1]).unwrap();
    sim.delete("Contact", &ids[2]).unwrap();
    sim.undelete("Contact", &ids[2]).unwrap();
    assert!(sim.random_changes(200) > 100);
    sim.set_faults(&FaultsPatch {
        expire_sessions: true,
        fail_next: Some(3),
        ..Default::default()
    });
    sync(&cfg).await;
    let second = assert_complete(&cfg, &sim, "Contact").await;
    assert!(second > first);
    assert_complete(&cfg, &sim, "Position__c").await;
    assert!(sim.stats()["unavailable"].as_u64().unwrap() >= 3);

    // The delete log no longer covers the cursor: the object is read again from the start.
    sim.set_faults(&FaultsPatch {
        purge_deleted_log: true,
        ..Default::default()
    });
    let before = sim.stats()["query_records"].as_u64().unwrap();
    sync(&cfg).await;
    let reread = sim.stats()["query_records"].as_u64().unwrap() - before;
    assert!(
        reread >= sim.records("Contact").unwrap().len() as u64,
        "resync re-read everything ({reread})"
    );
    assert_complete(&cfg, &sim, "Contact").await;
}
