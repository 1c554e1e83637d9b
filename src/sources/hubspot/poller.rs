//! One HubSpot object read by poll: a snapshot by list, then incremental CRM search by modified
//! time, then the archived objects since the last pass. Every cursor save waits for Kafka's
//! acknowledgement of everything it covers.
//!
//! **Snapshot** (no cursor yet): `GET /crm/v3/objects/{type}` pages in id order with the list's own
//! `after` cursor, which stays valid while records change (it is an id, not an offset); the list
//! endpoint counts only against the 10-second budget, not search's few requests per second, so a
//! first sync runs at the 10-second limit. Progress is saved under `snapshot/<entity>` after each
//! page, so a restart resumes it. The incremental cursor then starts at the snapshot's start minus
//! the overlap: whatever changed while the list was read is searched again. Objects already
//! archived are listed too and become tombstones.
//!
//! **Incremental**: keyset paging on the modified time. Each search asks for `modified >= from`,
//! oldest first, one page, and the next starts at the page's newest modified time (`from` moves by
//! re-anchoring, never by `after` offsets): a query never pages towards HubSpot's 10,000-result cap,
//! and records that change during the read cannot shift an offset past unread ones. Records at the
//! anchor time are read again and skipped by the emitter's `(id, version)` cache. When a whole page
//! shares one modified time, that time is read on its own, paging by `hs_object_id > last id` (the
//! id as tiebreaker), then `from` moves one millisecond on. Each poll starts `overlap_ms` before the
//! cursor, because search lags writes by seconds.
//!
//! **Merged**: an id merged into another disappears (not even archived); the survivor lists it in
//! `hs_merged_object_ids`, so each read of the survivor emits tombstones for those ids at the
//! survivor's version.
//!
//! **Archived**: search never returns archived objects; `GET ...?archived=true` lists them all, and
//! those archived since the previous pass (minus the overlap) become tombstones at `archivedAt`.

use std::time::Duration;

use crmflow_hubspot::client::{HubSpotClient, ListParams};
use crmflow_hubspot::wire::{
    modified_property, CrmObject, Direction, Filter, FilterGroup, Operator, SearchRequest, Sort,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::record;
use crate::kafka::trace::TraceParent;
use crate::kafka::Delivery;
use crate::model::Op;
use crate::sources::cursors::{CursorStore, Phase, PhaseState};
use crate::sources::emit::{acked, Emitter, Record};
use crate::sources::SourceError;

/// Where an object's incremental reads are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollCursor {
    /// Every record modified before this (epoch ms) was read and acknowledged.
    pub modified_ms: i64,
    /// Every object archived before this (epoch ms) was emitted as a tombstone.
    pub archived_ms: i64,
}

/// Progress of a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotState {
    /// When the snapshot began (epoch ms).
    pub started_ms: i64,
    /// The list cursor of the next page; `None` before the first page.
    pub after: Option<String>,
    /// Records read so far.
    pub read: i64,
}

/// The cursor key of a snapshot.
pub fn snapshot_key(entity: &str) -> String {
    format!("snapshot/{entity}")
}

/// What one object's poller reads and how.
#[derive(Debug, Clone)]
pub struct Settings {
    pub entity: String,
    pub object_type: String,
    pub properties: Vec<String>,
    pub page_size: u32,
    pub overlap_ms: i64,
    pub poll_interval: Duration,
    /// Keep polling after the snapshot (poll and both modes); webhook mode stops after it.
    pub incremental: bool,
    /// The phase after the snapshot: `polling`, or `streaming` when webhooks follow.
    pub after_snapshot: Phase,
}

/// One object's poller.
pub struct ObjectPoller {
    client: HubSpotClient,
    s: Settings,
    emitter: Emitter,
    cursors: CursorStore,
    modified: &'static str,
}

/// Where the next search starts, from a full page's modified times (ascending): the page's
/// newest time, or `None` when the whole page shares `from` (read that time by id instead).
pub fn next_anchor(from: i64, page_versions: &[i64]) -> Option<i64> {
    page_versions.iter().copied().max().filter(|&m| m > from)
}

impl ObjectPoller {
    pub fn new(client: HubSpotClient, s: Settings, emitter: Emitter, cursors: CursorStore) -> Self {
        let modified = modified_property(&s.object_type);
        Self {
            client,
            s,
            emitter,
            cursors,
            modified,
        }
    }

    /// Snapshot if needed, then incremental polls until `stop` (or caught up once, in one-shot
    /// mode, or right after the snapshot in webhook mode).
    pub async fn run(
        self,
        stop: CancellationToken,
        until_caught_up: bool,
    ) -> Result<(), SourceError> {
        let entity = self.s.entity.clone();
        let mut cursor = match self.cursors.load::<PollCursor>(&entity).await? {
            Some(c) => c,
            None => self.snapshot(&stop).await?,
        };
        if stop.is_cancelled() {
            return Ok(());
        }
        self.set_phase(self.s.after_snapshot, 0, None).await?;
        if !self.s.incremental {
            info!(entity = %entity, "hubspot snapshot done; webhooks follow");
            return Ok(());
        }
        loop {
            let result = self.poll_once(&mut cursor, &stop).await;
            match result {
                Ok(()) => {}
                Err(e) if e.is_retriable() && !until_caught_up => {
                    self.emitter.forget();
                    crate::observe::retry("ingest", "crm", &e);
                    tracing::warn!(entity = %entity, error = %e, "hubspot poll failed; retrying");
                }
                Err(e) => return Err(e),
            }
            if until_caught_up || stop.is_cancelled() {
                return Ok(());
            }
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(self.s.poll_interval) => {}
            }
        }
    }

    async fn set_phase(
        &self,
        phase: Phase,
        read: i64,
        total: Option<i64>,
    ) -> Result<(), SourceError> {
        self.cursors
            .set_phase(&self.s.entity, PhaseState { phase, read, total })
            .await
    }

    /// Lists every live object, page by page; returns the incremental cursor it leaves.
    async fn snapshot(&self, stop: &CancellationToken) -> Result<PollCursor, SourceError> {
        let key = snapshot_key(&self.s.entity);
        let mut st = match self.cursors.load::<SnapshotState>(&key).await? {
            Some(s) => s,
            None => SnapshotState {
                started_ms: now_ms(),
                ..Default::default()
            },
        };
        self.set_phase(Phase::Snapshot, st.read, None).await?;
        info!(entity = %self.s.entity, resumed_at = st.read, "hubspot snapshot");
        loop {
            if stop.is_cancelled() {
                return Ok(PollCursor::default());
            }
            let page = self
                .client
                .get_page::<CrmObject>(
                    &self.s.object_type,
                    &ListParams {
                        limit: Some(self.s.page_size.min(100)),
                        after: st.after.clone(),
                        properties: self.s.properties.clone(),
                        archived: false,
                    },
                )
                .await
                .map_err(client_error)?;
            let tp = TraceParent::current_or_new();
            let mut deliveries = Vec::with_capacity(page.results.len());
            for obj in &page.results {
                self.emit(obj, &tp, &mut deliveries).await?;
            }
            acked(deliveries).await?;
            st.read += page.results.len() as i64;
            st.after = page.next_after().map(str::to_owned);
            self.cursors.save(&key, &st).await?;
            self.set_phase(Phase::Snapshot, st.read, None).await?;
            if st.after.is_none() {
                break;
            }
        }
        // Objects archived before the snapshot become tombstones too, so the snapshot equals the
        // CRM's state, deletions included (a tombstone of a row never written is harmless).
        let mut cursor = PollCursor {
            modified_ms: st.started_ms - self.s.overlap_ms,
            archived_ms: i64::MIN / 2,
        };
        self.archived_since(&mut cursor, st.started_ms).await?;
        self.cursors.save(&self.s.entity, &cursor).await?;
        info!(entity = %self.s.entity, records = st.read, "hubspot snapshot complete");
        Ok(cursor)
    }

    /// One incremental pass: search from the cursor (minus the overlap) to now, then the archived.
    async fn poll_once(
        &self,
        cursor: &mut PollCursor,
        stop: &CancellationToken,
    ) -> Result<(), SourceError> {
        let started = now_ms();
        let mut from = (cursor.modified_ms - self.s.overlap_ms).max(0);
        loop {
            if stop.is_cancelled() {
                return Ok(());
            }
            let page = self
                .client
                .search_modified::<CrmObject>(
                    &self.s.object_type,
                    from,
                    None,
                    &self.s.properties,
                    None,
                    Some(self.s.page_size),
                )
                .await
                .map_err(client_error)?;
            let full = page.results.len() as u32 >= self.s.page_size;
            let versions = self.emit_page(&page.results).await?;
            if !full {
                // Caught up: everything the index showed at this pass's start is in Kafka; what
                // it did not show yet (search lag) is newer than `started - lag`, and the next
                // pass starts `overlap_ms` before `started`.
                cursor.modified_ms = cursor.modified_ms.max(started);
                break;
            }
            from = match next_anchor(from, &versions) {
                Some(m) => m,
                None => {
                    self.read_tie(from, stop).await?;
                    from + 1
                }
            };
            cursor.modified_ms = cursor.modified_ms.max(from);
            self.cursors.save(&self.s.entity, cursor).await?;
            debug!(entity = %self.s.entity, from, "hubspot search re-anchored");
        }
        self.archived_since(cursor, started).await?;
        self.cursors.save(&self.s.entity, cursor).await?;
        crate::observe::source_synced(record::CRM, &self.s.entity, cursor.modified_ms);
        Ok(())
    }

    /// Reads every record modified exactly at `at`, by id.
    async fn read_tie(&self, at: i64, stop: &CancellationToken) -> Result<(), SourceError> {
        let mut last_id: u64 = 0;
        loop {
            if stop.is_cancelled() {
                return Ok(());
            }
            let req = SearchRequest {
                filter_groups: vec![FilterGroup {
                    filters: vec![
                        Filter::new(self.modified, Operator::Eq, at.to_string()),
                        Filter::new("hs_object_id", Operator::Gt, last_id.to_string()),
                    ],
                }],
                sorts: vec![Sort {
                    property_name: "hs_object_id".into(),
                    direction: Direction::Ascending,
                }],
                query: None,
                properties: self.s.properties.clone(),
                limit: Some(self.s.page_size),
                after: None,
            };
            let page = self
                .client
                .search::<CrmObject>(&self.s.object_type, &req)
                .await
                .map_err(client_error)?;
            self.emit_page(&page.results).await?;
            let max_id = page
                .results
                .iter()
                .filter_map(|o| o.id.parse::<u64>().ok())
                .max();
            match max_id {
                Some(m) if page.results.len() as u32 >= self.s.page_size && m > last_id => {
                    last_id = m
                }
                _ => return Ok(()),
            }
        }
    }

    /// Tombstones for objects archived since the cursor (minus the overlap).
    async fn archived_since(
        &self,
        cursor: &mut PollCursor,
        started: i64,
    ) -> Result<(), SourceError> {
        let since = cursor.archived_ms - self.s.overlap_ms;
        let mut after = None;
        let tp = TraceParent::current_or_new();
        let mut deliveries = Vec::new();
        loop {
            let page = self
                .client
                .get_page::<CrmObject>(
                    &self.s.object_type,
                    &ListParams {
                        limit: Some(self.s.page_size.min(100)),
                        after: after.take(),
                        properties: vec![
                            self.modified.to_owned(),
                            "hs_merged_object_ids".to_owned(),
                        ],
                        archived: true,
                    },
                )
                .await
                .map_err(client_error)?;
            for obj in &page.results {
                if record::archived_version(obj).is_some_and(|v| v >= since) {
                    self.emit(obj, &tp, &mut deliveries).await?;
                }
            }
            match page.next_after() {
                Some(a) => after = Some(a.to_owned()),
                None => break,
            }
        }
        acked(deliveries).await?;
        cursor.archived_ms = started;
        Ok(())
    }

    /// Emits a page and waits for the acks; returns the versions of its live records.
    async fn emit_page(&self, objs: &[CrmObject]) -> Result<Vec<i64>, SourceError> {
        let tp = TraceParent::current_or_new();
        let mut deliveries = Vec::with_capacity(objs.len());
        let mut versions = Vec::with_capacity(objs.len());
        for obj in objs {
            if let Some(v) = self.emit(obj, &tp, &mut deliveries).await? {
                versions.push(v);
            }
        }
        acked(deliveries).await?;
        Ok(versions)
    }

    /// Emits one object (live: upsert at its modified time; archived: delete at `archivedAt`).
    async fn emit(
        &self,
        obj: &CrmObject,
        tp: &TraceParent,
        deliveries: &mut Vec<Delivery>,
    ) -> Result<Option<i64>, SourceError> {
        let (op, version) = if obj.archived {
            (Op::Delete, record::archived_version(obj))
        } else {
            (Op::Upsert, record::version(obj, self.modified))
        };
        let json = serde_json::to_string(obj).unwrap_or_default();
        let Some(version) = version else {
            return Err(SourceError::BadRecord {
                entity: self.s.entity.clone(),
                what: self.modified,
                record: json.chars().take(200).collect(),
            });
        };
        let raw = RawValue::from_string(json).map_err(|_| SourceError::BadRecord {
            entity: self.s.entity.clone(),
            what: "json",
            record: obj.id.clone(),
        })?;
        let rec = Record {
            id: &obj.id,
            version,
            op,
            raw: &raw,
        };
        if let Some(d) = self.emitter.emit(rec, vec![], tp).await? {
            deliveries.push(d);
        }
        {
            // Merged ids are gone whether the survivor is live or archived now.
            for id in record::merged_ids(obj) {
                let raw = RawValue::from_string(record::bare_record(&id)).map_err(|_| {
                    SourceError::BadRecord {
                        entity: self.s.entity.clone(),
                        what: "id",
                        record: id.clone(),
                    }
                })?;
                let rec = Record {
                    id: &id,
                    version,
                    op: Op::Delete,
                    raw: &raw,
                };
                if let Some(d) = self.emitter.emit(rec, vec![], tp).await? {
                    deliveries.push(d);
                }
            }
        }
        Ok(Some(version))
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A client failure as a source error, keeping the client's retry decision.
pub fn client_error(e: crmflow_hubspot::client::ClientError) -> SourceError {
    let retriable = e.is_retriable();
    SourceError::client(record::CRM, retriable, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_table() {
        // (case, from, versions of a full page, next anchor)
        let cases: &[(&str, i64, &[i64], Option<i64>)] = &[
            ("moves to the newest", 100, &[100, 101, 105], Some(105)),
            ("unordered page", 100, &[105, 101, 100], Some(105)),
            ("all at the anchor: read by id", 100, &[100, 100, 100], None),
            ("empty page", 100, &[], None),
        ];
        for (name, from, versions, want) in cases {
            assert_eq!(next_anchor(*from, versions), *want, "{name}");
        }
    }
}
