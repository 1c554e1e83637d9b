//! The normalize stage's operators: pure, synchronous functions from one decoded [`ChangeEvent`] to one
//! canonical record or one [`Reject`].
//!
//! [`normalize`] dispatches on `(crm, entity)` to a CRM transform ([`bullhorn`], [`hubspot`], [`salesforce`]), which parses the
//! record JSON and maps it field by field with the cleanup helpers ([`text`], [`email`], [`phone`]);
//! then [`validate`] checks the canonical record against the named rules of [`validate::RULES`].
//! Deletes become tombstones and skip validation. Nothing here does I/O, reads a clock or keeps
//! state, so the same event always gives the same output byte for byte, which is what makes the
//! stage's redelivery safe (ARCHITECTURE.md §2.4); the stage runtime owns Kafka and the DLQ.

pub mod attributes;
pub mod bullhorn;
pub mod email;
pub mod hubspot;
pub mod phone;
#[cfg(test)]
mod proptests;
pub mod salesforce;
#[cfg(test)]
mod testkit;
pub mod text;
pub mod validate;
mod wire;

use std::fmt;

pub use email::{Email, EmailError};
pub use validate::{Rule, RuleSpec, RULES};

use crate::config::NormalizeConfig;
use crate::model::{canonical_key, Candidate, ChangeEvent, Lineage, Op, Position};

/// Which step refused a record; the DLQ's `error.class`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectClass {
    /// The record could not be read at all (not JSON).
    Decode,
    /// It was read but cannot be mapped (unknown entity, a field of an unusable type).
    Transform,
    /// It was mapped but breaks a rule.
    Validation,
}

impl RejectClass {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectClass::Decode => "decode",
            RejectClass::Transform => "transform",
            RejectClass::Validation => "validation",
        }
    }
}

impl fmt::Display for RejectClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a record did not become a canonical record; the stage sends it to the DLQ with these values
/// as headers (`error.class`, `error.rule`, `error.reason`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{class} error, rule {rule}: {reason}")]
pub struct Reject {
    pub class: RejectClass,
    /// A name from [`validate::RULES`].
    pub rule: &'static str,
    /// Human-readable detail: the offending value and the limit it broke.
    pub reason: String,
}

/// A normalized record, ready for `crm.canonical.<entity>`.
#[derive(Debug, Clone, PartialEq)]
pub enum Canonical {
    Candidate(Candidate),
    Position(Position),
}

impl Canonical {
    /// The canonical topic's key, `"<crm>:<crm_id>"`.
    pub fn key(&self) -> String {
        match self {
            Canonical::Candidate(c) => canonical_key(&c.crm, &c.crm_id),
            Canonical::Position(p) => canonical_key(&p.crm, &p.crm_id),
        }
    }

    /// The canonical entity name, as in the topic `crm.canonical.<entity>`.
    pub fn entity(&self) -> &'static str {
        match self {
            Canonical::Candidate(_) => "candidate",
            Canonical::Position(_) => "position",
        }
    }

    pub fn is_tombstone(&self) -> bool {
        match self {
            Canonical::Candidate(c) => c.deleted,
            Canonical::Position(p) => p.deleted,
        }
    }
}

/// ChangeEvent (already decoded) + lineage → a valid canonical record, or why not.
///
/// The start-date bound is anchored at `ev.observed_at` rather than the wall clock, so replaying an
/// event next year gives the same answer as today: see [`normalize_at`] to choose the anchor.
pub fn normalize(
    ev: &ChangeEvent,
    lineage: Lineage,
    cfg: &NormalizeConfig,
) -> Result<Canonical, Reject> {
    normalize_at(ev, lineage, cfg, ev.observed_at)
}

/// [`normalize`] with an explicit "now" (epoch ms) for the start-date bound.
pub fn normalize_at(
    ev: &ChangeEvent,
    lineage: Lineage,
    cfg: &NormalizeConfig,
    now_ms: i64,
) -> Result<Canonical, Reject> {
    let key = bullhorn::RecordKey {
        crm: &ev.crm,
        crm_id: &ev.record_id,
        source_version: ev.source_version,
        deleted: ev.op == Op::Delete,
    };
    let mut out = transform_and_validate(ev, &key, lineage, cfg, now_ms)?;
    // Mapped custom fields, for every CRM alike; a tombstone carries none.
    if let (false, Some(m)) = (key.deleted, cfg.mapping.entity(&ev.crm, &ev.entity)) {
        let attrs = attributes::extract(&ev.record, &ev.crm, m)?;
        match &mut out {
            Canonical::Candidate(c) => c.attributes = attrs,
            Canonical::Position(p) => p.attributes = attrs,
        }
    }
    Ok(out)
}

/// The CRM transform of `(crm, entity)` and the validation of the canonical record it makes.
fn transform_and_validate(
    ev: &ChangeEvent,
    key: &bullhorn::RecordKey<'_>,
    lineage: Lineage,
    cfg: &NormalizeConfig,
    now_ms: i64,
) -> Result<Canonical, Reject> {
    match (ev.crm.as_str(), ev.entity.as_str()) {
        ("bullhorn", "Candidate") => {
            let c = bullhorn::candidate(&ev.record, key, lineage, &cfg.default_country)?;
            validate::validate_candidate(&c, cfg)?;
            Ok(Canonical::Candidate(c))
        }
        ("bullhorn", "JobOrder") => {
            let p = bullhorn::position(&ev.record, key, lineage)?;
            validate::validate_position(&p, cfg, now_ms)?;
            Ok(Canonical::Position(p))
        }
        ("hubspot", "contact") => {
            let c = hubspot::candidate(&ev.record, key, lineage, &cfg.default_country)?;
            validate::validate_candidate_as(&c, cfg, validate::Profile::Hubspot)?;
            Ok(Canonical::Candidate(c))
        }
        ("hubspot", entity @ ("job" | "deal")) => {
            let p = if entity == "job" {
                hubspot::job(&ev.record, key, lineage)?
            } else {
                hubspot::deal(&ev.record, key, lineage)?
            };
            validate::validate_position_as(&p, cfg, now_ms, validate::Profile::Hubspot)?;
            Ok(Canonical::Position(p))
        }
        ("salesforce", entity) => match salesforce::role(entity, &cfg.salesforce) {
            Some(salesforce::Role::Candidate) => {
                let c = salesforce::candidate(&ev.record, key, lineage, &cfg.default_country)?;
                validate::validate_candidate_as(&c, cfg, validate::Profile::Salesforce)?;
                Ok(Canonical::Candidate(c))
            }
            Some(salesforce::Role::Position) => {
                let p = salesforce::position(&ev.record, key, lineage)?;
                validate::validate_position_as(&p, cfg, now_ms, validate::Profile::Salesforce)?;
                Ok(Canonical::Position(p))
            }
            None => Err(Rule::EntityUnknown.reject(format!(
                "salesforce object `{entity}` is in neither normalize.salesforce.candidate_objects nor position_objects"
            ))),
        },
        (crm, entity) => {
            Err(Rule::EntityUnknown
                .reject(format!("no transform for crm `{crm}` entity `{entity}`")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testkit::{self, lineage_of as lineage, NOW};
    use super::*;

    /// A Bullhorn event of record 42.
    fn event(entity: &str, op: Op, record: &str) -> ChangeEvent {
        testkit::event("bullhorn", entity, "42", op, record)
    }

    fn run(ev: &ChangeEvent) -> Result<Canonical, Reject> {
        normalize(ev, lineage(ev), &NormalizeConfig::default())
    }

    /// (case, entity, op, record body, expected canonical entity or rule)
    type CrmCase<'a> = (&'a str, &'a str, Op, &'a str, Result<&'a str, &'a str>);

    /// Runs `crm`'s dispatch table, `record` making each case's body into record 42: a mapped
    /// case gives its entity keyed `<crm>:42` (a tombstone for a delete), a refused one its rule.
    fn assert_dispatch(crm: &str, cases: &[CrmCase], record: impl Fn(&str) -> String) {
        for (name, entity, op, body, want) in cases {
            let got = run(&testkit::event(crm, entity, "42", *op, &record(body)));
            match (got, want) {
                (Ok(c), Ok(e)) => {
                    assert_eq!(c.entity(), *e, "case {name}");
                    assert_eq!(c.key(), format!("{crm}:42"), "case {name}");
                    assert_eq!(c.is_tombstone(), *op == Op::Delete, "case {name}");
                }
                (Err(r), Err(rule)) => assert_eq!(r.rule, *rule, "case {name}: {r}"),
                (got, _) => panic!("case {name}: got {got:?}, want {want:?}"),
            }
        }
    }

    /// (case, entity, op, record, expected canonical entity or (class, rule)).
    type DispatchCase<'a> = (
        &'a str,
        &'a str,
        Op,
        &'a str,
        Result<&'a str, (RejectClass, &'a str)>,
    );

    #[test]
    fn dispatch_and_reject_classes_table() {
        let cases: &[DispatchCase] = &[
            (
                "candidate",
                "Candidate",
                Op::Upsert,
                r#"{"firstName":"Ada"}"#,
                Ok("candidate"),
            ),
            (
                "job order",
                "JobOrder",
                Op::Upsert,
                r#"{"title":"Engineer"}"#,
                Ok("position"),
            ),
            (
                "unknown entity",
                "Placement",
                Op::Upsert,
                "{}",
                Err((RejectClass::Transform, "entity.unknown")),
            ),
            (
                "unknown entity delete",
                "Placement",
                Op::Delete,
                "{}",
                Err((RejectClass::Transform, "entity.unknown")),
            ),
            (
                "invalid json",
                "Candidate",
                Op::Upsert,
                r#"{"firstName":"#,
                Err((RejectClass::Decode, "record.json")),
            ),
            (
                "not json at all",
                "JobOrder",
                Op::Upsert,
                "<html>",
                Err((RejectClass::Decode, "record.json")),
            ),
            (
                "wrong field type",
                "Candidate",
                Op::Upsert,
                r#"{"firstName":{"x":1}}"#,
                Err((RejectClass::Transform, "record.shape")),
            ),
            (
                "json but not an object",
                "Candidate",
                Op::Upsert,
                "[1,2]",
                Err((RejectClass::Transform, "record.shape")),
            ),
            (
                "validation",
                "Candidate",
                Op::Upsert,
                r#"{"firstName":"Ada","email":"nope"}"#,
                Err((RejectClass::Validation, "candidate.email.format")),
            ),
        ];
        for (name, entity, op, record, want) in cases {
            let got = run(&event(entity, *op, record));
            match (got, want) {
                (Ok(c), Ok(e)) => assert_eq!(c.entity(), *e, "case {name}"),
                (Err(r), Err((class, rule))) => {
                    assert_eq!((r.class, r.rule), (*class, *rule), "case {name}: {r}");
                    assert!(!r.reason.is_empty());
                }
                (got, _) => panic!("case {name}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn mapped_fields_become_attributes_and_tombstones_carry_none() {
        let mapping: crate::config::mapping::MappingConfig = toml::from_str(
            r#"[bullhorn.candidate]
            visa_status = { field = "customText2", type = "string", enum = ["Citizen"] }"#,
        )
        .unwrap();
        let cfg = NormalizeConfig {
            mapping: std::sync::Arc::new(attributes::Mapping::compile(&mapping).unwrap()),
            ..Default::default()
        };
        let rec = r#"{"firstName":"Ana","customText2":" citizen"}"#;
        let ev = event("Candidate", Op::Upsert, rec);
        let Canonical::Candidate(c) = normalize(&ev, lineage(&ev), &cfg).unwrap() else {
            panic!("not a candidate")
        };
        assert_eq!(
            c.attributes["visa_status"],
            crate::model::AttributeValue::String("Citizen".into())
        );
        let bad = event(
            "Candidate",
            Op::Upsert,
            r#"{"firstName":"Ana","customText2":"x"}"#,
        );
        let r = normalize(&bad, lineage(&bad), &cfg).unwrap_err();
        assert_eq!(
            (r.class, r.rule),
            (RejectClass::Validation, "mapping.visa_status.enum")
        );
        // A delete is never rejected for its custom fields and carries none.
        let del = event("Candidate", Op::Delete, r#"{"customText2":"x"}"#);
        let Canonical::Candidate(t) = normalize(&del, lineage(&del), &cfg).unwrap() else {
            panic!("not a candidate")
        };
        assert!(t.deleted && t.attributes.is_empty());
        // Core rules still come first; unmapped entities are untouched.
        let job = event("JobOrder", Op::Upsert, r#"{"title":"T","customText2":"x"}"#);
        assert!(normalize(&job, lineage(&job), &cfg).is_ok());
    }

    #[test]
    fn unknown_crm_is_rejected() {
        let mut ev = event("Candidate", Op::Upsert, "{}");
        ev.crm = "hubspot".into();
        let r = run(&ev).unwrap_err();
        assert_eq!((r.class.as_str(), r.rule), ("transform", "entity.unknown"));
    }

    #[test]
    fn hubspot_dispatch_and_rules_table() {
        // (case, entity, op, properties, expected canonical entity or rule)
        let cases: &[CrmCase] = &[
            (
                "contact",
                "contact",
                Op::Upsert,
                r#"{"firstname":"Ada","email":"ada@x.io"}"#,
                Ok("candidate"),
            ),
            (
                "contact with email only",
                "contact",
                Op::Upsert,
                r#"{"email":"ada@x.io"}"#,
                Ok("candidate"),
            ),
            (
                "contact with nothing",
                "contact",
                Op::Upsert,
                r#"{"phone":"617 555 0100"}"#,
                Err("hubspot.candidate.identity.required"),
            ),
            (
                "contact bad email",
                "contact",
                Op::Upsert,
                r#"{"firstname":"Ada","email":"ada.x.io"}"#,
                Err("candidate.email.format"),
            ),
            (
                "contact lead status",
                "contact",
                Op::Upsert,
                r#"{"firstname":"Ada","hs_lead_status":"open_deal"}"#,
                Ok("candidate"),
            ),
            (
                "contact unknown lead status",
                "contact",
                Op::Upsert,
                r#"{"firstname":"Ada","hs_lead_status":"Active"}"#,
                Err("hubspot.candidate.lead_status.allowed"),
            ),
            (
                "job",
                "job",
                Op::Upsert,
                r#"{"job_title":"Engineer","job_status":"OPEN"}"#,
                Ok("position"),
            ),
            (
                "job without title",
                "job",
                Op::Upsert,
                r#"{"job_status":"OPEN"}"#,
                Err("position.title.required"),
            ),
            (
                "job bullhorn status",
                "job",
                Op::Upsert,
                r#"{"job_title":"Engineer","job_status":"Accepting Candidates"}"#,
                Err("hubspot.position.status.allowed"),
            ),
            (
                "job negative salary",
                "job",
                Op::Upsert,
                r#"{"job_title":"Engineer","salary":"-1"}"#,
                Err("position.salary.non_negative"),
            ),
            (
                "job bad number",
                "job",
                Op::Upsert,
                r#"{"job_title":"Engineer","salary":"lots"}"#,
                Err("record.shape"),
            ),
            (
                "deal",
                "deal",
                Op::Upsert,
                r#"{"dealname":"Engineer","dealstage":"closedwon"}"#,
                Ok("position"),
            ),
            (
                "archived contact",
                "contact",
                Op::Delete,
                r#"{}"#,
                Ok("candidate"),
            ),
            (
                "archived job broken",
                "job",
                Op::Delete,
                "nope",
                Ok("position"),
            ),
            (
                "company is not mapped",
                "company",
                Op::Upsert,
                r#"{"name":"Acme"}"#,
                Err("entity.unknown"),
            ),
        ];
        assert_dispatch("hubspot", cases, |props| {
            if props == "nope" {
                props.to_owned()
            } else {
                format!(r#"{{"id":"42","properties":{props}}}"#)
            }
        });
    }

    #[test]
    fn salesforce_dispatch_and_rules_table() {
        // (case, entity, op, fields, expected canonical entity or rule)
        let cases: &[CrmCase] = &[
            (
                "contact",
                "Contact",
                Op::Upsert,
                r#""FirstName":"Ada","LastName":"Lovelace","Email":"ada@x.io""#,
                Ok("candidate"),
            ),
            (
                "contact, last name only",
                "Contact",
                Op::Upsert,
                r#""LastName":"Lovelace""#,
                Ok("candidate"),
            ),
            (
                "contact without a name",
                "Contact",
                Op::Upsert,
                r#""Email":"ada@x.io""#,
                Err("candidate.name.required"),
            ),
            (
                "contact bad email",
                "Contact",
                Op::Upsert,
                r#""LastName":"L","Email":"ada at x dot com""#,
                Err("candidate.email.format"),
            ),
            (
                "contact odd phone is kept",
                "Contact",
                Op::Upsert,
                r#""LastName":"L","Phone":"call me maybe""#,
                Ok("candidate"),
            ),
            (
                "contact status",
                "Contact",
                Op::Upsert,
                r#""LastName":"L","Candidate_Status__c":"Do Not Contact""#,
                Ok("candidate"),
            ),
            (
                "contact unknown status",
                "Contact",
                Op::Upsert,
                r#""LastName":"L","Candidate_Status__c":"Hired""#,
                Err("salesforce.candidate.status.allowed"),
            ),
            (
                "contact name of wrong type",
                "Contact",
                Op::Upsert,
                r#""LastName":{"x":1}"#,
                Err("record.shape"),
            ),
            (
                "contact bad created date",
                "Contact",
                Op::Upsert,
                r#""LastName":"L","CreatedDate":"soon""#,
                Err("record.shape"),
            ),
            (
                "position",
                "Position__c",
                Op::Upsert,
                r#""Name":"Engineer","Status__c":"On Hold""#,
                Ok("position"),
            ),
            (
                "position object case",
                "position__C",
                Op::Upsert,
                r#""Name":"Engineer""#,
                Ok("position"),
            ),
            (
                "position without name",
                "Position__c",
                Op::Upsert,
                r#""Status__c":"Open""#,
                Err("position.title.required"),
            ),
            (
                "position unknown status",
                "Position__c",
                Op::Upsert,
                r#""Name":"E","Status__c":"Accepting Candidates""#,
                Err("salesforce.position.status.allowed"),
            ),
            (
                "position salary range",
                "Position__c",
                Op::Upsert,
                r#""Name":"E","Salary_Min__c":90000,"Salary_Max__c":80000"#,
                Err("salesforce.position.salary.range"),
            ),
            (
                "position negative salary",
                "Position__c",
                Op::Upsert,
                r#""Name":"E","Salary_Min__c":-1"#,
                Err("position.salary.non_negative"),
            ),
            (
                "position salary as text",
                "Position__c",
                Op::Upsert,
                r#""Name":"E","Salary_Min__c":"lots""#,
                Err("record.shape"),
            ),
            (
                "position remote not a boolean",
                "Position__c",
                Op::Upsert,
                r#""Name":"E","Remote__c":"yes""#,
                Err("record.shape"),
            ),
            (
                "position start too late",
                "Position__c",
                Op::Upsert,
                r#""Name":"E","Open_Date__c":"2099-01-01""#,
                Err("position.start_date.range"),
            ),
            (
                "deleted contact",
                "Contact",
                Op::Delete,
                r#""IsDeleted":true"#,
                Ok("candidate"),
            ),
            (
                "deleted position of bad shape",
                "Position__c",
                Op::Delete,
                r#""Salary_Min__c":"x","Name":[1]"#,
                Ok("position"),
            ),
            (
                "object without a role",
                "Account",
                Op::Upsert,
                r#""Name":"Acme""#,
                Err("entity.unknown"),
            ),
        ];
        assert_dispatch("salesforce", cases, |fields| {
            format!(r#"{{"Id":"42",{fields}}}"#)
        });
        // Broken JSON: a decode reject for a change, a tombstone for a delete.
        let mut ev = testkit::event("salesforce", "Contact", "42", Op::Upsert, "{\"Id\":");
        assert_eq!(run(&ev).unwrap_err().rule, "record.json");
        ev.op = Op::Delete;
        assert!(run(&ev).unwrap().is_tombstone());
    }

    #[test]
    fn deletes_are_tombstones_that_bypass_validation() {
        // Records that would fail validation, or not even parse, still give a tombstone.
        let cases: &[(&str, &str, &str)] = &[
            ("empty candidate", "Candidate", "{}"),
            ("invalid json", "Candidate", "not json"),
            ("empty string", "JobOrder", ""),
            (
                "bad email",
                "Candidate",
                r#"{"firstName":"Ada","email":"nope"}"#,
            ),
            (
                "negative salary",
                "JobOrder",
                r#"{"title":"X","salary":-5}"#,
            ),
            (
                "wrong types",
                "JobOrder",
                r#"{"title":{"a":1},"salary":"abc"}"#,
            ),
        ];
        for (name, entity, record) in cases {
            let ev = event(entity, Op::Delete, record);
            let c = run(&ev).unwrap_or_else(|r| panic!("case {name}: {r}"));
            assert!(c.is_tombstone(), "case {name}");
            assert_eq!(c.key(), "bullhorn:42", "case {name}");
            match c {
                Canonical::Candidate(c) => {
                    assert_eq!(c.source_version, 1_700_000_000_000);
                    assert_eq!(c.lineage, lineage(&ev));
                }
                Canonical::Position(p) => {
                    assert_eq!(p.source_version, 1_700_000_000_000);
                    assert_eq!(p.lineage, lineage(&ev));
                }
            }
        }
    }

    #[test]
    fn delete_keeps_fields_it_can_read() {
        let ev = event(
            "Candidate",
            Op::Delete,
            r#"{"firstName":" Ada ","email":"nope"}"#,
        );
        let Canonical::Candidate(c) = run(&ev).unwrap() else {
            panic!("not a candidate")
        };
        assert!(c.deleted);
        assert_eq!(c.first_name.as_deref(), Some("Ada"));
        assert_eq!(c.email.as_deref(), Some("nope"));
    }

    #[test]
    fn start_date_bound_follows_the_given_now() {
        // Start 2028-06-01: within five years of 2025, not of 2020.
        let rec = r#"{"title":"Engineer","startDate":1843516800000}"#;
        let ev = event("JobOrder", Op::Upsert, rec);
        let cfg = NormalizeConfig::default();
        assert!(normalize_at(&ev, lineage(&ev), &cfg, NOW).is_ok());
        let r = normalize_at(&ev, lineage(&ev), &cfg, 1_577_836_800_000).unwrap_err();
        assert_eq!(r.rule, "position.start_date.range");
        // normalize() anchors at observed_at (NOW here).
        assert!(normalize(&ev, lineage(&ev), &cfg).is_ok());
    }

    #[test]
    fn output_is_deterministic() {
        let rec = r#"{"firstName":"José","lastName":"García","email":"J@X.COM","phone":"617 555 0100",
            "primarySkills":{"total":2,"data":[{"id":1,"name":"Rust"},{"id":2,"name":"SQL"}]},"skillSet":"sql, Kafka"}"#;
        let ev = event("Candidate", Op::Upsert, rec);
        let a = format!("{:?}", run(&ev).unwrap());
        let b = format!("{:?}", run(&ev).unwrap());
        assert_eq!(a, b);
    }
}
