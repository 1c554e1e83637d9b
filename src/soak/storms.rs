//! Fault storms: bursts of CRM and ML failures through the simulators' `/sim` control endpoints
//! (429s and Salesforce's `REQUEST_LIMIT_EXCEEDED`, 5xx, hangs, expired sessions and tokens,
//! Pub/Sub gaps, overflows, dropped streams and purged replay ids, ML failures), each undone at its end, and
//! [`calm`], which takes every fault away.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;

use super::other;
use super::say;
use crate::error::{Error, Result};

/// The simulators' base URLs, and a client that trusts the Salesforce simulator's CA.
#[derive(Clone)]
pub struct StormTargets {
    pub http: reqwest::Client,
    pub bullhorn: String,
    pub hubspot: String,
    pub salesforce: String,
    pub ml: String,
}

impl StormTargets {
    /// `salesforce_ca_pem`: the CA of the Salesforce simulator's (TLS) certificate.
    pub fn new(
        bullhorn: String,
        hubspot: String,
        salesforce: String,
        salesforce_ca_pem: &str,
        ml: String,
    ) -> Result<Self> {
        let ca = reqwest::Certificate::from_pem(salesforce_ca_pem.as_bytes()).map_err(other)?;
        let http = reqwest::Client::builder()
            .add_root_certificate(ca)
            .build()
            .map_err(other)?;
        Ok(Self {
            http,
            bullhorn,
            hubspot,
            salesforce,
            ml,
        })
    }

    /// Each CRM simulator's `/sim/changes` (`?count=N` random writes).
    pub fn change_urls(&self) -> [String; 3] {
        [&self.bullhorn, &self.hubspot, &self.salesforce].map(|u| format!("{u}/sim/changes"))
    }
}

/// Number of distinct storms [`storm_once`] knows.
pub const STORMS: u32 = 17;

async fn post(http: &reqwest::Client, url: &str, body: serde_json::Value) -> Result<()> {
    let r = http
        .post(url)
        .json(&body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(other)?;
    if !r.status().is_success() {
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        return Err(Error::Other(format!("POST {url}: {status} {text}")));
    }
    Ok(())
}

/// Sleeps `d` or until the chaos stops.
pub async fn hold(d: Duration, stop: &AtomicBool) {
    let until = Instant::now() + d;
    while Instant::now() < until && !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One fault storm through a simulator's `/sim` control endpoints, undone at its end.
pub async fn storm_once(t: &StormTargets, storm: u32, stop: &AtomicBool) -> Result<()> {
    use serde_json::json;
    let http = &t.http;
    let secs = Duration::from_secs(rand::rng().random_range(3..=12));
    let (bh, hs, sf, ml) = (
        format!("{}/sim/faults", t.bullhorn),
        format!("{}/sim/faults", t.hubspot),
        format!("{}/sim/faults", t.salesforce),
        format!("{}/sim/faults", t.ml),
    );
    let (what, result) = match storm {
        0 => ("bullhorn 429s", post(http, &bh, json!({"rate_limit_next": 40})).await),
        1 => {
            post(http, &bh, json!({"error_rate": 0.4})).await?;
            hold(secs, stop).await;
            ("bullhorn 5xx", post(http, &bh, json!({"error_rate": 0.0})).await)
        }
        2 => {
            // Slower than the client's timeout: requests hang.
            post(http, &bh, json!({"latency_ms": 35_000, "drop_rate": 0.2})).await?;
            hold(secs, stop).await;
            (
                "bullhorn hangs and drops",
                post(http, &bh, json!({"latency_ms": 0, "drop_rate": 0.0})).await,
            )
        }
        3 => (
            "bullhorn expired sessions",
            post(http, &format!("{}/sim/expire-sessions", t.bullhorn), json!({})).await,
        ),
        4 => (
            "hubspot 429s",
            post(http, &hs, json!({"rate_limit_next": 40})).await,
        ),
        5 => {
            post(http, &hs, json!({"error_rate": 0.4})).await?;
            hold(secs, stop).await;
            ("hubspot 5xx", post(http, &hs, json!({"error_rate": 0.0})).await)
        }
        6 => (
            "hubspot hangs",
            post(http, &hs, json!({"hang_next": 4, "hang_ms": 40_000})).await,
        ),
        7 => (
            "hubspot expired tokens",
            post(http, &format!("{}/sim/expire-tokens", t.hubspot), json!({})).await,
        ),
        8 => {
            post(http, &ml, json!({"error_rate": 0.5, "fail_status": 503})).await?;
            hold(secs, stop).await;
            ("ML 5xx", post(http, &ml, json!({"error_rate": 0.0})).await)
        }
        9 => (
            "ML hangs and 429s",
            post(
                http,
                &ml,
                json!({"hang_next": 2, "hang_secs": 45, "fail_next": 20, "fail_status": 429, "retry_after_secs": 1}),
            )
            .await,
        ),
        10 => (
            "salesforce REQUEST_LIMIT_EXCEEDED",
            post(http, &sf, json!({"limit_exceeded_next": 30})).await,
        ),
        11 => {
            post(http, &sf, json!({"error_rate": 0.4})).await?;
            hold(secs, stop).await;
            ("salesforce 5xx", post(http, &sf, json!({"error_rate": 0.0})).await)
        }
        12 => (
            // Longer than the soak's Salesforce request timeout.
            "salesforce hangs",
            post(http, &sf, json!({"hang_next": 4, "hang_ms": 30_000})).await,
        ),
        13 => (
            "salesforce expired sessions (INVALID_SESSION_ID)",
            post(http, &sf, json!({"expire_sessions": true})).await,
        ),
        14 => (
            // The next changes publish GAP_* events, and one write a GAP_OVERFLOW.
            "salesforce Pub/Sub gaps and an overflow",
            post(http, &sf, json!({"gap_next": 10, "overflow_next": 1})).await,
        ),
        15 => (
            // Every open Subscribe stream ends with UNAVAILABLE: readers resubscribe.
            "salesforce Pub/Sub streams dropped",
            post(http, &sf, json!({"break_streams": true})).await,
        ),
        _ => (
            // Every stored replay id falls out of the retention window: a restarted or
            // resubscribing reader resyncs by poll.
            "salesforce change events purged",
            post(http, &sf, json!({"purge_events": true})).await,
        ),
    };
    say(&format!("storm: {what}"));
    result
}

/// Takes every fault away.
pub async fn calm(t: &StormTargets) -> Result<()> {
    use serde_json::json;
    let http = &t.http;
    post(
        http,
        &format!("{}/sim/faults", t.bullhorn),
        json!({"rate_limit_next": 0, "error_rate": 0.0, "latency_ms": 0, "drop_rate": 0.0, "fail_next": 0, "drop_next": 0}),
    )
    .await?;
    post(
        http,
        &format!("{}/sim/faults", t.hubspot),
        json!({"rate_limit_next": 0, "error_rate": 0.0, "hang_next": 0, "fail_next": 0}),
    )
    .await?;
    post(
        http,
        &format!("{}/sim/faults", t.salesforce),
        json!({"limit_exceeded_next": 0, "error_rate": 0.0, "hang_next": 0, "fail_next": 0, "latency_ms": 0, "gap_next": 0, "overflow_next": 0}),
    )
    .await?;
    post(
        http,
        &format!("{}/sim/faults", t.ml),
        json!({"error_rate": 0.0, "hang_next": 0, "fail_next": 0, "fail_status": 503}),
    )
    .await
}
