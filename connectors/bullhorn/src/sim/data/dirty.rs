//! Dirty data: the defects a configurable share of generated records carries, as real CRMs hold
//! them (no or duplicate e-mail, malformed phones, zero-width and right-to-left characters, emoji,
//! padded values, salary 0 or negative). Each function draws from the record's generator right
//! where the clean value was drawn, so the clean records stay the same for a seed.

use rand::seq::IndexedRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use super::names::Person;
use super::words::pick;

pub(super) const BAD_PHONES: &[&str] = &[
    "call me",
    "555-12",
    "n/a",
    "0000000000",
    "+1 555 ☎ 1234",
    "ext. 42",
    "12345678901234567890",
    "  555 123 4567  ",
];

/// Makes a JobOrder dirty: a salary of 0 or below, or a padded or decorated title.
pub(super) fn job_order(
    rng: &mut ChaCha8Rng,
    title: &str,
    title_v: &mut String,
    salary_v: &mut f64,
) {
    match rng.random_range(0..4) {
        0 => *salary_v = 0.0,
        1 => *salary_v = -(rng.random_range(1..5000) as f64),
        2 => *title_v = format!("  {title}  "),
        _ => *title_v = format!("{title} \u{200B}(URGENT!!)"),
    }
}

/// The Candidate values dirty data may change (clean when drawn).
pub(super) struct CandidateValues {
    pub(super) first: String,
    pub(super) last: String,
    pub(super) name: String,
    pub(super) email: Value,
    pub(super) phone: Value,
    pub(super) salary: f64,
    pub(super) occupation: String,
}

/// Makes a Candidate dirty: one or two defects; `emails` (addresses generated so far) gives a
/// duplicate, `p` and `occupation` the clean values some defects start from.
pub(super) fn candidate(
    rng: &mut ChaCha8Rng,
    p: &Person,
    occupation: &str,
    emails: &[String],
    v: &mut CandidateValues,
) {
    for _ in 0..rng.random_range(1..3) {
        match rng.random_range(0..10) {
            0 => v.email = Value::Null,
            1 => v.email = "".into(),
            2 => {
                if let Some(e) = emails.choose(rng) {
                    v.email = e.clone().into();
                }
            }
            3 => v.phone = pick(rng, BAD_PHONES).to_string().into(),
            4 => {
                let mut chars = v.first.chars();
                let head = chars.next().map(String::from).unwrap_or_default();
                v.first = format!("{head}\u{200B}{}", chars.as_str());
            }
            5 => {
                v.last = format!("\u{200F}{}\u{202E}", v.last);
                v.name = format!("{} {}", v.first, v.last);
            }
            6 => {
                v.salary = if rng.random_bool(0.5) {
                    0.0
                } else {
                    -(rng.random_range(1..90_000) as f64)
                }
            }
            7 => {
                v.name = format!("{}, {}", p.last.to_uppercase(), p.first);
                v.email = format!("  {}  ", v.email.as_str().unwrap_or("").to_uppercase()).into();
            }
            8 => v.first = format!("{} 🌸", v.first),
            _ => v.occupation = format!("\u{FEFF}{occupation}\t"),
        }
    }
}
