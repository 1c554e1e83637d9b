//! The foundation against real services: Avro events through Kafka with a consumer restart,
//! migrations applied twice and concurrently, pgvector present, config errors that name keys.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::TopicPartitionList;

use crmflow::codec;
use crmflow::kafka::{self, trace, Producer, TopicSpec};
use crmflow::model::{ChangeEvent, Op};

use crate::common::{crmflow_bin, isolated_config};

fn event(i: usize) -> ChangeEvent {
    ChangeEvent::new(
        "bullhorn",
        "Candidate",
        &i.to_string(),
        if i % 10 == 0 { Op::Delete } else { Op::Upsert },
        1_700_000_000_000 + (i as i64 / 7),
        1_700_000_100_000,
        vec!["email".into()],
        "poll",
        format!(r#"{{"id":{i},"firstName":"Name {i}","note":"ünïcødé"}}"#),
    )
}

/// Reads up to `limit` messages, committing each batch synchronously; returns what it read.
async fn consume(
    cfg: &crmflow::config::Config,
    topic: &str,
    group: &str,
    limit: usize,
) -> Vec<ChangeEvent> {
    let mut consumer = kafka::consumer(&cfg.kafka, group, &[topic], None).unwrap();
    let mut out = Vec::new();
    let mut since_commit = 0;
    while out.len() < limit {
        let msg = consumer
            .recv_until(tokio::time::Instant::now() + Duration::from_secs(30))
            .await
            .unwrap()
            .expect("no message within 30 s")
            .msg;
        assert!(
            trace::extract(msg.headers()).is_some(),
            "traceparent header"
        );
        out.push(
            codec::change_event()
                .decode(msg.payload().unwrap())
                .unwrap(),
        );
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(
            msg.topic(),
            msg.partition(),
            rdkafka::Offset::Offset(msg.offset() + 1),
        )
        .unwrap();
        consumer.store_offsets(&tpl).unwrap();
        since_commit += 1;
        if since_commit >= 500 || out.len() == limit {
            consumer.commit_consumer_state(CommitMode::Sync).unwrap();
            since_commit = 0;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_survive_a_consumer_restart() {
    let cfg = isolated_config("kafka_rt");
    let topics = kafka::Topics::new(&cfg.kafka);
    let topic = topics.raw("bullhorn", "Candidate");
    kafka::ensure_topics(
        &cfg.kafka,
        &[TopicSpec {
            name: topic.clone(),
            partitions: 3,
            compacted: false,
        }],
    )
    .await
    .unwrap();

    let producer = Producer::new(&cfg.kafka).unwrap();
    let sent: Vec<ChangeEvent> = (0..10_000).map(event).collect();
    let mut deliveries = Vec::with_capacity(sent.len());
    for ev in &sent {
        let tp = trace::TraceParent::current_or_new();
        let bytes = codec::change_event().encode(ev).unwrap();
        deliveries.push(
            producer
                .send(
                    &topic,
                    ev.record_id.as_bytes(),
                    &bytes,
                    trace::inject(OwnedHeaders::new(), &tp),
                )
                .await
                .unwrap(),
        );
    }
    for d in deliveries {
        d.await.expect("delivery acknowledged");
    }

    let group = topics.group("roundtrip");
    let first = consume(&cfg, &topic, &group, 4_000).await;
    // A new consumer in the same group resumes from the committed offsets.
    let second = consume(&cfg, &topic, &group, 6_000).await;

    let mut got: HashMap<String, ChangeEvent> = HashMap::new();
    for ev in first.into_iter().chain(second) {
        assert!(
            got.insert(ev.event_id.clone(), ev).is_none(),
            "an event was delivered twice across the restart"
        );
    }
    assert_eq!(got.len(), 10_000, "nothing missing");
    for ev in &sent {
        assert_eq!(
            got.get(&ev.event_id),
            Some(ev),
            "event {} identical",
            ev.record_id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_twice_and_concurrently_with_pgvector() {
    let cfg = isolated_config("migrate");
    // Two processes' worth of concurrent migrations, then one more run.
    let (a, b) = tokio::join!(crmflow::store::migrate(&cfg), crmflow::store::migrate(&cfg));
    let (a, b) = (a.unwrap(), b.unwrap());
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .count();
    assert!(
        a.is_empty() || b.is_empty(),
        "one process applied everything, the other waited and found nothing: {a:?} {b:?}"
    );
    assert_eq!(
        a.len() + b.len(),
        files,
        "every migration applied exactly once: {a:?} {b:?}"
    );
    assert!(crmflow::store::migrate(&cfg).await.unwrap().is_empty());

    let client = crmflow::store::connect(&cfg).await.unwrap();
    let ext: String = client
        .query_one(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ext.starts_with("0."), "pgvector version {ext}");
    let tables: Vec<String> = client
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1",
            &[&cfg.postgres.schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for t in [
        "candidates",
        "dlq_replays",
        "embeddings",
        "matches",
        "positions",
        "source_cursors",
        "stage_control",
        "stage_offsets",
    ] {
        assert!(tables.iter().any(|x| x == t), "table {t} in {tables:?}");
    }
    // The vector type works in the test schema.
    let d: f64 = client
        .query_one("SELECT '[1,0,0]'::vector <=> '[0,1,0]'::vector", &[])
        .await
        .unwrap()
        .get(0);
    assert!((d - 1.0).abs() < 1e-9);
    client
        .batch_execute(&format!("DROP SCHEMA \"{}\" CASCADE", cfg.postgres.schema))
        .await
        .unwrap();
}

#[test]
fn config_error_is_one_clear_line() {
    let out = std::process::Command::new(crmflow_bin())
        .args(["config", "check"])
        .env("DB_PORT", "fifty")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("postgres.port") && err.contains("DB_PORT"),
        "{err}"
    );

    let out = std::process::Command::new(crmflow_bin())
        .args(["config", "check"])
        .env("DB_PASSWORD", "pw-never-shown")
        .env("BULLHORN_CLIENT_SECRET", "cs-never-shown")
        .output()
        .unwrap();
    assert!(out.status.success());
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("[postgres]") && shown.contains("[redacted]"),
        "{shown}"
    );
    assert!(!shown.contains("never-shown"), "{shown}");
}
