//! Helpers shared by the benchmarks that run against the local services: a configuration
//! isolated under a fresh topic prefix and Postgres schema, and the process's memory figures.

use crmflow::config::Config;

/// A `/proc/self/status` figure in KiB (`VmRSS:`, `VmHWM:`), 0 where unavailable.
#[allow(dead_code)]
pub fn vm_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Local services from the environment (`scripts/services env`), loopback defaults, and a
/// namespace `<bench>_<random>` for topics and schema.
pub fn isolated_config(bench: &str) -> Config {
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
    let ns = format!("{bench}_{:08x}", rand::random::<u32>());
    cfg.kafka.topic_prefix = format!("{ns}.");
    cfg.kafka.partitions = 6;
    cfg.postgres.schema = ns;
    cfg
}
