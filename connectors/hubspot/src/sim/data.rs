//! Seeded data: the same seed gives the same account. Contacts (candidates), deals and jobs (positions), with
//! creation times spread over two years before a fixed anchor, a share of records written by bulk imports
//! (several records with the same modified millisecond, to exercise tie handling), a share of dirty records
//! (bad emails, blank names, odd phone formats, stray whitespace) and a few archived ones.

use std::collections::BTreeMap;

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::config::SimConfig;
use super::schema::{TypeDef, DEAL_STAGES, EMPLOYMENT, JOB_STATUS, LEAD_STATUS, LIFECYCLE};
use super::store::{iso, Db, ObjectStore, Record};

/// Latest generated modification time: 2026-06-01T00:00:00Z.
pub const ANCHOR_MS: i64 = 1_780_272_000_000;
/// Generated creation times span this far back from the anchor (two years).
pub const SPAN_MS: i64 = 2 * 365 * 24 * 3600 * 1000;
/// First id of each type (contacts, deals, jobs), so ids of different types never collide.
pub const FIRST_IDS: [u64; 3] = [1_001, 5_000_001, 9_000_001];

const FIRST: &[&str] = &[
    "Ada", "Alan", "Grace", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Frances", "John",
    "Radia", "Niklaus", "Sophie", "Tim", "Anita", "Edsger", "Hedy", "Guido", "Shafi", "Bjarne",
    "Zoë", "José", "Øyvind", "Siobhán", "Łukasz", "Chloé",
];
const LAST: &[&str] = &[
    "Lovelace",
    "Turing",
    "Hopper",
    "Torvalds",
    "Hamilton",
    "Thompson",
    "Liskov",
    "Ritchie",
    "Allen",
    "McCarthy",
    "Perlman",
    "Wirth",
    "Wilson",
    "Berners-Lee",
    "Borg",
    "Dijkstra",
    "Lamarr",
    "van Rossum",
    "Goldwasser",
    "Stroustrup",
    "O'Neil",
    "Núñez",
];
const SKILLS: &[&str] = &[
    "Rust",
    "Kafka",
    "PostgreSQL",
    "Go",
    "Python",
    "Kubernetes",
    "AWS",
    "Terraform",
    "React",
    "TypeScript",
    "Java",
    "Spark",
    "Airflow",
    "dbt",
    "gRPC",
    "Linux",
    "SQL",
    "Scala",
];
const TITLES: &[&str] = &[
    "Software Engineer",
    "Senior Backend Engineer",
    "Data Engineer",
    "Site Reliability Engineer",
    "Engineering Manager",
    "Platform Engineer",
    "Machine Learning Engineer",
    "Frontend Developer",
];
const COMPANIES: &[&str] = &[
    "Acme Corp",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Stark Industries",
    "Wayne Enterprises",
    "Soylent",
    "Tyrell",
    "Cyberdyne",
];
const CITIES: &[(&str, &str, &str)] = &[
    ("Boston", "MA", "United States"),
    ("Austin", "TX", "United States"),
    ("Seattle", "WA", "United States"),
    ("London", "", "United Kingdom"),
    ("Berlin", "", "Germany"),
    ("Toronto", "ON", "Canada"),
    ("Paris", "", "France"),
];
const DOMAINS: &[&str] = &["example.com", "mail.test", "corp.example", "gmail.test"];

fn skills(rng: &mut ChaCha8Rng) -> String {
    let n = rng.random_range(1..=5);
    let mut s: Vec<&str> = SKILLS.choose_multiple(rng, n).copied().collect();
    s.sort_unstable();
    s.join(";")
}

fn phone(rng: &mut ChaCha8Rng, dirty: bool) -> String {
    let (a, b, c) = (
        rng.random_range(200..999),
        rng.random_range(200..999),
        rng.random_range(1000..9999),
    );
    if !dirty {
        return format!("+1{a}{b}{c}");
    }
    match rng.random_range(0..6) {
        0 => format!("({a}) {b}-{c}"),
        1 => format!("{a}.{b}.{c}"),
        2 => format!("+1 {a} {b} {c} ext. 12"),
        3 => format!("0044 20 {b} {c}"),
        4 => format!(" {a}-{b}-{c} "),
        _ => "n/a".to_string(),
    }
}

/// Properties of a generated contact.
pub fn contact(rng: &mut ChaCha8Rng, n: u64, dirty_share: f64) -> BTreeMap<String, Option<String>> {
    let dirty = rng.random_bool(dirty_share);
    let first = (*FIRST.choose(rng).unwrap_or(&"Ada")).to_string();
    let last = (*LAST.choose(rng).unwrap_or(&"Lovelace")).to_string();
    let domain = DOMAINS.choose(rng).unwrap_or(&"example.com");
    let clean_email = format!(
        "{}.{}{n}@{domain}",
        first.to_lowercase(),
        last.to_lowercase().replace([' ', '\''], "")
    );
    let (city, state, country) = *CITIES.choose(rng).unwrap_or(&CITIES[0]);
    let mut p: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut set = |k: &str, v: Option<String>| {
        p.insert(k.to_string(), v);
    };
    let (email, first, last) = if dirty {
        match rng.random_range(0..6) {
            0 => (Some(clean_email.replace('@', "")), Some(first), Some(last)),
            1 => (
                Some(format!("  {}  ", clean_email.to_uppercase())),
                Some(first),
                Some(last),
            ),
            2 => (Some("n/a".to_string()), Some(first), Some(last)),
            3 => (
                Some(clean_email),
                Some(String::new()),
                Some("   ".to_string()),
            ),
            4 => (None, None, Some(last)),
            _ => (
                Some(format!("{first}@")),
                Some(first.to_uppercase()),
                Some(last),
            ),
        }
    } else {
        (Some(clean_email), Some(first), Some(last))
    };
    set("email", email);
    set("firstname", first);
    set("lastname", last);
    set("phone", Some(phone(rng, dirty)));
    if rng.random_bool(0.5) {
        set("mobilephone", Some(phone(rng, dirty)));
    }
    set("jobtitle", TITLES.choose(rng).map(|s| (*s).to_string()));
    set("company", COMPANIES.choose(rng).map(|s| (*s).to_string()));
    set("city", Some(city.to_string()));
    if !state.is_empty() {
        set("state", Some(state.to_string()));
    }
    set("country", Some(country.to_string()));
    set("zip", Some(format!("{:05}", rng.random_range(1000..99999))));
    set("skills", Some(skills(rng)));
    for (k, v) in custom_values(n) {
        set(k, Some(v));
    }
    let years = rng.random_range(0..25);
    set(
        "years_experience",
        Some(if dirty && rng.random_bool(0.3) {
            format!("{years} years")
        } else {
            years.to_string()
        }),
    );
    set(
        "summary",
        Some(format!(
            "{} with {years} years of experience.",
            TITLES.choose(rng).unwrap_or(&"Engineer")
        )),
    );
    set(
        "lifecyclestage",
        LIFECYCLE.choose(rng).map(|s| (*s).to_string()),
    );
    set(
        "hs_lead_status",
        LEAD_STATUS.choose(rng).map(|s| (*s).to_string()),
    );
    p
}

/// Properties of a generated deal.
pub fn deal(rng: &mut ChaCha8Rng, close_ms: i64) -> BTreeMap<String, Option<String>> {
    let title = TITLES.choose(rng).unwrap_or(&"Engineer");
    let company = COMPANIES.choose(rng).unwrap_or(&"Acme");
    let (city, _, country) = *CITIES.choose(rng).unwrap_or(&CITIES[0]);
    let mut p = BTreeMap::new();
    p.insert("dealname".into(), Some(format!("{title} - {company}")));
    p.insert(
        "amount".into(),
        Some(format!("{}", rng.random_range(5..60) * 1000)),
    );
    p.insert(
        "dealstage".into(),
        DEAL_STAGES.choose(rng).map(|s| (*s).to_string()),
    );
    p.insert("pipeline".into(), Some("default".into()));
    p.insert("closedate".into(), Some(iso(close_ms)));
    p.insert(
        "description".into(),
        Some(format!("Placement of a {title} at {company}.")),
    );
    p.insert("skills".into(), Some(skills(rng)));
    p.insert("location".into(), Some(format!("{city}, {country}")));
    p
}

/// Properties of a generated job.
pub fn job(rng: &mut ChaCha8Rng, dirty_share: f64) -> BTreeMap<String, Option<String>> {
    let dirty = rng.random_bool(dirty_share);
    let title = TITLES.choose(rng).unwrap_or(&"Engineer");
    let company = COMPANIES.choose(rng).unwrap_or(&"Acme");
    let (city, _, country) = *CITIES.choose(rng).unwrap_or(&CITIES[0]);
    let min = rng.random_range(60..150) * 1000;
    let mut p = BTreeMap::new();
    p.insert(
        "job_title".into(),
        Some(if dirty {
            format!("  {}  ", title.to_uppercase())
        } else {
            (*title).to_string()
        }),
    );
    p.insert(
        "job_description".into(),
        if dirty && rng.random_bool(0.5) {
            None
        } else {
            Some(format!(
                "{company} is hiring a {title} in {city}. You will build data pipelines and services."
            ))
        },
    );
    p.insert("skills".into(), Some(skills(rng)));
    p.insert("location".into(), Some(format!("{city}, {country}")));
    p.insert("company_name".into(), Some((*company).to_string()));
    p.insert(
        "job_status".into(),
        JOB_STATUS.choose(rng).map(|s| (*s).to_string()),
    );
    p.insert(
        "employment_type".into(),
        EMPLOYMENT.choose(rng).map(|s| (*s).to_string()),
    );
    p.insert("salary_min".into(), Some(min.to_string()));
    p.insert(
        "salary_max".into(),
        Some(if dirty {
            (min - 10_000).to_string()
        } else {
            (min + rng.random_range(10..60) * 1000).to_string()
        }),
    );
    p.insert("openings".into(), Some(rng.random_range(1..4).to_string()));
    p
}

/// Share of generated records that start archived.
const ARCHIVED_SHARE: f64 = 0.02;

/// Generates the whole account from `cfg.seed`.
pub fn generate(cfg: &SimConfig, types: Vec<TypeDef>) -> Db {
    let counts = [cfg.contacts, cfg.deals, cfg.jobs];
    let mut stores = Vec::new();
    for (t, &count) in counts.iter().enumerate() {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_mul(31).wrapping_add(t as u64));
        let mut store = ObjectStore {
            next_id: FIRST_IDS[t],
            ..Default::default()
        };
        let step = SPAN_MS / (count.max(1) as i64);
        let mut prev_updated: Option<i64> = None;
        for i in 0..count {
            let id = store.next_id;
            store.next_id += 1;
            let created = ANCHOR_MS - SPAN_MS + step * i as i64 + rng.random_range(0..step.max(1));
            let updated = match prev_updated {
                Some(p) if rng.random_bool(cfg.tie_share) => p.max(created),
                _ => rng.random_range(created..=ANCHOR_MS),
            };
            prev_updated = Some(updated);
            let props = match t {
                0 => contact(&mut rng, id, cfg.dirty_share),
                1 => {
                    let close = updated + rng.random_range(0..90) * 86_400_000;
                    deal(&mut rng, close)
                }
                _ => job(&mut rng, cfg.dirty_share),
            };
            let archived = rng.random_bool(ARCHIVED_SHARE);
            let rec = Record {
                id,
                props: props
                    .into_iter()
                    .filter_map(|(k, v)| v.map(|v| (k, v)))
                    .collect(),
                created_ms: created,
                updated_ms: updated,
                archived,
                archived_ms: archived.then_some(updated),
            };
            let rec = std::sync::Arc::new(rec);
            if !archived {
                store.index.insert(id, rec.clone());
            }
            store.records.insert(id, rec);
        }
        stores.push(store);
    }
    Db::new(
        types,
        stores,
        std::time::Duration::from_millis(cfg.index_lag_ms),
    )
}

/// The custom properties of contact `n`, from their own generator (so adding them changed no other
/// generated value), dirty ones included: an option in the wrong case, a blank, a rate with a
/// currency sign, a date-time where a date belongs.
fn custom_values(n: u64) -> Vec<(&'static str, String)> {
    use super::schema::{SECTORS, VISA};
    let mut rng = ChaCha8Rng::seed_from_u64(0xC057_0111 ^ n);
    let mut out = Vec::new();
    if rng.random_bool(0.9) {
        let v = VISA[rng.random_range(0..VISA.len())];
        let v = match rng.random_range(0..12) {
            0 => v.to_uppercase(),
            1 => String::new(),
            _ => v.to_string(),
        };
        out.push(("visa_status", v));
    }
    if rng.random_bool(0.8) {
        let k = rng.random_range(1..4);
        let picked: Vec<&str> = (0..k)
            .map(|_| SECTORS[rng.random_range(0..SECTORS.len())])
            .collect();
        out.push(("target_sectors", picked.join(";")));
    }
    if rng.random_bool(0.9) {
        out.push((
            "notice_period_days",
            [0, 14, 30, 60, 90][rng.random_range(0..5)].to_string(),
        ));
    }
    if rng.random_bool(0.7) {
        let rate = rng.random_range(300..1200);
        out.push((
            "day_rate",
            if rng.random_bool(0.05) {
                format!("${rate}")
            } else {
                format!("{rate}.00")
            },
        ));
    }
    if rng.random_bool(0.6) {
        let day = 1 + rng.random_range(0..28);
        out.push((
            "available_from",
            if rng.random_bool(0.1) {
                format!("2026-02-{day:02}T00:00:00.000Z")
            } else {
                format!("2026-02-{day:02}")
            },
        ));
    }
    out.push((
        "will_relocate",
        if rng.random_bool(0.3) {
            "true"
        } else {
            "false"
        }
        .to_string(),
    ));
    out.push((
        "passport_number",
        format!("P{:07}", rng.random_range(0..10_000_000)),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::schema::types;

    fn cfg() -> SimConfig {
        SimConfig {
            contacts: 300,
            deals: 50,
            jobs: 50,
            ..SimConfig::for_tests()
        }
    }

    #[test]
    fn same_seed_same_data_with_ties_dirt_and_archives() {
        let a = generate(&cfg(), types("2-1", 1));
        let b = generate(&cfg(), types("2-1", 1));
        assert_eq!(a.stores[0].records, b.stores[0].records);
        let c = &a.stores[0].records;
        assert_eq!(c.len(), 300);
        let mut times: Vec<i64> = c.values().map(|r| r.updated_ms).collect();
        times.sort_unstable();
        let ties = times.windows(2).filter(|w| w[0] == w[1]).count();
        assert!(ties > 20, "ties on the modified time: {ties}");
        let bad_emails = c
            .values()
            .filter(|r| {
                r.props
                    .get("email")
                    .is_none_or(|e| !e.contains('@') || e.trim() != e || e.ends_with('@'))
            })
            .count();
        assert!(bad_emails > 0, "dirty emails");
        assert!(c.values().any(|r| r.archived));
        assert!(c
            .values()
            .all(|r| r.updated_ms >= r.created_ms && r.updated_ms <= ANCHOR_MS));
        assert_eq!(a.stores[2].records.keys().next(), Some(&FIRST_IDS[2]));
    }
}
