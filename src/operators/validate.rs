//! Validation of canonical records, and the one table of every rule a record can be rejected by.
//!
//! [`RULES`] lists every rule with its name (the DLQ's `error.rule` header, stable: dashboards and
//! `crmflow dlq list --rule` filter on it), its reject class and what it checks. The decode and
//! transform rules are listed here too, so an operator reading a DLQ header finds every possible value
//! in one place.
//!
//! What is a reject and what is kept (decided once, here):
//! - Rejected: no crm id; a candidate with neither first nor last name; a position without title;
//!   names or title over [`NAME_MAX_CHARS`]; a malformed email; a negative salary or pay rate; a start
//!   date before 1990 or more than five years after the event was observed; a status outside the
//!   configured set; a description or resume over `max_text_chars`.
//! - Kept: a missing email (candidates often have only a phone); a phone we cannot put in E.164 (its
//!   digits are kept); a missing status, salary or start date; a salary of 0 (unpaid or not disclosed).
//!
//! - HubSpot differs ([`Profile::Hubspot`]): a contact with an email but no name is kept (HubSpot
//!   creates contacts from a form's email alone), and statuses are checked against HubSpot's own value
//!   sets (`normalize.hubspot.lead_statuses`, `normalize.hubspot.position_statuses`) under rule names
//!   of their own, so `crmflow dlq list --rule hubspot.candidate.lead_status.allowed` finds them.
//!
//! - Salesforce ([`Profile::Salesforce`]) keeps the default identity rule and checks statuses
//!   against the org's picklists (`normalize.salesforce.candidate_statuses`,
//!   `normalize.salesforce.position_statuses`) under `salesforce.*` rule names.
//!
//! Tombstones are never validated: a delete must always reach the sink.

use crate::config::NormalizeConfig;
use crate::model::{Candidate, Position};

use super::email::Email;
use super::{Reject, RejectClass};

/// Longest first name, last name or position title, characters (Bullhorn stores 50 and 100).
pub const NAME_MAX_CHARS: usize = 100;

/// 1990-01-01T00:00:00Z in epoch milliseconds: no open position starts before that.
pub const START_DATE_MIN_MS: i64 = 631_152_000_000;

/// How far past "now" a start date may be: five years of 365.25 days, rounded up to whole days.
pub const START_DATE_MAX_AHEAD_MS: i64 = 1_827 * 86_400_000;

/// A named rule; see [`RULES`] for names and meanings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    RecordJson,
    RecordShape,
    EntityUnknown,
    CandidateCrmIdRequired,
    CandidateNameRequired,
    CandidateNameLength,
    CandidateEmailFormat,
    CandidateStatusAllowed,
    CandidateTextLength,
    PositionCrmIdRequired,
    PositionTitleRequired,
    PositionTitleLength,
    PositionSalaryNonNegative,
    PositionStartDateRange,
    PositionStatusAllowed,
    PositionTextLength,
    HubspotCandidateIdentityRequired,
    HubspotCandidateLeadStatusAllowed,
    HubspotPositionStatusAllowed,
    HubspotPositionSalaryRange,
    SalesforceCandidateStatusAllowed,
    SalesforcePositionStatusAllowed,
    SalesforcePositionSalaryRange,
}

/// One row of [`RULES`].
#[derive(Debug)]
pub struct RuleSpec {
    pub rule: Rule,
    /// Stable name, the DLQ's `error.rule`.
    pub name: &'static str,
    pub class: RejectClass,
    /// What the rule checks, for `crmflow dlq` and the docs.
    pub checks: &'static str,
}

use RejectClass::{Decode, Transform, Validation};

/// Every rule, in the order of [`Rule`]'s variants (a test holds the two together).
#[rustfmt::skip]
pub const RULES: &[RuleSpec] = &[
    RuleSpec { rule: Rule::RecordJson, name: "record.json", class: Decode, checks: "the CRM record is valid JSON" },
    RuleSpec { rule: Rule::RecordShape, name: "record.shape", class: Transform, checks: "each known field has a usable type (text, number, boolean, epoch ms)" },
    RuleSpec { rule: Rule::EntityUnknown, name: "entity.unknown", class: Transform, checks: "the (crm, entity) pair has a transform" },
    RuleSpec { rule: Rule::CandidateCrmIdRequired, name: "candidate.crm_id.required", class: Validation, checks: "the record id is not empty" },
    RuleSpec { rule: Rule::CandidateNameRequired, name: "candidate.name.required", class: Validation, checks: "first name or last name is present" },
    RuleSpec { rule: Rule::CandidateNameLength, name: "candidate.name.length", class: Validation, checks: "first and last name are at most 100 characters" },
    RuleSpec { rule: Rule::CandidateEmailFormat, name: "candidate.email.format", class: Validation, checks: "a present email has one @, a local part, a dotted domain, no spaces" },
    RuleSpec { rule: Rule::CandidateStatusAllowed, name: "candidate.status.allowed", class: Validation, checks: "a present status is in normalize.candidate_statuses (ASCII case-insensitive)" },
    RuleSpec { rule: Rule::CandidateTextLength, name: "candidate.text.length", class: Validation, checks: "the summary is at most normalize.max_text_chars characters" },
    RuleSpec { rule: Rule::PositionCrmIdRequired, name: "position.crm_id.required", class: Validation, checks: "the record id is not empty" },
    RuleSpec { rule: Rule::PositionTitleRequired, name: "position.title.required", class: Validation, checks: "the title is present" },
    RuleSpec { rule: Rule::PositionTitleLength, name: "position.title.length", class: Validation, checks: "the title is at most 100 characters" },
    RuleSpec { rule: Rule::PositionSalaryNonNegative, name: "position.salary.non_negative", class: Validation, checks: "salary and pay rate, when present, are >= 0" },
    RuleSpec { rule: Rule::PositionStartDateRange, name: "position.start_date.range", class: Validation, checks: "a present start date is in 1990-01-01 .. observed_at + 5 years" },
    RuleSpec { rule: Rule::PositionStatusAllowed, name: "position.status.allowed", class: Validation, checks: "a present status is in normalize.position_statuses (ASCII case-insensitive)" },
    RuleSpec { rule: Rule::PositionTextLength, name: "position.text.length", class: Validation, checks: "the description is at most normalize.max_text_chars characters" },
    RuleSpec { rule: Rule::HubspotCandidateIdentityRequired, name: "hubspot.candidate.identity.required", class: Validation, checks: "a HubSpot contact has a first name, a last name or an email (HubSpot creates contacts from an email alone)" },
    RuleSpec { rule: Rule::HubspotCandidateLeadStatusAllowed, name: "hubspot.candidate.lead_status.allowed", class: Validation, checks: "a present hs_lead_status is in normalize.hubspot.lead_statuses (ASCII case-insensitive)" },
    RuleSpec { rule: Rule::HubspotPositionStatusAllowed, name: "hubspot.position.status.allowed", class: Validation, checks: "a present job status or deal stage is in normalize.hubspot.position_statuses (ASCII case-insensitive)" },
    RuleSpec { rule: Rule::HubspotPositionSalaryRange, name: "hubspot.position.salary.range", class: Validation, checks: "a job's salary_min is not above its salary_max" },
    RuleSpec { rule: Rule::SalesforceCandidateStatusAllowed, name: "salesforce.candidate.status.allowed", class: Validation, checks: "a present Candidate_Status__c is in normalize.salesforce.candidate_statuses (ASCII case-insensitive)" },
    RuleSpec { rule: Rule::SalesforcePositionStatusAllowed, name: "salesforce.position.status.allowed", class: Validation, checks: "a present position Status__c is in normalize.salesforce.position_statuses (ASCII case-insensitive)" },
    RuleSpec { rule: Rule::SalesforcePositionSalaryRange, name: "salesforce.position.salary.range", class: Validation, checks: "a position's Salary_Min__c is not above its Salary_Max__c" },
];

impl Rule {
    pub fn spec(self) -> &'static RuleSpec {
        &RULES[self as usize]
    }

    pub fn name(self) -> &'static str {
        self.spec().name
    }

    pub fn class(self) -> RejectClass {
        self.spec().class
    }

    /// A reject for this rule.
    pub fn reject(self, reason: impl Into<String>) -> Reject {
        Reject {
            class: self.class(),
            rule: self.name(),
            reason: reason.into(),
        }
    }
}

/// Which CRM's rules apply where the CRMs differ (see [`RULES`]: the `hubspot.*` rules replace
/// the name and status rules for HubSpot records).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Bullhorn, and any CRM without rules of its own.
    Default,
    /// HubSpot: identity is a name *or* an email; statuses are HubSpot's lead statuses, job
    /// statuses and deal stages.
    Hubspot,
    /// Salesforce: the default identity rule (a Contact always has a `LastName`); statuses are the
    /// org's picklists (`normalize.salesforce.*_statuses`).
    Salesforce,
}

/// Checks a candidate; the first failing rule wins. Tombstones always pass.
pub fn validate_candidate(c: &Candidate, cfg: &NormalizeConfig) -> Result<(), Reject> {
    validate_candidate_as(c, cfg, Profile::Default)
}

/// [`validate_candidate`] with the rules of `profile`.
pub fn validate_candidate_as(
    c: &Candidate,
    cfg: &NormalizeConfig,
    profile: Profile,
) -> Result<(), Reject> {
    if c.deleted {
        return Ok(());
    }
    if c.crm_id.is_empty() {
        return Err(Rule::CandidateCrmIdRequired.reject("record id is empty"));
    }
    if c.first_name.is_none() && c.last_name.is_none() {
        match profile {
            Profile::Default => {
                return Err(
                    Rule::CandidateNameRequired.reject("neither firstName nor lastName is present")
                )
            }
            Profile::Hubspot if c.email.is_none() => {
                return Err(Rule::HubspotCandidateIdentityRequired
                    .reject("none of firstname, lastname and email is present"))
            }
            Profile::Hubspot => {}
            Profile::Salesforce => {
                return Err(
                    Rule::CandidateNameRequired.reject("neither FirstName nor LastName is present")
                )
            }
        }
    }
    for (field, v) in [("firstName", &c.first_name), ("lastName", &c.last_name)] {
        if let Some(n) = over_limit(v.as_deref(), NAME_MAX_CHARS) {
            return Err(Rule::CandidateNameLength.reject(format!(
                "{field} has {n} characters, limit {NAME_MAX_CHARS}"
            )));
        }
    }
    if let Some(e) = &c.email {
        Email::parse(e).map_err(|err| Rule::CandidateEmailFormat.reject(err.to_string()))?;
    }
    match profile {
        Profile::Default => check_status(
            c.status.as_deref(),
            &cfg.candidate_statuses,
            Rule::CandidateStatusAllowed,
        )?,
        Profile::Hubspot => check_status(
            c.status.as_deref(),
            &cfg.hubspot.lead_statuses,
            Rule::HubspotCandidateLeadStatusAllowed,
        )?,
        Profile::Salesforce => check_status(
            c.status.as_deref(),
            &cfg.salesforce.candidate_statuses,
            Rule::SalesforceCandidateStatusAllowed,
        )?,
    }
    if let Some(n) = over_limit(c.summary.as_deref(), cfg.max_text_chars) {
        return Err(Rule::CandidateTextLength.reject(format!(
            "summary has {n} characters, limit {}",
            cfg.max_text_chars
        )));
    }
    Ok(())
}

/// Checks a position; `now_ms` anchors the start-date bound. Tombstones always pass.
pub fn validate_position(p: &Position, cfg: &NormalizeConfig, now_ms: i64) -> Result<(), Reject> {
    validate_position_as(p, cfg, now_ms, Profile::Default)
}

/// [`validate_position`] with the rules of `profile`.
pub fn validate_position_as(
    p: &Position,
    cfg: &NormalizeConfig,
    now_ms: i64,
    profile: Profile,
) -> Result<(), Reject> {
    if p.deleted {
        return Ok(());
    }
    if p.crm_id.is_empty() {
        return Err(Rule::PositionCrmIdRequired.reject("record id is empty"));
    }
    if p.title.is_none() {
        return Err(Rule::PositionTitleRequired.reject("title is not present"));
    }
    if let Some(n) = over_limit(p.title.as_deref(), NAME_MAX_CHARS) {
        return Err(Rule::PositionTitleLength
            .reject(format!("title has {n} characters, limit {NAME_MAX_CHARS}")));
    }
    for (field, v) in [("salary", p.salary), ("payRate", p.pay_rate)] {
        if let Some(x) = v.filter(|x| *x < 0.0) {
            return Err(Rule::PositionSalaryNonNegative.reject(format!("{field} is {x}")));
        }
    }
    if let Some(d) = p.start_date {
        let max = now_ms.saturating_add(START_DATE_MAX_AHEAD_MS);
        if !(START_DATE_MIN_MS..=max).contains(&d) {
            return Err(Rule::PositionStartDateRange.reject(format!(
                "startDate {d} is outside {START_DATE_MIN_MS}..={max} (epoch ms)"
            )));
        }
    }
    match profile {
        Profile::Default => check_status(
            p.status.as_deref(),
            &cfg.position_statuses,
            Rule::PositionStatusAllowed,
        )?,
        Profile::Hubspot => check_status(
            p.status.as_deref(),
            &cfg.hubspot.position_statuses,
            Rule::HubspotPositionStatusAllowed,
        )?,
        Profile::Salesforce => check_status(
            p.status.as_deref(),
            &cfg.salesforce.position_statuses,
            Rule::SalesforcePositionStatusAllowed,
        )?,
    }
    if let Some(n) = over_limit(p.description.as_deref(), cfg.max_text_chars) {
        return Err(Rule::PositionTextLength.reject(format!(
            "description has {n} characters, limit {}",
            cfg.max_text_chars
        )));
    }
    Ok(())
}

/// The character count of `s` when it exceeds `max`. Byte length bounds the character count, so
/// the common short text is decided without counting.
fn over_limit(s: Option<&str>, max: usize) -> Option<usize> {
    let s = s?;
    if s.len() <= max {
        return None;
    }
    let n = s.chars().count();
    (n > max).then_some(n)
}

/// An empty allowed set disables the check (an operator who lists nothing did not mean "reject all").
fn check_status(status: Option<&str>, allowed: &[String], rule: Rule) -> Result<(), Reject> {
    match status {
        Some(s) if !allowed.is_empty() && !allowed.iter().any(|a| a.eq_ignore_ascii_case(s)) => {
            Err(rule.reject(format!("status `{s}` is not one of {allowed:?}")))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{Fixture, NOW};
    use super::*;

    const FX: Fixture = Fixture::new("bullhorn", "1", 1, "crm.raw.bullhorn.candidate");

    /// A candidate that passes every rule.
    fn candidate() -> Candidate {
        Candidate {
            first_name: Some("Ada".into()),
            last_name: Some("Lovelace".into()),
            email: Some("ada@example.com".into()),
            status: Some("Active".into()),
            summary: Some("Analyst".into()),
            ..FX.candidate()
        }
    }

    /// A position that passes every rule.
    fn position() -> Position {
        Position {
            crm_id: "7".into(),
            title: Some("Engineer".into()),
            description: Some("Build things".into()),
            status: Some("Open".into()),
            is_open: Some(true),
            salary: Some(100_000.0),
            pay_rate: Some(50.0),
            start_date: Some(NOW),
            ..FX.position()
        }
    }

    #[test]
    fn rules_table_matches_enum_and_names_are_unique() {
        for (i, spec) in RULES.iter().enumerate() {
            assert_eq!(spec.rule as usize, i, "{} out of order", spec.name);
            assert_eq!(spec.rule.name(), spec.name);
        }
        let mut names: Vec<_> = RULES.iter().map(|r| r.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), RULES.len());
    }

    type CandidateEdit = fn(&mut Candidate, &mut NormalizeConfig);

    #[test]
    fn candidate_rules_table() {
        // (case, edit, expected rule or None for a pass)
        let cases: &[(&str, CandidateEdit, Option<&str>)] = &[
            ("baseline", |_, _| {}, None),
            (
                "crm id empty",
                |c, _| c.crm_id.clear(),
                Some("candidate.crm_id.required"),
            ),
            ("only last name", |c, _| c.first_name = None, None),
            ("only first name", |c, _| c.last_name = None, None),
            (
                "no name",
                |c, _| {
                    c.first_name = None;
                    c.last_name = None
                },
                Some("candidate.name.required"),
            ),
            (
                "name 100 chars",
                |c, _| c.first_name = Some("é".repeat(100)),
                None,
            ),
            (
                "name 101 chars",
                |c, _| c.last_name = Some("a".repeat(101)),
                Some("candidate.name.length"),
            ),
            ("email missing", |c, _| c.email = None, None),
            (
                "email malformed",
                |c, _| c.email = Some("ada.example.com".into()),
                Some("candidate.email.format"),
            ),
            (
                "email with space",
                |c, _| c.email = Some("ada l@example.com".into()),
                Some("candidate.email.format"),
            ),
            (
                "status other case",
                |c, _| c.status = Some("active".into()),
                None,
            ),
            ("status missing", |c, _| c.status = None, None),
            (
                "status not allowed",
                |c, _| c.status = Some("Teleported".into()),
                Some("candidate.status.allowed"),
            ),
            (
                "empty status set allows all",
                |c, cfg| {
                    c.status = Some("Submitted".into());
                    cfg.candidate_statuses.clear()
                },
                None,
            ),
            (
                "summary at limit",
                |c, cfg| {
                    cfg.max_text_chars = 7;
                    c.summary = Some("Analyst".into())
                },
                None,
            ),
            (
                "summary over limit",
                |c, cfg| {
                    cfg.max_text_chars = 6;
                    c.summary = Some("Analyst".into())
                },
                Some("candidate.text.length"),
            ),
            (
                "multibyte counted as chars",
                |c, cfg| {
                    cfg.max_text_chars = 3;
                    c.summary = Some("日本語".into())
                },
                None,
            ),
        ];
        for (name, edit, want) in cases {
            let mut c = candidate();
            let mut cfg = NormalizeConfig::default();
            edit(&mut c, &mut cfg);
            let got = validate_candidate(&c, &cfg).err();
            assert_eq!(got.as_ref().map(|r| r.rule), *want, "case {name}: {got:?}");
            if let Some(r) = got {
                assert_eq!(r.class, RejectClass::Validation, "case {name}");
                assert!(!r.reason.is_empty(), "case {name}");
            }
        }
    }

    type PositionEdit = fn(&mut Position, &mut NormalizeConfig);

    #[test]
    fn position_rules_table() {
        let cases: &[(&str, PositionEdit, Option<&str>)] = &[
            ("baseline", |_, _| {}, None),
            (
                "crm id empty",
                |p, _| p.crm_id.clear(),
                Some("position.crm_id.required"),
            ),
            (
                "no title",
                |p, _| p.title = None,
                Some("position.title.required"),
            ),
            (
                "title 101 chars",
                |p, _| p.title = Some("x".repeat(101)),
                Some("position.title.length"),
            ),
            ("salary zero", |p, _| p.salary = Some(0.0), None),
            ("salary missing", |p, _| p.salary = None, None),
            (
                "salary negative",
                |p, _| p.salary = Some(-1.0),
                Some("position.salary.non_negative"),
            ),
            (
                "pay rate negative",
                |p, _| p.pay_rate = Some(-0.5),
                Some("position.salary.non_negative"),
            ),
            (
                "start 1990-01-01",
                |p, _| p.start_date = Some(START_DATE_MIN_MS),
                None,
            ),
            (
                "start 1989",
                |p, _| p.start_date = Some(START_DATE_MIN_MS - 1),
                Some("position.start_date.range"),
            ),
            (
                "start in 5 years",
                |p, _| p.start_date = Some(NOW + START_DATE_MAX_AHEAD_MS),
                None,
            ),
            (
                "start in 6 years",
                |p, _| p.start_date = Some(NOW + 6 * 366 * 86_400_000),
                Some("position.start_date.range"),
            ),
            ("start missing", |p, _| p.start_date = None, None),
            (
                "status not allowed",
                |p, _| p.status = Some("Maybe".into()),
                Some("position.status.allowed"),
            ),
            (
                "status other case",
                |p, _| p.status = Some("on hold".into()),
                None,
            ),
            (
                "description over limit",
                |_, cfg| cfg.max_text_chars = 5,
                Some("position.text.length"),
            ),
        ];
        for (name, edit, want) in cases {
            let mut p = position();
            let mut cfg = NormalizeConfig::default();
            edit(&mut p, &mut cfg);
            let got = validate_position(&p, &cfg, NOW).err();
            assert_eq!(got.as_ref().map(|r| r.rule), *want, "case {name}: {got:?}");
        }
    }

    #[test]
    fn hubspot_profile_table() {
        let cases: &[(&str, CandidateEdit, Option<&str>)] = &[
            (
                "bullhorn status is not a lead status",
                |_, _| {},
                Some("hubspot.candidate.lead_status.allowed"),
            ),
            ("lead status", |c, _| c.status = Some("NEW".into()), None),
            (
                "lead status lower case",
                |c, _| c.status = Some("bad_timing".into()),
                None,
            ),
            (
                "email only",
                |c, _| {
                    c.status = None;
                    c.first_name = None;
                    c.last_name = None
                },
                None,
            ),
            (
                "no name, no email",
                |c, _| {
                    c.status = None;
                    c.first_name = None;
                    c.last_name = None;
                    c.email = None
                },
                Some("hubspot.candidate.identity.required"),
            ),
            (
                "empty lead status set allows all",
                |_, cfg| cfg.hubspot.lead_statuses.clear(),
                None,
            ),
        ];
        for (name, edit, want) in cases {
            let mut c = candidate();
            c.crm = "hubspot".into();
            let mut cfg = NormalizeConfig::default();
            edit(&mut c, &mut cfg);
            let got = validate_candidate_as(&c, &cfg, Profile::Hubspot).err();
            assert_eq!(got.as_ref().map(|r| r.rule), *want, "case {name}: {got:?}");
        }
        let mut p = position();
        p.status = Some("Accepting Candidates".into());
        assert_eq!(
            validate_position_as(&p, &NormalizeConfig::default(), NOW, Profile::Hubspot)
                .unwrap_err()
                .rule,
            "hubspot.position.status.allowed"
        );
        p.status = Some("on_hold".into());
        assert!(
            validate_position_as(&p, &NormalizeConfig::default(), NOW, Profile::Hubspot).is_ok()
        );
    }

    #[test]
    fn tombstones_are_never_rejected() {
        let mut c = candidate();
        c.deleted = true;
        c.first_name = None;
        c.last_name = None;
        c.email = Some("broken".into());
        assert!(validate_candidate(&c, &NormalizeConfig::default()).is_ok());
        let mut p = position();
        p.deleted = true;
        p.title = None;
        p.salary = Some(-5.0);
        assert!(validate_position(&p, &NormalizeConfig::default(), NOW).is_ok());
    }
}
