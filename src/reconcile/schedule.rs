//! Scheduled reconciliation inside `crmflow run` (with the ingest stage, when
//! `reconcile.interval_secs` is set): every interval, take the reconcile lock if no other replica
//! holds it (else skip the round), reconcile every configured CRM and entity, release. A failed
//! round is logged and tried again at the next interval; it never stops the run. The budget split
//! (`reconcile.api_share` to reconciliation, the rest to ingest) is [`leave_ingest_the_rest`], applied by
//! `crate::run`.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::runs::ReconcileLock;
use super::{engine, listers, Options, ReconcileError};
use crate::config::Config;

/// While reconciliation is scheduled, ingest's clients keep what reconciliation's share leaves of each
/// CRM's rate limit (Bullhorn per minute, HubSpot per 10 s), so together they stay under it.
/// Salesforce's limit is a daily allowance: its reconcile client waits while the org's usage is past
/// reconciliation's share of it instead.
pub fn leave_ingest_the_rest(cfg: &mut Config) {
    let r = cfg.reconcile.clone();
    cfg.bullhorn.requests_per_minute = r.ingest_budget(cfg.bullhorn.requests_per_minute);
    if let Some(hs) = cfg.hubspot.as_mut() {
        hs.requests_per_10s = r.ingest_budget(hs.requests_per_10s);
    }
}

/// Runs rounds every `interval` until `shutdown`.
pub async fn run(cfg: Config, interval: Duration, shutdown: CancellationToken) {
    info!(
        interval_secs = interval.as_secs(),
        api_share = cfg.reconcile.share(),
        "scheduled reconciliation on"
    );
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        match round(&cfg, &shutdown).await {
            Ok(true) => {}
            Ok(false) => info!("reconcile round skipped: another replica holds the lock"),
            Err(error) => warn!(%error, retriable = error.is_retriable(), "reconcile round failed"),
        }
    }
}

/// One round; `false` when another process holds the lock.
pub async fn round(cfg: &Config, shutdown: &CancellationToken) -> Result<bool, ReconcileError> {
    let Some(mut lock) = ReconcileLock::try_acquire(cfg).await? else {
        return Ok(false);
    };
    let opts = Options::default();
    let result = async {
        let listers = listers(cfg, &opts).await?;
        engine::run_all(cfg, &mut lock, &listers, &opts, shutdown).await
    }
    .await;
    lock.release().await;
    result.map(|_| true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_keeps_what_the_share_leaves_of_every_rate_limit() {
        let mut cfg = Config {
            hubspot: Some(Default::default()),
            ..Default::default()
        };
        cfg.reconcile.api_share = 0.2;
        cfg.bullhorn.requests_per_minute = 1_500;
        cfg.hubspot.as_mut().unwrap().requests_per_10s = 100;
        leave_ingest_the_rest(&mut cfg);
        assert_eq!(cfg.bullhorn.requests_per_minute, 1_200);
        assert_eq!(cfg.hubspot.as_ref().unwrap().requests_per_10s, 80);
        // Reconciliation's own clients take the share of the original limits.
        assert_eq!(cfg.reconcile.budget(1_500) + 1_200, 1_500);
        assert_eq!(cfg.reconcile.budget(100) + 80, 100);
    }
}
