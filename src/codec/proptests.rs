//! Property tests of the Avro codec against hostile bytes: any bytes after any known header,
//! valid messages with bytes flipped, cut or inserted, and length prefixes that claim more than
//! is there. Decoding never panics and never allocates what a prefix claims; every value of every
//! schema version round-trips. `PROPTEST_CASES` raises the case count (README: Hostile input).

use apache_avro::types::Value;
use proptest::prelude::*;
use proptest::strategy::ValueTree;

use super::*;
use crate::model::{Address, Lineage};

/// Every header fingerprint a codec accepts, with the codec's name.
fn known_headers() -> Vec<[u8; 8]> {
    let mut out = Vec::new();
    for c in [
        change_event().writers.keys().copied().collect::<Vec<_>>(),
        candidate().writers.keys().copied().collect(),
        position().writers.keys().copied().collect(),
    ] {
        out.extend(c);
    }
    out
}

fn decode_all(bytes: &[u8]) {
    // Only that none panics (or aborts) matters here; each answer is Ok or a typed error.
    let _ = change_event().decode(bytes);
    let _ = candidate().decode(bytes);
    let _ = position().decode(bytes);
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-zA-Z0-9 @.+-]{0,12}",
        1 => any::<String>(),
    ]
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(text())
}

prop_compose! {
    fn change_event_value()(
        crm in text(), entity in text(), record_id in text(), delete in any::<bool>(),
        source_version in any::<i64>(), observed_at in any::<i64>(),
        changed_fields in proptest::collection::vec(text(), 0..4),
        source_mode in text(), record in text(),
    ) -> ChangeEvent {
        let op = if delete { Op::Delete } else { Op::Upsert };
        ChangeEvent::new(&crm, &entity, &record_id, op, source_version, observed_at,
            changed_fields, &source_mode, record)
    }
}

prop_compose! {
    fn lineage()(crm in text(), crm_id in text(), source_version in any::<i64>(),
        event_id in text(), raw_topic in text(), raw_partition in any::<i32>(),
        raw_offset in any::<i64>(), trace_id in opt_text()) -> Lineage {
        Lineage { crm, crm_id, source_version, event_id, raw_topic, raw_partition, raw_offset, trace_id }
    }
}

prop_compose! {
    fn address()(line1 in opt_text(), line2 in opt_text(), city in opt_text(),
        state in opt_text(), zip in opt_text(), country_code in opt_text()) -> Address {
        Address { line1, line2, city, state, zip, country_code }
    }
}

/// Mapped custom fields of every union branch (finite doubles: NaN is not equal to itself).
fn attributes() -> impl Strategy<Value = crate::model::Attributes> {
    use crate::model::{AttributeDate, AttributeValue as A};
    let value = prop_oneof![
        any::<bool>().prop_map(A::Boolean),
        any::<i64>().prop_map(A::Long),
        (-1e12f64..1e12).prop_map(A::Double),
        text().prop_map(A::String),
        proptest::collection::vec(text(), 0..4).prop_map(A::List),
        any::<i64>().prop_map(|epoch_ms| A::Date(AttributeDate { epoch_ms })),
    ];
    proptest::collection::btree_map(text(), value, 0..4)
}

prop_compose! {
    fn candidate_value()(
        ids in (text(), text(), any::<i64>(), any::<bool>()),
        names in (opt_text(), opt_text(), opt_text(), opt_text(), opt_text()),
        address in proptest::option::of(address()),
        more in (opt_text(), opt_text(), opt_text(), opt_text()),
        skills in proptest::collection::vec(text(), 0..5),
        dates in (proptest::option::of(any::<i64>()), proptest::option::of(any::<i64>())),
        owner in (opt_text(), opt_text()),
        lineage in lineage(),
        attributes in attributes(),
    ) -> Candidate {
        Candidate {
            crm: ids.0, crm_id: ids.1, source_version: ids.2, deleted: ids.3,
            first_name: names.0, last_name: names.1, email: names.2, phone: names.3, mobile: names.4,
            address, status: more.0, occupation: more.1, company_name: more.2, skills,
            summary: more.3, date_available: dates.0, owner_id: owner.0, owner_name: owner.1,
            date_added: dates.1, lineage, attributes,
        }
    }
}

fn money() -> impl Strategy<Value = Option<f64>> {
    // Finite: NaN is not equal to itself, which is no fault of the codec.
    proptest::option::of(-1e12f64..1e12)
}

prop_compose! {
    fn position_value()(
        ids in (text(), text(), any::<i64>(), any::<bool>()),
        texts in (opt_text(), opt_text(), opt_text(), opt_text(), opt_text()),
        is_open in proptest::option::of(any::<bool>()),
        pay in (money(), money(), proptest::option::of(any::<i32>())),
        dates in (proptest::option::of(any::<i64>()), proptest::option::of(any::<i64>())),
        skills in proptest::collection::vec(text(), 0..5),
        address in proptest::option::of(address()),
        corp in (opt_text(), opt_text(), opt_text(), opt_text()),
        lineage in lineage(),
        attributes in attributes(),
    ) -> Position {
        Position {
            crm: ids.0, crm_id: ids.1, source_version: ids.2, deleted: ids.3,
            title: texts.0, description: texts.1, status: texts.2, is_open,
            employment_type: texts.3, salary: pay.0, salary_unit: texts.4, pay_rate: pay.1,
            num_openings: pay.2, start_date: dates.0, skills, address,
            client_corporation_id: corp.0, client_corporation_name: corp.1,
            owner_id: corp.2, owner_name: corp.3, date_added: dates.1, lineage, attributes,
        }
    }
}

/// A v1 `ChangeEvent` (no changed_fields, no source_mode) as an older crmflow wrote it.
fn v1_message(ev: &ChangeEvent) -> Vec<u8> {
    let v1 = Schema::parse_str(schemas::CHANGE_EVENT_V1).unwrap();
    let value = Value::Record(vec![
        ("event_id".into(), Value::String(ev.event_id.clone())),
        ("crm".into(), Value::String(ev.crm.clone())),
        ("entity".into(), Value::String(ev.entity.clone())),
        ("record_id".into(), Value::String(ev.record_id.clone())),
        (
            "op".into(),
            match ev.op {
                Op::Upsert => Value::Enum(0, "UPSERT".into()),
                Op::Delete => Value::Enum(1, "DELETE".into()),
            },
        ),
        ("source_version".into(), Value::Long(ev.source_version)),
        ("observed_at".into(), Value::TimestampMillis(ev.observed_at)),
        ("record".into(), Value::String(ev.record.clone())),
    ]);
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&pcf::fingerprint(schemas::CHANGE_EVENT_V1).unwrap());
    bytes.extend(apache_avro::to_avro_datum(&v1, value).unwrap());
    bytes
}

/// A zig-zag varint.
fn varint(v: i64) -> Vec<u8> {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    let mut out = Vec::new();
    loop {
        let b = (z & 0x7F) as u8;
        z >>= 7;
        if z == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

/// Valid messages of every schema version, to mutate.
fn seeds() -> Vec<Vec<u8>> {
    let ev = ChangeEvent::new(
        "bullhorn",
        "Candidate",
        "42",
        Op::Upsert,
        1,
        2,
        vec!["email".into(), "phone".into()],
        "poll",
        r#"{"id":42}"#.into(),
    );
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let c = candidate_value().new_tree(&mut runner).unwrap().current();
    let p = position_value().new_tree(&mut runner).unwrap().current();
    vec![
        change_event().encode(&ev).unwrap(),
        v1_message(&ev),
        candidate().encode(&c).unwrap(),
        position().encode(&p).unwrap(),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Cut(usize),
    /// Overwrite from `at` with a varint (a length or count that lies).
    Varint(usize, i64),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<(usize, u8)>().prop_map(|(i, b)| Mutation::Flip(i, b)),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..12)
        )
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        any::<usize>().prop_map(Mutation::Cut),
        (
            any::<usize>(),
            prop_oneof![
                any::<i64>(),
                Just(i64::MAX),
                Just(i64::MIN),
                Just(500_000_000)
            ]
        )
            .prop_map(|(i, v)| Mutation::Varint(i, v)),
    ]
}

fn apply(mut bytes: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        // Mutations keep the 10-byte header, so the body reaches the Avro decoders.
        let body = bytes.len().saturating_sub(HEADER_LEN).max(1);
        match m {
            Mutation::Flip(i, b) => {
                if bytes.len() > HEADER_LEN {
                    let at = HEADER_LEN + i % (bytes.len() - HEADER_LEN);
                    bytes[at] ^= b | 1;
                }
            }
            Mutation::Insert(i, v) => {
                let at = HEADER_LEN + i % body;
                let at = at.min(bytes.len());
                bytes.splice(at..at, v.iter().copied());
            }
            Mutation::Cut(i) => bytes.truncate(HEADER_LEN + i % body),
            Mutation::Varint(i, v) => {
                let at = (HEADER_LEN + i % body).min(bytes.len());
                let enc = varint(*v);
                let end = (at + enc.len()).min(bytes.len());
                bytes.splice(at..end, enc);
            }
        }
    }
    bytes
}

proptest! {

    #[test]
    fn any_bytes_decode_to_a_value_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        decode_all(&bytes);
    }

    #[test]
    fn any_body_after_a_known_header_decodes_or_errs(
        which in any::<prop::sample::Index>(),
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let headers = known_headers();
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&headers[which.index(headers.len())]);
        bytes.extend(body);
        decode_all(&bytes);
    }

    #[test]
    fn mutated_messages_of_every_version_decode_or_err(
        which in 0usize..4,
        muts in proptest::collection::vec(mutation(), 1..4),
    ) {
        let seed = seeds().swap_remove(which);
        decode_all(&apply(seed, &muts));
    }

    #[test]
    fn change_events_round_trip(ev in change_event_value()) {
        let bytes = change_event().encode(&ev).unwrap();
        prop_assert_eq!(change_event().decode(&bytes).unwrap(), ev);
    }

    #[test]
    fn v1_change_events_read_as_current(ev in change_event_value()) {
        let got = change_event().decode(&v1_message(&ev)).unwrap();
        let want = ChangeEvent { changed_fields: vec![], source_mode: "poll".into(), ..ev };
        prop_assert_eq!(got, want);
    }

    #[test]
    fn candidates_round_trip(c in candidate_value()) {
        let bytes = candidate().encode(&c).unwrap();
        prop_assert_eq!(candidate().decode(&bytes).unwrap(), c);
    }

    #[test]
    fn positions_round_trip(p in position_value()) {
        let bytes = position().encode(&p).unwrap();
        prop_assert_eq!(position().decode(&bytes).unwrap(), p);
    }
}

/// A header of `codec` followed by `body`.
fn message(fp: [u8; 8], body: &[u8]) -> Vec<u8> {
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&fp);
    bytes.extend_from_slice(body);
    bytes
}

#[test]
fn lying_lengths_and_counts_are_malformed_without_allocating_them() {
    // Candidate: crm "a", crm_id "b", version 1, deleted false, 9 null unions, null address,
    // 3 null unions, then the skills array's block count: 400 million items in 3 bytes.
    // apache_avro reserved 400M `Value`s for it (~19 GB) and the process aborted.
    let mut body = vec![2, b'a', 2, b'b', 2, 0];
    body.extend([0; 9]);
    body.extend(varint(400_000_000));
    body.extend([2, b'x', 0]);
    let got = candidate().decode(&message(candidate().fingerprint(), &body));
    assert!(
        matches!(&got, Err(CodecError::Malformed { reason, .. }) if reason.contains("400000000 items")),
        "{got:?}"
    );

    // A v1 ChangeEvent whose first string claims 400 MB: apache_avro allocated it zeroed.
    let v1 = pcf::fingerprint(schemas::CHANGE_EVENT_V1).unwrap();
    let mut body = varint(400_000_000);
    body.extend(b"abc");
    let got = change_event().decode(&message(v1, &body));
    assert!(
        matches!(&got, Err(CodecError::Malformed { reason, .. }) if reason.contains("runs past the end")),
        "{got:?}"
    );

    // The same for Position (its skills array) and for a negative block count's byte size.
    let mut body = vec![2, b'a', 2, b'b', 2, 0];
    body.extend([0; 10]);
    body.extend(varint(-300_000_000));
    body.extend(varint(5));
    let got = position().decode(&message(position().fingerprint(), &body));
    assert!(matches!(&got, Err(CodecError::Malformed { .. })), "{got:?}");
}
