//! The demo's Salesforce part: the simulator started in this process (HTTPS + Pub/Sub on a free
//! loopback port, its CA written beside the demo's other temporary files), the `[salesforce]`
//! section pointing at it (client credentials, CDC mode by default), and its ground truth for the
//! summary (`crm = 'salesforce'` rows beside Bullhorn's and HubSpot's).

use serde::{Deserialize, Serialize};

use super::SourceCounts;
use crate::config::{Config, SalesforceAuth, SalesforceMode};
use crate::error::{Error, Result};

/// The simulated Salesforce org at the end of the run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalesforceTruth {
    /// Contacts, recycle-bin ones included (`deleted`: `IsDeleted`).
    pub contacts: SourceCounts,
    /// Position__c records, recycle-bin ones included.
    pub positions: SourceCounts,
    /// REST, OAuth and SOAP requests the simulator answered.
    pub requests: u64,
    /// Change events the simulator published over the Pub/Sub API.
    pub events_published: u64,
    /// `poll` or `cdc`.
    pub mode: String,
}

/// Starts the simulator (none when both counts are 0).
pub async fn start(
    contacts: usize,
    positions: usize,
    changes_per_sec: f64,
) -> Result<Option<crmflow_salesforce::sim::SimHandle>> {
    if contacts + positions == 0 {
        return Ok(None);
    }
    let sim = crmflow_salesforce::sim::Simulator::start(crmflow_salesforce::sim::SimConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        contacts,
        positions,
        changes_per_sec,
        ..Default::default()
    })
    .await
    .map_err(|e| Error::Other(format!("salesforce simulator: {e}")))?;
    Ok(Some(sim))
}

/// Points `[salesforce]` at the simulator: client credentials, its CA, both objects, `mode`.
pub fn configure(
    cfg: &mut Config,
    sim: &crmflow_salesforce::sim::SimHandle,
    mode: SalesforceMode,
    keep_running: bool,
) -> Result<()> {
    let ca = std::env::temp_dir().join(format!(
        "crmflow-demo-salesforce-{}-ca.pem",
        sim.addr().port()
    ));
    std::fs::write(&ca, sim.ca_pem())
        .map_err(|e| Error::Other(format!("salesforce CA file {}: {e}", ca.display())))?;
    let c = sim.config();
    let s = &mut cfg.salesforce;
    s.enabled = true;
    s.mode = mode;
    s.login_url = sim.base_url();
    s.instance_url = None;
    s.auth = SalesforceAuth::ClientCredentials;
    s.client_id = Some(c.client_id.clone());
    s.client_secret = Some(c.client_secret.clone().into());
    s.ca_file = Some(ca);
    s.pubsub_endpoint = Some(sim.base_url());
    s.objects = vec![sim.object_name(0), sim.object_name(1)];
    if keep_running && s.poll_interval_secs == 30 {
        // The default suits a real org's API allowance; for watching changes flow, poll often.
        s.poll_interval_secs = 2;
    }
    Ok(())
}

/// Counts of the simulator's records (recycle bin included) and its traffic.
pub fn truth(
    sim: &crmflow_salesforce::sim::SimHandle,
    mode: SalesforceMode,
) -> Result<SalesforceTruth> {
    let counts = |object: &str| -> Result<SourceCounts> {
        let records = sim
            .records(object)
            .map_err(|e| Error::Other(format!("salesforce simulator: {e}")))?;
        Ok(SourceCounts::tally(&records, |r| {
            r["IsDeleted"].as_bool().unwrap_or(false)
        }))
    };
    let stats = sim.stats();
    Ok(SalesforceTruth {
        contacts: counts(&sim.object_name(0))?,
        positions: counts(&sim.object_name(1))?,
        requests: stats["requests"].as_u64().unwrap_or(0),
        events_published: stats["events_published"].as_u64().unwrap_or(0),
        mode: match mode {
            SalesforceMode::Poll => "poll".into(),
            SalesforceMode::Cdc => "cdc".into(),
        },
    })
}

/// The summary line of the simulator.
pub fn render_line(t: &SalesforceTruth) -> String {
    let n = |v: u64| crate::observe::display::thousands(v as i64);
    format!(
        "{:<22}{} contacts ({} deleted), {} positions ({} deleted), {} API requests, {} change events ({} mode)",
        "Salesforce (simulator)",
        n(t.contacts.records),
        n(t.contacts.deleted),
        n(t.positions.records),
        n(t.positions.deleted),
        n(t.requests),
        n(t.events_published),
        t.mode
    )
}
