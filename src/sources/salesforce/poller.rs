//! The poller of one Salesforce object. A cycle reads, page after page, every record after the persisted
//! cursor `(SystemModstamp, Id)` (moved back by `overlap_ms`; the emitter de-duplicates what was sent):
//! `queryAll` with `WHERE (SystemModstamp > T) OR (SystemModstamp = T AND Id > 'I') ORDER BY SystemModstamp,
//! Id LIMIT page_size`, so a run of equal timestamps longer than a page is paged through by id (the next
//! page's query goes out while a full page is emitted). Each page's
//! events are acknowledged by Kafka before the cursor moves past them. A record with `IsDeleted` is a
//! DELETE at its `SystemModstamp` (a delete or the losing side of a merge); anything else an UPSERT.
//!
//! Before a cycle the deleted-records window is checked: if `earliestDateAvailable` is after the cursor
//! (or the cursor is older than the window reaches), hard-deleted records may have been missed, so the
//! object is read again from the beginning (logged as a resync). Failures retry the cycle from the saved
//! cursor after a backoff.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use crmflow_salesforce::client::SalesforceClient;
use crmflow_salesforce::wire::{format_iso, parse_datetime};
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
        loop {
            let records = match prefetched.take() {
                Some(mut task) => (&mut task.0).await.map_err(|e| {
                    SourceError::Stuck(format!("salesforce page query task failed: {e}"))
                })??,
                None => {
                    let soql = self.settings.soql(from.as_ref(), keyset);
                    self.client.query_collect(&soql, true).await?
                }
            };
            let n = records.len();
            // A full page: the next page's query goes out while this one is emitted and
            // acknowledged (its key is this page's last record).
            if n >= self.settings.page_size as usize {
                if let Some(last) = records.last() {
                    let (c, _) = meta(&object, last)?;
                    let soql = self.settings.soql(Some(&c), true);
                    let client = self.client.clone();
                    prefetched = Some(PageTask(tokio::spawn(async move {
                        client.query_collect(&soql, true).await
                    })));
                }
            }
            let tp = TraceParent::current_or_new();
            let (deliveries, last) = emit_records(&self.emitter, &object, &records, &tp).await?;
            acked(deliveries).await?;
            if let Some(c) = last {
                self.save(c.clone()).await?;
                from = Some(c);
            }
            keyset = true;
            if n < self.settings.page_size as usize {
                return Ok(());
            }
        }
    }
}

/// A page query running ahead of the cycle; aborted when the cycle is dropped.
struct PageTask(
    tokio::task::JoinHandle<
        Result<Vec<Map<String, Value>>, crmflow_salesforce::client::ClientError>,
    >,
);

impl Drop for PageTask {
    fn drop(&mut self) {
        self.0.abort();
    }
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
        if let Some(d) = emitter
            .emit_tagged(
                Record {
                    id: &cursor.id,
                    version: cursor.modstamp_ms,
                    op,
                    raw: &raw,
                },
                Vec::new(),
                tp,
                &tags(&cursor.id, op),
            )
            .await?
        {
            deliveries.push(d);
        }
        last = Some(cursor);
    }
    Ok((deliveries, last))
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
}
