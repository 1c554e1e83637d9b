//! Deterministic data generator: the same seed and sizes always give the same records, byte for byte.
//!
//! It fills every simulated type in a fixed order from one `ChaCha8Rng` (CorporateUser, Category, Skill,
//! ClientCorporation, ClientContact, JobOrder, Candidate), so references always point at existing records.
//! Values aim at what a staffing CRM really holds: names in Latin, CJK, Cyrillic, Arabic, Devanagari, Hangul and
//! Greek scripts; partial addresses; HTML job descriptions; multi-kilobyte resumes; and a configurable share of
//! dirty records (no email, duplicate email, malformed phone, zero-width and right-to-left characters, emoji,
//! padded values, salary 0 or negative, a few ~100 KB texts). Timestamps are fixed in 2023-2025 (never
//! derived from the wall clock, which would break determinism) and a `tie_share` of records comes from bulk
//! imports that stamp thousands of records with the same `dateLastModified` millisecond — the case that breaks
//! naive `dateLastModified` cursors.
//!
//! The parts: [`names`] and [`words`] (the tables values are drawn from), [`values`] (phones,
//! addresses, résumés, job descriptions), [`timeline`] (timestamps with bulk-import ties),
//! [`records`] (one JobOrder or Candidate, also used by the change generator) and [`dirty`] (the
//! defects injected into a share of them). This file fills the database in order.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use super::config::SimConfig;
use super::store::{Db, EntityStore};

mod dirty;
mod names;
mod records;
mod timeline;
mod values;
mod words;

pub use records::{candidate, job_order};

use names::{ascii_fold, person};
use timeline::timeline;
use values::{address, phone, to_many};
use words::{pick, CATEGORIES, CORP_INTL, CORP_NOUN, CORP_PREFIX, CORP_SUFFIX, LEVELS, SKILLS};

/// 2023-01-01T00:00:00Z.
const EPOCH_START: i64 = 1_672_531_200_000;
/// 2025-12-31T00:00:00Z.
const EPOCH_END: i64 = 1_767_139_200_000;

const YEAR_MS: i64 = 365 * 24 * 3_600_000;

/// Ids the generated records may reference.
#[derive(Debug, Default, Clone)]
pub struct Refs {
    /// CorporateUser ids (owners).
    pub users: Vec<i64>,
    /// Skill ids with their category id.
    pub skills: Vec<(i64, i64)>,
    /// Category ids.
    pub categories: Vec<i64>,
    /// ClientCorporation ids with their ClientContact ids.
    pub corps: Vec<(i64, Vec<i64>)>,
}

impl Refs {
    /// Collects references from a populated database (used by the change generator).
    pub fn from_db(db: &Db) -> Self {
        let ids = |name: &str| -> Vec<i64> {
            db.store(name)
                .map(|s| s.records.keys().copied().collect())
                .unwrap_or_default()
        };
        let skills = db
            .store("Skill")
            .map(|s| {
                s.records
                    .values()
                    .map(|r| {
                        let cat = r
                            .get("categories")
                            .and_then(|c| c.pointer("/data/0/id"))
                            .and_then(Value::as_i64)
                            .unwrap_or(1);
                        (r.id, cat)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut corps: Vec<(i64, Vec<i64>)> = ids("ClientCorporation")
            .into_iter()
            .map(|c| (c, Vec::new()))
            .collect();
        if let Ok(contacts) = db.store("ClientContact") {
            for r in contacts.records.values() {
                let corp = r
                    .get("clientCorporation")
                    .and_then(|c| c.get("id"))
                    .and_then(Value::as_i64);
                if let Some(entry) = corps.iter_mut().find(|(c, _)| Some(*c) == corp) {
                    entry.1.push(r.id);
                }
            }
        }
        Self {
            users: ids("CorporateUser"),
            skills,
            categories: ids("Category"),
            corps,
        }
    }

    fn owner(&self, rng: &mut ChaCha8Rng) -> i64 {
        // Skewed: a few recruiters own most records, as in real agencies.
        let n = self.users.len().max(1);
        let x: f64 = rng.random();
        let i = ((x * x) * n as f64) as usize;
        self.users.get(i.min(n - 1)).copied().unwrap_or(1)
    }
}

/// Generates the whole database for `cfg`.
pub fn generate(cfg: &SimConfig) -> Db {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut db = Db::new(cfg.soft_delete_event);
    let mut refs = Refs::default();
    let store = |db: &mut Db, name: &str| -> usize {
        db.stores
            .iter()
            .position(|s| s.def.name == name)
            .unwrap_or(0)
    };

    // CorporateUser: the recruiters owning records.
    let users = store(&mut db, "CorporateUser");
    for id in 1..=25i64 {
        let p = person(&mut rng);
        let email = format!("user{id}@crmflow-staffing.example");
        put(
            &mut db.stores[users],
            json!({
                "id": id, "firstName": p.first, "lastName": p.last, "name": p.name, "email": email,
                "enabled": id != 25, "isDeleted": false, "isLockedOut": false, "occupation": "Recruiter",
                "username": format!("recruiter{id}"), "dateLastModified": EPOCH_START, "timeZoneOffsetEST": 0,
            }),
        );
        refs.users.push(id);
    }

    let cats = store(&mut db, "Category");
    for (i, name) in CATEGORIES.iter().enumerate() {
        let id = i as i64 + 1;
        put(
            &mut db.stores[cats],
            json!({
                "id": id, "name": name, "description": format!("{name} roles"), "enabled": true,
                "dateAdded": EPOCH_START, "dateLastModified": EPOCH_START, "type": "Candidate",
            }),
        );
        refs.categories.push(id);
    }
    let skills = store(&mut db, "Skill");
    for (i, (name, cat)) in SKILLS.iter().enumerate() {
        let id = i as i64 + 1;
        let cat = *cat as i64 + 1;
        put(
            &mut db.stores[skills],
            json!({
                "id": id, "name": name, "enabled": true, "categories": to_many(&[cat]), "dateLastModified": EPOCH_START,
            }),
        );
        refs.skills.push((id, cat));
    }

    // ClientCorporation and their contacts.
    let n_corps = (cfg.job_orders / 8).max(10);
    let corps = store(&mut db, "ClientCorporation");
    let contacts = store(&mut db, "ClientContact");
    let corp_times = timeline(&mut rng, n_corps, 0.0);
    let mut contact_id = 0i64;
    let mut corp_names = Vec::new();
    for (i, (added, modified)) in corp_times.into_iter().enumerate() {
        let id = i as i64 + 1;
        let name = if rng.random_bool(0.1) {
            pick(&mut rng, CORP_INTL).to_string()
        } else {
            format!(
                "{} {} {}",
                pick(&mut rng, CORP_PREFIX),
                pick(&mut rng, CORP_NOUN),
                pick(&mut rng, CORP_SUFFIX)
            )
        };
        let domain = format!(
            "{}.example.com",
            ascii_fold(&name).chars().take(20).collect::<String>()
        );
        let owner = refs.owner(&mut rng);
        put(
            &mut db.stores[corps],
            json!({
                "id": id, "name": name, "status": if rng.random_bool(0.7) { "Active Account" } else { "Prospect" },
                "phone": phone(&mut rng), "companyURL": format!("https://www.{domain}"), "address": address(&mut rng),
                "industryList": pick(&mut rng, CATEGORIES), "numEmployees": rng.random_range(5..50_000),
                "annualRevenue": rng.random_range(1..5000) as f64 * 100_000.0, "owners": to_many(&[owner]),
                "dateAdded": added, "dateLastModified": modified, "companyDescription": format!("<p>{name} is a client since {}.</p>", 2015 + i % 9),
            }),
        );
        let mut ids = Vec::new();
        for _ in 0..rng.random_range(2..=4) {
            contact_id += 1;
            let p = person(&mut rng);
            let local = if p.latin {
                ascii_fold(&p.first)
            } else {
                format!("contact{contact_id}")
            };
            put(
                &mut db.stores[contacts],
                json!({
                    "id": contact_id, "firstName": p.first, "lastName": p.last, "name": p.name,
                    "email": format!("{local}@{domain}"), "phone": phone(&mut rng), "clientCorporation": { "id": id },
                    "owner": { "id": owner }, "occupation": format!("{}Hiring Manager", pick(&mut rng, LEVELS)),
                    "status": "Active", "isDeleted": false, "dateAdded": added, "dateLastModified": modified,
                    "address": address(&mut rng), "type": "Hiring Manager",
                }),
            );
            ids.push(contact_id);
        }
        corp_names.push(name);
        refs.corps.push((id, ids));
    }

    // JobOrder.
    let jobs = store(&mut db, "JobOrder");
    let times = timeline(&mut rng, cfg.job_orders, cfg.tie_share);
    let huge_jobs = (cfg.job_orders / 2500).clamp(1, 10);
    for (i, (added, modified)) in times.into_iter().enumerate() {
        let id = i as i64 + 1;
        let fields = job_order(
            &mut rng,
            &refs,
            &corp_names,
            cfg.dirty_share,
            i < huge_jobs && cfg.dirty_share > 0.0,
        );
        let mut fields = fields;
        fields.insert("id".into(), id.into());
        fields.insert("dateAdded".into(), added.into());
        fields.insert("dateLastModified".into(), modified.into());
        fields.insert(
            "startDate".into(),
            (added + rng.random_range(7..90) * 86_400_000).into(),
        );
        if rng.random_bool(0.03) {
            fields.insert("isDeleted".into(), true.into());
        }
        db.stores[jobs].put(fields);
    }

    // Candidate.
    let cands = store(&mut db, "Candidate");
    let times = timeline(&mut rng, cfg.candidates, cfg.tie_share);
    let huge = (cfg.candidates / 2500).clamp(2, 20);
    let huge_at: Vec<usize> = (0..huge)
        .map(|_| rng.random_range(0..cfg.candidates.max(1)))
        .collect();
    let mut emails: Vec<String> = Vec::new();
    for (i, (added, modified)) in times.into_iter().enumerate() {
        let id = i as i64 + 1;
        let huge_resume = cfg.dirty_share > 0.0 && huge_at.contains(&i);
        let mut fields = candidate(
            &mut rng,
            &refs,
            id,
            cfg.dirty_share,
            huge_resume,
            &mut emails,
        );
        fields.insert("dateAdded".into(), added.into());
        fields.insert("dateLastModified".into(), modified.into());
        fields.insert(
            "dateAvailable".into(),
            (modified + rng.random_range(0..120) * 86_400_000).into(),
        );
        if rng.random_bool(0.03) {
            fields.insert("isDeleted".into(), true.into());
        }
        db.stores[cands].put(fields);
    }
    db.clock = db
        .stores
        .iter()
        .flat_map(|s| s.by_modified.keys().next_back().map(|(m, _)| *m))
        .max()
        .unwrap_or(0);
    db
}

fn put(store: &mut EntityStore, v: Value) {
    if let Value::Object(m) = v {
        store.put(m);
    }
}
