//! One reconcile pass over one CRM entity. The lister splits the id space into ranges
//! ([`super::Lister::split`]); `reconcile.list_concurrency` of them run at once, each listing the
//! CRM page by page (the next page is fetched while the current one is compared and repaired),
//! merging each page with the Postgres rows of the same id range (a cursor on a connection of its
//! own) and re-checking what differs against the current rows (the cursor's snapshot is as old as
//! the run). Each range records its own progress and counts in the run's row, so a killed run
//! resumes every range where it stopped. Findings wait in a batch (`reconcile.reread_batch`) so the CRM sees one re-read
//! and one gone check per batch rather than per page; a full batch is checked (`gone` against the
//! CRM by id), counted, repaired (re-read and emit, or tombstone) and acknowledged by Kafka, and
//! only a page boundary with no pending finding is recorded as done. Rows past the CRM's last id in
//! a range are swept at the range's end.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::time::Instant;

use futures::StreamExt;

use deadpool_postgres::Pool;
use metrics::{counter, gauge};
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::diff::{self, classify, Finding, Kind, Listed, Stored};
use super::dlq::DlqIndex;
use super::paging::{self, IdRange};
use super::runs::{self, Counts, PgSide, RangeProgress, ReconcileLock};
use super::{EntityReport, Lister, Options, ReconcileError, H_OP, H_REASON, MODE};
use crate::config::Config;
use crate::kafka::trace::TraceParent;
use crate::kafka::{Producer, Topics};
use crate::model::Op;
use crate::sources::emit::{acked, Emitter, Record};

/// `crmflow_reconcile_drift_total{crm,entity,kind}`: differences found (repaired or not).
pub const DRIFT_TOTAL: &str = "crmflow_reconcile_drift_total";
/// `crmflow_reconcile_last_run_timestamp_seconds{crm,entity}`: when the last run finished.
pub const LAST_RUN_TIMESTAMP: &str = "crmflow_reconcile_last_run_timestamp_seconds";
/// `crmflow_reconcile_last_run_duration_seconds{crm,entity}`.
pub const LAST_RUN_DURATION: &str = "crmflow_reconcile_last_run_duration_seconds";
/// `crmflow_reconcile_last_run_listed{crm,entity}`: records the CRM listed.
pub const LAST_RUN_LISTED: &str = "crmflow_reconcile_last_run_listed";
/// `crmflow_reconcile_last_run_drift{crm,entity,kind}`: what the last run found.
pub const LAST_RUN_DRIFT: &str = "crmflow_reconcile_last_run_drift";

/// Reconciles every entity of every lister that `opts` selects, one after the other. Stops early
/// (leaving the current run resumable) when `shutdown` is cancelled.
pub async fn run_all(
    cfg: &Config,
    lock: &mut ReconcileLock,
    listers: &[Box<dyn Lister>],
    opts: &Options,
    shutdown: &CancellationToken,
) -> Result<Vec<EntityReport>, ReconcileError> {
    let pool = crate::store::pool(cfg)?;
    let producer = Producer::new(&cfg.kafka)?;
    let topics = Topics::new(&cfg.kafka);
    let mut reports = Vec::new();
    for lister in listers {
        let entities: Vec<String> = lister
            .entities()
            .into_iter()
            .filter(|e| {
                opts.entity
                    .as_deref()
                    .is_none_or(|w| w.eq_ignore_ascii_case(e))
            })
            .collect();
        for entity in entities {
            if shutdown.is_cancelled() {
                return Ok(reports);
            }
            let ctx = EntityCtx {
                cfg,
                pool: &pool,
                lister: lister.as_ref(),
                entity: &entity,
                dry_run: opts.dry_run,
                shutdown,
                emitter: Emitter::new(
                    producer.clone(),
                    lister.crm(),
                    &entity,
                    topics.raw(lister.crm(), &entity),
                    MODE,
                ),
            };
            reports.push(ctx.run(lock).await?);
        }
    }
    if let Some(entity) = &opts.entity {
        if reports.is_empty() && !shutdown.is_cancelled() {
            return Err(ReconcileError::Config(format!(
                "no configured CRM reads an entity named {entity:?}"
            )));
        }
    }
    Ok(reports)
}

/// Id ranges per listing in flight: a range that lists slower than the others (a dense stretch,
/// many repairs) then leaves no slot idle.
const RANGES_PER_LISTING: usize = 2;

/// A run's ranges and how they are saved: one range's save writes every range's state and the
/// totals, serialized by the lock, so the row is always a consistent picture.
struct Progress {
    run_id: Option<i64>,
    base: EntityReport,
    base_requests: u64,
    requests_before: u64,
    ranges: tokio::sync::Mutex<Vec<RangeProgress>>,
    /// Counts of ranges stopped by shutdown, past what they saved (for this run's report only: the
    /// row keeps the saved counts, which match the saved progress a resumed run continues from).
    stopped: tokio::sync::Mutex<HashMap<usize, Counts>>,
}

impl Progress {
    async fn save(
        &self,
        ctx: &EntityCtx<'_>,
        index: usize,
        state: &RangeProgress,
    ) -> Result<(), ReconcileError> {
        let mut ranges = self.ranges.lock().await;
        ranges[index] = state.clone();
        if let Some(id) = self.run_id {
            let report = self.totals(&ranges, ctx.lister.requests());
            runs::save(ctx.pool, id, &ranges, &report).await?;
        }
        Ok(())
    }

    fn totals(&self, ranges: &[RangeProgress], requests_now: u64) -> EntityReport {
        let mut r = runs::totals(&self.base, ranges);
        r.requests = self.base_requests + requests_now.saturating_sub(self.requests_before);
        r
    }

    /// A range stopped by shutdown, with what it counted.
    async fn stopped(&self, index: usize, counts: &Counts) {
        self.stopped.lock().await.insert(index, counts.clone());
    }

    /// What this run did: the saved state, and what stopped ranges counted since their last save.
    async fn report(&self, requests_now: u64) -> EntityReport {
        let mut ranges = self.ranges.lock().await.clone();
        for (i, counts) in self.stopped.lock().await.iter() {
            ranges[*i].counts = counts.clone();
        }
        self.totals(&ranges, requests_now)
    }
}

struct EntityCtx<'a> {
    cfg: &'a Config,
    pool: &'a Pool,
    lister: &'a dyn Lister,
    entity: &'a str,
    dry_run: bool,
    shutdown: &'a CancellationToken,
    emitter: Emitter,
}

impl EntityCtx<'_> {
    async fn run(&self, _lock: &mut ReconcileLock) -> Result<EntityReport, ReconcileError> {
        let crm = self.lister.crm();
        let table = runs::table_of(self.entity).ok_or_else(|| {
            ReconcileError::Config(format!(
                "{crm} {}: no canonical table for this entity",
                self.entity
            ))
        })?;
        let started = Instant::now();
        let requests_before = self.lister.requests();
        let k = self.cfg.reconcile.concurrency();
        let (run_id, ranges, base) = if self.dry_run {
            let base = EntityReport {
                crm: crm.to_owned(),
                entity: self.entity.to_owned(),
                dry_run: true,
                ..Default::default()
            };
            (None, None, base)
        } else {
            let row = runs::start(self.pool, crm, self.entity).await?;
            let ranges = match (row.ranges, row.report.resumed) {
                (Some(r), true) if !r.is_empty() => Some(r),
                // A run started before V9: one range, from where it stopped, with its counts.
                (None, true) if row.last_id.is_some() => {
                    let r = &row.report;
                    Some(vec![RangeProgress {
                        range: IdRange::all(),
                        last: row.last_id.clone(),
                        done: false,
                        counts: Counts {
                            listed: r.listed,
                            missing: r.missing,
                            stale: r.stale,
                            gone: r.gone,
                            newer_in_pg: r.newer_in_pg,
                            in_dlq: r.in_dlq,
                            repaired: r.repaired,
                        },
                    }])
                }
                _ => None,
            };
            (Some(row.run_id), ranges, row.report)
        };
        let ranges = match ranges {
            Some(r) => {
                info!(
                    crm,
                    entity = self.entity,
                    ranges = r.len(),
                    "resuming an interrupted reconcile"
                );
                r
            }
            // Two ranges per listing in flight, so one slow range does not leave a slot idle.
            None => self
                .lister
                .split(self.entity, k * RANGES_PER_LISTING)
                .await?
                .into_iter()
                .map(RangeProgress::new)
                .collect(),
        };
        let progress = Progress {
            run_id,
            base: base.clone(),
            base_requests: base.requests,
            requests_before,
            ranges: tokio::sync::Mutex::new(ranges.clone()),
            stopped: Default::default(),
        };
        let result = async {
            let topic = self.emitter_topic();
            let dlq = DlqIndex::load(self.cfg, &topic).await?;
            // Every range not done, `k` at a time.
            let mut ranges = futures::stream::iter(
                ranges
                    .into_iter()
                    .enumerate()
                    .filter(|(_, r)| !r.done)
                    .map(|(i, r)| self.run_range(table, i, r, &dlq, &progress)),
            )
            .buffer_unordered(k);
            let mut complete = true;
            while let Some(done) = ranges.next().await {
                complete &= done?;
            }
            Ok::<_, ReconcileError>(complete)
        }
        .await;
        let mut report = progress.report(self.lister.requests()).await;
        report.duration_seconds = started.elapsed().as_secs_f64();
        match result {
            Ok(true) => {
                if let Some(id) = run_id {
                    runs::finish(self.pool, id, None).await?;
                }
                self.publish(&report);
                info!(
                    crm,
                    entity = self.entity,
                    listed = report.listed,
                    missing = report.missing,
                    stale = report.stale,
                    gone = report.gone,
                    newer_in_pg = report.newer_in_pg,
                    in_dlq = report.in_dlq,
                    repaired = report.repaired,
                    "reconcile finished"
                );
                Ok(report)
            }
            // Stopped by shutdown: the run stays `running`, the next one resumes it.
            Ok(false) => Ok(report),
            Err(e) => {
                if let Some(id) = run_id {
                    // A retriable failure leaves the run resumable; others end it.
                    if !e.is_retriable() {
                        let _ = runs::finish(self.pool, id, Some(&e.to_string())).await;
                    }
                }
                Err(e)
            }
        }
    }

    /// Lists one id range page by page (the next page is fetched while the current one is
    /// compared and repaired) against the Postgres rows of the same range, read through a cursor
    /// on a connection of its own; `false` when stopped by shutdown.
    async fn run_range(
        &self,
        table: &str,
        index: usize,
        mut state: RangeProgress,
        dlq: &DlqIndex,
        progress: &Progress,
    ) -> Result<bool, ReconcileError> {
        let crm = self.lister.crm();
        let order = self.lister.order();
        let through = state.range.through.clone();
        let mut after = state.resume_after().map(str::to_owned);
        let topic = self.emitter_topic();
        let mut client = crate::store::connect(self.cfg).await?;
        let tx = client.transaction().await?;
        let mut pg = PgSide::open(
            &tx,
            table,
            crm,
            &topic,
            order,
            after.as_deref(),
            through.as_deref(),
        )
        .await?;
        let mut page = self
            .lister
            .list(self.entity, after.as_deref(), through.as_deref())
            .await?;
        // Findings waiting for their repair: re-reads and gone checks go to the CRM in batches
        // (not one request per page), and progress moves only when none is pending.
        let mut pending: Vec<Finding> = Vec::new();
        let batch = self.cfg.reconcile.reread_batch.max(1) as usize;
        loop {
            if self.shutdown.is_cancelled() {
                progress.stopped(index, &state.counts).await;
                return Ok(false);
            }
            let at_end = paging::clip(order, &mut page, through.as_deref()) || page.is_empty();
            let in_order = order.is_sorted(page.iter().map(|l| l.id.as_str()))
                && match (after.as_deref(), page.first()) {
                    (Some(a), Some(first)) => order.cmp(a, &first.id) == Ordering::Less,
                    _ => true,
                };
            if !in_order {
                return Err(ReconcileError::Unsorted {
                    crm,
                    entity: self.entity.to_owned(),
                    after: after.clone(),
                });
            }
            if at_end {
                // The range's last page, then the rows past the CRM's last id in the range:
                // every live one is gone.
                let mut listed = std::mem::take(&mut page);
                loop {
                    let rows = match listed.last() {
                        Some(l) => pg.take_through(Some(&l.id.clone())).await?,
                        None => pg.take_through(None).await?,
                    };
                    if rows.is_empty() && listed.is_empty() {
                        break;
                    }
                    let last = match (listed.last(), rows.last()) {
                        (Some(l), Some(r)) if order.cmp(&r.id, &l.id) == Ordering::Greater => {
                            r.id.clone()
                        }
                        (Some(l), _) => l.id.clone(),
                        (None, Some(r)) => r.id.clone(),
                        (None, None) => break,
                    };
                    self.compare(table, &listed, &rows, dlq, &mut state.counts, &mut pending)
                        .await?;
                    listed.clear();
                    if pending.len() >= batch {
                        self.flush(&mut pending, &mut state.counts).await?;
                    }
                    after = Some(last);
                    if pending.is_empty() {
                        state.last = after.clone();
                        progress.save(self, index, &state).await?;
                    }
                }
                self.flush(&mut pending, &mut state.counts).await?;
                state.last = after.clone();
                state.done = true;
                progress.save(self, index, &state).await?;
                return Ok(true);
            }
            let last = page[page.len() - 1].id.clone();
            // The next page travels while this one is compared and repaired.
            let (done, next) = tokio::join!(
                async {
                    let rows = pg.take_through(Some(&last)).await?;
                    self.compare(table, &page, &rows, dlq, &mut state.counts, &mut pending)
                        .await?;
                    if pending.len() >= batch {
                        self.flush(&mut pending, &mut state.counts).await?;
                    }
                    Ok::<_, ReconcileError>(())
                },
                self.lister
                    .list(self.entity, Some(&last), through.as_deref())
            );
            done?;
            page = next?;
            after = Some(last);
            if pending.is_empty() {
                state.last = after.clone();
                progress.save(self, index, &state).await?;
            }
        }
    }

    fn emitter_topic(&self) -> String {
        Topics::new(&self.cfg.kafka).raw(self.lister.crm(), self.entity)
    }

    /// Compares one stretch and re-checks what differs against the rows as they are now; the
    /// findings join `pending`.
    async fn compare(
        &self,
        table: &str,
        crm: &[Listed],
        rows: &[Stored],
        dlq: &DlqIndex,
        counts: &mut Counts,
        pending: &mut Vec<Finding>,
    ) -> Result<(), ReconcileError> {
        counts.listed += crm.len() as u64;
        let found = diff::diff(self.lister.order(), crm, rows, |id| dlq.version(id));
        if !found.is_empty() {
            pending.extend(self.confirm(table, crm, found, dlq).await?);
        }
        Ok(())
    }

    /// Checks pending `gone` findings against the CRM by id, counts every finding and (unless dry)
    /// repairs them; returns once Kafka acknowledged every repair.
    async fn flush(
        &self,
        pending: &mut Vec<Finding>,
        report: &mut Counts,
    ) -> Result<(), ReconcileError> {
        if pending.is_empty() {
            return Ok(());
        }
        let mut findings = std::mem::take(pending);
        let gone: Vec<String> = findings
            .iter()
            .filter(|f| f.kind == Kind::Gone)
            .map(|f| f.id.clone())
            .collect();
        if !gone.is_empty() {
            let present = self.lister.still_present(self.entity, &gone).await?;
            if !present.is_empty() {
                warn!(
                    crm = self.lister.crm(),
                    entity = self.entity,
                    n = present.len(),
                    "records absent from the listing are still readable by id; not tombstoned"
                );
                findings.retain(|f| !(f.kind == Kind::Gone && present.contains(&f.id)));
            }
        }
        let (crm_name, entity) = (self.lister.crm(), self.entity);
        for f in &findings {
            report.count(f.kind, 1);
            counter!(DRIFT_TOTAL, "crm" => crm_name, "entity" => entity.to_owned(), "kind" => f.kind.as_str())
                .increment(1);
        }
        if self.dry_run {
            return Ok(());
        }
        let reread: Vec<Finding> = findings
            .iter()
            .filter(|f| matches!(f.kind, Kind::Missing | Kind::Stale))
            .cloned()
            .collect();
        let mut deliveries = if reread.is_empty() {
            Vec::new()
        } else {
            self.lister.reread(&self.emitter, &reread).await?
        };
        let now = chrono::Utc::now().timestamp_millis();
        let tp = TraceParent::current_or_new();
        for f in findings.iter().filter(|f| f.kind == Kind::Gone) {
            let raw = RawValue::from_string(self.lister.tombstone_raw(&f.id))
                .map_err(|e| ReconcileError::Config(format!("tombstone of {}: {e}", f.id)))?;
            let version = diff::tombstone_version(f.pg_version.unwrap_or(0), now);
            let sent = self
                .emitter
                .emit_tagged(
                    Record {
                        id: &f.id,
                        version,
                        op: Op::Delete,
                        raw: &raw,
                    },
                    Vec::new(),
                    &tp,
                    &[(H_OP, "delete"), (H_REASON, "reconcile.gone")],
                )
                .await?;
            deliveries.extend(sent);
        }
        report.repaired += acked(deliveries).await? as u64;
        Ok(())
    }

    /// Re-checks findings against the rows as they are now (the cursor's snapshot is as old as the run).
    async fn confirm(
        &self,
        table: &str,
        crm: &[Listed],
        found: Vec<Finding>,
        dlq: &DlqIndex,
    ) -> Result<Vec<Finding>, ReconcileError> {
        let ids: Vec<String> = found.iter().map(|f| f.id.clone()).collect();
        let topic = self.emitter_topic();
        let now = runs::current(self.pool, table, self.lister.crm(), &topic, &ids).await?;
        let listed: HashMap<&str, &Listed> = crm.iter().map(|l| (l.id.as_str(), l)).collect();
        let mut out = Vec::with_capacity(found.len());
        for f in found {
            let c = listed.get(f.id.as_str()).copied();
            if let Some((kind, crm_version, pg_version)) =
                classify(c, now.get(&f.id), dlq.version(&f.id))
            {
                out.push(Finding {
                    id: f.id,
                    kind,
                    crm_version,
                    pg_version,
                });
            }
        }
        Ok(out)
    }

    fn publish(&self, r: &EntityReport) {
        let crm = self.lister.crm();
        let entity = self.entity.to_owned();
        if r.dry_run {
            return;
        }
        gauge!(LAST_RUN_TIMESTAMP, "crm" => crm, "entity" => entity.clone())
            .set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
        gauge!(LAST_RUN_DURATION, "crm" => crm, "entity" => entity.clone()).set(r.duration_seconds);
        gauge!(LAST_RUN_LISTED, "crm" => crm, "entity" => entity.clone()).set(r.listed as f64);
        for kind in Kind::ALL {
            gauge!(LAST_RUN_DRIFT, "crm" => crm, "entity" => entity.clone(), "kind" => kind.as_str())
                .set(r.of(kind) as f64);
        }
    }
}
