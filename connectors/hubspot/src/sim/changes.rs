//! The change generator behind `--changes-per-sec` and `POST /sim/changes?count=N`: random updates (60%),
//! creates (15%), archives (10%), restores (7%) and merges (8%) of contacts (70%), deals (15%) and jobs (15%).
//!
//! It produces [`WriteOp`]s that go through the same write path as the API, so every generated change moves
//! the modified time, reaches search after the index lag and produces webhook events exactly like a user's
//! edit would.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::seq::IndexedRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::data;
use super::schema::{DEAL_STAGES, JOB_STATUS, LEAD_STATUS, LIFECYCLE};
use super::store::Db;
use super::{Shared, WriteOp};

fn random_id(db: &Db, t: usize, rng: &mut ChaCha8Rng, archived: bool) -> Option<u64> {
    let s = &db.stores[t];
    let first = *s.records.keys().next()?;
    for _ in 0..16 {
        let probe = rng.random_range(first..s.next_id.max(first + 1));
        if let Some((id, r)) = s.records.range(probe..).next() {
            if r.archived == archived {
                return Some(*id);
            }
        }
    }
    None
}

fn updated_props(t: usize, rng: &mut ChaCha8Rng) -> BTreeMap<String, Option<String>> {
    let pick = |rng: &mut ChaCha8Rng, opts: &[&str]| opts.choose(rng).map(|s| (*s).to_string());
    let mut fresh = match t {
        0 => {
            let n = rng.random_range(1..1_000_000);
            data::contact(rng, n, 0.1)
        }
        1 => data::deal(rng, data::ANCHOR_MS),
        _ => data::job(rng, 0.1),
    };
    let mut out = BTreeMap::new();
    let n = rng.random_range(1..=3);
    let keys: Vec<String> = fresh.keys().cloned().collect();
    for k in keys.choose_multiple(rng, n) {
        if let Some(v) = fresh.remove(k) {
            out.insert(k.clone(), v);
        }
    }
    match t {
        0 => {
            out.insert("lifecyclestage".into(), pick(rng, LIFECYCLE));
            if rng.random_bool(0.3) {
                out.insert("hs_lead_status".into(), pick(rng, LEAD_STATUS));
            }
        }
        1 => {
            out.insert("dealstage".into(), pick(rng, DEAL_STAGES));
        }
        _ => {
            out.insert("job_status".into(), pick(rng, JOB_STATUS));
        }
    }
    out
}

/// One random write, or `None` when nothing suitable exists.
pub fn random_op(db: &Db, rng: &mut ChaCha8Rng) -> Option<WriteOp> {
    let t = match rng.random_range(0..100) {
        0..70 => 0,
        70..85 => 1,
        _ => 2,
    };
    let source = *["CRM_UI", "API", "IMPORT"].choose(rng)?;
    let roll = rng.random_range(0..100);
    Some(match roll {
        0..60 => WriteOp::Update {
            t,
            id: random_id(db, t, rng, false)?,
            props: updated_props(t, rng),
            source,
        },
        60..75 => WriteOp::Create {
            t,
            props: match t {
                0 => data::contact(rng, db.stores[0].next_id, 0.1),
                1 => data::deal(rng, data::ANCHOR_MS),
                _ => data::job(rng, 0.1),
            },
            source,
        },
        75..85 => WriteOp::Archive {
            t,
            id: random_id(db, t, rng, false)?,
            source,
        },
        85..92 => WriteOp::Restore {
            t,
            id: random_id(db, t, rng, true)?,
            source,
        },
        _ => {
            let a = random_id(db, t, rng, false)?;
            let b = random_id(db, t, rng, false)?;
            if a == b {
                return None;
            }
            WriteOp::Merge {
                t,
                primary: a,
                secondary: b,
                source: "CRM_UI",
            }
        }
    })
}

/// Applies changes at `per_sec` until aborted.
pub async fn run(s: Shared, per_sec: f64) {
    let period = Duration::from_secs_f64(1.0 / per_sec.max(0.001));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        s.random_changes(1);
    }
}
