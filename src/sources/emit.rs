//! From a CRM record to a Kafka message: read the few fields the event needs (id, version, deleted flag)
//! from the record's JSON, build the `ChangeEvent` (the record itself travels exactly as received), encode it
//! in Avro and hand it to the producer with a `traceparent` header.
//!
//! [`Emitter::emit`] skips versions it has already sent — a moka cache of `(id, version)` — which is what
//! makes overlapping polls and re-got event batches cheap; it never decides what to read, so nothing is
//! skipped that was not sent before by this process. It returns the delivery future; the caller awaits it
//! before moving its cursor.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::message::OwnedHeaders;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::SourceError;
use crate::kafka::trace::{inject, TraceParent};
use crate::kafka::{Delivery, Producer};
use crate::model::{ChangeEvent, Op};

/// The fields of a Bullhorn record an event is built from.
#[derive(Debug, Deserialize)]
pub struct RecordMeta {
    pub id: i64,
    #[serde(rename = "dateLastModified")]
    pub date_last_modified: Option<i64>,
    /// `true`/`false`, or `0`/`1` in some tenants' search answers.
    #[serde(rename = "isDeleted", default)]
    pub is_deleted: Option<serde_json::Value>,
}

impl RecordMeta {
    /// Parses the meta fields of a raw record.
    pub fn parse(entity: &str, raw: &RawValue) -> Result<Self, SourceError> {
        serde_json::from_str(raw.get()).map_err(|_| SourceError::BadRecord {
            entity: entity.to_owned(),
            what: "id",
            record: raw.get().chars().take(200).collect(),
        })
    }

    /// Whether the record is soft-deleted.
    pub fn deleted(&self) -> bool {
        match &self.is_deleted {
            Some(serde_json::Value::Bool(b)) => *b,
            Some(serde_json::Value::Number(n)) => n.as_i64() == Some(1),
            Some(serde_json::Value::String(s)) => s == "1" || s.eq_ignore_ascii_case("true"),
            _ => false,
        }
    }
}

/// Sends one entity's events to its raw topic.
#[derive(Clone)]
pub struct Emitter {
    producer: Producer,
    crm: &'static str,
    entity: String,
    topic: String,
    mode: &'static str,
    seen: moka::sync::Cache<(i64, i64), ()>,
}

/// Versions remembered per entity for de-duplication.
const SEEN_CAPACITY: u64 = 500_000;

impl Emitter {
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

    /// Emits one record version unless this process already sent it. `op`: forced operation (an event
    /// said DELETED), else derived from `isDeleted`. `version`: used when the record has no
    /// `dateLastModified` (a hard delete known only from its event).
    pub async fn emit(
        &self,
        raw: &RawValue,
        meta: &RecordMeta,
        op: Option<Op>,
        version: Option<i64>,
        changed_fields: Vec<String>,
        tp: &TraceParent,
    ) -> Result<Option<Delivery>, SourceError> {
        let version =
            meta.date_last_modified
                .or(version)
                .ok_or_else(|| SourceError::BadRecord {
                    entity: self.entity.clone(),
                    what: "dateLastModified",
                    record: raw.get().chars().take(200).collect(),
                })?;
        let key = (meta.id, version);
        crate::observe::records_in("ingest", 1);
        if self.seen.contains_key(&key) {
            return Ok(None);
        }
        let op = op.unwrap_or(if meta.deleted() {
            Op::Delete
        } else {
            Op::Upsert
        });
        let event = ChangeEvent::new(
            self.crm,
            &self.entity,
            &meta.id.to_string(),
            op,
            version,
            chrono::Utc::now().timestamp_millis(),
            changed_fields,
            self.mode,
            raw.get().to_owned(),
        );
        let payload = crate::codec::change_event().encode(&event)?;
        // Each change is its own trace, sampled here once (the page's context becomes a link).
        let (tp, _spans) = crate::kafka::trace::source_change(
            Some(tp),
            self.crm,
            &self.entity,
            &event.record_id,
            version,
            &self.topic,
        );
        let headers = inject(OwnedHeaders::new(), &tp);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deleted_flag_accepts_bullhorn_spellings() {
        for (json, deleted) in [
            (r#"{"id":1,"isDeleted":true}"#, true),
            (r#"{"id":1,"isDeleted":1}"#, true),
            (r#"{"id":1,"isDeleted":"true"}"#, true),
            (r#"{"id":1,"isDeleted":false}"#, false),
            (r#"{"id":1,"isDeleted":0}"#, false),
            (r#"{"id":1}"#, false),
        ] {
            let raw: Box<RawValue> = serde_json::from_str(json).unwrap();
            assert_eq!(
                RecordMeta::parse("Candidate", &raw).unwrap().deleted(),
                deleted,
                "{json}"
            );
        }
        let bad: Box<RawValue> = serde_json::from_str(r#"{"name":"x"}"#).unwrap();
        assert!(RecordMeta::parse("Candidate", &bad).is_err());
    }
}
