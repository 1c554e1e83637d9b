//! Reconciliation end to end: the Bullhorn simulator in events mode, the whole pipeline (ingest,
//! normalize, sink, embed, match) against real Kafka and Postgres, then what incremental capture
//! cannot see — hard deletes, duplicate merges, an event subscription that lapsed, rows damaged by
//! hand — and one `crmflow reconcile` that heals it all through the raw topics.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crmflow::config::{BullhornMode, Config};
use crmflow::reconcile::{self, EntityReport, Options};
use crmflow::runtime::StageName;
use crmflow_bullhorn::sim::SimHandle;
use serde_json::{json, Value};

use crate::common::{child_log, crmflow_cmd, ChildGuard};
use crate::fixtures::dead_letters;
use crate::ingest::{raw_events, setup, sim_state, start_sim};

const ALL: [StageName; 5] = [
    StageName::Ingest,
    StageName::Normalize,
    StageName::Sink,
    StageName::Embed,
    StageName::Match,
];

/// Ingest to Postgres, without vectors and matches.
const SINKED: [StageName; 3] = [StageName::Ingest, StageName::Normalize, StageName::Sink];

async fn pipeline(cfg: &Config) {
    run_once(cfg, &ALL).await;
}

async fn config(test: &str, sim: &SimHandle, ml: &crmflow_embedding::sim::SimHandle) -> Config {
    let mut cfg = setup(test, sim).await;
    cfg.bullhorn.mode = BullhornMode::Events;
    cfg.bullhorn.subscription_id = format!("crmflow-{test}");
    cfg.ml.url = ml.base_url().to_string();
    cfg.embed.batch_size = 100;
    cfg.embed.linger_ms = 50;
    cfg
}

/// `crm_id -> (source_version, deleted)` of a table.
async fn rows(cfg: &Config, table: &str) -> HashMap<String, (i64, bool)> {
    let client = crmflow::store::connect(cfg).await.unwrap();
    client
        .query(
            &format!("SELECT crm_id, source_version, deleted_at IS NOT NULL FROM {table}"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect()
}

async fn count(cfg: &Config, sql: &str, ids: &[String]) -> i64 {
    let client = crmflow::store::connect(cfg).await.unwrap();
    client.query_one(sql, &[&ids]).await.unwrap().get(0)
}

/// Live (not deleted) rows of `table` whose id is in `pool` order, first `n`.
fn live(rows: &HashMap<String, (i64, bool)>, n: usize, skip: &HashSet<String>) -> Vec<String> {
    let mut ids: Vec<&String> = rows
        .iter()
        .filter(|(id, (_, d))| !d && !skip.contains(*id))
        .map(|(id, _)| id)
        .collect();
    ids.sort_by_key(|id| id.parse::<i64>().unwrap());
    ids.into_iter().take(n).cloned().collect()
}

/// Postgres equals the simulator's ground truth (`/sim/state`): every live record has a row at its
/// version or is in the DLQ, every deleted or vanished one has no live row. `except`: rows left
/// alone on purpose (newer in Postgres).
async fn assert_equal_to_sim(
    cfg: &Config,
    sim: &SimHandle,
    entity: &str,
    table: &str,
    except: &[String],
) {
    let state = sim_state(sim, entity).await;
    let rows = rows(cfg, table).await;
    let dlq: HashSet<String> = dead_letters(cfg).into_iter().map(|(_, _, k)| k).collect();
    let mut truth: HashMap<String, (i64, bool)> = HashMap::new();
    for r in &state {
        let id = r["id"].as_i64().unwrap().to_string();
        let v = r["dateLastModified"].as_i64().unwrap();
        let d = r["isDeleted"].as_bool().unwrap_or(false);
        truth.insert(id, (v, d));
    }
    for (id, (v, d)) in &truth {
        if except.contains(id) {
            continue;
        }
        match rows.get(id) {
            Some((rv, rd)) if !d => assert!(
                (*rv == *v && !rd) || dlq.contains(id),
                "{entity} {id}: row ({rv}, deleted {rd}) but the CRM has ({v}, live)"
            ),
            Some((_, rd)) => assert!(
                *rd || dlq.contains(id),
                "{entity} {id} deleted in the CRM, live in Postgres"
            ),
            None => assert!(
                *d || dlq.contains(id),
                "{entity} {id} missing from Postgres and the DLQ"
            ),
        }
    }
    for (id, (_, d)) in &rows {
        if !d && !except.contains(id) {
            assert!(
                truth.contains_key(id),
                "{entity} {id}: live row, no CRM record"
            );
        }
    }
}

fn kinds(r: &EntityReport) -> [u64; 5] {
    [r.missing, r.stale, r.gone, r.newer_in_pg, r.in_dlq]
}

/// Runs `stages` once, until caught up.
async fn run_once(cfg: &Config, stages: &[StageName]) {
    tokio::time::timeout(
        Duration::from_secs(240),
        crmflow::run::run(cfg.clone(), stages, true),
    )
    .await
    .expect("one-shot within 240 s")
    .expect("one-shot");
}

/// One reconcile of `crm` (all when `None`) and `entity`.
async fn reconcile_of(
    cfg: &Config,
    crm: Option<&str>,
    entity: Option<&str>,
    dry_run: bool,
) -> Vec<EntityReport> {
    let reports = reconcile::run(
        cfg,
        &Options {
            crm: crm.map(Into::into),
            entity: entity.map(Into::into),
            dry_run,
        },
    )
    .await
    .expect("reconcile");
    eprintln!(
        "{}: {}",
        if dry_run { "dry run" } else { "reconcile" },
        reconcile::render(&reports)
    );
    reports
}

/// A dry run finds nothing left to repair.
async fn assert_converged(cfg: &Config, crm: Option<&str>) {
    for r in &reconcile_of(cfg, crm, None, true).await {
        assert_eq!(r.missing + r.stale + r.gone, 0, "{r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_reconcile_heals_hard_deletes_merges_lapsed_events_and_hand_damage() {
    let sim = start_sim(400, 60, 0.0).await;
    let ml = crmflow_embedding::sim::Simulator::start(crmflow_embedding::sim::SimArgs::for_tests())
        .await
        .unwrap();
    let cfg = config("rec_heal", &sim, &ml).await;
    pipeline(&cfg).await;

    let cand = rows(&cfg, "candidates").await;
    let pos = rows(&cfg, "positions").await;
    let mut used = HashSet::new();
    let mut pick = |rows: &HashMap<String, (i64, bool)>, n: usize| {
        let ids = live(rows, n, &used);
        used.extend(ids.iter().cloned());
        ids
    };
    // Hard deletes and merges: gone without an event.
    let hard = pick(&cand, 5);
    let hard_jobs = pick(&pos, 2);
    let winners = pick(&cand, 3);
    let losers = pick(&cand, 3);
    for id in &hard {
        assert!(sim.hard_delete("Candidate", id.parse().unwrap()).unwrap());
    }
    for id in &hard_jobs {
        // Over HTTP, as an operator would.
        let r: Value = reqwest::Client::new()
            .post(format!("{}/sim/hard-delete/JobOrder/{id}", sim.base_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["deleted"], true);
    }
    for (w, l) in winners.iter().zip(&losers) {
        sim.merge("Candidate", w.parse().unwrap(), l.parse().unwrap(), false)
            .unwrap();
    }
    // The winners' updates are reported; the losers are not.
    pipeline(&cfg).await;
    let gone_ids: Vec<String> = hard.iter().chain(&losers).cloned().collect();
    let vectors_before = count(
        &cfg,
        "SELECT count(*) FROM embeddings WHERE crm_id = ANY($1) AND entity = 'candidate'",
        &gone_ids,
    )
    .await;
    assert!(vectors_before > 0, "the records to delete have vectors");

    // A lapse: these updates' events are lost.
    let lapsed = pick(&cand, 6);
    let r: Value = reqwest::Client::new()
        .post(format!("{}/sim/events/lapse", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["lapsed"], true);
    for id in &lapsed {
        sim.update(
            "Candidate",
            id.parse().unwrap(),
            json!({"occupation": "Reconciled engineer"}),
        )
        .unwrap();
    }
    sim.lapse_events(false);

    // Damage by hand: a row set back, a row deleted, a row pushed into the future.
    let back = pick(&cand, 1).remove(0);
    let removed = pick(&cand, 1).remove(0);
    let future = pick(&cand, 1).remove(0);
    let client = crmflow::store::connect(&cfg).await.unwrap();
    client
        .execute(
            "UPDATE candidates SET source_version = source_version - 1000, first_name = 'CORRUPT' WHERE crm_id = $1",
            &[&back],
        )
        .await
        .unwrap();
    client
        .execute("DELETE FROM candidates WHERE crm_id = $1", &[&removed])
        .await
        .unwrap();
    client
        .execute(
            "UPDATE candidates SET source_version = source_version + 86400000 WHERE crm_id = $1",
            &[&future],
        )
        .await
        .unwrap();
    // Incremental capture sees none of it.
    pipeline(&cfg).await;

    // A dry run reports and changes nothing.
    let before_rows = rows(&cfg, "candidates").await;
    let before_events = raw_events(&cfg, "Candidate").await.len();
    let dry = reconcile_of(&cfg, None, None, true).await;
    let dry_c = dry.iter().find(|r| r.entity == "Candidate").unwrap();
    let dry_j = dry.iter().find(|r| r.entity == "JobOrder").unwrap();
    // missing, stale, gone, newer_in_pg, in_dlq
    assert_eq!(kinds(dry_c)[..4], [1, 6 + 1, 5 + 3, 1], "{dry_c:?}");
    assert_eq!(kinds(dry_j)[..4], [0, 0, 2, 0], "{dry_j:?}");
    assert_eq!(dry_c.repaired, 0);
    assert_eq!(
        rows(&cfg, "candidates").await,
        before_rows,
        "dry run changed rows"
    );
    assert_eq!(
        raw_events(&cfg, "Candidate").await.len(),
        before_events,
        "dry run sent events"
    );
    let runs: i64 = client
        .query_one("SELECT count(*) FROM reconcile_runs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(runs, 0, "a dry run records no run");

    // The real run: the same counts, every repair sent.
    let real = reconcile_of(&cfg, None, None, false).await;
    let real_c = real.iter().find(|r| r.entity == "Candidate").unwrap();
    let real_j = real.iter().find(|r| r.entity == "JobOrder").unwrap();
    assert_eq!(kinds(real_c), kinds(dry_c));
    assert_eq!(kinds(real_j), kinds(dry_j));
    assert_eq!(real_c.repaired, 1 + 7 + 8);
    assert_eq!(real_c.listed, 400 - 5 - 3);
    // Repairs are ordinary change events, tagged with op and reason.
    let tagged = raw_events(&cfg, "Candidate")
        .await
        .into_iter()
        .filter(|e| e.source_mode == "reconcile")
        .count();
    assert_eq!(tagged, 16);
    pipeline(&cfg).await;

    assert_equal_to_sim(
        &cfg,
        &sim,
        "Candidate",
        "candidates",
        std::slice::from_ref(&future),
    )
    .await;
    assert_equal_to_sim(&cfg, &sim, "JobOrder", "positions", &[]).await;
    let after = rows(&cfg, "candidates").await;
    for id in &gone_ids {
        assert!(after[id].1, "{id} tombstoned");
    }
    assert_eq!(
        after[&future], before_rows[&future],
        "a newer row is never moved back"
    );
    assert_eq!(
        count(
            &cfg,
            "SELECT count(*) FROM embeddings WHERE crm_id = ANY($1) AND entity = 'candidate'",
            &gone_ids
        )
        .await,
        0,
        "vectors of deleted records are gone"
    );
    assert_eq!(
        count(
            &cfg,
            "SELECT count(*) FROM matches WHERE (from_id = ANY($1) AND from_entity = 'candidate') OR (to_id = ANY($1) AND to_entity = 'candidate')",
            &gone_ids
        )
        .await,
        0,
        "matches of deleted records are gone"
    );
    let first = client
        .query_one(
            "SELECT first_name FROM candidates WHERE crm_id = $1",
            &[&back],
        )
        .await
        .unwrap()
        .get::<_, Option<String>>(0);
    assert_ne!(first.as_deref(), Some("CORRUPT"));

    // Converged: a second look finds nothing left to repair.
    assert_converged(&cfg, None).await;
    let status = crmflow::status::read(&cfg).await.unwrap();
    let last = status
        .reconcile
        .iter()
        .find(|r| r.entity == "Candidate")
        .expect("status shows the last reconcile");
    assert_eq!(
        (last.state.as_str(), last.gone, last.repaired),
        ("done", 8, 16)
    );
    assert!(crmflow::status::render(&status).contains("bullhorn/Candidate"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconcile_killed_midway_resumes_and_converges() {
    let sim = start_sim(600, 10, 0.0).await;
    let ml = crmflow_embedding::sim::Simulator::start(crmflow_embedding::sim::SimArgs::for_tests())
        .await
        .unwrap();
    let cfg = config("rec_kill", &sim, &ml).await;
    pipeline(&cfg).await;
    let cand = rows(&cfg, "candidates").await;
    // Gone records spread over the whole id range.
    let mut live_ids = live(&cand, usize::MAX, &HashSet::new());
    live_ids.retain(|id| id.parse::<i64>().unwrap() % 37 == 0);
    for id in &live_ids {
        sim.hard_delete("Candidate", id.parse().unwrap()).unwrap();
    }
    assert!(live_ids.len() >= 10);

    // A slow CRM and small pages, so the run is killed part way.
    sim.set_latency_ms(150);
    let c = sim.credentials();
    let mut cmd = crmflow_cmd(&cfg);
    cmd.args([
        "reconcile",
        "--crm",
        "bullhorn",
        "--entity",
        "Candidate",
        "--json",
    ])
    .env("BULLHORN_REST_URL", sim.rest_services_url())
    .env("BULLHORN_CLIENT_ID", c.client_id)
    .env("BULLHORN_CLIENT_SECRET", c.client_secret)
    .env("BULLHORN_USERNAME", c.username)
    .env("BULLHORN_PASSWORD", c.password)
    .env("CRMFLOW_RECONCILE__PAGE_SIZE", "20")
    // Small repair batches, so progress is recorded every few pages.
    .env("CRMFLOW_RECONCILE__REREAD_BATCH", "2")
    .stdout(std::process::Stdio::null())
    .stderr(child_log(&cfg));
    let mut child = ChildGuard(cmd.spawn().expect("spawn crmflow reconcile"));
    let client = crmflow::store::connect(&cfg).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let progress = loop {
        let row = client
            .query_opt(
                "SELECT ranges::text, gone FROM reconcile_runs WHERE state = 'running' AND ranges IS NOT NULL",
                &[],
            )
            .await
            .unwrap();
        if let Some(r) = row {
            let gone: i64 = r.get(1);
            if gone > 0 {
                break (r.get::<_, String>(0), gone);
            }
        }
        assert!(std::time::Instant::now() < deadline, "no progress recorded");
        assert!(
            child.try_wait().unwrap().is_none(),
            "reconcile ended before the kill"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    child.kill().unwrap();
    child.wait().unwrap();
    eprintln!("killed after {progress:?}");
    // The id span was split into ranges listed concurrently, each with its own progress.
    let ranges: Vec<serde_json::Value> = serde_json::from_str(&progress.0).unwrap();
    assert_eq!(ranges.len(), 8, "4 listings x 2 ranges: {ranges:?}");
    assert!(
        ranges.iter().filter(|r| !r["last"].is_null()).count() >= 2,
        "several ranges moved at once: {ranges:?}"
    );
    assert!(
        (progress.1 as usize) < live_ids.len(),
        "killed before the end"
    );

    // The lock died with the process; the rerun resumes after the recorded id.
    sim.set_latency_ms(0);
    let mut cfg2 = cfg.clone();
    cfg2.reconcile.page_size = 20;
    cfg2.reconcile.reread_batch = 2;
    let reports = reconcile::run(
        &cfg2,
        &Options {
            crm: Some("bullhorn".into()),
            entity: Some("Candidate".into()),
            dry_run: false,
        },
    )
    .await
    .expect("rerun");
    let r = &reports[0];
    assert!(r.resumed, "{r:?}");
    assert_eq!(r.listed as usize, 600 - live_ids.len(), "{r:?}");
    assert!(r.gone as usize >= live_ids.len(), "{r:?}");
    let runs: Vec<(String, i64)> = client
        .query(
            "SELECT state, gone FROM reconcile_runs ORDER BY run_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        runs.len(),
        1,
        "the killed run was continued, not restarted: {runs:?}"
    );
    assert_eq!(runs[0].0, "done");
    pipeline(&cfg).await;
    assert_equal_to_sim(&cfg, &sim, "Candidate", "candidates", &[]).await;
    assert_converged(&cfg, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_reconcile_at_a_time() {
    let sim = start_sim(50, 5, 0.0).await;
    let cfg = setup("rec_lock", &sim).await;
    let held = crmflow::reconcile::runs::ReconcileLock::try_acquire(&cfg)
        .await
        .unwrap()
        .expect("lock free");
    let err = reconcile::run(&cfg, &Options::default()).await.unwrap_err();
    assert!(matches!(err, reconcile::ReconcileError::Busy(_)), "{err}");
    assert!(err.is_retriable());
    // A scheduled round on another replica skips instead.
    let token = tokio_util::sync::CancellationToken::new();
    assert!(!reconcile::schedule::round(&cfg, &token).await.unwrap());
    held.release().await;
    assert!(reconcile::schedule::round(&cfg, &token).await.unwrap());
    let status = crmflow::status::read(&cfg).await.unwrap();
    assert!(
        status
            .reconcile
            .iter()
            .any(|r| r.entity == "Candidate" && r.state == "done"),
        "{:?}",
        status.reconcile
    );
    assert!(reconcile::run(&cfg, &Options::default()).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_permanent_deletes_and_hand_damage_are_healed() {
    use crmflow_hubspot::sim::{SimConfig, Simulator};
    let sim = Simulator::start(SimConfig {
        contacts: 300,
        jobs: 20,
        ..SimConfig::for_tests()
    })
    .await
    .expect("hubspot simulator");
    let mut cfg = crate::hubspot::setup("rec_hs", &sim).await;
    run_once(&cfg, &SINKED).await;
    let before = rows(&cfg, "candidates").await;
    let ids = live(&before, 5, &HashSet::new());
    // Three GDPR deletions nobody reports (one over HTTP), a row removed and a row set back by hand.
    for id in &ids[..2] {
        assert!(sim.purge("contacts", id.parse().unwrap()).unwrap());
    }
    let r: Value = reqwest::Client::new()
        .post(format!("{}/sim/purge/contacts/{}", sim.base_url(), ids[2]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["purged"], true);
    let client = crmflow::store::connect(&cfg).await.unwrap();
    client
        .execute(
            "DELETE FROM candidates WHERE crm = 'hubspot' AND crm_id = $1",
            &[&ids[3]],
        )
        .await
        .unwrap();
    client
        .execute(
            "UPDATE candidates SET source_version = source_version - 5000 WHERE crm = 'hubspot' AND crm_id = $1",
            &[&ids[4]],
        )
        .await
        .unwrap();
    run_once(&cfg, &SINKED).await;

    cfg.reconcile.page_size = 40;
    let reports = reconcile_of(&cfg, Some("hubspot"), Some("contact"), false).await;
    let r = &reports[0];
    assert_eq!((r.crm.as_str(), r.entity.as_str()), ("hubspot", "contact"));
    assert_eq!(
        [r.missing, r.stale, r.gone, r.newer_in_pg],
        [1, 1, 3, 0],
        "{r:?}"
    );
    assert_eq!(r.repaired, 5);
    run_once(&cfg, &SINKED).await;
    let after = rows(&cfg, "candidates").await;
    for id in &ids[..3] {
        assert!(after[id].1, "{id} tombstoned");
    }
    assert_eq!(
        after[&ids[3]], before[&ids[3]],
        "the removed row is back at its version"
    );
    assert_eq!(
        after[&ids[4]], before[&ids[4]],
        "the set-back row is current again"
    );
    assert_converged(&cfg, Some("hubspot")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_purges_merges_and_hand_damage_are_healed() {
    use crmflow_salesforce::sim::{SimConfig, Simulator};
    let sim = Simulator::start(SimConfig {
        contacts: 300,
        positions: 20,
        ..SimConfig::for_tests()
    })
    .await
    .expect("salesforce simulator");
    let mut cfg = crate::salesforce::setup("rec_sf", &sim).await;
    cfg.bullhorn.enabled = false;
    run_once(&cfg, &SINKED).await;
    let before = rows(&cfg, "candidates").await;
    let mut ids: Vec<String> = before
        .iter()
        .filter(|(_, (_, d))| !d)
        .map(|(id, _)| id.clone())
        .collect();
    ids.sort();
    let ids = &ids[..7];
    // Two hard deletes nobody reports (one over HTTP); a merge whose loser is purged from the
    // recycle bin before the poller sees it: only the winner's update is in the feed.
    sim.purge("Contact", &ids[0]).unwrap();
    let tls = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(sim.ca_pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let r: Value = tls
        .post(format!("{}/sim/purge/Contact/{}", sim.base_url(), ids[1]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["purged"], ids[1].as_str());
    sim.merge("Contact", &ids[2], &ids[3]).unwrap();
    sim.purge("Contact", &ids[3]).unwrap();
    assert!(
        sim.get("Contact", &ids[3]).is_none(),
        "the loser left no trace"
    );
    // A row removed and a row corrupted by hand.
    let client = crmflow::store::connect(&cfg).await.unwrap();
    client
        .execute(
            "DELETE FROM candidates WHERE crm = 'salesforce' AND crm_id = $1",
            &[&ids[4]],
        )
        .await
        .unwrap();
    client
        .execute(
            "UPDATE candidates SET source_version = source_version - 5000, first_name = 'CORRUPT' \
             WHERE crm = 'salesforce' AND crm_id = $1",
            &[&ids[5]],
        )
        .await
        .unwrap();
    run_once(&cfg, &SINKED).await;
    let damaged = rows(&cfg, "candidates").await;
    for id in [&ids[0], &ids[1], &ids[3]] {
        assert!(!damaged[id].1, "{id}: incremental capture saw no deletion");
    }

    // Small pages, so the keyset paging is exercised.
    cfg.reconcile.page_size = 40;
    let dry = reconcile_of(&cfg, Some("salesforce"), Some("Contact"), true).await;
    let real = reconcile_of(&cfg, Some("salesforce"), Some("Contact"), false).await;
    let (d, r) = (&dry[0], &real[0]);
    assert_eq!(
        (r.crm.as_str(), r.entity.as_str()),
        ("salesforce", "Contact")
    );
    // missing, stale, gone, newer_in_pg
    assert_eq!(kinds(r)[..4], [1, 1, 3, 0], "{r:?}");
    assert_eq!(kinds(d), kinds(r), "a dry run reports the same counts");
    assert_eq!((d.repaired, r.repaired), (0, 5));
    assert!(r.requests > 300 / 40, "{r:?}");
    run_once(&cfg, &SINKED).await;
    let after = rows(&cfg, "candidates").await;
    for id in [&ids[0], &ids[1], &ids[3]] {
        assert!(after[id].1, "{id} tombstoned");
    }
    assert_eq!(after[&ids[4]], before[&ids[4]], "the removed row is back");
    assert_eq!(
        after[&ids[5]], before[&ids[5]],
        "the corrupted row is current"
    );
    let first: Option<String> = client
        .query_one(
            "SELECT first_name FROM candidates WHERE crm = 'salesforce' AND crm_id = $1",
            &[&ids[5]],
        )
        .await
        .unwrap()
        .get(0);
    assert_ne!(first.as_deref(), Some("CORRUPT"));
    // Postgres equals the simulator: every live contact at its SystemModstamp, the rest not live.
    let truth: HashMap<String, (i64, bool)> = sim
        .records("Contact")
        .unwrap()
        .iter()
        .map(|c| {
            let t = crmflow_salesforce::wire::parse_datetime(c["SystemModstamp"].as_str().unwrap())
                .unwrap()
                .timestamp_millis();
            (
                c["Id"].as_str().unwrap().to_owned(),
                (t, c["IsDeleted"] == true),
            )
        })
        .collect();
    let dlq: HashSet<String> = dead_letters(&cfg).into_iter().map(|(_, _, k)| k).collect();
    for (id, (v, deleted)) in &after {
        match truth.get(id) {
            Some((tv, false)) => assert!(
                (*v == *tv && !deleted) || dlq.contains(id),
                "{id}: ({v}, {deleted}) vs CRM {tv}"
            ),
            _ => assert!(*deleted, "{id}: live row, deleted or absent in the CRM"),
        }
    }
    assert_converged(&cfg, Some("salesforce")).await;
}

/// HubSpot in webhook mode: a subscription that lapses loses the changes made meanwhile (the
/// simulator sends them to no one), and one reconcile finds them stale and heals them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_lapsed_webhook_subscription_is_healed() {
    use crmflow_hubspot::sim::SimConfig;
    let sim = crate::hubspot::start_sim(SimConfig {
        contacts: 120,
        jobs: 10,
        ..SimConfig::for_tests()
    })
    .await;
    let mut cfg = crate::hubspot::setup("rec_hs_lapse", &sim).await;
    cfg.ingress.listen = "127.0.0.1:0".into();
    run_once(&cfg, &SINKED).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let ing = crmflow::ingress::serve(&cfg, stop.clone())
        .await
        .expect("ingress");
    sim.set_webhook_target(Some(&ing.url), None);
    let ids = live(&rows(&cfg, "candidates").await, 6, &HashSet::new());
    let update = |id: &String, title: &str| {
        sim.update("contacts", id.parse().unwrap(), &[("jobtitle", title)])
            .unwrap();
    };
    // Delivered while the subscription is live.
    for id in &ids[..2] {
        update(id, "Delivered");
    }
    crate::hubspot::webhooks_settled(&sim).await;
    // Lapsed: these changes reach no one.
    let r: Value = reqwest::Client::new()
        .post(format!("{}/sim/webhooks", sim.base_url()))
        .json(&json!({ "url": null }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(r["url"].is_null(), "{r}");
    for id in &ids[2..] {
        update(id, "Lost in the lapse");
    }
    sim.set_webhook_target(Some(&ing.url), None);
    // Without the poller, only what the webhooks brought reaches Postgres.
    let applied = [StageName::Normalize, StageName::Sink];
    run_once(&cfg, &applied).await;
    let before = rows(&cfg, "candidates").await;

    let dry = reconcile_of(&cfg, Some("hubspot"), Some("contact"), true).await;
    let real = reconcile_of(&cfg, Some("hubspot"), Some("contact"), false).await;
    // missing, stale, gone, newer_in_pg
    assert_eq!(kinds(&real[0])[..4], [0, 4, 0, 0], "{:?}", real[0]);
    assert_eq!(kinds(&dry[0]), kinds(&real[0]));
    assert_eq!(real[0].repaired, 4);
    run_once(&cfg, &applied).await;
    let after = rows(&cfg, "candidates").await;
    for id in &ids[2..] {
        assert!(after[id].0 > before[id].0, "{id} moved to the lost version");
    }
    for id in &ids[..2] {
        assert_eq!(after[id], before[id], "{id} was already current");
    }
    assert_converged(&cfg, Some("hubspot")).await;
    stop.cancel();
}
