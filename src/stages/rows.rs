//! How canonical records become table rows: the column list of `candidates` / `positions` and
//! one row's values, in one place so the COPY, the upsert and the tests agree.

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, TimeZone, Utc};
use serde::ser::{Serialize, SerializeMap, Serializer};
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};

use crate::model::{Address, Attributes, Candidate, Position};

/// The `attributes` column: the record's attributes as a jsonb object (see
/// [`crate::model::AttributeValue::to_json`]), written straight into the COPY buffer.
#[derive(Debug)]
pub struct AttributesJson<'a>(pub &'a Attributes);

impl Serialize for AttributesJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, &v.to_json())?;
        }
        m.end()
    }
}

impl ToSql for AttributesJson<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        if *ty == Type::JSONB {
            // jsonb's binary format: a version byte, then the text.
            out.put_u8(1);
        }
        serde_json::to_writer(out.writer(), self)?;
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB || *ty == Type::JSON
    }

    to_sql_checked!();
}

/// A canonical record that the sink writes as one row.
pub trait SinkRow: Send + Sync + 'static {
    /// Target table.
    const TABLE: &'static str;
    /// Columns and their Postgres types, in COPY order; the last two (`canonical_partition`,
    /// `canonical_offset`) come from the message, not from [`SinkRow::values`]. `crm`, `crm_id`, `source_version`
    /// come first.
    const COLUMNS: &'static [(&'static str, Type)];
    fn crm(&self) -> &str;
    fn crm_id(&self) -> &str;
    fn source_version(&self) -> i64;
    /// Values in `COLUMNS` order.
    fn values(&self) -> Vec<Box<dyn ToSql + Sync + Send + '_>>;
}

fn ts(ms: Option<i64>) -> Option<DateTime<Utc>> {
    ms.and_then(|ms| Utc.timestamp_millis_opt(ms).single())
}

fn addr(a: &Option<Address>) -> [Option<&str>; 6] {
    match a {
        Some(a) => [
            a.line1.as_deref(),
            a.line2.as_deref(),
            a.city.as_deref(),
            a.state.as_deref(),
            a.zip.as_deref(),
            a.country_code.as_deref(),
        ],
        None => [None; 6],
    }
}

/// Deletes keep the row with `deleted_at` at the delete's version, so a replay reproduces the
/// same value.
fn deleted_at(deleted: bool, version: i64) -> Option<DateTime<Utc>> {
    if deleted {
        ts(Some(version))
    } else {
        None
    }
}

macro_rules! boxed {
    ($($v:expr),* $(,)?) => { vec![$(Box::new($v) as Box<dyn ToSql + Sync + Send + '_>),*] };
}

impl SinkRow for Candidate {
    const TABLE: &'static str = "candidates";
    const COLUMNS: &'static [(&'static str, Type)] = &[
        ("crm", Type::TEXT),
        ("crm_id", Type::TEXT),
        ("source_version", Type::INT8),
        ("deleted_at", Type::TIMESTAMPTZ),
        ("first_name", Type::TEXT),
        ("last_name", Type::TEXT),
        ("email", Type::TEXT),
        ("phone", Type::TEXT),
        ("mobile", Type::TEXT),
        ("address_line1", Type::TEXT),
        ("address_line2", Type::TEXT),
        ("city", Type::TEXT),
        ("state", Type::TEXT),
        ("zip", Type::TEXT),
        ("country_code", Type::TEXT),
        ("status", Type::TEXT),
        ("occupation", Type::TEXT),
        ("company_name", Type::TEXT),
        ("skills", Type::TEXT_ARRAY),
        ("summary", Type::TEXT),
        ("date_available", Type::TIMESTAMPTZ),
        ("owner_id", Type::TEXT),
        ("owner_name", Type::TEXT),
        ("date_added", Type::TIMESTAMPTZ),
        ("attributes", Type::JSONB),
        ("event_id", Type::TEXT),
        ("raw_topic", Type::TEXT),
        ("raw_partition", Type::INT4),
        ("raw_offset", Type::INT8),
        ("trace_id", Type::TEXT),
        // Not from the record: the canonical message's position, appended by the sink.
        ("canonical_partition", Type::INT4),
        ("canonical_offset", Type::INT8),
    ];
    fn crm(&self) -> &str {
        &self.crm
    }
    fn crm_id(&self) -> &str {
        &self.crm_id
    }
    fn source_version(&self) -> i64 {
        self.source_version
    }
    fn values(&self) -> Vec<Box<dyn ToSql + Sync + Send + '_>> {
        let [l1, l2, city, state, zip, cc] = addr(&self.address);
        let l = &self.lineage;
        boxed![
            self.crm.as_str(),
            self.crm_id.as_str(),
            self.source_version,
            deleted_at(self.deleted, self.source_version),
            self.first_name.as_deref(),
            self.last_name.as_deref(),
            self.email.as_deref(),
            self.phone.as_deref(),
            self.mobile.as_deref(),
            l1,
            l2,
            city,
            state,
            zip,
            cc,
            self.status.as_deref(),
            self.occupation.as_deref(),
            self.company_name.as_deref(),
            &self.skills,
            self.summary.as_deref(),
            ts(self.date_available),
            self.owner_id.as_deref(),
            self.owner_name.as_deref(),
            ts(self.date_added),
            AttributesJson(&self.attributes),
            l.event_id.as_str(),
            l.raw_topic.as_str(),
            l.raw_partition,
            l.raw_offset,
            l.trace_id.as_deref(),
        ]
    }
}

impl SinkRow for Position {
    const TABLE: &'static str = "positions";
    const COLUMNS: &'static [(&'static str, Type)] = &[
        ("crm", Type::TEXT),
        ("crm_id", Type::TEXT),
        ("source_version", Type::INT8),
        ("deleted_at", Type::TIMESTAMPTZ),
        ("title", Type::TEXT),
        ("description", Type::TEXT),
        ("status", Type::TEXT),
        ("is_open", Type::BOOL),
        ("employment_type", Type::TEXT),
        ("salary", Type::FLOAT8),
        ("salary_unit", Type::TEXT),
        ("pay_rate", Type::FLOAT8),
        ("num_openings", Type::INT4),
        ("start_date", Type::TIMESTAMPTZ),
        ("skills", Type::TEXT_ARRAY),
        ("address_line1", Type::TEXT),
        ("address_line2", Type::TEXT),
        ("city", Type::TEXT),
        ("state", Type::TEXT),
        ("zip", Type::TEXT),
        ("country_code", Type::TEXT),
        ("client_corporation_id", Type::TEXT),
        ("client_corporation_name", Type::TEXT),
        ("owner_id", Type::TEXT),
        ("owner_name", Type::TEXT),
        ("date_added", Type::TIMESTAMPTZ),
        ("attributes", Type::JSONB),
        ("event_id", Type::TEXT),
        ("raw_topic", Type::TEXT),
        ("raw_partition", Type::INT4),
        ("raw_offset", Type::INT8),
        ("trace_id", Type::TEXT),
        // Not from the record: the canonical message's position, appended by the sink.
        ("canonical_partition", Type::INT4),
        ("canonical_offset", Type::INT8),
    ];
    fn crm(&self) -> &str {
        &self.crm
    }
    fn crm_id(&self) -> &str {
        &self.crm_id
    }
    fn source_version(&self) -> i64 {
        self.source_version
    }
    fn values(&self) -> Vec<Box<dyn ToSql + Sync + Send + '_>> {
        let [l1, l2, city, state, zip, cc] = addr(&self.address);
        let l = &self.lineage;
        boxed![
            self.crm.as_str(),
            self.crm_id.as_str(),
            self.source_version,
            deleted_at(self.deleted, self.source_version),
            self.title.as_deref(),
            self.description.as_deref(),
            self.status.as_deref(),
            self.is_open,
            self.employment_type.as_deref(),
            self.salary,
            self.salary_unit.as_deref(),
            self.pay_rate,
            self.num_openings,
            ts(self.start_date),
            &self.skills,
            l1,
            l2,
            city,
            state,
            zip,
            cc,
            self.client_corporation_id.as_deref(),
            self.client_corporation_name.as_deref(),
            self.owner_id.as_deref(),
            self.owner_name.as_deref(),
            ts(self.date_added),
            AttributesJson(&self.attributes),
            l.event_id.as_str(),
            l.raw_topic.as_str(),
            l.raw_partition,
            l.raw_offset,
            l.trace_id.as_deref(),
        ]
    }
}

/// The upsert from the staging table: only a newer source version replaces a row.
pub fn upsert_sql<R: SinkRow>(staging: &str) -> String {
    let cols: Vec<&str> = R::COLUMNS.iter().map(|(c, _)| *c).collect();
    let updates: Vec<String> = cols
        .iter()
        .skip(2)
        .map(|c| format!("{c} = EXCLUDED.{c}"))
        .collect();
    format!(
        "INSERT INTO {table} ({cols}) SELECT {cols} FROM {staging} \
         ON CONFLICT (crm, crm_id) DO UPDATE SET {updates}, written_at = now() \
         WHERE {table}.source_version < EXCLUDED.source_version",
        table = R::TABLE,
        cols = cols.join(", "),
        updates = updates.join(", "),
    )
}

/// `COPY <staging> (...) FROM STDIN BINARY`.
pub fn copy_sql<R: SinkRow>(staging: &str) -> String {
    let cols: Vec<&str> = R::COLUMNS.iter().map(|(c, _)| *c).collect();
    format!("COPY {staging} ({}) FROM STDIN BINARY", cols.join(", "))
}

/// Column types in COPY order.
pub fn types<R: SinkRow>() -> Vec<Type> {
    R::COLUMNS.iter().map(|(_, t)| t.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_has_version_guard_and_every_column() {
        let sql = upsert_sql::<Candidate>("s");
        assert!(sql.contains("WHERE candidates.source_version < EXCLUDED.source_version"));
        for (c, _) in Candidate::COLUMNS.iter().skip(2) {
            assert!(sql.contains(&format!("{c} = EXCLUDED.{c}")), "{c}");
        }
        assert!(!sql.contains("crm_id = EXCLUDED"), "the key is not updated");
        assert_eq!(
            upsert_sql::<Position>("s").matches("EXCLUDED.").count(),
            Position::COLUMNS.len() - 2 + 1
        );
    }
}
