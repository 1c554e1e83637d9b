//! Custom fields of the simulated tenant: the labels it gave some `custom*` fields, which fields the
//! API user may not read, the wire type of `customInt*`, and the values generated for them, dirty
//! ones included (stray spaces and case, blanks, `N/A`, mixed list separators), as recruiters type them.
//!
//! Values come from their own generator seeded by the record id, so adding them left every other
//! generated field unchanged.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

/// `(entity, field, label)`: the labels `meta/{entity}` reports for the tenant's custom fields.
pub const LABELS: &[(&str, &str, &str)] = &[
    ("Candidate", "customText1", "LinkedIn profile"),
    ("Candidate", "customText2", "Visa status"),
    ("Candidate", "customText3", "Target sectors"),
    ("Candidate", "customInt1", "Notice period (days)"),
    ("Candidate", "customFloat1", "Day rate"),
    ("Candidate", "customDate1", "Available from"),
    ("Candidate", "customEncryptedText1", "Passport number"),
    ("JobOrder", "customText1", "Sector"),
    ("JobOrder", "customFloat1", "Max day rate"),
];

/// The label of a field: the tenant's for a labelled custom field, else the name in words
/// (`dateAvailable` -> `Date Available`), as Bullhorn shows unlabelled fields.
pub fn label(entity: &str, field: &str) -> String {
    if let Some((_, _, l)) = LABELS.iter().find(|(e, f, _)| *e == entity && *f == field) {
        return (*l).to_owned();
    }
    let mut out = String::new();
    for (i, c) in field.chars().enumerate() {
        if i == 0 {
            out.extend(c.to_uppercase());
        } else {
            if c.is_ascii_uppercase() {
                out.push(' ');
            }
            out.push(c);
        }
    }
    out
}

/// Whether `meta` marks the field `confidential`: the encrypted custom fields, whose values the
/// simulated API user is not entitled to (an unconfirmed reading of Bullhorn's field security; a
/// mapping of such a field is refused by `crmflow mapping check`).
pub fn confidential(field: &str) -> bool {
    field.starts_with("customEncryptedText")
}

/// `meta`'s `dataType` where the catalogue's wire type is too coarse: `customInt*` are Integer.
pub fn data_type(field: &str) -> Option<&'static str> {
    field.starts_with("customInt").then_some("Integer")
}

const VISA: &[&str] = &[
    "Citizen",
    "Permanent resident",
    "Work visa",
    "Sponsorship needed",
];
const VISA_DIRTY: &[&str] = &[" citizen", "WORK VISA", "", "N/A", "Permanent Resident "];
const SECTORS: &[&str] = &[
    "Fintech",
    "Healthcare",
    "Energy",
    "Retail",
    "Public sector",
    "Logistics",
];
/// 2026-01-05T05:00:00Z: midnight in New York, as Bullhorn stores dates.
const FIRST_DAY_MS: i64 = 1_767_589_200_000;

/// The custom-field values of candidate `id` (absent fields are not listed).
pub fn candidate_values(id: i64) -> Vec<(&'static str, Value)> {
    let mut rng = ChaCha8Rng::seed_from_u64(0xC05_7011 ^ id as u64);
    let mut out: Vec<(&'static str, Value)> = Vec::new();
    // Visa status: one in six typed loosely.
    if rng.random_bool(0.95) {
        let v = if rng.random_bool(1.0 / 6.0) {
            VISA_DIRTY[rng.random_range(0..VISA_DIRTY.len())]
        } else {
            VISA[rng.random_range(0..VISA.len())]
        };
        out.push(("customText2", v.into()));
    }
    // Target sectors: one to three, separated by ";" or ", ", sometimes lower case.
    if rng.random_bool(0.8) {
        let n = rng.random_range(1..4);
        let mut picked: Vec<String> = (0..n)
            .map(|_| SECTORS[rng.random_range(0..SECTORS.len())].to_owned())
            .collect();
        picked.dedup();
        if rng.random_bool(0.1) {
            picked = picked.iter().map(|s| s.to_lowercase()).collect();
        }
        let sep = if rng.random_bool(0.5) { ";" } else { ", " };
        out.push(("customText3", picked.join(sep).into()));
    }
    if rng.random_bool(0.9) {
        let days = [0, 7, 14, 30, 30, 60, 90][rng.random_range(0..7)];
        out.push(("customInt1", days.into()));
    }
    if rng.random_bool(0.7) {
        let rate = f64::from(rng.random_range(600..2400)) / 2.0;
        out.push(("customFloat1", rate.into()));
    }
    if rng.random_bool(0.6) {
        let day: i64 = rng.random_range(0..180);
        out.push(("customDate1", (FIRST_DAY_MS + day * 86_400_000).into()));
    }
    out.push((
        "customEncryptedText1",
        format!("P{:07}", rng.random_range(0..10_000_000)).into(),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_deterministic_and_some_are_dirty() {
        assert_eq!(candidate_values(7), candidate_values(7));
        let visas: Vec<String> = (1..2000)
            .flat_map(candidate_values)
            .filter(|(f, _)| *f == "customText2")
            .map(|(_, v)| v.as_str().unwrap().to_owned())
            .collect();
        assert!(visas.iter().any(|v| v == "N/A"));
        assert!(visas.iter().any(|v| v.is_empty()));
        assert!(visas.iter().filter(|v| VISA.contains(&v.as_str())).count() > visas.len() * 3 / 4);
        assert_eq!(label("Candidate", "customText2"), "Visa status");
        assert_eq!(label("Candidate", "dateAvailable"), "Date Available");
    }
}
