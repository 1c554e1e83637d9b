//! Throughput of the normalize operators alone (no Kafka, no Avro): 100,000 synthetic Bullhorn records,
//! 60% Candidates and 40% JobOrders of about 2 KB each, shaped like the simulator's (HTML job
//! descriptions, plain and HTML resumes, to-many skills, partial addresses, a share of non-Latin names
//! and dirty values), run through `operators::normalize` on one thread.
//!
//! `cargo bench -p crmflow --bench normalize` prints events/s; the stage needs ≥ 50,000 events/s end to
//! end on two cores, so this single-thread figure should be far above that.

use std::hint::black_box;
use std::time::Instant;

use crmflow::config::NormalizeConfig;
use crmflow::model::{ChangeEvent, Lineage, Op};
use crmflow::operators::{normalize, Canonical};

const EVENTS: usize = 100_000;

/// xorshift64*: a deterministic, dependency-free source of variety.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

const FIRST: &[&str] = &[
    "James", "Mary", "Olivia", "José", "Zoë", "Wei", "Анна", "محمد", "Priya", "Søren",
];
const LAST: &[&str] = &[
    "Smith",
    "García",
    "Müller",
    "Nakamura",
    "Иванова",
    "Kumar",
    "O'Brien",
    "Lee",
];
const SKILLS: &[&str] = &[
    "Rust",
    "SQL",
    "Kafka",
    "Python",
    "Java",
    "AWS",
    "Kubernetes",
    "React",
    "Excel",
    "Go",
];
const STATUS: &[&str] = &["Active", "New Lead", "Passive", "Placed", "Interviewing"];
const JOB_STATUS: &[&str] = &[
    "Accepting Candidates",
    "Open",
    "Covered",
    "Filled",
    "On Hold",
];
const CITIES: &[(&str, &str, &str, &str, u32)] = &[
    ("Boston", "MA", "02108", "US", 1),
    ("London", "", "EC1A 1BB", "GB", 2359),
    ("Berlin", "", "10115", "DE", 2224),
    ("Toronto", "ON", "M5H 2N2", "CA", 2),
    ("東京", "東京都", "100-0001", "JP", 2258),
];
const SENTENCES: &[&str] = &[
    "Designed and shipped a streaming platform serving 300k users",
    "Cut infrastructure costs by 35% through careful capacity planning",
    "Worked with a team of 12 engineers on the payments pipeline",
    "Mentored five colleagues while leading the data warehouse migration",
    "Responsible for on-call, incident reviews and service-level objectives",
];

fn address(r: &mut Rng) -> String {
    let (city, state, zip, cc, id) = CITIES[r.below(CITIES.len())];
    match r.below(4) {
        0 => format!(r#"{{"city":"{city}","countryID":{id}}}"#),
        _ => format!(
            r#"{{"address1":"{} Main Street","address2":null,"city":"{city}","state":"{state}","zip":"{zip}","countryID":{id},"countryName":"X","countryCode":"{cc}"}}"#,
            r.below(9999)
        ),
    }
}

fn to_many(r: &mut Rng, n: usize) -> (String, Vec<&'static str>) {
    let names: Vec<&str> = (0..n).map(|_| r.pick(SKILLS)).collect();
    let data: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, s)| format!(r#"{{"id":{i},"name":"{s}"}}"#))
        .collect();
    (
        format!(r#"{{"total":{n},"data":[{}]}}"#, data.join(",")),
        names,
    )
}

fn candidate(r: &mut Rng, id: usize) -> String {
    let first = r.pick(FIRST);
    let last = r.pick(LAST);
    let n = 2 + r.below(5);
    let (primary, names) = to_many(r, n);
    let html = r.below(10) < 3;
    let mut resume = String::new();
    while resume.len() < 1100 {
        let s = r.pick(SENTENCES);
        if html {
            resume.push_str(&format!("<li>{s} &amp; more.</li>"));
        } else {
            resume.push_str(&format!("  \\u2022 {s}.\\n"));
        }
    }
    let resume = if html {
        format!("<html><body><h1>{first} {last}</h1><ul>{resume}</ul></body></html>")
    } else {
        format!("{first} {last}\\nSUMMARY\\n{resume}")
    };
    let status = if r.below(10) == 0 {
        format!(r#"["{}"]"#, r.pick(STATUS))
    } else {
        format!(r#""{}""#, r.pick(STATUS))
    };
    let email = match r.below(20) {
        0 => "null".to_owned(),
        1 => format!(r#""  {}.{}@EXAMPLE.COM  ""#, id, id),
        _ => format!(r#""c{id}@example.com""#),
    };
    let first_json = if r.below(20) == 0 {
        format!("{first}\\u200b")
    } else {
        first.to_owned()
    };
    format!(
        r#"{{"id":{id},"firstName":"{first_json}","lastName":"{last}","name":"{first} {last}","email":{email},"phone":"+1 (617) 555-{:04}","mobile":"020 7946 {:04}","address":{},"status":{status},"source":"LinkedIn","occupation":"Senior Data Engineer","companyName":"Acme Corp","skillSet":"{}","description":"{resume}","owner":{{"id":{},"firstName":"Iam","lastName":"Recruiter"}},"primarySkills":{primary},"secondarySkills":{{"total":0,"data":[]}},"dateAdded":1700000000000,"dateAvailable":1735689600000,"dateLastModified":1718000000000,"isDeleted":false,"customText1":"https://www.linkedin.com/in/c{id}","salary":95000.0,"willRelocate":false}}"#,
        r.below(10_000),
        r.below(10_000),
        address(r),
        names.join(", "),
        r.below(50),
    )
}

fn job_order(r: &mut Rng, id: usize) -> String {
    let n = 2 + r.below(5);
    let (skills, names) = to_many(r, n);
    let mut desc = String::from(
        r#"<p><strong>Senior Rust Engineer</strong> &ndash; Blue Harbor &amp; Co</p>\n<p style=\"font-family: Arial; font-size: 10pt\">Our client is hiring.&nbsp;Apply today!</p>\n"#,
    );
    while desc.len() < 1100 {
        desc.push_str("<h3>Responsibilities</h3>\\n<ul>\\n");
        for _ in 0..4 {
            desc.push_str(&format!("  <li>{}</li>\\n", r.pick(SENTENCES)));
        }
        desc.push_str("</ul><br>\\n");
    }
    let salary = if r.below(3) == 0 {
        r#""135000.0000""#.to_owned()
    } else {
        format!("{}.0", 60_000 + r.below(90_000))
    };
    format!(
        r#"{{"id":{id},"title":"Senior Rust Engineer","description":"{desc}","publicDescription":"<p>Senior Rust Engineer</p>","status":"{}","isOpen":true,"employmentType":"Permanent","clientCorporation":{{"id":{},"name":"Blue Harbor & Co"}},"clientContact":{{"id":5}},"address":{},"salary":{salary},"salaryUnit":"Per Year","payRate":35.0,"clientBillRate":80.0,"skills":{skills},"skillList":"{}","numOpenings":{},"isDeleted":false,"isPublic":1,"owner":{{"id":3}},"startDate":1735689600000,"dateAdded":1704067200000,"dateLastModified":1718000000000,"onSite":"Hybrid","hoursPerWeek":40}}"#,
        r.pick(JOB_STATUS),
        r.below(500),
        address(r),
        names.join(","),
        1 + r.below(5),
    )
}

fn main() {
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    let events: Vec<ChangeEvent> = (0..EVENTS)
        .map(|i| {
            let (entity, record) = if r.below(10) < 6 {
                ("Candidate", candidate(&mut r, i))
            } else {
                ("JobOrder", job_order(&mut r, i))
            };
            let op = if r.below(100) == 0 {
                Op::Delete
            } else {
                Op::Upsert
            };
            ChangeEvent::new(
                "bullhorn",
                entity,
                &i.to_string(),
                op,
                1_718_000_000_000,
                1_735_689_600_000,
                vec![],
                "poll",
                record,
            )
        })
        .collect();
    let bytes: usize = events.iter().map(|e| e.record.len()).sum();
    let cfg = NormalizeConfig::default();

    let run = |events: &[ChangeEvent]| {
        let (mut ok, mut rejected) = (0usize, 0usize);
        for ev in events {
            // Lineage is built per event, as the stage does.
            let lineage = Lineage {
                crm: ev.crm.clone(),
                crm_id: ev.record_id.clone(),
                source_version: ev.source_version,
                event_id: ev.event_id.clone(),
                raw_topic: "crm.raw.bullhorn.candidate".to_owned(),
                raw_partition: 0,
                raw_offset: 0,
                trace_id: None,
            };
            match black_box(normalize(black_box(ev), lineage, &cfg)) {
                Ok(Canonical::Candidate(_) | Canonical::Position(_)) => ok += 1,
                Err(_) => rejected += 1,
            }
        }
        (ok, rejected)
    };

    run(&events[..EVENTS / 10]); // warm caches and the allocator
    let cpu0 = thread_cpu_secs();
    let start = Instant::now();
    let (ok, rejected) = run(&events);
    let secs = start.elapsed().as_secs_f64();
    let cpu = thread_cpu_secs().zip(cpu0).map(|(b, a)| b - a);
    println!(
        "normalize: {EVENTS} events ({:.0} B avg record) in {:.3} s wall = {:.0} events/s, {:.2} µs/event, {:.1} MB/s; {ok} ok, {rejected} rejected",
        bytes as f64 / EVENTS as f64,
        secs,
        EVENTS as f64 / secs,
        secs * 1e6 / EVENTS as f64,
        bytes as f64 / secs / 1e6,
    );
    // On a machine shared with other work, wall time includes waiting for a core; CPU time does not.
    if let Some(cpu) = cpu.filter(|c| *c > 0.0) {
        println!(
            "normalize: {cpu:.3} s CPU on this thread = {:.0} events/s per core, {:.2} µs/event",
            EVENTS as f64 / cpu,
            cpu * 1e6 / EVENTS as f64
        );
    }
}

/// This thread's user + system CPU time from /proc (Linux; `None` elsewhere), at clock-tick
/// resolution (10 ms), which is plenty over a run of a second.
fn thread_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}
