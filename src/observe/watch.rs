//! The running process's periodic look at itself: every `metrics.refresh_secs` it measures the
//! lag of the stages it runs (the `crmflow_consumer_lag` gauges and readiness's stall check),
//! the dead-letter depth and the sources' lag, and writes its heartbeat rows (`stage_status`,
//! `source_status`) that `crmflow status` reads. Failures here are logged and never stop a stage.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::runtime::StageName;
use crate::status::LagProbe;

/// This process's name in `stage_status`: `host:pid`.
pub fn instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", std::process::id())
}

/// Runs until `shutdown`, refreshing `every` (normally `metrics.refresh_secs`).
pub async fn run(
    cfg: Arc<Config>,
    stages: Vec<StageName>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let instance = instance_id();
    let pool = match crate::store::pool(&cfg) {
        Ok(p) => p,
        Err(error) => {
            tracing::warn!(%error, "status refresh disabled: no postgres pool");
            return;
        }
    };
    let mut probe = None;
    loop {
        if probe.is_none() {
            probe = LagProbe::new(&cfg)
                .map_err(|error| tracing::warn!(%error, "lag probe unavailable"))
                .ok();
        }
        if let Some(p) = probe.as_mut() {
            // The heartbeat is also the outage tracker's probe: an idle process learns here
            // that Postgres went away or came back.
            match refresh(&pool, p, &stages, &instance).await {
                Ok(()) => crate::telemetry::outage::postgres().ok(),
                Err(crate::error::Error::Store(e))
                    if crate::telemetry::outage::postgres_unreachable(&e) =>
                {
                    crate::telemetry::outage::postgres().failed("heartbeat", &e)
                }
                Err(error) => tracing::debug!(%error, "status refresh failed"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    // A last heartbeat, so `status` shows the final counts of a one-shot run.
    if let Some(p) = probe.as_mut() {
        let _ = refresh(&pool, p, &stages, &instance).await;
    }
}

async fn refresh(
    pool: &deadpool_postgres::Pool,
    probe: &mut LagProbe,
    stages: &[StageName],
    instance: &str,
) -> crate::error::Result<()> {
    let client = pool.get().await?;
    for &stage in stages {
        if stage == StageName::Ingest {
            continue;
        }
        // One stage's lag failing to read (a group rebalancing, a slow broker) must not hide
        // the others'.
        let parts = match probe.stage_lag(&client, stage).await {
            Ok(p) => p,
            Err(error) => {
                tracing::debug!(stage = stage.as_str(), %error, "lag not measured this time");
                continue;
            }
        };
        let mut total = 0;
        for p in &parts {
            super::consumer_lag(stage.as_str(), &p.topic, p.partition, p.lag);
            total += p.lag;
        }
        super::stage_lag(stage.as_str(), total);
    }
    match probe.dlq_depth() {
        Ok(d) => super::dlq_depth(d),
        Err(error) => tracing::debug!(%error, "dlq depth not measured this time"),
    }
    super::refresh_source_lag();

    let wall = |i: std::time::Instant| -> DateTime<Utc> {
        DateTime::<Utc>::from(SystemTime::now() - i.elapsed())
    };
    for (name, s) in super::stages() {
        if !stages.iter().any(|st| st.as_str() == name) {
            continue;
        }
        let (err, err_at) = match &s.last_error {
            Some((e, at)) => (Some(e.clone()), Some(DateTime::<Utc>::from(*at))),
            None => (None, None),
        };
        client
            .execute(
                "INSERT INTO stage_status (stage, instance, heartbeat_at, started_at, last_progress_at,
                     records_in, records_out, rejected, last_error, last_error_at)
                 VALUES ($1, $2, now(), $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (stage, instance) DO UPDATE SET heartbeat_at = now(),
                     last_progress_at = EXCLUDED.last_progress_at, records_in = EXCLUDED.records_in,
                     records_out = EXCLUDED.records_out, rejected = EXCLUDED.rejected,
                     last_error = EXCLUDED.last_error, last_error_at = EXCLUDED.last_error_at",
                &[
                    &name,
                    &instance,
                    &wall(s.started),
                    &s.last_progress.map(wall),
                    &(s.records_in as i64),
                    &(s.records_out as i64),
                    &(s.rejected as i64),
                    &err,
                    &err_at,
                ],
            )
            .await?;
    }
    for ((source, entity), synced) in super::sources() {
        let at = DateTime::<Utc>::from_timestamp_millis(synced).unwrap_or_default();
        client
            .execute(
                "INSERT INTO source_status (source, entity, synced_at, updated_at)
                 VALUES ($1, $2, $3, now())
                 ON CONFLICT (source, entity) DO UPDATE
                 SET synced_at = GREATEST(source_status.synced_at, EXCLUDED.synced_at), updated_at = now()",
                &[&source, &entity, &at],
            )
            .await?;
    }
    client
        .execute(
            "DELETE FROM stage_status WHERE heartbeat_at < now() - interval '1 day'",
            &[],
        )
        .await?;
    Ok(())
}
