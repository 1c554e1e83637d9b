//! CDC mode for one object: its change channel over the Pub/Sub API (`/data/ContactChangeEvent`,
//! `/data/Position__ChangeEvent`, or `salesforce.channels`), after a snapshot by poll.
//!
//! **Start and resync.** Without a usable stored replay id (first start, a replay id past the
//! retention window, a stream that fell behind it) the reader subscribes at LATEST *first*, then runs
//! the object's poller from its own cursor (key `<Object>`, the one poll mode uses) until caught up —
//! the snapshot on a first start (phase `snapshot`), an incremental resync later — and only then
//! follows the events (phase `streaming`). Every change committed before the poll ended was read by
//! it; every later one is in the open subscription: nothing is skipped. `GAP_OVERFLOW` (the org
//! dropped changes) runs the same poll in the middle of the stream.
//!
//! **Events.** Events are handled in batches (`cdc_batch_events`, `cdc_batch_wait_ms`). Event
//! payloads are Avro with only the changed fields (UPDATE) or none (GAP_*), and no `SystemModstamp`,
//! so the records of CREATE, UPDATE, UNDELETE and every `GAP_*` event are read again by REST: one
//! composite read per 2,000 ids, then `queryAll ... WHERE Id IN (...)` for ids not live any more
//! (deleted since, in the recycle bin). Each is emitted exactly as a poll would (version
//! `SystemModstamp`, delete iff `IsDeleted`), so poll, resync and stream agree on versions. A DELETE
//! event is a tombstone at its `commitTimestamp` (the record's `SystemModstamp` of the delete); so is a
//! GAP_DELETE whose record is gone for good.
//!
//! **Cursor.** After a batch's events were acknowledged by Kafka, its last replay id is stored under
//! `<Object>#cdc`; a restarted reader subscribes after it (CUSTOM), so a killed ingest repeats work and
//! loses none. Pub/Sub failures resubscribe from the stored replay id after a backoff, renewing the
//! session first when it was refused.

use std::sync::Arc;
use std::time::Duration;

use crmflow_salesforce::client::SalesforceClient;
use crmflow_salesforce::pubsub::{
    Credentials, PubSubClient, PubSubError, ReceivedEvent, ReplayStart,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::poller::{emit_records, ObjectPoller};
use super::SOURCE;
use crate::kafka::trace::TraceParent;
use crate::model::Op;
use crate::sources::cursors::{CursorStore, Phase, PhaseState};
use crate::sources::emit::{acked, Emitter, Record};
use crate::sources::{SourceError, SourceIo};

/// Consecutive failed rounds without progress before the source gives up.
const MAX_FAILED_ROUNDS: u32 = 10;
/// Ids per `WHERE Id IN (...)` query (keeps the URL well under Salesforce's limits).
const IN_QUERY_IDS: usize = 200;
/// In one-shot mode, the stream counts as caught up after this long without an event.
const ONE_SHOT_IDLE: Duration = Duration::from_secs(2);

/// The stored CDC cursor of an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CdcCursor {
    /// The channel the replay id belongs to.
    pub channel: String,
    /// Hexadecimal of the last replay id whose events Kafka acknowledged.
    pub replay_id: String,
}

/// Key of an object's CDC cursor in `source_cursors`.
pub fn cursor_key(object: &str) -> String {
    format!("{object}#cdc")
}

/// Settings of one object's CDC reader.
#[derive(Debug, Clone)]
pub struct CdcSettings {
    pub object: String,
    pub channel: String,
    pub fields: Vec<String>,
    pub batch_events: usize,
    pub batch_wait: Duration,
}

/// What a batch of events asks for.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Ids to read again (first-seen order, no duplicates), with the commit time of the delete
    /// event (`GAP_DELETE`) that named them, if one did.
    pub reread: Vec<(String, Option<i64>)>,
    /// Records known deleted at a commit time (DELETE events).
    pub tombstones: Vec<(String, i64)>,
    /// A `GAP_OVERFLOW` (or a wildcard id): resync the object by poll.
    pub overflow: bool,
    /// Newest commit timestamp seen.
    pub newest_ms: i64,
}

/// Sorts a batch's events into re-reads, tombstones and resyncs.
pub fn plan(events: &[ReceivedEvent]) -> Plan {
    let mut p = Plan::default();
    let mut seen = std::collections::HashSet::new();
    for ev in events {
        let h = &ev.header;
        p.newest_ms = p.newest_ms.max(h.commit_timestamp);
        if h.change_type == "GAP_OVERFLOW" {
            p.overflow = true;
            continue;
        }
        for id in &h.record_ids {
            if id.ends_with('*') {
                p.overflow = true;
            } else if h.change_type == "DELETE" {
                p.tombstones.push((id.clone(), h.commit_timestamp));
            } else if seen.insert(id.clone()) {
                let deleted = h.change_type == "GAP_DELETE";
                p.reread
                    .push((id.clone(), deleted.then_some(h.commit_timestamp)));
            }
        }
    }
    p
}

/// Follows one object's change channel.
pub struct CdcReader {
    client: Arc<SalesforceClient>,
    pubsub: PubSubClient,
    poller: ObjectPoller,
    settings: CdcSettings,
    emitter: Emitter,
    cursors: CursorStore,
    io: SourceIo,
    /// The stored replay id (acknowledged), if usable.
    replay: Option<Vec<u8>>,
}

/// How a round ended without an error.
enum RoundEnd {
    Shutdown,
    CaughtUp,
}

impl CdcReader {
    pub fn new(
        client: Arc<SalesforceClient>,
        pubsub: PubSubClient,
        poller: ObjectPoller,
        settings: CdcSettings,
        io: SourceIo,
    ) -> Self {
        Self {
            emitter: io.emitter(&settings.object, "cdc"),
            cursors: io.cursors().clone(),
            client,
            pubsub,
            poller,
            settings,
            io,
            replay: None,
        }
    }

    /// Reads until `shutdown` (or, with `until_caught_up`, until the stream is idle after the
    /// snapshot or resync).
    pub async fn run(
        mut self,
        shutdown: CancellationToken,
        until_caught_up: bool,
    ) -> Result<(), SourceError> {
        let object = self.settings.object.clone();
        self.poller.load().await?;
        let stored: Option<CdcCursor> = self.cursors.load(&cursor_key(&object)).await?;
        self.replay = stored
            .filter(|c| c.channel == self.settings.channel)
            .and_then(|c| from_hex(&c.replay_id));
        info!(%object, channel = %self.settings.channel, stored_replay = self.replay.is_some(), "salesforce CDC reader starting");
        let mut failures = 0u32;
        loop {
            let before = self.replay.clone();
            match self.round(&shutdown, until_caught_up).await {
                Ok(RoundEnd::Shutdown) => return Ok(()),
                Ok(RoundEnd::CaughtUp) => {
                    info!(%object, "salesforce CDC reader caught up");
                    return Ok(());
                }
                Err(Failure::Pubsub(e)) if e.is_replay_expired() => {
                    warn!(%object, error = %e, "salesforce replay id is past the retention window: resyncing the object by poll from its poll cursor");
                    self.replay = None;
                    failures = 0;
                }
                Err(Failure::Pubsub(e)) if e.is_retriable() && failures < MAX_FAILED_ROUNDS => {
                    failures = if self.replay != before {
                        1
                    } else {
                        failures + 1
                    };
                    if e.is_auth() {
                        info!(%object, "pub/sub refused the session, authenticating again");
                        let stale = self.client.session().await?;
                        let fresh = self.client.renew_session(&stale).await?;
                        self.pubsub.set_credentials(
                            Credentials::from_session(&fresh)
                                .map_err(|e| SourceError::client(SOURCE, false, e))?,
                        );
                    }
                    self.backoff(&shutdown, failures, &e).await;
                }
                Err(Failure::Source(e)) if e.is_retriable() && failures < MAX_FAILED_ROUNDS => {
                    failures = if self.replay != before {
                        1
                    } else {
                        failures + 1
                    };
                    self.backoff(&shutdown, failures, &e).await;
                }
                Err(Failure::Pubsub(e)) => {
                    let retriable = e.is_retriable();
                    return Err(SourceError::client(SOURCE, retriable, e));
                }
                Err(Failure::Source(e)) => return Err(e),
            }
            if shutdown.is_cancelled() {
                return Ok(());
            }
        }
    }

    async fn backoff(
        &self,
        shutdown: &CancellationToken,
        failures: u32,
        error: &(dyn std::fmt::Display + Sync),
    ) {
        self.emitter.forget();
        let delay = crate::runtime::backoff(failures, Duration::from_secs(30));
        warn!(object = %self.settings.object, failures, %error, delay_ms = delay.as_millis() as u64, "salesforce CDC stream failed, resubscribing from the stored replay id");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => {}
        }
    }

    async fn set_phase(&self, phase: Phase) -> Result<(), SourceError> {
        self.cursors
            .set_phase(
                &self.settings.object,
                PhaseState {
                    phase,
                    read: 0,
                    total: None,
                },
            )
            .await
    }

    /// One subscription: open it, resync by poll when there is no replay id, then follow it.
    async fn round(
        &mut self,
        shutdown: &CancellationToken,
        until_caught_up: bool,
    ) -> Result<RoundEnd, Failure> {
        let object = self.settings.object.clone();
        let resync = self.replay.is_none();
        let start = match &self.replay {
            Some(r) => ReplayStart::After(r.clone()),
            None => ReplayStart::Latest,
        };
        let sub = self
            .pubsub
            .subscribe(&self.settings.channel, start)
            .await
            .map_err(Failure::Pubsub)?;
        // Events flow into a channel, so waiting for one with a timeout never drops a half-read event.
        let (tx, mut rx) = mpsc::channel::<Result<ReceivedEvent, PubSubError>>(
            self.settings.batch_events.clamp(100, 20_000),
        );
        let reader = tokio::spawn(async move {
            let mut sub = sub;
            loop {
                let next = sub.next_event().await;
                let stop = !matches!(next, Ok(Some(_)));
                let item = match next {
                    Ok(Some(ev)) => Ok(ev),
                    Ok(None) => Err(PubSubError::Transport(
                        "the server closed the stream".into(),
                    )),
                    Err(e) => Err(e),
                };
                if tx.send(item).await.is_err() || stop {
                    return;
                }
            }
        });
        let _abort = AbortOnDrop(reader);
        if resync {
            let phase = if self.poller.has_cursor() {
                Phase::Streaming
            } else {
                Phase::Snapshot
            };
            self.set_phase(phase).await?;
            info!(%object, ?phase, "salesforce CDC: subscribed at LATEST; reading by poll from the poll cursor before streaming");
            if !self.poller.catch_up(shutdown).await? {
                return Ok(RoundEnd::Shutdown);
            }
            self.set_phase(Phase::Streaming).await?;
        }
        loop {
            let first = tokio::select! {
                ev = rx.recv() => ev,
                _ = shutdown.cancelled() => return Ok(RoundEnd::Shutdown),
                _ = tokio::time::sleep(ONE_SHOT_IDLE), if until_caught_up => return Ok(RoundEnd::CaughtUp),
            };
            let mut batch = Vec::new();
            let mut failed = None;
            match first {
                Some(Ok(ev)) => batch.push(ev),
                Some(Err(e)) => return Err(Failure::Pubsub(e)),
                None => {
                    return Err(Failure::Pubsub(PubSubError::Transport(
                        "the event reader stopped".into(),
                    )))
                }
            }
            let deadline = tokio::time::Instant::now() + self.settings.batch_wait;
            while batch.len() < self.settings.batch_events {
                tokio::select! {
                    ev = rx.recv() => match ev {
                        Some(Ok(ev)) => batch.push(ev),
                        Some(Err(e)) => { failed = Some(e); break; }
                        None => break,
                    },
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
            if !self.handle(&batch, shutdown).await? {
                return Ok(RoundEnd::Shutdown);
            }
            if let Some(e) = failed {
                return Err(Failure::Pubsub(e));
            }
        }
    }

    /// Re-reads, emits, waits for Kafka, then stores the batch's last replay id. `false`: shut down
    /// during a resync.
    async fn handle(
        &mut self,
        batch: &[ReceivedEvent],
        shutdown: &CancellationToken,
    ) -> Result<bool, SourceError> {
        let Some(last) = batch.last() else {
            return Ok(true);
        };
        let object = self.settings.object.clone();
        let p = plan(batch);
        let tp = TraceParent::current_or_new();
        let mut deliveries = Vec::new();
        let mut found = std::collections::HashSet::new();
        let ids: Vec<String> = p.reread.iter().map(|(id, _)| id.clone()).collect();
        if !ids.is_empty() {
            let fields: Vec<&str> = self.settings.fields.iter().map(String::as_str).collect();
            let live = self.client.retrieve(&object, &ids, &fields).await?;
            let records: Vec<Map<String, Value>> = live.into_iter().flatten().collect();
            for r in &records {
                if let Some(id) = r.get("Id").and_then(Value::as_str) {
                    found.insert(id.to_string());
                }
            }
            let (d, _) = emit_records(&self.emitter, &object, &records, &tp).await?;
            deliveries.extend(d);
            let gone: Vec<&String> = ids.iter().filter(|id| !found.contains(*id)).collect();
            for chunk in gone.chunks(IN_QUERY_IDS) {
                let list = chunk
                    .iter()
                    .map(|id| format!("'{}'", id.replace(['\\', '\''], "")))
                    .collect::<Vec<_>>()
                    .join(", ");
                let soql = format!(
                    "SELECT {} FROM {object} WHERE Id IN ({list})",
                    self.settings.fields.join(", ")
                );
                let records = self.client.query_collect(&soql, true).await?;
                for r in &records {
                    if let Some(id) = r.get("Id").and_then(Value::as_str) {
                        found.insert(id.to_string());
                    }
                }
                let (d, _) = emit_records(&self.emitter, &object, &records, &tp).await?;
                deliveries.extend(d);
            }
        }
        let mut tombstones = p.tombstones.clone();
        for (id, deleted_at) in &p.reread {
            if !found.contains(id) {
                if let Some(at) = deleted_at {
                    tombstones.push((id.clone(), *at));
                } else {
                    debug!(%object, %id, "changed record is gone (hard-deleted); its delete is in the stream");
                }
            }
        }
        for (id, at) in &tombstones {
            let raw =
                RawValue::from_string(serde_json::json!({"Id": id, "IsDeleted": true}).to_string())
                    .map_err(|e| SourceError::Stuck(e.to_string()))?;
            if let Some(d) = self
                .emitter
                .emit(
                    Record {
                        id,
                        version: *at,
                        op: Op::Delete,
                        raw: &raw,
                    },
                    Vec::new(),
                    &tp,
                )
                .await?
            {
                deliveries.push(d);
            }
        }
        acked(deliveries).await?;
        if p.overflow {
            warn!(%object, "salesforce GAP_OVERFLOW: changes were dropped from the stream; resyncing the object by poll from its poll cursor");
            if !self.poller.catch_up(shutdown).await? {
                return Ok(false);
            }
        }
        let cursor = CdcCursor {
            channel: self.settings.channel.clone(),
            replay_id: to_hex(&last.replay_id),
        };
        self.cursors.save(&cursor_key(&object), &cursor).await?;
        self.replay = Some(last.replay_id.clone());
        if p.newest_ms > 0 {
            self.io.synced(&object, p.newest_ms);
        }
        Ok(true)
    }
}

/// Why a round stopped.
enum Failure {
    Pubsub(PubSubError),
    Source(SourceError),
}

impl From<SourceError> for Failure {
    fn from(e: SourceError) -> Self {
        Failure::Source(e)
    }
}

/// Replay ids are opaque bytes; stored as lowercase hexadecimal.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// See [`to_hex`]; `None` for anything else (or empty).
pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    if s.is_empty() || s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crmflow_salesforce::pubsub::ChangeEventHeader;

    fn ev(kind: &str, ids: &[&str], at: i64) -> ReceivedEvent {
        ReceivedEvent {
            replay_id: vec![0, 0, 0, 0, 0, 0, 0, at as u8],
            event_id: String::new(),
            schema_id: String::new(),
            header: ChangeEventHeader {
                change_type: kind.into(),
                record_ids: ids.iter().map(|s| s.to_string()).collect(),
                commit_timestamp: at,
                ..Default::default()
            },
            fields: Map::new(),
        }
    }

    #[test]
    fn plans_rereads_tombstones_and_resyncs() {
        let p = plan(&[
            ev("CREATE", &["a"], 1),
            ev("UPDATE", &["b", "a"], 2),
            ev("DELETE", &["c"], 3),
            ev("GAP_UPDATE", &["d"], 4),
            ev("GAP_DELETE", &["e"], 5),
            ev("UNDELETE", &["f"], 6),
        ]);
        assert_eq!(
            p.reread,
            vec![
                ("a".into(), None),
                ("b".into(), None),
                ("d".into(), None),
                ("e".into(), Some(5)),
                ("f".into(), None)
            ]
        );
        assert_eq!(p.tombstones, vec![("c".into(), 3)]);
        assert!(!p.overflow);
        assert_eq!(p.newest_ms, 6);
        assert!(plan(&[ev("GAP_OVERFLOW", &["003*"], 1)]).overflow);
        assert!(plan(&[ev("GAP_UPDATE", &["003*"], 1)]).overflow);
    }

    #[test]
    fn replay_ids_round_trip_as_hex() {
        let r = vec![0u8, 1, 0xab, 0xff];
        assert_eq!(to_hex(&r), "0001abff");
        assert_eq!(from_hex("0001abff"), Some(r));
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
        assert_eq!(from_hex(""), None);
    }
}
