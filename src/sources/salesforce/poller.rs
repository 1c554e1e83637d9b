//! The poller of one Salesforce object. A cycle reads, page after page, every record after the persisted
//! cursor `(SystemModstamp, Id)` (moved back by `overlap_ms`; the emitter de-duplicates what was sent):
//! `queryAll` with `WHERE (SystemModstamp > T) OR (SystemModstamp = T AND Id > 'I') ORDER BY SystemModstamp,
//! Id LIMIT page_size`, so a run of equal timestamps longer than a page is paged through by id. Pages are
//! read as JSON text per record: the next page's query goes out as soon as a full page's last key is read,
//! and is answered while this page is emitted (each record as received, its text unchanged). Each page's
//! events are acknowledged by Kafka before the cursor moves past them (a page's acknowledgements are
//! awaited after the next page was emitted). A record with `IsDeleted` is a
//! DELETE at its `SystemModstamp` (a delete or the losing side of a merge); anything else an UPSERT.
//!
//! Before a cycle the deleted-records window is checked: if `earliestDateAvailable` is after the cursor
//! (or the cursor is older than the window reaches), hard-deleted records may have been missed, so the
//! object is read again from the beginning (logged as a resync). Failures retry the cycle from the saved
//! cursor after a backoff.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use crmflow_salesforce::client::SalesforceClient;
use crmflow_salesforce::wire::{format_iso, parse_datetime, RecordKey};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::SalesforceConfig;
use crate::kafka::trace::TraceParent;
use crate::model::Op;
use crate::sources::cursors::CursorStore;
use crate::sources::emit::{acked, Emitter, Record};
use crate::sources::{SourceError, SourceIo};

/// Consecutive failed cycles without progress before the source gives up.
const MAX_FAILED_CYCLES: u32 = 10;

/// Where an object has been read up to: every record ordered at or before `(modstamp_ms, id)` was
/// acknowledged by Kafka.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cursor {
    /// `SystemModstamp`, epoch ms.
    pub modstamp_ms: i64,
    /// 18-character id.
    pub id: String,
}

impl Cursor {
    /// The SOQL condition selecting records after `self` moved back by `overlap_ms`.
    pub fn after_clause(&self, overlap_ms: i64) -> String {
        if overlap_ms > 0 {
            let t = ts(self.modstamp_ms - overlap_ms);
            return format!("SystemModstamp >= {t}");
        }
        let t = ts(self.modstamp_ms);
        format!(
            "(SystemModstamp > {t}) OR (SystemModstamp = {t} AND Id > '{}')",
            self.id.replace(['\\', '\''], "")
        )
    }
}

fn ts(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(format_iso)
        .unwrap_or_else(|| "1970-01-01T00:00:00.000Z".into())
}

/// Settings of one object's poller.
#[derive(Debug, Clone)]
pub struct PollSettings {
    pub object: String,
    pub fields: Vec<String>,
    pub page_size: u32,
    pub overlap_ms: i64,
    pub interval: Duration,
}

impl PollSettings {
    pub fn new(cfg: &SalesforceConfig, object: &str) -> Self {
        Self {
            object: object.to_string(),
            fields: super::fields_of(cfg, object),
            page_size: cfg.page_size.clamp(1, 2000),
            overlap_ms: cfg.overlap_ms as i64,
            interval: Duration::from_secs(cfg.poll_interval_secs),
        }
    }

    /// The query of the page after `after` (`None`: from the beginning). `keyset` pages strictly after
    /// the key (within a cycle); otherwise the cycle's first page, moved back by the overlap.
    pub fn soql(&self, after: Option<&Cursor>, keyset: bool) -> String {
        let filter = match after {
            None => String::new(),
            Some(c) => format!(
                " WHERE {}",
                c.after_clause(if keyset { 0 } else { self.overlap_ms })
            ),
        };
        format!(
            "SELECT {} FROM {}{filter} ORDER BY SystemModstamp, Id LIMIT {}",
            self.fields.join(", "),
            self.object,
            self.page_size
        )
    }
}

/// Polls one object.
pub struct ObjectPoller {
    client: Arc<SalesforceClient>,
    settings: PollSettings,
    emitter: Emitter,
    cursors: CursorStore,
    io: SourceIo,
    persisted: Option<Cursor>,
}

impl ObjectPoller {
    pub fn new(
        client: Arc<SalesforceClient>,
        settings: PollSettings,
        emitter: Emitter,
        cursors: CursorStore,
        io: SourceIo,
    ) -> Self {
        Self {
            client,
            settings,
            emitter,
            cursors,
            io,
            persisted: None,
        }
    }

    /// Polls until `shutdown`; with `until_caught_up`, returns after the first complete cycle.
    pub async fn run(
        mut self,
        shutdown: CancellationToken,
        until_caught_up: bool,
    ) -> Result<(), SourceError> {
        self.load().await?;
        loop {
            if !self.catch_up(&shutdown).await? {
                return Ok(());
            }
            if until_caught_up {
                info!(object = %self.settings.object, cursor = ?self.persisted, "salesforce poller caught up");
                return Ok(());
            }
            tokio::select! {
                _ = tokio::time::sleep(self.settings.interval) => {}
                _ = shutdown.cancelled() => return Ok(()),
            }
        }
    }

    /// Loads the stored cursor (the start of the next cycle).
    pub async fn load(&mut self) -> Result<(), SourceError> {
        self.persisted = self.cursors.load(&self.settings.object).await?;
        info!(object = %self.settings.object, cursor = ?self.persisted, "salesforce poller starting");
        Ok(())
    }

    /// Whether a cursor is stored (an object never read has none).
    pub fn has_cursor(&self) -> bool {
        self.persisted.is_some()
    }

    /// Runs one complete cycle from the saved cursor — everything modified since is read and
    /// acknowledged — retrying failed attempts after a backoff. `false` when `shutdown` came first.
    pub async fn catch_up(&mut self, shutdown: &CancellationToken) -> Result<bool, SourceError> {
        let object = self.settings.object.clone();
        let mut failures = 0u32;
        loop {
            let before = self.persisted.clone();
            let started = chrono::Utc::now().timestamp_millis();
            let done = tokio::select! {
                r = self.cycle() => r,
                _ = shutdown.cancelled() => return Ok(false),
            };
            match done {
                Ok(()) => {
                    self.io.synced(&object, started);
                    return Ok(true);
                }
                Err(error) if error.is_retriable() && failures < MAX_FAILED_CYCLES => {
                    failures = if self.persisted > before {
                        1
                    } else {
                        failures + 1
                    };
                    self.emitter.forget();
                    let delay = crate::runtime::backoff(failures, Duration::from_secs(30));
                    warn!(%object, failures, %error, delay_ms = delay.as_millis() as u64, "salesforce poll failed, retrying from the saved cursor");
                    crate::observe::retry("ingest", "crm", &error);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => continue,
                        _ = shutdown.cancelled() => return Ok(false),
                    }
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Whether the deleted-records window still covers the cursor; `false` means: resync.
    async fn delete_log_covers(&self, cursor: &Cursor) -> Result<bool, SourceError> {
        let Some(from) = DateTime::<Utc>::from_timestamp_millis(cursor.modstamp_ms) else {
            return Ok(false);
        };
        match self
            .client
            .deleted(&self.settings.object, from, Utc::now())
            .await
        {
            Ok(d) => Ok(parse_datetime(&d.earliest_date_available).is_none_or(|e| e <= from)),
            // The window cannot reach that far back at all.
            Err(e) if e.error_code() == Some("INVALID_REPLICATION_DATE") => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn save(&mut self, cursor: Cursor) -> Result<(), SourceError> {
        if Some(&cursor) > self.persisted.as_ref() {
            self.cursors.save(&self.settings.object, &cursor).await?;
            self.io.synced(&self.settings.object, cursor.modstamp_ms);
            debug!(object = %self.settings.object, ?cursor, "salesforce cursor saved");
            self.persisted = Some(cursor);
        }
        Ok(())
    }

    async fn cycle(&mut self) -> Result<(), SourceError> {
        let object = self.settings.object.clone();
        let mut from = self.persisted.clone();
        if let Some(c) = &from {
            if !self.delete_log_covers(c).await? {
                warn!(%object, cursor = ?c, "salesforce deleted-records window no longer covers the cursor: deletions may be lost, resyncing the object from the beginning");
                from = None;
            }
        }
        let mut keyset = false;
        let mut prefetched: Option<PageTask> = None;
        // The last page emitted whose acknowledgements were not awaited yet, with its cursor.
        let mut unacked: Option<(Vec<crate::kafka::Delivery>, Option<Cursor>, PageTimes)> = None;
        loop {
            let waiting = Instant::now();
            let (records, query_time) = match prefetched.take() {
                Some(mut task) => (&mut task.0).await.map_err(|e| {
                    SourceError::Stuck(format!("salesforce page query task failed: {e}"))
                })??,
                None => {
                    let soql = self.settings.soql(from.as_ref(), keyset);
                    let r = self.client.query_collect_raw(&soql, true).await?;
                    (r, waiting.elapsed())
                }
            };
            let mut t = PageTimes {
                records: records.len() as u64,
                query: query_time,
                wait: waiting.elapsed(),
                ..PageTimes::default()
            };
            let n = records.len();
            // A full page: the next page's query goes out before this one is handled — its key is
            // this page's last record, read alone — and is answered while this page is emitted and
            // acknowledged.
            if n >= self.settings.page_size as usize {
                if let Some(last) = records.last() {
                    let (c, _) = raw_meta(&object, last)?;
                    let soql = self.settings.soql(Some(&c), true);
                    let client = self.client.clone();
                    prefetched = Some(PageTask(tokio::spawn(async move {
                        let sent = Instant::now();
                        let r = client.query_collect_raw(&soql, true).await?;
                        Ok((r, sent.elapsed()))
                    })));
                    // A task spawned here waits in this worker's LIFO slot, which other workers do
                    // not steal: let it send its request before this page's work starts.
                    tokio::task::yield_now().await;
                }
            }
            let tp = TraceParent::current_or_new();
            let step = Instant::now();
            let (deliveries, last) =
                emit_raw_records(&self.emitter, &object, &records, &tp).await?;
            t.emit = step.elapsed();
            // The previous page's acknowledgements had this page's emit to arrive: its cursor
            // moves now; this page's once the next one was emitted (or the cycle ends).
            if let Some(previous) = unacked.take() {
                self.settle(previous).await?;
            }
            if let Some(c) = &last {
                from = Some(c.clone());
            }
            unacked = Some((deliveries, last, t));
            keyset = true;
            if n < self.settings.page_size as usize {
                if let Some(previous) = unacked.take() {
                    self.settle(previous).await?;
                }
                return Ok(());
            }
        }
    }

    /// Waits until Kafka acknowledged every event of a page, then saves its last key as the cursor.
    async fn settle(
        &mut self,
        (deliveries, last, mut t): (Vec<crate::kafka::Delivery>, Option<Cursor>, PageTimes),
    ) -> Result<(), SourceError> {
        let step = Instant::now();
        acked(deliveries).await?;
        t.ack = step.elapsed();
        if let Some(c) = last {
            let step = Instant::now();
            self.save(c).await?;
            t.save = step.elapsed();
        }
        t.record();
        Ok(())
    }
}

/// A page query running ahead of the cycle (its records and round-trip time); aborted when the
/// cycle is dropped.
struct PageTask(tokio::task::JoinHandle<PageAnswer>);

/// A page's records and the query's round-trip time.
type PageAnswer = Result<(Vec<Box<RawValue>>, Duration), crmflow_salesforce::client::ClientError>;

impl Drop for PageTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Where the time of one page went.
#[derive(Debug, Default, Clone, Copy)]
struct PageTimes {
    records: u64,
    query: Duration,
    wait: Duration,
    emit: Duration,
    ack: Duration,
    save: Duration,
}

impl PageTimes {
    fn record(&self) {
        let us = |d: Duration| d.as_micros() as u64;
        let mut t = TIMINGS.lock().unwrap_or_else(|e| e.into_inner());
        t.pages += 1;
        t.records += self.records;
        t.query_us += us(self.query);
        t.wait_us += us(self.wait);
        t.emit_us += us(self.emit);
        t.ack_us += us(self.ack);
        t.save_us += us(self.save);
    }
}

/// Where the pollers' time went, summed over every page this process read (for benchmarks and
/// diagnosis: a page's query round trip against what of it the cycle had to wait for, and the work
/// done meanwhile).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PageTimings {
    /// Pages read.
    pub pages: u64,
    /// Records on them.
    pub records: u64,
    /// Query round trips (request sent to page parsed), µs.
    pub query_us: u64,
    /// Time the cycle waited for a page once the previous one was handled (the part of the round
    /// trip not hidden behind emitting), µs.
    pub wait_us: u64,
    /// Reading each record's key and handing it to the producer, µs.
    pub emit_us: u64,
    /// Waiting for Kafka to acknowledge a page's events, µs.
    pub ack_us: u64,
    /// Saving the cursor in Postgres, µs.
    pub save_us: u64,
}

static TIMINGS: std::sync::Mutex<PageTimings> = std::sync::Mutex::new(PageTimings {
    pages: 0,
    records: 0,
    query_us: 0,
    wait_us: 0,
    emit_us: 0,
    ack_us: 0,
    save_us: 0,
});

/// The [`PageTimings`] of this process so far.
pub fn page_timings() -> PageTimings {
    *TIMINGS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Emits each record as received (its JSON text unchanged) as one version: `SystemModstamp` is the
/// version, `IsDeleted` a delete. Returns the deliveries to await and the cursor of the last record.
pub(super) async fn emit_raw_records(
    emitter: &Emitter,
    object: &str,
    records: &[Box<RawValue>],
    tp: &TraceParent,
) -> Result<(Vec<crate::kafka::Delivery>, Option<Cursor>), SourceError> {
    let mut deliveries = Vec::with_capacity(records.len());
    let mut last: Option<Cursor> = None;
    for raw in records {
        // A page is thousands of sends that rarely wait: let the worker run other tasks (the next
        // page's query, the producer's deliveries) now and then.
        tokio::task::coop::consume_budget().await;
        let (cursor, op) = raw_meta(object, raw)?;
        if let Some(d) = emit_one(emitter, &cursor, op, raw, tp, &[]).await? {
            deliveries.push(d);
        }
        last = Some(cursor);
    }
    Ok((deliveries, last))
}

async fn emit_one(
    emitter: &Emitter,
    cursor: &Cursor,
    op: Op,
    raw: &RawValue,
    tp: &TraceParent,
    tags: &[(&str, &str)],
) -> Result<Option<crate::kafka::Delivery>, SourceError> {
    emitter
        .emit_tagged(
            Record {
                id: &cursor.id,
                version: cursor.modstamp_ms,
                op,
                raw,
            },
            Vec::new(),
            tp,
            tags,
        )
        .await
}

/// Emits each record (REST JSON) as one version: `SystemModstamp` is the version, `IsDeleted` a
/// delete. Returns the deliveries to await and the cursor of the last record.
pub(super) async fn emit_records(
    emitter: &Emitter,
    object: &str,
    records: &[Map<String, Value>],
    tp: &TraceParent,
) -> Result<(Vec<crate::kafka::Delivery>, Option<Cursor>), SourceError> {
    emit_records_tagged(emitter, object, records, tp, &|_, _| Vec::new()).await
}

/// Extra Kafka headers of one record, by its id and operation.
pub(crate) type Tags<'a> = dyn Fn(&str, Op) -> Vec<(&'static str, &'static str)> + Sync + 'a;

/// [`emit_records`] with extra Kafka headers per record (`tags(id, op)`): reconciliation's re-reads
/// are emitted this way, tagged with why they were sent.
pub(crate) async fn emit_records_tagged(
    emitter: &Emitter,
    object: &str,
    records: &[Map<String, Value>],
    tp: &TraceParent,
    tags: &Tags<'_>,
) -> Result<(Vec<crate::kafka::Delivery>, Option<Cursor>), SourceError> {
    let mut deliveries = Vec::with_capacity(records.len());
    let mut last: Option<Cursor> = None;
    for r in records {
        let (cursor, op) = meta(object, r)?;
        // Serialized straight from the map (no clone of the record).
        let raw = serde_json::to_string(r)
            .and_then(RawValue::from_string)
            .map_err(|e| SourceError::BadRecord {
                entity: object.to_string(),
                what: "JSON",
                record: e.to_string(),
            })?;
        if let Some(d) = emit_one(emitter, &cursor, op, &raw, tp, &tags(&cursor.id, op)).await? {
            deliveries.push(d);
        }
        last = Some(cursor);
    }
    Ok((deliveries, last))
}

/// The cursor key and operation of a record's JSON text (only those fields are read).
pub(super) fn raw_meta(object: &str, raw: &RawValue) -> Result<(Cursor, Op), SourceError> {
    let bad = |what: &'static str| SourceError::BadRecord {
        entity: object.to_string(),
        what,
        record: raw.get().chars().take(200).collect(),
    };
    let key = RecordKey::of(raw).map_err(|_| bad("Id"))?;
    let modstamp = key
        .system_modstamp
        .as_deref()
        .and_then(parse_datetime)
        .ok_or_else(|| bad("SystemModstamp"))?;
    Ok((
        Cursor {
            modstamp_ms: modstamp.timestamp_millis(),
            id: key.id,
        },
        if key.is_deleted.unwrap_or(false) {
            Op::Delete
        } else {
            Op::Upsert
        },
    ))
}

/// The cursor key and operation of a record.
pub(crate) fn meta(object: &str, r: &Map<String, Value>) -> Result<(Cursor, Op), SourceError> {
    let bad = |what: &'static str| SourceError::BadRecord {
        entity: object.to_string(),
        what,
        record: Value::Object(r.clone())
            .to_string()
            .chars()
            .take(200)
            .collect(),
    };
    let id = r
        .get("Id")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("Id"))?;
    let modstamp = r
        .get("SystemModstamp")
        .and_then(Value::as_str)
        .and_then(parse_datetime)
        .ok_or_else(|| bad("SystemModstamp"))?;
    let deleted = r.get("IsDeleted").and_then(Value::as_bool).unwrap_or(false);
    Ok((
        Cursor {
            modstamp_ms: modstamp.timestamp_millis(),
            id: id.to_string(),
        },
        if deleted { Op::Delete } else { Op::Upsert },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> PollSettings {
        PollSettings {
            object: "Contact".into(),
            fields: vec!["Id".into(), "SystemModstamp".into(), "IsDeleted".into()],
            page_size: 500,
            overlap_ms: 1000,
            interval: Duration::from_secs(1),
        }
    }

    #[test]
    fn queries_page_by_timestamp_then_id() {
        let s = settings();
        assert_eq!(
            s.soql(None, false),
            "SELECT Id, SystemModstamp, IsDeleted FROM Contact ORDER BY SystemModstamp, Id LIMIT 500"
        );
        let c = Cursor {
            modstamp_ms: 1_704_067_200_000,
            id: "003xx0000000001AAA".into(),
        };
        assert_eq!(
            s.soql(Some(&c), true),
            "SELECT Id, SystemModstamp, IsDeleted FROM Contact WHERE (SystemModstamp > 2024-01-01T00:00:00.000Z) OR \
(SystemModstamp = 2024-01-01T00:00:00.000Z AND Id > '003xx0000000001AAA') ORDER BY SystemModstamp, Id LIMIT 500"
        );
        assert!(s
            .soql(Some(&c), false)
            .contains("WHERE SystemModstamp >= 2023-12-31T23:59:59.000Z"));
    }

    #[test]
    fn cursor_order_and_ops() {
        let a = Cursor {
            modstamp_ms: 1,
            id: "b".into(),
        };
        let b = Cursor {
            modstamp_ms: 2,
            id: "a".into(),
        };
        assert!(a < b);
        let mut r = Map::new();
        r.insert("Id".into(), Value::String("003xx0000000001AAA".into()));
        r.insert(
            "SystemModstamp".into(),
            Value::String("2024-01-01T00:00:00.000+0000".into()),
        );
        r.insert("IsDeleted".into(), Value::Bool(true));
        let (c, op) = meta("Contact", &r).unwrap();
        assert_eq!((c.modstamp_ms, op), (1_704_067_200_000, Op::Delete));
        r.remove("Id");
        assert!(meta("Contact", &r).is_err());
    }

    #[test]
    fn raw_records_give_the_same_keys_as_maps() {
        let raw = |s: &str| RawValue::from_string(s.to_string()).unwrap();
        for (text, want) in [
            (
                r#"{"attributes":{"type":"Contact","url":"/x"},"Id":"003xx0000000001AAA","SystemModstamp":"2024-01-01T00:00:00.000+0000","IsDeleted":true}"#,
                Some((1_704_067_200_000, "003xx0000000001AAA", Op::Delete)),
            ),
            (
                r#"{"IsDeleted":false,"Name":"x","SystemModstamp":"2024-01-01T00:00:00.250+0000","Id":"003B"}"#,
                Some((1_704_067_200_250, "003B", Op::Upsert)),
            ),
            (
                r#"{"Id":"003C","SystemModstamp":"2024-01-01T00:00:00Z","IsDeleted":null}"#,
                Some((1_704_067_200_000, "003C", Op::Upsert)),
            ),
            (r#"{"Id":"003D","SystemModstamp":null}"#, None),
            (r#"{"Id":"003E"}"#, None),
            (r#"{"SystemModstamp":"2024-01-01T00:00:00Z"}"#, None),
            (r#"{"Id":7,"SystemModstamp":"2024-01-01T00:00:00Z"}"#, None),
            ("[1]", None),
        ] {
            let r = raw(text);
            let got = raw_meta("Contact", &r)
                .ok()
                .map(|(c, op)| (c.modstamp_ms, c.id, op));
            assert_eq!(
                got,
                want.map(|(t, id, op)| (t, id.to_string(), op)),
                "{text}"
            );
            // The map path agrees wherever the record is an object.
            if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(text) {
                let by_map = meta("Contact", &m)
                    .ok()
                    .map(|(c, op)| (c.modstamp_ms, c.id, op));
                assert_eq!(by_map, got, "{text}");
            }
        }
    }
}
