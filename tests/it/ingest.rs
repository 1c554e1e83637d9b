//! Ingest from the Bullhorn simulator (in-process) into real Kafka, cursors in real Postgres: full sync
//! against the simulator's ground truth (`/sim/state/{Type}`), incremental changes, tie-heavy data, faults
//! (session expiry, 429 storms, 5xx bursts, dropped connections, latency), SIGKILL of `crmflow run --stages
//! ingest` mid-sync, and the event reader's crash recovery.

use std::collections::HashMap;
use std::time::Duration;

use crmflow::config::{BullhornMode, Config};
use crmflow::kafka::{self, trace, Producer, Topics};
use crmflow::model::{ChangeEvent, Op};
use crmflow::sources::bullhorn::{self, events::EventReader};
use crmflow::sources::{cursors::CursorStore, emit::Emitter};
use crmflow_bullhorn::client::BullhornClient;
use crmflow_bullhorn::sim::{FaultsPatch, SimConfig, SimHandle, Simulator};
use futures::StreamExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::common::{crmflow_bin, isolated_config};

pub(crate) async fn start_sim(candidates: usize, job_orders: usize, tie_share: f64) -> SimHandle {
    Simulator::start(SimConfig {
        candidates,
        job_orders,
        tie_share,
        ..SimConfig::for_tests()
    })
    .await
    .expect("simulator")
}

/// A namespaced configuration pointing at the simulator, with topics and schema created.
pub(crate) async fn setup(test: &str, sim: &SimHandle) -> Config {
    let mut cfg = isolated_config(test);
    let c = sim.credentials();
    let b = &mut cfg.bullhorn;
    b.rest_url = sim.rest_services_url();
    b.client_id = Some(c.client_id);
    b.client_secret = Some(c.client_secret.into());
    b.username = Some(c.username);
    b.password = Some(c.password.into());
    b.poll_interval_secs = 1;
    crmflow::store::migrate(&cfg).await.expect("migrate");
    kafka::ensure_topics(&cfg.kafka, &crmflow::pipeline::topic_specs(&cfg))
        .await
        .expect("topics");
    cfg
}

async fn ingest_until_caught_up(cfg: &Config) {
    tokio::time::timeout(
        Duration::from_secs(90),
        bullhorn::run_with(cfg, CancellationToken::new(), true),
    )
    .await
    .expect("ingest within 90 s")
    .expect("ingest");
}

/// Every event on an entity's raw topic, from the beginning to the current end.
pub(crate) async fn raw_events(cfg: &Config, entity: &str) -> Vec<ChangeEvent> {
    raw_events_of(cfg, "bullhorn", entity).await
}

/// Every event on `crm`'s raw topic of `entity`, from the beginning to the current end; each
/// message carries a `traceparent` header.
pub(crate) async fn raw_events_of(cfg: &Config, crm: &str, entity: &str) -> Vec<ChangeEvent> {
    read_raw_events(cfg, crm, entity, true).await
}

/// Every event on `crm`'s raw topic of `entity`, from the beginning to the current end, each
/// message keyed by its record id; `traced`: each also carries a `traceparent` header.
pub(crate) async fn read_raw_events(
    cfg: &Config,
    crm: &str,
    entity: &str,
    traced: bool,
) -> Vec<ChangeEvent> {
    let topic = Topics::new(&cfg.kafka).raw(crm, entity);
    let consumer: StreamConsumer = kafka::client_config(&cfg.kafka)
        .set(
            "group.id",
            format!("{}check-{}", cfg.kafka.topic_prefix, rand::random::<u32>()),
        )
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut ends = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in 0..cfg.kafka.partitions {
        // A loaded machine can make one metadata round trip slow: try again before failing.
        let mut tries = 0;
        let (lo, hi) = loop {
            match consumer.fetch_watermarks(&topic, p, Duration::from_secs(10)) {
                Ok(w) => break w,
                Err(e) if tries < 5 => {
                    tries += 1;
                    eprintln!("watermarks of {topic}/{p}: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => panic!("watermarks of {topic}/{p}: {e}"),
            }
        };
        if hi > lo {
            ends.insert(p, hi);
            tpl.add_partition_offset(&topic, p, Offset::Beginning)
                .expect("assign");
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return out;
    }
    consumer.assign(&tpl).expect("assign");
    let mut stream = consumer.stream();
    while !ends.is_empty() {
        let msg = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("message within 30 s")
            .expect("stream")
            .expect("message");
        assert!(
            !traced || trace::extract(msg.headers()).is_some(),
            "traceparent header"
        );
        let e = crmflow::codec::change_event()
            .decode(msg.payload().expect("payload"))
            .expect("avro");
        assert_eq!(msg.key(), Some(e.record_id.as_bytes()), "key = record id");
        out.push(e);
        if ends
            .get(&msg.partition())
            .is_some_and(|&hi| msg.offset() + 1 >= hi)
        {
            ends.remove(&msg.partition());
        }
    }
    out
}

/// The simulator's ground truth over HTTP: `/sim/state/{Type}` (JSON lines).
pub(crate) async fn sim_state(sim: &SimHandle, entity: &str) -> Vec<Value> {
    let body = reqwest::get(format!("{}/sim/state/{entity}", sim.base_url()))
        .await
        .expect("state")
        .text()
        .await
        .expect("state body");
    body.lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// Asserts that every simulator record is on the raw topic at its current version (and op); returns the
/// number of events read.
async fn assert_complete(cfg: &Config, sim: &SimHandle, entity: &str, mode: &str) -> usize {
    assert_complete_modes(cfg, sim, entity, &[mode]).await
}

/// [`assert_complete`] for events of any of `modes`.
pub(crate) async fn assert_complete_modes(
    cfg: &Config,
    sim: &SimHandle,
    entity: &str,
    modes: &[&str],
) -> usize {
    let events = raw_events(cfg, entity).await;
    let mut latest: HashMap<String, &ChangeEvent> = HashMap::new();
    for e in &events {
        assert_eq!(e.crm, "bullhorn");
        assert_eq!(e.entity, entity);
        assert!(modes.contains(&e.source_mode.as_str()), "{}", e.source_mode);
        let record: Value = serde_json::from_str(&e.record).expect("record is JSON");
        assert_eq!(record["id"].to_string(), e.record_id);
        let slot = latest.entry(e.record_id.clone()).or_insert(e);
        if e.source_version > slot.source_version {
            *slot = e;
        }
    }
    let truth = sim_state(sim, entity).await;
    let mut missing = Vec::new();
    for r in &truth {
        let id = r["id"].to_string();
        let version = r["dateLastModified"].as_i64().expect("dateLastModified");
        let deleted = r["isDeleted"].as_bool().unwrap_or(false);
        match latest.get(&id) {
            Some(e) if e.source_version == version => {
                assert_eq!(e.op == Op::Delete, deleted, "{entity} {id}: op {:?}", e.op);
            }
            other => missing.push((id, version, other.map(|e| e.source_version))),
        }
    }
    assert!(
        missing.is_empty(),
        "{entity}: {} of {} records missing or stale, e.g. {:?}",
        missing.len(),
        truth.len(),
        &missing[..missing.len().min(5)]
    );
    events.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_sync_then_updates_inserts_and_soft_deletes_arrive() {
    let sim = start_sim(2_000, 300, 0.3).await;
    let cfg = setup("ingest_full", &sim).await;
    ingest_until_caught_up(&cfg).await;
    let n = assert_complete(&cfg, &sim, "Candidate", "poll").await;
    assert_eq!(n, 2_000, "a first sync sends each record once");
    assert_complete(&cfg, &sim, "JobOrder", "poll").await;

    // Changes made through the simulator arrive on the next poll.
    for id in 1..=20 {
        sim.update(
            "Candidate",
            id,
            json!({"occupation": format!("Engineer {id}")}),
        )
        .expect("update");
    }
    for id in 21..=25 {
        sim.soft_delete("Candidate", id).expect("soft delete");
    }
    let new_id = sim
        .insert(
            "Candidate",
            json!({"firstName": "Ada", "lastName": "Lovelace", "name": "Ada Lovelace", "status": "Active"}),
        )
        .expect("insert");
    sim.update("JobOrder", 1, json!({"title": "Staff Engineer"}))
        .expect("job update");
    ingest_until_caught_up(&cfg).await;
    let n = assert_complete(&cfg, &sim, "Candidate", "poll").await;
    assert!(n >= 2_026, "{n}");
    assert_complete(&cfg, &sim, "JobOrder", "poll").await;
    let events = raw_events(&cfg, "Candidate").await;
    assert!(events.iter().any(|e| e.record_id == new_id.to_string()));
    assert_eq!(
        events
            .iter()
            .filter(|e| e.op == Op::Delete && (21..=25).any(|i| e.record_id == i.to_string()))
            .count(),
        5
    );
    let pool = crmflow::store::pool(&cfg).expect("pool");
    let row = pool
        .get()
        .await
        .expect("pg")
        .query_one(
            "SELECT cursor FROM source_cursors WHERE source = 'bullhorn' AND entity = 'Candidate'",
            &[],
        )
        .await
        .expect("cursor row");
    let cursor: Value = row.get(0);
    assert!(cursor["date_last_modified"].as_i64().is_some(), "{cursor}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_records_in_one_millisecond_across_pages() {
    // tie_share 0.8 of 5,000: one import of 2,000 records in one millisecond plus smaller ones.
    let sim = start_sim(5_000, 20, 0.8).await;
    let mut by_ms: HashMap<i64, usize> = HashMap::new();
    for r in sim.records("Candidate").expect("records") {
        *by_ms
            .entry(r["dateLastModified"].as_i64().unwrap())
            .or_default() += 1;
    }
    let biggest = by_ms.values().copied().max().unwrap_or(0);
    assert!(biggest > 1_000, "biggest tie {biggest}");
    let mut cfg = setup("ingest_ties", &sim).await;
    cfg.bullhorn.page_size = 300;
    cfg.bullhorn.entities = vec!["Candidate".into()];
    ingest_until_caught_up(&cfg).await;
    let n = assert_complete(&cfg, &sim, "Candidate", "poll").await;
    assert_eq!(n, 5_000, "no repeats within a sync");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_expiry_rate_limit_storms_server_errors_and_drops_lose_nothing() {
    let sim = start_sim(3_000, 200, 0.3).await;
    let mut cfg = setup("ingest_faults", &sim).await;
    cfg.bullhorn.page_size = 100;
    sim.set_faults(FaultsPatch {
        latency_ms: Some(15),
        error_rate: Some(0.05),
        drop_rate: Some(0.03),
        ..Default::default()
    })
    .expect("faults");
    // Faults keyed to progress, so each kind happens during the sync however fast it runs: every 8
    // successful API requests, in turn, a 429 storm, a 5xx burst, dropped connections, every session expired.
    let stop = CancellationToken::new();
    let chaos = async {
        let mut next = 8u64;
        let mut round = 0u32;
        while !stop.is_cancelled() {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let api: u64 = sim
                .stats()
                .requests
                .iter()
                .filter(|(k, _)| !k.starts_with("sim/"))
                .filter_map(|(_, m)| m.get("200"))
                .sum();
            if api < next {
                continue;
            }
            next = api + 8;
            round += 1;
            match round % 4 {
                1 => sim.set_faults(FaultsPatch {
                    rate_limit_next: Some(12),
                    ..Default::default()
                }),
                2 => sim.set_faults(FaultsPatch {
                    fail_next: Some(4),
                    ..Default::default()
                }),
                3 => sim.set_faults(FaultsPatch {
                    drop_next: Some(2),
                    ..Default::default()
                }),
                _ => {
                    sim.expire_all_sessions();
                    continue;
                }
            }
            .expect("faults");
        }
    };
    let ingest = async {
        let r = tokio::time::timeout(
            Duration::from_secs(90),
            bullhorn::run_with(&cfg, CancellationToken::new(), true),
        )
        .await;
        stop.cancel();
        r
    };
    let (r, ()) = tokio::join!(ingest, chaos);
    match r {
        Err(_) => panic!("timeout; stats {:?} faults {:?}", sim.stats(), sim.faults()),
        Ok(r) => r.expect("ingest"),
    }
    let stats = sim.stats();
    let statuses: Vec<String> = stats
        .requests
        .values()
        .flat_map(|m| m.keys().cloned())
        .collect();
    for s in ["401", "429", "500", "dropped"] {
        assert!(
            statuses.iter().any(|x| x == s) || (s == "500" && statuses.iter().any(|x| x == "503")),
            "fault {s} never happened: {stats:?}"
        );
    }
    sim.set_faults(FaultsPatch {
        error_rate: Some(0.0),
        drop_rate: Some(0.0),
        latency_ms: Some(0),
        ..Default::default()
    })
    .expect("faults off");
    assert_complete(&cfg, &sim, "Candidate", "poll").await;
    assert_complete(&cfg, &sim, "JobOrder", "poll").await;
}

fn spawn_ingest(cfg: &Config, sim: &SimHandle, extra: &[(&str, &str)]) -> std::process::Child {
    let c = sim.credentials();
    let mut cmd = std::process::Command::new(crmflow_bin());
    cmd.args(["run", "--stages", "ingest"])
        .env("CRMFLOW_KAFKA__TOPIC_PREFIX", &cfg.kafka.topic_prefix)
        .env(
            "CRMFLOW_KAFKA__PARTITIONS",
            cfg.kafka.partitions.to_string(),
        )
        .env("CRMFLOW_POSTGRES__SCHEMA", &cfg.postgres.schema)
        .env("KAFKA_BOOTSTRAP_SERVERS", &cfg.kafka.bootstrap_servers)
        .env("DB_HOST", &cfg.postgres.host)
        .env("DB_PORT", cfg.postgres.port.to_string())
        .env("BULLHORN_REST_URL", sim.rest_services_url())
        .env("BULLHORN_CLIENT_ID", c.client_id)
        .env("BULLHORN_CLIENT_SECRET", c.client_secret)
        .env("BULLHORN_USERNAME", c.username)
        .env("BULLHORN_PASSWORD", c.password)
        .env("CRMFLOW_METRICS__LISTEN", "")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn crmflow")
}

pub(crate) async fn saved_cursor(cfg: &Config, entity: &str) -> Option<Value> {
    let pool = crmflow::store::pool(cfg).expect("pool");
    let client = pool.get().await.ok()?;
    client
        .query_opt(
            "SELECT cursor FROM source_cursors WHERE source = 'bullhorn' AND entity = $1",
            &[&entity],
        )
        .await
        .ok()
        .flatten()
        .map(|r| r.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_sync_then_restart_loses_nothing() {
    let sim = start_sim(4_000, 100, 0.3).await;
    sim.set_latency_ms(60);
    let cfg = setup("ingest_kill", &sim).await;
    let slow = [
        ("CRMFLOW_BULLHORN__PAGE_SIZE", "100"),
        ("CRMFLOW_BULLHORN__FETCH_CONCURRENCY", "2"),
    ];
    let mut child = spawn_ingest(&cfg, &sim, &slow);
    // Kill once a cursor was saved but before the backfill ends.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if saved_cursor(&cfg, "Candidate").await.is_some() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no cursor saved within 60 s"
        );
        assert!(
            child.try_wait().expect("wait").is_none(),
            "ingest exited early"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let partial = raw_events(&cfg, "Candidate").await.len();
    assert!(
        partial < 4_000,
        "killed too late to test anything: {partial}"
    );

    sim.set_latency_ms(0);
    // `run` without --until-caught-up keeps polling: wait until the topic is complete, then stop it.
    let mut again = spawn_ingest(&cfg, &sim, &slow);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let n = raw_events(&cfg, "Candidate").await.len();
        let saved = saved_cursor(&cfg, "Candidate").await;
        let max = sim
            .records("Candidate")
            .expect("records")
            .iter()
            .map(|r| r["dateLastModified"].as_i64().unwrap())
            .max();
        if n >= 4_000
            && saved
                .as_ref()
                .and_then(|c| c["date_last_modified"].as_i64())
                == max
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "restart did not catch up: {n} events"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    again.kill().expect("stop");
    again.wait().expect("reap");
    assert_complete(&cfg, &sim, "Candidate", "poll").await;
    assert_complete(&cfg, &sim, "JobOrder", "poll").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_mode_regets_batches_lost_in_a_crash() {
    let sim = Simulator::start(SimConfig {
        max_events_per_poll: 15,
        ..SimConfig::for_tests()
    })
    .await
    .expect("simulator");
    let mut cfg = setup("ingest_events", &sim).await;
    cfg.bullhorn.mode = BullhornMode::Events;
    cfg.bullhorn.subscription_id = "crmflow-it".into();
    cfg.bullhorn.max_events = 15;
    let b = &cfg.bullhorn;
    let client = BullhornClient::connect(bullhorn::client_config(b).expect("client config"))
        .await
        .expect("login");
    let producer = Producer::new(&cfg.kafka).expect("producer");
    let topics = Topics::new(&cfg.kafka);
    let emitters = b
        .entities
        .iter()
        .map(|e| {
            (
                Emitter::new(
                    producer.clone(),
                    "bullhorn",
                    e,
                    topics.raw("bullhorn", e),
                    "events",
                ),
                bullhorn::fields_of(b, e),
            )
        })
        .collect();
    let cursors = CursorStore::new(crmflow::store::pool(&cfg).expect("pool"), "bullhorn");
    let mut reader = EventReader::open(
        client.clone(),
        &b.subscription_id,
        b.max_events,
        Duration::from_secs(1),
        emitters,
        cursors,
    )
    .await
    .expect("open");

    let mut changed = Vec::new();
    for id in 1..=30 {
        sim.update(
            "Candidate",
            id,
            json!({"email": format!("c{id}@example.com")}),
        )
        .expect("update");
        changed.push(("Candidate", id));
    }
    for id in 31..=35 {
        sim.soft_delete("Candidate", id).expect("delete");
        changed.push(("Candidate", id));
    }
    for id in 1..=3 {
        sim.update("Candidate", id, json!({"phone": "555-0100"}))
            .expect("again");
    }
    sim.update("JobOrder", 2, json!({"title": "Platform Lead"}))
        .expect("job");
    changed.push(("JobOrder", 2));

    // Crash 1: the reader saved batch 1 as `processing`, then died before emitting it.
    let first = reader.fetch_batch().await.expect("poll").expect("batch 1");
    assert_eq!(first.request_id, 1);
    drop(reader);
    // Crash 2: batch 2 was handed out, but nothing was saved (the poll's answer was lost).
    let second = client
        .poll_events(&b.subscription_id, 15)
        .await
        .expect("poll")
        .expect("batch 2");
    assert_eq!(second.request_id, 2);

    ingest_until_caught_up(&cfg).await;
    let events = raw_events(&cfg, "Candidate").await;
    for (entity, id) in &changed {
        let truth = sim.get(entity, *id).expect("record");
        let version = truth["dateLastModified"].as_i64().unwrap();
        let evs = if *entity == "Candidate" {
            events.clone()
        } else {
            raw_events(&cfg, entity).await
        };
        let e = evs
            .iter()
            .find(|e| e.record_id == id.to_string() && e.source_version == version)
            .unwrap_or_else(|| panic!("{entity} {id} at {version} missing"));
        assert_eq!(e.source_mode, "events");
        let deleted = truth["isDeleted"].as_bool().unwrap_or(false);
        assert_eq!(e.op == Op::Delete, deleted, "{entity} {id}");
    }
    let c1 = events
        .iter()
        .find(|e| e.record_id == "1")
        .expect("candidate 1");
    assert!(
        c1.changed_fields.contains(&"email".to_string()),
        "{:?}",
        c1.changed_fields
    );
    let state = saved_cursor(&cfg, "events/crmflow-it")
        .await
        .expect("state");
    assert_eq!(state["state"], "done", "{state}");
    assert!(state["request_id"].as_u64().unwrap() >= 3, "{state}");
}

/// Found by the soak: a Bullhorn 5xx storm longer than the client's own retries (the login
/// answered 503 six times) ended the source, and with it `crmflow run` (every stage of the
/// process). The source now waits the outage out and catches up once the CRM answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crm_outage_longer_than_the_client_retries_does_not_end_the_source() {
    let sim = start_sim(120, 10, 0.0).await;
    let cfg = setup("ingestoutage", &sim).await;
    // More failures in a row than the client retries: the first login attempts all give up.
    sim.fail_next(25);
    tokio::time::timeout(
        Duration::from_secs(120),
        crmflow::run::run(cfg.clone(), &[crmflow::runtime::StageName::Ingest], true),
    )
    .await
    .expect("ingest caught up within 120 s")
    .expect("ingest outlived the outage");
    assert_complete(&cfg, &sim, "Candidate", "poll").await;
    assert!(sim.stats().total_requests > 25, "the outage was hit");
}
