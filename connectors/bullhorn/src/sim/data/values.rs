//! Generated field values: phone numbers in several national formats, partial addresses,
//! salaries, to-many references, and the long texts (résumés in plain text or HTML, HTML job
//! descriptions) built from sentences about skills.

use rand::seq::IndexedRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use super::names::Person;
use super::words::{pick, COMPANIES, PLACES, STREETS, STREET_KINDS, THINGS, VERBS};

pub(super) fn to_many(ids: &[i64]) -> Value {
    json!({ "total": ids.len(), "data": ids.iter().map(|id| json!({ "id": id })).collect::<Vec<_>>() })
}

pub(super) fn phone(rng: &mut ChaCha8Rng) -> String {
    let d = |rng: &mut ChaCha8Rng, n: u32| -> String {
        (0..n)
            .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
            .collect()
    };
    match rng.random_range(0..6) {
        0 => format!("+1 ({}) {}-{}", d(rng, 3), d(rng, 3), d(rng, 4)),
        1 => format!("{}-{}-{}", d(rng, 3), d(rng, 3), d(rng, 4)),
        2 => format!("+44 20 {} {}", d(rng, 4), d(rng, 4)),
        3 => format!("+86 1{} {} {}", d(rng, 2), d(rng, 4), d(rng, 4)),
        4 => format!("+7 495 {}-{}-{}", d(rng, 3), d(rng, 2), d(rng, 2)),
        _ => format!("({}) {} {}", d(rng, 3), d(rng, 3), d(rng, 4)),
    }
}

pub(super) fn address(rng: &mut ChaCha8Rng) -> Option<Value> {
    let (city, state, zip, cc, cn, cid) = *pick(rng, PLACES);
    let street = format!(
        "{} {} {}",
        rng.random_range(1..9999),
        pick(rng, STREETS),
        pick(rng, STREET_KINDS)
    );
    // Partial addresses are the norm in CRMs: many records carry only a city or a country.
    Some(match rng.random_range(0..10) {
        0 => return None,
        1 => json!({ "countryID": cid, "countryName": cn, "countryCode": cc }),
        2 => json!({ "city": city, "countryID": cid }),
        3 => {
            json!({ "address1": "", "address2": null, "city": city, "state": state, "zip": null, "countryID": cid, "countryName": cn, "countryCode": cc })
        }
        _ => json!({
            "address1": street,
            "address2": if rng.random_bool(0.2) { Value::from(format!("Suite {}", rng.random_range(100..999))) } else { Value::Null },
            "city": city, "state": state, "zip": zip, "countryID": cid, "countryName": cn, "countryCode": cc
        }),
    })
}

pub(super) fn salary(rng: &mut ChaCha8Rng) -> f64 {
    (rng.random_range(35..250) * 1000) as f64
}

pub(super) fn sentence(rng: &mut ChaCha8Rng, skills: &[&str]) -> String {
    let skill = skills.choose(rng).copied().unwrap_or("Excel");
    match rng.random_range(0..5) {
        0 => format!(
            "{} {} using {skill}, serving {}k users.",
            pick(rng, VERBS),
            pick(rng, THINGS),
            rng.random_range(1..900)
        ),
        1 => format!(
            "{} {} and cut costs by {}% with {skill}.",
            pick(rng, VERBS),
            pick(rng, THINGS),
            rng.random_range(5..60)
        ),
        2 => format!(
            "Worked with a team of {} on {}; main tools: {skill}.",
            rng.random_range(2..40),
            pick(rng, THINGS)
        ),
        3 => format!(
            "{} {} across {} sites while mentoring {} colleagues.",
            pick(rng, VERBS),
            pick(rng, THINGS),
            rng.random_range(2..12),
            rng.random_range(1..9)
        ),
        _ => format!("Responsible for {}; {skill} certified.", pick(rng, THINGS)),
    }
}

pub(super) fn resume(
    rng: &mut ChaCha8Rng,
    p: &Person,
    occupation: &str,
    skills: &[&str],
    target_len: usize,
) -> String {
    let html = rng.random_bool(0.3);
    let mut out = String::with_capacity(target_len + 512);
    if html {
        out.push_str(&format!(
            "<html><body><h1>{}</h1><p>{occupation}</p>",
            p.name
        ));
    } else {
        out.push_str(&format!("{}\n{occupation}\n\nSUMMARY\n", p.name));
    }
    let mut year = 2024 - rng.random_range(0..3);
    while out.len() < target_len {
        let company = pick(rng, COMPANIES);
        let span = rng.random_range(1..5);
        if html {
            out.push_str(&format!(
                "<h2>{company}</h2><p>{occupation}, {}&ndash;{year}</p><ul>",
                year - span
            ));
            for _ in 0..rng.random_range(3..7) {
                out.push_str(&format!("<li>{}</li>", sentence(rng, skills)));
            }
            out.push_str("</ul>");
        } else {
            out.push_str(&format!(
                "\n{company} — {occupation} ({}-{year})\n",
                year - span
            ));
            for _ in 0..rng.random_range(3..7) {
                out.push_str(&format!("  • {}\n", sentence(rng, skills)));
            }
        }
        year -= span;
    }
    if html {
        out.push_str(&format!(
            "<h2>Skills</h2><p>{}</p></body></html>",
            skills.join(", ")
        ));
    } else {
        out.push_str(&format!("\nSKILLS\n{}\n", skills.join(", ")));
    }
    out
}

pub(super) fn job_html(
    rng: &mut ChaCha8Rng,
    title: &str,
    corp: &str,
    skills: &[&str],
    target_len: usize,
) -> String {
    let mut out = format!(
        "<p><strong>{title}</strong> &ndash; {}</p>\n<p style=\"font-family: Arial; font-size: 10pt\">Our client, a leading company in its field, is hiring.&nbsp;Apply today!</p>\n",
        corp.replace('&', "&amp;")
    );
    while out.len() < target_len {
        out.push_str("<h3>Responsibilities</h3>\n<ul>\n");
        for _ in 0..rng.random_range(3..8) {
            out.push_str(&format!("  <li>{}</li>\n", sentence(rng, skills)));
        }
        out.push_str("</ul>\n<h3>Requirements</h3>\n<ul>\n");
        for s in skills {
            out.push_str(&format!(
                "  <li>{} years of {s}</li>\n",
                rng.random_range(1..8)
            ));
        }
        out.push_str("</ul><br>\n");
    }
    out
}
