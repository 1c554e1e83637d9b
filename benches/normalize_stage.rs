//! Normalize stage benchmark: a backlog of raw Bullhorn ChangeEvents (~2 KB candidates and job
//! orders) on Kafka, drained by `crmflow run --stages normalize --until-caught-up` as its own
//! process: decode, transform, validate, encode and produce to the canonical topics, commits
//! after acknowledgements. Prints events/s and the process's peak RSS.
//!
//! Needs the local services. `cargo bench -p crmflow --bench normalize_stage`
//! (`BENCH_EVENTS` sets the backlog, default 300,000).

mod common;

use std::time::Instant;

use crmflow::kafka::{self, trace, Producer, Topics};
use crmflow::model::{ChangeEvent, Op};
use rdkafka::message::OwnedHeaders;

fn record(i: u64, version: i64) -> (String, String) {
    if i % 5 == 0 {
        let json = serde_json::json!({
            "id": i, "title": format!("Senior data engineer {i}"),
            "description": "<p>We build <b>streaming</b> pipelines with Kafka &amp; Postgres.</p><ul><li>Rust</li><li>SQL</li></ul>".repeat(6),
            "status": "Accepting Candidates", "isOpen": true, "employmentType": "Permanent",
            "salary": 120000.0, "salaryUnit": "per year", "numOpenings": 2, "startDate": version + 86_400_000,
            "clientCorporation": {"id": 7, "name": "Acme"}, "owner": {"id": 3, "firstName": "Ann", "lastName": "Lee"},
            "skills": {"total": 2, "data": [{"id": 1, "name": "Kafka"}, {"id": 2, "name": "SQL"}]},
            "address": {"address1": "1 Main St", "city": "Omaha", "state": "NE", "zip": "68124", "countryCode": "US"},
            "dateAdded": version, "dateLastModified": version, "isDeleted": false
        });
        ("JobOrder".into(), json.to_string())
    } else {
        let json = serde_json::json!({
            "id": i, "firstName": format!(" Zoë\u{200B}{i} "), "lastName": "Müller", "email": format!("Person.{i}@Example.com"),
            "phone": "(415) 555-0100", "mobile": "+44 20 7946 0958", "status": "Active", "occupation": "Software engineer",
            "companyName": "Initech", "skillSet": "Rust, Kafka; PostgreSQL, Go",
            "primarySkills": {"total": 2, "data": [{"id": 1, "name": "Rust"}, {"id": 2, "name": "Kafka"}]},
            "description": "<p>Ten years of distributed systems: streaming, storage &amp; search.</p>".repeat(18),
            "address": {"address1": "1 Main St", "city": "Omaha", "state": "NE", "zip": "68124", "countryID": 1},
            "owner": {"id": 3, "firstName": "Ann", "lastName": "Lee"},
            "dateAdded": version, "dateLastModified": version, "isDeleted": false
        });
        ("Candidate".into(), json.to_string())
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let events: u64 = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    let cfg = common::isolated_config("bench_norm");
    if let Err(e) = crmflow::store::migrate(&cfg).await {
        eprintln!("normalize bench needs the local services (scripts/services up): {e}");
        std::process::exit(2);
    }
    kafka::ensure_topics(&cfg.kafka, &crmflow::pipeline::topic_specs(&cfg))
        .await
        .expect("topics");
    let topics = Topics::new(&cfg.kafka);
    let producer = Producer::new(&cfg.kafka).unwrap();
    let t = Instant::now();
    let mut acks = Vec::new();
    let mut bytes = 0usize;
    for i in 1..=events {
        let version = 1_760_000_000_000 + i as i64;
        let (entity, json) = record(i, version);
        let ev = ChangeEvent::new(
            "bullhorn",
            &entity,
            &i.to_string(),
            Op::Upsert,
            version,
            version,
            vec![],
            "poll",
            json,
        );
        let value = crmflow::codec::change_event().encode(&ev).unwrap();
        bytes += value.len();
        let h = trace::inject(OwnedHeaders::new(), &common::backlog_traceparent());
        acks.push(
            producer
                .send(
                    &topics.raw("bullhorn", &entity),
                    i.to_string().as_bytes(),
                    &value,
                    h,
                )
                .await
                .unwrap(),
        );
        if acks.len() >= 50_000 {
            for a in acks.drain(..) {
                a.await.unwrap();
            }
        }
    }
    for a in acks {
        a.await.unwrap();
    }
    println!(
        "backlog: {events} raw events, {} bytes/event, produced in {:.1}s",
        bytes / events as usize,
        t.elapsed().as_secs_f64()
    );

    let (took, hwm) = {
        let otlp = match common::trace_ratio() {
            Some(_) => Some(common::start_receiver().await),
            None => None,
        };
        let out = tokio::task::block_in_place(|| {
            common::run_stage_process_traced(&cfg, "normalize", otlp.as_deref())
        });
        match common::trace_ratio() {
            Some(r) => println!(
                "tracing on: sample ratio {r}, {} spans received",
                common::SPANS_RECEIVED.load(std::sync::atomic::Ordering::Relaxed)
            ),
            None => println!("tracing off"),
        }
        out
    };
    let secs = took.as_secs_f64();
    println!(
        "normalize stage: {events} events in {secs:.1}s = {:.0} events/s (a fresh process: start-up, group join and one-shot exit included)",
        events as f64 / secs
    );
    println!("normalize process peak RSS (VmHWM): {} MiB", hwm / 1024);
}
