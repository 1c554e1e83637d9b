//! Hostile Pub/Sub payloads: the decoder refuses a length prefix, an array block count or a nesting
//! depth the bytes cannot hold with a [`PubSubError::Decode`] naming why — before apache_avro would
//! allocate what they claim — and any bytes at all decode or fail, never panic.

use apache_avro::types::Value as Avro;
use apache_avro::Schema;
use crmflow_avro_bounds::BoundedSchema;
use proptest::prelude::*;

use super::decode::decode;
use super::PubSubError;

/// A change-event schema shaped like Salesforce's: the header record, then nullable fields.
const EVENT: &str = r#"{"type":"record","name":"ContactChangeEvent","namespace":"com.sforce.eventbus",
  "fields":[
    {"name":"ChangeEventHeader","type":{"type":"record","name":"ChangeEventHeader","fields":[
      {"name":"entityName","type":"string"},
      {"name":"recordIds","type":{"type":"array","items":"string"}},
      {"name":"changeType","type":{"type":"enum","name":"ChangeType","symbols":["CREATE","UPDATE","DELETE"]}},
      {"name":"commitTimestamp","type":"long"},
      {"name":"changedFields","type":{"type":"array","items":"string"}}]}},
    {"name":"Email","type":["null","string"],"default":null},
    {"name":"Skills","type":["null",{"type":"array","items":"string"}],"default":null}]}"#;

fn schema(json: &str) -> BoundedSchema {
    BoundedSchema::new(Schema::parse_str(json).unwrap()).unwrap()
}

fn varint(n: i64) -> Vec<u8> {
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

fn event(email: &str) -> Vec<u8> {
    let s = schema(EVENT);
    let strings = |v: &[&str]| Avro::Array(v.iter().map(|s| Avro::String(s.to_string())).collect());
    let header = Avro::Record(vec![
        ("entityName".into(), Avro::String("Contact".into())),
        ("recordIds".into(), strings(&["003000000000001AAA"])),
        ("changeType".into(), Avro::Enum(1, "UPDATE".into())),
        ("commitTimestamp".into(), Avro::Long(1_700_000_000_000)),
        ("changedFields".into(), strings(&["Email"])),
    ]);
    apache_avro::to_avro_datum(
        s.schema(),
        Avro::Record(vec![
            ("ChangeEventHeader".into(), header),
            (
                "Email".into(),
                Avro::Union(1, Box::new(Avro::String(email.into()))),
            ),
            ("Skills".into(), Avro::Union(0, Box::new(Avro::Null))),
        ]),
    )
    .unwrap()
}

fn refused(payload: &[u8]) -> String {
    match decode(&schema(EVENT), payload) {
        Err(PubSubError::Decode(m)) => m,
        other => panic!("expected a decode error, got {other:?}"),
    }
}

#[test]
fn a_valid_event_decodes() {
    let (h, fields) = decode(&schema(EVENT), &event("ada@example.com")).unwrap();
    assert_eq!(h.entity_name, "Contact");
    assert_eq!(h.change_type, "UPDATE");
    assert_eq!(h.record_ids, ["003000000000001AAA"]);
    assert_eq!(fields["Email"], "ada@example.com");
}

#[test]
fn a_huge_string_length_is_refused_before_decoding() {
    // The entityName claims 500,000,000 bytes; 20 follow.
    let mut p = varint(500_000_000);
    p.extend([b'x'; 20]);
    let m = refused(&p);
    assert!(m.contains("refused before decoding"), "{m}");
    assert!(
        m.contains("500000000") && m.contains("runs past the end"),
        "{m}"
    );
    // The same inside a valid event: the Email's length prefix, rewritten.
    let good = event("ada@example.com");
    let at = good
        .windows(15)
        .position(|w| w == b"ada@example.com")
        .unwrap();
    let mut p = good[..at - 1].to_vec();
    p.extend(varint(400_000_000));
    p.extend(&good[at..]);
    let m = refused(&p);
    assert!(m.contains("400000000"), "{m}");
}

#[test]
fn a_huge_array_block_count_is_refused_before_decoding() {
    // entityName "Contact", then recordIds claiming 500,000,000 ids.
    let mut p = varint(7);
    p.extend(b"Contact");
    p.extend(varint(500_000_000));
    p.extend([0u8; 16]);
    let m = refused(&p);
    assert!(m.contains("block of 500000000 items"), "{m}");
    // A negative count whose byte size runs past the end.
    let mut p = varint(7);
    p.extend(b"Contact");
    p.extend(varint(-3));
    p.extend(varint(1 << 40));
    assert!(refused(&p).contains("block size"));
}

#[test]
fn deep_nesting_is_refused_before_decoding() {
    // A (hostile) recursive writer schema and a payload nesting 200,000 levels, which decoding
    // would recurse through until the stack ran out.
    let s = schema(
        r#"{"type":"record","name":"E","fields":[
            {"name":"ChangeEventHeader","type":{"type":"record","name":"H","fields":[{"name":"entityName","type":"string"}]}},
            {"name":"Parent","type":["null","E"]}]}"#,
    );
    let mut p = Vec::new();
    for _ in 0..200_000 {
        p.push(0x00); // entityName ""
        p.push(0x02); // Parent: branch 1, another E
    }
    p.extend([0x00, 0x00]);
    match decode(&s, &p) {
        Err(PubSubError::Decode(m)) => assert!(m.contains("nests deeper"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_truncated_event_is_an_error() {
    let good = event("ada@example.com");
    for cut in 0..good.len() {
        assert!(
            decode(&schema(EVENT), &good[..cut]).is_err(),
            "cut at {cut}"
        );
    }
}

proptest! {
    /// Any payload decodes or gives a decode error; never a panic.
    #[test]
    fn arbitrary_payloads_never_panic(p in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&schema(EVENT), &p);
    }

    /// A valid event with bytes flipped decodes or gives a decode error; never a panic.
    #[test]
    fn mutated_events_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut p = event("ada@example.com");
        for (i, b) in flips {
            let n = p.len();
            p[i % n] = b;
        }
        let _ = decode(&schema(EVENT), &p);
    }
}
