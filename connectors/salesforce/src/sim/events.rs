//! The change-event bus behind the Pub/Sub API: every write becomes Avro-encoded change events (one per
//! record, sharing a transaction key, numbered by `sequenceNumber`), stored with increasing replay ids and
//! kept for the retention window. Subscribers wait on a watch channel that carries the tip's replay id.
//!
//! `changedFields`, `nulledFields` and `diffFields` are bitmaps, as the Pub/Sub API sends them: `0x` + the
//! hexadecimal of a number whose bit `i` stands for the `i`-th top-level field of the event schema.
//! Gap faults turn the next changes into `GAP_*` events (header only); an overflow fault emits one
//! `GAP_OVERFLOW` event whose `recordIds` is the key prefix with `*`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use apache_avro::types::Value as Avro;
use apache_avro::Schema;
use base64::Engine;
use serde_json::Value;
use tokio::sync::watch;

use super::schema::{FieldType, ObjectDef};
use super::store::{Change, ChangeKind};
use crate::wire::parse_datetime;

/// A stored event.
#[derive(Debug)]
pub struct StoredEvent {
    /// Position in the stream.
    pub replay: u64,
    /// Object index.
    pub object: usize,
    /// Commit time, epoch ms.
    pub at_ms: i64,
    /// Event uuid.
    pub id: String,
    /// Schema id of `payload`.
    pub schema_id: String,
    /// Avro binary datum.
    pub payload: Vec<u8>,
}

/// One object's change-event schema.
#[derive(Debug)]
pub struct EventSchema {
    /// Schema id (base64url of the Rabin fingerprint).
    pub id: String,
    /// Parsed schema.
    pub schema: Schema,
    /// Schema JSON as `GetSchema` returns it.
    pub json: String,
    /// Top-level field names in order (index 0 is `ChangeEventHeader`).
    pub field_names: Vec<String>,
}

/// Faults that shape the next events.
#[derive(Debug, Default, Clone, Copy)]
pub struct EventFaults {
    /// The next this-many changes become `GAP_*` events.
    pub gap_next: u32,
    /// The next this-many writes emit one `GAP_OVERFLOW` event instead of their events.
    pub overflow_next: u32,
}

/// The bus.
pub struct EventBus {
    events: VecDeque<Arc<StoredEvent>>,
    next_replay: u64,
    retention_ms: i64,
    tip: watch::Sender<u64>,
    /// Schema per object index.
    pub schemas: Vec<Arc<EventSchema>>,
    by_id: HashMap<String, Arc<EventSchema>>,
    commit_number: i64,
    /// Pending faults.
    pub faults: EventFaults,
    /// Events published so far.
    pub published: u64,
    /// Events purged by retention.
    pub purged: u64,
    /// Highest replay id purged (0: none): a replay id up to it is past the retention window.
    pub purged_through: u64,
    user_id: String,
}

/// Replay ids on the wire: 8 bytes, big-endian (opaque to clients).
pub fn encode_replay(r: u64) -> Vec<u8> {
    r.to_be_bytes().to_vec()
}

/// The replay id in `bytes`, if it has the simulator's shape.
pub fn decode_replay(bytes: &[u8]) -> Option<u64> {
    let a: [u8; 8] = bytes.try_into().ok()?;
    Some(u64::from_be_bytes(a))
}

fn bitmap(indexes: &[usize]) -> String {
    let max = indexes.iter().copied().max().unwrap_or(0);
    let mut nibbles = vec![0u8; max / 4 + 1];
    for &i in indexes {
        nibbles[i / 4] |= 1 << (i % 4);
    }
    if nibbles.len() % 2 == 1 {
        nibbles.push(0);
    }
    let hex: String = nibbles
        .iter()
        .rev()
        .map(|n| {
            char::from_digit(u32::from(*n), 16)
                .unwrap_or('0')
                .to_ascii_uppercase()
        })
        .collect();
    format!("0x{hex}")
}

impl EventBus {
    /// A bus for `defs` keeping events `retention_secs`.
    pub fn new(defs: &[ObjectDef], retention_secs: u64, user_id: String) -> Result<Self, String> {
        let mut schemas = Vec::new();
        let mut by_id = HashMap::new();
        for d in defs {
            let v = d.avro_schema();
            let schema = Schema::parse(&v).map_err(|e| e.to_string())?;
            let fp = schema.fingerprint::<apache_avro::rabin::Rabin>();
            let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&fp.bytes);
            let field_names = v["fields"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|f| f["name"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let s = Arc::new(EventSchema {
                id: id.clone(),
                schema,
                json: v.to_string(),
                field_names,
            });
            by_id.insert(id, s.clone());
            schemas.push(s);
        }
        Ok(Self {
            events: VecDeque::new(),
            next_replay: 1,
            retention_ms: (retention_secs as i64).saturating_mul(1000),
            tip: watch::channel(0).0,
            schemas,
            by_id,
            commit_number: 1_000_000,
            faults: EventFaults::default(),
            published: 0,
            purged: 0,
            purged_through: 0,
            user_id,
        })
    }

    /// A schema by id.
    pub fn schema(&self, id: &str) -> Option<Arc<EventSchema>> {
        self.by_id.get(id).cloned()
    }

    /// Watches the tip's replay id.
    pub fn subscribe_tip(&self) -> watch::Receiver<u64> {
        self.tip.subscribe()
    }

    /// Replay id of the newest event (0: none yet).
    pub fn tip(&self) -> u64 {
        self.next_replay - 1
    }

    /// Replay id of the oldest retained event, if any.
    pub fn earliest(&self) -> Option<u64> {
        self.events.front().map(|e| e.replay)
    }

    /// Where an EARLIEST subscription starts after: the last purged replay id.
    pub fn earliest_start(&self) -> u64 {
        self.purged_through
    }

    /// Whether a CUSTOM subscription may start after `replay`: its event must still be retained (or be the
    /// tip of an empty bus that never purged anything).
    pub fn valid_start(&self, replay: u64) -> bool {
        replay > self.purged_through && replay <= self.tip()
            || (replay == 0 && self.purged_through == 0)
    }

    /// Events with replay id greater than `after` (at most `max`), for object `filter` (`None` = all).
    pub fn after(&self, after: u64, max: usize, filter: Option<usize>) -> Vec<Arc<StoredEvent>> {
        let Some(first) = self.earliest() else {
            return Vec::new();
        };
        let start = after.saturating_add(1).saturating_sub(first) as usize;
        self.events
            .iter()
            .skip(start)
            .filter(|e| filter.is_none_or(|o| o == e.object))
            .take(max)
            .cloned()
            .collect()
    }

    /// Drops events older than the retention window (relative to `now_ms`).
    pub fn purge_expired(&mut self, now_ms: i64) {
        while self
            .events
            .front()
            .is_some_and(|e| e.at_ms < now_ms - self.retention_ms)
        {
            if let Some(e) = self.events.pop_front() {
                self.purged_through = e.replay;
            }
            self.purged += 1;
        }
    }

    /// Drops every stored event (as if the retention window had passed).
    pub fn purge_all(&mut self) {
        self.purged += self.events.len() as u64;
        if let Some(e) = self.events.back() {
            self.purged_through = e.replay;
        }
        self.events.clear();
    }

    /// Publishes the events of one write (one transaction).
    pub fn publish(&mut self, defs: &[ObjectDef], changes: &[Change], now_ms: i64) {
        if changes.is_empty() {
            return;
        }
        self.purge_expired(now_ms);
        self.commit_number += 1;
        let tx = uuid::Uuid::new_v4().to_string();
        if self.faults.overflow_next > 0 {
            self.faults.overflow_next -= 1;
            let c = &changes[0];
            let ids = vec![format!("{}*", defs[c.object].key_prefix)];
            self.push(defs, c, "GAP_OVERFLOW", ids, &tx, 1, true);
        } else {
            for (seq, c) in changes.iter().enumerate() {
                let kind = match c.kind {
                    ChangeKind::Create => "CREATE",
                    ChangeKind::Update => "UPDATE",
                    ChangeKind::Delete => "DELETE",
                    ChangeKind::Undelete => "UNDELETE",
                };
                let gap = self.faults.gap_next > 0;
                let kind = if gap {
                    self.faults.gap_next -= 1;
                    format!("GAP_{kind}")
                } else {
                    kind.to_string()
                };
                self.push(defs, c, &kind, vec![c.id.clone()], &tx, seq as i32 + 1, gap);
            }
        }
        let _ = self.tip.send(self.tip());
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        defs: &[ObjectDef],
        c: &Change,
        change_type: &str,
        record_ids: Vec<String>,
        tx: &str,
        seq: i32,
        header_only: bool,
    ) {
        let def = &defs[c.object];
        let schema = self.schemas[c.object].clone();
        let index_of = |name: &str| schema.field_names.iter().position(|n| n == name);
        let changed: Vec<usize> = if header_only {
            Vec::new()
        } else {
            c.changed.iter().filter_map(|n| index_of(n)).collect()
        };
        let nulled: Vec<usize> = c.nulled.iter().filter_map(|n| index_of(n)).collect();
        let strings = |v: Vec<String>| Avro::Array(v.into_iter().map(Avro::String).collect());
        let symbols = [
            "CREATE",
            "UPDATE",
            "DELETE",
            "UNDELETE",
            "GAP_CREATE",
            "GAP_UPDATE",
            "GAP_DELETE",
            "GAP_UNDELETE",
            "GAP_OVERFLOW",
            "SNAPSHOT",
        ];
        let sym = symbols.iter().position(|s| *s == change_type).unwrap_or(0) as u32;
        let header = Avro::Record(vec![
            ("entityName".into(), Avro::String(def.name.clone())),
            ("recordIds".into(), strings(record_ids)),
            (
                "changeType".into(),
                Avro::Enum(sym, change_type.to_string()),
            ),
            (
                "changeOrigin".into(),
                Avro::String("com/salesforce/api/rest/62.0;client=crmflow-sim".into()),
            ),
            ("transactionKey".into(), Avro::String(tx.to_string())),
            ("sequenceNumber".into(), Avro::Int(seq)),
            ("commitTimestamp".into(), Avro::Long(c.at_ms)),
            ("commitNumber".into(), Avro::Long(self.commit_number)),
            ("commitUser".into(), Avro::String(self.user_id.clone())),
            (
                "nulledFields".into(),
                strings(if nulled.is_empty() || header_only {
                    vec![]
                } else {
                    vec![bitmap(&nulled)]
                }),
            ),
            ("diffFields".into(), strings(vec![])),
            (
                "changedFields".into(),
                strings(if changed.is_empty() || c.kind != ChangeKind::Update {
                    vec![]
                } else {
                    vec![bitmap(&changed)]
                }),
            ),
        ]);
        let mut fields = vec![("ChangeEventHeader".to_string(), header)];
        for fd in def.event_fields() {
            let v = if header_only {
                None
            } else {
                c.values.get(fd.name).filter(|v| !v.is_null())
            };
            let avro = match v.and_then(|v| to_avro(fd.ftype, v)) {
                Some(x) => Avro::Union(1, Box::new(x)),
                None => Avro::Union(0, Box::new(Avro::Null)),
            };
            fields.push((fd.name.to_string(), avro));
        }
        let payload = match apache_avro::to_avro_datum(&schema.schema, Avro::Record(fields)) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(%e, "cannot encode a change event");
                return;
            }
        };
        let replay = self.next_replay;
        self.next_replay += 1;
        self.published += 1;
        self.events.push_back(Arc::new(StoredEvent {
            replay,
            object: c.object,
            at_ms: c.at_ms,
            id: uuid::Uuid::new_v4().to_string(),
            schema_id: schema.id.clone(),
            payload,
        }));
    }
}

fn to_avro(t: FieldType, v: &Value) -> Option<Avro> {
    Some(match t {
        FieldType::DateTime => Avro::Long(parse_datetime(v.as_str()?)?.timestamp_millis()),
        FieldType::Date => {
            let d = chrono::NaiveDate::parse_from_str(v.as_str()?, "%Y-%m-%d").ok()?;
            let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?;
            Avro::Int((d - epoch).num_days() as i32)
        }
        FieldType::Boolean => Avro::Boolean(v.as_bool()?),
        FieldType::Double => Avro::Double(v.as_f64()?),
        _ => Avro::String(match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmaps() {
        assert_eq!(bitmap(&[1]), "0x02");
        assert_eq!(bitmap(&[1, 3]), "0x0A");
        assert_eq!(bitmap(&[0, 8]), "0x0101");
        assert_eq!(bitmap(&[4]), "0x10");
    }

    #[test]
    fn replay_ids_round_trip() {
        assert_eq!(decode_replay(&encode_replay(77)), Some(77));
        assert_eq!(decode_replay(b"short"), None);
    }
}
