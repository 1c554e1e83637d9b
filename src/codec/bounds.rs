//! A walk over an Avro binary datum that checks, before apache_avro decodes it, that every length
//! and every array or map block count fits in the bytes that are left.
//!
//! apache_avro trusts them up to its global `max_allocation_bytes` (512 MiB): a string whose length
//! prefix claims 500 MB allocates 500 MB zeroed before it finds the data missing, and an array
//! block claiming 500 million items reserves 500 million `Value`s (about 24 GB), which aborts the
//! process. A message is at most a few MiB, and every item of every array in our schemas takes at
//! least one byte, so any length or count beyond the bytes left is corrupt: this walk says so and
//! decode answers [`super::CodecError::Malformed`] instead.

use std::collections::HashMap;

use apache_avro::schema::{Name, Schema};

/// Named types of one schema, for `Ref`s.
pub type Names = HashMap<Name, Schema>;

/// Nesting deeper than this is refused (our schemas nest three levels).
const MAX_DEPTH: usize = 32;

/// The named types of `schema`, owned.
pub fn names(schema: &Schema) -> Result<Names, String> {
    let resolved =
        apache_avro::schema::ResolvedSchema::try_from(schema).map_err(|e| e.to_string())?;
    Ok(resolved
        .get_names()
        .iter()
        .map(|(n, s)| (n.clone(), (*s).clone()))
        .collect())
}

/// Checks that `body` starts with one datum of `schema` whose lengths and counts all fit in it.
pub fn check(schema: &Schema, names: &Names, body: &[u8]) -> Result<(), String> {
    let mut d = Cursor(body);
    walk(schema, names, &mut d, 0)?;
    Ok(())
}

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn long(&mut self) -> Result<i64, String> {
        let mut acc: u64 = 0;
        for (i, &b) in self.0.iter().enumerate().take(10) {
            acc |= u64::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                self.0 = &self.0[i + 1..];
                return Ok((acc >> 1) as i64 ^ -((acc & 1) as i64));
            }
        }
        Err(if self.0.len() < 10 {
            "unexpected end of data in a long".to_owned()
        } else {
            "long is longer than 10 bytes".to_owned()
        })
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
        return Err("schema nests too deep".into());
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
