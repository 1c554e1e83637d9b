//! Real semantic vectors end to end: all-MiniLM-L6-v2 served by `crmflow ml serve` (in this
//! process), the sink, embed and match stages one-shot on canonical records, and the demo's
//! summary read back from Postgres. A "Senior Rust Engineer" position's top 3 candidates must be
//! the Rust and systems people (by occupation or skills, as the summary shows them), not the
//! nurse, the accountant or the "Senior Sales Engineer" who shares two words of its title; the
//! nurse position's best candidate must be the nurse.
//!
//! The model files come from `scripts/model` (which `scripts/test` runs): `CRMFLOW_MODEL_DIR`,
//! else the path that script caches to. When they are absent, the test prints why and passes
//! without checking anything (like the parity test in connectors/embedding/tests/minilm.rs).

use std::path::PathBuf;
use std::time::Duration;

use rdkafka::message::OwnedHeaders;

use crmflow::codec;
use crmflow::config::Config;
use crmflow::demo::SourceTruth;
use crmflow::kafka::{Producer, Topics};
use crmflow::model::{Candidate, Lineage, Position};
use crmflow::runtime::StageName;
use crmflow_embedding::model::{serve, MiniLm, ServeArgs};

use crate::common::isolated_config;
use crate::fixtures::{prepare, T0};

/// The model directory, or `None` (with the reason printed) when the files are not there.
fn model_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("CRMFLOW_MODEL_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let cache = std::env::var_os("CRMFLOW_CACHE_DIR")
                .unwrap_or_else(|| "/var/cache/crmflow".into());
            PathBuf::from(cache).join("models/all-MiniLM-L6-v2-0.1.0")
        }
    };
    if MiniLm::present(&dir) {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: no model files in {} (run scripts/model, or set CRMFLOW_MODEL_DIR)",
            dir.display()
        );
        None
    }
}

fn lineage(id: &str) -> Lineage {
    Lineage {
        crm: "bullhorn".into(),
        crm_id: id.into(),
        source_version: 1,
        event_id: format!("e{id}"),
        raw_topic: "raw".into(),
        raw_partition: 0,
        raw_offset: 0,
        trace_id: None,
    }
}

/// (occupation, skills, summary): a few Rust and systems people among people of other fields.
/// The systems people do not all say "Rust": the match must come from meaning, not one word.
const PEOPLE: &[(&str, &[&str], &str)] = &[
    (
        "Senior Rust Developer",
        &["Rust", "Tokio", "Linux"],
        "Built async network services in Rust with Tokio; memory safety and performance work.",
    ),
    (
        "Systems Programmer",
        &["C", "C++", "Linux kernel"],
        "Low-level systems programming: device drivers, kernel modules, lock-free data structures.",
    ),
    (
        "Embedded Software Engineer",
        &["Rust", "C", "RTOS"],
        "Firmware for microcontrollers in C and embedded Rust, no_std, real-time constraints.",
    ),
    (
        "Backend Engineer",
        &["Rust", "PostgreSQL", "Kafka"],
        "High-throughput data pipelines and storage engines written in Rust.",
    ),
    (
        "Registered Nurse",
        &["Nursing", "ICU", "Phlebotomy"],
        "Ten years of intensive care nursing, patient assessment and medication administration.",
    ),
    (
        "Accountant",
        &["GAAP", "Tax Preparation", "Excel"],
        "Month-end close, audits and tax returns for mid-size companies.",
    ),
    (
        "Senior Sales Engineer",
        &["B2B Sales", "Negotiation", "Salesforce"],
        "Closed enterprise deals, ran product demos and managed key client accounts.",
    ),
    (
        "Marketing Manager",
        &["SEO", "Copywriting", "Event Planning"],
        "Brand campaigns, content strategy and trade show events.",
    ),
    (
        "Welder",
        &["Welding", "CNC Machining", "Forklift"],
        "MIG and TIG welding of steel structures in a fabrication shop.",
    ),
    (
        "Paralegal",
        &["Legal Research", "Contract Law"],
        "Drafted contracts, managed case files and researched case law.",
    ),
    (
        "Warehouse Associate",
        &["Logistics", "Forklift", "Supply Chain"],
        "Picking, packing and inventory counts in a distribution centre.",
    ),
    (
        "HR Generalist",
        &["Recruiting", "HR Compliance", "Payroll"],
        "Onboarding, benefits administration and employee relations.",
    ),
];

fn candidate(id: usize, (occupation, skills, summary): (&str, &[&str], &str)) -> Candidate {
    Candidate {
        crm: "bullhorn".into(),
        crm_id: id.to_string(),
        source_version: 1,
        deleted: false,
        first_name: Some(format!("First{id}")),
        last_name: Some("Doe".into()),
        email: Some(format!("c{id}@example.com")),
        phone: None,
        mobile: None,
        address: None,
        status: Some("Active".into()),
        occupation: Some(occupation.into()),
        company_name: None,
        skills: skills.iter().map(|s| s.to_string()).collect(),
        summary: Some(summary.into()),
        date_available: None,
        owner_id: None,
        owner_name: None,
        date_added: Some(T0),
        lineage: lineage(&id.to_string()),
        ..Default::default()
    }
}

fn position(id: usize, title: &str, skills: &[&str], description: &str) -> Position {
    Position {
        crm: "bullhorn".into(),
        crm_id: id.to_string(),
        source_version: 1,
        deleted: false,
        title: Some(title.into()),
        description: Some(description.into()),
        status: Some("Open".into()),
        is_open: Some(true),
        employment_type: None,
        salary: Some(150_000.0),
        salary_unit: None,
        pay_rate: None,
        num_openings: Some(1),
        start_date: None,
        skills: skills.iter().map(|s| s.to_string()).collect(),
        address: None,
        client_corporation_id: None,
        client_corporation_name: None,
        owner_id: None,
        owner_name: None,
        date_added: Some(T0),
        lineage: lineage(&id.to_string()),
        ..Default::default()
    }
}

async fn produce(cfg: &Config, entity: &str, records: Vec<(String, Vec<u8>)>) {
    let topic = Topics::new(&cfg.kafka).canonical(entity);
    let producer = Producer::new(&cfg.kafka).unwrap();
    let mut acks = Vec::new();
    for (key, bytes) in &records {
        acks.push(
            producer
                .send(&topic, key.as_bytes(), bytes, OwnedHeaders::new())
                .await
                .unwrap(),
        );
    }
    for a in acks {
        a.await.unwrap();
    }
}

fn mentions_rust_or_systems(occupation: Option<&str>, skills: &[String]) -> bool {
    let text = format!("{} {}", occupation.unwrap_or(""), skills.join(" ")).to_lowercase();
    ["rust", "system", "kernel", "embedded"]
        .iter()
        .any(|w| text.contains(w))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_real_model_a_rust_position_matches_rust_and_systems_people() {
    let Some(dir) = model_dir() else { return };
    let args = ServeArgs::for_tests(dir);
    let model = serve::load(&args).await.expect("model loads");
    let ml = serve::start(&args, model).await.expect("ml serve starts");

    let mut cfg = isolated_config("semantic");
    cfg.ml.url = ml.base_url().to_string().trim_end_matches('/').to_owned();
    cfg.ml.model = "all-MiniLM-L6-v2".into();
    cfg.ml.dim = 384;
    cfg.ml.timeout_secs = 300;
    cfg.embed.batch_size = 32;
    cfg.embed.max_in_flight = 2;
    cfg.embed.linger_ms = 50;
    cfg.embed.top_k = 5;
    prepare(&cfg).await;

    let candidates: Vec<(String, Vec<u8>)> = PEOPLE
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let c = candidate(i + 1, *p);
            (
                format!("bullhorn:{}", c.crm_id),
                codec::candidate().encode(&c).unwrap(),
            )
        })
        .collect();
    let rust_job = position(
        101,
        "Senior Rust Engineer",
        &["Rust", "Linux", "Distributed Systems"],
        "Design and build low-latency backend services and systems software in Rust.",
    );
    let nurse_job = position(
        102,
        "ICU Registered Nurse",
        &["Nursing", "ICU"],
        "Critical care nurse for our intensive care unit; night shifts.",
    );
    let positions = [&rust_job, &nurse_job]
        .iter()
        .map(|p| {
            (
                format!("bullhorn:{}", p.crm_id),
                codec::position().encode(p).unwrap(),
            )
        })
        .collect();
    produce(&cfg, "candidate", candidates).await;
    produce(&cfg, "position", positions).await;

    tokio::time::timeout(
        Duration::from_secs(300),
        crmflow::run::run(
            cfg.clone(),
            &[StageName::Sink, StageName::Embed, StageName::Match],
            true,
        ),
    )
    .await
    .expect("one-shot run finished in time")
    .expect("one-shot run succeeded");

    // What the demo prints: its summary, read back from Postgres.
    let summary = crmflow::demo::read_summary(
        &cfg,
        SourceTruth::default(),
        None,
        Duration::from_secs(1),
        true,
        0,
    )
    .await
    .expect("summary");
    eprintln!("{}", summary.render());
    let rust = summary
        .top_matches
        .iter()
        .find(|p| p.title == "Senior Rust Engineer")
        .unwrap_or_else(|| panic!("the Rust position is in the summary: {summary:#?}"));
    assert_eq!(rust.candidates.len(), 3, "{rust:#?}");
    for c in &rust.candidates {
        assert!(
            mentions_rust_or_systems(c.occupation.as_deref(), &c.skills),
            "rank {} of the Rust position is {:?} {:?}: {rust:#?}",
            c.rank,
            c.occupation,
            c.skills
        );
        assert!(!c.skills.is_empty(), "skills shown beside the name: {c:?}");
    }
    let nurse = summary
        .top_matches
        .iter()
        .find(|p| p.title == "ICU Registered Nurse")
        .unwrap_or_else(|| panic!("the nurse position is in the summary: {summary:#?}"));
    assert_eq!(
        nurse.candidates[0].occupation.as_deref(),
        Some("Registered Nurse"),
        "{nurse:#?}"
    );
    ml.shutdown().await.unwrap();
}
