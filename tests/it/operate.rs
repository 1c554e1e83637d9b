//! The operator's view against real services: `/metrics` is valid Prometheus text whose counters
//! follow the work, `/readyz` turns unready while Postgres is unreachable and ready again when
//! it returns (the stage catching up afterwards), and `crmflow status` reports a lag that
//! shrinks to zero as the stages run.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::common::{child_log, crmflow_cmd, isolated_config, spawn_stage};
use crate::fixtures::*;

/// A TCP forwarder in front of Postgres that the test can take away (listener closed, every
/// open connection cut) and bring back on the same port: from the stage's side, exactly a
/// Postgres that went down and came back.
struct PgSwitch {
    port: u16,
    target: String,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl PgSwitch {
    async fn start(target: String) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let s = PgSwitch {
            port,
            target,
            tasks: Arc::new(Mutex::new(Vec::new())),
        };
        s.serve(l);
        s
    }

    fn serve(&self, l: TcpListener) {
        let target = self.target.clone();
        let tasks = self.tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = l.accept().await {
                let target = target.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut out) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                tasks.lock().push(conn);
            }
        });
        self.tasks.lock().push(accept);
    }

    fn down(&self) {
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
    }

    async fn up(&self) {
        let mut tries = 0;
        let l = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    tracing::debug!(%e, "rebinding the postgres switch");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot rebind port {}: {e}", self.port),
            }
        };
        self.serve(l);
    }
}

/// Parses Prometheus text exposition: every sample line is `name{labels} value`, every name
/// belongs to a `# TYPE` declared before it. Returns `(name{labels}) -> value`.
fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let mut typed: HashMap<String, String> = HashMap::new();
    let mut samples = HashMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            let (name, kind) = (it.next().unwrap(), it.next().unwrap());
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "bad type in {line:?}"
            );
            typed.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with('#') {
            assert!(line.starts_with("# HELP "), "unknown comment {line:?}");
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !name.starts_with(|c: char| c.is_ascii_digit()),
            "bad metric name in {line:?}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(
                    labels.starts_with('{') && labels.ends_with('}'),
                    "bad labels in {line:?}"
                );
                for pair in labels[1..labels.len() - 1].split("\",") {
                    let (k, v) = pair.split_once("=\"").expect("label k=\"v\"");
                    assert!(!k.is_empty() && !v.contains('\n'), "bad label in {line:?}");
                }
            }
        }
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|b| typed.contains_key(*b)))
            .unwrap_or(name);
        assert!(
            typed.contains_key(base),
            "sample before its # TYPE: {line:?}"
        );
        samples.insert(series.to_owned(), value);
    }
    samples
}

fn sample(m: &HashMap<String, f64>, series: &str) -> f64 {
    m.get(series).copied().unwrap_or(0.0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn get(http: &reqwest::Client, url: &str) -> Option<(u16, String)> {
    let r = http.get(url).send().await.ok()?;
    let code = r.status().as_u16();
    Some((code, r.text().await.ok()?))
}

/// Polls `url` until `ok` holds for its answer, failing after `secs`.
async fn wait_for(
    http: &reqwest::Client,
    url: &str,
    secs: u64,
    what: &str,
    ok: impl Fn(u16, &str) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut last = None;
    while tokio::time::Instant::now() < deadline {
        if let Some((code, body)) = get(http, url).await {
            if ok(code, &body) {
                return body;
            }
            last = Some((code, body));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{what}: not reached within {secs} s; last answer {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_the_work_and_readyz_follows_postgres() {
    let cfg = isolated_config("operate");
    prepare(&cfg).await;
    let (cands, cand_exp) = candidate_history(400);
    produce_raw(&cfg, &cands).await;
    let rejected_versions = cands
        .iter()
        .filter(|e| {
            e.record_id.parse::<u64>().unwrap() % 31 == 0 && e.op != crmflow::model::Op::Delete
        })
        .count() as f64;

    let pg = PgSwitch::start(format!("{}:{}", cfg.postgres.host, cfg.postgres.port)).await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let listen = format!("127.0.0.1:{port}");
    let pg_port = pg.port.to_string();
    let _stage = spawn_stage(
        &cfg,
        "normalize,sink",
        &[
            ("RUST_LOG", "info,rdkafka=warn,crmflow::observe=debug"),
            ("CRMFLOW_METRICS__LISTEN", listen.as_str()),
            ("CRMFLOW_METRICS__REFRESH_SECS", "1"),
            ("DB_PORT", pg_port.as_str()),
            ("CRMFLOW_SINK__LINGER_MS", "50"),
        ],
        false,
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    // Every event read, the bad ones rejected by rule, the rest written.
    let rows = cand_exp.values().filter(|e| !e.rejected).count() as f64;
    let events = cands.len() as f64;
    let text = wait_for(
        &http,
        &format!("{base}/metrics"),
        120,
        "all rows written",
        |c, b| {
            c == 200 && {
                let m = parse_prometheus(b);
                sample(&m, r#"crmflow_records_in_total{stage="normalize"}"#) >= events
                    && sink_rows(&m) >= rows
                    && m.keys()
                        .any(|k| k.starts_with("crmflow_consumer_lag{stage=\"normalize\""))
                    && sample(&m, "crmflow_dlq_depth") >= rejected_versions
            }
        },
    )
    .await;
    let m = parse_prometheus(&text);
    assert_eq!(
        sample(&m, r#"crmflow_records_in_total{stage="normalize"}"#),
        events
    );
    assert_eq!(
        sample(
            &m,
            r#"crmflow_records_rejected_total{stage="normalize",rule="candidate.email.format"}"#
        ),
        rejected_versions,
        "rejections counted under their rule: {:?}",
        m.keys()
            .filter(|k| k.contains("rejected"))
            .collect::<Vec<_>>()
    );
    assert!(sample(&m, r#"crmflow_batch_size_count{stage="sink"}"#) >= 1.0);
    assert!(
        sample(
            &m,
            r#"crmflow_freshness_seconds_count{stage="sink",entity="candidate"}"#
        ) >= 1.0
    );
    assert!(m
        .keys()
        .any(|k| k.starts_with("crmflow_consumer_lag{stage=\"normalize\"")));
    assert!(m.contains_key("crmflow_dlq_depth"));
    assert!(
        sample(&m, "crmflow_dlq_depth") >= rejected_versions,
        "dead letters retained"
    );

    // Health and readiness with everything up.
    let (code, _) = get(&http, &format!("{base}/healthz")).await.unwrap();
    assert_eq!(code, 200);
    wait_for(&http, &format!("{base}/readyz"), 30, "ready", |c, _| {
        c == 200
    })
    .await;

    // Postgres goes away: unready, and the sink retries the batch it cannot write.
    pg.down();
    let body = wait_for(&http, &format!("{base}/readyz"), 30, "unready", |c, _| {
        c == 503
    })
    .await;
    let r: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(r["ready"], false);
    assert!(
        r["postgres"].as_str().unwrap().starts_with("unreachable"),
        "{r}"
    );
    assert_eq!(r["kafka"], "ok", "{r}");
    let (more, more_exp) = job_history(50);
    produce_raw(&cfg, &more).await;
    let retried = wait_for(
        &http,
        &format!("{base}/metrics"),
        60,
        "sink retries",
        |c, b| {
            c == 200
                && sample(
                    &parse_prometheus(b),
                    r#"crmflow_retries_total{stage="sink",cause="postgres"}"#,
                ) >= 1.0
        },
    )
    .await;
    let before = sink_rows(&parse_prometheus(&retried));

    // It comes back: ready again, and the held batch lands.
    pg.up().await;
    wait_for(
        &http,
        &format!("{base}/readyz"),
        60,
        "ready again",
        |c, _| c == 200,
    )
    .await;
    let positions = more_exp.values().filter(|e| !e.rejected).count() as f64;
    wait_for(
        &http,
        &format!("{base}/metrics"),
        90,
        "counters moved",
        |c, b| c == 200 && sink_rows(&parse_prometheus(b)) >= before + positions,
    )
    .await;
    assert_eq!(
        table_state(&cfg, "positions").await.len() as f64,
        positions,
        "every position written after the outage"
    );
}

fn sink_rows(m: &HashMap<String, f64>) -> f64 {
    sample(m, r#"crmflow_records_out_total{stage="sink"}"#)
}

fn status(cfg: &crmflow::config::Config) -> serde_json::Value {
    let out = crmflow_cmd(cfg)
        .args(["status", "--json"])
        .env("RUST_LOG", "warn")
        .stderr(child_log(cfg))
        .output()
        .expect("crmflow status");
    assert!(out.status.success(), "crmflow status failed");
    serde_json::from_slice(&out.stdout).expect("status --json is JSON")
}

fn stage_lag(s: &serde_json::Value, stage: &str) -> i64 {
    s["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["stage"] == stage)
        .unwrap_or_else(|| panic!("stage {stage} in {s}"))["lag"]
        .as_i64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_a_lag_that_shrinks_to_zero() {
    let cfg = isolated_config("status");
    prepare(&cfg).await;
    let (jobs, exp) = job_history(120);
    produce_raw(&cfg, &jobs).await;
    let good = exp.values().filter(|e| !e.rejected).count() as i64;

    let s = status(&cfg);
    assert_eq!(stage_lag(&s, "normalize"), jobs.len() as i64, "{s}");
    assert_eq!(stage_lag(&s, "sink"), 0);

    let mut n = spawn_stage(&cfg, "normalize", &[], true);
    assert!(n.wait().unwrap().success(), "normalize one-shot");
    let s = status(&cfg);
    assert_eq!(stage_lag(&s, "normalize"), 0, "{s}");
    assert_eq!(
        stage_lag(&s, "sink"),
        good,
        "canonical records wait for the sink"
    );
    let normalize = &s["stages"].as_array().unwrap()[1];
    assert_eq!(normalize["stage"], "normalize");
    let inst = &normalize["instances"][0];
    assert_eq!(
        inst["records_out"].as_i64(),
        Some(good),
        "final heartbeat: {s}"
    );
    assert_eq!(inst["rejected"].as_i64(), Some(jobs.len() as i64 - good));

    let mut k = spawn_stage(&cfg, "sink", &[], true);
    assert!(k.wait().unwrap().success(), "sink one-shot");
    let s = status(&cfg);
    assert_eq!(stage_lag(&s, "sink"), 0, "{s}");
    assert!(s["dlq_depth"].as_i64().unwrap() >= jobs.len() as i64 - good);
}
