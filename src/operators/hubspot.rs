//! HubSpot transform: a contact's JSON becomes a canonical [`Candidate`]; a job (the jobs custom
//! object) or a deal becomes a canonical [`Position`].
//!
//! A HubSpot CRM object reads `{"id":"101","properties":{...},"createdAt":..,"updatedAt":..,
//! "archived":false}`, and every property value is a string or null, whatever the property's type:
//! numbers (`"135000.50"`), booleans (`"true"`), dates (`"2024-01-10"` or epoch ms as text) and
//! datetimes (ISO 8601, `"2024-01-10T15:03:22.123Z"`) all come as text, and multi-select values are
//! joined with `;`. The wire types below read only the properties we map, borrowed from the input;
//! a property that is an object or an array, or a number, date or boolean whose text does not parse,
//! is a `record.shape` reject naming the property; invalid JSON is `record.json`.
//!
//! Mapping then cleans every value like the Bullhorn transform does ([`super::text`],
//! [`super::email`], [`super::phone`]); free-text countries ("United States", "Deutschland", "UK")
//! become ISO codes where we know them. Key fields (crm, id, version) come from the event envelope,
//! so an archived object, or an id known only from a deletion webhook, still gives a tombstone.
//!
//! Which properties map where (custom objects have no fixed names: the jobs object's names below are
//! the ones the project's simulator and the README's HubSpot set-up use):
//!
//! | canonical | contact | job (custom object) | deal |
//! |---|---|---|---|
//! | first/last name | `firstname`, `lastname` | | |
//! | email, phone, mobile | `email`, `phone`, `mobilephone` | | |
//! | occupation, company | `jobtitle`, `company` | | |
//! | status | `hs_lead_status` | `job_status` | `dealstage` |
//! | title | | `job_title` | `dealname` |
//! | description / summary | `summary` | `job_description` | `description` |
//! | skills (`;` or `,` separated) | `skills` | `skills` | `skills` |
//! | address | `address`, `city`, `state`, `zip`, `country` | `city`, `state`, `zip`, `country` | |
//! | salary, pay rate, unit | | `salary` (else `salary_min`), `pay_rate`, `salary_unit` | `amount` |
//! | (address from) `location`, `"City, Country"` | | `location` when no `city`/`country` | `location` |
//! | openings, start date, type | | `openings`, `start_date`, `employment_type` | `start_date` |
//! | is open | | `is_open` | not `hs_is_closed` |
//! | company of the position | | `company_id`, `company_name` | |
//! | owner id | `hubspot_owner_id` | `hubspot_owner_id` | `hubspot_owner_id` |
//! | date added | `createdate` | `hs_createdate` | `createdate` |
//! | date available | `date_available` | | |

use serde::Deserialize;

use crate::model::{Address, Candidate, Lineage, Position};

use super::bullhorn::RecordKey;
use super::email::normalize_email;
use super::phone::normalize_phone;
use super::text::{clean_opt, clean_text, long_text, skill_list as skills};
use super::validate::Rule;
use super::wire::{parse, ScalarText};
use super::Reject;

/// HubSpot contact JSON → canonical [`Candidate`]. `default_country` (ISO alpha-2) is used for
/// phone numbers when the contact names no country we know.
pub fn candidate(
    record: &str,
    key: &RecordKey<'_>,
    lineage: Lineage,
    default_country: &str,
) -> Result<Candidate, Reject> {
    let hs: Envelope<ContactProps<'_>> = parse(record, key)?;
    let p = &hs.properties;
    let lenient = key.deleted;
    let address = map_address(
        p.address.get(),
        p.city.get(),
        p.state.get(),
        p.zip.get(),
        p.country.get(),
    );
    let country = address
        .as_ref()
        .and_then(|a| a.country_code.as_deref())
        .unwrap_or(default_country);
    Ok(Candidate {
        crm: key.crm.to_owned(),
        crm_id: key.crm_id.to_owned(),
        source_version: key.source_version,
        deleted: key.deleted,
        first_name: clean_opt(p.firstname.get()),
        last_name: clean_opt(p.lastname.get()),
        email: p.email.get().and_then(normalize_email),
        phone: p.phone.get().and_then(|v| normalize_phone(v, country)),
        mobile: p
            .mobilephone
            .get()
            .and_then(|v| normalize_phone(v, country)),
        address,
        status: clean_opt(p.hs_lead_status.get()),
        occupation: clean_opt(p.jobtitle.get()),
        company_name: clean_opt(p.company.get()),
        skills: skills(p.skills.get()),
        summary: long_text(p.summary.get()),
        date_available: date(lenient, "date_available", p.date_available.get())?,
        owner_id: clean_opt(p.hubspot_owner_id.get()),
        owner_name: None,
        date_added: date(lenient, "createdate", p.createdate.get())?,
        lineage,
        attributes: Default::default(),
    })
}

/// HubSpot jobs custom object JSON → canonical [`Position`].
pub fn job(record: &str, key: &RecordKey<'_>, lineage: Lineage) -> Result<Position, Reject> {
    let hs: Envelope<JobProps<'_>> = parse(record, key)?;
    let p = &hs.properties;
    let lenient = key.deleted;
    let salary_min = number(lenient, "salary_min", p.salary_min.get())?;
    let salary_max = number(lenient, "salary_max", p.salary_max.get())?;
    if let (Some(lo), Some(hi), false) = (salary_min, salary_max, lenient) {
        if lo > hi {
            return Err(Rule::HubspotPositionSalaryRange
                .reject(format!("salary_min {lo} is above salary_max {hi}")));
        }
    }
    let (loc_city, loc_country) = split_location(p.location.get());
    Ok(Position {
        crm: key.crm.to_owned(),
        crm_id: key.crm_id.to_owned(),
        source_version: key.source_version,
        deleted: key.deleted,
        title: clean_opt(p.job_title.get()),
        description: long_text(p.job_description.get()),
        status: clean_opt(p.job_status.get()),
        is_open: flag(lenient, "is_open", p.is_open.get())?,
        employment_type: clean_opt(p.employment_type.get()),
        salary: number(lenient, "salary", p.salary.get())?.or(salary_min),
        salary_unit: clean_opt(p.salary_unit.get()),
        pay_rate: number(lenient, "pay_rate", p.pay_rate.get())?,
        num_openings: count(lenient, "openings", p.openings.get())?,
        start_date: date(lenient, "start_date", p.start_date.get())?,
        skills: skills(p.skills.get()),
        address: map_address(
            None,
            p.city.get().or(loc_city),
            p.state.get(),
            p.zip.get(),
            p.country.get().or(loc_country),
        ),
        client_corporation_id: clean_opt(p.company_id.get()),
        client_corporation_name: clean_opt(p.company_name.get()),
        owner_id: clean_opt(p.hubspot_owner_id.get()),
        owner_name: None,
        date_added: date(lenient, "hs_createdate", p.hs_createdate.get())?,
        lineage,
        attributes: Default::default(),
    })
}

/// HubSpot deal JSON → canonical [`Position`] (for portals that track openings as deals).
pub fn deal(record: &str, key: &RecordKey<'_>, lineage: Lineage) -> Result<Position, Reject> {
    let hs: Envelope<DealProps<'_>> = parse(record, key)?;
    let p = &hs.properties;
    let lenient = key.deleted;
    let closed = flag(lenient, "hs_is_closed", p.hs_is_closed.get())?;
    let (loc_city, loc_country) = split_location(p.location.get());
    Ok(Position {
        crm: key.crm.to_owned(),
        crm_id: key.crm_id.to_owned(),
        source_version: key.source_version,
        deleted: key.deleted,
        title: clean_opt(p.dealname.get()),
        description: long_text(p.description.get()),
        status: clean_opt(p.dealstage.get()),
        is_open: closed.map(|c| !c),
        employment_type: None,
        salary: number(lenient, "amount", p.amount.get())?,
        salary_unit: None,
        pay_rate: None,
        num_openings: None,
        start_date: date(lenient, "start_date", p.start_date.get())?,
        skills: skills(p.skills.get()),
        address: map_address(None, loc_city, None, None, loc_country),
        client_corporation_id: None,
        client_corporation_name: None,
        owner_id: clean_opt(p.hubspot_owner_id.get()),
        owner_name: None,
        date_added: date(lenient, "createdate", p.createdate.get())?,
        lineage,
        attributes: Default::default(),
    })
}

fn shape(lenient: bool, property: &str, value: &str, what: &str) -> Result<(), Reject> {
    if lenient {
        return Ok(());
    }
    let shown: String = value.chars().take(60).collect();
    Err(Rule::RecordShape.reject(format!("property `{property}`: `{shown}` is not {what}")))
}

/// A date or datetime property → epoch ms: ISO 8601 datetime, `YYYY-MM-DD` (midnight UTC, as
/// HubSpot stores date properties) or epoch milliseconds as text. Empty is absent.
fn date(lenient: bool, property: &str, v: Option<&str>) -> Result<Option<i64>, Reject> {
    let Some(t) = v.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if let Some(ms) = parse_date(t) {
        return Ok(Some(ms));
    }
    shape(lenient, property, t, "a date").map(|()| None)
}

/// See [`date`]; `None` when `t` is none of the three forms.
pub fn parse_date(t: &str) -> Option<i64> {
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().ok();
    }
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(t) {
        return Some(d.timestamp_millis());
    }
    chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc().timestamp_millis())
}

/// A number property (`"135000.50"`); empty is absent.
fn number(lenient: bool, property: &str, v: Option<&str>) -> Result<Option<f64>, Reject> {
    let Some(t) = v.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    match t.parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(Some(x)),
        _ => shape(lenient, property, t, "a number").map(|()| None),
    }
}

/// A count that must fit the canonical `int` (`"2"`, or `"2.0"` as number properties print).
fn count(lenient: bool, property: &str, v: Option<&str>) -> Result<Option<i32>, Reject> {
    match number(lenient, property, v)? {
        None => Ok(None),
        Some(x) if x.fract() == 0.0 && x >= 0.0 && x <= i32::MAX as f64 => Ok(Some(x as i32)),
        Some(x) => shape(lenient, property, &x.to_string(), "a count").map(|()| None),
    }
}

/// A boolean property: `true`/`false` (HubSpot's spelling), also `1`/`0` and `yes`/`no`.
fn flag(lenient: bool, property: &str, v: Option<&str>) -> Result<Option<bool>, Reject> {
    let Some(t) = v.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if ["true", "1", "yes"]
        .iter()
        .any(|s| t.eq_ignore_ascii_case(s))
    {
        Ok(Some(true))
    } else if ["false", "0", "no"]
        .iter()
        .any(|s| t.eq_ignore_ascii_case(s))
    {
        Ok(Some(false))
    } else {
        shape(lenient, property, t, "a boolean").map(|()| None)
    }
}

/// `location` as HubSpot portals often keep it, `"City, Country"`: the last comma splits.
fn split_location(v: Option<&str>) -> (Option<&str>, Option<&str>) {
    match v.map(str::trim).filter(|t| !t.is_empty()) {
        None => (None, None),
        Some(t) => match t.rsplit_once(',') {
            Some((city, country)) => (Some(city.trim()), Some(country.trim())),
            None => (Some(t), None),
        },
    }
}

/// Address parts as CRMs with flat address fields send them (HubSpot, Salesforce); all empty → `None`.
pub(super) fn map_address(
    line1: Option<&str>,
    city: Option<&str>,
    state: Option<&str>,
    zip: Option<&str>,
    country: Option<&str>,
) -> Option<Address> {
    let out = Address {
        line1: clean_opt(line1),
        line2: None,
        city: clean_opt(city),
        state: clean_opt(state),
        zip: clean_opt(zip),
        country_code: country.and_then(country_code),
    };
    (out != Address::default()).then_some(out)
}

/// HubSpot's `country` is free text: a two-letter code, or a name in a few common spellings.
/// Unknown names give `None` (the record keeps its other address parts).
pub fn country_code(raw: &str) -> Option<String> {
    let t = clean_text(raw);
    if t.len() == 2 && t.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Some(t.to_ascii_uppercase());
    }
    let lower = t.to_lowercase();
    let code = match lower.trim_end_matches('.') {
        "united states" | "united states of america" | "usa" | "u.s.a" | "u.s" | "america" => "US",
        "canada" => "CA",
        "united kingdom" | "great britain" | "england" | "scotland" | "wales" | "uk" => "GB",
        "germany" | "deutschland" => "DE",
        "france" => "FR",
        "india" => "IN",
        "australia" => "AU",
        "japan" => "JP",
        "ireland" => "IE",
        "netherlands" | "the netherlands" | "holland" => "NL",
        "spain" | "españa" => "ES",
        "italy" | "italia" => "IT",
        "mexico" | "méxico" => "MX",
        "brazil" | "brasil" => "BR",
        _ => return None,
    };
    Some(code.to_owned())
}

// ---- wire types: only the properties we map; every one optional ----

/// A CRM object; `id`, `createdAt`, `updatedAt`, `archived` are the envelope's business.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Envelope<P> {
    properties: P,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ContactProps<'a> {
    #[serde(borrow)]
    firstname: Prop<'a>,
    #[serde(borrow)]
    lastname: Prop<'a>,
    #[serde(borrow)]
    email: Prop<'a>,
    #[serde(borrow)]
    phone: Prop<'a>,
    #[serde(borrow)]
    mobilephone: Prop<'a>,
    #[serde(borrow)]
    jobtitle: Prop<'a>,
    #[serde(borrow)]
    company: Prop<'a>,
    #[serde(borrow)]
    address: Prop<'a>,
    #[serde(borrow)]
    city: Prop<'a>,
    #[serde(borrow)]
    state: Prop<'a>,
    #[serde(borrow)]
    zip: Prop<'a>,
    #[serde(borrow)]
    country: Prop<'a>,
    #[serde(borrow)]
    hs_lead_status: Prop<'a>,
    #[serde(borrow)]
    skills: Prop<'a>,
    #[serde(borrow)]
    summary: Prop<'a>,
    #[serde(borrow)]
    date_available: Prop<'a>,
    #[serde(borrow)]
    hubspot_owner_id: Prop<'a>,
    #[serde(borrow)]
    createdate: Prop<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct JobProps<'a> {
    #[serde(borrow)]
    job_title: Prop<'a>,
    #[serde(borrow)]
    job_description: Prop<'a>,
    #[serde(borrow)]
    job_status: Prop<'a>,
    #[serde(borrow)]
    is_open: Prop<'a>,
    #[serde(borrow)]
    employment_type: Prop<'a>,
    #[serde(borrow)]
    salary: Prop<'a>,
    #[serde(borrow)]
    salary_min: Prop<'a>,
    #[serde(borrow)]
    salary_max: Prop<'a>,
    #[serde(borrow)]
    location: Prop<'a>,
    #[serde(borrow)]
    salary_unit: Prop<'a>,
    #[serde(borrow)]
    pay_rate: Prop<'a>,
    #[serde(borrow)]
    openings: Prop<'a>,
    #[serde(borrow)]
    start_date: Prop<'a>,
    #[serde(borrow)]
    skills: Prop<'a>,
    #[serde(borrow)]
    city: Prop<'a>,
    #[serde(borrow)]
    state: Prop<'a>,
    #[serde(borrow)]
    zip: Prop<'a>,
    #[serde(borrow)]
    country: Prop<'a>,
    #[serde(borrow)]
    company_id: Prop<'a>,
    #[serde(borrow)]
    company_name: Prop<'a>,
    #[serde(borrow)]
    hubspot_owner_id: Prop<'a>,
    #[serde(borrow)]
    hs_createdate: Prop<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DealProps<'a> {
    #[serde(borrow)]
    dealname: Prop<'a>,
    #[serde(borrow)]
    description: Prop<'a>,
    #[serde(borrow)]
    dealstage: Prop<'a>,
    #[serde(borrow)]
    amount: Prop<'a>,
    #[serde(borrow)]
    hs_is_closed: Prop<'a>,
    #[serde(borrow)]
    location: Prop<'a>,
    #[serde(borrow)]
    start_date: Prop<'a>,
    #[serde(borrow)]
    skills: Prop<'a>,
    #[serde(borrow)]
    hubspot_owner_id: Prop<'a>,
    #[serde(borrow)]
    createdate: Prop<'a>,
}

/// A property value: a string or null (HubSpot's promise). Numbers and booleans are accepted as
/// their text (older integrations send them); objects and arrays are a shape error.
type Prop<'a> = ScalarText<'a, false>;

#[cfg(test)]
mod tests {
    use super::super::testkit::{self, Fixture};
    use super::*;

    const FX: Fixture = Fixture::new(
        "hubspot",
        "101",
        1_706_781_600_000,
        "crm.raw.hubspot.contact",
    );

    /// An object of these properties (a JSON object), as the API returns it.
    fn object(props: &str) -> String {
        format!(r#"{{"id":"1","properties":{props}}}"#)
    }

    /// A contact as `GET /crm/v3/objects/contacts/{id}` returns it: every value a string or null.
    const CONTACT: &str = r#"{
        "id": "101",
        "properties": {
            "createdate": "2024-01-10T15:03:22.123Z",
            "email": "  Ada.Lovelace@Example.COM ",
            "firstname": " Ada\u200b",
            "lastname": "Lovelace",
            "phone": "(617) 555-0100",
            "mobilephone": "+44 7700 900123",
            "jobtitle": "Senior  Data Engineer",
            "company": "Analytical Engines Ltd",
            "address": "12 St James's Square",
            "city": "Boston",
            "state": "MA",
            "zip": "02116",
            "country": "United States",
            "hs_lead_status": "IN_PROGRESS",
            "lifecyclestage": "lead",
            "skills": "Rust;SQL;rust;Kafka",
            "summary": "<p>Data engineer &ndash; 10 years.</p>",
            "date_available": "2025-03-01",
            "hubspot_owner_id": "31",
            "hs_object_id": "101",
            "lastmodifieddate": "2024-02-01T10:00:00.000Z",
            "notes_last_updated": null
        },
        "createdAt": "2024-01-10T15:03:22.123Z",
        "updatedAt": "2024-02-01T10:00:00.000Z",
        "archived": false
    }"#;

    #[test]
    fn contact_fixture_maps_every_field() {
        let c = candidate(CONTACT, &FX.key(false), FX.lineage(), "GB").unwrap();
        let want = Candidate {
            first_name: Some("Ada".into()),
            last_name: Some("Lovelace".into()),
            email: Some("ada.lovelace@example.com".into()),
            // The address's country (US) wins over the default (GB).
            phone: Some("+16175550100".into()),
            mobile: Some("+447700900123".into()),
            address: Some(Address {
                line1: Some("12 St James's Square".into()),
                line2: None,
                city: Some("Boston".into()),
                state: Some("MA".into()),
                zip: Some("02116".into()),
                country_code: Some("US".into()),
            }),
            status: Some("IN_PROGRESS".into()),
            occupation: Some("Senior Data Engineer".into()),
            company_name: Some("Analytical Engines Ltd".into()),
            skills: vec!["Rust".into(), "SQL".into(), "Kafka".into()],
            summary: Some("Data engineer \u{2013} 10 years.".into()),
            date_available: Some(1_740_787_200_000),
            owner_id: Some("31".into()),
            date_added: Some(1_704_899_002_123),
            ..FX.candidate()
        };
        assert_eq!(c, want);
    }

    const JOB: &str = r#"{
        "id": "9001",
        "properties": {
            "job_title": " Senior Rust Engineer ",
            "job_description": "<p>Build <b>pipelines</b></p><ul><li>Kafka</li></ul>",
            "job_status": "OPEN",
            "is_open": "true",
            "employment_type": "Contract",
            "salary": "135000.50",
            "salary_unit": "Per Year",
            "pay_rate": "70",
            "openings": "2",
            "start_date": "1735689600000",
            "skills": "Rust;Kafka",
            "city": "Omaha",
            "state": "NE",
            "zip": "68124",
            "country": "US",
            "company_id": "77",
            "company_name": "Blue Harbor & Co",
            "hubspot_owner_id": "5",
            "hs_createdate": "2024-01-01T00:00:00Z",
            "hs_lastmodifieddate": "2024-02-01T10:00:00Z"
        },
        "createdAt": "2024-01-01T00:00:00Z",
        "updatedAt": "2024-02-01T10:00:00Z",
        "archived": false
    }"#;

    #[test]
    fn job_fixture_maps_every_field() {
        let p = job(JOB, &FX.key(false), FX.lineage()).unwrap();
        let want = Position {
            title: Some("Senior Rust Engineer".into()),
            description: Some("Build pipelines\n\nKafka".into()),
            status: Some("OPEN".into()),
            is_open: Some(true),
            employment_type: Some("Contract".into()),
            salary: Some(135_000.5),
            salary_unit: Some("Per Year".into()),
            pay_rate: Some(70.0),
            num_openings: Some(2),
            start_date: Some(1_735_689_600_000),
            skills: vec!["Rust".into(), "Kafka".into()],
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
            owner_id: Some("5".into()),
            date_added: Some(1_704_067_200_000),
            ..FX.position()
        };
        assert_eq!(p, want);
    }

    #[test]
    fn deal_maps_name_stage_amount_and_closed_flag() {
        let rec = r#"{"id":"5","properties":{"dealname":"Data Engineer (Acme)","dealstage":"appointmentscheduled",
            "amount":"90000","hs_is_closed":"false","description":"Two openings","createdate":"2024-01-01T00:00:00Z",
            "skills":"SQL, Python"}}"#;
        let p = deal(rec, &FX.key(false), FX.lineage()).unwrap();
        assert_eq!(p.title.as_deref(), Some("Data Engineer (Acme)"));
        assert_eq!(p.status.as_deref(), Some("appointmentscheduled"));
        assert_eq!(p.salary, Some(90_000.0));
        assert_eq!(p.is_open, Some(true));
        assert_eq!(p.description.as_deref(), Some("Two openings"));
        assert_eq!(p.skills, ["SQL", "Python"]);
        assert_eq!(p.date_added, Some(1_704_067_200_000));
    }

    #[test]
    fn property_quirks_table() {
        // (case, properties, check)
        let cases: &[testkit::MapCase<Position>] = &[
            ("null values", r#"{"job_title":null,"salary":null}"#, |p| {
                p.title.is_none() && p.salary.is_none()
            }),
            (
                "empty strings are absent",
                r#"{"salary":"","openings":"","start_date":"","is_open":""}"#,
                |p| {
                    p.salary.is_none()
                        && p.num_openings.is_none()
                        && p.start_date.is_none()
                        && p.is_open.is_none()
                },
            ),
            ("count as decimal text", r#"{"openings":"3.0"}"#, |p| {
                p.num_openings == Some(3)
            }),
            (
                "date as YYYY-MM-DD",
                r#"{"start_date":"2025-01-01"}"#,
                |p| p.start_date == Some(1_735_689_600_000),
            ),
            (
                "date as ISO with offset",
                r#"{"start_date":"2025-01-01T02:00:00+02:00"}"#,
                |p| p.start_date == Some(1_735_689_600_000),
            ),
            ("boolean spellings", r#"{"is_open":"FALSE"}"#, |p| {
                p.is_open == Some(false)
            }),
            ("number sent as a JSON number", r#"{"salary":1500}"#, |p| {
                p.salary == Some(1500.0)
            }),
            ("country name", r#"{"country":"Deutschland"}"#, |p| {
                p.address.as_ref().and_then(|a| a.country_code.as_deref()) == Some("DE")
            }),
            (
                "unknown country keeps the city",
                r#"{"country":"Atlantis","city":"Poseidonia"}"#,
                |p| {
                    p.address
                        .as_ref()
                        .is_some_and(|a| a.country_code.is_none() && a.city.is_some())
                },
            ),
            ("no address", r#"{"country":""}"#, |p| p.address.is_none()),
            (
                "skills with blanks and commas",
                r#"{"skills":";Rust ; ,Go;;"}"#,
                |p| p.skills == ["Rust", "Go"],
            ),
            (
                "escaped text",
                r#"{"job_title":"A \"quoted\" title"}"#,
                |p| p.title.as_deref() == Some("A \"quoted\" title"),
            ),
        ];
        testkit::assert_maps(cases, |props| {
            job(&object(props), &FX.key(false), FX.lineage())
        });
    }

    #[test]
    fn unusable_values_are_shape_rejects_naming_the_property() {
        let cases: &[(&str, &str, &str)] = &[
            ("salary text", r#"{"salary":"negotiable"}"#, "salary"),
            ("salary NaN", r#"{"salary":"NaN"}"#, "salary"),
            ("openings fraction", r#"{"openings":"1.5"}"#, "openings"),
            ("openings negative", r#"{"openings":"-1"}"#, "openings"),
            (
                "start date words",
                r#"{"start_date":"next week"}"#,
                "start_date",
            ),
            ("is_open maybe", r#"{"is_open":"maybe"}"#, "is_open"),
            (
                "created garbage",
                r#"{"hs_createdate":"2024-13-45"}"#,
                "hs_createdate",
            ),
        ];
        let inputs: Vec<(&str, &str)> = cases.iter().map(|(n, p, _)| (*n, *p)).collect();
        let rejects = testkit::assert_rejects(&inputs, "record.shape", |props| {
            job(&object(props), &FX.key(false), FX.lineage())
        });
        for ((name, _, property), r) in cases.iter().zip(&rejects) {
            assert!(r.reason.contains(property), "case {name}: {r}");
        }
        // Not a string or null: an object or an array value.
        testkit::assert_rejects(
            &[
                ("object value", r#"{"job_title":{"en":"x"}}"#),
                ("array value", r#"{"skills":["a","b"]}"#),
            ],
            "record.shape",
            |props| job(&object(props), &FX.key(false), FX.lineage()),
        );
        let r = candidate("[1]", &FX.key(false), FX.lineage(), "US").unwrap_err();
        assert_eq!(r.rule, "record.shape");
        let r = candidate("{\"properties\":", &FX.key(false), FX.lineage(), "US").unwrap_err();
        assert_eq!(r.rule, "record.json");
    }

    #[test]
    fn salary_range_upside_down_is_a_hubspot_rule() {
        let rec = r#"{"id":"1","properties":{"job_title":"X","salary_min":"90000","salary_max":"80000"}}"#;
        let r = job(rec, &FX.key(false), FX.lineage()).unwrap_err();
        assert_eq!(r.rule, "hubspot.position.salary.range");
        assert!(
            job(rec, &FX.key(true), FX.lineage()).is_ok(),
            "tombstones pass"
        );
    }

    #[test]
    fn archived_objects_are_tombstones_even_when_broken() {
        let c = candidate("not json", &FX.key(true), FX.lineage(), "US").unwrap();
        assert!(c.deleted);
        assert_eq!(c.crm_id, "101");
        assert_eq!(c.source_version, 1_706_781_600_000);
        // Unparseable properties of an archived job are dropped, not rejected.
        let p = job(
            r#"{"id":"1","properties":{"job_title":"X","salary":"lots"},"archived":true}"#,
            &FX.key(true),
            FX.lineage(),
        )
        .unwrap();
        assert!(p.deleted && p.salary.is_none());
        assert_eq!(p.title.as_deref(), Some("X"));
    }

    #[test]
    fn parse_date_forms() {
        assert_eq!(
            parse_date("2024-02-01T10:00:00.000Z"),
            Some(1_706_781_600_000)
        );
        assert_eq!(parse_date("1706781600000"), Some(1_706_781_600_000));
        assert_eq!(parse_date("2024-02-01"), Some(1_706_745_600_000));
        assert_eq!(parse_date("yesterday"), None);
    }

    #[test]
    fn country_codes() {
        for (raw, want) in [
            ("us", Some("US")),
            ("USA", Some("US")),
            ("United Kingdom", Some("GB")),
            (" u.s.a. ", Some("US")),
            ("Narnia", None),
            ("", None),
        ] {
            assert_eq!(country_code(raw).as_deref(), want, "{raw}");
        }
    }
}
