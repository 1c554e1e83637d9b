//! Test helpers: configuration from the environment with loopback defaults, and a unique
//! namespace (topic prefix + Postgres schema) per test.

use crmflow::config::Config;

/// A configuration pointing at the local services, isolated under a fresh prefix and schema.
pub fn isolated_config(test: &str) -> Config {
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
    cfg.postgres.pool_size = 4;
    cfg
}

/// The path of the `crmflow` binary built for these tests.
#[allow(dead_code)]
pub fn crmflow_bin() -> &'static str {
    env!("CARGO_BIN_EXE_crmflow")
}
