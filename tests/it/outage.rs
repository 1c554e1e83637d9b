//! Log floods: a Postgres outage, made with a TCP proxy this test controls in front of the real
//! server, gives one line when it starts (saying what is affected), no line per retry, and one
//! line when it ends. (Kafka cannot be cut the same way here: its brokers advertise their own
//! address, so clients would bypass a proxy; the Kafka path shares the same limiter, tested as
//! pure logic in `telemetry::outage`.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};

use crate::common::{crmflow_cmd, isolated_config, ChildGuard};

/// A TCP proxy to `target` that can be cut: while down it drops every open connection and
/// refuses new ones.
struct Proxy {
    port: u16,
    down: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let down = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (d, c) = (down.clone(), conns.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if d.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                c.lock().push(tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        });
        Self { port, down, conns }
    }

    fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        for c in self.conns.lock().drain(..) {
            c.abort();
        }
    }

    fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_logs_one_line_down_and_one_line_back() {
    let cfg = isolated_config("outage");
    crmflow::store::migrate(&cfg).await.unwrap();
    let proxy = Proxy::start(format!("{}:{}", cfg.postgres.host, cfg.postgres.port)).await;
    let log = std::env::temp_dir().join(format!("{}-outage.log", cfg.postgres.schema));
    let mut child = ChildGuard(
        crmflow_cmd(&cfg)
            .args(["run", "--stages", "match"])
            .env("DB_PORT", proxy.port.to_string())
            .env("CRMFLOW_METRICS__REFRESH_SECS", "1")
            .env("CRMFLOW_TELEMETRY__LOG_FORMAT", "json")
            // The default filter, as deployed (RUST_LOG replaces it).
            .env_remove("RUST_LOG")
            .env("CRMFLOW_POSTGRES__CONNECT_TIMEOUT_SECS", "2")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(child.try_wait().unwrap().is_none(), "match stage runs");
    proxy.cut();
    tokio::time::sleep(Duration::from_secs(10)).await;
    proxy.restore();
    tokio::time::sleep(Duration::from_secs(6)).await;
    child.kill().unwrap();
    child.wait().unwrap();

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let msg = |v: &serde_json::Value| v["fields"]["message"].as_str().unwrap_or("").to_owned();
    let level = |v: &serde_json::Value| v["level"].as_str().unwrap_or("").to_owned();
    let down: Vec<_> = lines
        .iter()
        .filter(|v| msg(v).starts_with("postgres unreachable"))
        .collect();
    let back: Vec<_> = lines
        .iter()
        .filter(|v| msg(v) == "postgres reachable again")
        .collect();
    assert_eq!(down.len(), 1, "one line when it goes away:\n{text}");
    assert_eq!(level(down[0]), "ERROR");
    assert!(
        down[0]["fields"]["affected"]
            .as_str()
            .is_some_and(|a| !a.is_empty()),
        "says what is affected: {}",
        down[0]
    );
    assert_eq!(back.len(), 1, "one line when it is back:\n{text}");
    // Nothing else at WARN or ERROR during a 10 s outage (no per-retry lines; the first
    // reminder would come after 30 s).
    let loud: Vec<String> = lines
        .iter()
        .filter(|v| matches!(level(v).as_str(), "WARN" | "ERROR"))
        .map(|v| v.to_string())
        .collect();
    assert_eq!(loud.len(), 1, "WARN/ERROR lines:\n{}", loud.join("\n"));
}

/// Found by the soak: a stage started while Postgres was down or still recovering from a crash
/// ("the database system is not yet accepting connections") exited at once. It waits instead,
/// and runs once the database answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_started_while_postgres_is_down_waits_for_it() {
    let cfg = isolated_config("startdown");
    let proxy = Proxy::start(format!("{}:{}", cfg.postgres.host, cfg.postgres.port)).await;
    proxy.cut();
    let mut child = ChildGuard(
        crmflow_cmd(&cfg)
            .args(["run", "--stages", "sink", "--until-caught-up"])
            .env("DB_PORT", proxy.port.to_string())
            .env("CRMFLOW_POSTGRES__CONNECT_TIMEOUT_SECS", "2")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the stage waits for the database instead of exiting"
    );
    proxy.restore();
    // Nothing to consume: once migrated, the one-shot run catches up and exits 0.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the stage did not finish after the database came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(status.success(), "{status}");
    let db = crmflow::store::connect(&cfg).await.unwrap();
    let n: i64 = db
        .query_one("SELECT count(*) FROM stage_offsets", &[])
        .await
        .unwrap()
        .get(0);
    assert!(n >= 0, "migrated");
}
