//! Bullhorn transform: a Candidate's JSON becomes a canonical [`Candidate`], a JobOrder's a canonical
//! [`Position`].
//!
//! The JSON is read into borrowed wire structs that name only the fields we map (serde skips the rest
//! without building them), so a 5 KB record costs one pass and a handful of small allocations. The wire
//! types absorb Bullhorn's looseness: any text field may come as an array (`"status":["Active"]`;
//! the first element counts), numbers may come as strings (`"salary":"35.0000"`), booleans as 0/1,
//! timestamps are epoch ms. A field with a type we cannot use is a `record.shape` reject; invalid JSON
//! is `record.json`.
//!
//! Mapping then cleans every value ([`super::text`]), lower-cases emails, puts phones in E.164 with the
//! address's country ([`super::phone`]), strips HTML from descriptions and merges to-many skills with
//! the free-text skill list. Key fields (crm, id, version) come from the [`ChangeEvent`] envelope, never
//! from the record body, so a tombstone can be built even from an empty or broken delete record.
//!
//! [`ChangeEvent`]: crate::model::ChangeEvent

use serde::Deserialize;

use crate::model::{Address, Candidate, Lineage, Position};

use super::email::normalize_email;
use super::phone::normalize_phone;
use super::text::{clean_opt, clean_text, long_text};
use super::wire::{parse, Count, Flag, Int, Num, ScalarText};
use super::Reject;

/// The identity of the record being transformed, from the event envelope.
#[derive(Debug, Clone, Copy)]
pub struct RecordKey<'a> {
    pub crm: &'a str,
    pub crm_id: &'a str,
    /// Epoch ms.
    pub source_version: i64,
    /// A delete: build a tombstone, never fail.
    pub deleted: bool,
}

/// Bullhorn `Candidate` JSON → canonical [`Candidate`]. `default_country` (ISO alpha-2) is used for
/// phone numbers when the address names no country.
pub fn candidate(
    record: &str,
    key: &RecordKey<'_>,
    lineage: Lineage,
    default_country: &str,
) -> Result<Candidate, Reject> {
    let bh: BhCandidate<'_> = parse(record, key)?;
    let address = map_address(bh.address.as_ref());
    let country = address
        .as_ref()
        .and_then(|a| a.country_code.as_deref())
        .unwrap_or(default_country);
    let mut skills = Vec::new();
    add_to_many(&mut skills, bh.primary_skills.as_ref());
    add_skill_list(&mut skills, bh.skill_set.get());
    let (owner_id, owner_name) = map_person(bh.owner.as_ref());
    Ok(Candidate {
        crm: key.crm.to_owned(),
        crm_id: key.crm_id.to_owned(),
        source_version: key.source_version,
        deleted: key.deleted,
        first_name: clean_opt(bh.first_name.get()),
        last_name: clean_opt(bh.last_name.get()),
        email: bh.email.get().and_then(normalize_email),
        phone: bh.phone.get().and_then(|p| normalize_phone(p, country)),
        mobile: bh.mobile.get().and_then(|p| normalize_phone(p, country)),
        address,
        status: clean_opt(bh.status.get()),
        occupation: clean_opt(bh.occupation.get()),
        company_name: clean_opt(bh.company_name.get()),
        skills,
        summary: long_text(bh.description.get()),
        date_available: bh.date_available.0,
        owner_id,
        owner_name,
        date_added: bh.date_added.0,
        lineage,
        attributes: Default::default(),
    })
}

/// Bullhorn `JobOrder` JSON → canonical [`Position`].
pub fn position(record: &str, key: &RecordKey<'_>, lineage: Lineage) -> Result<Position, Reject> {
    let bh: BhJobOrder<'_> = parse(record, key)?;
    let mut skills = Vec::new();
    add_to_many(&mut skills, bh.skills.as_ref());
    add_skill_list(&mut skills, bh.skill_list.get());
    let (owner_id, owner_name) = map_person(bh.owner.as_ref());
    let corp = bh.client_corporation.as_ref();
    Ok(Position {
        crm: key.crm.to_owned(),
        crm_id: key.crm_id.to_owned(),
        source_version: key.source_version,
        deleted: key.deleted,
        title: clean_opt(bh.title.get()),
        description: long_text(bh.description.get()),
        status: clean_opt(bh.status.get()),
        is_open: bh.is_open.0,
        employment_type: clean_opt(bh.employment_type.get()),
        salary: bh.salary.0,
        salary_unit: clean_opt(bh.salary_unit.get()),
        pay_rate: bh.pay_rate.0,
        num_openings: bh.num_openings.0,
        start_date: bh.start_date.0,
        skills,
        address: map_address(bh.address.as_ref()),
        client_corporation_id: corp.and_then(|c| clean_opt(c.id.get())),
        client_corporation_name: corp.and_then(|c| clean_opt(c.name.get())),
        owner_id,
        owner_name,
        date_added: bh.date_added.0,
        lineage,
        attributes: Default::default(),
    })
}

fn map_person(p: Option<&BhPerson<'_>>) -> (Option<String>, Option<String>) {
    let Some(p) = p else { return (None, None) };
    let id = clean_opt(p.id.get());
    let name = match (clean_opt(p.first_name.get()), clean_opt(p.last_name.get())) {
        (Some(f), Some(l)) => Some(format!("{f} {l}")),
        (Some(n), None) | (None, Some(n)) => Some(n),
        (None, None) => clean_opt(p.name.get()),
    };
    (id, name)
}

fn map_address(a: Option<&BhAddress<'_>>) -> Option<Address> {
    let a = a?;
    let country_code = a
        .country_code
        .get()
        .map(clean_text)
        .filter(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()))
        .map(|c| c.to_ascii_uppercase())
        .or_else(|| a.country_id.0.and_then(country_for_id).map(str::to_owned));
    let out = Address {
        line1: clean_opt(a.address1.get()),
        line2: clean_opt(a.address2.get()),
        city: clean_opt(a.city.get()),
        state: clean_opt(a.state.get()),
        zip: clean_opt(a.zip.get()),
        country_code,
    };
    // Bullhorn sends `{"address1":"","address2":null,...}` for "no address".
    (out != Address::default()).then_some(out)
}

/// Bullhorn's `countryID` → ISO code, for records that carry the id without `countryCode`. Only 1 =
/// United States is documented; the others are the ids our simulator uses (from Bullhorn's Country
/// entity) for the countries whose phone plans we know. `countryCode`, when present, always wins.
fn country_for_id(id: i64) -> Option<&'static str> {
    Some(match id {
        1 => "US",
        2 => "CA",
        2359 => "GB",
        2224 => "DE",
        2221 => "FR",
        2249 => "IN",
        2206 => "AU",
        2258 => "JP",
        _ => return None,
    })
}

fn add_to_many(out: &mut Vec<String>, many: Option<&ToMany<'_>>) {
    for item in many.map_or(&[][..], |m| &m.data[..]) {
        if let Some(name) = item.name.get() {
            add_skill(out, name);
        }
    }
}

/// Free-text skill lists are separated by commas, semicolons or line breaks.
fn add_skill_list(out: &mut Vec<String>, list: Option<&str>) {
    for part in list.unwrap_or_default().split([',', ';', '\n']) {
        add_skill(out, part);
    }
}

/// Adds a cleaned skill unless it is empty or already present ignoring case; the first spelling and
/// the first position win, so the output order is the CRM's.
fn add_skill(out: &mut Vec<String>, raw: &str) {
    let s = clean_text(raw);
    if s.is_empty() {
        return;
    }
    let dup = out.iter().any(|o| {
        if o.is_ascii() && s.is_ascii() {
            o.eq_ignore_ascii_case(&s)
        } else {
            o.to_lowercase() == s.to_lowercase()
        }
    });
    if !dup {
        out.push(s);
    }
}

// ---- wire types: only the fields we map; every one optional and lenient ----

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct BhCandidate<'a> {
    #[serde(borrow)]
    first_name: Text<'a>,
    #[serde(borrow)]
    last_name: Text<'a>,
    #[serde(borrow)]
    email: Text<'a>,
    #[serde(borrow)]
    phone: Text<'a>,
    #[serde(borrow)]
    mobile: Text<'a>,
    #[serde(borrow)]
    address: Option<BhAddress<'a>>,
    #[serde(borrow)]
    status: Text<'a>,
    #[serde(borrow)]
    occupation: Text<'a>,
    #[serde(borrow)]
    company_name: Text<'a>,
    #[serde(borrow)]
    primary_skills: Option<ToMany<'a>>,
    #[serde(borrow)]
    skill_set: Text<'a>,
    #[serde(borrow)]
    description: Text<'a>,
    date_available: Int,
    #[serde(borrow)]
    owner: Option<BhPerson<'a>>,
    date_added: Int,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct BhJobOrder<'a> {
    #[serde(borrow)]
    title: Text<'a>,
    #[serde(borrow)]
    description: Text<'a>,
    #[serde(borrow)]
    status: Text<'a>,
    is_open: Flag,
    #[serde(borrow)]
    employment_type: Text<'a>,
    salary: Num,
    #[serde(borrow)]
    salary_unit: Text<'a>,
    pay_rate: Num,
    num_openings: Count,
    start_date: Int,
    #[serde(borrow)]
    skills: Option<ToMany<'a>>,
    #[serde(borrow)]
    skill_list: Text<'a>,
    #[serde(borrow)]
    address: Option<BhAddress<'a>>,
    #[serde(borrow)]
    client_corporation: Option<BhCorporation<'a>>,
    #[serde(borrow)]
    owner: Option<BhPerson<'a>>,
    date_added: Int,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct BhAddress<'a> {
    #[serde(borrow)]
    address1: Text<'a>,
    #[serde(borrow)]
    address2: Text<'a>,
    #[serde(borrow)]
    city: Text<'a>,
    #[serde(borrow)]
    state: Text<'a>,
    #[serde(borrow)]
    zip: Text<'a>,
    #[serde(rename = "countryID")]
    country_id: Int,
    #[serde(borrow, rename = "countryCode")]
    country_code: Text<'a>,
}

/// A to-one CorporateUser or contact: `{"id":1,"firstName":"Iam","lastName":"contact"}`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct BhPerson<'a> {
    #[serde(borrow)]
    id: Text<'a>,
    #[serde(borrow)]
    first_name: Text<'a>,
    #[serde(borrow)]
    last_name: Text<'a>,
    #[serde(borrow)]
    name: Text<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct BhCorporation<'a> {
    #[serde(borrow)]
    id: Text<'a>,
    #[serde(borrow)]
    name: Text<'a>,
}

/// A to-many association: `{"total":3,"data":[{"id":1,"name":"Rust"}]}`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ToMany<'a> {
    #[serde(borrow)]
    data: Vec<Named<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Named<'a> {
    #[serde(borrow)]
    name: Text<'a>,
}

/// Bullhorn's `Strings`: a string, an array of strings (the first counts), a number or boolean
/// (ids are numbers; kept as their text), or null. Borrowed from the input unless it had escapes.
type Text<'a> = ScalarText<'a, true>;

#[cfg(test)]
mod tests {
    use super::super::testkit::{self, Fixture};
    use super::*;

    const FX: Fixture = Fixture {
        raw_partition: 2,
        raw_offset: 1234,
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
        ..Fixture::new(
            "bullhorn",
            "4711",
            1_718_000_000_000,
            "crm.raw.bullhorn.candidate",
        )
    };

    /// A candidate as Bullhorn's search returns it, with the quirks we handle: status as an array,
    /// padded and invisible characters, upper-case email, to-many skills overlapping the skill set,
    /// an HTML resume, a partial address with countryCode.
    const CANDIDATE: &str = r#"{
        "id": 4711,
        "firstName": "  Jose\u0301 ",
        "lastName": "\u200fGarc\u00eda\u202e",
        "name": "José García",
        "email": "  JOSE.GARCIA@Example.COM ",
        "phone": "020 7946 0958",
        "mobile": "+44 7700 900123",
        "address": {"address1": "1 Main St", "address2": null, "city": "London", "state": "",
                    "zip": "EC1A 1BB", "countryID": 2359, "countryName": "United Kingdom", "countryCode": "GB"},
        "status": ["Active", "Placed"],
        "source": ["LinkedIn"],
        "occupation": "\ufeffSenior Data Engineer\t",
        "companyName": "Acme &amp; Sons",
        "skillSet": "Python, sql; Kafka,,  rust ",
        "description": "<html><body><h1>José García</h1><p>Data engineer &ndash; 10 years.</p><ul><li>Built pipelines</li><li>Led a team</li></ul></body></html>",
        "owner": {"id": 12, "firstName": "Iam", "lastName": "Recruiter"},
        "primarySkills": {"total": 3, "data": [{"id": 1, "name": "Rust"}, {"id": 2, "name": "SQL"}, {"id": 3, "name": "Airflow"}]},
        "dateAdded": 1282253171220,
        "dateAvailable": 1735689600000,
        "dateLastModified": 1718000000000,
        "isDeleted": false,
        "customText1": "ignored"
    }"#;

    #[test]
    fn candidate_fixture_maps_every_field() {
        let c = candidate(CANDIDATE, &FX.key(false), FX.lineage(), "US").unwrap();
        let want = Candidate {
            first_name: Some("Jos\u{e9}".into()),
            last_name: Some("Garc\u{ed}a".into()),
            email: Some("jose.garcia@example.com".into()),
            phone: Some("+442079460958".into()),
            mobile: Some("+447700900123".into()),
            address: Some(Address {
                line1: Some("1 Main St".into()),
                line2: None,
                city: Some("London".into()),
                state: None,
                zip: Some("EC1A 1BB".into()),
                country_code: Some("GB".into()),
            }),
            status: Some("Active".into()),
            occupation: Some("Senior Data Engineer".into()),
            // Not HTML: entities in one-line fields are the CRM's literal text.
            company_name: Some("Acme &amp; Sons".into()),
            skills: vec![
                "Rust".into(),
                "SQL".into(),
                "Airflow".into(),
                "Python".into(),
                "Kafka".into(),
            ],
            summary: Some(
                "Jos\u{e9} Garc\u{ed}a\n\nData engineer \u{2013} 10 years.\n\nBuilt pipelines\nLed a team".into(),
            ),
            date_available: Some(1_735_689_600_000),
            owner_id: Some("12".into()),
            owner_name: Some("Iam Recruiter".into()),
            date_added: Some(1_282_253_171_220),
            ..FX.candidate()
        };
        assert_eq!(c, want);
    }

    const JOB_ORDER: &str = r#"{
        "id": 901,
        "title": "  Senior Rust Engineer \u200b(URGENT!!)",
        "description": "<p><strong>Senior Rust Engineer</strong> &ndash; Blue Harbor &amp; Co</p>\n<p style=\"font-family: Arial\">Our client is hiring.&nbsp;Apply today!</p>\n<h3>Requirements</h3>\n<ul>\n  <li>5 years of Rust</li>\n  <li>Kafka</li>\n</ul><br>\n",
        "publicDescription": "<p>ignored</p>",
        "status": "Accepting Candidates",
        "isOpen": 1,
        "employmentType": "Contract To Hire",
        "clientCorporation": {"id": 77, "name": "Blue Harbor & Co"},
        "clientContact": {"id": 5},
        "address": {"city": "Omaha", "state": "NE", "zip": "68124", "countryID": 1},
        "salary": "135000.0000",
        "salaryUnit": "Per Year",
        "payRate": 35.0,
        "numOpenings": 2,
        "startDate": 1735689600000,
        "dateAdded": 1704067200000,
        "skills": {"total": 2, "data": [{"id": 9, "name": "Rust"}, {"id": 10, "name": "Kafka"}]},
        "skillList": "rust,Kafka,PostgreSQL",
        "owner": {"id": 3, "firstName": "Ann", "lastName": "Owner"},
        "isDeleted": false
    }"#;

    #[test]
    fn job_order_fixture_maps_every_field() {
        let p = position(JOB_ORDER, &FX.key(false), FX.lineage()).unwrap();
        let want = Position {
            title: Some("Senior Rust Engineer (URGENT!!)".into()),
            description: Some(
                "Senior Rust Engineer \u{2013} Blue Harbor & Co\n\nOur client is hiring.\u{a0}Apply today!\n\nRequirements\n\n5 years of Rust\nKafka"
                    .replace('\u{a0}', " "),
            ),
            status: Some("Accepting Candidates".into()),
            is_open: Some(true),
            employment_type: Some("Contract To Hire".into()),
            salary: Some(135_000.0),
            salary_unit: Some("Per Year".into()),
            pay_rate: Some(35.0),
            num_openings: Some(2),
            start_date: Some(1_735_689_600_000),
            skills: vec!["Rust".into(), "Kafka".into(), "PostgreSQL".into()],
            address: Some(Address {
                line1: None,
                line2: None,
                city: Some("Omaha".into()),
                state: Some("NE".into()),
                zip: Some("68124".into()),
                country_code: Some("US".into()),
            }),
            client_corporation_id: Some("77".into()),
            client_corporation_name: Some("Blue Harbor & Co".into()),
            owner_id: Some("3".into()),
            owner_name: Some("Ann Owner".into()),
            date_added: Some(1_704_067_200_000),
            ..FX.position()
        };
        assert_eq!(p, want);
    }

    #[test]
    fn field_quirks_table() {
        // (case, JobOrder JSON, check)
        let cases: &[testkit::MapCase<Position>] = &[
            ("isOpen false", r#"{"isOpen":false}"#, |p| {
                p.is_open == Some(false)
            }),
            ("isOpen 0", r#"{"isOpen":0}"#, |p| p.is_open == Some(false)),
            ("isOpen string", r#"{"isOpen":"true"}"#, |p| {
                p.is_open == Some(true)
            }),
            ("salary number", r#"{"salary":35.5}"#, |p| {
                p.salary == Some(35.5)
            }),
            ("salary int", r#"{"salary":90000}"#, |p| {
                p.salary == Some(90_000.0)
            }),
            ("salary empty string", r#"{"salary":""}"#, |p| {
                p.salary.is_none()
            }),
            ("salary null", r#"{"salary":null}"#, |p| p.salary.is_none()),
            ("status array", r#"{"status":["Open","Closed"]}"#, |p| {
                p.status.as_deref() == Some("Open")
            }),
            ("status empty array", r#"{"status":[]}"#, |p| {
                p.status.is_none()
            }),
            ("status blank", r#"{"status":"  "}"#, |p| p.status.is_none()),
            (
                "startDate string",
                r#"{"startDate":"1735689600000"}"#,
                |p| p.start_date == Some(1_735_689_600_000),
            ),
            ("startDate float", r#"{"startDate":1735689600000.0}"#, |p| {
                p.start_date == Some(1_735_689_600_000)
            }),
            (
                "escaped text owned",
                r#"{"title":"A \"quoted\" title\n"}"#,
                |p| p.title.as_deref() == Some("A \"quoted\" title"),
            ),
            (
                "empty address is none",
                r#"{"address":{"address1":"","address2":null}}"#,
                |p| p.address.is_none(),
            ),
            (
                "country code lower-case",
                r#"{"address":{"countryCode":"de"}}"#,
                |p| p.address.as_ref().and_then(|a| a.country_code.as_deref()) == Some("DE"),
            ),
            (
                "unknown countryID",
                r#"{"address":{"countryID":9999}}"#,
                |p| p.address.is_none(),
            ),
            (
                "skills dedupe ignores case",
                r#"{"skills":{"total":1,"data":[{"id":1,"name":"SQL"}]},"skillList":"sql; Sql,\nGo"}"#,
                |p| p.skills == ["SQL", "Go"],
            ),
            (
                "skills without names",
                r#"{"skills":{"total":1,"data":[{"id":1}]}}"#,
                |p| p.skills.is_empty(),
            ),
            (
                "owner name only",
                r#"{"owner":{"id":"3","name":"Team Lead"}}"#,
                |p| p.owner_name.as_deref() == Some("Team Lead"),
            ),
            ("owner id only", r#"{"owner":{"id":3}}"#, |p| {
                p.owner_id.as_deref() == Some("3") && p.owner_name.is_none()
            }),
            (
                "description empty html",
                r#"{"description":"<p> </p>"}"#,
                |p| p.description.is_none(),
            ),
        ];
        testkit::assert_maps(cases, |json| position(json, &FX.key(false), FX.lineage()));
    }

    #[test]
    fn unusable_types_are_shape_rejects() {
        let cases: &[(&str, &str)] = &[
            ("salary text", r#"{"salary":"negotiable"}"#),
            ("salary NaN string", r#"{"salary":"NaN"}"#),
            ("isOpen 2", r#"{"isOpen":2}"#),
            ("startDate text", r#"{"startDate":"next week"}"#),
            ("startDate fraction", r#"{"startDate":1.5}"#),
            ("numOpenings huge", r#"{"numOpenings":99999999999}"#),
            ("title object", r#"{"title":{"en":"x"}}"#),
            ("skills not to-many", r#"{"skills":"Rust"}"#),
        ];
        let rejects = testkit::assert_rejects(cases, "record.shape", |json| {
            position(json, &FX.key(false), FX.lineage())
        });
        for ((name, _), r) in cases.iter().zip(&rejects) {
            assert_eq!(r.class, super::super::RejectClass::Transform, "case {name}");
        }
    }

    #[test]
    fn candidate_phones_use_address_country_then_default() {
        let cases: &[(&str, &str, &str, Option<&str>)] = &[
            (
                "default US",
                r#"{"phone":"617-555-0100"}"#,
                "US",
                Some("+16175550100"),
            ),
            (
                "default GB",
                r#"{"phone":"020 7946 0958"}"#,
                "GB",
                Some("+442079460958"),
            ),
            (
                "countryID wins over default",
                r#"{"phone":"030 1234567","address":{"countryID":2224}}"#,
                "US",
                Some("+49301234567"),
            ),
            (
                "unknown country keeps digits",
                r#"{"phone":"6123 4567","address":{"countryCode":"SG"}}"#,
                "US",
                Some("61234567"),
            ),
            (
                "garbage without digits",
                r#"{"phone":"call me"}"#,
                "US",
                None,
            ),
            (
                "malformed kept as digits",
                r#"{"phone":"555-12"}"#,
                "US",
                Some("55512"),
            ),
        ];
        for (name, json, default, want) in cases {
            let c = candidate(json, &FX.key(false), FX.lineage(), default).unwrap();
            assert_eq!(c.phone.as_deref(), *want, "case {name}");
        }
    }

    #[test]
    fn delete_with_broken_record_is_a_bare_tombstone() {
        let c = candidate("{not json", &FX.key(true), FX.lineage(), "US").unwrap();
        assert!(c.deleted);
        assert_eq!(
            (c.crm_id.as_str(), c.source_version),
            ("4711", 1_718_000_000_000)
        );
        assert_eq!(c.first_name, None);
        let p = position(r#"{"salary":"x"}"#, &FX.key(true), FX.lineage()).unwrap();
        assert!(p.deleted && p.salary.is_none());
    }
}
