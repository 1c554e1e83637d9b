//! Simulator -> ingest -> normalize -> sink, end to end against real Kafka and Postgres:
//! Postgres must equal the simulator's records as the API serves them, put through the same
//! operators — field by field — with deleted records tombstoned and every rejected record in
//! the DLQ under the rule that rejected it (rows + rejects = records).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crmflow::config::{CANDIDATE_FIELDS, JOB_ORDER_FIELDS};
use crmflow::model::{ChangeEvent, Lineage, Op};
use crmflow::operators::{self, Canonical};
use crmflow::runtime::StageName;
use crmflow_bullhorn::sim::{SimConfig, SimHandle, Simulator};

use crate::common::isolated_config;
use crate::fixtures::dead_letters;

/// Every record of `entity` as the REST API serves it with the ingest's fields list.
fn served(sim: &SimHandle, entity: &str, fields: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut start = 0;
    loop {
        let body = sim
            .search(entity, "id:[0 TO *]", Some(fields), Some("id"), start, 500)
            .expect("search");
        let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let data = page["data"].as_array().unwrap().clone();
        let n = data.len();
        out.extend(data);
        start += n;
        if n == 0 || start as u64 >= page["total"].as_u64().unwrap() {
            return out;
        }
    }
}

/// What the operators make of one served record (deleted ones become tombstones).
fn expected(entity: &str, rec: &serde_json::Value) -> Result<Canonical, String> {
    let id = rec["id"].as_i64().unwrap().to_string();
    let version = rec["dateLastModified"].as_i64().unwrap();
    let deleted = rec["isDeleted"].as_bool().unwrap_or(false);
    let op = if deleted { Op::Delete } else { Op::Upsert };
    let ev = ChangeEvent::new(
        "bullhorn",
        entity,
        &id,
        op,
        version,
        // The start-date bound is relative to when the record was observed: now, as in the run.
        chrono::Utc::now().timestamp_millis(),
        vec![],
        "poll",
        rec.to_string(),
    );
    let lineage = Lineage {
        crm: "bullhorn".into(),
        crm_id: id,
        source_version: version,
        event_id: ev.event_id.clone(),
        raw_topic: String::new(),
        raw_partition: 0,
        raw_offset: 0,
        trace_id: None,
    };
    operators::normalize(&ev, lineage, &Default::default()).map_err(|r| r.rule.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_to_postgres_equals_ground_truth_field_by_field() {
    let sim = Simulator::start(SimConfig {
        candidates: 600,
        job_orders: 80,
        ..SimConfig::for_tests()
    })
    .await
    .expect("simulator");
    // Some history: updates and soft deletes after the seed.
    sim.random_changes(150);

    let mut cfg = isolated_config("e2e");
    let c = sim.credentials();
    cfg.bullhorn.rest_url = sim.rest_services_url();
    cfg.bullhorn.client_id = Some(c.client_id);
    cfg.bullhorn.client_secret = Some(c.client_secret.into());
    cfg.bullhorn.username = Some(c.username);
    cfg.bullhorn.password = Some(c.password.into());
    cfg.bullhorn.poll_interval_secs = 1;

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

    let client = crmflow::store::connect(&cfg).await.unwrap();
    let rejected: HashSet<(String, String)> = dead_letters(&cfg)
        .into_iter()
        .map(|(_, rule, key)| (key, rule))
        .collect();

    // Candidates.
    let rows: HashMap<String, tokio_postgres::Row> = client
        .query("SELECT * FROM candidates", &[])
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.get::<_, String>("crm_id"), r))
        .collect();
    let records = served(&sim, "Candidate", CANDIDATE_FIELDS);
    assert_eq!(records.len(), sim.count("Candidate").unwrap());
    let (mut ok, mut dlq) = (0, 0);
    for rec in &records {
        let id = rec["id"].as_i64().unwrap().to_string();
        match expected("Candidate", rec) {
            Err(rule) => {
                assert!(
                    rejected.contains(&(id.clone(), rule.clone())),
                    "candidate {id} rejected by {rule} but not in the DLQ"
                );
                assert!(!rows.contains_key(&id), "rejected candidate {id} has a row");
                dlq += 1;
            }
            Ok(Canonical::Candidate(c)) => {
                let row = rows
                    .get(&id)
                    .unwrap_or_else(|| panic!("candidate {id} missing"));
                assert_eq!(
                    row.get::<_, i64>("source_version"),
                    c.source_version,
                    "{id} version"
                );
                assert_eq!(
                    row.get::<_, Option<chrono::DateTime<chrono::Utc>>>("deleted_at")
                        .is_some(),
                    c.deleted,
                    "{id} deleted"
                );
                if !c.deleted {
                    assert_eq!(
                        row.get::<_, Option<String>>("first_name"),
                        c.first_name,
                        "{id}"
                    );
                    assert_eq!(
                        row.get::<_, Option<String>>("last_name"),
                        c.last_name,
                        "{id}"
                    );
                    assert_eq!(row.get::<_, Option<String>>("email"), c.email, "{id}");
                    assert_eq!(row.get::<_, Option<String>>("phone"), c.phone, "{id}");
                    assert_eq!(row.get::<_, Option<String>>("status"), c.status, "{id}");
                    assert_eq!(
                        row.get::<_, Option<String>>("occupation"),
                        c.occupation,
                        "{id}"
                    );
                    assert_eq!(row.get::<_, Vec<String>>("skills"), c.skills, "{id}");
                    assert_eq!(row.get::<_, Option<String>>("summary"), c.summary, "{id}");
                    assert_eq!(row.get::<_, Option<String>>("owner_id"), c.owner_id, "{id}");
                    assert_eq!(
                        row.get::<_, Option<String>>("city"),
                        c.address.as_ref().and_then(|a| a.city.clone()),
                        "{id}"
                    );
                }
                ok += 1;
            }
            Ok(other) => panic!("candidate normalized to {other:?}"),
        }
    }
    assert_eq!(ok + dlq, records.len(), "rows + rejects = records");
    assert_eq!(rows.len(), ok, "no row without a record");

    // Positions.
    let rows: HashMap<String, tokio_postgres::Row> = client
        .query("SELECT * FROM positions", &[])
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.get::<_, String>("crm_id"), r))
        .collect();
    let records = served(&sim, "JobOrder", JOB_ORDER_FIELDS);
    let mut ok = 0;
    for rec in &records {
        let id = rec["id"].as_i64().unwrap().to_string();
        match expected("JobOrder", rec) {
            Err(rule) => assert!(
                rejected.contains(&(id.clone(), rule.clone())),
                "job {id}: {rule}"
            ),
            Ok(Canonical::Position(p)) => {
                let row = rows
                    .get(&id)
                    .unwrap_or_else(|| panic!("position {id} missing"));
                assert_eq!(
                    row.get::<_, i64>("source_version"),
                    p.source_version,
                    "{id}"
                );
                if !p.deleted {
                    assert_eq!(row.get::<_, Option<String>>("title"), p.title, "{id}");
                    assert_eq!(row.get::<_, Option<f64>>("salary"), p.salary, "{id}");
                    assert_eq!(row.get::<_, Option<bool>>("is_open"), p.is_open, "{id}");
                    assert_eq!(
                        row.get::<_, Option<String>>("employment_type"),
                        p.employment_type,
                        "{id}"
                    );
                    assert_eq!(
                        row.get::<_, Option<String>>("description"),
                        p.description,
                        "{id}"
                    );
                    assert_eq!(row.get::<_, Vec<String>>("skills"), p.skills, "{id}");
                    assert_eq!(
                        row.get::<_, Option<String>>("client_corporation_name"),
                        p.client_corporation_name,
                        "{id}"
                    );
                }
                ok += 1;
            }
            Ok(other) => panic!("job order normalized to {other:?}"),
        }
    }
    assert_eq!(rows.len(), ok, "positions: one row per accepted record");
    assert!(ok > 0);
}
