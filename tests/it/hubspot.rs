//! HubSpot end to end against the HubSpot simulator (in process, real sockets), real Kafka and
//! Postgres: a full poll sync equals the simulator's records (rows or dead letters); webhooks
//! under duplicates, reordering, retries and a SIGKILLed `crmflow run --stages ingress` lose
//! nothing and apply nothing twice; bad signatures, old timestamps and replays are refused and
//! emit nothing; an incremental window with more than 10,000 changed records skips nothing.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crmflow::config::{Config, HubspotConfig, HubspotMode, HubspotObject};
use crmflow::kafka;
use crmflow::model::{ChangeEvent, Lineage, Op};
use crmflow::operators::{self, Canonical};
use crmflow::runtime::StageName;
use crmflow::sources::hubspot::{self, record};
use crmflow_hubspot::signature::{sign_v3, SIGNATURE_V3_HEADER, TIMESTAMP_HEADER};
use crmflow_hubspot::sim::{SimConfig, SimHandle, Simulator};
use crmflow_hubspot::wire::{modified_property, CrmObject};
use tokio_util::sync::CancellationToken;

use crate::common::{crmflow_cmd, isolated_config, ChildGuard};
use crate::fixtures::dead_letters;

/// (entity, simulator object name).
const OBJECTS: [(&str, &str); 2] = [("contact", "contacts"), ("job", "jobs")];

pub(crate) async fn start_sim(cfg: SimConfig) -> SimHandle {
    Simulator::start(cfg).await.expect("hubspot simulator")
}

/// A namespaced configuration reading contacts and jobs from `sim` (Bullhorn off), with topics
/// and schema created.
pub(crate) async fn setup(test: &str, sim: &SimHandle) -> Config {
    let mut cfg = isolated_config(test);
    cfg.bullhorn.enabled = false;
    cfg.hubspot = Some(HubspotConfig {
        base_url: sim.base_url(),
        access_token: Some(sim.private_app_token().into()),
        objects: HubspotObject::contacts_and_jobs(sim.jobs_object_type_id()),
        poll_interval_secs: 1,
        overlap_ms: 2_000,
        mode: HubspotMode::Poll,
        requests_per_10s: 10_000,
        search_requests_per_sec: 1_000,
        ..Default::default()
    });
    cfg.ingress.client_secret = Some(sim.config().webhook_key().to_owned().into());
    crmflow::store::migrate(&cfg).await.expect("migrate");
    kafka::ensure_topics(&cfg.kafka, &crmflow::pipeline::topic_specs(&cfg))
        .await
        .expect("topics");
    cfg
}

/// Every event on `crm.raw.hubspot.<entity>`, from the beginning to the current end.
pub(crate) async fn raw_events(cfg: &Config, entity: &str) -> Vec<ChangeEvent> {
    crate::ingest::read_raw_events(cfg, "hubspot", entity, false).await
}

/// The newest event per record id; every event of one (id, version, op) has one event id.
fn latest(events: &[ChangeEvent]) -> HashMap<String, &ChangeEvent> {
    let mut ids: HashMap<(String, i64, Op), &str> = HashMap::new();
    let mut out: HashMap<String, &ChangeEvent> = HashMap::new();
    for e in events {
        let id = ids
            .entry((e.record_id.clone(), e.source_version, e.op))
            .or_insert(&e.event_id);
        assert_eq!(*id, e.event_id, "one version, one event id");
        let slot = out.entry(e.record_id.clone()).or_insert(e);
        if (e.source_version, e.op == Op::Delete) > (slot.source_version, slot.op == Op::Delete) {
            *slot = e;
        }
    }
    out
}

/// (version, deleted) of a simulator object as the pipeline must see it.
fn truth_version(obj: &CrmObject, object: &str) -> (i64, bool) {
    if obj.archived {
        (record::archived_version(obj).expect("archivedAt"), true)
    } else {
        (
            record::version(obj, modified_property(object)).expect("modified"),
            false,
        )
    }
}

/// What the operators make of a simulator object.
fn expected(entity: &str, object: &str, obj: &CrmObject) -> Result<Canonical, String> {
    let (version, deleted) = truth_version(obj, object);
    let op = if deleted { Op::Delete } else { Op::Upsert };
    let ev = ChangeEvent::new(
        "hubspot",
        entity,
        &obj.id,
        op,
        version,
        chrono::Utc::now().timestamp_millis(),
        vec![],
        "poll",
        serde_json::to_string(obj).unwrap(),
    );
    let lineage = Lineage {
        crm: "hubspot".into(),
        crm_id: obj.id.clone(),
        source_version: version,
        event_id: ev.event_id.clone(),
        raw_topic: String::new(),
        raw_partition: 0,
        raw_offset: 0,
        trace_id: None,
    };
    operators::normalize(&ev, lineage, &Default::default()).map_err(|r| r.rule.to_owned())
}

/// `crm_id -> (source_version, deleted)` of HubSpot rows of `table`.
async fn rows(cfg: &Config, table: &str) -> HashMap<String, (i64, bool)> {
    let client = crmflow::store::connect(cfg).await.unwrap();
    client
        .query(
            &format!(
                "SELECT crm_id, source_version, deleted_at IS NOT NULL FROM {table} WHERE crm = 'hubspot'"
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect()
}

/// Postgres equals the simulator: every object is a row at its version (tombstoned when
/// archived) or a dead letter under the rule the operators give it; any other row is a
/// merged-away id, tombstoned. Returns (rows, dead letters) per entity.
async fn assert_postgres_equals_sim(cfg: &Config, sim: &SimHandle) -> Vec<(usize, usize)> {
    let rejected: HashSet<(String, String)> = dead_letters(cfg)
        .into_iter()
        .map(|(_, rule, key)| (key, rule))
        .collect();
    let mut counts = Vec::new();
    for ((entity, object), table) in OBJECTS.iter().zip(["candidates", "positions"]) {
        let rows = rows(cfg, table).await;
        let truth = sim.records(object).expect("records");
        let (mut ok, mut dlq) = (0, 0);
        let mut problems = Vec::new();
        for obj in &truth {
            let want = truth_version(obj, object);
            match expected(entity, object, obj) {
                Err(rule) => {
                    if !rejected.contains(&(obj.id.clone(), rule.clone())) {
                        let got: Vec<&String> = rejected
                            .iter()
                            .filter(|(k, _)| *k == obj.id)
                            .map(|(_, r)| r)
                            .collect();
                        problems.push(format!(
                            "{entity} {} rejected by {rule}, not in the DLQ (dead letters: {got:?}, row {:?})",
                            obj.id,
                            rows.get(&obj.id)
                        ));
                    }
                    dlq += 1;
                }
                Ok(_) => {
                    if rows.get(&obj.id) != Some(&want) {
                        problems.push(format!(
                            "{entity} {}: row {:?}, want {want:?}",
                            obj.id,
                            rows.get(&obj.id)
                        ));
                    }
                    ok += 1;
                }
            }
        }
        let known: HashSet<&str> = truth.iter().map(|o| o.id.as_str()).collect();
        for (id, (_, deleted)) in &rows {
            if !known.contains(id.as_str()) && !deleted {
                problems.push(format!("{entity} {id}: live row of no simulator object"));
            }
        }
        assert!(
            problems.is_empty(),
            "{} problems, e.g. {:?}",
            problems.len(),
            &problems[..problems.len().min(8)]
        );
        counts.push((ok, dlq));
    }
    counts
}

async fn pipeline_one_shot(cfg: &Config, stages: &[StageName]) {
    tokio::time::timeout(
        Duration::from_secs(240),
        crmflow::run::run(cfg.clone(), stages, true),
    )
    .await
    .expect("one-shot pipeline within 240 s")
    .expect("one-shot pipeline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_poll_sync_equals_simulator_state_rows_or_dlq() {
    let sim = start_sim(SimConfig {
        contacts: 400,
        jobs: 80,
        ..SimConfig::for_tests()
    })
    .await;
    // History before the first sync: updates, archives, restores and merges.
    sim.random_changes(200);
    let cfg = setup("hs_full", &sim).await;
    pipeline_one_shot(
        &cfg,
        &[StageName::Ingest, StageName::Normalize, StageName::Sink],
    )
    .await;
    let counts = assert_postgres_equals_sim(&cfg, &sim).await;
    assert!(
        counts[0].0 > 300 && counts[0].1 > 0,
        "contacts rows and rejects: {counts:?}"
    );
    assert!(counts[1].0 > 40, "jobs: {counts:?}");

    // Incremental: more changes (creates, updates, archives, restores, merges), a second pass.
    sim.random_changes(300);
    let archived = sim
        .records("contacts")
        .unwrap()
        .into_iter()
        .find(|o| !o.archived)
        .unwrap();
    sim.archive("contacts", archived.id.parse().unwrap())
        .unwrap();
    pipeline_one_shot(
        &cfg,
        &[StageName::Ingest, StageName::Normalize, StageName::Sink],
    )
    .await;
    assert_postgres_equals_sim(&cfg, &sim).await;
    assert!(
        rows(&cfg, "candidates").await[&archived.id].1,
        "an object archived since the last pass is a tombstone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_10000_changes_in_one_window_skip_nothing() {
    let sim = start_sim(SimConfig {
        contacts: 50,
        jobs: 5,
        ..SimConfig::for_tests()
    })
    .await;
    let cfg = setup("hs_cap", &sim).await;
    hubspot::run_with(&cfg, CancellationToken::new(), true)
        .await
        .expect("snapshot");
    // One bulk import of 10,500 contacts in one millisecond, then 1,500 more spread over time:
    // 12,000 changes after the cursor, more than one search query can reach.
    let at = chrono::Utc::now().timestamp_millis() + 5;
    let imported = sim
        .import(
            "contacts",
            10_500,
            at,
            &[("firstname", "Bulk"), ("email", "bulk@example.com")],
        )
        .unwrap();
    for i in 0..1_500 {
        sim.create(
            "contacts",
            &[("firstname", "Later"), ("lastname", &i.to_string())],
        )
        .unwrap();
    }
    tokio::time::timeout(
        Duration::from_secs(300),
        hubspot::run_with(&cfg, CancellationToken::new(), true),
    )
    .await
    .expect("incremental within 300 s")
    .expect("incremental");
    let events = raw_events(&cfg, "contact").await;
    let latest = latest(&events);
    let truth = sim.records("contacts").unwrap();
    assert_eq!(truth.len(), 50 + 12_000);
    let missing: Vec<&str> = truth
        .iter()
        .filter(|o| {
            latest.get(&o.id).map(|e| e.source_version) != Some(truth_version(o, "contacts").0)
        })
        .map(|o| o.id.as_str())
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} missing, e.g. {:?}",
        missing.len(),
        truth.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(imported
        .iter()
        .all(|id| latest.contains_key(&id.to_string())));
    // Searching never paged past the cap (the simulator answers 400 there).
    let stats = sim.stats();
    assert_eq!(stats.count("search/contacts", "400"), 0, "{stats:?}");
}

/// Signs `body` for `url` at `ts` with the simulator's key.
pub(crate) fn signed(sim: &SimHandle, url: &str, body: &str, ts: i64) -> (String, String) {
    let ts = ts.to_string();
    let sig = sign_v3(
        sim.config().webhook_key().as_bytes(),
        "POST",
        url,
        body.as_bytes(),
        &ts,
    );
    (sig, ts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_signature_old_timestamp_replay_are_refused_and_emit_nothing() {
    let sim = start_sim(SimConfig::for_tests()).await;
    let mut cfg = setup("hs_sig", &sim).await;
    cfg.ingress.listen = "127.0.0.1:0".into();
    cfg.ingress.max_body_bytes = 64 * 1024;
    let stop = CancellationToken::new();
    let ing = crmflow::ingress::serve(&cfg, stop.clone())
        .await
        .expect("ingress");
    let http = reqwest::Client::new();
    let contact = sim
        .records("contacts")
        .unwrap()
        .into_iter()
        .find(|o| !o.archived)
        .unwrap();
    let body = format!(
        r#"[{{"eventId":1,"subscriptionId":7,"portalId":62515,"appId":54321,"occurredAt":{},"subscriptionType":"contact.propertyChange","attemptNumber":0,"objectId":{},"propertyName":"email","propertyValue":"x@y.z","changeSource":"CRM_UI"}}]"#,
        chrono::Utc::now().timestamp_millis(),
        contact.id
    );
    let post = |sig: String, ts: String, body: String| {
        http.post(&ing.url)
            .header(SIGNATURE_V3_HEADER, sig)
            .header(TIMESTAMP_HEADER, ts)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let now = chrono::Utc::now().timestamp_millis();
    // Wrong signature: signed with another secret.
    let ts = now.to_string();
    let bad = sign_v3(b"not-the-secret", "POST", &ing.url, body.as_bytes(), &ts);
    let r = post(bad, ts.clone(), body.clone()).await.unwrap();
    assert_eq!(r.status(), 401);
    // Signed for another URL.
    let (sig, ts) = signed(
        &sim,
        "https://elsewhere.example/webhooks/hubspot",
        &body,
        now,
    );
    assert_eq!(post(sig, ts, body.clone()).await.unwrap().status(), 401);
    // Missing headers.
    let r = http.post(&ing.url).body(body.clone()).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // Correctly signed, 6 minutes old.
    let (sig, ts) = signed(&sim, &ing.url, &body, now - 360_000);
    assert_eq!(post(sig, ts, body.clone()).await.unwrap().status(), 401);
    // A body changed after signing (the old body's signature with a new body).
    let (sig, ts) = signed(&sim, &ing.url, &body, now);
    let forged = body.replace("propertyChange", "deletion");
    assert_eq!(post(sig, ts, forged).await.unwrap().status(), 401);
    // Nothing was emitted so far.
    assert!(
        raw_events(&cfg, "contact").await.is_empty(),
        "refused requests emit nothing"
    );

    // Malformed JSON, correctly signed: 400 with a message, nothing emitted.
    let junk = "{not json".to_string();
    let (sig, ts) = signed(&sim, &ing.url, &junk, now);
    let r = post(sig, ts, junk).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("JSON"));
    // Too large: 413.
    let big = format!("[{}]", " ".repeat(70 * 1024));
    let (sig, ts) = signed(&sim, &ing.url, &big, now);
    assert_eq!(post(sig, ts, big).await.unwrap().status(), 413);
    assert!(raw_events(&cfg, "contact").await.is_empty());

    // The valid request: 200, one event, acknowledged.
    let (sig, ts) = signed(&sim, &ing.url, &body, now);
    let r = post(sig.clone(), ts.clone(), body.clone()).await.unwrap();
    assert_eq!(r.status(), 200);
    let accepted: serde_json::Value = r.json().await.unwrap();
    assert_eq!(accepted["emitted"], 1, "{accepted}");
    // The same request again (a replay): refused, nothing more emitted.
    assert_eq!(post(sig, ts, body.clone()).await.unwrap().status(), 401);
    let events = raw_events(&cfg, "contact").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].record_id, contact.id);
    assert_eq!(events[0].source_mode, "webhook");
    assert_eq!(events[0].changed_fields, ["email"]);
    stop.cancel();
    let _ = ing.task.await;
}

/// Spawns `crmflow run --stages ingress` on `port` for the test's namespace.
fn spawn_ingress(cfg: &Config, sim: &SimHandle, port: u16) -> ChildGuard {
    let mut cmd = crmflow_cmd(cfg);
    cmd.args(["run", "--stages", "ingress"])
        .env("HUBSPOT_BASE_URL", sim.base_url())
        .env("HUBSPOT_ACCESS_TOKEN", sim.private_app_token())
        .env("HUBSPOT_CLIENT_SECRET", sim.config().webhook_key())
        .env("CRMFLOW_INGRESS__LISTEN", format!("127.0.0.1:{port}"))
        .env("CRMFLOW_HUBSPOT__REQUESTS_PER_10S", "100000")
        .stdout(std::process::Stdio::null())
        .stderr(crate::common::child_log(cfg));
    ChildGuard(cmd.spawn().expect("spawn crmflow"))
}

async fn wait_listening(port: u16) {
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("ingress did not listen on {port}");
}

/// Waits until every webhook batch the simulator formed was acknowledged or given up.
pub(crate) async fn webhooks_settled(sim: &SimHandle) -> crmflow_hubspot::sim::WebhookStats {
    let mut last = None;
    for _ in 0..600 {
        let w = sim.stats().webhooks;
        if w.batches > 0
            && w.delivered + w.given_up >= w.batches
            && last.as_ref() == Some(&w.batches)
        {
            return w;
        }
        last = Some(w.batches);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("webhooks did not settle: {:?}", sim.stats().webhooks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_with_duplicates_reordering_retries_and_a_killed_ingress_lose_nothing() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sim = start_sim(SimConfig {
        contacts: 300,
        jobs: 60,
        webhook_duplicate_rate: 0.2,
        webhook_shuffle: true,
        webhook_batch_max: 50,
        // Long enough for the ingress to come back after the kill.
        webhook_retry_ms: vec![200, 400, 800, 1_600, 3_200, 6_400, 12_800],
        ..SimConfig::for_tests()
    })
    .await;
    let cfg = setup("hs_hook", &sim).await;
    sim.set_webhook_target(
        Some(&format!("http://127.0.0.1:{port}/webhooks/hubspot")),
        None,
    );
    let mut child = spawn_ingress(&cfg, &sim, port);
    wait_listening(port).await;

    let contacts: Vec<u64> = sim
        .records("contacts")
        .unwrap()
        .iter()
        .filter(|o| !o.archived)
        .map(|o| o.id.parse().unwrap())
        .collect();
    let mut touched: HashSet<(usize, u64)> = HashSet::new();
    let mut write_round = |round: usize| {
        let base = round * 40;
        for (i, id) in contacts[base..base + 30].iter().enumerate() {
            sim.update(
                "contacts",
                *id,
                &[("jobtitle", &format!("Title {round}-{i}"))],
            )
            .unwrap();
            sim.update("contacts", *id, &[("city", &format!("City {round}"))])
                .unwrap();
            touched.insert((0, *id));
        }
        for id in &contacts[base + 30..base + 34] {
            sim.archive("contacts", *id).unwrap();
            touched.insert((0, *id));
        }
        // Versions are milliseconds: a restore in the archive's millisecond would be
        // indistinguishable from it (for any CRM), so the restore comes a few ms later.
        std::thread::sleep(Duration::from_millis(3));
        sim.restore("contacts", contacts[base + 30]).unwrap();
        sim.merge("contacts", contacts[base + 35], contacts[base + 36])
            .unwrap();
        touched.insert((0, contacts[base + 35]));
        touched.insert((0, contacts[base + 36]));
        for i in 0..5 {
            let id = sim
                .create(
                    "contacts",
                    &[
                        ("firstname", "New"),
                        ("lastname", &format!("{round}-{i}")),
                        ("email", &format!("n{round}{i}@example.com")),
                    ],
                )
                .unwrap();
            touched.insert((0, id));
            let job = sim
                .create(
                    "jobs",
                    &[
                        ("job_title", &format!("Job {round}-{i}")),
                        ("job_status", "open"),
                    ],
                )
                .unwrap();
            touched.insert((1, job));
        }
    };
    write_round(0);
    write_round(1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // SIGKILL mid-stream: requests in flight are lost without an answer; HubSpot retries them.
    child.kill().unwrap();
    child.wait().unwrap();
    write_round(2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _child = spawn_ingress(&cfg, &sim, port);
    wait_listening(port).await;
    write_round(3);
    let w = webhooks_settled(&sim).await;
    assert_eq!(w.given_up, 0, "{w:?}");
    assert!(
        w.duplicates > 0 && w.failed_attempts > 0,
        "duplicates and failed deliveries happened: {w:?}"
    );

    // Every touched object is on the raw topic at its current version.
    for (t, (entity, object)) in OBJECTS.iter().enumerate() {
        let events = raw_events(&cfg, entity).await;
        assert!(events.iter().all(|e| e.source_mode == "webhook"));
        let latest = latest(&events);
        let mut problems = Vec::new();
        for (_, id) in touched.iter().filter(|(i, _)| *i == t) {
            let id = id.to_string();
            match sim
                .records(object)
                .unwrap()
                .into_iter()
                .find(|o| o.id == id)
            {
                Some(obj) => {
                    let (v, deleted) = truth_version(&obj, object);
                    match latest.get(&id) {
                        Some(e) if e.source_version == v && (e.op == Op::Delete) == deleted => {}
                        other => problems.push(format!(
                            "{entity} {id}: {:?}, want ({v}, {deleted})",
                            other.map(|e| (e.source_version, e.op))
                        )),
                    }
                }
                // Merged away: a tombstone.
                None => {
                    if latest.get(&id).map(|e| e.op) != Some(Op::Delete) {
                        problems.push(format!("{entity} {id}: merged away, no tombstone"));
                    }
                }
            }
        }
        assert!(problems.is_empty(), "{problems:?}");
    }

    // Applied once: normalize + sink leave exactly the simulator's versions for those objects.
    pipeline_one_shot(&cfg, &[StageName::Normalize, StageName::Sink]).await;
    let rows = rows(&cfg, "candidates").await;
    for (_, id) in touched.iter().filter(|(t, _)| *t == 0) {
        let id = id.to_string();
        let Some(obj) = sim
            .records("contacts")
            .unwrap()
            .into_iter()
            .find(|o| o.id == id)
        else {
            assert!(
                rows.get(&id).is_some_and(|r| r.1),
                "merged-away {id} tombstoned"
            );
            continue;
        };
        if expected("contact", "contacts", &obj).is_ok() {
            assert_eq!(
                rows.get(&id),
                Some(&truth_version(&obj, "contacts")),
                "contact {id}"
            );
        }
    }
}
