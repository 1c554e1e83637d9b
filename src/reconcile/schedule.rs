//! Scheduled reconciliation inside `crmflow run` (with the ingest stage, when
//! `reconcile.interval_secs` is set): every interval, take the reconcile lock if no other replica
//! holds it (else skip the round), reconcile every configured CRM and entity, release. A failed
//! round is logged and tried again at the next interval; it never stops the run. The budget split
//! (`reconcile.api_share` to reconciliation, the rest to ingest) is applied by `crate::run`.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::runs::ReconcileLock;
use super::{engine, listers, Options, ReconcileError};
use crate::config::Config;

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
