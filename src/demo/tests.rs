//! Tests of the demo's pure parts.

use super::readback::{entity_of_topic, record_key};
use super::*;

#[test]
fn namespace_is_fresh_unless_configured() {
    let mut cfg = Config::default();
    assert!(fresh_namespace(&mut cfg, 17));
    assert_eq!(cfg.kafka.topic_prefix, "demo_17.");
    assert_eq!(cfg.postgres.schema, "demo_17");
    let mut cfg = Config::default();
    cfg.kafka.topic_prefix = "mine.".into();
    cfg.postgres.schema = "mine".into();
    assert!(!fresh_namespace(&mut cfg, 17));
    assert_eq!(
        (
            cfg.kafka.topic_prefix.as_str(),
            cfg.postgres.schema.as_str()
        ),
        ("mine.", "mine")
    );
}

#[test]
fn dead_letters_map_to_entities_by_topic() {
    assert_eq!(
        entity_of_topic("demo_1.crm.raw.bullhorn.candidate"),
        Some("candidate")
    );
    assert_eq!(
        entity_of_topic("crm.raw.bullhorn.joborder"),
        Some("position")
    );
    assert_eq!(entity_of_topic("crm.canonical.position"), Some("position"));
    assert_eq!(entity_of_topic("crm.dlq"), None);
    // Salesforce's raw topics are lower case: a dead-lettered `Position__c` is a position.
    assert_eq!(
        entity_of_topic("demo_1.crm.raw.salesforce.position__c"),
        Some("position")
    );
    assert_eq!(
        entity_of_topic("demo_1.crm.raw.salesforce.contact"),
        Some("candidate")
    );
    assert_eq!(
        entity_of_topic("x.crm.raw.hubspot.contact"),
        Some("candidate")
    );
    assert_eq!(entity_of_topic("crm.raw.hubspot.job"), Some("position"));
    // Ids of two CRMs never meet: a dead letter's record is `<crm>:<id>`.
    assert_eq!(record_key("x.crm.raw.hubspot.contact", "42"), "hubspot:42");
    assert_eq!(
        record_key("crm.raw.bullhorn.candidate", "42"),
        "bullhorn:42"
    );
    assert_eq!(
        record_key("crm.canonical.candidate", "hubspot:42"),
        "hubspot:42"
    );
}

#[test]
fn metrics_port_zero_and_taken_ports_resolve_to_free_ones() {
    let (addr, note) = resolve_metrics_listen("127.0.0.1:0").unwrap();
    assert!(note.is_none());
    assert_ne!(addr, "127.0.0.1:0");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let (addr, note) = resolve_metrics_listen(&taken_addr).unwrap();
    assert_ne!(addr, taken_addr);
    assert!(note.unwrap().contains("in use"));
    assert_eq!(resolve_metrics_listen(" ").unwrap(), (String::new(), None));
}

#[test]
fn completeness_needs_rows_dead_letters_and_vectors_to_add_up() {
    let c = EntityCounts {
        rows: 90,
        live: 80,
        tombstoned: 10,
        vectors: 79,
        dead_lettered: 10,
        not_embedded: 1,
        rows_by_crm: Default::default(),
    };
    let s = SourceCounts {
        records: 100,
        deleted: 10,
    };
    assert!(Summary::entity_complete(&c, &s));
    assert!(!Summary::entity_complete(
        &EntityCounts {
            vectors: 70,
            ..c.clone()
        },
        &s
    ));
    assert!(!Summary::entity_complete(
        &c,
        &SourceCounts { records: 101, ..s }
    ));
    assert_eq!(thousands(1_234_567), "1,234,567");
    assert_eq!(thousands(-1_000), "-1,000");
}

#[test]
fn top_matches_show_occupation_and_skills_beside_the_name() {
    let candidate =
        |rank, name: &str, occupation: Option<&str>, skills: &[&str]| MatchedCandidate {
            rank,
            candidate_id: rank.to_string(),
            name: name.into(),
            score: 0.75,
            occupation: occupation.map(Into::into),
            skills: skills.iter().map(|s| s.to_string()).collect(),
        };
    let summary = Summary {
        topic_prefix: "demo_1.".into(),
        schema: "demo_1".into(),
        model: "all-MiniLM-L6-v2".into(),
        elapsed_seconds: 1.0,
        caught_up: true,
        source: SourceTruth::default(),
        hubspot: None,
        salesforce: None,
        candidates: EntityCounts::default(),
        positions: EntityCounts::default(),
        matches: 3,
        dead_letters: 0,
        dead_letters_by_rule: Vec::new(),
        records_per_second: 1.0,
        complete: true,
        top_matches: vec![PositionMatches {
            position_id: "101".into(),
            title: "Senior Rust Engineer".into(),
            candidates: vec![
                candidate(
                    1,
                    "Ada Doe",
                    Some("Senior Rust Developer"),
                    &["Rust", "Tokio"],
                ),
                candidate(2, "Bo Doe", Some("Systems Programmer"), &[]),
                candidate(3, "Cy Doe", None, &["C++"]),
            ],
        }],
    };
    let out = summary.render();
    let lines: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.contains("== top matches =="))
        .collect();
    assert_eq!(lines[1], "  Senior Rust Engineer (position 101)", "{out}");
    assert_eq!(
        lines[2],
        "    1. 0.750  Ada Doe (candidate 1) — Senior Rust Developer; Rust, Tokio"
    );
    assert_eq!(
        lines[3],
        "    2. 0.750  Bo Doe (candidate 2) — Systems Programmer"
    );
    assert_eq!(
        lines[4],
        "    3. 0.750  Cy Doe (candidate 3) — (no occupation); C++"
    );
}
