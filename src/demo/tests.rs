//! Tests of the demo's pure parts.

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
