//! The soak's figures: [`Report`] (also written as JSON) and how the terminal shows it.

use super::{procs, verify};

/// The figures the soak prints (and writes with `--report-json`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    pub chaos_seconds: f64,
    pub kills: u64,
    /// Exits of stage processes the soak did not cause, all restarted.
    pub unforced_exits: u64,
    pub kafka_crashes: u64,
    pub postgres_crashes: u64,
    /// Longest time `scripts/services up` took to bring a crashed service back, seconds.
    pub longest_service_restart_seconds: f64,
    pub storms: u64,
    pub changes: u64,
    pub converged: bool,
    pub converge_seconds: f64,
    pub instances: std::collections::BTreeMap<String, procs::ProcStats>,
    pub load_average: String,
    pub verdict: verify::Verdict,
}

/// The report as the terminal shows it.
pub fn render(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(o, "\n== crmflow soak ==");
    let _ = writeln!(
        o,
        "chaos              {:.0} s: {} kills survived, {} Kafka and {} PostgreSQL crashes (longest restart {:.1} s), {} fault storms, {} CRM changes",
        r.chaos_seconds,
        r.kills,
        r.kafka_crashes,
        r.postgres_crashes,
        r.longest_service_restart_seconds,
        r.storms,
        r.changes
    );
    let _ = writeln!(
        o,
        "exits              {} exits of stage processes the soak did not cause (all restarted)",
        r.unforced_exits
    );
    let _ = writeln!(
        o,
        "converged          {} after {:.1} s",
        if r.converged { "yes" } else { "NO" },
        r.converge_seconds
    );
    let _ = writeln!(o, "verdict            {}", r.verdict.line());
    let _ = write!(o, "{}", r.verdict.details(5));
    let _ = writeln!(
        o,
        "{:<18} {:>6} {:>6} {:>9} {:>14}",
        "instance", "kills", "exits", "restarts", "peak RSS (MiB)"
    );
    for (name, s) in &r.instances {
        let _ = writeln!(
            o,
            "{name:<18} {:>6} {:>6} {:>9} {:>14.1}",
            s.kills,
            s.exits,
            s.restarts,
            s.peak_rss_kib as f64 / 1024.0
        );
    }
    let _ = writeln!(o, "load average       {}", r.load_average);
    o
}
