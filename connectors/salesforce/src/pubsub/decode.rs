//! Avro change events to Rust: the `ChangeEventHeader` as a struct, the record fields as JSON, and the
//! bitmap field lists (`0x..` hexadecimal, bit `i` = the `i`-th top-level schema field) as field names.
//!
//! A payload is outside bytes: before apache_avro decodes it (allocating whatever its length prefixes
//! and block counts claim, recursing as deep as it nests), [`crmflow_avro_bounds`] checks every length
//! and count against the bytes left and the nesting against a limit; a payload that fails is a
//! [`PubSubError::Decode`] naming why.

use apache_avro::types::Value as Avro;
use apache_avro::Schema;
use base64::Engine;
use crmflow_avro_bounds::BoundedSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::PubSubError;

/// The header of a change event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeEventHeader {
    /// Object name, e.g. `Contact`.
    pub entity_name: String,
    /// Records the change applies to (`003*`-style wildcards for overflow).
    pub record_ids: Vec<String>,
    /// `CREATE`, `UPDATE`, `DELETE`, `UNDELETE`, `GAP_CREATE`, ..., `GAP_OVERFLOW`.
    pub change_type: String,
    /// Who made the change, e.g. `com/salesforce/api/rest/62.0;client=x`.
    pub change_origin: String,
    /// Transaction id shared by the events of one transaction.
    pub transaction_key: String,
    /// Order within the transaction.
    pub sequence_number: i32,
    /// Commit time, epoch ms.
    pub commit_timestamp: i64,
    /// Commit sequence number in the org.
    pub commit_number: i64,
    /// User id.
    pub commit_user: String,
    /// Fields set to null (names).
    pub nulled_fields: Vec<String>,
    /// Fields sent as diffs (names).
    pub diff_fields: Vec<String>,
    /// Fields changed (names).
    pub changed_fields: Vec<String>,
}

impl ChangeEventHeader {
    /// Whether this is a gap event (`GAP_*`, `GAP_OVERFLOW`): the changes are not in the stream and the
    /// records must be read again.
    pub fn is_gap(&self) -> bool {
        self.change_type.starts_with("GAP_")
    }
}

/// Field names a bitmap entry stands for (`names`: the top-level schema fields in order). Entries that are
/// already names are kept; nested-field bitmaps (`3-0x..`) name their parent field.
pub fn decode_bitmap(entry: &str, names: &[String]) -> Vec<String> {
    let (parent, hex) = match entry.split_once("-0x") {
        Some((p, h)) => (p.parse::<usize>().ok(), h),
        None => match entry.strip_prefix("0x") {
            Some(h) => (None, h),
            None => return vec![entry.to_string()],
        },
    };
    if let Some(p) = parent {
        return names.get(p).cloned().into_iter().collect();
    }
    let mut out = Vec::new();
    for (pos, c) in hex.chars().rev().enumerate() {
        let Some(d) = c.to_digit(16) else { continue };
        for bit in 0..4 {
            if d & (1 << bit) != 0 {
                if let Some(n) = names.get(pos * 4 + bit) {
                    out.push(n.clone());
                }
            }
        }
    }
    out
}

/// JSON for an Avro value (unions unwrapped, enums as their symbol, bytes as base64).
pub fn to_json(v: &Avro) -> Value {
    match v {
        Avro::Null => Value::Null,
        Avro::Boolean(b) => Value::Bool(*b),
        Avro::Int(i) | Avro::Date(i) | Avro::TimeMillis(i) => Value::from(*i),
        Avro::Long(l)
        | Avro::TimestampMillis(l)
        | Avro::TimestampMicros(l)
        | Avro::TimeMicros(l) => Value::from(*l),
        Avro::Float(f) => Value::from(f64::from(*f)),
        Avro::Double(d) => Value::from(*d),
        Avro::String(s) | Avro::Enum(_, s) => Value::String(s.clone()),
        Avro::Bytes(b) | Avro::Fixed(_, b) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        Avro::Union(_, inner) => to_json(inner),
        Avro::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        Avro::Map(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()),
        Avro::Record(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect(),
        ),
        other => Value::String(format!("{other:?}")),
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Decodes one payload with its writer schema (bounds-checked first).
pub fn decode(
    bounded: &BoundedSchema,
    payload: &[u8],
) -> Result<(ChangeEventHeader, Map<String, Value>), PubSubError> {
    let schema: &Schema = bounded.schema();
    let names: Vec<String> = match schema {
        Schema::Record(r) => r.fields.iter().map(|f| f.name.clone()).collect(),
        _ => return Err(PubSubError::Decode("event schema is not a record".into())),
    };
    bounded
        .check(payload)
        .map_err(|e| PubSubError::Decode(format!("payload refused before decoding: {e}")))?;
    let value = apache_avro::from_avro_datum(schema, &mut &payload[..], None)
        .map_err(|e| PubSubError::Decode(e.to_string()))?;
    let Value::Object(mut obj) = to_json(&value) else {
        return Err(PubSubError::Decode("event is not a record".into()));
    };
    let h = obj
        .remove("ChangeEventHeader")
        .ok_or_else(|| PubSubError::Decode("no ChangeEventHeader".into()))?;
    let list = |k: &str| -> Vec<String> {
        strings(&h[k])
            .iter()
            .flat_map(|e| decode_bitmap(e, &names))
            .collect()
    };
    let header = ChangeEventHeader {
        entity_name: h["entityName"].as_str().unwrap_or_default().to_string(),
        record_ids: strings(&h["recordIds"]),
        change_type: h["changeType"].as_str().unwrap_or_default().to_string(),
        change_origin: h["changeOrigin"].as_str().unwrap_or_default().to_string(),
        transaction_key: h["transactionKey"].as_str().unwrap_or_default().to_string(),
        sequence_number: h["sequenceNumber"].as_i64().unwrap_or_default() as i32,
        commit_timestamp: h["commitTimestamp"].as_i64().unwrap_or_default(),
        commit_number: h["commitNumber"].as_i64().unwrap_or_default(),
        commit_user: h["commitUser"].as_str().unwrap_or_default().to_string(),
        nulled_fields: list("nulledFields"),
        diff_fields: list("diffFields"),
        changed_fields: list("changedFields"),
    };
    obj.retain(|_, v| !v.is_null());
    Ok((header, obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmaps_to_names() {
        let names: Vec<String> = ["ChangeEventHeader", "A", "B", "C", "D", "E", "F", "G", "H"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(decode_bitmap("0x0A", &names), vec!["A", "C"]);
        assert_eq!(
            decode_bitmap("0x0101", &names),
            vec!["ChangeEventHeader", "H"]
        );
        assert_eq!(decode_bitmap("Email", &names), vec!["Email"]);
        assert_eq!(decode_bitmap("3-0x01", &names), vec!["C"]);
        assert!(decode_bitmap("0xZZ", &names).is_empty());
    }
}
