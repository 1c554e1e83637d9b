//! Seeded data: contacts and positions with a history of `SystemModstamp`s (bulk loads sharing one
//! millisecond), dirty values, records already in the recycle bin, and the random writes of the background
//! change generator (`/sim/changes`, `--changes-per-sec`).

use rand::seq::IndexedRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};

use super::config::SimConfig;
use super::schema::ObjectDef;
use super::store::Db;

const FIRST: &[&str] = &[
    "Ada",
    "Grace",
    "Alan",
    "Linus",
    "Margaret",
    "Dennis",
    "Barbara",
    "Ken",
    "Frances",
    "Edsger",
    "Radia",
    "Tim",
    "Hedy",
    "John",
    "Katherine",
    "Guido",
    "Anita",
    "Bjarne",
    "Joan",
    "Niklaus",
    "Zoë",
    "José",
    "Siobhán",
    "Øystein",
    "Mónica",
];
const LAST: &[&str] = &[
    "Lovelace",
    "Hopper",
    "Turing",
    "Torvalds",
    "Hamilton",
    "Ritchie",
    "Liskov",
    "Thompson",
    "Allen",
    "Dijkstra",
    "Perlman",
    "Berners-Lee",
    "Lamarr",
    "McCarthy",
    "Johnson",
    "van Rossum",
    "Borg",
    "Stroustrup",
    "Clarke",
    "Wirth",
    "O'Brien",
    "Müller",
    "Nakamura",
    "García",
];
const TITLES: &[&str] = &[
    "Software Engineer",
    "Data Engineer",
    "Site Reliability Engineer",
    "Product Manager",
    "Data Scientist",
    "Backend Developer",
    "Frontend Developer",
    "Engineering Manager",
    "QA Engineer",
    "DevOps Engineer",
];
const SKILLS: &[&str] = &[
    "Rust",
    "Kafka",
    "PostgreSQL",
    "Python",
    "Kubernetes",
    "Go",
    "TypeScript",
    "React",
    "AWS",
    "Terraform",
    "Java",
    "Spark",
    "SQL",
    "gRPC",
    "Linux",
];
const CITIES: &[(&str, &str, &str)] = &[
    ("Boston", "MA", "US"),
    ("Austin", "TX", "US"),
    ("Seattle", "WA", "US"),
    ("Denver", "CO", "US"),
    ("Toronto", "ON", "CA"),
    ("London", "", "GB"),
    ("Berlin", "", "DE"),
];
const CONTACT_STATUS: &[&str] = &["Active", "Placed", "Passive", "Do Not Contact"];
const POSITION_STATUS: &[&str] = &["Open", "On Hold", "Filled", "Closed"];
const LEAD_SOURCES: &[&str] = &["Web", "Referral", "LinkedIn", "Job Board", "Event"];

fn skills(rng: &mut ChaCha8Rng) -> String {
    let n = rng.random_range(1..=5);
    let mut s: Vec<&str> = SKILLS.choose_multiple(rng, n).copied().collect();
    s.sort_unstable();
    s.join(", ")
}

/// Fields of a new contact (`dirty`: with one of the usual data-quality problems).
pub fn contact_fields(rng: &mut ChaCha8Rng, dirty: bool) -> Map<String, Value> {
    let first = *FIRST.choose(rng).unwrap_or(&"Ada");
    let last = *LAST.choose(rng).unwrap_or(&"Lovelace");
    let (city, state, country) = *CITIES.choose(rng).unwrap_or(&CITIES[0]);
    let n: u32 = rng.random_range(1..10_000);
    let email = format!(
        "{}.{}{n}@example.com",
        first.to_lowercase(),
        last.to_lowercase().replace([' ', '\''], "")
    );
    let mut m = json!({
        "FirstName": first,
        "LastName": last,
        "Email": email,
        "Phone": format!("+1 617 555 {:04}", rng.random_range(0..10_000)),
        "MobilePhone": null,
        "Title": *TITLES.choose(rng).unwrap_or(&"Engineer"),
        "Department": "Engineering",
        "MailingCity": city,
        "MailingState": if state.is_empty() { Value::Null } else { Value::String(state.into()) },
        "MailingPostalCode": format!("{:05}", rng.random_range(1000..99_999)),
        "MailingCountry": country,
        "Description": format!("{first} has {} years of experience.", rng.random_range(1..25)),
        "LeadSource": *LEAD_SOURCES.choose(rng).unwrap_or(&"Web"),
        "Skills__c": skills(rng),
        "Candidate_Status__c": *CONTACT_STATUS.choose(rng).unwrap_or(&"Active"),
    });
    if dirty {
        match rng.random_range(0..6) {
            0 => m["Email"] = Value::Null,
            1 => m["Email"] = json!(format!("{} at example dot com", first.to_lowercase())),
            2 => m["Phone"] = json!("call me maybe"),
            3 => m["Description"] = json!("<p>Great&nbsp;candidate</p><script>x()</script>"),
            4 => m["FirstName"] = json!(format!("  {first}  ")),
            _ => m["Skills__c"] = Value::Null,
        }
    }
    m.as_object().cloned().unwrap_or_default()
}

/// Fields of a new position.
pub fn position_fields(rng: &mut ChaCha8Rng, dirty: bool) -> Map<String, Value> {
    let (city, state, country) = *CITIES.choose(rng).unwrap_or(&CITIES[0]);
    let min = rng.random_range(60..150) as f64 * 1000.0;
    let day0 = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap_or_default();
    let open = day0 + chrono::Days::new(rng.random_range(0..700));
    let mut m = json!({
        "Name": format!("{} ({})", TITLES.choose(rng).unwrap_or(&"Engineer"), city),
        "Description__c": format!("Join our team in {city}. You will build data pipelines."),
        "Skills__c": skills(rng),
        "Status__c": *POSITION_STATUS.choose(rng).unwrap_or(&"Open"),
        "City__c": city,
        "State__c": if state.is_empty() { Value::Null } else { Value::String(state.into()) },
        "Country__c": country,
        "Salary_Min__c": min,
        "Salary_Max__c": min + 30_000.0,
        "Open_Date__c": open.format("%Y-%m-%d").to_string(),
        "Remote__c": rng.random_bool(0.3),
    });
    if dirty {
        match rng.random_range(0..3) {
            0 => m["Salary_Max__c"] = json!(min - 10_000.0),
            1 => m["Description__c"] = json!("<b>URGENT</b>&amp; hiring"),
            _ => m["Skills__c"] = Value::Null,
        }
    }
    m.as_object().cloned().unwrap_or_default()
}

/// The generated org.
pub fn generate(
    cfg: &SimConfig,
    rng: &mut ChaCha8Rng,
    org_pod: &str,
    owner_id: String,
    now_ms: i64,
) -> Db {
    let mut db = Db::new(
        vec![
            ObjectDef::contact(&cfg.contact_object),
            ObjectDef::position(&cfg.position_object),
        ],
        org_pod,
        owner_id,
    );
    let span_ms = i64::from(cfg.history_days.max(1)) * 86_400_000;
    for (object, count) in [(0usize, cfg.contacts), (1, cfg.positions)] {
        // Timestamps ascending so ids and SystemModstamp grow together, as with real inserts.
        let mut times: Vec<i64> = (0..count)
            .map(|_| now_ms - span_ms + rng.random_range(0..span_ms - 60_000))
            .collect();
        times.sort_unstable();
        let mut i = 0;
        while i < times.len() {
            if rng.random_bool(cfg.tie_share) {
                // A bulk load: up to 40 records in the same millisecond.
                let n = rng.random_range(2..40).min(times.len() - i);
                let t = times[i];
                for x in &mut times[i..i + n] {
                    *x = t;
                }
                i += n;
            } else {
                i += 1;
            }
        }
        for t in times {
            let dirty = rng.random_bool(cfg.dirty_share);
            let fields = if object == 0 {
                contact_fields(rng, dirty)
            } else {
                position_fields(rng, dirty)
            };
            if let Ok(c) = db.insert(object, &fields, t) {
                if rng.random_bool(cfg.deleted_share) {
                    let at = t + rng.random_range(0..(now_ms - t).max(1));
                    let _ = db.delete(object, &c.id, at);
                }
            }
        }
    }
    db
}

/// One random write, chosen with realistic weights: mostly updates, some inserts, few deletes, undeletes and
/// merges.
pub enum RandomOp {
    /// New record.
    Insert(usize, Map<String, Value>),
    /// Field changes.
    Update(usize, String, Map<String, Value>),
    /// To the recycle bin.
    Delete(usize, String),
    /// From the recycle bin.
    Undelete(usize, String),
    /// Contact merge (winner, loser).
    Merge(usize, String, String),
}

/// Picks a random write against the current data.
pub fn random_op(db: &Db, rng: &mut ChaCha8Rng) -> Option<RandomOp> {
    let object = if rng.random_bool(0.8) { 0 } else { 1 };
    let store = &db.objects[object];
    let roll = rng.random_range(0..100);
    let pick = |rng: &mut ChaCha8Rng, deleted: bool| -> Option<String> {
        let n = store.records.len();
        if n == 0 {
            return None;
        }
        for _ in 0..20 {
            let k = rng.random_range(0..n);
            if let Some(r) = store.records.values().nth(k) {
                if r.is_deleted == deleted {
                    return Some(r.id.clone());
                }
            }
        }
        None
    };
    Some(match roll {
        0..=14 => {
            let dirty = rng.random_bool(0.08);
            RandomOp::Insert(
                object,
                if object == 0 {
                    contact_fields(rng, dirty)
                } else {
                    position_fields(rng, dirty)
                },
            )
        }
        15..=84 => {
            let id = pick(rng, false)?;
            let mut f = Map::new();
            if object == 0 {
                match rng.random_range(0..4) {
                    0 => f.insert("Title".into(), json!(*TITLES.choose(rng)?)),
                    1 => f.insert("Skills__c".into(), json!(skills(rng))),
                    2 => f.insert(
                        "Candidate_Status__c".into(),
                        json!(*CONTACT_STATUS.choose(rng)?),
                    ),
                    _ => f.insert(
                        "MobilePhone".into(),
                        if rng.random_bool(0.5) {
                            Value::Null
                        } else {
                            json!("+1 857 555 0101")
                        },
                    ),
                };
            } else {
                match rng.random_range(0..3) {
                    0 => f.insert("Status__c".into(), json!(*POSITION_STATUS.choose(rng)?)),
                    1 => f.insert("Skills__c".into(), json!(skills(rng))),
                    _ => f.insert(
                        "Salary_Max__c".into(),
                        json!(rng.random_range(100..250) as f64 * 1000.0),
                    ),
                };
            }
            RandomOp::Update(object, id, f)
        }
        85..=92 => RandomOp::Delete(object, pick(rng, false)?),
        93..=96 => RandomOp::Undelete(object, pick(rng, true)?),
        _ if object == 0 => {
            let w = pick(rng, false)?;
            let l = pick(rng, false)?;
            if w == l {
                return None;
            }
            RandomOp::Merge(object, w, l)
        }
        _ => RandomOp::Delete(object, pick(rng, false)?),
    })
}
