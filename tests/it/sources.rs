//! Sources as a plug-in point, against the Bullhorn simulator, real Kafka and real Postgres:
//! active/standby between two `crmflow run --stages ingest` processes (SIGKILL and SIGSTOP of the
//! active one), the lease's fencing of cursor writes, and events mode's snapshot-then-stream (with
//! changes during and after the snapshot, and a SIGKILL in the middle of it).

use std::time::{Duration, Instant};

use crmflow::config::Config;
use crmflow::sources::cursors::{CursorStore, Fence};
use crmflow::sources::lease::{self, Lease};
use crmflow::sources::SourceError;
use crmflow_bullhorn::sim::SimHandle;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::common::{child_log, crmflow_cmd, ChildGuard};
use crate::ingest::{assert_complete_modes, raw_events, saved_cursor, setup, sim_state, start_sim};

/// `crmflow run --stages ingest` against the simulator, logging to the namespace's log file.
fn spawn_ingest(cfg: &Config, sim: &SimHandle, extra: &[(&str, &str)]) -> ChildGuard {
    let c = sim.credentials();
    let mut cmd = crmflow_cmd(cfg);
    cmd.args(["run", "--stages", "ingest", "--sources", "bullhorn"])
        .env("BULLHORN_REST_URL", sim.rest_services_url())
        .env("BULLHORN_CLIENT_ID", c.client_id)
        .env("BULLHORN_CLIENT_SECRET", c.client_secret)
        .env("BULLHORN_USERNAME", c.username)
        .env("BULLHORN_PASSWORD", c.password)
        .env("CRMFLOW_BULLHORN__POLL_INTERVAL_SECS", "1")
        .env("RUST_LOG", "info,rdkafka=warn")
        .stdout(std::process::Stdio::null())
        .stderr(child_log(cfg));
    for (k, v) in extra {
        cmd.env(k, v);
    }
    ChildGuard(cmd.spawn().expect("spawn crmflow"))
}

/// The lease's holder while it is valid (`host:pid`).
async fn active_holder(cfg: &Config) -> Option<String> {
    let pool = crmflow::store::pool(cfg).ok()?;
    lease::holder(&pool, "bullhorn")
        .await
        .ok()
        .flatten()
        .filter(|h| h.valid)
        .map(|h| h.holder)
}

fn pid_of(holder: &str) -> u32 {
    holder.rsplit(':').next().unwrap().parse().unwrap()
}

async fn wait_for<T>(what: &str, within: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn logins(sim: &SimHandle) -> u64 {
    sim.stats()
        .requests
        .get("login")
        .map_or(0, |m| m.get("200").copied().unwrap_or(0))
}

/// Newest `dateLastModified` of the simulator's records of `entity`.
fn newest(sim: &SimHandle, entity: &str) -> Option<i64> {
    sim.records(entity)
        .expect("records")
        .iter()
        .filter_map(|r| r["dateLastModified"].as_i64())
        .max()
}

const LEASE_MS: &str = "3000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_takes_over_within_seconds_after_sigkill_of_the_active_instance() {
    let sim = start_sim(4_000, 100, 0.3).await;
    sim.set_latency_ms(40);
    let cfg = setup("src_ha_kill", &sim).await;
    let env = [
        ("CRMFLOW_SOURCES__LEASE_TTL_MS", LEASE_MS),
        ("CRMFLOW_BULLHORN__PAGE_SIZE", "100"),
        ("CRMFLOW_BULLHORN__FETCH_CONCURRENCY", "2"),
    ];
    let mut a = spawn_ingest(&cfg, &sim, &env);
    let first = wait_for("an active instance", Duration::from_secs(60), async || {
        active_holder(&cfg).await
    })
    .await;
    assert_eq!(pid_of(&first), a.id(), "the first instance is active");
    let mut b = spawn_ingest(&cfg, &sim, &env);
    // B shows up as standby in `crmflow status`, A as active.
    let status = wait_for("b on standby", Duration::from_secs(30), async || {
        let s = crmflow::status::read(&cfg).await.ok()?;
        let r = s.readers.iter().find(|r| r.source == "bullhorn")?.clone();
        r.standby.iter().any(|i| pid_of(i) == b.id()).then_some(r)
    })
    .await;
    assert_eq!(status.active.as_deref(), Some(first.as_str()));
    // Kill A once it saved a cursor, mid-sync. Until then only A logged in and read.
    wait_for("a cursor", Duration::from_secs(60), async || {
        saved_cursor(&cfg, "Candidate").await
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(logins(&sim), 1, "only the active instance reads Bullhorn");
    a.kill().expect("SIGKILL");
    let killed = Instant::now();
    a.wait().expect("reap");
    let partial = raw_events(&cfg, "Candidate").await.len();
    assert!(partial < 4_000, "killed too late: {partial}");

    let second = wait_for("takeover", Duration::from_secs(20), async || {
        active_holder(&cfg).await.filter(|h| *h != first)
    })
    .await;
    let takeover = killed.elapsed();
    assert_eq!(pid_of(&second), b.id(), "the standby took over");
    eprintln!("takeover after SIGKILL: {takeover:?} (lease {LEASE_MS} ms)");
    assert!(
        takeover < Duration::from_millis(3_000 + 2_500),
        "takeover took {takeover:?}"
    );

    // B finishes the sync: every record at its newest version, and changes made now arrive too.
    sim.set_latency_ms(0);
    sim.random_changes(50);
    let max = newest(&sim, "Candidate");
    wait_for("b caught up", Duration::from_secs(90), async || {
        let c = saved_cursor(&cfg, "Candidate").await?;
        (c["date_last_modified"].as_i64() == max).then_some(())
    })
    .await;
    assert_complete_modes(&cfg, &sim, "Candidate", &["poll"]).await;
    assert_complete_modes(&cfg, &sim, "JobOrder", &["poll"]).await;
    assert_eq!(logins(&sim), 2, "one login per activation");
    // The killed instance's last heartbeat counts as alive for a while (twice the lease time), so
    // the new instance may have caught up before it drops out of the standby list.
    let s = wait_for(
        "the killed instance leaves the standby list",
        Duration::from_secs(20),
        async || {
            let s = crmflow::status::read(&cfg).await.ok()?;
            let r = s.readers.iter().find(|r| r.source == "bullhorn")?;
            r.standby.is_empty().then_some(s)
        },
    )
    .await;
    let r = s.readers.iter().find(|r| r.source == "bullhorn").unwrap();
    assert_eq!(r.active.as_deref(), Some(second.as_str()));
    assert!(r.epoch.unwrap() >= 2, "{r:?}");
    let text = crmflow::status::render(&s);
    assert!(text.contains(&second), "{text}");
    // The same through the CLI.
    let out = crmflow_cmd(&cfg)
        .args(["status", "--json"])
        .output()
        .expect("status");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).expect("status --json is JSON");
    let readers = json["readers"].as_array().expect("readers");
    assert_eq!(readers[0]["source"], "bullhorn");
    assert_eq!(readers[0]["active"], second.as_str());
    let candidate = json["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["entity"] == "Candidate")
        .expect("Candidate");
    assert_eq!(candidate["phase"], "polling");
    b.kill().ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_active_instance_is_replaced_and_cannot_move_the_cursor_when_it_resumes() {
    let sim = start_sim(1_000, 50, 0.3).await;
    let cfg = setup("src_ha_hang", &sim).await;
    let env = [("CRMFLOW_SOURCES__LEASE_TTL_MS", LEASE_MS)];
    let a = spawn_ingest(&cfg, &sim, &env);
    let first = wait_for("an active instance", Duration::from_secs(60), async || {
        active_holder(&cfg).await
    })
    .await;
    assert_eq!(pid_of(&first), a.id());
    let b = spawn_ingest(&cfg, &sim, &env);
    wait_for("a caught up", Duration::from_secs(60), async || {
        let c = saved_cursor(&cfg, "Candidate").await?;
        (c["date_last_modified"].as_i64() == newest(&sim, "Candidate")).then_some(())
    })
    .await;
    let signal = |sig: &str, pid: u32| {
        let ok = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {sig} {pid}");
    };
    signal("-STOP", a.id());
    let stopped = Instant::now();
    let second = wait_for("takeover", Duration::from_secs(20), async || {
        active_holder(&cfg).await.filter(|h| *h != first)
    })
    .await;
    eprintln!("takeover after SIGSTOP: {:?}", stopped.elapsed());
    assert_eq!(pid_of(&second), b.id());
    // B follows changes while A is frozen.
    sim.random_changes(30);
    let max = newest(&sim, "Candidate");
    wait_for("b follows", Duration::from_secs(30), async || {
        let c = saved_cursor(&cfg, "Candidate").await?;
        (c["date_last_modified"].as_i64() == max).then_some(())
    })
    .await;
    // A wakes up: it finds its lease gone and goes back to standby; B stays active.
    signal("-CONT", a.id());
    let s = wait_for("a back on standby", Duration::from_secs(20), async || {
        let s = crmflow::status::read(&cfg).await.ok()?;
        let r = s.readers.iter().find(|r| r.source == "bullhorn")?.clone();
        r.standby.contains(&first).then_some(r)
    })
    .await;
    assert_eq!(s.active.as_deref(), Some(second.as_str()));
    sim.random_changes(30);
    let max = newest(&sim, "Candidate");
    wait_for("b still follows", Duration::from_secs(30), async || {
        let c = saved_cursor(&cfg, "Candidate").await?;
        (c["date_last_modified"].as_i64() == max).then_some(())
    })
    .await;
    assert_eq!(active_holder(&cfg).await.as_deref(), Some(second.as_str()));
    assert_complete_modes(&cfg, &sim, "Candidate", &["poll"]).await;
    drop((a, b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_writes_are_fenced_by_the_lease() {
    let cfg = crate::common::isolated_config("src_fence");
    crmflow::store::migrate(&cfg).await.expect("migrate");
    let pool = crmflow::store::pool(&cfg).expect("pool");
    let ttl = Duration::from_millis(600);
    let old = Lease::try_acquire(&pool, "crm_x", "old:1", ttl)
        .await
        .expect("acquire")
        .expect("free lease");
    assert!(
        Lease::try_acquire(&pool, "crm_x", "new:2", ttl)
            .await
            .expect("acquire")
            .is_none(),
        "a held lease is not taken"
    );
    let old_cursors = CursorStore::new(pool.clone(), "crm_x").fenced(old.fence.clone());
    old_cursors
        .save("Contact", &1)
        .await
        .expect("holder writes");
    assert!(old.renew(&pool).await.expect("renew"));
    // A renewal that comes late, with nobody taking over meanwhile, keeps the lease.
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    assert!(old.renew(&pool).await.expect("late renew"));
    old_cursors
        .save("Contact", &1)
        .await
        .expect("still the holder");
    // The old holder stops renewing (paused): the lease expires and is taken over.
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    let new = Lease::try_acquire(&pool, "crm_x", "new:2", ttl)
        .await
        .expect("acquire")
        .expect("expired lease is taken over");
    assert_eq!(new.fence.epoch, old.fence.epoch + 1);
    let new_cursors = CursorStore::new(pool.clone(), "crm_x").fenced(new.fence.clone());
    new_cursors.save("Contact", &2).await.expect("new holder");
    // The old holder resumes: none of its writes count.
    let err = old_cursors.save("Contact", &3).await.unwrap_err();
    assert!(matches!(err, SourceError::LeaseLost { .. }), "{err}");
    assert!(!old.renew(&pool).await.expect("renew"));
    old.release(&pool).await.expect("release is a no-op");
    // Same holder name, old epoch: still fenced.
    let stale = CursorStore::new(pool.clone(), "crm_x").fenced(Fence {
        holder: "new:2".into(),
        epoch: old.fence.epoch,
    });
    assert!(stale.save("Contact", &4).await.is_err());
    assert_eq!(
        new_cursors.load::<i64>("Contact").await.expect("load"),
        Some(2)
    );
    // A release hands over at once.
    new.release(&pool).await.expect("release");
    let third = Lease::try_acquire(&pool, "crm_x", "third:3", ttl)
        .await
        .expect("acquire");
    assert_eq!(third.map(|l| l.fence.epoch), Some(new.fence.epoch + 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_or_unconfigured_sources_are_a_one_line_error() {
    let cfg = crate::common::isolated_config("src_select");
    for (args, env, want) in [
        (
            vec!["--sources", "nope"],
            vec![],
            "unknown source \"nope\"; sources are bullhorn",
        ),
        (
            vec!["--sources", "bullhorn"],
            vec![("CRMFLOW_BULLHORN__ENABLED", "false")],
            "source \"bullhorn\" is not configured",
        ),
    ] {
        let mut cmd = crmflow_cmd(&cfg);
        cmd.args(["run", "--stages", "ingest"]).args(&args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run");
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().last().unwrap_or_default();
        assert!(last.contains(want), "{stderr}");
    }
}

/// Polls `/sim/changes?count=n` (random inserts, updates, soft deletes).
async fn http_changes(sim: &SimHandle, n: usize) {
    let r = reqwest::Client::new()
        .post(format!("{}/sim/changes?count={n}", sim.base_url()))
        .send()
        .await
        .expect("changes");
    assert!(r.status().is_success(), "{}", r.status());
}

/// Simulator records of `entity` whose newest version is not on the raw topic yet.
async fn stale(cfg: &Config, sim: &SimHandle, entity: &str) -> usize {
    let mut newest: std::collections::HashMap<String, i64> = Default::default();
    for e in raw_events(cfg, entity).await {
        let v = newest.entry(e.record_id).or_insert(e.source_version);
        *v = (*v).max(e.source_version);
    }
    sim_state(sim, entity)
        .await
        .iter()
        .filter(|r| newest.get(&r["id"].to_string()).copied() != r["dateLastModified"].as_i64())
        .count()
}

/// The stored phase of a Bullhorn entity: (phase, read, found).
async fn phase_row(cfg: &Config, entity: &str) -> Option<(String, i64, Option<i64>)> {
    let pool = crmflow::store::pool(cfg).ok()?;
    let client = pool.get().await.ok()?;
    let r = client
        .query_opt(
            "SELECT phase, snapshot_read, snapshot_total FROM source_phases
             WHERE source = 'bullhorn' AND entity = $1",
            &[&entity],
        )
        .await
        .ok()??;
    Some((r.get(0), r.get(1), r.get(2)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_mode_snapshots_then_streams_with_no_gap() {
    let sim = start_sim(5_000, 200, 0.3).await;
    sim.set_latency_ms(100);
    let mut cfg = setup("src_snapshot", &sim).await;
    cfg.bullhorn.mode = crmflow::config::BullhornMode::Events;
    cfg.bullhorn.subscription_id = "crmflow-snap".into();
    cfg.bullhorn.page_size = 100;
    cfg.bullhorn.fetch_concurrency = 2;
    let stop = CancellationToken::new();
    let run = {
        let (cfg, stop) = (cfg.clone(), stop.clone());
        tokio::spawn(async move { crmflow::sources::bullhorn::run_with(&cfg, stop, false).await })
    };
    // Changes while the snapshot runs.
    let (_, read, total) = wait_for("snapshot progress", Duration::from_secs(60), async || {
        phase_row(&cfg, "Candidate")
            .await
            .filter(|(p, r, _)| p == "snapshot" && *r > 0)
    })
    .await;
    assert!(total.unwrap_or(0) >= 5_000, "{read} of {total:?}");
    http_changes(&sim, 100).await;
    let during = phase_row(&cfg, "Candidate").await.unwrap();
    eprintln!("after the first changes: {during:?}");
    let s = crmflow::status::read(&cfg).await.expect("status");
    let text = crmflow::status::render(&s);
    let row = s
        .sources
        .iter()
        .find(|x| x.entity == "Candidate")
        .expect("Candidate in status");
    assert!(row.phase.is_some(), "{row:?}");
    if row.phase.as_deref() == Some("snapshot") {
        assert!(text.contains("snapshot "), "{text}");
    }
    // Then streaming, and changes after it.
    wait_for("streaming", Duration::from_secs(120), async || {
        phase_row(&cfg, "Candidate")
            .await
            .filter(|(p, _, _)| p == "streaming")
    })
    .await;
    sim.set_latency_ms(0);
    http_changes(&sim, 100).await;
    // Every record at its newest version, from the snapshot or the events.
    for entity in ["Candidate", "JobOrder"] {
        wait_for(
            "every record at its newest version",
            Duration::from_secs(60),
            async || (stale(&cfg, &sim, entity).await == 0).then_some(()),
        )
        .await;
        assert_complete_modes(&cfg, &sim, entity, &["poll", "events"]).await;
    }
    let events = raw_events(&cfg, "Candidate").await;
    assert!(events.iter().any(|e| e.source_mode == "events"));
    assert!(
        events.len() < 5_000 + 200 + 600,
        "the snapshot read each record about once: {}",
        events.len()
    );
    let text = crmflow::status::render(&crmflow::status::read(&cfg).await.expect("status"));
    assert!(text.contains("streaming"), "{text}");
    stop.cancel();
    run.await.expect("join").expect("source");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_killed_midway_resumes_where_it_was() {
    let sim = start_sim(3_000, 20, 0.3).await;
    sim.set_latency_ms(60);
    let cfg = setup("src_snap_kill", &sim).await;
    let env = [
        ("CRMFLOW_BULLHORN__MODE", "events"),
        ("CRMFLOW_BULLHORN__SUBSCRIPTION_ID", "crmflow-kill"),
        ("CRMFLOW_BULLHORN__ENTITIES", "[\"Candidate\"]"),
        ("CRMFLOW_BULLHORN__PAGE_SIZE", "100"),
        // One range: the saved cursor follows what was read (with several, it waits for the first).
        ("CRMFLOW_BULLHORN__FETCH_CONCURRENCY", "1"),
        ("CRMFLOW_SOURCES__LEASE_TTL_MS", LEASE_MS),
    ];
    let mut a = spawn_ingest(&cfg, &sim, &env);
    wait_for(
        "a third of the snapshot",
        Duration::from_secs(90),
        async || {
            phase_row(&cfg, "Candidate")
                .await
                .filter(|(p, r, _)| p == "snapshot" && *r >= 1_000)
        },
    )
    .await;
    a.kill().expect("SIGKILL");
    a.wait().expect("reap");
    let before = raw_events(&cfg, "Candidate").await.len();
    let saved: Value = saved_cursor(&cfg, "snapshot/Candidate")
        .await
        .expect("snapshot cursor");
    assert!(saved["date_last_modified"].as_i64().is_some(), "{saved}");
    // Changes while nothing runs: the subscription keeps them.
    http_changes(&sim, 50).await;
    sim.set_latency_ms(0);
    let _b = spawn_ingest(&cfg, &sim, &env);
    wait_for("streaming", Duration::from_secs(90), async || {
        phase_row(&cfg, "Candidate")
            .await
            .filter(|(p, _, _)| p == "streaming")
    })
    .await;
    wait_for(
        "every record at its newest version",
        Duration::from_secs(60),
        async || (stale(&cfg, &sim, "Candidate").await == 0).then_some(()),
    )
    .await;
    assert_complete_modes(&cfg, &sim, "Candidate", &["poll", "events"]).await;
    let after = raw_events(&cfg, "Candidate").await.len();
    eprintln!("snapshot events before the kill {before}, after the restart {after}");
    assert!(before >= 1_000, "{before}");
    // Starting over would send the first `before` records again: at least `before` + 3,000 + 50.
    // Resuming re-reads only the overlap window before the saved cursor (ties included).
    assert!(
        after < before + 3_000,
        "the restart resumed the snapshot: {before} then {after}"
    );
}
