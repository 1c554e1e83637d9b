//! Salesforce transform: a Contact's JSON becomes a canonical [`Candidate`]; a record of the position
//! object (the custom `Position__c` by default) becomes a canonical [`Position`]. Which raw entities
//! are which is `normalize.salesforce.candidate_objects` / `position_objects` ([`role`]).
//!
//! A record reads as the REST API returns it (`query`, `queryAll`, `sobjects/{type}/{id}`, composite
//! reads): `{"attributes":{..},"Id":"003..","FirstName":"Ada",..}`, with typed JSON values — text as
//! strings, numbers as numbers, checkboxes as booleans, dates as `YYYY-MM-DD` and datetimes as
//! `2024-01-01T00:00:00.000+0000`. A mapped field of the wrong JSON type (an object, an array, text in
//! a number field, a date that does not parse) is a `record.shape` reject naming the field; invalid
//! JSON is `record.json`. Values are cleaned like the other CRMs' ([`super::text`], [`super::email`],
//! [`super::phone`]). Key fields (crm, id, version) come from the event envelope, so a deleted record
//! (`IsDeleted`, or an id known only from a CDC `DELETE` event) still gives a tombstone.
//!
//! | canonical | Contact | position object |
//! |---|---|---|
//! | first/last name, title | `FirstName`, `LastName` | `Name` (title) |
//! | email, phone, mobile | `Email`, `Phone`, `MobilePhone` | |
//! | occupation, company | `Title`, `Department` | |
//! | status | `Candidate_Status__c` | `Status__c` (`Open` is open; `Filled`/`Closed` are not) |
//! | description / summary | `Description` (HTML to text) | `Description__c` (HTML to text) |
//! | skills (`;` or `,` separated) | `Skills__c` | `Skills__c` |
//! | address | `MailingStreet`, `MailingCity`, `MailingState`, `MailingPostalCode`, `MailingCountry` | `City__c`, `State__c`, `Country__c` |
//! | salary | | `Salary_Min__c` (rule: not above `Salary_Max__c`) |
//! | start date, type | | `Open_Date__c`, `Remote__c` (`Remote` when true) |
//! | owner id | `OwnerId` | `OwnerId` |
//! | date added | `CreatedDate` | `CreatedDate` |

use serde_json::{Map, Value};

use crate::config::SalesforceNormalizeConfig;
use crate::model::{Candidate, Lineage, Position};

use super::bullhorn::RecordKey;
use super::email::normalize_email;
use super::hubspot::map_address;
use super::phone::normalize_phone;
use super::text::{clean_opt, long_text, skill_list as skills};
use super::validate::Rule;
use super::Reject;

/// What a raw Salesforce entity becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Candidate,
    Position,
}

/// The role of raw entity `entity` (an object API name), if it has one.
pub fn role(entity: &str, cfg: &SalesforceNormalizeConfig) -> Option<Role> {
    let has = |list: &[String]| list.iter().any(|o| o.eq_ignore_ascii_case(entity));
    if has(&cfg.candidate_objects) {
        Some(Role::Candidate)
    } else if has(&cfg.position_objects) {
        Some(Role::Position)
    } else {
        None
    }
}

/// Salesforce Contact JSON → canonical [`Candidate`]. `default_country` (ISO alpha-2) is used for
/// phone numbers when the mailing address names no country we know.
pub fn candidate(
    record: &str,
    key: &RecordKey<'_>,
    lineage: Lineage,
    default_country: &str,
) -> Result<Candidate, Reject> {
    let r = Fields::parse(record, key)?;
    let address = map_address(
        r.text("MailingStreet")?,
        r.text("MailingCity")?,
        r.text("MailingState")?,
        r.text("MailingPostalCode")?,
        r.text("MailingCountry")?,
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
        first_name: clean_opt(r.text("FirstName")?),
        last_name: clean_opt(r.text("LastName")?),
        email: r.text("Email")?.and_then(normalize_email),
        phone: r.text("Phone")?.and_then(|v| normalize_phone(v, country)),
        mobile: r
            .text("MobilePhone")?
            .and_then(|v| normalize_phone(v, country)),
        address,
        status: clean_opt(r.text("Candidate_Status__c")?),
        occupation: clean_opt(r.text("Title")?),
        company_name: clean_opt(r.text("Department")?),
        skills: skills(r.text("Skills__c")?),
        summary: long_text(r.text("Description")?),
        date_available: None,
        owner_id: clean_opt(r.text("OwnerId")?),
        owner_name: None,
        date_added: r.date("CreatedDate")?,
        lineage,
        attributes: Default::default(),
    })
}

/// Salesforce position object JSON → canonical [`Position`].
pub fn position(record: &str, key: &RecordKey<'_>, lineage: Lineage) -> Result<Position, Reject> {
    let r = Fields::parse(record, key)?;
    let salary_min = r.number("Salary_Min__c")?;
    let salary_max = r.number("Salary_Max__c")?;
    if let (Some(lo), Some(hi), false) = (salary_min, salary_max, key.deleted) {
        if lo > hi {
            return Err(Rule::SalesforcePositionSalaryRange
                .reject(format!("Salary_Min__c {lo} is above Salary_Max__c {hi}")));
        }
    }
    let status = clean_opt(r.text("Status__c")?);
    let is_open = status.as_deref().and_then(|s| {
        if s.eq_ignore_ascii_case("open") {
            Some(true)
        } else if s.eq_ignore_ascii_case("filled") || s.eq_ignore_ascii_case("closed") {
            Some(false)
        } else {
            None
        }
    });
    Ok(Position {
        crm: key.crm.to_owned(),
        crm_id: key.crm_id.to_owned(),
        source_version: key.source_version,
        deleted: key.deleted,
        title: clean_opt(r.text("Name")?),
        description: long_text(r.text("Description__c")?),
        status,
        is_open,
        employment_type: r
            .flag("Remote__c")?
            .and_then(|remote| remote.then(|| "Remote".to_owned())),
        salary: salary_min.or(salary_max),
        salary_unit: None,
        pay_rate: None,
        num_openings: None,
        start_date: r.date("Open_Date__c")?,
        skills: skills(r.text("Skills__c")?),
        address: map_address(
            None,
            r.text("City__c")?,
            r.text("State__c")?,
            None,
            r.text("Country__c")?,
        ),
        client_corporation_id: None,
        client_corporation_name: None,
        owner_id: clean_opt(r.text("OwnerId")?),
        owner_name: None,
        date_added: r.date("CreatedDate")?,
        lineage,
        attributes: Default::default(),
    })
}

/// A parsed record; for a delete, type errors are ignored (a tombstone is never rejected).
struct Fields {
    map: Map<String, Value>,
    lenient: bool,
}

impl Fields {
    fn parse(record: &str, key: &RecordKey<'_>) -> Result<Self, Reject> {
        let lenient = key.deleted;
        let map = match serde_json::from_str::<Value>(record) {
            Ok(Value::Object(m)) => m,
            _ if lenient => Map::new(),
            Ok(_) => return Err(Rule::RecordShape.reject("the record is not a JSON object")),
            Err(e) => return Err(Rule::RecordJson.reject(e.to_string())),
        };
        Ok(Self { map, lenient })
    }

    fn shape<T>(&self, field: &str, v: &Value, what: &str) -> Result<Option<T>, Reject> {
        if self.lenient {
            return Ok(None);
        }
        let shown: String = v.to_string().chars().take(60).collect();
        Err(Rule::RecordShape.reject(format!("field `{field}`: {shown} is not {what}")))
    }

    /// A text field (numbers are accepted as their decimal text); null or absent is `None`.
    fn text(&self, field: &str) -> Result<Option<&str>, Reject> {
        match self.map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(v) => self.shape(field, v, "text"),
        }
    }

    fn number(&self, field: &str) -> Result<Option<f64>, Reject> {
        match self.map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64().filter(|x| x.is_finite())),
            Some(v @ Value::String(s)) => match s.trim().parse::<f64>() {
                Ok(x) if x.is_finite() => Ok(Some(x)),
                _ if s.trim().is_empty() => Ok(None),
                _ => self.shape(field, v, "a number"),
            },
            Some(v) => self.shape(field, v, "a number"),
        }
    }

    fn flag(&self, field: &str) -> Result<Option<bool>, Reject> {
        match self.map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => self.shape(field, v, "a boolean"),
        }
    }

    /// A date (`YYYY-MM-DD`, midnight UTC) or datetime (`...T..:..:...000+0000`) → epoch ms.
    fn date(&self, field: &str) -> Result<Option<i64>, Reject> {
        match self.map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v @ Value::String(s)) => match parse_date(s.trim()) {
                Some(ms) => Ok(Some(ms)),
                None if s.trim().is_empty() => Ok(None),
                None => self.shape(field, v, "a date"),
            },
            Some(v) => self.shape(field, v, "a date"),
        }
    }
}

/// `YYYY-MM-DD` or a Salesforce datetime (`+0000` or ISO 8601 offsets) → epoch ms.
pub fn parse_date(t: &str) -> Option<i64> {
    if let Some(d) = crmflow_salesforce::wire::parse_datetime(t) {
        return Some(d.timestamp_millis());
    }
    chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc().timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::super::testkit::Fixture;
    use super::*;

    const FX: Fixture = Fixture::new(
        "salesforce",
        "0035g00000AbCdEAAV",
        1_704_067_200_000,
        "crm.raw.salesforce.Contact",
    );

    const CONTACT: &str = r#"{"attributes":{"type":"Contact","url":"/services/data/v62.0/sobjects/Contact/0035g00000AbCdEAAV"},
        "Id":"0035g00000AbCdEAAV","FirstName":"  José ","LastName":"García","Email":"Jose.Garcia@Example.COM",
        "Phone":"+1 617 555 0100","MobilePhone":null,"Title":"Data Engineer","Department":"Engineering",
        "MailingCity":"Berlin","MailingState":null,"MailingPostalCode":"10115","MailingCountry":"DE",
        "Description":"<p>Great&nbsp;candidate</p>","Skills__c":"Rust, Kafka;rust","Candidate_Status__c":"Active",
        "OwnerId":"0055g000001AbCdAAK","CreatedDate":"2024-01-01T00:00:00.000+0000",
        "SystemModstamp":"2024-01-02T00:00:00.000+0000","IsDeleted":false}"#;

    #[test]
    fn contact_maps_every_field() {
        let c = candidate(CONTACT, &FX.key(false), FX.lineage(), "US").unwrap();
        assert_eq!(c.crm, "salesforce");
        assert_eq!(c.first_name.as_deref(), Some("José"));
        assert_eq!(c.last_name.as_deref(), Some("García"));
        assert_eq!(c.email.as_deref(), Some("jose.garcia@example.com"));
        assert_eq!(c.phone.as_deref(), Some("+16175550100"));
        assert_eq!(c.mobile, None);
        let a = c.address.unwrap();
        assert_eq!(
            (
                a.city.as_deref(),
                a.zip.as_deref(),
                a.country_code.as_deref()
            ),
            (Some("Berlin"), Some("10115"), Some("DE"))
        );
        assert_eq!(c.summary.as_deref(), Some("Great candidate"));
        assert_eq!(c.skills, vec!["Rust", "Kafka"]);
        assert_eq!(c.status.as_deref(), Some("Active"));
        assert_eq!(c.occupation.as_deref(), Some("Data Engineer"));
        assert_eq!(c.owner_id.as_deref(), Some("0055g000001AbCdAAK"));
        assert_eq!(c.date_added, Some(1_704_067_200_000));
    }

    #[test]
    fn position_maps_every_field() {
        let rec = r#"{"Id":"a015g00000AbCdEAAV","Name":"Data Engineer (Boston)","Description__c":"<b>URGENT</b>&amp; hiring",
            "Skills__c":"Go, SQL","Status__c":"Open","City__c":"Boston","State__c":"MA","Country__c":"US",
            "Salary_Min__c":90000.0,"Salary_Max__c":120000.0,"Open_Date__c":"2024-03-01","Remote__c":true,
            "CreatedDate":"2024-01-01T00:00:00.000+0000"}"#;
        let p = position(rec, &FX.key(false), FX.lineage()).unwrap();
        assert_eq!(p.title.as_deref(), Some("Data Engineer (Boston)"));
        assert_eq!(p.description.as_deref(), Some("URGENT& hiring"));
        assert_eq!((p.status.as_deref(), p.is_open), (Some("Open"), Some(true)));
        assert_eq!(p.salary, Some(90_000.0));
        assert_eq!(p.start_date, Some(1_709_251_200_000));
        assert_eq!(p.employment_type.as_deref(), Some("Remote"));
        assert_eq!(p.address.unwrap().state.as_deref(), Some("MA"));
        assert_eq!(p.skills, vec!["Go", "SQL"]);
    }

    #[test]
    fn roles_follow_the_configuration() {
        let mut cfg = SalesforceNormalizeConfig::default();
        assert_eq!(role("contact", &cfg), Some(Role::Candidate));
        assert_eq!(role("Position__c", &cfg), Some(Role::Position));
        assert_eq!(role("Account", &cfg), None);
        cfg.position_objects = vec!["Job__c".into()];
        assert_eq!(role("Position__c", &cfg), None);
        assert_eq!(role("Job__c", &cfg), Some(Role::Position));
    }

    #[test]
    fn parse_dates() {
        assert_eq!(parse_date("2024-01-01"), Some(1_704_067_200_000));
        assert_eq!(
            parse_date("2024-01-01T00:00:01.000+0000"),
            Some(1_704_067_201_000)
        );
        assert_eq!(parse_date("yesterday"), None);
    }
}
