//! Avro codec for every value crmflow puts on Kafka.
//!
//! Values use the Avro specification's *single-object encoding*: the two bytes `C3 01`, the
//! 8-byte little-endian CRC-64-AVRO (Rabin) fingerprint of the writer schema's Parsing Canonical
//! Form ([`pcf`]), then the Avro binary datum. Any Avro library can decode them with the files in
//! `schemas/`. Until November 2026 crmflow wrote the apache-avro crate's fingerprint instead,
//! which keeps `logicalType` in the canonical form (so differs for `ChangeEvent`); messages with
//! those *legacy* fingerprints are still read.
//!
//! A [`Codec`] writes with the current schema and reads with any schema version it knows
//! (the current one plus those under `schemas/history/`), resolving old data into the current
//! shape. Bytes that are not ours give a typed [`CodecError`], never a panic.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::LazyLock;

pub mod pcf;
#[cfg(test)]
mod proptests;

use apache_avro::rabin::Rabin;
use apache_avro::Schema;
use crmflow_avro_bounds as bounds;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::model::{Candidate, ChangeEvent, Op, Position};

/// The single-object encoding's marker.
pub const MAGIC: [u8; 2] = [0xC3, 0x01];
const HEADER_LEN: usize = 10;

/// Why bytes could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("not an Avro single-object message: expected marker C3 01, found {0:02X?}")]
    BadMagic([u8; 2]),
    #[error("message truncated: {0} bytes, the header alone needs 10")]
    Truncated(usize),
    #[error("unknown writer schema fingerprint {0}")]
    UnknownFingerprint(String),
    #[error("malformed Avro body for {schema}: {reason}")]
    Malformed { schema: String, reason: String },
    #[error("cannot encode {schema}: {reason}")]
    Encode { schema: String, reason: String },
    #[error("invalid schema: {0}")]
    Schema(String),
}

/// Reads one Avro binary datum (no header) into `T`, or says why not.
type DirectReader<T> = fn(&[u8]) -> Result<T, String>;

/// Encodes `T` with its current schema and decodes any known version of it.
pub struct Codec<T> {
    name: String,
    current: Schema,
    fingerprint: [u8; 8],
    /// Every schema version we can read, by fingerprint (the current one included, under both
    /// its spec fingerprint and its legacy one), whether it is the current schema, and its named
    /// types (for [`bounds::check`]).
    writers: HashMap<[u8; 8], (Schema, bool, std::sync::Arc<bounds::Names>)>,
    /// A reader of the current schema's binary datum straight into `T`, skipping apache_avro's
    /// generic `Value` tree (see [`read_change_event`]); older versions still go through it.
    direct: Option<DirectReader<T>>,
    _t: PhantomData<fn() -> T>,
}

/// The fingerprint crmflow wrote before it followed the spec: apache-avro's Rabin over its own
/// canonical form (which keeps `logicalType`). Only read, never written.
fn legacy_fingerprint(schema: &Schema) -> [u8; 8] {
    let fp = schema.fingerprint::<Rabin>();
    let mut out = [0u8; 8];
    out.copy_from_slice(&fp.bytes[..8]);
    out
}

/// Parses a schema text and computes its spec fingerprint.
fn parse(text: &str) -> Result<(Schema, [u8; 8]), CodecError> {
    let bad = |reason: String| CodecError::Schema(reason);
    let schema = Schema::parse_str(text).map_err(|e| bad(e.to_string()))?;
    let fp = pcf::fingerprint(text).map_err(|e| bad(e.to_string()))?;
    Ok((schema, fp))
}

impl<T: Serialize + DeserializeOwned> Codec<T> {
    /// Builds a codec from the current schema text and older versions' texts.
    ///
    /// Panics only on schema texts compiled into the binary, which tests cover.
    pub fn new(name: &str, current: &str, history: &[&str]) -> Result<Self, CodecError> {
        let (current, fingerprint) = parse(current)?;
        let mut writers = HashMap::new();
        let names = |s: &Schema| {
            bounds::names(s)
                .map(std::sync::Arc::new)
                .map_err(|e| CodecError::Schema(e.to_string()))
        };
        for old in history {
            let (s, fp) = parse(old)?;
            let n = names(&s)?;
            writers.insert(legacy_fingerprint(&s), (s.clone(), false, n.clone()));
            writers.insert(fp, (s, false, n));
        }
        let n = names(&current)?;
        writers.insert(
            legacy_fingerprint(&current),
            (current.clone(), true, n.clone()),
        );
        writers.insert(fingerprint, (current.clone(), true, n));
        Ok(Self {
            name: name.to_owned(),
            fingerprint,
            current,
            writers,
            direct: None,
            _t: PhantomData,
        })
    }

    /// Reads data written with the current schema with `direct` instead of the generic path.
    fn with_direct_reader(mut self, direct: DirectReader<T>) -> Self {
        self.direct = Some(direct);
        self
    }

    /// The fingerprint written in every message's header.
    pub fn fingerprint(&self) -> [u8; 8] {
        self.fingerprint
    }

    /// The schema messages are written with.
    pub fn schema(&self) -> &Schema {
        &self.current
    }

    /// Encodes one value: header + Avro binary datum.
    pub fn encode(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&MAGIC);
        buf.extend_from_slice(&self.fingerprint);
        apache_avro::write_avro_datum_ref(&self.current, value, &mut buf).map_err(|e| {
            CodecError::Encode {
                schema: self.name.clone(),
                reason: e.to_string(),
            }
        })?;
        Ok(buf)
    }

    /// Decodes one message written with the current schema or any known older version.
    pub fn decode(&self, bytes: &[u8]) -> Result<T, CodecError> {
        if bytes.len() >= 2 && bytes[..2] != MAGIC {
            return Err(CodecError::BadMagic([bytes[0], bytes[1]]));
        }
        if bytes.len() < HEADER_LEN {
            return Err(CodecError::Truncated(bytes.len()));
        }
        let mut fp = [0u8; 8];
        fp.copy_from_slice(&bytes[2..HEADER_LEN]);
        let (writer, is_current, names) = self
            .writers
            .get(&fp)
            .ok_or_else(|| CodecError::UnknownFingerprint(hex::encode(fp)))?;
        let malformed = |e: apache_avro::Error| CodecError::Malformed {
            schema: self.name.clone(),
            reason: e.to_string(),
        };
        let mut body = &bytes[HEADER_LEN..];
        if let (Some(direct), true) = (self.direct, *is_current) {
            return direct(body).map_err(|reason| CodecError::Malformed {
                schema: self.name.clone(),
                reason,
            });
        }
        // apache_avro allocates what length prefixes claim before reading: check them first.
        bounds::check(writer, names, body).map_err(|e| CodecError::Malformed {
            schema: self.name.clone(),
            reason: e.to_string(),
        })?;
        let reader = if *is_current {
            None
        } else {
            Some(&self.current)
        };
        let value = apache_avro::from_avro_datum(writer, &mut body, reader).map_err(malformed)?;
        apache_avro::from_value::<T>(&value).map_err(malformed)
    }
}

/// Schema texts compiled into the binary, so a deployment never reads them from disk.
pub mod schemas {
    pub const CHANGE_EVENT: &str = include_str!("../schemas/change_event.avsc");
    pub const CHANGE_EVENT_V1: &str = include_str!("../schemas/history/change_event.v1.avsc");
    pub const CANDIDATE: &str = include_str!("../schemas/candidate.avsc");
    pub const CANDIDATE_V1: &str = include_str!("../schemas/history/candidate.v1.avsc");
    pub const POSITION: &str = include_str!("../schemas/position.avsc");
    pub const POSITION_V1: &str = include_str!("../schemas/history/position.v1.avsc");
}

static CHANGE_EVENT: LazyLock<Codec<ChangeEvent>> = LazyLock::new(|| {
    Codec::new(
        "ChangeEvent",
        schemas::CHANGE_EVENT,
        &[schemas::CHANGE_EVENT_V1],
    )
    .expect("built-in ChangeEvent schema parses")
    .with_direct_reader(read_change_event)
});

/// A cursor over an Avro binary datum.
struct Datum<'a>(&'a [u8]);

impl<'a> Datum<'a> {
    /// A zig-zag varint `long` (at most 10 bytes).
    fn long(&mut self) -> Result<i64, String> {
        bounds::read_long(&mut self.0)
    }

    /// `n` bytes, refused when they are not there (no allocation on a corrupt length).
    fn take(&mut self, n: i64) -> Result<&'a [u8], String> {
        let n = usize::try_from(n).map_err(|_| format!("negative length {n}"))?;
        if n > self.0.len() {
            return Err(format!(
                "length {n} runs past the end of the data ({} bytes left)",
                self.0.len()
            ));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn string(&mut self, field: &str) -> Result<String, String> {
        let n = self.long()?;
        let bytes = self.take(n)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|e| format!("field {field} is not UTF-8: {e}"))
    }

    fn strings(&mut self, field: &str) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        loop {
            let mut count = self.long()?;
            if count == 0 {
                return Ok(out);
            }
            if count < 0 {
                // A negative count is followed by the block's size in bytes.
                count = count.checked_neg().ok_or("array block count overflows")?;
                self.long()?;
            }
            for _ in 0..count {
                out.push(self.string(field)?);
            }
        }
    }
}

/// Reads a `ChangeEvent` datum written with the current schema, field by field in the schema's
/// order. Equivalent to apache_avro's decode + `from_value` (tests compare the two), minus the
/// intermediate `Value` tree, which was most of the stage's decode cost.
fn read_change_event(body: &[u8]) -> Result<ChangeEvent, String> {
    let mut d = Datum(body);
    let event_id = d.string("event_id")?;
    let crm = d.string("crm")?;
    let entity = d.string("entity")?;
    let record_id = d.string("record_id")?;
    let op = match d.long()? {
        0 => Op::Upsert,
        1 => Op::Delete,
        i => return Err(format!("enum Op has no symbol {i}")),
    };
    let source_version = d.long()?;
    let observed_at = d.long()?;
    let changed_fields = d.strings("changed_fields")?;
    let source_mode = d.string("source_mode")?;
    let record = d.string("record")?;
    Ok(ChangeEvent {
        event_id,
        crm,
        entity,
        record_id,
        op,
        source_version,
        observed_at,
        changed_fields,
        source_mode,
        record,
    })
}
static CANDIDATE: LazyLock<Codec<Candidate>> = LazyLock::new(|| {
    Codec::new("Candidate", schemas::CANDIDATE, &[schemas::CANDIDATE_V1])
        .expect("built-in Candidate schema parses")
});
static POSITION: LazyLock<Codec<Position>> = LazyLock::new(|| {
    Codec::new("Position", schemas::POSITION, &[schemas::POSITION_V1])
        .expect("built-in Position schema parses")
});

/// The codec for raw `ChangeEvent`s.
pub fn change_event() -> &'static Codec<ChangeEvent> {
    &CHANGE_EVENT
}

/// The codec for canonical `Candidate`s.
pub fn candidate() -> &'static Codec<Candidate> {
    &CANDIDATE
}

/// The codec for canonical `Position`s.
pub fn position() -> &'static Codec<Position> {
    &POSITION
}

#[cfg(test)]
mod tests;
