//! The Salesforce source against the Salesforce simulator (in-process, over TLS), real Kafka and real
//! Postgres. Poll mode: a full sync equals the simulator's ground truth (live and recycle-bin records, ops
//! from `IsDeleted`), later writes (updates, deletes, undeletes, merges) arrive through expired sessions and
//! 503s, a purged delete log makes the poller resync the object, and the whole pipeline leaves Postgres
//! equal to `/sim/state` (rows or dead letters) beside HubSpot rows. CDC mode: a SIGKILLed ingest resumes
//! from the stored replay id and loses nothing; GAP and GAP_OVERFLOW events heal; an expired replay id
//! resyncs by poll; expired sessions and `REQUEST_LIMIT_EXCEEDED` are waited out within the budget.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crmflow::config::{Config, SalesforceAuth, SalesforceMode};
use crmflow::model::{ChangeEvent, Lineage, Op};
use crmflow::operators::{self, Canonical};
use crmflow::runtime::StageName;
use crmflow::sources::salesforce;
use crmflow_salesforce::sim::{FaultsPatch, SimConfig, SimHandle, Simulator};
use crmflow_salesforce::wire::parse_datetime;
use tokio_util::sync::CancellationToken;

use crate::common::{crmflow_cmd, isolated_config, ChildGuard};
use crate::fixtures::dead_letters;
use crate::ingest::raw_events_of;

const OBJECTS: [&str; 2] = ["Contact", "Position__c"];

pub(crate) async fn setup(test: &str, sim: &SimHandle) -> Config {
    setup_with(isolated_config(test), sim).await
}

async fn setup_with(mut cfg: Config, sim: &SimHandle) -> Config {
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
    let (missing, n) = incomplete(cfg, sim, object).await;
    assert!(missing.is_empty(), "{object}: {}", missing.join("; "));
    n
}

/// What is missing or stale on `object`'s raw topic (empty: complete), and the event count.
async fn incomplete(cfg: &Config, sim: &SimHandle, object: &str) -> (Vec<String>, usize) {
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
            Some(e) if e.source_version == version && (e.op == Op::Delete) == deleted => {}
            other => missing.push((id, version, other.map(|e| (e.source_version, e.op)))),
        }
    }
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!(
            "{} of {} missing or stale, e.g. {:?}",
            missing.len(),
            truth.len(),
            &missing[..missing.len().min(5)]
        ));
    }
    if latest.len() != truth.len() {
        problems.push(format!(
            "{} records on the topic, {} in the simulator",
            latest.len(),
            truth.len()
        ));
    }
    (problems, events.len())
}

/// Waits (up to `secs`) until both objects' raw topics equal the simulator.
async fn wait_complete(cfg: &Config, sim: &SimHandle, secs: u64) {
    use futures::FutureExt;
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let mut problems = Vec::new();
        for object in OBJECTS {
            // A topic created a moment ago may not have a leader yet: that is "not yet".
            match std::panic::AssertUnwindSafe(incomplete(cfg, sim, object))
                .catch_unwind()
                .await
            {
                Ok((p, _)) => problems.extend(p.into_iter().map(|p| format!("{object}: {p}"))),
                Err(_) => problems.push(format!("{object}: topic not readable yet")),
            }
        }
        if problems.is_empty() {
            return;
        }
        if std::time::Instant::now() > deadline {
            panic!(
                "raw topics never matched the simulator: {}",
                problems.join("; ")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
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

// ---- the whole pipeline, poll mode: Postgres equals the simulator, beside HubSpot rows ----

/// (version, deleted) of a simulator record as the pipeline must see it.
fn truth_version(r: &serde_json::Value) -> (i64, bool) {
    let v = parse_datetime(r["SystemModstamp"].as_str().expect("SystemModstamp"))
        .expect("datetime")
        .timestamp_millis();
    (v, r["IsDeleted"].as_bool().unwrap_or(false))
}

/// What the operators make of a simulator record.
fn expected(object: &str, r: &serde_json::Value) -> Result<Canonical, String> {
    let (version, deleted) = truth_version(r);
    let id = r["Id"].as_str().unwrap();
    let ev = ChangeEvent::new(
        "salesforce",
        object,
        id,
        if deleted { Op::Delete } else { Op::Upsert },
        version,
        chrono::Utc::now().timestamp_millis(),
        vec![],
        "poll",
        r.to_string(),
    );
    let lineage = Lineage {
        crm: "salesforce".into(),
        crm_id: id.into(),
        source_version: version,
        event_id: ev.event_id.clone(),
        raw_topic: String::new(),
        raw_partition: 0,
        raw_offset: 0,
        trace_id: None,
    };
    operators::normalize(&ev, lineage, &Default::default()).map_err(|r| r.rule.to_owned())
}

/// `crm_id -> (source_version, deleted)` of `crm`'s rows of `table`.
async fn rows(cfg: &Config, table: &str, crm: &str) -> HashMap<String, (i64, bool)> {
    let client = crmflow::store::connect(cfg).await.unwrap();
    client
        .query(
            &format!(
                "SELECT crm_id, source_version, deleted_at IS NOT NULL FROM {table} WHERE crm = $1"
            ),
            &[&crm],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect()
}

/// Every simulator record is a row at its version (tombstoned when deleted) or a dead letter under
/// the rule the operators give it; no other live Salesforce row. Returns (rows, dead letters) per object.
async fn assert_postgres_equals_sim(cfg: &Config, sim: &SimHandle) -> Vec<(usize, usize)> {
    let rejected: HashSet<(String, String)> = dead_letters(cfg)
        .into_iter()
        .map(|(_, rule, key)| (key, rule))
        .collect();
    let mut counts = Vec::new();
    for (object, table) in OBJECTS.iter().zip(["candidates", "positions"]) {
        let rows = rows(cfg, table, "salesforce").await;
        let truth = sim.records(object).expect("records");
        let (mut ok, mut dlq) = (0, 0);
        let mut problems = Vec::new();
        for r in &truth {
            let id = r["Id"].as_str().unwrap().to_string();
            match expected(object, r) {
                Err(rule) => {
                    if !rejected.contains(&(id.clone(), rule.clone())) {
                        problems.push(format!("{object} {id} rejected by {rule}, not in the DLQ"));
                    }
                    dlq += 1;
                }
                Ok(_) => {
                    let want = truth_version(r);
                    if rows.get(&id) != Some(&want) {
                        problems.push(format!(
                            "{object} {id}: row {:?}, want {want:?}",
                            rows.get(&id)
                        ));
                    }
                    ok += 1;
                }
            }
        }
        let known: HashSet<&str> = truth.iter().filter_map(|r| r["Id"].as_str()).collect();
        for (id, (_, deleted)) in &rows {
            if !known.contains(id.as_str()) && !deleted {
                problems.push(format!("{object} {id}: live row of no simulator record"));
            }
        }
        assert!(
            problems.is_empty(),
            "{} problems, e.g. {:?}",
            problems.len(),
            &problems[..problems.len().min(8)]
        );
        counts.push((ok, dlq));
    }
    counts
}

async fn pipeline_one_shot(cfg: &Config) {
    tokio::time::timeout(
        Duration::from_secs(240),
        crmflow::run::run(
            cfg.clone(),
            &[StageName::Ingest, StageName::Normalize, StageName::Sink],
            true,
        ),
    )
    .await
    .expect("one-shot pipeline within 240 s")
    .expect("one-shot pipeline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_full_poll_sync_equals_simulator_state_rows_or_dlq_beside_hubspot() {
    let sim = Simulator::start(SimConfig {
        contacts: 600,
        positions: 80,
        ..SimConfig::for_tests()
    })
    .await
    .expect("simulator");
    // History before the first sync: updates, deletes, undeletes, merges.
    sim.random_changes(150);
    let hs = crmflow_hubspot::sim::Simulator::start(crmflow_hubspot::sim::SimConfig {
        contacts: 60,
        jobs: 10,
        ..crmflow_hubspot::sim::SimConfig::for_tests()
    })
    .await
    .expect("hubspot simulator");
    let mut cfg = isolated_config("sf_full");
    cfg.bullhorn.enabled = false;
    cfg.hubspot = Some(crmflow::config::HubspotConfig {
        base_url: hs.base_url(),
        access_token: Some(hs.private_app_token().into()),
        objects: vec![crmflow::config::HubspotObject {
            entity: "contact".into(),
            object_type: "contacts".into(),
            object_type_id: Some("0-1".into()),
            properties: vec![],
        }],
        requests_per_10s: 10_000,
        search_requests_per_sec: 1_000,
        ..Default::default()
    });
    let mut cfg = setup_with(cfg, &sim).await;
    cfg.salesforce.fields = Config::default().salesforce.fields;
    pipeline_one_shot(&cfg).await;
    let counts = assert_postgres_equals_sim(&cfg, &sim).await;
    assert!(counts[0].0 > 400 && counts[0].1 > 0, "contacts: {counts:?}");
    assert!(counts[1].0 > 40, "positions: {counts:?}");
    let hubspot_rows = rows(&cfg, "candidates", "hubspot").await;
    assert!(
        hubspot_rows.len() >= 50,
        "HubSpot rows beside: {}",
        hubspot_rows.len()
    );

    // Incremental: more writes, a second pass.
    sim.random_changes(200);
    let live = sim
        .records("Contact")
        .unwrap()
        .into_iter()
        .find(|r| r["IsDeleted"] == false)
        .unwrap();
    let id = live["Id"].as_str().unwrap().to_string();
    sim.delete("Contact", &id).unwrap();
    pipeline_one_shot(&cfg).await;
    assert_postgres_equals_sim(&cfg, &sim).await;
    assert!(
        rows(&cfg, "candidates", "salesforce").await[&id].1,
        "a contact deleted since the last pass is a tombstone"
    );
}

// ---- CDC mode ----

/// CDC configuration for `sim`: Pub/Sub on the simulator's port, default field lists (every mapped
/// field), fast budget rechecks.
async fn cdc_setup(test: &str, sim: &SimHandle) -> Config {
    let mut cfg = setup(test, sim).await;
    let s = &mut cfg.salesforce;
    s.mode = SalesforceMode::Cdc;
    s.pubsub_endpoint = Some(sim.base_url());
    s.fields = Config::default().salesforce.fields;
    s.budget_recheck_secs = 1;
    s.cdc_batch_wait_ms = 20;
    cfg
}

/// The TOML a child `crmflow` reads the same Salesforce settings from.
fn child_config(cfg: &Config, sim: &SimHandle) -> std::path::PathBuf {
    let s = &cfg.salesforce;
    let toml = format!(
        "[bullhorn]\nenabled = false\n\n[salesforce]\nenabled = true\nmode = \"cdc\"\nlogin_url = \"{}\"\n\
client_id = \"{}\"\nclient_secret = \"{}\"\nca_file = \"{}\"\npubsub_endpoint = \"{}\"\n\
objects = [\"Contact\", \"Position__c\"]\nbudget_recheck_secs = 1\ncdc_batch_wait_ms = 20\npage_size = 500\n",
        s.login_url,
        sim.config().client_id,
        sim.config().client_secret,
        s.ca_file.as_ref().unwrap().display(),
        sim.base_url(),
    );
    let path = std::env::temp_dir().join(format!("{}.toml", cfg.postgres.schema));
    std::fs::write(&path, toml).unwrap();
    path
}

/// The stored replay id of `object` (hex), if any.
async fn stored_replay(cfg: &Config, object: &str) -> Option<String> {
    let client = crmflow::store::connect(cfg).await.unwrap();
    client
        .query_opt(
            "SELECT cursor->>'replay_id' FROM source_cursors WHERE source = 'salesforce' AND entity = $1",
            &[&format!("{object}#cdc")],
        )
        .await
        .unwrap()
        .and_then(|r| r.get(0))
}

/// A few writes of every kind on live contacts (merge, delete, undelete), spaced so no two writes
/// of one record share a millisecond.
async fn writes_of_every_kind(sim: &SimHandle) {
    let ids: Vec<String> = sim
        .records("Contact")
        .unwrap()
        .iter()
        .filter(|r| r["IsDeleted"] == false)
        .skip(rand::random::<u8>() as usize)
        .take(3)
        .map(|r| r["Id"].as_str().unwrap().to_string())
        .collect();
    sim.merge("Contact", &ids[0], &ids[1]).unwrap();
    tokio::time::sleep(Duration::from_millis(3)).await;
    sim.delete("Contact", &ids[2]).unwrap();
    tokio::time::sleep(Duration::from_millis(3)).await;
    sim.undelete("Contact", &ids[2]).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_cdc_across_a_killed_ingest_resumes_from_the_stored_replay_id() {
    let sim = Simulator::start(SimConfig {
        contacts: 800,
        positions: 80,
        ..SimConfig::for_tests()
    })
    .await
    .expect("simulator");
    let cfg = cdc_setup("sf_cdc_kill", &sim).await;
    let toml = child_config(&cfg, &sim);
    let spawn = || {
        ChildGuard(
            crmflow_cmd(&cfg)
                .args(["run", "--stages", "ingest"])
                .env("CRMFLOW_CONFIG", &toml)
                .stdout(std::process::Stdio::null())
                .stderr(crate::common::child_log(&cfg))
                .spawn()
                .expect("spawn crmflow"),
        )
    };
    let mut child = spawn();
    // Snapshot, then the stream.
    wait_complete(&cfg, &sim, 120).await;
    sim.random_changes(300);
    writes_of_every_kind(&sim).await;
    wait_complete(&cfg, &sim, 60).await;
    for _ in 0..100 {
        if stored_replay(&cfg, "Contact").await.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = stored_replay(&cfg, "Contact")
        .await
        .expect("a stored replay id");

    // SIGKILL mid-stream: writes keep coming while it is down and while it dies.
    sim.random_changes(100);
    child.kill().unwrap();
    child.wait().unwrap();
    sim.random_changes(300);
    writes_of_every_kind(&sim).await;
    let queried = sim.stats()["query_records"].as_u64().unwrap();
    let subscriptions = sim.stats()["subscriptions"].as_u64().unwrap();
    let _child = spawn();
    wait_complete(&cfg, &sim, 90).await;
    let after = stored_replay(&cfg, "Contact").await.unwrap();
    let events = raw_events_of(&cfg, "salesforce", "Contact").await;
    let cdc = events.iter().filter(|e| e.source_mode == "cdc").count();
    assert!(cdc >= 300, "changes arrived as CDC events ({cdc})");
    assert!(
        after > before,
        "the replay id moved on: {before} -> {after}"
    );
    let stats = sim.stats();
    assert!(stats["subscriptions"].as_u64().unwrap() > subscriptions);
    // Resumed from the replay id: no snapshot again (only re-reads of a few hundred changed records).
    let requeried = stats["query_records"].as_u64().unwrap() - queried;
    assert!(
        requeried < 800,
        "resumed without re-reading the object by poll ({requeried} records queried)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_cdc_gaps_overflow_expired_replay_sessions_and_limits_heal() {
    let sim = Simulator::start(SimConfig {
        contacts: 600,
        positions: 60,
        ..SimConfig::for_tests()
    })
    .await
    .expect("simulator");
    let cfg = cdc_setup("sf_cdc_gap", &sim).await;
    let start = |cfg: Config| {
        let stop = CancellationToken::new();
        let s = stop.clone();
        let task = tokio::spawn(async move { salesforce::run_with(&cfg, s, false).await });
        (stop, task)
    };
    let (stop, task) = start(cfg.clone());
    wait_complete(&cfg, &sim, 120).await;
    let contacts = || {
        sim.records("Contact")
            .unwrap()
            .into_iter()
            .filter(|r| r["IsDeleted"] == false)
            .map(|r| r["Id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };

    // GAP_* events carry no fields: the records are read again.
    sim.set_faults(&FaultsPatch {
        gap_next: Some(10),
        ..Default::default()
    });
    let ids = contacts();
    for (i, id) in ids.iter().take(8).enumerate() {
        sim.update(
            "Contact",
            id,
            serde_json::json!({"Title": format!("Gap {i}")}),
        )
        .unwrap();
    }
    sim.delete("Contact", &ids[8]).unwrap();
    sim.random_changes(30);
    wait_complete(&cfg, &sim, 60).await;
    let events = raw_events_of(&cfg, "salesforce", "Contact").await;
    assert!(
        events
            .iter()
            .any(|e| e.source_mode == "cdc" && e.record.contains("\"Gap 7\"")),
        "a GAP_UPDATE's record was read again"
    );

    // GAP_OVERFLOW: the change is not in the stream at all; the object is resynced by poll.
    let before = sim.stats()["query_records"].as_u64().unwrap();
    sim.set_faults(&FaultsPatch {
        overflow_next: Some(1),
        ..Default::default()
    });
    sim.update(
        "Contact",
        &ids[20],
        serde_json::json!({"Title": "Overflowed"}),
    )
    .unwrap();
    wait_complete(&cfg, &sim, 60).await;
    assert!(
        sim.stats()["query_records"].as_u64().unwrap() > before,
        "resync by poll"
    );

    // Expired session and REQUEST_LIMIT_EXCEEDED while streaming: waited out, nothing lost.
    sim.set_faults(&FaultsPatch {
        expire_sessions: true,
        limit_exceeded_next: Some(2),
        ..Default::default()
    });
    sim.random_changes(50);
    wait_complete(&cfg, &sim, 60).await;
    let stats = sim.stats();
    assert!(stats["limit_exceeded"].as_u64().unwrap() >= 2, "{stats}");
    assert!(stats["unauthorized"].as_u64().unwrap() >= 1, "{stats}");

    // Stopped, events purged past its replay id (and sessions expired): on restart the stored replay
    // id is refused; the object is resynced by poll from its poll cursor.
    stop.cancel();
    task.await.unwrap().expect("clean stop");
    sim.random_changes(100);
    sim.set_faults(&FaultsPatch {
        purge_events: true,
        expire_sessions: true,
        ..Default::default()
    });
    let before = sim.stats()["query_records"].as_u64().unwrap();
    let (stop, task) = start(cfg.clone());
    wait_complete(&cfg, &sim, 90).await;
    assert!(
        sim.stats()["query_records"].as_u64().unwrap() > before,
        "resync by poll"
    );
    // And it streams again after the resync.
    sim.update(
        "Contact",
        &ids[30],
        serde_json::json!({"Title": "After resync"}),
    )
    .unwrap();
    sim.random_changes(20);
    wait_complete(&cfg, &sim, 60).await;
    stop.cancel();
    task.await.unwrap().expect("clean stop");
}
