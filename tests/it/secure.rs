//! Production connectivity against the secure variants of the local services
//! (`scripts/services`): Kafka's SASL_SSL listener with SCRAM, Postgres with TLS and a role
//! that may only connect over TLS, secrets read from files.
//!
//! The CA, port and test credentials come from `scripts/services env` (`SECURE_*`), with the
//! script's defaults. Failure paths run the `crmflow` binary and check that it exits quickly
//! with a one-line error naming the problem (librdkafka would otherwise retry forever).

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{crmflow_bin, isolated_config};
use crmflow::config::{Config, SaslMechanism, SslMode};
use crmflow_bullhorn::sim::{SimConfig, Simulator};
use secrecy::SecretString;
use tokio::net::{TcpListener, TcpStream};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// The secure endpoints and test credentials of the local services.
struct Secure {
    ca: PathBuf,
    kafka: String,
    kafka_user: String,
    kafka_password: String,
    db_user: String,
    db_password: String,
}

fn secure() -> Secure {
    Secure {
        ca: env_or("SECURE_CA_FILE", "/var/tmp/crmflow-services/tls/ca.pem").into(),
        kafka: env_or("SECURE_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9094"),
        kafka_user: env_or("SECURE_KAFKA_USERNAME", "crmflow"),
        kafka_password: env_or("SECURE_KAFKA_PASSWORD", "crmflow-scram-secret"),
        db_user: env_or("SECURE_DB_USER", "crmflow_tls"),
        db_password: env_or("SECURE_DB_PASSWORD", "crmflow-tls-secret"),
    }
}

/// A file in the temp dir holding `content` plus a trailing newline (as `echo` writes it).
fn secret_file(name: &str, content: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("{name}-{:08x}", rand::random::<u32>()));
    std::fs::write(&p, format!("{content}\n")).unwrap();
    p
}

/// An isolated configuration over SASL_SSL/SCRAM-SHA-256 and Postgres `verify-full` as the
/// TLS-only role.
fn secure_config(test: &str) -> (Config, Secure) {
    let s = secure();
    let mut cfg = isolated_config(test);
    cfg.kafka.bootstrap_servers = s.kafka.clone();
    cfg.kafka.sasl.mechanism = Some(SaslMechanism::ScramSha256);
    cfg.kafka.sasl.username = Some(s.kafka_user.clone());
    cfg.kafka.sasl.password = Some(SecretString::from(s.kafka_password.clone()));
    cfg.kafka.tls.ca_file = Some(s.ca.clone());
    cfg.postgres.user = s.db_user.clone();
    cfg.postgres.password = SecretString::from(s.db_password.clone());
    cfg.postgres.sslmode = SslMode::VerifyFull;
    cfg.postgres.sslrootcert = Some(s.ca.clone());
    (cfg, s)
}

/// A `crmflow` command configured only through the environment, as an operator would:
/// secrets from files, SCRAM over TLS, `verify-full`.
fn secure_cmd(cfg: &Config, s: &Secure, files: &Files) -> Command {
    let mut cmd = Command::new(crmflow_bin());
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CRMFLOW_KAFKA__TOPIC_PREFIX", &cfg.kafka.topic_prefix)
        .env(
            "CRMFLOW_KAFKA__PARTITIONS",
            cfg.kafka.partitions.to_string(),
        )
        .env("CRMFLOW_POSTGRES__SCHEMA", &cfg.postgres.schema)
        .env("KAFKA_BOOTSTRAP_SERVERS", &s.kafka)
        .env("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
        .env("KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
        .env("KAFKA_SASL_USERNAME", &s.kafka_user)
        .env("KAFKA_SASL_PASSWORD_FILE", &files.kafka_password)
        .env("KAFKA_SSL_CA_LOCATION", &s.ca)
        .env(
            "DATABASE_URL",
            format!(
                "postgres://{}@{}:{}/crmflow?sslmode=verify-full&sslrootcert={}",
                s.db_user,
                cfg.postgres.host,
                cfg.postgres.port,
                s.ca.display()
            ),
        )
        .env("DB_PASSWORD_FILE", &files.db_password)
        .env("CRMFLOW_METRICS__LISTEN", "")
        .env("RUST_LOG", "info");
    cmd
}

struct Files {
    kafka_password: PathBuf,
    db_password: PathBuf,
}

fn run_output(mut cmd: Command, limit: Duration) -> (Output, Duration) {
    let t = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn crmflow");
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "crmflow did not exit within {limit:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (child.wait_with_output().unwrap(), t.elapsed())
}

/// Runs `crmflow <args>` with `env` on top of the test's plain environment; expects a failure
/// within 20 s and returns stderr's error line.
fn expect_quick_failure(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(crmflow_bin());
    cmd.args(args).env("CRMFLOW_METRICS__LISTEN", "");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (out, took) = run_output(cmd, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} succeeded: {stderr}");
    assert!(
        took < Duration::from_secs(20),
        "{args:?} took {took:?}: {stderr}"
    );
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("error:") || l.starts_with("configuration error"))
        .unwrap_or_else(|| panic!("no error line in: {stderr}"))
        .to_owned();
    line
}

/// A TCP proxy on 127.0.0.2 (any 127/8 address is loopback on Linux) to `target`: the same
/// server under a name its certificate does not carry.
async fn proxy_on_other_name(target: String) -> String {
    let l = TcpListener::bind("127.0.0.2:0")
        .await
        .expect("bind 127.0.0.2");
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = l.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut out) = TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    addr.to_string()
}

/// An error with its causes.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s = format!("{s}: {c}");
        cause = c.source();
    }
    s
}

fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let code = body.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_and_sink_over_sasl_ssl_scram_and_verify_full_with_secrets_from_files() {
    let (cfg, s) = secure_config("secure_e2e");
    let bh_secret = format!("bh-client-secret-{:08x}", rand::random::<u32>());
    let bh_password = format!("bh-user-password-{:08x}", rand::random::<u32>());
    let sim = Simulator::start(SimConfig {
        candidates: 300,
        job_orders: 40,
        client_secret: bh_secret.clone(),
        password: bh_password.clone(),
        ..SimConfig::for_tests()
    })
    .await
    .expect("simulator");
    let c = sim.credentials();
    let files = Files {
        kafka_password: secret_file("kafka-password", &s.kafka_password),
        db_password: secret_file("db-password", &s.db_password),
    };
    let bh_secret_file = secret_file("bh-secret", &bh_secret);
    let bh_password_file = secret_file("bh-password", &bh_password);
    let with_bullhorn = |mut cmd: Command| {
        cmd.env("BULLHORN_REST_URL", sim.rest_services_url())
            .env("BULLHORN_CLIENT_ID", &c.client_id)
            .env("BULLHORN_USERNAME", &c.username)
            .env("BULLHORN_CLIENT_SECRET_FILE", &bh_secret_file)
            .env("BULLHORN_PASSWORD_FILE", &bh_password_file)
            .env("CRMFLOW_BULLHORN__POLL_INTERVAL_SECS", "1");
        cmd
    };
    let secrets = [
        s.kafka_password.as_str(),
        s.db_password.as_str(),
        bh_secret.as_str(),
        bh_password.as_str(),
    ];
    let assert_clean = |what: &str, text: &str| {
        for secret in secrets {
            assert!(!text.contains(secret), "{what} shows a secret: {text}");
        }
    };

    // The whole pipeline, one-shot, configured from the environment only.
    let mut cmd = with_bullhorn(secure_cmd(&cfg, &s, &files));
    cmd.args([
        "run",
        "--stages",
        "ingest,normalize,sink",
        "--until-caught-up",
    ]);
    let (out, took) =
        tokio::task::spawn_blocking(move || run_output(cmd, Duration::from_secs(240)))
            .await
            .unwrap();
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "secure run failed after {took:?}: {logs}"
    );
    assert_clean("the run's logs", &logs);

    // Every record arrived, over TLS, as the TLS-only role (a plain connection is refused).
    let client = crmflow::store::connect(&cfg)
        .await
        .expect("verify-full connection");
    let ssl: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl, "the connection is not TLS");
    let rows: i64 = client
        .query_one("SELECT count(*) FROM candidates", &[])
        .await
        .unwrap()
        .get(0);
    // Dead letters are read over SASL_SSL too.
    let rejected = crate::fixtures::dead_letters(&cfg).len();
    let total = sim.count("Candidate").unwrap() + sim.count("JobOrder").unwrap();
    let positions: i64 = client
        .query_one("SELECT count(*) FROM positions", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        rows > 0 && positions > 0,
        "rows {rows}, positions {positions}"
    );
    assert_eq!(
        rows as usize + positions as usize + rejected,
        total,
        "rows + dead letters = records"
    );
    let mut plain = cfg.clone();
    plain.postgres.sslmode = SslMode::Disable;
    let err = crmflow::store::connect(&plain).await.unwrap_err();
    let err = chain(&err);
    assert!(err.contains("no encryption"), "{err}");

    // `config check` redacts, also raw librdkafka properties.
    let mut cmd = with_bullhorn(secure_cmd(&cfg, &s, &files));
    let file = std::env::temp_dir().join(format!("{}.toml", cfg.postgres.schema));
    std::fs::write(
        &file,
        "[kafka.client_properties]\n\"ssl.key.password\" = \"raw-key-secret-9\"\n\"linger.ms\" = \"5\"\n",
    )
    .unwrap();
    cmd.args(["config", "check"])
        .env("CRMFLOW_CONFIG", &file)
        .env("CRMFLOW_ML__API_KEY", "ml-api-key-secret-7");
    let (out, _) = run_output(cmd, Duration::from_secs(30));
    let _ = std::fs::remove_file(&file);
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{shown}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(shown.contains("\"linger.ms\" = \"5\""), "{shown}");
    assert!(!shown.contains("raw-key-secret-9"), "{shown}");
    assert!(shown.contains("[redacted]"), "{shown}");
    assert!(shown.contains("sslmode = \"verify-full\""), "{shown}");
    assert_clean("config check", &shown);
    assert!(!shown.contains("ml-api-key-secret-7"), "{shown}");

    // A running sink: ready over both secure connections, and /metrics shows no secret.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = with_bullhorn(secure_cmd(&cfg, &s, &files));
    cmd.args(["run", "--stages", "sink"])
        .env("CRMFLOW_METRICS__LISTEN", &listen)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = crate::common::ChildGuard(cmd.spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    let ready = loop {
        let l = listen.clone();
        let r = tokio::task::spawn_blocking(move || http_get(&l, "/readyz"))
            .await
            .unwrap();
        match r {
            Some((200, body)) => break body,
            other if Instant::now() > deadline => panic!("never ready: {other:?}"),
            _ => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    };
    assert_clean("/readyz", &ready);
    let l = listen.clone();
    let (code, metrics) = tokio::task::spawn_blocking(move || http_get(&l, "/metrics"))
        .await
        .unwrap()
        .expect("/metrics");
    assert_eq!(code, 200);
    assert!(metrics.contains("crmflow_"), "{metrics}");
    assert_clean("/metrics", &metrics);
    let _ = child.0.kill();
    let mut stderr = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let _ = child.0.wait();
    assert_clean("the sink's logs", &stderr);

    for f in [
        &files.kafka_password,
        &files.db_password,
        &bh_secret_file,
        &bh_password_file,
    ] {
        let _ = std::fs::remove_file(f);
    }
}

#[test]
fn wrong_kafka_password_fails_fast_naming_authentication() {
    let s = secure();
    let line = expect_quick_failure(
        &["topics"],
        &[
            ("KAFKA_BOOTSTRAP_SERVERS", &s.kafka),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("KAFKA_SASL_USERNAME", &s.kafka_user),
            ("KAFKA_SASL_PASSWORD", "not-the-password-42"),
            ("KAFKA_SSL_CA_LOCATION", s.ca.to_str().unwrap()),
            ("CRMFLOW_KAFKA__TOPIC_PREFIX", "t_secure_badpw."),
        ],
    );
    assert!(line.contains("cannot connect to Kafka"), "{line}");
    assert!(line.to_lowercase().contains("authentication"), "{line}");
    assert!(!line.contains("not-the-password-42"), "{line}");
}

#[test]
fn unknown_kafka_ca_fails_fast_naming_the_certificate() {
    let s = secure();
    // No CA file: the system's store, which does not hold the local test CA.
    let line = expect_quick_failure(
        &["topics"],
        &[
            ("KAFKA_BOOTSTRAP_SERVERS", &s.kafka),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-256"),
            ("KAFKA_SASL_USERNAME", &s.kafka_user),
            ("KAFKA_SASL_PASSWORD", &s.kafka_password),
            ("CRMFLOW_KAFKA__TOPIC_PREFIX", "t_secure_ca."),
        ],
    );
    assert!(line.contains("certificate verify failed"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_hostname_mismatch_fails_fast_and_can_be_waived() {
    let s = secure();
    let other = proxy_on_other_name(s.kafka.clone()).await;
    let env = |verify: &'static str| {
        vec![
            ("KAFKA_BOOTSTRAP_SERVERS".to_owned(), other.clone()),
            (
                "KAFKA_SASL_MECHANISM".to_owned(),
                "SCRAM-SHA-256".to_owned(),
            ),
            ("KAFKA_SASL_USERNAME".to_owned(), s.kafka_user.clone()),
            ("KAFKA_SASL_PASSWORD".to_owned(), s.kafka_password.clone()),
            (
                "KAFKA_SSL_CA_LOCATION".to_owned(),
                s.ca.display().to_string(),
            ),
            ("KAFKA_SSL_VERIFY_HOSTNAME".to_owned(), verify.to_owned()),
        ]
    };
    let e = env("true");
    let line = tokio::task::spawn_blocking(move || {
        let e: Vec<(&str, &str)> = e.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        expect_quick_failure(&["topics"], &e)
    })
    .await
    .unwrap();
    assert!(line.contains("certificate verify failed"), "{line}");
    assert!(line.contains("127.0.0.2"), "{line}");

    // kafka.tls.verify_hostname = false waives the name check (the chain is still checked).
    let e = env("false");
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(crmflow_bin());
        cmd.args(["topics"])
            .env("CRMFLOW_KAFKA__TOPIC_PREFIX", "t_secure_waive.")
            .envs(e);
        run_output(cmd, Duration::from_secs(60)).0
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tls_failures_are_quick_one_line_errors() {
    let (cfg, s) = secure_config("secure_pgfail");
    let base = [
        ("DB_HOST", cfg.postgres.host.clone()),
        ("DB_PORT", cfg.postgres.port.to_string()),
        ("DB_USER", s.db_user.clone()),
        ("CRMFLOW_POSTGRES__SCHEMA", cfg.postgres.schema.clone()),
    ];
    let run = |extra: Vec<(&'static str, String)>| {
        let env: Vec<(&'static str, String)> = base.iter().cloned().chain(extra).collect();
        tokio::task::spawn_blocking(move || {
            let e: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            expect_quick_failure(&["migrate"], &e)
        })
    };
    let ca = s.ca.display().to_string();

    // Wrong password.
    let line = run(vec![
        ("DB_PASSWORD", "not-the-password-43".into()),
        ("DB_SSLMODE", "verify-full".into()),
        ("DB_SSLROOTCERT", ca.clone()),
    ])
    .await
    .unwrap();
    assert!(line.contains("password authentication failed"), "{line}");
    assert!(!line.contains("not-the-password-43"), "{line}");

    // Unknown CA: the bundled public roots do not hold the local test CA.
    let line = run(vec![
        ("DB_PASSWORD", s.db_password.clone()),
        ("DB_SSLMODE", "verify-full".into()),
        ("DB_SSLROOTCERT", "system".into()),
    ])
    .await
    .unwrap();
    assert!(line.contains("UnknownIssuer"), "{line}");

    // Host name mismatch: the same server as 127.0.0.2.
    let other = proxy_on_other_name(format!("{}:{}", cfg.postgres.host, cfg.postgres.port)).await;
    let (host, port) = other.split_once(':').unwrap();
    let line = run(vec![
        ("DB_PASSWORD", s.db_password.clone()),
        ("DB_SSLMODE", "verify-full".into()),
        ("DB_SSLROOTCERT", ca.clone()),
        ("DB_HOST", host.into()),
        ("DB_PORT", port.into()),
    ])
    .await
    .unwrap();
    assert!(line.contains("not valid for name"), "{line}");
    assert!(line.contains("127.0.0.2"), "{line}");

    // verify-ca checks the chain only: the same proxy is fine.
    let mut ca_only = cfg.clone();
    ca_only.postgres.host = host.into();
    ca_only.postgres.port = port.parse().unwrap();
    ca_only.postgres.sslmode = SslMode::VerifyCa;
    let client = crmflow::store::connect(&ca_only).await.expect("verify-ca");
    client.simple_query("SELECT 1").await.unwrap();
    // require with a root certificate behaves like verify-ca (libpq).
    ca_only.postgres.sslmode = SslMode::Require;
    crmflow::store::connect(&ca_only)
        .await
        .expect("require + sslrootcert");
    ca_only.postgres.sslrootcert = Some("system".into());
    let err = crmflow::store::connect(&ca_only).await.unwrap_err();
    assert!(chain(&err).contains("UnknownIssuer"), "{}", chain(&err));
    assert!(!err.is_retriable(), "a certificate problem is not retried");

    // A missing secret file: a one-line error naming the file.
    let line = run(vec![(
        "DB_PASSWORD_FILE",
        "/nonexistent/db-password".into(),
    )])
    .await
    .unwrap();
    assert!(line.contains("/nonexistent/db-password"), "{line}");
    assert!(line.contains("postgres.password_file"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_uses_tls_when_offered_and_require_without_ca_does_not_verify() {
    let (mut cfg, s) = secure_config("secure_prefer");
    cfg.postgres.sslrootcert = None;
    for mode in [SslMode::Prefer, SslMode::Require] {
        cfg.postgres.sslmode = mode;
        let client = crmflow::store::connect(&cfg)
            .await
            .unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        let ssl: bool = client
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(ssl, "{mode:?} did not use TLS");
    }
    // verify-full without a CA file is a set-up error, before any connection.
    cfg.postgres.sslmode = SslMode::VerifyFull;
    let err = crmflow::store::pool(&cfg).unwrap_err().to_string();
    assert!(err.contains("sslrootcert"), "{err}");
    let _ = s;
}

fn base64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| (n << 8) | *b as u32) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A one-route OIDC token endpoint: answers every POST with an unsigned JWT for `admin` (the
/// local broker validates OAUTHBEARER tokens with Kafka's unsecured validator) and records the
/// requests' `Authorization` headers.
async fn token_endpoint() -> (String, std::sync::Arc<parking_lot::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let seen = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/oauth2/token", l.local_addr().unwrap());
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = vec![0u8; 16 * 1024];
            let n = s.read(&mut buf).await.unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).into_owned();
            if let Some(auth) = req
                .lines()
                .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
            {
                record.lock().push(auth.to_owned());
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let jwt = format!(
                "{}.{}.",
                base64url(br#"{"alg":"none"}"#),
                base64url(
                    format!(
                        r#"{{"sub":"admin","iat":{now},"exp":{},"scope":"kafka"}}"#,
                        now + 3600
                    )
                    .as_bytes()
                )
            );
            let body =
                format!(r#"{{"access_token":"{jwt}","token_type":"bearer","expires_in":3600}}"#);
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
        }
    });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauthbearer_oidc_client_credentials_and_unsecured_jwt() {
    let s = secure();
    let (url, seen) = token_endpoint().await;
    let secret = format!("oidc-secret-{:08x}", rand::random::<u32>());
    let secret_file = secret_file("oidc-secret", &secret);
    let ca = s.ca.display().to_string();
    let (kafka, sf) = (s.kafka.clone(), secret_file.clone());
    // OIDC: librdkafka (built with libcurl) runs the client-credentials grant itself.
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(crmflow_bin());
        cmd.args(["topics"])
            .env("CRMFLOW_KAFKA__TOPIC_PREFIX", "t_secure_oidc.")
            .env("KAFKA_BOOTSTRAP_SERVERS", &kafka)
            .env("KAFKA_SASL_MECHANISM", "OAUTHBEARER")
            .env("KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL", &url)
            .env("KAFKA_SASL_OAUTHBEARER_CLIENT_ID", "crmflow-client")
            .env("KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET_FILE", &sf)
            .env("KAFKA_SASL_OAUTHBEARER_SCOPE", "kafka")
            .env("KAFKA_SSL_CA_LOCATION", &ca)
            .env("CRMFLOW_METRICS__LISTEN", "");
        run_output(cmd, Duration::from_secs(60)).0
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains(&secret), "{stderr}");
    // The secret from the file went to the token endpoint as HTTP Basic credentials.
    let want = base64url(format!("crmflow-client:{secret}").as_bytes());
    let auths = seen.lock().clone();
    assert!(
        auths.iter().any(|a| {
            let v = a.split_whitespace().last().unwrap_or_default();
            v.trim_end_matches('=').replace('+', "-").replace('/', "_") == want
        }),
        "{auths:?}"
    );
    let _ = std::fs::remove_file(&secret_file);

    // The unsecured-JWT method (test brokers): no token endpoint at all.
    let ca = s.ca.display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(crmflow_bin());
        cmd.args(["topics"])
            .env("CRMFLOW_KAFKA__TOPIC_PREFIX", "t_secure_jwt.")
            .env("KAFKA_BOOTSTRAP_SERVERS", &s.kafka)
            .env("KAFKA_SASL_MECHANISM", "OAUTHBEARER")
            .env("KAFKA_SASL_OAUTHBEARER_METHOD", "unsecured-jwt")
            .env("CRMFLOW_KAFKA__SASL__OAUTHBEARER_CONFIG", "principal=admin")
            .env("KAFKA_SSL_CA_LOCATION", &ca)
            .env("CRMFLOW_METRICS__LISTEN", "");
        run_output(cmd, Duration::from_secs(60)).0
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
