//! Test helpers: configuration from the environment with loopback defaults, and a unique
//! namespace (topic prefix + Postgres schema) per test.

use crmflow::config::Config;

/// A configuration pointing at the local services, isolated under a fresh prefix and schema.
pub fn isolated_config(test: &str) -> Config {
    init_logs();
    let mut cfg = Config::default();
    if let Ok(v) = std::env::var("KAFKA_BOOTSTRAP_SERVERS") {
        cfg.kafka.bootstrap_servers = v;
    }
    if let Ok(v) = std::env::var("DB_HOST") {
        cfg.postgres.host = v;
    }
    if let Some(v) = std::env::var("DB_PORT").ok().and_then(|v| v.parse().ok()) {
        cfg.postgres.port = v;
    }
    let suffix: u32 = rand::random();
    let ns = format!("t_{test}_{suffix:08x}");
    cfg.kafka.topic_prefix = format!("{ns}.");
    cfg.kafka.partitions = 3;
    cfg.postgres.schema = ns;
    // In-process runs must not all bind the default metrics port.
    cfg.metrics.listen = String::new();
    cfg.postgres.pool_size = 4;
    cfg
}

/// The path of the `crmflow` binary built for these tests.
#[allow(dead_code)]
pub fn crmflow_bin() -> &'static str {
    env!("CARGO_BIN_EXE_crmflow")
}

/// Logs to the test's captured output; `RUST_LOG=info cargo test -- --nocapture` shows them.
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
}

/// A `crmflow` command pointed at the test's namespace (topic prefix, partitions, schema) and
/// the local services, with the metrics endpoint off and info logs.
#[allow(dead_code)]
pub fn crmflow_cmd(cfg: &crmflow::config::Config) -> std::process::Command {
    let mut cmd = std::process::Command::new(crmflow_bin());
    cmd.env("CRMFLOW_KAFKA__TOPIC_PREFIX", &cfg.kafka.topic_prefix)
        .env(
            "CRMFLOW_KAFKA__PARTITIONS",
            cfg.kafka.partitions.to_string(),
        )
        .env("CRMFLOW_POSTGRES__SCHEMA", &cfg.postgres.schema)
        .env("KAFKA_BOOTSTRAP_SERVERS", &cfg.kafka.bootstrap_servers)
        .env("DB_HOST", &cfg.postgres.host)
        .env("DB_PORT", cfg.postgres.port.to_string())
        .env("CRMFLOW_METRICS__LISTEN", "")
        .env("RUST_LOG", "info,rdkafka=warn");
    cmd
}

/// Spawns `crmflow run` for the test's namespace.
#[allow(dead_code)]
pub fn spawn_stage(
    cfg: &crmflow::config::Config,
    stages: &str,
    extra: &[(&str, &str)],
    one_shot: bool,
) -> ChildGuard {
    let mut cmd = crmflow_cmd(cfg);
    cmd.args(["run", "--stages", stages]);
    if one_shot {
        cmd.arg("--until-caught-up");
    }
    cmd.stdout(std::process::Stdio::null())
        .stderr(child_log(cfg));
    for (k, v) in extra {
        cmd.env(k, v);
    }
    ChildGuard(cmd.spawn().expect("spawn crmflow"))
}

/// A child process that is killed when the test lets go of it, so a failing test leaves no
/// stage running behind it.
pub struct ChildGuard(pub std::process::Child);

impl std::ops::Deref for ChildGuard {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Children append their logs to one file per test namespace (in the temp dir), to read when
/// a test fails.
pub fn child_log(cfg: &crmflow::config::Config) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(std::env::temp_dir().join(format!("{}.log", cfg.postgres.schema)))
        .expect("child log file")
}
