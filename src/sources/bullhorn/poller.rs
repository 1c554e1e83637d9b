//! The incremental poller of one entity (Bullhorn `search` by `dateLastModified`), the default mode.
//!
//! A poll cycle reads everything after the persisted cursor (moved back by `overlap_ms`, so a record saved
//! late with an older stamp is still found; what was already sent is de-duplicated by the emitter):
//! 1. the first page (`count` = page size, sorted `dateLastModified,id`) is emitted and tells the backlog's
//!    `total`; a short poll ends here;
//! 2. a larger backlog is split into up to `fetch_concurrency` `dateLastModified` sub-ranges of whole pages,
//!    with split points taken from one-record probes at evenly spaced offsets;
//! 3. each sub-range is read by its own task with its own sub-cursor, page after page, its events produced
//!    while the next page is fetched (at most [`PAGES_IN_FLIGHT`] pages unacknowledged per task, so memory
//!    stays bounded);
//! 4. the coordinator folds acknowledgements into [`Progress`] and persists the committed cursor — the point
//!    below which every sub-range is complete and acknowledged — at most every [`SAVE_EVERY`] and at the end.
//!
//! A cycle ends when every sub-range returned a short page (caught up). Failures retry the whole cycle from
//! the persisted cursor after a backoff, with the de-duplication cache cleared (unacknowledged sends may be
//! lost, so they must be resent).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crmflow_bullhorn::client::BullhornClient;
use crmflow_bullhorn::wire::ListEnvelope;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

use super::cursor::{plan, range_query, Cursor, Progress, SubRange};
use super::record::{self, RecordMeta};
use crate::kafka::trace::TraceParent;
use crate::kafka::Delivery;
use crate::sources::cursors::CursorStore;
use crate::sources::cursors::{Phase, PhaseState};
use crate::sources::emit::{acked, Emitter};
use crate::sources::SourceError;

/// Sort of every incremental read.
const SORT: &str = "dateLastModified,id";
/// Pages a sub-range task may have produced but not yet seen acknowledged.
const PAGES_IN_FLIGHT: usize = 2;
/// Shortest interval between two cursor saves during a cycle.
const SAVE_EVERY: Duration = Duration::from_millis(500);
/// Times a sub-range retries one page after the client gave up on it.
const PAGE_RETRIES: u32 = 5;
/// Consecutive failed cycles without progress before the stage gives up.
const MAX_FAILED_CYCLES: u32 = 10;

/// Settings of one entity's poller.
#[derive(Debug, Clone)]
pub struct PollSettings {
    pub entity: String,
    pub fields: String,
    pub page_size: u32,
    pub fetch_concurrency: usize,
    pub overlap_ms: i64,
    pub interval: Duration,
    /// Where the cursor is kept in `source_cursors` (the entity name for the incremental poller,
    /// `snapshot/<entity>` for an event source's snapshot).
    pub cursor_key: String,
    /// A snapshot: progress is recorded as the entity's phase (`snapshot`, records read of found).
    pub snapshot: bool,
}

impl PollSettings {
    /// The incremental poller's settings for `entity`, its cursor under the entity's name.
    pub fn incremental(cfg: &crate::config::BullhornConfig, entity: &str) -> Self {
        Self {
            entity: entity.to_owned(),
            fields: super::fields_of(cfg, entity),
            page_size: cfg.page_size.clamp(1, 500),
            fetch_concurrency: cfg.fetch_concurrency,
            overlap_ms: cfg.overlap_ms as i64,
            interval: Duration::from_secs(cfg.poll_interval_secs),
            cursor_key: entity.to_owned(),
            snapshot: false,
        }
    }

    /// A snapshot's settings for `entity`: the same reads, with their own cursor.
    pub fn snapshot(cfg: &crate::config::BullhornConfig, entity: &str) -> Self {
        Self {
            cursor_key: snapshot_key(entity),
            snapshot: true,
            ..Self::incremental(cfg, entity)
        }
    }
}

/// The cursor key of `entity`'s snapshot.
pub fn snapshot_key(entity: &str) -> String {
    format!("snapshot/{entity}")
}

/// Polls one entity.
pub struct EntityPoller {
    client: BullhornClient,
    settings: Arc<PollSettings>,
    emitter: Arc<Emitter>,
    cursors: CursorStore,
    /// The cursor in Postgres; never saved backwards.
    persisted: Option<Cursor>,
    /// Snapshot progress: records read by earlier runs, and by this one.
    read_before: i64,
    read: Arc<std::sync::atomic::AtomicU64>,
    /// Records a snapshot found to read (earlier runs' reads plus this run's backlog).
    total: Option<i64>,
}

enum Report {
    Acked(usize, Cursor),
    Finished(usize),
}

impl EntityPoller {
    pub fn new(
        client: BullhornClient,
        settings: PollSettings,
        emitter: Emitter,
        cursors: CursorStore,
    ) -> Self {
        Self {
            client,
            settings: Arc::new(settings),
            emitter: Arc::new(emitter),
            cursors,
            persisted: None,
            read_before: 0,
            read: Arc::default(),
            total: None,
        }
    }

    fn read_now(&self) -> i64 {
        self.read_before + self.read.load(std::sync::atomic::Ordering::Relaxed) as i64
    }

    /// Backfills, then polls every interval until `shutdown`; with `until_caught_up`, returns after the
    /// first cycle that reached the end.
    pub async fn run(
        mut self,
        shutdown: CancellationToken,
        until_caught_up: bool,
    ) -> Result<(), SourceError> {
        let entity = self.settings.entity.clone();
        self.persisted = self.cursors.load(&self.settings.cursor_key).await?;
        if self.settings.snapshot {
            self.read_before = self.cursors.phase(&entity).await?.map_or(0, |p| p.read);
        }
        info!(%entity, key = %self.settings.cursor_key, cursor = ?self.persisted, "bullhorn poller starting");
        let mut failures = 0u32;
        loop {
            let before = self.persisted;
            let cycle_started = crate::observe::now_ms();
            let cycle = self
                .cycle(&shutdown)
                .instrument(info_span!("bullhorn.poll", %entity));
            let completed = tokio::select! {
                r = cycle => r,
                _ = shutdown.cancelled() => return Ok(()),
            };
            if shutdown.is_cancelled() {
                return Ok(());
            }
            let progressed = self.persisted > before;
            match completed {
                Ok(()) => {
                    failures = 0;
                    // Everything modified before this cycle began has been read.
                    crate::observe::source_synced(super::SOURCE, &entity, cycle_started);
                    if until_caught_up {
                        info!(%entity, cursor = ?self.persisted, "bullhorn poller caught up");
                        return Ok(());
                    }
                }
                Err(error) if error.is_retriable() && failures < MAX_FAILED_CYCLES => {
                    // Count only failures without progress: a cycle that moved the cursor was not stuck.
                    failures = if progressed { 1 } else { failures + 1 };
                    self.emitter.forget();
                    let delay = crate::runtime::backoff(failures, Duration::from_secs(30));
                    warn!(%entity, failures, %error, delay_ms = delay.as_millis() as u64, "bullhorn poll failed, retrying from the saved cursor");
                    crate::observe::retry("ingest", "crm", &error);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => continue,
                        _ = shutdown.cancelled() => return Ok(()),
                    }
                }
                Err(error) => return Err(error),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.settings.interval) => {}
                _ = shutdown.cancelled() => return Ok(()),
            }
        }
    }

    async fn save(&mut self, cursor: Option<Cursor>) -> Result<(), SourceError> {
        if cursor > self.persisted {
            self.cursors
                .save(&self.settings.cursor_key, &cursor)
                .await?;
            if self.settings.snapshot {
                let read = self.read_now();
                let state = PhaseState {
                    phase: Phase::Snapshot,
                    read,
                    total: self.total.map(|t| t.max(read)),
                };
                self.cursors.set_phase(&self.settings.entity, state).await?;
            }
            if let Some(c) = cursor {
                crate::observe::source_synced(
                    super::SOURCE,
                    &self.settings.entity,
                    c.date_last_modified,
                );
            }
            debug!(entity = %self.settings.entity, ?cursor, "bullhorn cursor saved");
            self.persisted = cursor;
        }
        Ok(())
    }

    /// One cycle: read everything after the cursor, then save it.
    async fn cycle(&mut self, shutdown: &CancellationToken) -> Result<(), SourceError> {
        let s = self.settings.clone();
        let start = self.persisted.map(|c| c.rewind(s.overlap_ms));
        let first = fetch_page(&self.client, &s, start, None, 0, s.page_size).await?;
        let total = first.total.unwrap_or(0);
        let returned = first.data.len() as u64;
        if self.settings.snapshot && self.total.is_none() {
            self.total = Some(self.read_before + total as i64);
        }
        let (end, deliveries) = emit_page(&self.emitter, &s.entity, start, &first.data).await?;
        self.read.fetch_add(
            deliveries.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        let sent = acked(deliveries).await?;
        self.save(end).await?;
        if !has_more(&first, s.page_size) {
            debug!(entity = %s.entity, records = returned, sent, "bullhorn poll caught up in one page");
            return Ok(());
        }

        // A backlog: split it into sub-ranges of whole pages, read concurrently.
        let remaining = total.saturating_sub(returned);
        let page = u64::from(s.page_size);
        let pages = remaining.div_ceil(page);
        let n = (s.fetch_concurrency.max(1) as u64).min(pages);
        let per_range = pages.div_ceil(n) * page;
        let probes = (1..n).map(|k| {
            let client = self.client.clone();
            let s = s.clone();
            async move {
                let p = fetch_page(&client, &s, end, None, k * per_range, 1).await?;
                p.data
                    .first()
                    .map(|r| RecordMeta::parse(&s.entity, r).map(|m| m.date_last_modified))
                    .transpose()
            }
        });
        let split_at: Vec<i64> = futures::future::try_join_all(probes)
            .await?
            .into_iter()
            .flatten()
            .flatten()
            .collect();
        let ranges = plan(end, split_at);
        info!(entity = %s.entity, backlog = remaining, ranges = ranges.len(), "bullhorn backlog split");

        let (tx, mut rx) = mpsc::channel::<Report>(ranges.len() * (PAGES_IN_FLIGHT + 2));
        let mut tasks = tokio::task::JoinSet::new();
        for (i, range) in ranges.iter().copied().enumerate() {
            let (client, s, emitter, tx, shutdown, read) = (
                self.client.clone(),
                s.clone(),
                self.emitter.clone(),
                tx.clone(),
                shutdown.clone(),
                self.read.clone(),
            );
            tasks.spawn(
                read_range(client, s, emitter, i, range, tx, shutdown, read)
                    .instrument(info_span!("bullhorn.range", range = i)),
            );
        }
        drop(tx);
        let mut progress = Progress::new(&ranges);
        let mut last_save = tokio::time::Instant::now();
        loop {
            tokio::select! {
                report = rx.recv() => match report {
                    Some(Report::Acked(i, c)) => progress.ack(i, c),
                    Some(Report::Finished(i)) => progress.finish(i),
                    None => break,
                },
                Some(joined) = tasks.join_next() => {
                    match joined {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Err(e),
                        Err(e) => return Err(SourceError::Stuck(format!("range task failed: {e}"))),
                    }
                }
            }
            if last_save.elapsed() >= SAVE_EVERY {
                self.save(progress.committed()).await?;
                last_save = tokio::time::Instant::now();
            }
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(e) => return Err(SourceError::Stuck(format!("range task failed: {e}"))),
            }
        }
        self.save(progress.committed()).await?;
        if progress.all_done() {
            Ok(())
        } else {
            // Only a shutdown leaves ranges unfinished; the next run resumes from the saved cursor.
            Err(SourceError::Stuck("poll interrupted".into()))
        }
    }
}

fn has_more(page: &ListEnvelope<Box<RawValue>>, page_size: u32) -> bool {
    let n = page.data.len() as u64;
    n >= u64::from(page_size) && page.total.is_none_or(|t| t > n)
}

async fn fetch_page(
    client: &BullhornClient,
    s: &PollSettings,
    after: Option<Cursor>,
    until: Option<i64>,
    start: u64,
    count: u32,
) -> Result<ListEnvelope<Box<RawValue>>, SourceError> {
    let query = range_query(after, until);
    Ok(client
        .search(&s.entity, &query, &s.fields, Some(SORT), start, count)
        .await?)
}

/// A sub-range's next page; a failure the client gave up on is retried here a few times from the same
/// sub-cursor, so one unlucky page does not restart the whole cycle.
async fn fetch_page_retrying(
    client: &BullhornClient,
    s: &PollSettings,
    after: Option<Cursor>,
    until: Option<i64>,
    shutdown: &CancellationToken,
) -> Result<ListEnvelope<Box<RawValue>>, SourceError> {
    let mut failures = 0u32;
    loop {
        match fetch_page(client, s, after, until, 0, s.page_size).await {
            Err(error)
                if error.is_retriable() && failures < PAGE_RETRIES && !shutdown.is_cancelled() =>
            {
                failures += 1;
                let delay = crate::runtime::backoff(failures, Duration::from_secs(10));
                warn!(entity = %s.entity, failures, %error, delay_ms = delay.as_millis() as u64, "bullhorn page failed, retrying");
                crate::observe::retry("ingest", "crm", &error);
                tokio::time::sleep(delay).await;
            }
            other => return other,
        }
    }
}

/// Emits the records of a page that are after `after`; returns the cursor of its last record (or `after`)
/// and the deliveries. One trace per page.
async fn emit_page(
    emitter: &Emitter,
    entity: &str,
    after: Option<Cursor>,
    records: &[Box<RawValue>],
) -> Result<(Option<Cursor>, Vec<Delivery>), SourceError> {
    let span = info_span!("bullhorn.page", %entity, records = records.len());
    let tp = {
        let _g = span.enter();
        TraceParent::current_or_new()
    };
    let mut end = after;
    let mut deliveries = Vec::with_capacity(records.len());
    for raw in records {
        let meta = RecordMeta::parse(entity, raw)?;
        let ts = meta
            .date_last_modified
            .ok_or_else(|| SourceError::BadRecord {
                entity: entity.to_owned(),
                what: "dateLastModified",
                record: raw.get().chars().take(200).collect(),
            })?;
        if after.is_some_and(|c| c.is_before(ts, meta.id)) {
            continue;
        }
        if let Some(d) = record::emit(emitter, raw, &meta, None, None, Vec::new(), &tp).await? {
            deliveries.push(d);
        }
        end = end.max(Some(Cursor::new(ts, meta.id)));
    }
    Ok((end, deliveries))
}

/// Reads one sub-range to its end, reporting acknowledged progress.
#[allow(clippy::too_many_arguments)]
async fn read_range(
    client: BullhornClient,
    s: Arc<PollSettings>,
    emitter: Arc<Emitter>,
    index: usize,
    range: SubRange,
    tx: mpsc::Sender<Report>,
    shutdown: CancellationToken,
    read: Arc<std::sync::atomic::AtomicU64>,
) -> Result<(), SourceError> {
    let mut cursor = range.start;
    let mut in_flight: VecDeque<(Option<Cursor>, Vec<Delivery>)> = VecDeque::new();
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        let page = fetch_page_retrying(&client, &s, cursor, range.end, &shutdown).await?;
        let (end, deliveries) = emit_page(&emitter, &s.entity, cursor, &page.data).await?;
        read.fetch_add(
            deliveries.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        let more = has_more(&page, s.page_size);
        if more && end <= cursor {
            return Err(SourceError::Stuck(format!(
                "{} search returned a full page without moving past {cursor:?}",
                s.entity
            )));
        }
        cursor = end;
        in_flight.push_back((end, deliveries));
        while in_flight.len() > PAGES_IN_FLIGHT {
            ack_oldest(&mut in_flight, index, &tx).await?;
        }
        if !more {
            break;
        }
    }
    while !in_flight.is_empty() {
        ack_oldest(&mut in_flight, index, &tx).await?;
    }
    let _ = tx.send(Report::Finished(index)).await;
    Ok(())
}

async fn ack_oldest(
    in_flight: &mut VecDeque<(Option<Cursor>, Vec<Delivery>)>,
    index: usize,
    tx: &mpsc::Sender<Report>,
) -> Result<(), SourceError> {
    if let Some((end, deliveries)) = in_flight.pop_front() {
        acked(deliveries).await?;
        if let Some(c) = end {
            let _ = tx.send(Report::Acked(index, c)).await;
        }
    }
    Ok(())
}
