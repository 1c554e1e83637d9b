//! The demo's Bullhorn part: the simulator started in this process (REST + OAuth on a free
//! loopback port), the `[bullhorn]` section pointing at it (the simulator's credentials), and its
//! ground truth for the summary (candidates and job orders, soft-deleted ones included).

use serde::{Deserialize, Serialize};

use super::SourceCounts;
use crate::config::Config;
use crate::error::{Error, Result};

/// The simulated Bullhorn at the end of the run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceTruth {
    pub candidates: SourceCounts,
    pub job_orders: SourceCounts,
    /// REST and OAuth requests the simulator answered.
    pub requests: u64,
}

/// Starts the simulator with `candidates` and `job_orders` records, making `changes_per_sec`
/// changes per second (0: none).
pub async fn start(
    candidates: usize,
    job_orders: usize,
    changes_per_sec: f64,
) -> Result<crmflow_bullhorn::sim::SimHandle> {
    crmflow_bullhorn::sim::Simulator::start(crmflow_bullhorn::sim::SimConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        candidates,
        job_orders,
        changes_per_sec,
        ..Default::default()
    })
    .await
    .map_err(|e| Error::Other(format!("bullhorn simulator: {e}")))
}

/// Points `[bullhorn]` at the simulator: its REST URL and credentials.
pub fn configure(cfg: &mut Config, sim: &crmflow_bullhorn::sim::SimHandle) {
    let creds = sim.credentials();
    cfg.bullhorn.rest_url = sim.rest_services_url();
    cfg.bullhorn.client_id = Some(creds.client_id);
    cfg.bullhorn.client_secret = Some(creds.client_secret.into());
    cfg.bullhorn.username = Some(creds.username);
    cfg.bullhorn.password = Some(creds.password.into());
}

/// Counts of the simulator's records (soft-deleted ones included) and its requests.
pub fn truth(sim: &crmflow_bullhorn::sim::SimHandle) -> Result<SourceTruth> {
    let counts = |entity: &str| -> Result<SourceCounts> {
        let records = sim
            .records(entity)
            .map_err(|e| Error::Other(format!("bullhorn simulator: {e}")))?;
        Ok(SourceCounts::tally(&records, |r| {
            r["isDeleted"].as_bool().unwrap_or(false)
        }))
    };
    Ok(SourceTruth {
        candidates: counts("Candidate")?,
        job_orders: counts("JobOrder")?,
        requests: sim.stats().total_requests,
    })
}

/// The summary line of the simulator.
pub fn render_line(t: &SourceTruth) -> String {
    let n = |v: u64| crate::observe::display::thousands(v as i64);
    format!(
        "{:<22}{} candidates ({} deleted), {} job orders ({} deleted), {} API requests",
        "Bullhorn (simulator)",
        n(t.candidates.records),
        n(t.candidates.deleted),
        n(t.job_orders.records),
        n(t.job_orders.deleted),
        n(t.requests)
    )
}
