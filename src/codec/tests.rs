//! Tests of the codec: round trips of every record type, the wire header and schema
//! fingerprints (legacy ones included), and how malformed messages are refused.

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
        serde_json::from_str(include_str!("../../tests/data/avro_fingerprints.json")).unwrap();
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
        .chain(std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/history")).unwrap())
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

/// A `crm` position titled `T` with an attribute of every type.
fn sample_position(crm: &str) -> Position {
    Position {
        crm: crm.into(),
        crm_id: "9".into(),
        title: Some("T".into()),
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
    let p = sample_position("hubspot");
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
    let value =
        apache_avro::from_avro_datum(candidate().schema(), &mut &bytes[HEADER_LEN..], Some(&v1))
            .unwrap();
    let apache_avro::types::Value::Record(fields) = &value else {
        panic!("not a record: {value:?}")
    };
    assert!(fields.iter().all(|(n, _)| n != "attributes"));
    let old: Candidate = apache_avro::from_value(&value).unwrap();
    let mut want = c.clone();
    want.attributes.clear();
    assert_eq!(old, want);

    let p = sample_position("bullhorn");
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
