//! The event-subscription reader (mode `events`): Bullhorn's own change feed.
//!
//! Each poll hands out a batch numbered by a `requestId` and purges it server-side, so the batch id is saved
//! (`{"request_id":N,"state":"processing"}` in `source_cursors`) before the batch is processed, and marked
//! `done` only after Kafka acknowledged every event of it. After a crash, a `processing` batch is re-got with
//! `requestId=N`; batches handed out after the last saved one (a crash between the poll and the save, or a
//! poll whose answer was lost) are found through `lastRequestId` and re-got too.
//!
//! Processing merges the events of one record (a batch may hold several), reads the current records by id in
//! batches (`entity/Candidate/1,2,3?fields=..`) and emits an UPSERT, or a DELETE for a DELETED event or a
//! soft-deleted record; a record that no longer exists becomes a DELETE versioned by its event's timestamp.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use crmflow_bullhorn::client::BullhornClient;
use crmflow_bullhorn::wire::{EntityEventType, EventBatch};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, warn, Instrument};

use super::record::{self, RecordMeta};
use crate::kafka::trace::TraceParent;
use crate::model::Op;
use crate::sources::cursors::CursorStore;
use crate::sources::emit::{acked, Emitter};
use crate::sources::SourceError;

/// Records read per `entity/{Type}/{ids}` call.
const IDS_PER_READ: usize = 100;
/// Event types subscribed to.
const EVENT_TYPES: [&str; 3] = ["INSERTED", "UPDATED", "DELETED"];
/// Consecutive failures before the stage gives up.
const MAX_FAILURES: u32 = 10;

/// Where the reader is, as stored in `source_cursors`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventState {
    /// The last batch handed to this reader.
    pub request_id: u64,
    pub state: Phase,
}

/// Whether the batch `request_id` is fully acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Processing,
    Done,
}

/// What one record's events in a batch add up to.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Merged {
    /// The last event's type decides: DELETED wins only if it came last.
    pub last: Option<EntityEventType>,
    /// Union of `updatedProperties`.
    pub changed: BTreeSet<String>,
    /// Latest event timestamp, epoch ms.
    pub timestamp: i64,
}

/// Groups a batch's events by `(entity, id)`, in event order.
pub fn merge(batch: &EventBatch) -> BTreeMap<(String, i64), Merged> {
    let mut out: BTreeMap<(String, i64), Merged> = BTreeMap::new();
    for e in &batch.events {
        let m = out.entry((e.entity_name.clone(), e.entity_id)).or_default();
        m.last = Some(e.entity_event_type);
        m.changed
            .extend(e.updated_properties.iter().flatten().cloned());
        m.timestamp = m.timestamp.max(e.event_timestamp);
    }
    out
}

/// Where the state of subscription `subscription` is kept in `source_cursors`.
pub fn state_key(subscription: &str) -> String {
    format!("events/{subscription}")
}

/// Reads one subscription into the raw topics.
pub struct EventReader {
    client: BullhornClient,
    subscription: String,
    max_events: u32,
    interval: Duration,
    fields: HashMap<String, String>,
    emitters: HashMap<String, Emitter>,
    cursors: CursorStore,
    state: Option<EventState>,
    fresh: bool,
}

impl EventReader {
    /// Creates (or finds) the subscription and loads the saved state.
    pub async fn open(
        client: BullhornClient,
        subscription: &str,
        max_events: u32,
        interval: Duration,
        emitters: Vec<(Emitter, String)>,
        cursors: CursorStore,
    ) -> Result<Self, SourceError> {
        let names: Vec<String> = emitters
            .iter()
            .map(|(e, _)| e.entity().to_owned())
            .collect();
        let created = client.subscribe(subscription, &names, &EVENT_TYPES).await?;
        let mut reader = Self {
            client,
            subscription: subscription.to_owned(),
            max_events,
            interval,
            fields: emitters
                .iter()
                .map(|(e, f)| (e.entity().to_owned(), f.clone()))
                .collect(),
            emitters: emitters
                .into_iter()
                .map(|(e, _)| (e.entity().to_owned(), e))
                .collect(),
            cursors,
            state: None,
            fresh: false,
        };
        reader.state = reader.cursors.load(&reader.key()).await?;
        reader.fresh = reader.state.is_none();
        if reader.state.is_none() {
            // A new reader starts at the subscription's current position; saving it now means a crash right
            // after the first poll is still recovered through lastRequestId.
            reader
                .save(EventState {
                    request_id: created.last_request_id,
                    state: Phase::Done,
                })
                .await?;
        }
        info!(subscription, state = ?reader.state, "bullhorn event reader open");
        Ok(reader)
    }

    /// Whether this reader had no saved state when it was opened: it starts at the subscription's
    /// current position, so what changed before needs a snapshot.
    pub fn fresh(&self) -> bool {
        self.fresh
    }

    /// The entities it reads.
    pub fn entities(&self) -> Vec<String> {
        let mut v: Vec<String> = self.emitters.keys().cloned().collect();
        v.sort();
        v
    }

    fn key(&self) -> String {
        state_key(&self.subscription)
    }

    async fn save(&mut self, s: EventState) -> Result<(), SourceError> {
        self.cursors.save(&self.key(), &s).await?;
        self.state = Some(s);
        Ok(())
    }

    /// Finishes what a previous run (or a failed poll) left: the `processing` batch, then any batch handed
    /// out after the last saved one.
    pub async fn recover(&mut self) -> Result<(), SourceError> {
        let Some(state) = self.state else {
            return Ok(());
        };
        if state.state == Phase::Processing {
            self.reget_and_process(state.request_id).await?;
        }
        let last = self.client.last_request_id(&self.subscription).await?;
        let done = self.state.map_or(0, |s| s.request_id);
        for request_id in done + 1..=last {
            warn!(
                request_id,
                "bullhorn event batch handed out but never processed, getting it again"
            );
            self.save(EventState {
                request_id,
                state: Phase::Processing,
            })
            .await?;
            self.reget_and_process(request_id).await?;
        }
        Ok(())
    }

    async fn reget_and_process(&mut self, request_id: u64) -> Result<(), SourceError> {
        match self
            .client
            .reget_events(&self.subscription, request_id)
            .await?
        {
            Some(batch) => self.process(batch).await,
            None => {
                warn!(
                    request_id,
                    "bullhorn no longer has this event batch; a poll-mode backfill covers the gap"
                );
                self.save(EventState {
                    request_id,
                    state: Phase::Done,
                })
                .await
            }
        }
    }

    /// Polls the next batch and saves its id as `processing` before returning it (`None`: nothing new).
    pub async fn fetch_batch(&mut self) -> Result<Option<EventBatch>, SourceError> {
        let batch = self
            .client
            .poll_events(&self.subscription, self.max_events)
            .await?;
        if let Some(b) = &batch {
            self.save(EventState {
                request_id: b.request_id,
                state: Phase::Processing,
            })
            .await?;
        }
        Ok(batch)
    }

    /// Emits a batch and marks it done once Kafka acknowledged all of it.
    pub async fn process(&mut self, batch: EventBatch) -> Result<(), SourceError> {
        let span = info_span!(
            "bullhorn.events",
            request_id = batch.request_id,
            events = batch.events.len()
        );
        let tp = {
            let _g = span.enter();
            TraceParent::current_or_new()
        };
        let merged = merge(&batch);
        let mut by_entity: BTreeMap<&str, Vec<(i64, &Merged)>> = BTreeMap::new();
        for ((entity, id), m) in &merged {
            if self.emitters.contains_key(entity.as_str()) {
                by_entity.entry(entity).or_default().push((*id, m));
            }
        }
        let mut deliveries = Vec::new();
        for (entity, items) in by_entity {
            let emitter = &self.emitters[entity];
            let fields = &self.fields[entity];
            for chunk in items.chunks(IDS_PER_READ) {
                let ids: Vec<i64> = chunk.iter().map(|(id, _)| *id).collect();
                let records: Vec<Box<RawValue>> = self
                    .client
                    .get_entities(entity, &ids, fields)
                    .instrument(span.clone())
                    .await?;
                let mut found: HashMap<i64, (Box<RawValue>, RecordMeta)> = HashMap::new();
                for raw in records {
                    let meta = RecordMeta::parse(entity, &raw)?;
                    found.insert(meta.id, (raw, meta));
                }
                for (id, m) in chunk {
                    let changed: Vec<String> = m.changed.iter().cloned().collect();
                    let deleted = m.last == Some(EntityEventType::Deleted);
                    let sent = match found.get(id) {
                        Some((raw, meta)) => {
                            let op = deleted.then_some(Op::Delete);
                            record::emit(emitter, raw, meta, op, Some(m.timestamp), changed, &tp)
                                .await?
                        }
                        None => {
                            // Gone (hard-deleted): a tombstone versioned by the event.
                            let raw = RawValue::from_string(format!("{{\"id\":{id}}}"))
                                .map_err(|e| SourceError::Stuck(e.to_string()))?;
                            let meta = RecordMeta {
                                id: *id,
                                date_last_modified: None,
                                is_deleted: None,
                            };
                            record::emit(
                                emitter,
                                &raw,
                                &meta,
                                Some(Op::Delete),
                                Some(m.timestamp),
                                changed,
                                &tp,
                            )
                            .await?
                        }
                    };
                    deliveries.extend(sent);
                }
            }
        }
        let n = acked(deliveries).await?;
        info!(
            request_id = batch.request_id,
            events = batch.events.len(),
            records = merged.len(),
            sent = n,
            "bullhorn event batch done"
        );
        self.save(EventState {
            request_id: batch.request_id,
            state: Phase::Done,
        })
        .await
    }

    /// Recovers, then reads batches until shutdown (or, with `until_caught_up`, until a poll is empty).
    pub async fn run(
        mut self,
        shutdown: CancellationToken,
        until_caught_up: bool,
    ) -> Result<(), SourceError> {
        let mut failures = 0u32;
        let mut recovered = false;
        loop {
            let step_started = crate::observe::now_ms();
            let step = async {
                if !recovered {
                    self.recover().await?;
                    recovered = true;
                }
                match self.fetch_batch().await? {
                    Some(batch) => {
                        self.process(batch).await?;
                        Ok(true)
                    }
                    None => Ok::<bool, SourceError>(false),
                }
            };
            let result = tokio::select! {
                r = step => r,
                _ = shutdown.cancelled() => return Ok(()),
            };
            match result {
                Ok(true) => failures = 0,
                Ok(false) => {
                    failures = 0;
                    // An empty poll: every event up to its start has been processed.
                    crate::observe::source_synced(super::SOURCE, "events", step_started);
                    if until_caught_up {
                        return Ok(());
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(self.interval) => {}
                        _ = shutdown.cancelled() => return Ok(()),
                    }
                }
                Err(error) if error.is_retriable() && failures < MAX_FAILURES => {
                    failures += 1;
                    recovered = false;
                    for e in self.emitters.values() {
                        e.forget();
                    }
                    let delay = crate::runtime::backoff(failures, Duration::from_secs(30));
                    warn!(failures, %error, delay_ms = delay.as_millis() as u64, "bullhorn event step failed, recovering");
                    crate::observe::retry("ingest", "crm", &error);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.cancelled() => return Ok(()),
                    }
                }
                Err(error) => return Err(error),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crmflow_bullhorn::wire::Event;

    fn ev(entity: &str, id: i64, t: EntityEventType, ts: i64, props: Option<&[&str]>) -> Event {
        Event {
            event_id: format!("ID:{ts}"),
            event_type: "ENTITY".into(),
            event_timestamp: ts,
            event_metadata: Default::default(),
            entity_name: entity.into(),
            entity_id: id,
            entity_event_type: t,
            updated_properties: props.map(|p| p.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn events_of_one_record_are_merged() {
        use EntityEventType::*;
        let batch = EventBatch {
            request_id: 1,
            events: vec![
                ev("Candidate", 1, Inserted, 10, None),
                ev("Candidate", 1, Updated, 11, Some(&["email"])),
                ev("Candidate", 1, Updated, 12, Some(&["phone", "email"])),
                ev("Candidate", 2, Updated, 13, Some(&["status"])),
                ev("Candidate", 2, Deleted, 14, None),
                ev("JobOrder", 1, Updated, 15, Some(&["title"])),
            ],
        };
        let m = merge(&batch);
        assert_eq!(m.len(), 3);
        let c1 = &m[&("Candidate".to_string(), 1)];
        assert_eq!(c1.last, Some(Updated));
        assert_eq!(c1.changed.iter().collect::<Vec<_>>(), ["email", "phone"]);
        assert_eq!(c1.timestamp, 12);
        assert_eq!(m[&("Candidate".to_string(), 2)].last, Some(Deleted));
        assert_eq!(m[&("JobOrder".to_string(), 1)].changed.len(), 1);
    }

    #[test]
    fn state_document_shape() {
        let s = EventState {
            request_id: 7,
            state: Phase::Processing,
        };
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"request_id":7,"state":"processing"}"#
        );
    }
}
