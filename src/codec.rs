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
mod tests {
    use super::*;
    use crate::model::{Address, Lineage, Op};

    // apache-avro 0.20's Rabin fingerprints (what crmflow wrote before the fix). Candidate and
    // Position have no logical types, so theirs equal the spec's.
    const LEGACY_V1: &str = "d9608d3a68d8df15";
    const LEGACY_CANDIDATE: &str = "cdde9e770948269d";
    const LEGACY_POSITION: &str = "462cc42e211a7e6d";
    use apache_avro::types::Value;

    fn sample_event() -> ChangeEvent {
        ChangeEvent::new(
            "bullhorn",
            "Candidate",
            "1001",
            Op::Upsert,
            1_700_000_000_123,
            1_700_000_001_000,
            vec!["email".into(), "phone".into()],
            "events",
            r#"{"id":1001,"firstName":"Zoë","lastName":"محمد"}"#.into(),
        )
    }

    fn lineage() -> Lineage {
        Lineage {
            crm: "bullhorn".into(),
            crm_id: "7".into(),
            source_version: 5,
            event_id: "e".into(),
            raw_topic: "crm.raw.bullhorn.candidate".into(),
            raw_partition: 2,
            raw_offset: 99,
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
        }
    }

    #[test]
    fn change_event_round_trips_with_single_object_header() {
        let ev = sample_event();
        let bytes = change_event().encode(&ev).unwrap();
        assert_eq!(&bytes[..2], &MAGIC);
        assert_eq!(&bytes[2..10], &change_event().fingerprint());
        assert_eq!(change_event().decode(&bytes).unwrap(), ev);
    }

    /// The generic path: apache_avro's `Value` tree, then `from_value`.
    fn generic_decode(bytes: &[u8]) -> Result<ChangeEvent, apache_avro::Error> {
        let value =
            apache_avro::from_avro_datum(change_event().schema(), &mut &bytes[HEADER_LEN..], None)?;
        apache_avro::from_value(&value)
    }

    #[test]
    fn direct_change_event_reader_matches_the_generic_one() {
        let long_record = format!(r#"{{"description":"{}"}}"#, "é<p>x</p>".repeat(500));
        let many: Vec<String> = (0..300).map(|i| format!("field{i}")).collect();
        let events = [
            sample_event(),
            ChangeEvent::new(
                "bullhorn",
                "JobOrder",
                "",
                Op::Delete,
                -5,
                0,
                many,
                "",
                long_record,
            ),
            ChangeEvent::new(
                "",
                "Candidate",
                "9",
                Op::Upsert,
                i64::MAX,
                i64::MIN,
                vec![],
                "webhook",
                String::new(),
            ),
        ];
        for ev in events {
            let bytes = change_event().encode(&ev).unwrap();
            assert_eq!(generic_decode(&bytes).unwrap(), ev);
            assert_eq!(change_event().decode(&bytes).unwrap(), ev);
        }
        // Corrupt bodies are refused by both, never a panic or a huge allocation.
        let good = change_event().encode(&sample_event()).unwrap();
        let mut huge_len = good[..HEADER_LEN].to_vec();
        huge_len.extend_from_slice(&[0xFE, 0xFF, 0xFF, 0xFF, 0x0F]);
        let mut bad_enum = good[..HEADER_LEN].to_vec();
        for s in ["a", "b", "c", "d"] {
            bad_enum.push(2);
            bad_enum.extend_from_slice(s.as_bytes());
        }
        bad_enum.push(4);
        let mut not_utf8 = good[..HEADER_LEN].to_vec();
        not_utf8.extend_from_slice(&[4, 0xC3, 0x28]);
        let endless_long = [&good[..HEADER_LEN], &[0xFF; 12][..]].concat();
        for bytes in [huge_len, bad_enum, not_utf8, endless_long] {
            assert!(generic_decode(&bytes).is_err());
            assert!(matches!(
                change_event().decode(&bytes),
                Err(CodecError::Malformed { .. })
            ));
        }
    }

    #[test]
    fn header_fingerprint_is_the_spec_rabin_little_endian() {
        // The Avro spec's CRC-64-AVRO of the canonical form of `"int"` is 0x7275d51a3f395c8f;
        // single-object encoding writes it little-endian.
        assert_eq!(
            pcf::fingerprint(r#""int""#).unwrap(),
            0x7275_d51a_3f39_5c8f_u64.to_le_bytes(),
            "fingerprint bytes must be little-endian CRC-64-AVRO"
        );
        // The value Java's SchemaNormalization.parsingFingerprint64 and fastavro give for
        // change_event.avsc (its observed_at is a timestamp-millis).
        assert_eq!(
            hex::encode(change_event().fingerprint()),
            "35cbf739b9506e3b"
        );
    }

    /// Every schema file, checked against fastavro's canonical form and fingerprint
    /// (tests/data/avro_fingerprints.json, made by scripts/avro-reference).
    #[test]
    fn every_schema_file_matches_the_reference_implementation() {
        let reference: serde_json::Value =
            serde_json::from_str(include_str!("../tests/data/avro_fingerprints.json")).unwrap();
        let files = [
            ("schemas/change_event.avsc", schemas::CHANGE_EVENT),
            (
                "schemas/history/change_event.v1.avsc",
                schemas::CHANGE_EVENT_V1,
            ),
            ("schemas/candidate.avsc", schemas::CANDIDATE),
            ("schemas/history/candidate.v1.avsc", schemas::CANDIDATE_V1),
            ("schemas/position.avsc", schemas::POSITION),
            ("schemas/history/position.v1.avsc", schemas::POSITION_V1),
        ];
        let listed = reference["schemas"].as_array().unwrap();
        // A schema added to schemas/ must be added here (and to the reference file).
        let on_disk = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas"))
            .unwrap()
            .chain(
                std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/history")).unwrap(),
            )
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "avsc")
            })
            .count();
        assert_eq!(listed.len(), on_disk, "reference file lists every schema");
        assert_eq!(files.len(), on_disk, "this test checks every schema");
        for (file, text) in files {
            let r = listed
                .iter()
                .find(|r| r["file"] == file)
                .unwrap_or_else(|| panic!("{file} missing from the reference file"));
            assert_eq!(
                pcf::canonical_form(text).unwrap(),
                r["canonical_form"].as_str().unwrap(),
                "{file}"
            );
            assert_eq!(
                hex::encode(pcf::fingerprint(text).unwrap()),
                r["fingerprint"].as_str().unwrap(),
                "{file}"
            );
        }
        assert_eq!(
            hex::encode(candidate().fingerprint()),
            listed
                .iter()
                .find(|r| r["file"] == "schemas/candidate.avsc")
                .unwrap()["fingerprint"]
                .as_str()
                .unwrap()
        );
    }

    /// Messages written before the fix carry apache-avro's fingerprint; they stay readable.
    #[test]
    fn messages_with_the_legacy_fingerprint_are_read() {
        let legacy = [
            (
                "schemas/change_event.avsc",
                schemas::CHANGE_EVENT,
                "51d3abc50fdbe1ac",
            ),
            (
                "schemas/history/change_event.v1.avsc",
                schemas::CHANGE_EVENT_V1,
                LEGACY_V1,
            ),
            (
                "schemas/history/candidate.v1.avsc",
                schemas::CANDIDATE_V1,
                LEGACY_CANDIDATE,
            ),
            (
                "schemas/history/position.v1.avsc",
                schemas::POSITION_V1,
                LEGACY_POSITION,
            ),
        ];
        for (file, text, want) in legacy {
            let s = Schema::parse_str(text).unwrap();
            assert_eq!(hex::encode(legacy_fingerprint(&s)), want, "{file}");
        }
        let ev = sample_event();
        let mut bytes = change_event().encode(&ev).unwrap();
        bytes[2..HEADER_LEN].copy_from_slice(&hex::decode("51d3abc50fdbe1ac").unwrap());
        assert_eq!(change_event().decode(&bytes).unwrap(), ev);
    }

    #[test]
    fn canonical_records_round_trip() {
        let c = Candidate {
            crm: "bullhorn".into(),
            crm_id: "7".into(),
            source_version: 5,
            deleted: false,
            first_name: Some("Ana".into()),
            last_name: None,
            email: Some("ana@example.com".into()),
            phone: Some("+14155550100".into()),
            mobile: None,
            address: Some(Address {
                city: Some("Omaha".into()),
                country_code: Some("US".into()),
                ..Default::default()
            }),
            status: Some("Active".into()),
            occupation: None,
            company_name: None,
            skills: vec!["Rust".into(), "Kafka".into()],
            summary: None,
            date_available: Some(1),
            owner_id: None,
            owner_name: None,
            date_added: None,
            lineage: lineage(),
            attributes: Default::default(),
        };
        let bytes = candidate().encode(&c).unwrap();
        assert_eq!(candidate().decode(&bytes).unwrap(), c);

        let p = Position {
            crm: "bullhorn".into(),
            crm_id: "9".into(),
            source_version: 6,
            deleted: true,
            title: None,
            description: None,
            status: None,
            is_open: Some(false),
            employment_type: None,
            salary: Some(120_000.5),
            salary_unit: Some("per year".into()),
            pay_rate: None,
            num_openings: Some(2),
            start_date: None,
            skills: vec![],
            address: None,
            client_corporation_id: Some("3".into()),
            client_corporation_name: None,
            owner_id: None,
            owner_name: None,
            date_added: None,
            lineage: lineage(),
            attributes: Default::default(),
        };
        let bytes = position().encode(&p).unwrap();
        assert_eq!(position().decode(&bytes).unwrap(), p);
    }

    /// One attribute of every type of the union.
    fn every_attribute() -> crate::model::Attributes {
        use crate::model::{AttributeDate, AttributeValue as V};
        [
            ("relocate", V::Boolean(true)),
            ("notice_days", V::Long(-30)),
            ("day_rate", V::Double(650.25)),
            ("visa_status", V::String("Work visa".into())),
            ("sectors", V::List(vec!["Fintech".into(), "Energy".into()])),
            ("no_sectors", V::List(vec![])),
            (
                "available_from",
                V::Date(AttributeDate {
                    epoch_ms: 1_767_225_600_000,
                }),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    fn sample_candidate() -> Candidate {
        Candidate {
            crm: "bullhorn".into(),
            crm_id: "7".into(),
            source_version: 5,
            first_name: Some("Ana".into()),
            skills: vec!["Rust".into()],
            lineage: lineage(),
            attributes: every_attribute(),
            ..Default::default()
        }
    }

    #[test]
    fn attributes_of_every_type_round_trip() {
        let c = sample_candidate();
        let bytes = candidate().encode(&c).unwrap();
        assert_eq!(candidate().decode(&bytes).unwrap(), c);
        let p = Position {
            crm: "hubspot".into(),
            crm_id: "9".into(),
            title: Some("T".into()),
            lineage: lineage(),
            attributes: every_attribute(),
            ..Default::default()
        };
        let bytes = position().encode(&p).unwrap();
        assert_eq!(position().decode(&bytes).unwrap(), p);
        // Deterministic: the map is ordered, so the same record gives the same bytes.
        assert_eq!(
            candidate().encode(&c).unwrap(),
            candidate().encode(&c).unwrap()
        );
    }

    /// Old writer, new reader: a version-1 record (no attributes) reads with empty attributes.
    #[test]
    fn version_1_canonical_records_are_read_with_empty_attributes() {
        let mut c = sample_candidate();
        c.attributes.clear();
        // The version-1 datum: the record's fields minus `attributes`, resolved to the v1 schema.
        for (schema_text, current, json) in [
            (
                schemas::CANDIDATE_V1,
                schemas::CANDIDATE,
                serde_json::to_value(&c).unwrap(),
            ),
            (
                schemas::POSITION_V1,
                schemas::POSITION,
                serde_json::to_value(Position {
                    crm: "bullhorn".into(),
                    crm_id: "9".into(),
                    title: Some("T".into()),
                    lineage: lineage(),
                    ..Default::default()
                })
                .unwrap(),
            ),
        ] {
            let mut obj = json.as_object().unwrap().clone();
            obj.remove("attributes");
            let v1 = Schema::parse_str(schema_text).unwrap();
            let datum = {
                let value: apache_avro::types::Value =
                    apache_avro::to_value(&obj).unwrap().resolve(&v1).unwrap();
                apache_avro::to_avro_datum(&v1, value).unwrap()
            };
            let v1_fp = pcf::fingerprint(schema_text).unwrap();
            assert_ne!(v1_fp, pcf::fingerprint(current).unwrap());
            for fp in [v1_fp, legacy_fingerprint(&v1)] {
                let mut bytes = MAGIC.to_vec();
                bytes.extend_from_slice(&fp);
                bytes.extend_from_slice(&datum);
                if schema_text == schemas::CANDIDATE_V1 {
                    assert_eq!(candidate().decode(&bytes).unwrap(), c);
                } else {
                    let p = position().decode(&bytes).unwrap();
                    assert_eq!(p.title.as_deref(), Some("T"));
                    assert!(p.attributes.is_empty());
                }
            }
        }
    }

    /// New writer, old reader: a version-2 record resolves against the version-1 schema (the
    /// reader skips `attributes`), so consumers still on version 1 keep working.
    #[test]
    fn version_2_records_are_read_by_a_version_1_reader() {
        let c = sample_candidate();
        let bytes = candidate().encode(&c).unwrap();
        let v1 = Schema::parse_str(schemas::CANDIDATE_V1).unwrap();
        let value = apache_avro::from_avro_datum(
            candidate().schema(),
            &mut &bytes[HEADER_LEN..],
            Some(&v1),
        )
        .unwrap();
        let apache_avro::types::Value::Record(fields) = &value else {
            panic!("not a record: {value:?}")
        };
        assert!(fields.iter().all(|(n, _)| n != "attributes"));
        let old: Candidate = apache_avro::from_value(&value).unwrap();
        let mut want = c.clone();
        want.attributes.clear();
        assert_eq!(old, want);

        let p = Position {
            crm: "bullhorn".into(),
            crm_id: "9".into(),
            title: Some("T".into()),
            lineage: lineage(),
            attributes: every_attribute(),
            ..Default::default()
        };
        let bytes = position().encode(&p).unwrap();
        let v1 = Schema::parse_str(schemas::POSITION_V1).unwrap();
        let value =
            apache_avro::from_avro_datum(position().schema(), &mut &bytes[HEADER_LEN..], Some(&v1))
                .unwrap();
        let old: Position = apache_avro::from_value(&value).unwrap();
        assert_eq!(old.title.as_deref(), Some("T"));
        assert!(old.attributes.is_empty());
    }

    #[test]
    fn v1_message_is_read_by_the_current_schema() {
        let v1 = Schema::parse_str(schemas::CHANGE_EVENT_V1).unwrap();
        let value = Value::Record(vec![
            ("event_id".into(), Value::String("abc".into())),
            ("crm".into(), Value::String("bullhorn".into())),
            ("entity".into(), Value::String("JobOrder".into())),
            ("record_id".into(), Value::String("5".into())),
            ("op".into(), Value::Enum(1, "DELETE".into())),
            ("source_version".into(), Value::Long(10)),
            ("observed_at".into(), Value::TimestampMillis(20)),
            ("record".into(), Value::String("{}".into())),
        ]);
        let datum = apache_avro::to_avro_datum(&v1, value).unwrap();
        let v1_fp = pcf::fingerprint(schemas::CHANGE_EVENT_V1).unwrap();
        assert_ne!(v1_fp, change_event().fingerprint());
        // Written with the spec fingerprint, and with the legacy one of older crmflow versions.
        for fp in [v1_fp, legacy_fingerprint(&v1)] {
            let mut bytes = MAGIC.to_vec();
            bytes.extend_from_slice(&fp);
            bytes.extend_from_slice(&datum);
            let ev = change_event().decode(&bytes).unwrap();
            assert_eq!(ev.op, Op::Delete);
            assert_eq!(ev.record_id, "5");
            assert_eq!(ev.source_version, 10);
            assert!(ev.changed_fields.is_empty(), "new field takes its default");
            assert_eq!(ev.source_mode, "poll");
        }
    }

    #[test]
    fn foreign_bytes_give_typed_errors() {
        let good = change_event().encode(&sample_event()).unwrap();

        let mut wrong_magic = good.clone();
        wrong_magic[0] = 0x00;
        assert!(matches!(
            change_event().decode(&wrong_magic),
            Err(CodecError::BadMagic(_))
        ));
        assert!(matches!(
            change_event().decode(b"{\"json\":true}"),
            Err(CodecError::BadMagic(_))
        ));

        let mut unknown = good.clone();
        unknown[5] ^= 0xFF;
        assert!(matches!(
            change_event().decode(&unknown),
            Err(CodecError::UnknownFingerprint(_))
        ));

        assert!(matches!(
            change_event().decode(&good[..6]),
            Err(CodecError::Truncated(6))
        ));
        assert!(matches!(
            change_event().decode(&[]),
            Err(CodecError::Truncated(0))
        ));
        for cut in [11, good.len() / 2, good.len() - 1] {
            assert!(
                matches!(
                    change_event().decode(&good[..cut]),
                    Err(CodecError::Malformed { .. })
                ),
                "cut at {cut}"
            );
        }
        // A candidate is not a change event.
        let c = candidate().decode(&good);
        assert!(matches!(c, Err(CodecError::UnknownFingerprint(_))));
    }
}
