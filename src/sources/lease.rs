//! Active/standby: one process reads a source at a time, under a lease row (`source_leases`).
//!
//! Why a lease row and not a session advisory lock: the lease needs no connection held open for the
//! life of the process (it works through the pool and through a transaction-mode pooler such as
//! PgBouncer, where session locks do not), a hung holder loses it the same way a dead one does (it stops
//! renewing; a session lock stays held by a frozen process whose socket is open), and the holder's name
//! and epoch are plain data that the cursor writes are fenced with ([`super::cursors::Fence`]) and that
//! `crmflow status` shows. The price is that a killed holder's lease is taken over only when it expires
//! (`sources.lease_ttl_ms`, 5 s by default), where a session lock would be released at once; a clean
//! stop releases the lease, so a standby takes over at its next poll.
//!
//! Times are the database's (`clock_timestamp()`), so instances need no synchronised clocks. The holder
//! renews every fifth of the time to live; if it cannot renew for a whole time to live (Postgres
//! unreachable, or it was paused), it stops reading on its own. A standby polls the lease at the same
//! rate. Each process also upserts its role into `source_instances` at every tick (its heartbeat).
//!
//! The epoch is what fences: a takeover increments it, and every cursor write and renewal of the old
//! epoch then fails. A lease that expired but was not taken over (a slow renewal on a loaded machine)
//! is renewed as if nothing happened, since nobody else has read or written in between.
//!
//! A one-shot run (`--until-caught-up`) is a reader like any other: while another process holds the
//! lease it waits on standby, and it releases the lease once it has caught up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::cursors::{CursorStore, Fence};
use super::{Source, SourceError, SourceIo};
use crate::kafka::Producer;
use crate::runtime::RunCtx;

/// A lease this process holds (or held).
#[derive(Debug, Clone)]
pub struct Lease {
    pub source: String,
    pub fence: Fence,
    pub ttl: Duration,
}

/// Who holds a source's lease, as the table says.
#[derive(Debug, Clone)]
pub struct Holder {
    pub holder: String,
    pub epoch: i64,
    /// Whether the lease is still valid (not expired).
    pub valid: bool,
}

impl Lease {
    /// Takes the lease of `source` for `holder` if it is free (never taken, expired or released).
    pub async fn try_acquire(
        pool: &Pool,
        source: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, SourceError> {
        let client = pool.get().await?;
        let row = client
            .query_opt(
                "INSERT INTO source_leases AS l (source, holder, epoch, acquired_at, renewed_at, expires_at)
                 VALUES ($1, $2, 1, now(), now(), clock_timestamp() + make_interval(secs => $3))
                 ON CONFLICT (source) DO UPDATE SET holder = EXCLUDED.holder, epoch = l.epoch + 1,
                     acquired_at = now(), renewed_at = now(), expires_at = EXCLUDED.expires_at
                 WHERE l.expires_at <= clock_timestamp()
                 RETURNING epoch",
                &[&source, &holder, &ttl.as_secs_f64()],
            )
            .await?;
        Ok(row.map(|r| Lease {
            source: source.to_owned(),
            fence: Fence {
                holder: holder.to_owned(),
                epoch: r.get(0),
            },
            ttl,
        }))
    }

    /// Extends the lease by its time to live; `false`: another process took it over (its epoch
    /// moved). A lease that expired without being taken over is still ours: nobody else wrote.
    pub async fn renew(&self, pool: &Pool) -> Result<bool, SourceError> {
        let client = pool.get().await?;
        let n = client
            .execute(
                "UPDATE source_leases SET renewed_at = now(),
                     expires_at = clock_timestamp() + make_interval(secs => $4)
                 WHERE source = $1 AND holder = $2 AND epoch = $3",
                &[
                    &self.source,
                    &self.fence.holder,
                    &self.fence.epoch,
                    &self.ttl.as_secs_f64(),
                ],
            )
            .await?;
        Ok(n == 1)
    }

    /// Gives the lease up now, so a standby takes over at its next poll.
    pub async fn release(&self, pool: &Pool) -> Result<(), SourceError> {
        let client = pool.get().await?;
        client
            .execute(
                "UPDATE source_leases SET expires_at = clock_timestamp()
                 WHERE source = $1 AND holder = $2 AND epoch = $3 AND expires_at > clock_timestamp()",
                &[&self.source, &self.fence.holder, &self.fence.epoch],
            )
            .await?;
        Ok(())
    }
}

/// The current holder of `source`'s lease, if it was ever taken.
pub async fn holder(pool: &Pool, source: &str) -> Result<Option<Holder>, SourceError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT holder, epoch, expires_at > clock_timestamp() FROM source_leases WHERE source = $1",
            &[&source],
        )
        .await?;
    Ok(row.map(|r| Holder {
        holder: r.get(0),
        epoch: r.get(1),
        valid: r.get(2),
    }))
}

/// A process's role for a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Active,
    Standby,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Active => "active",
            Role::Standby => "standby",
        }
    }
}

/// Upserts this process's role and heartbeat for `source` (`since` moves only when the role changes).
pub async fn heartbeat(
    pool: &Pool,
    source: &str,
    instance: &str,
    role: Role,
) -> Result<(), SourceError> {
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO source_instances (source, instance, role, since, heartbeat_at)
             VALUES ($1, $2, $3, now(), now())
             ON CONFLICT (source, instance) DO UPDATE SET heartbeat_at = now(), role = EXCLUDED.role,
                 since = CASE WHEN source_instances.role = EXCLUDED.role
                              THEN source_instances.since ELSE now() END",
            &[&source, &instance, &role.as_str()],
        )
        .await?;
    Ok(())
}

async fn leave(pool: &Pool, source: &str, instance: &str) {
    if let Ok(client) = pool.get().await {
        let _ = client
            .execute(
                "DELETE FROM source_instances WHERE (source = $1 AND instance = $2)
                    OR heartbeat_at < now() - interval '1 day'",
                &[&source, &instance],
            )
            .await;
    }
}

/// Runs `source` whenever this process holds its lease: waits as standby, reads while active, goes
/// back to standby if the lease is lost, releases it on shutdown or when a one-shot run caught up.
pub async fn supervise(source: Arc<dyn Source>, ctx: RunCtx) -> Result<(), SourceError> {
    let crm = source.crm();
    let pool = crate::store::pool(&ctx.cfg)?;
    let producer = Producer::new(&ctx.cfg.kafka)?;
    let ttl = Duration::from_millis(ctx.cfg.sources.lease_ttl_ms.max(500));
    let tick = ttl / 5;
    let instance = crate::observe::watch::instance_id();
    let mut failures = 0u32;
    loop {
        // Standby until the lease is free.
        let mut seen_holder: Option<String> = None;
        let lease = loop {
            if let Err(error) = heartbeat(&pool, crm, &instance, Role::Standby).await {
                tracing::debug!(source = crm, %error, "standby heartbeat failed");
            }
            match Lease::try_acquire(&pool, crm, &instance, ttl).await {
                Ok(Some(lease)) => break lease,
                Ok(None) => {
                    if let Ok(Some(h)) = holder(&pool, crm).await {
                        if seen_holder.as_deref() != Some(h.holder.as_str()) {
                            info!(source = crm, active = %h.holder, "standby: another instance reads this source");
                            seen_holder = Some(h.holder);
                        }
                    }
                }
                Err(error) if error.is_retriable() => {
                    warn!(source = crm, %error, "lease not readable, retrying");
                }
                Err(error) => return Err(error),
            }
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = ctx.shutdown.cancelled() => {
                    leave(&pool, crm, &instance).await;
                    return Ok(());
                }
            }
        };
        info!(
            source = crm,
            instance,
            epoch = lease.fence.epoch,
            "active: this instance reads the source"
        );
        let _ = heartbeat(&pool, crm, &instance, Role::Active).await;

        let active = ctx.shutdown.child_token();
        let lost = Arc::new(AtomicBool::new(false));
        let keeper = tokio::spawn(keep(
            lease.clone(),
            pool.clone(),
            instance.clone(),
            tick,
            active.clone(),
            lost.clone(),
        ));
        let io = SourceIo::new(
            ctx.cfg.clone(),
            crm,
            producer.clone(),
            CursorStore::new(pool.clone(), crm).fenced(lease.fence.clone()),
            active.clone(),
            ctx.until_caught_up,
        );
        let started = std::time::Instant::now();
        let result = source.run(io).await;
        if started.elapsed() > Duration::from_secs(60) {
            // It read for a while: a new failure starts a new backoff.
            failures = 0;
        }
        active.cancel();
        let _ = keeper.await;
        let lease_lost =
            lost.load(Ordering::SeqCst) || matches!(result, Err(SourceError::LeaseLost { .. }));
        if lease_lost && !ctx.shutdown.is_cancelled() {
            warn!(
                source = crm,
                instance, "lease lost: another instance took the source over; back to standby"
            );
            continue;
        }
        if let Err(error) = lease.release(&pool).await {
            warn!(source = crm, %error, "lease not released; it expires by itself");
        }
        // A CRM outage outlasting the client's own retries (a login answered 503 six times)
        // is waited out, not the end of the process: back to standby after a backoff, so
        // another instance may take the source meanwhile.
        if let Err(error) = &result {
            if error.is_retriable() && !ctx.shutdown.is_cancelled() {
                failures = failures.saturating_add(1);
                let delay = crate::runtime::backoff(failures, Duration::from_secs(30));
                warn!(source = crm, %error, delay_ms = delay.as_millis() as u64, "source failed; trying again");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => continue,
                    _ = ctx.shutdown.cancelled() => {}
                }
            }
        }
        leave(&pool, crm, &instance).await;
        return match result {
            Err(SourceError::LeaseLost { .. }) => Ok(()),
            other => other,
        };
    }
}

/// Renews the lease every `tick` until `active` is cancelled; flags `lost` and cancels `active` when
/// the lease is taken over, or could not be renewed for a whole time to live.
async fn keep(
    lease: Lease,
    pool: Pool,
    instance: String,
    tick: Duration,
    active: CancellationToken,
    lost: Arc<AtomicBool>,
) {
    // The lease lasts until (at least) the time to live after the last renewal was sent.
    let mut renewed = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = active.cancelled() => return,
        }
        let sent = tokio::time::Instant::now();
        let left = lease.ttl.saturating_sub(renewed.elapsed()).max(tick);
        match tokio::time::timeout(left, lease.renew(&pool)).await {
            Ok(Ok(true)) => {
                renewed = sent;
                let _ = heartbeat(&pool, &lease.source, &instance, Role::Active).await;
            }
            Ok(Ok(false)) => {
                warn!(source = %lease.source, "lease taken over by another instance");
                lost.store(true, Ordering::SeqCst);
                active.cancel();
                return;
            }
            Ok(Err(error)) => warn!(source = %lease.source, %error, "lease renewal failed"),
            Err(_) => warn!(source = %lease.source, "lease renewal timed out"),
        }
        if renewed.elapsed() >= lease.ttl {
            warn!(source = %lease.source, "lease not renewed for its whole time to live: stopping");
            lost.store(true, Ordering::SeqCst);
            active.cancel();
            return;
        }
    }
}
