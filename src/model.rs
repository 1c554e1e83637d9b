//! The pipeline's event model: the raw [`ChangeEvent`] a source emits and the canonical
//! [`Candidate`] / [`Position`] records the normalize stage derives from it.
//!
//! Field names and types mirror the Avro schemas in `schemas/` one to one, so the serde
//! derives here are the only mapping between Rust and the wire; `codec` checks both agree.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What happened to a CRM record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Op {
    /// Created or changed: the record carries its current state.
    #[serde(rename = "UPSERT")]
    Upsert,
    /// Deleted in the CRM (hard or soft): downstream keeps a tombstone with this version.
    #[serde(rename = "DELETE")]
    Delete,
}

/// One observed change of one CRM record (`schemas/change_event.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeEvent {
    /// Deterministic id, see [`event_id`]: the same change observed twice has the same id.
    pub event_id: String,
    /// Source system, e.g. `bullhorn`.
    pub crm: String,
    /// The CRM's entity name, e.g. `Candidate`.
    pub entity: String,
    /// The CRM's record id, as text.
    pub record_id: String,
    /// Upsert or delete.
    pub op: Op,
    /// Record version in epoch milliseconds (Bullhorn `dateLastModified`).
    pub source_version: i64,
    /// When the source read the record, epoch milliseconds.
    pub observed_at: i64,
    /// Fields the CRM reported as changed (Bullhorn `updatedProperties`); empty when unknown.
    #[serde(default)]
    pub changed_fields: Vec<String>,
    /// How the source found the change: `poll`, `events` or `webhook`.
    #[serde(default = "default_source_mode")]
    pub source_mode: String,
    /// The CRM's JSON exactly as received.
    pub record: String,
}

fn default_source_mode() -> String {
    "poll".to_owned()
}

impl ChangeEvent {
    /// Builds an event and derives its deterministic `event_id`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        crm: &str,
        entity: &str,
        record_id: &str,
        op: Op,
        source_version: i64,
        observed_at: i64,
        changed_fields: Vec<String>,
        source_mode: &str,
        record: String,
    ) -> Self {
        Self {
            event_id: event_id(crm, entity, record_id, source_version, op),
            crm: crm.to_owned(),
            entity: entity.to_owned(),
            record_id: record_id.to_owned(),
            op,
            source_version,
            observed_at,
            changed_fields,
            source_mode: source_mode.to_owned(),
            record,
        }
    }
}

/// Deterministic event id: the first 32 hex characters of SHA-256 over the fields that identify
/// one version of one record. Observing the same version again (an overlapping poll, an event
/// re-get, a replay) yields the same id, which is what lets downstream de-duplicate.
pub fn event_id(crm: &str, entity: &str, record_id: &str, source_version: i64, op: Op) -> String {
    let mut h = Sha256::new();
    for part in [crm, entity, record_id] {
        h.update(part.as_bytes());
        h.update([0x1f]);
    }
    h.update(source_version.to_be_bytes());
    h.update(match op {
        Op::Upsert => b"U",
        Op::Delete => b"D",
    });
    let digest = h.finalize();
    hex::encode(&digest[..16])
}

/// Where a canonical record came from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    pub crm: String,
    pub crm_id: String,
    pub source_version: i64,
    pub event_id: String,
    pub raw_topic: String,
    pub raw_partition: i32,
    pub raw_offset: i64,
    pub trace_id: Option<String>,
}

/// A postal address, every part optional (CRMs hold partial addresses).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Address {
    pub line1: Option<String>,
    pub line2: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub zip: Option<String>,
    /// ISO 3166-1 alpha-2.
    pub country_code: Option<String>,
}

/// A point in time held by a `date` attribute (the Avro record `AttributeDate`: a union cannot
/// hold two `long`s, so the date is wrapped to keep its type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeDate {
    /// Epoch milliseconds, UTC.
    pub epoch_ms: i64,
}

/// One typed value of a mapped custom field (the union of `attributes` in the Avro schemas).
/// Serialized untagged (each variant as its own Avro/JSON type, which is how the Avro writer
/// picks the union branch); read by the type the data holds (see the `Deserialize` impl).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum AttributeValue {
    Boolean(bool),
    Long(i64),
    Double(f64),
    String(String),
    List(Vec<String>),
    Date(AttributeDate),
}

impl AttributeValue {
    /// The value in `attributes` jsonb: a date as RFC 3339 UTC text (milliseconds), the rest as
    /// JSON's own types.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            AttributeValue::Boolean(b) => Value::Bool(*b),
            AttributeValue::Long(n) => Value::from(*n),
            AttributeValue::Double(n) => Value::from(*n),
            AttributeValue::String(s) => Value::String(s.clone()),
            AttributeValue::List(items) => Value::from(items.clone()),
            AttributeValue::Date(d) => match chrono::DateTime::from_timestamp_millis(d.epoch_ms) {
                Some(t) => Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
                None => Value::from(d.epoch_ms),
            },
        }
    }

    /// The value as text in an embedding template: what PostgreSQL's `attributes->>'name'`
    /// gives for [`Self::to_json`] (a list joined with ", "), so the stage and
    /// `crmflow embed backfill` render the same text. `None` for an empty list.
    pub fn to_text(&self) -> Option<String> {
        match self {
            AttributeValue::String(s) => Some(s.clone()),
            AttributeValue::List(items) => (!items.is_empty()).then(|| items.join(", ")),
            other => match other.to_json() {
                serde_json::Value::String(s) => Some(s),
                v => Some(v.to_string()),
            },
        }
    }
}

/// Reads the value by the type the data holds, in one pass: serde's untagged reading would
/// buffer each value and try the variants in turn, building an error per miss, which tripled the
/// cost of decoding a record with attributes.
impl<'de> Deserialize<'de> for AttributeValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{self, MapAccess, SeqAccess, Visitor};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AttributeValue;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a boolean, long, double, string, list of strings or date")
            }
            fn visit_bool<E>(self, v: bool) -> Result<AttributeValue, E> {
                Ok(AttributeValue::Boolean(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<AttributeValue, E> {
                Ok(AttributeValue::Long(v))
            }
            fn visit_i32<E>(self, v: i32) -> Result<AttributeValue, E> {
                Ok(AttributeValue::Long(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<AttributeValue, E> {
                i64::try_from(v)
                    .map(AttributeValue::Long)
                    .map_err(|_| E::custom("long out of range"))
            }
            fn visit_f64<E>(self, v: f64) -> Result<AttributeValue, E> {
                Ok(AttributeValue::Double(v))
            }
            fn visit_f32<E>(self, v: f32) -> Result<AttributeValue, E> {
                Ok(AttributeValue::Double(v.into()))
            }
            fn visit_str<E>(self, v: &str) -> Result<AttributeValue, E> {
                Ok(AttributeValue::String(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<AttributeValue, E> {
                Ok(AttributeValue::String(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AttributeValue, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(s) = seq.next_element::<String>()? {
                    items.push(s);
                }
                Ok(AttributeValue::List(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AttributeValue, A::Error> {
                let mut epoch_ms = None;
                while let Some(k) = map.next_key::<String>()? {
                    if k == "epoch_ms" {
                        epoch_ms = Some(map.next_value::<i64>()?);
                    } else {
                        map.next_value::<de::IgnoredAny>()?;
                    }
                }
                epoch_ms
                    .map(|epoch_ms| AttributeValue::Date(AttributeDate { epoch_ms }))
                    .ok_or_else(|| de::Error::missing_field("epoch_ms"))
            }
        }
        d.deserialize_any(V)
    }
}

/// Mapped custom fields by attribute name (`[mapping.<crm>.<entity>]`); ordered, so the same
/// record always encodes to the same bytes.
pub type Attributes = BTreeMap<String, AttributeValue>;

/// A person who may fill a position (`schemas/candidate.avsc`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub crm: String,
    pub crm_id: String,
    /// Epoch ms; only a newer version may replace a stored row.
    pub source_version: i64,
    /// A tombstone: the record was deleted at `source_version`.
    pub deleted: bool,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub mobile: Option<String>,
    pub address: Option<Address>,
    pub status: Option<String>,
    pub occupation: Option<String>,
    pub company_name: Option<String>,
    pub skills: Vec<String>,
    pub summary: Option<String>,
    pub date_available: Option<i64>,
    pub owner_id: Option<String>,
    pub owner_name: Option<String>,
    pub date_added: Option<i64>,
    pub lineage: Lineage,
    /// Mapped custom fields (`[mapping]`); empty when none is mapped. Absent in data written
    /// before schema version 2, which reads as empty.
    #[serde(default)]
    pub attributes: Attributes,
}

/// A job to fill (`schemas/position.avsc`); Bullhorn calls it JobOrder.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Position {
    pub crm: String,
    pub crm_id: String,
    /// Epoch ms; only a newer version may replace a stored row.
    pub source_version: i64,
    /// A tombstone: the record was deleted at `source_version`.
    pub deleted: bool,
    pub title: Option<String>,
    pub description: Option<String>,
    pub status: Option<String>,
    pub is_open: Option<bool>,
    pub employment_type: Option<String>,
    pub salary: Option<f64>,
    pub salary_unit: Option<String>,
    pub pay_rate: Option<f64>,
    pub num_openings: Option<i32>,
    pub start_date: Option<i64>,
    pub skills: Vec<String>,
    pub address: Option<Address>,
    pub client_corporation_id: Option<String>,
    pub client_corporation_name: Option<String>,
    pub owner_id: Option<String>,
    pub owner_name: Option<String>,
    pub date_added: Option<i64>,
    pub lineage: Lineage,
    /// Mapped custom fields (`[mapping]`); empty when none is mapped. Absent in data written
    /// before schema version 2, which reads as empty.
    #[serde(default)]
    pub attributes: Attributes,
}

/// The key of a canonical record on its topic and in logs: `"<crm>:<crm_id>"`.
pub fn canonical_key(crm: &str, crm_id: &str) -> String {
    format!("{crm}:{crm_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_id_is_deterministic_and_distinguishes_versions() {
        let a = event_id("bullhorn", "Candidate", "42", 1_700_000_000_000, Op::Upsert);
        assert_eq!(
            a,
            event_id("bullhorn", "Candidate", "42", 1_700_000_000_000, Op::Upsert)
        );
        assert_eq!(a.len(), 32);
        assert_ne!(
            a,
            event_id("bullhorn", "Candidate", "42", 1_700_000_000_001, Op::Upsert)
        );
        assert_ne!(
            a,
            event_id("bullhorn", "Candidate", "42", 1_700_000_000_000, Op::Delete)
        );
        assert_ne!(
            a,
            event_id("bullhorn", "JobOrder", "42", 1_700_000_000_000, Op::Upsert)
        );
        // Field boundaries matter: ("a","bc") and ("ab","c") must differ.
        assert_ne!(
            event_id("a", "bc", "1", 1, Op::Upsert),
            event_id("ab", "c", "1", 1, Op::Upsert)
        );
    }
}
