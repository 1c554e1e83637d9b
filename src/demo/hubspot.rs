//! The demo's HubSpot part: the simulator started in this process (contacts and the `jobs`
//! custom object on a free loopback port), the `[hubspot]` section pointing at it (the
//! simulator's private-app token), and its ground truth for the summary (`crm = 'hubspot'` rows
//! beside Bullhorn's).

use serde::{Deserialize, Serialize};

use super::SourceCounts;
use crate::config::{HubspotConfig, HubspotObject};
use crate::error::{Error, Result};

/// The simulated HubSpot at the end of the run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubspotTruth {
    /// Contacts, archived ones included (`deleted`: archived).
    pub contacts: SourceCounts,
    /// Jobs, archived ones included.
    pub jobs: SourceCounts,
    /// API requests the simulator answered.
    pub requests: u64,
}

/// Starts the simulator (none when both counts are 0).
pub async fn start(
    contacts: usize,
    jobs: usize,
    changes_per_sec: f64,
) -> Result<Option<crmflow_hubspot::sim::SimHandle>> {
    if contacts + jobs == 0 {
        return Ok(None);
    }
    let sim = crmflow_hubspot::sim::Simulator::start(crmflow_hubspot::sim::SimConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        contacts,
        deals: 0,
        jobs,
        changes_per_sec,
        ..Default::default()
    })
    .await
    .map_err(|e| Error::Other(format!("hubspot simulator: {e}")))?;
    Ok(Some(sim))
}

/// The `[hubspot]` section for the demo's simulator: contacts and jobs, the simulator's token.
pub fn config(sim: &crmflow_hubspot::sim::SimHandle, keep_running: bool) -> HubspotConfig {
    HubspotConfig {
        base_url: sim.base_url(),
        access_token: Some(sim.private_app_token().into()),
        objects: HubspotObject::contacts_and_jobs(sim.jobs_object_type_id()),
        // The default suits a real account's rate limits; for watching changes flow, poll often.
        poll_interval_secs: if keep_running { 2 } else { 30 },
        overlap_ms: 5_000,
        ..Default::default()
    }
}

/// Counts of the HubSpot simulator's objects (archived ones included) and its requests.
pub fn truth(sim: &crmflow_hubspot::sim::SimHandle) -> Result<HubspotTruth> {
    let counts = |object: &str| -> Result<SourceCounts> {
        let records = sim
            .records(object)
            .map_err(|e| Error::Other(format!("hubspot simulator: {e}")))?;
        Ok(SourceCounts::tally(&records, |r| r.archived))
    };
    Ok(HubspotTruth {
        contacts: counts("contacts")?,
        jobs: counts("jobs")?,
        requests: sim.stats().total_requests,
    })
}

/// The summary line of the simulator.
pub fn render_line(t: &HubspotTruth) -> String {
    let n = |v: u64| crate::observe::display::thousands(v as i64);
    format!(
        "{:<22}{} contacts ({} archived), {} jobs ({} archived), {} API requests",
        "HubSpot (simulator)",
        n(t.contacts.records),
        n(t.contacts.deleted),
        n(t.jobs.records),
        n(t.jobs.deleted),
        n(t.requests)
    )
}
