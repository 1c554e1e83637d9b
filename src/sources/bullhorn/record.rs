//! What the Bullhorn source reads from a record's JSON to build its event: `id` (a number),
//! `dateLastModified` (the version, epoch ms) and `isDeleted` (the op); and the mapping of the
//! client's errors into [`SourceError`].

use crmflow_bullhorn::client::ClientError;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::SOURCE;
use crate::kafka::trace::TraceParent;
use crate::kafka::Delivery;
use crate::model::Op;
use crate::sources::emit::{Emitter, Record};
use crate::sources::SourceError;

impl From<ClientError> for SourceError {
    fn from(e: ClientError) -> Self {
        let retriable = e.is_retriable();
        SourceError::client(SOURCE, retriable, e)
    }
}

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

/// Emits one Bullhorn record version. `op`: forced operation (an event said DELETED), else derived
/// from `isDeleted`. `version`: used when the record has no `dateLastModified` (a hard delete known
/// only from its event).
pub async fn emit(
    emitter: &Emitter,
    raw: &RawValue,
    meta: &RecordMeta,
    op: Option<Op>,
    version: Option<i64>,
    changed_fields: Vec<String>,
    tp: &TraceParent,
) -> Result<Option<Delivery>, SourceError> {
    let version = meta
        .date_last_modified
        .or(version)
        .ok_or_else(|| SourceError::BadRecord {
            entity: emitter.entity().to_owned(),
            what: "dateLastModified",
            record: raw.get().chars().take(200).collect(),
        })?;
    let op = op.unwrap_or(if meta.deleted() {
        Op::Delete
    } else {
        Op::Upsert
    });
    let id = meta.id.to_string();
    emitter
        .emit(
            Record {
                id: &id,
                version,
                op,
                raw,
            },
            changed_fields,
            tp,
        )
        .await
}

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
