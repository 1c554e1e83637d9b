//! A walk over an Avro binary datum that checks, before apache_avro decodes it, that every length
//! and every array or map block count fits in the bytes that are left, and that the datum does not
//! nest deeper than [`MAX_DEPTH`].
//!
//! apache_avro trusts lengths and counts up to its global `max_allocation_bytes` (512 MiB): a
//! string whose length prefix claims 500 MB allocates 500 MB zeroed before it finds the data
//! missing, and an array block claiming 500 million items reserves 500 million `Value`s (about
//! 24 GB), which aborts the process; a datum of a recursive schema may nest as deep as its bytes
//! allow, and decoding recurses once per level. A message is at most a few MiB and every item of
//! an array or map takes at least one byte in the schemas this is used with (a schema whose items
//! may take zero bytes — an array of `null` — is refused as a block "longer than the data"), so any
//! length or count beyond the bytes left is corrupt: [`check`] says so, with the reason, and the
//! caller refuses the datum instead of decoding it.
//!
//! The crate knows Avro and nothing else: crmflow's own topics (`crmflow::codec`) and the
//! Salesforce Pub/Sub API's event payloads (`crmflow_salesforce::pubsub`) both use it.
//!
//! ```
//! use crmflow_avro_bounds::BoundedSchema;
//! let schema = apache_avro::Schema::parse_str(r#"{"type":"record","name":"R","fields":[{"name":"s","type":"string"}]}"#).unwrap();
//! let bounded = BoundedSchema::new(schema).unwrap();
//! assert!(bounded.check(&[0x06, b'a', b'b', b'c']).is_ok());
//! // A length prefix claiming 500,000,000 bytes, and three bytes of data.
//! let err = bounded.check(&[0x80, 0xd0, 0xac, 0xf3, 0x03, b'a', b'b', b'c']).unwrap_err();
//! assert!(err.to_string().contains("runs past the end"), "{err}");
//! ```

use std::collections::HashMap;

use apache_avro::schema::{Name, Schema};

/// Named types of one schema, for `Ref`s.
pub type Names = HashMap<Name, Schema>;

/// Nesting deeper than this (records, arrays, maps, unions, named references) is refused.
pub const MAX_DEPTH: usize = 32;

/// Why a datum or a schema was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoundsError {
    /// The datum's bytes cannot be a datum of the schema (a length, count or nesting past what
    /// the bytes allow, a union branch that does not exist, truncated data).
    #[error("{0}")]
    Malformed(String),
    /// The schema's named types do not resolve.
    #[error("schema: {0}")]
    Schema(String),
}

impl BoundsError {
    /// Never: the same bytes are refused every time.
    pub fn is_retriable(&self) -> bool {
        false
    }
}

/// The named types of `schema`, owned.
pub fn names(schema: &Schema) -> Result<Names, BoundsError> {
    let resolved = apache_avro::schema::ResolvedSchema::try_from(schema)
        .map_err(|e| BoundsError::Schema(e.to_string()))?;
    Ok(resolved
        .get_names()
        .iter()
        .map(|(n, s)| (n.clone(), (*s).clone()))
        .collect())
}

/// Checks that `body` starts with one datum of `schema` whose lengths and counts all fit in it.
pub fn check(schema: &Schema, names: &Names, body: &[u8]) -> Result<(), BoundsError> {
    let mut d = Cursor(body);
    walk(schema, names, &mut d, 0).map_err(BoundsError::Malformed)
}

/// A schema with its named types resolved once, to check many datums against.
#[derive(Debug, Clone)]
pub struct BoundedSchema {
    schema: Schema,
    names: Names,
}

impl BoundedSchema {
    /// Resolves `schema`'s named types.
    pub fn new(schema: Schema) -> Result<Self, BoundsError> {
        let names = names(&schema)?;
        Ok(Self { schema, names })
    }

    /// The schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Its named types.
    pub fn names(&self) -> &Names {
        &self.names
    }

    /// [`check`] against this schema.
    pub fn check(&self, body: &[u8]) -> Result<(), BoundsError> {
        check(&self.schema, &self.names, body)
    }
}

impl std::ops::Deref for BoundedSchema {
    type Target = Schema;
    fn deref(&self) -> &Schema {
        &self.schema
    }
}

/// Reads one Avro `long` (a zig-zag varint of at most 10 bytes) off the front of `bytes`, which then
/// starts after it.
pub fn read_long(bytes: &mut &[u8]) -> Result<i64, String> {
    let mut acc: u64 = 0;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        acc |= u64::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            *bytes = &bytes[i + 1..];
            return Ok((acc >> 1) as i64 ^ -((acc & 1) as i64));
        }
    }
    Err(if bytes.len() < 10 {
        "unexpected end of data in a long".to_owned()
    } else {
        "long is longer than 10 bytes".to_owned()
    })
}

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn long(&mut self) -> Result<i64, String> {
        read_long(&mut self.0)
    }

    fn skip(&mut self, n: i64, what: &str) -> Result<(), String> {
        let n = usize::try_from(n).map_err(|_| format!("negative {what} length {n}"))?;
        if n > self.0.len() {
            return Err(format!(
                "{what} length {n} runs past the end of the data ({} bytes left)",
                self.0.len()
            ));
        }
        self.0 = &self.0[n..];
        Ok(())
    }

    /// A block count of an array or map: 0 ends it; negative ones are followed by a byte size.
    fn block(&mut self) -> Result<usize, String> {
        let mut count = self.long()?;
        if count < 0 {
            count = count.checked_neg().ok_or("block count overflows")?;
            let size = self.long()?;
            if size < 0 || size as u64 > self.0.len() as u64 {
                return Err(format!("block size {size} runs past the end of the data"));
            }
        }
        let count = count as u64;
        // Every item takes at least one byte here (see the module docs).
        if count > self.0.len() as u64 {
            return Err(format!(
                "block of {count} items but only {} bytes left",
                self.0.len()
            ));
        }
        Ok(count as usize)
    }
}

fn walk(schema: &Schema, names: &Names, d: &mut Cursor, depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("datum nests deeper than {MAX_DEPTH} levels"));
    }
    match schema {
        Schema::Null => Ok(()),
        Schema::Boolean => d.skip(1, "boolean"),
        Schema::Int
        | Schema::Long
        | Schema::Date
        | Schema::TimeMillis
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => d.long().map(drop),
        Schema::Float => d.skip(4, "float"),
        Schema::Double => d.skip(8, "double"),
        Schema::Duration => d.skip(12, "duration"),
        Schema::Bytes | Schema::String | Schema::Uuid | Schema::BigDecimal => {
            let n = d.long()?;
            d.skip(n, "string")
        }
        Schema::Decimal(dec) => walk(&dec.inner, names, d, depth + 1),
        Schema::Fixed(f) => d.skip(f.size as i64, "fixed"),
        Schema::Enum(_) => d.long().map(drop),
        Schema::Array(a) => loop {
            let n = d.block()?;
            if n == 0 {
                return Ok(());
            }
            for _ in 0..n {
                walk(&a.items, names, d, depth + 1)?;
            }
        },
        Schema::Map(m) => loop {
            let n = d.block()?;
            if n == 0 {
                return Ok(());
            }
            for _ in 0..n {
                let k = d.long()?;
                d.skip(k, "map key")?;
                walk(&m.types, names, d, depth + 1)?;
            }
        },
        Schema::Union(u) => {
            let i = d.long()?;
            let branch = usize::try_from(i)
                .ok()
                .and_then(|i| u.variants().get(i))
                .ok_or_else(|| format!("union has no branch {i}"))?;
            walk(branch, names, d, depth + 1)
        }
        Schema::Record(r) => {
            for f in &r.fields {
                walk(&f.schema, names, d, depth + 1)?;
            }
            Ok(())
        }
        Schema::Ref { name } => {
            let s = names
                .get(name)
                .ok_or_else(|| format!("unknown named type {name}"))?;
            walk(s, names, d, depth + 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn zigzag(n: i64) -> Vec<u8> {
        let mut v = ((n << 1) ^ (n >> 63)) as u64;
        let mut out = Vec::new();
        loop {
            let b = (v & 0x7F) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return out;
            }
            out.push(b | 0x80);
        }
    }

    fn schema(json: &str) -> BoundedSchema {
        BoundedSchema::new(Schema::parse_str(json).unwrap()).unwrap()
    }

    const RECORD: &str = r#"{"type":"record","name":"R","fields":[
        {"name":"s","type":"string"},
        {"name":"a","type":{"type":"array","items":"string"}},
        {"name":"m","type":{"type":"map","values":"long"}},
        {"name":"u","type":["null","string"]}]}"#;

    fn valid() -> Vec<u8> {
        let mut b = zigzag(3);
        b.extend(b"abc");
        b.extend(zigzag(2));
        for s in ["x", "yz"] {
            b.extend(zigzag(s.len() as i64));
            b.extend(s.as_bytes());
        }
        b.extend(zigzag(0));
        b.extend(zigzag(1));
        b.extend(zigzag(1));
        b.push(b'k');
        b.extend(zigzag(42));
        b.extend(zigzag(0));
        b.extend(zigzag(1));
        b.extend(zigzag(1));
        b.push(b'v');
        b
    }

    #[test]
    fn a_valid_datum_passes_and_apache_avro_agrees() {
        let s = schema(RECORD);
        let body = valid();
        s.check(&body).unwrap();
        apache_avro::from_avro_datum(s.schema(), &mut &body[..], None).unwrap();
    }

    #[test]
    fn a_huge_string_length_is_refused() {
        let s = schema(RECORD);
        let mut body = zigzag(500_000_000);
        body.extend(b"abc");
        let e = s.check(&body).unwrap_err();
        assert!(
            matches!(&e, BoundsError::Malformed(m) if m.contains("500000000") && m.contains("runs past the end")),
            "{e}"
        );
        assert!(!e.is_retriable());
    }

    #[test]
    fn a_huge_block_count_is_refused() {
        let s = schema(RECORD);
        let mut body = zigzag(0);
        body.extend(zigzag(500_000_000));
        body.extend(b"xx");
        let e = s.check(&body).unwrap_err().to_string();
        assert!(e.contains("block of 500000000 items"), "{e}");
        // A negative count with a byte size past the end.
        let mut body = zigzag(0);
        body.extend(zigzag(-2));
        body.extend(zigzag(1_000_000));
        let e = s.check(&body).unwrap_err().to_string();
        assert!(e.contains("block size"), "{e}");
    }

    #[test]
    fn deep_nesting_of_a_recursive_schema_is_refused() {
        let s = schema(
            r#"{"type":"record","name":"Node","fields":[{"name":"next","type":["null","Node"]}]}"#,
        );
        // 100,000 levels of `next` (union branch 1), which decoding would recurse through.
        let mut body = vec![0x02; 100_000];
        body.push(0x00);
        let e = s.check(&body).unwrap_err().to_string();
        assert!(e.contains("nests deeper"), "{e}");
        // Shallow is fine.
        s.check(&[0x02, 0x02, 0x00]).unwrap();
    }

    #[test]
    fn truncated_and_odd_data_is_refused() {
        let s = schema(RECORD);
        let body = valid();
        for cut in 0..body.len() {
            assert!(s.check(&body[..cut]).is_err(), "cut at {cut}");
        }
        let u = schema(r#"["null","string"]"#);
        assert!(u
            .check(&zigzag(7))
            .unwrap_err()
            .to_string()
            .contains("no branch 7"));
        assert!(u.check(&[0xFF; 11]).is_err(), "an over-long varint");
    }

    proptest! {
        /// Whatever the bytes, the walk ends without a panic, and a datum it lets through
        /// decodes without apache_avro allocating more than the bytes could hold.
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let s = schema(RECORD);
            if s.check(&body).is_ok() {
                let _ = apache_avro::from_avro_datum(s.schema(), &mut &body[..], None);
            }
        }
    }
}
