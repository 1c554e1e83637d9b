//! One generated record: the fields of a JobOrder or a Candidate (without the id and dates the
//! caller sets), drawn in a fixed order from the caller's generator so the same seed gives the same
//! record. [`super::generate`] and the simulator's change generator both make records here.

use rand::seq::IndexedRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};

use super::dirty;
use super::names::{ascii_fold, email_for, person, DOMAINS};
use super::values::{address, job_html, phone, resume, salary, to_many};
use super::words::{
    pick, CAND_STATUS, COMPANIES, EMPLOYMENT, JOB_STATUS, LEVELS, OCCUPATIONS, SKILLS, SOURCES,
};
use super::{Refs, EPOCH_END, EPOCH_START, YEAR_MS};

pub(super) fn pick_skills(
    rng: &mut ChaCha8Rng,
    refs: &Refs,
    n: std::ops::Range<usize>,
) -> Vec<(i64, i64)> {
    let n = rng.random_range(n);
    let mut out: Vec<(i64, i64)> = Vec::new();
    for _ in 0..n {
        let s = *pick(rng, &refs.skills);
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// Fields of a new JobOrder (without id and dates).
pub fn job_order(
    rng: &mut ChaCha8Rng,
    refs: &Refs,
    corp_names: &[String],
    dirty: f64,
    huge: bool,
) -> Map<String, Value> {
    let (corp, contacts) = refs
        .corps
        .get(rng.random_range(0..refs.corps.len().max(1)))
        .cloned()
        .unwrap_or((1, vec![1]));
    let contact = contacts.choose(rng).copied().unwrap_or(1);
    let corp_name = corp_names
        .get((corp - 1).max(0) as usize)
        .cloned()
        .unwrap_or_else(|| "Client".into());
    let title = format!("{}{}", pick(rng, LEVELS), pick(rng, OCCUPATIONS));
    let skills = pick_skills(rng, refs, 2..8);
    let skill_names: Vec<&str> = skills
        .iter()
        .filter_map(|(s, _)| SKILLS.get((*s - 1) as usize).map(|x| x.0))
        .collect();
    let (status, open) = *pick(rng, JOB_STATUS);
    let employment = *pick(rng, EMPLOYMENT);
    let hourly = employment == "Contract" || employment == "Temp";
    let mut salary_v = if hourly {
        rng.random_range(20..150) as f64
    } else {
        salary(rng)
    };
    let mut title_v = title.clone();
    if rng.random_bool(dirty) {
        dirty::job_order(rng, &title, &mut title_v, &mut salary_v);
    }
    let desc_len = if huge {
        100_000
    } else {
        rng.random_range(800..4000)
    };
    let categories: Vec<i64> = skills.iter().map(|(_, c)| *c).take(2).collect();
    let mut m = Map::new();
    let mut set = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    set("title", title_v.into());
    set(
        "description",
        job_html(rng, &title, &corp_name, &skill_names, desc_len).into(),
    );
    set(
        "publicDescription",
        format!(
            "<p>{title} ({employment}) &ndash; {}</p>",
            skill_names.join(", ")
        )
        .into(),
    );
    set("status", status.into());
    set("isOpen", open.into());
    set("employmentType", employment.into());
    set("clientCorporation", json!({ "id": corp }));
    set("clientContact", json!({ "id": contact }));
    set("address", address(rng).unwrap_or(Value::Null));
    set("salary", salary_v.into());
    set(
        "salaryUnit",
        if hourly { "Per Hour" } else { "Per Year" }.into(),
    );
    set(
        "payRate",
        (rng.random_range(2000..9000) as f64 / 100.0).into(),
    );
    set(
        "clientBillRate",
        (rng.random_range(4000..15000) as f64 / 100.0).into(),
    );
    set(
        "skills",
        to_many(&skills.iter().map(|s| s.0).collect::<Vec<_>>()),
    );
    set("skillList", skill_names.join(",").into());
    set("numOpenings", rng.random_range(1..6).into());
    set("isDeleted", false.into());
    set("isPublic", (rng.random_range(-1..=1)).into());
    set("owner", json!({ "id": refs.owner(rng) }));
    set("assignedUsers", to_many(&[refs.owner(rng)]));
    set("categories", to_many(&categories));
    set(
        "onSite",
        pick(rng, &["On-Site", "Remote", "Hybrid"])
            .to_string()
            .into(),
    );
    set("type", rng.random_range(1..4).into());
    set("yearsRequired", rng.random_range(0..11).into());
    set(
        "durationWeeks",
        if hourly { rng.random_range(4..52) } else { 0 }.into(),
    );
    set(
        "hoursPerWeek",
        (*pick(rng, &[40i64, 40, 37, 20, 30])).into(),
    );
    set(
        "benefits",
        pick(
            rng,
            &["Medical, Dental, 401k", "None", "Standard package", ""],
        )
        .to_string()
        .into(),
    );
    set(
        "educationDegree",
        pick(rng, &["Bachelor's", "Master's", "None", "PhD", "Associate"])
            .to_string()
            .into(),
    );
    set("source", pick(rng, SOURCES).to_string().into());
    if !open {
        set(
            "dateClosed",
            (EPOCH_END - rng.random_range(0..YEAR_MS)).into(),
        );
    }
    m
}

/// Fields of a new Candidate (without dates); `emails` collects addresses so dirty records can duplicate one.
pub fn candidate(
    rng: &mut ChaCha8Rng,
    refs: &Refs,
    id: i64,
    dirty: f64,
    huge: bool,
    emails: &mut Vec<String>,
) -> Map<String, Value> {
    let p = person(rng);
    let occupation = format!("{}{}", pick(rng, LEVELS), pick(rng, OCCUPATIONS));
    let primary = pick_skills(rng, refs, 1..9);
    let secondary = pick_skills(rng, refs, 0..4);
    let names: Vec<&str> = primary
        .iter()
        .filter_map(|(s, _)| SKILLS.get((*s - 1) as usize).map(|x| x.0))
        .collect();
    let category = primary.first().map(|s| s.1).unwrap_or(1);
    let mut v = dirty::CandidateValues {
        first: p.first.clone(),
        last: p.last.clone(),
        name: p.name.clone(),
        email: email_for(rng, &p, id).into(),
        phone: phone(rng).into(),
        salary: salary(rng),
        occupation: occupation.clone(),
    };
    if rng.random_bool(dirty) {
        dirty::candidate(rng, &p, &occupation, emails, &mut v);
    }
    let dirty::CandidateValues {
        first,
        last,
        name,
        email,
        phone: phone_v,
        salary: salary_v,
        occupation: occupation_v,
    } = v;
    if let Some(e) = email.as_str() {
        if !e.trim().is_empty() {
            emails.push(e.trim().to_lowercase());
        }
    }
    let resume_len = if huge {
        100_000
    } else {
        rng.random_range(1500..6000)
    };
    let mut m = Map::new();
    let mut set = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    set("id", id.into());
    set("firstName", first.into());
    set("lastName", last.into());
    if rng.random_bool(0.15) {
        set(
            "middleName",
            pick(rng, &["A.", "Marie", "J", "Lee", "Ann"])
                .to_string()
                .into(),
        );
    }
    set("name", name.into());
    set("email", email);
    if rng.random_bool(0.2) {
        set(
            "email2",
            format!(
                "{}@{}",
                ascii_fold(&p.last).chars().take(8).collect::<String>() + &id.to_string(),
                pick(rng, DOMAINS)
            )
            .into(),
        );
    }
    set("phone", phone_v);
    if rng.random_bool(0.6) {
        set("mobile", phone(rng).into());
    }
    if rng.random_bool(0.2) {
        set("workPhone", phone(rng).into());
    }
    set("address", address(rng).unwrap_or(Value::Null));
    set("status", pick(rng, CAND_STATUS).to_string().into());
    set("source", pick(rng, SOURCES).to_string().into());
    set("occupation", occupation_v.into());
    set("companyName", pick(rng, COMPANIES).to_string().into());
    set("skillSet", names.join(", ").into());
    set(
        "description",
        resume(rng, &p, &occupation, &names, resume_len).into(),
    );
    set(
        "comments",
        pick(
            rng,
            &[
                "",
                "Great culture fit.",
                "Prefers remote <b>only</b>",
                "Do not call before 10am",
                "Relocating in Q3",
            ],
        )
        .to_string()
        .into(),
    );
    set("owner", json!({ "id": refs.owner(rng) }));
    set(
        "primarySkills",
        to_many(&primary.iter().map(|s| s.0).collect::<Vec<_>>()),
    );
    set(
        "secondarySkills",
        to_many(&secondary.iter().map(|s| s.0).collect::<Vec<_>>()),
    );
    set("categories", to_many(&[category]));
    set("category", json!({ "id": category }));
    set("isDeleted", false.into());
    set(
        "employmentPreference",
        pick(rng, EMPLOYMENT).to_string().into(),
    );
    set("salary", salary_v.into());
    set("salaryLow", (salary_v * 0.85).round().into());
    set(
        "hourlyRate",
        (rng.random_range(1500..12000) as f64 / 100.0).into(),
    );
    set("experience", rng.random_range(0..35).into());
    set("willRelocate", rng.random_bool(0.3).into());
    set(
        "preferredContact",
        pick(rng, &["Email", "Phone", "Mobile"]).to_string().into(),
    );
    set("massMailOptOut", rng.random_bool(0.1).into());
    set(
        "educationDegree",
        pick(
            rng,
            &["Bachelor's", "Master's", "High School", "PhD", "Associate"],
        )
        .to_string()
        .into(),
    );
    set(
        "customText1",
        format!("https://www.linkedin.com/in/c{id}").into(),
    );
    for (field, value) in crate::sim::custom::candidate_values(id) {
        set(field, value);
    }
    if rng.random_bool(0.5) {
        set(
            "dateOfBirth",
            (EPOCH_START - rng.random_range(20..65) * YEAR_MS).into(),
        );
    }
    m
}
