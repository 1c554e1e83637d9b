//! From a CRM record to a Kafka message, for every CRM: the source says what the record is
//! ([`Record`]: id, version, op, changed fields, the JSON exactly as received), the emitter builds
//! the `ChangeEvent`, encodes it in Avro and hands it to the producer with a `traceparent` header.
//! Nothing here knows a CRM's field names: each source reads its own id and version.
//!
//! [`Emitter::emit`] skips versions it has already sent — a moka cache of `(id, version)` — which is
//! what makes overlapping polls and re-got event batches cheap; it never decides what to read, so
//! nothing is skipped that was not sent before by this process. It returns the delivery future; the
//! caller awaits it before moving its cursor.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::message::OwnedHeaders;
use serde_json::value::RawValue;

use super::SourceError;
use crate::kafka::trace::{inject, TraceParent};
use crate::kafka::{Delivery, Producer};
use crate::model::{ChangeEvent, Op};

/// One version of one CRM record, as the source read it.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// The CRM's record id (the Kafka key).
    pub id: &'a str,
    /// The version, epoch ms (the CRM's modification time, or an event's time for a record
    /// known only from its event).
    pub version: i64,
    pub op: Op,
    /// The CRM's JSON, carried unchanged in the event.
    pub raw: &'a RawValue,
}

/// Sends one entity's events to its raw topic.
#[derive(Clone)]
pub struct Emitter {
    producer: Producer,
    crm: &'static str,
    entity: String,
    topic: String,
    mode: &'static str,
    seen: moka::sync::Cache<(Arc<str>, i64), ()>,
}

/// Versions remembered per entity for de-duplication.
const SEEN_CAPACITY: u64 = 500_000;

impl Emitter {
    /// An emitter for `crm`'s `entity`, writing to `topic`; `mode` (`poll`, `events`, `webhook`, ...)
    /// is recorded in every event's `source_mode`.
    pub fn new(
        producer: Producer,
        crm: &'static str,
        entity: &str,
        topic: String,
        mode: &'static str,
    ) -> Self {
        Self {
            producer,
            crm,
            entity: entity.to_owned(),
            topic,
            mode,
            seen: moka::sync::Cache::builder()
                .max_capacity(SEEN_CAPACITY)
                .time_to_idle(Duration::from_secs(3600))
                .build(),
        }
    }

    /// Forgets every version sent. Called when a step failed: its unacknowledged sends may be lost, so
    /// they must not be skipped when the step is tried again.
    pub fn forget(&self) {
        self.seen.invalidate_all();
    }

    /// The entity this emitter serves.
    pub fn entity(&self) -> &str {
        &self.entity
    }

    /// The CRM this emitter serves (the `crm` label of its events and metrics).
    pub fn crm(&self) -> &'static str {
        self.crm
    }

    /// Emits one record version unless this process already sent it (`None` then). The returned
    /// delivery resolves when Kafka acknowledged the event.
    pub async fn emit(
        &self,
        record: Record<'_>,
        changed_fields: Vec<String>,
        tp: &TraceParent,
    ) -> Result<Option<Delivery>, SourceError> {
        self.emit_tagged(record, changed_fields, tp, &[]).await
    }

    /// [`Emitter::emit`] with extra Kafka headers on the event (reconciliation says `op` and
    /// `reason` there); the event itself is an ordinary `ChangeEvent`.
    pub async fn emit_tagged(
        &self,
        record: Record<'_>,
        changed_fields: Vec<String>,
        tp: &TraceParent,
        tags: &[(&str, &str)],
    ) -> Result<Option<Delivery>, SourceError> {
        crate::observe::records_in("ingest", 1);
        let key: (Arc<str>, i64) = (Arc::from(record.id), record.version);
        if self.seen.contains_key(&key) {
            return Ok(None);
        }
        let event = ChangeEvent::new(
            self.crm,
            &self.entity,
            record.id,
            record.op,
            record.version,
            chrono::Utc::now().timestamp_millis(),
            changed_fields,
            self.mode,
            record.raw.get().to_owned(),
        );
        let payload = crate::codec::change_event().encode(&event)?;
        // Each change is its own trace, sampled here once (the page's context becomes a link).
        let (tp, _spans) = crate::kafka::trace::source_change(
            Some(tp),
            self.crm,
            &self.entity,
            &event.record_id,
            record.version,
            &self.topic,
        );
        let mut headers = inject(OwnedHeaders::new(), &tp);
        for (key, value) in tags {
            headers = headers.insert(rdkafka::message::Header {
                key,
                value: Some(value.as_bytes()),
            });
        }
        let delivery = self
            .producer
            .send(&self.topic, event.record_id.as_bytes(), &payload, headers)
            .await?;
        self.seen.insert(key, ());
        crate::observe::source_records(self.crm, &self.entity, 1);
        Ok(Some(delivery))
    }
}

/// Waits for every delivery report; the first failure is the error.
pub async fn acked(deliveries: Vec<Delivery>) -> Result<usize, SourceError> {
    let n = deliveries.len();
    futures::future::try_join_all(deliveries).await?;
    Ok(n)
}

/// Shared handle.
pub type SharedEmitter = Arc<Emitter>;
