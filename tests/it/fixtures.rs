//! Synthetic raw events for stage tests: Bullhorn-shaped Candidate and JobOrder JSON wrapped in
//! ChangeEvents, produced to the raw topics, plus the state Postgres must end in.

use std::collections::HashMap;

use rdkafka::message::OwnedHeaders;

use crmflow::codec;
use crmflow::config::Config;
use crmflow::kafka::{self, trace, Producer, Topics};
use crmflow::model::{ChangeEvent, Op};

pub const T0: i64 = 1_760_000_000_000;

/// What a test expects for one record id after every event was applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Expected {
    pub version: i64,
    pub deleted: bool,
    /// Rejected by validation in every version: no row, only dead letters.
    pub rejected: bool,
    pub email: Option<String>,
}

pub fn candidate_json(id: u64, version: i64, bad: bool) -> String {
    let email = if bad {
        "not-an-email".to_owned()
    } else {
        format!("Cand.{id}@Example.COM")
    };
    serde_json::json!({
        "id": id,
        "firstName": format!("  First\u{200B}{id} "),
        "lastName": "Müller",
        "email": email,
        "phone": "(415) 555-0100",
        "status": "Active",
        "occupation": "Rust engineer",
        "skillSet": "Rust, Kafka; PostgreSQL",
        "primarySkills": {"total": 1, "data": [{"id": 1, "name": "Rust"}]},
        "address": {"address1": "1 Main St", "city": "Omaha", "state": "NE", "zip": "68124", "countryID": 1, "countryCode": "US"},
        "description": "<p>Builds <b>streaming</b> systems &amp; more</p>",
        "dateAdded": T0,
        "dateLastModified": version,
        "isDeleted": false,
    })
    .to_string()
}

pub fn job_json(id: u64, version: i64, salary: f64) -> String {
    serde_json::json!({
        "id": id,
        "title": format!("Data engineer {id}"),
        "description": "<ul><li>Kafka</li><li>Postgres</li></ul>",
        "status": "Accepting Candidates",
        "isOpen": true,
        "employmentType": "Permanent",
        "salary": salary,
        "salaryUnit": "per year",
        "numOpenings": 2,
        "startDate": T0 + 86_400_000,
        "clientCorporation": {"id": 7, "name": "Acme"},
        "skills": {"total": 2, "data": [{"id": 1, "name": "Kafka"}, {"id": 2, "name": "SQL"}]},
        "dateAdded": T0,
        "dateLastModified": version,
        "isDeleted": false,
    })
    .to_string()
}

/// Produces `events` to their raw topics (key = record id), waiting for every ack.
pub async fn produce_raw(cfg: &Config, events: &[ChangeEvent]) {
    let topics = Topics::new(&cfg.kafka);
    let producer = Producer::new(&cfg.kafka).unwrap();
    let mut acks = Vec::new();
    for ev in events {
        let bytes = codec::change_event().encode(ev).unwrap();
        let h = trace::inject(OwnedHeaders::new(), &trace::TraceParent::current_or_new());
        acks.push(
            producer
                .send(
                    &topics.raw(&ev.crm, &ev.entity),
                    ev.record_id.as_bytes(),
                    &bytes,
                    h,
                )
                .await
                .unwrap(),
        );
    }
    for a in acks {
        a.await.unwrap();
    }
}

/// Produces raw bytes that are not a ChangeEvent.
pub async fn produce_garbage(cfg: &Config, entity: &str, payload: &[u8]) {
    let topics = Topics::new(&cfg.kafka);
    let producer = Producer::new(&cfg.kafka).unwrap();
    producer
        .send_and_wait(
            &topics.raw("bullhorn", entity),
            b"garbage",
            payload,
            OwnedHeaders::new(),
        )
        .await
        .unwrap();
}

/// `n` candidates, each with an insert and an update (the update arrives first for every
/// seventh id, to prove the version guard), every 25th deleted afterwards, every 31st with a
/// malformed email in every version. Returns the events in production order and the expected
/// final state by id.
pub fn candidate_history(n: u64) -> (Vec<ChangeEvent>, HashMap<String, Expected>) {
    let mut events = Vec::new();
    let mut expected = HashMap::new();
    for id in 1..=n {
        let bad = id % 31 == 0;
        let v1 = T0 + id as i64;
        let v2 = v1 + 1_000_000;
        let mk = |v: i64, op: Op| {
            ChangeEvent::new(
                "bullhorn",
                "Candidate",
                &id.to_string(),
                op,
                v,
                v + 5,
                vec![],
                "poll",
                candidate_json(id, v, bad),
            )
        };
        let (a, b) = (mk(v1, Op::Upsert), mk(v2, Op::Upsert));
        if id % 7 == 0 {
            events.push(b);
            events.push(a);
        } else {
            events.push(a);
            events.push(b);
        }
        let mut exp = Expected {
            version: v2,
            deleted: false,
            rejected: bad,
            email: (!bad).then(|| format!("cand.{id}@example.com")),
        };
        if id % 25 == 0 {
            let v3 = v2 + 1_000_000;
            events.push(mk(v3, Op::Delete));
            exp.version = v3;
            exp.deleted = true;
            // A delete is never rejected, so even a bad record ends as a tombstone row.
            exp.rejected = false;
        }
        expected.insert(id.to_string(), exp);
    }
    (events, expected)
}

/// `n` job orders; every 13th has a negative salary (rejected).
pub fn job_history(n: u64) -> (Vec<ChangeEvent>, HashMap<String, Expected>) {
    let mut events = Vec::new();
    let mut expected = HashMap::new();
    for id in 1..=n {
        let v = T0 + 10 * id as i64;
        let bad = id % 13 == 0;
        events.push(ChangeEvent::new(
            "bullhorn",
            "JobOrder",
            &id.to_string(),
            Op::Upsert,
            v,
            v + 5,
            vec![],
            "poll",
            job_json(id, v, if bad { -1.0 } else { 90_000.0 }),
        ));
        expected.insert(
            id.to_string(),
            Expected {
                version: v,
                deleted: false,
                rejected: bad,
                email: None,
            },
        );
    }
    (events, expected)
}

/// Creates the deployment's topics and schema.
pub async fn prepare(cfg: &Config) {
    crmflow::store::migrate(cfg).await.unwrap();
    kafka::ensure_topics(&cfg.kafka, &crmflow::pipeline::topic_specs(cfg))
        .await
        .unwrap();
}

/// `crm_id -> (source_version, deleted)` of a table.
pub async fn table_state(cfg: &Config, table: &str) -> HashMap<String, (i64, bool)> {
    let client = crmflow::store::connect(cfg).await.unwrap();
    client
        .query(
            &format!("SELECT crm_id, source_version, deleted_at IS NOT NULL FROM {table}"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect()
}

/// Every dead letter present now: (stage, rule, source key).
pub fn dead_letters(cfg: &Config) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    crmflow::dlq::scan(cfg, &Default::default(), |e| {
        out.push((
            e.header(crmflow::dlq::H_STAGE).unwrap_or("").to_owned(),
            e.header(crmflow::dlq::H_RULE).unwrap_or("").to_owned(),
            String::from_utf8_lossy(e.key.as_deref().unwrap_or_default()).into_owned(),
        ));
        true
    })
    .unwrap();
    out
}
