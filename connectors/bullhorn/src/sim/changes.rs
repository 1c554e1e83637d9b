//! The change generator behind `--changes-per-sec` and `POST /sim/changes`: random inserts (20%), updates
//! (70%) and soft deletes (10%) of Candidates (85%) and JobOrders (15%).
//!
//! It produces [`WriteOp`]s that go through the same write path as the REST API, so every generated change
//! moves `dateLastModified` and reaches the event subscriptions exactly like a user's edit would.

use std::time::Duration;

use rand::seq::IndexedRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};

use super::data::{self, Refs};
use super::store::Db;
use super::{Shared, WriteOp};

const CAND_STATUS: &[&str] = &["Active", "Placed", "Inactive", "Submitted", "Interviewing"];
const JOB_STATUS: &[(&str, bool)] = &[
    ("Open", true),
    ("Covered", true),
    ("Filled", false),
    ("Closed", false),
];

/// A random live (not soft-deleted) id of `entity`, found by probing from a random id upwards.
fn random_live_id(db: &Db, entity: &str, rng: &mut ChaCha8Rng) -> Option<i64> {
    let store = db.store(entity).ok()?;
    let max = store.next_id.max(2);
    for _ in 0..8 {
        let probe = rng.random_range(1..max);
        if let Some((id, r)) = store.records.range(probe..).next() {
            if !r.deleted {
                return Some(*id);
            }
        }
    }
    None
}

/// One random write, or `None` when nothing suitable exists.
pub fn random_op(db: &Db, rng: &mut ChaCha8Rng) -> Option<WriteOp> {
    let entity = if rng.random_bool(0.85) {
        "Candidate"
    } else {
        "JobOrder"
    };
    let roll = rng.random_range(0..100);
    if roll < 20 {
        let refs = Refs::from_db(db);
        let mut fields: Map<String, Value> = if entity == "Candidate" {
            let mut emails = Vec::new();
            data::candidate(rng, &refs, 0, 0.08, false, &mut emails)
        } else {
            let names: Vec<String> = db
                .store("ClientCorporation")
                .map(|s| {
                    s.records
                        .values()
                        .map(|r| {
                            r.get("name")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string()
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut m = data::job_order(rng, &refs, &names, 0.08, false);
            m.insert(
                "startDate".into(),
                (super::store::now_ms() + 14 * 86_400_000).into(),
            );
            m
        };
        // The store assigns id, dateAdded, dateLastModified and isDeleted itself.
        for k in ["id", "dateAdded", "dateLastModified", "isDeleted"] {
            fields.remove(k);
        }
        return Some(WriteOp::Insert {
            entity: entity.into(),
            fields,
        });
    }
    let id = random_live_id(db, entity, rng)?;
    if roll >= 90 {
        return Some(WriteOp::Delete {
            entity: entity.into(),
            id,
        });
    }
    let mut fields = Map::new();
    if entity == "Candidate" {
        match rng.random_range(0..5) {
            0 => {
                fields.insert(
                    "status".into(),
                    CAND_STATUS.choose(rng).copied().unwrap_or("Active").into(),
                );
            }
            1 => {
                fields.insert(
                    "phone".into(),
                    format!("+1 555 {:04}", rng.random_range(0..10_000)).into(),
                );
            }
            2 => {
                fields.insert(
                    "email".into(),
                    format!("updated{}.{id}@example.org", rng.random_range(0..1000)).into(),
                );
            }
            3 => {
                fields.insert(
                    "salary".into(),
                    ((rng.random_range(40..200) * 1000) as f64).into(),
                );
                fields.insert("status".into(), "Active".into());
            }
            _ => {
                fields.insert("occupation".into(), "Senior Consultant".into());
                fields.insert(
                    "address".into(),
                    json!({ "city": "Boston", "state": "MA", "countryID": 1 }),
                );
            }
        }
    } else {
        match rng.random_range(0..3) {
            0 => {
                let (s, open) = JOB_STATUS.choose(rng).copied().unwrap_or(("Open", true));
                fields.insert("status".into(), s.into());
                fields.insert("isOpen".into(), open.into());
            }
            1 => {
                fields.insert("numOpenings".into(), rng.random_range(1..6).into());
            }
            _ => {
                fields.insert(
                    "salary".into(),
                    ((rng.random_range(40..200) * 1000) as f64).into(),
                );
            }
        }
    }
    Some(WriteOp::Update {
        entity: entity.into(),
        id,
        fields,
    })
}

/// Background task applying `per_sec` random changes per second until aborted.
pub async fn run(shared: Shared, per_sec: f64) {
    let tick = Duration::from_millis(50);
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut owed = 0.0f64;
    loop {
        interval.tick().await;
        owed += per_sec * tick.as_secs_f64();
        let n = owed.floor() as usize;
        if n > 0 {
            owed -= n as f64;
            shared.random_changes(n);
        }
    }
}
