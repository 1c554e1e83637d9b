//! Property tests of normalize against hostile CRM records: any JSON (shaped like Bullhorn's and
//! HubSpot's records, with every field's value of any JSON type), any text for the text, phone,
//! email, date and country operators, and any bytes as a raw Kafka message. Normalize never
//! panics: it gives a canonical record that encodes, or a named rule for the DLQ.

use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::*;
use crate::config::NormalizeConfig;
use crate::stages::normalize::{process, Outcome};

const BULLHORN_FIELDS: &[&str] = &[
    "id",
    "firstName",
    "lastName",
    "email",
    "phone",
    "mobile",
    "address",
    "status",
    "occupation",
    "companyName",
    "primarySkills",
    "skillSet",
    "skillList",
    "description",
    "dateAvailable",
    "owner",
    "dateAdded",
    "dateLastModified",
    "isDeleted",
    "title",
    "publicDescription",
    "isOpen",
    "employmentType",
    "salary",
    "salaryUnit",
    "payRate",
    "numOpenings",
    "startDate",
    "clientCorporation",
    "clientContact",
    "address1",
    "city",
    "state",
    "zip",
    "countryID",
    "countryCode",
    "countryName",
    "data",
    "total",
    "name",
];

const HUBSPOT_FIELDS: &[&str] = &[
    "firstname",
    "lastname",
    "email",
    "phone",
    "mobilephone",
    "address",
    "city",
    "state",
    "zip",
    "country",
    "hs_lead_status",
    "jobtitle",
    "company",
    "skills",
    "summary",
    "date_available",
    "hubspot_owner_id",
    "createdate",
    "hs_createdate",
    "lastmodifieddate",
    "hs_lastmodifieddate",
    "hs_object_id",
    "job_title",
    "job_description",
    "job_status",
    "employment_type",
    "salary_min",
    "salary_max",
    "salary_unit",
    "pay_rate",
    "openings",
    "start_date",
    "is_open",
    "company_id",
    "company_name",
    "dealname",
    "dealstage",
    "amount",
    "hs_is_closed",
    "description",
];

/// Leaf values, biased towards what the operators look for inside strings.
fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        prop_oneof![
            Just("2024-01-31T12:00:00Z".to_owned()),
            Just("1700000000000".to_owned()),
            Just("+1 (415) 555-0100".to_owned()),
            Just("a@b.example".to_owned()),
            Just("<p>x &amp; y</p>".to_owned()),
            Just("NaN".to_owned()),
            "[0-9+() .-]{0,20}",
            "[a-zA-Z@<>&;#.,: ]{0,24}",
            any::<String>(),
        ]
        .prop_map(Value::String),
    ]
}

/// Any JSON, three levels deep at most, maps keyed by `fields`.
fn value(fields: &'static [&'static str]) -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((proptest::sample::select(fields), inner), 0..6).prop_map(
                |kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            ),
        ]
    })
}

/// A record object: known fields with any values; HubSpot's under `properties` as well.
fn record(fields: &'static [&'static str]) -> impl Strategy<Value = String> {
    (
        proptest::collection::vec((proptest::sample::select(fields), value(fields)), 0..14),
        any::<bool>(),
    )
        .prop_map(|(kv, nest)| {
            let m: Map<String, Value> = kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            if nest {
                json!({ "id": "7", "properties": m, "archived": false }).to_string()
            } else {
                Value::Object(m).to_string()
            }
        })
}

fn event(crm: &str, entity: &str, record: String, delete: bool) -> ChangeEvent {
    let op = if delete { Op::Delete } else { Op::Upsert };
    super::testkit::event(crm, entity, "7", op, &record)
}

/// Normalizes through the stage's own entry point: the Avro round trip, the transform, the
/// validation and the canonical encoding. Never a panic; a reject names a rule.
fn check(ev: &ChangeEvent, cfg: &NormalizeConfig) -> Result<(), TestCaseError> {
    let direct = normalize(ev, super::testkit::lineage_of(ev), cfg);
    let bytes = crate::codec::change_event().encode(ev).unwrap();
    match process(Some(&bytes), "t", 0, 0, None, cfg) {
        Outcome::Output(_, key, out) => {
            prop_assert!(direct.is_ok());
            prop_assert_eq!(key, format!("{}:{}", ev.crm, ev.record_id));
            prop_assert!(!out.is_empty());
        }
        Outcome::Reject(class, rule, reason) => {
            prop_assert!(direct.is_err(), "{class} {rule} {reason}");
            prop_assert!(!rule.is_empty() && !class.is_empty());
        }
    }
    Ok(())
}

proptest! {

    #[test]
    fn bullhorn_records_normalize_or_reject(
        rec in record(BULLHORN_FIELDS),
        entity in proptest::sample::select(&["Candidate", "JobOrder"][..]),
        delete in any::<bool>(),
    ) {
        check(&event("bullhorn", entity, rec, delete), &NormalizeConfig::default())?;
    }

    #[test]
    fn hubspot_records_normalize_or_reject(
        rec in record(HUBSPOT_FIELDS),
        entity in proptest::sample::select(&["contact", "job", "deal"][..]),
        delete in any::<bool>(),
    ) {
        check(&event("hubspot", entity, rec, delete), &NormalizeConfig::default())?;
    }

    #[test]
    fn any_record_text_normalizes_or_rejects(
        rec in any::<String>(),
        pair in proptest::sample::select(&[
            ("bullhorn", "Candidate"), ("bullhorn", "JobOrder"), ("hubspot", "contact"),
            ("hubspot", "job"), ("hubspot", "deal"), ("salesforce", "Contact"), ("x", "y"),
        ][..]),
    ) {
        check(&event(pair.0, pair.1, rec, false), &NormalizeConfig::default())?;
    }

    #[test]
    fn any_raw_message_is_an_output_or_a_dead_letter(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        // Random bytes are never a valid message: a dead letter of the decode class.
        match process(Some(&bytes), "t", 0, 0, None, &NormalizeConfig::default()) {
            Outcome::Output(..) => prop_assert!(false, "random bytes normalized"),
            Outcome::Reject(class, rule, _) => {
                prop_assert_eq!(class, "decode");
                prop_assert_eq!(rule, "record.avro");
            }
        }
    }

    #[test]
    fn text_operators_take_any_text(s in any::<String>(), country in "[A-Z]{0,3}") {
        let _ = text::html_to_text(&s);
        let _ = text::clean_text(&s);
        let _ = phone::normalize_phone(&s, &country);
        let _ = email::normalize_email(&s);
        let _ = email::Email::parse(&s);
        let _ = hubspot::parse_date(&s);
        let _ = hubspot::country_code(&s);
        // Cleaning is idempotent: a second pass changes nothing.
        let once = text::clean_text(&s);
        prop_assert_eq!(text::clean_text(&once), once.clone());
    }
}
