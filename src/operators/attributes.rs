//! The mapping operator: the fields `[mapping.<crm>.<entity>]` names, read from the raw CRM JSON,
//! typed and checked, become the canonical record's `attributes`.
//!
//! CRM-agnostic: it reads fields by name from the record's top level (Bullhorn, Salesforce) or
//! from its `properties` object (HubSpot, see [`field_root`]), so a CRM gets custom fields by
//! having a mapping section. Only the mapped keys are kept while parsing; everything else is
//! skipped unbuilt.
//!
//! Values are read leniently, as CRMs send them: a number may come as text (`"650.00"`), a
//! boolean as `0/1`/`"yes"`, a date as epoch ms, `YYYY-MM-DD` (midnight UTC) or RFC 3339, a list
//! as a JSON array or one text split at the separators (`;` and `,` unless configured), a Bullhorn
//! text as a one-element array. Texts are cleaned like every other field ([`super::text`]); a
//! blank value is no value. Then the rules run, in this order, each with its own DLQ rule name:
//! `mapping.<attribute>.type` (the value cannot be read as the type), `.required`, `.enum`
//! (ASCII case-insensitive; the configured spelling is stored), `.regex` (the whole value, each
//! item of a list), `.range` (inclusive). The first failing rule rejects the record.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::sync::{LazyLock, Mutex};

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use crate::config::mapping::{canonical_of, AttrType, AttributeSpec, MappingConfig};
use crate::model::{AttributeDate, AttributeValue, Attributes};

use super::text::clean_text;
use super::{Reject, RejectClass};

/// Where a CRM's record keeps its fields: `None` for the top level, else the object's key.
pub fn field_root(crm: &str) -> Option<&'static str> {
    match crm {
        "hubspot" => Some("properties"),
        _ => None,
    }
}

/// The rules an attribute can break, as in `mapping.<attribute>.<rule>`.
pub const RULE_KINDS: [(&str, &str); 5] = [
    ("type", "the value can be read as the attribute's type"),
    ("required", "the attribute has a value"),
    (
        "enum",
        "the value (each item of a list) is one of the configured values",
    ),
    (
        "regex",
        "the whole value (each item of a list) matches the configured expression",
    ),
    (
        "range",
        "the number is within the configured min and max (inclusive)",
    ),
];

/// Rule names live as long as the process (the DLQ and the stage's outcome hold `&'static str`);
/// interning them means compiling the same mapping again allocates nothing new.
fn intern(name: String) -> &'static str {
    static NAMES: LazyLock<Mutex<HashSet<&'static str>>> = LazyLock::new(Default::default);
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(n) = names.get(name.as_str()) {
        return n;
    }
    let leaked: &'static str = Box::leak(name.into_boxed_str());
    names.insert(leaked);
    leaked
}

/// One compiled entry.
#[derive(Debug, Clone)]
pub struct Attr {
    pub name: String,
    pub field: String,
    pub ty: AttrType,
    required: bool,
    allowed: Vec<String>,
    regex: Option<regex::Regex>,
    min: Option<f64>,
    max: Option<f64>,
    separators: Vec<char>,
    rules: [&'static str; 5],
}

impl Attr {
    fn compile(name: &str, spec: &AttributeSpec) -> Result<Self, String> {
        let regex = spec
            .regex
            .as_deref()
            .map(|re| regex::Regex::new(&format!("^(?:{re})$")))
            .transpose()
            .map_err(|e| format!("mapping attribute `{name}`: regex: {e}"))?;
        let rules = RULE_KINDS.map(|(k, _)| intern(format!("mapping.{name}.{k}")));
        Ok(Self {
            name: name.to_owned(),
            field: spec.field.clone(),
            ty: spec.ty,
            required: spec.required,
            allowed: spec.allowed.clone().unwrap_or_default(),
            regex,
            min: spec.min,
            max: spec.max,
            separators: spec
                .separator
                .as_deref()
                .map(|s| s.chars().collect())
                .unwrap_or_else(|| vec![';', ',']),
            rules,
        })
    }

    fn reject(&self, kind: usize, reason: String) -> Reject {
        Reject {
            class: if kind == 0 {
                RejectClass::Transform
            } else {
                RejectClass::Validation
            },
            rule: self.rules[kind],
            reason,
        }
    }

    /// The rule names of this attribute, for `crmflow mapping check` and the docs.
    pub fn rule_names(&self) -> &[&'static str; 5] {
        &self.rules
    }
}

/// The compiled mapping of one CRM entity.
#[derive(Debug, Clone)]
pub struct EntityMapping {
    pub crm: String,
    /// Lower case, e.g. `candidate`, `joborder`.
    pub entity: String,
    /// `candidate` or `position`.
    pub canonical: &'static str,
    pub attrs: Vec<Attr>,
}

/// The whole compiled `[mapping]`; empty maps nothing.
#[derive(Debug, Clone, Default)]
pub struct Mapping {
    pub entities: Vec<EntityMapping>,
}

impl Mapping {
    /// Compiles a validated `[mapping]` (see [`crate::config::mapping::validate`]).
    pub fn compile(cfg: &MappingConfig) -> Result<Self, String> {
        crate::config::mapping::validate(cfg)?;
        let mut entities = Vec::new();
        for (crm, ents) in cfg {
            for (entity, attrs) in ents {
                let canonical = canonical_of(crm, entity).expect("validated");
                let attrs = attrs
                    .iter()
                    .map(|(name, spec)| Attr::compile(name, spec))
                    .collect::<Result<Vec<_>, _>>()?;
                entities.push(EntityMapping {
                    crm: crm.to_ascii_lowercase(),
                    entity: entity.to_ascii_lowercase(),
                    canonical,
                    attrs,
                });
            }
        }
        Ok(Self { entities })
    }

    pub fn is_empty(&self) -> bool {
        self.entities.iter().all(|e| e.attrs.is_empty())
    }

    /// The mapping of one CRM entity (`entity` as the event names it, any case).
    pub fn entity(&self, crm: &str, entity: &str) -> Option<&EntityMapping> {
        self.entities.iter().find(|e| {
            e.crm.eq_ignore_ascii_case(crm)
                && e.entity.eq_ignore_ascii_case(entity)
                && !e.attrs.is_empty()
        })
    }
}

/// Reads, types and checks the mapped fields of one record.
pub fn extract(record: &str, crm: &str, m: &EntityMapping) -> Result<Attributes, Reject> {
    let fields: Vec<&str> = m.attrs.iter().map(|a| a.field.as_str()).collect();
    let mut values: Vec<Option<Value>> = vec![None; fields.len()];
    let mut de = serde_json::Deserializer::from_str(record);
    Pick {
        fields: &fields,
        root: field_root(crm),
        out: &mut values,
    }
    .deserialize(&mut de)
    .map_err(|e| super::validate::Rule::RecordJson.reject(e.to_string()))?;
    let mut out = Attributes::new();
    for (attr, raw) in m.attrs.iter().zip(values) {
        if let Some(v) = typed(attr, raw.as_ref())? {
            out.insert(attr.name.clone(), v);
        }
    }
    Ok(out)
}

/// One attribute's value, typed and checked; `None` when the record has none.
fn typed(a: &Attr, raw: Option<&Value>) -> Result<Option<AttributeValue>, Reject> {
    let bad_type = |v: &Value| {
        let mut shown = v.to_string();
        if shown.len() > 80 {
            let cut = (0..=80)
                .rev()
                .find(|i| shown.is_char_boundary(*i))
                .unwrap_or(0);
            shown.truncate(cut);
            shown.push('…');
        }
        a.reject(0, format!("field {} = {shown} is not a {}", a.field, a.ty))
    };
    let raw = match raw {
        // A Bullhorn text may come as an array: its first element counts (lists keep all).
        Some(Value::Array(items)) if a.ty != AttrType::ListString => items.first(),
        other => other,
    };
    let value = match raw {
        None | Some(Value::Null) => None,
        Some(v) => match a.ty {
            AttrType::String => text(v)
                .ok_or_else(|| bad_type(v))?
                .map(AttributeValue::String),
            AttrType::Long => long(v)
                .ok_or_else(|| bad_type(v))?
                .map(AttributeValue::Long),
            AttrType::Double => double(v)
                .ok_or_else(|| bad_type(v))?
                .map(AttributeValue::Double),
            AttrType::Boolean => flag(v)
                .ok_or_else(|| bad_type(v))?
                .map(AttributeValue::Boolean),
            AttrType::Date => date(v)
                .ok_or_else(|| bad_type(v))?
                .map(|epoch_ms| AttributeValue::Date(AttributeDate { epoch_ms })),
            AttrType::ListString => list(v, &a.separators)
                .ok_or_else(|| bad_type(v))?
                .map(AttributeValue::List),
        },
    };
    let Some(mut value) = value else {
        if a.required {
            return Err(a.reject(1, format!("field {} has no value", a.field)));
        }
        return Ok(None);
    };
    if !a.allowed.is_empty() {
        let canon = |s: &str| {
            a.allowed
                .iter()
                .find(|x| x.eq_ignore_ascii_case(s))
                .cloned()
                .ok_or_else(|| {
                    a.reject(
                        2,
                        format!(
                            "field {} = {s:?} is not one of {}",
                            a.field,
                            a.allowed.join(" | ")
                        ),
                    )
                })
        };
        match &mut value {
            AttributeValue::String(s) => *s = canon(s)?,
            AttributeValue::List(items) => {
                for s in items.iter_mut() {
                    *s = canon(s)?;
                }
            }
            _ => {}
        }
    }
    if let Some(re) = &a.regex {
        let items: &[String] = match &value {
            AttributeValue::String(s) => std::slice::from_ref(s),
            AttributeValue::List(items) => items,
            _ => &[],
        };
        if let Some(s) = items.iter().find(|s| !re.is_match(s)) {
            return Err(a.reject(
                3,
                format!("field {} = {s:?} does not match {}", a.field, re.as_str()),
            ));
        }
    }
    let n = match value {
        AttributeValue::Long(n) => Some(n as f64),
        AttributeValue::Double(n) => Some(n),
        _ => None,
    };
    if let Some(n) = n {
        if a.min.is_some_and(|lo| n < lo) || a.max.is_some_and(|hi| n > hi) {
            let bound = |b: Option<f64>| b.map_or("-".to_owned(), |b| b.to_string());
            return Err(a.reject(
                4,
                format!(
                    "field {} = {n} is outside {}..{}",
                    a.field,
                    bound(a.min),
                    bound(a.max)
                ),
            ));
        }
    }
    Ok(Some(value))
}

/// A cleaned text; `Some(None)` for a blank one, `None` for a value that is not text.
fn text(v: &Value) -> Option<Option<String>> {
    let s = match v {
        Value::String(s) => clean_text(s),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    Some((!s.is_empty()).then_some(s))
}

fn blank(s: &str) -> bool {
    s.trim().is_empty()
}

fn long(v: &Value) -> Option<Option<i64>> {
    let whole = |f: f64| (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64);
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().and_then(whole)).map(Some),
        Value::String(s) if blank(s) => Some(None),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>()
                .ok()
                .or_else(|| s.parse::<f64>().ok().and_then(whole))
                .map(Some)
        }
        _ => None,
    }
}

fn double(v: &Value) -> Option<Option<f64>> {
    match v {
        Value::Number(n) => n.as_f64().map(Some),
        Value::String(s) if blank(s) => Some(None),
        Value::String(s) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Some),
        _ => None,
    }
}

fn flag(v: &Value) -> Option<Option<bool>> {
    match v {
        Value::Bool(b) => Some(Some(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(0) => Some(Some(false)),
            Some(1) => Some(Some(true)),
            _ => None,
        },
        Value::String(s) if blank(s) => Some(None),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "1" => Some(Some(true)),
            "false" | "no" | "n" | "0" => Some(Some(false)),
            _ => None,
        },
        _ => None,
    }
}

/// Epoch ms from epoch ms, `YYYY-MM-DD` (midnight UTC) or RFC 3339.
pub fn date(v: &Value) -> Option<Option<i64>> {
    match v {
        Value::Number(n) => n.as_i64().map(Some),
        Value::String(s) if blank(s) => Some(None),
        Value::String(s) => {
            let s = s.trim();
            if let Ok(ms) = s.parse::<i64>() {
                return Some(Some(ms));
            }
            if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
                return Some(Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis()));
            }
            chrono::DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| Some(t.timestamp_millis()))
        }
        _ => None,
    }
}

fn list(v: &Value, separators: &[char]) -> Option<Option<Vec<String>>> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |s: &str| {
        let s = clean_text(s);
        if !s.is_empty() && !out.contains(&s) {
            out.push(s);
        }
    };
    match v {
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::String(s) => push(s),
                    Value::Number(n) => push(&n.to_string()),
                    Value::Null => {}
                    _ => return None,
                }
            }
        }
        Value::String(s) => s.split(separators).for_each(&mut push),
        Value::Number(n) => push(&n.to_string()),
        _ => return None,
    }
    Some((!out.is_empty()).then_some(out))
}

/// A JSON object key, borrowed when the input allows it.
struct Key<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// Keeps the values of `fields` (at the top level, or inside `root`), skipping the rest.
struct Pick<'a> {
    fields: &'a [&'a str],
    root: Option<&'static str>,
    out: &'a mut Vec<Option<Value>>,
}

impl<'de> DeserializeSeed<'de> for Pick<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Pick<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if self.root == Some(&*key) {
                map.next_value_seed(Pick {
                    fields: self.fields,
                    root: None,
                    out: &mut *self.out,
                })?;
            } else if let (None, Some(i)) = (self.root, self.fields.iter().position(|f| *f == key))
            {
                self.out[i] = Some(map.next_value::<Value>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
    /// A JSON `null` record (some deletes): no fields.
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(toml_text: &str) -> Mapping {
        #[derive(serde::Deserialize)]
        struct File {
            mapping: MappingConfig,
        }
        let f: File = toml::from_str(toml_text).unwrap();
        Mapping::compile(&f.mapping).unwrap()
    }

    const BULLHORN: &str = r#"
        [mapping.bullhorn.candidate]
        visa_status = { field = "customText2", type = "string", enum = ["Citizen", "Work visa", "Sponsorship needed"] }
        notice_days = { field = "customInt1", type = "long", min = 0, max = 365 }
        day_rate = { field = "customFloat1", type = "double", min = 0 }
        relocate = { field = "customText5", type = "boolean" }
        available_from = { field = "customDate1", type = "date" }
        sectors = { field = "customText3", type = "list<string>", regex = "[A-Za-z &]+" }
        linkedin = { field = "customText1", type = "string", required = true, regex = "https://[a-z.]*linkedin\\.com/.+" }
    "#;

    /// (case, record JSON, expected attributes as JSON, or the rule that rejects it)
    type Case<'a> = (&'a str, &'a str, Result<&'a str, &'a str>);

    #[test]
    fn bullhorn_custom_fields_are_typed_and_checked() {
        let m = mapping(BULLHORN);
        let e = m.entity("bullhorn", "Candidate").unwrap();
        let li = r#""customText1":"https://www.linkedin.com/in/x""#;
        let cases: &[Case<'_>] = &[
            (
                "clean values",
                r#"{"id":1,"customText2":"Citizen","customInt1":30,"customFloat1":650.5,"customText5":true,"customDate1":1767225600000,"customText3":"Fintech;Energy","customText1":"https://www.linkedin.com/in/x"}"#,
                Ok(
                    r#"{"available_from":{"epoch_ms":1767225600000},"day_rate":650.5,"linkedin":"https://www.linkedin.com/in/x","notice_days":30,"relocate":true,"sectors":["Fintech","Energy"],"visa_status":"Citizen"}"#,
                ),
            ),
            (
                "dirty but readable values",
                r#"{"customText2":["  citizen "],"customInt1":"30","customFloat1":"650.00","customText5":"Yes","customDate1":"2026-01-01","customText3":" Fintech , fintech,Energy;; ","customText1":"https://www.linkedin.com/in/x"}"#,
                Ok(
                    r#"{"available_from":{"epoch_ms":1767225600000},"day_rate":650.0,"linkedin":"https://www.linkedin.com/in/x","notice_days":30,"relocate":true,"sectors":["Fintech","fintech","Energy"],"visa_status":"Citizen"}"#,
                ),
            ),
            (
                "blank and null values are absent",
                r#"{"customText2":"","customInt1":null,"customFloat1":" ","customText3":[],"customText1":"https://www.linkedin.com/in/x"}"#,
                Ok(r#"{"linkedin":"https://www.linkedin.com/in/x"}"#),
            ),
            (
                "required missing",
                r#"{"id":1}"#,
                Err("mapping.linkedin.required"),
            ),
            (
                "required blank",
                r#"{"customText1":"   "}"#,
                Err("mapping.linkedin.required"),
            ),
            (
                "enum",
                &format!(r#"{{{li},"customText2":"Tourist"}}"#),
                Err("mapping.visa_status.enum"),
            ),
            (
                "regex",
                r#"{"customText1":"http://example.com"}"#,
                Err("mapping.linkedin.regex"),
            ),
            (
                "regex on a list item",
                &format!(r#"{{{li},"customText3":"Fintech;R&D 2"}}"#),
                Err("mapping.sectors.regex"),
            ),
            (
                "range below",
                &format!(r#"{{{li},"customInt1":-5}}"#),
                Err("mapping.notice_days.range"),
            ),
            (
                "range above",
                &format!(r#"{{{li},"customInt1":"400"}}"#),
                Err("mapping.notice_days.range"),
            ),
            (
                "not a long",
                &format!(r#"{{{li},"customInt1":"two weeks"}}"#),
                Err("mapping.notice_days.type"),
            ),
            (
                "fractional long",
                &format!(r#"{{{li},"customInt1":30.5}}"#),
                Err("mapping.notice_days.type"),
            ),
            (
                "not a double",
                &format!(r#"{{{li},"customFloat1":"650/day"}}"#),
                Err("mapping.day_rate.type"),
            ),
            (
                "not a boolean",
                &format!(r#"{{{li},"customText5":"maybe"}}"#),
                Err("mapping.relocate.type"),
            ),
            (
                "not a date",
                &format!(r#"{{{li},"customDate1":"next week"}}"#),
                Err("mapping.available_from.type"),
            ),
            (
                "object for a string",
                &format!(r#"{{{li},"customText2":{{"a":1}}}}"#),
                Err("mapping.visa_status.type"),
            ),
            ("not JSON", "{", Err("record.json")),
        ];
        for (name, record, want) in cases {
            match (extract(record, "bullhorn", e), want) {
                (Ok(got), Ok(want)) => {
                    assert_eq!(serde_json::to_string(&got).unwrap(), *want, "{name}");
                }
                (Err(r), Err(rule)) => {
                    assert_eq!(r.rule, *rule, "{name}: {r}");
                    assert!(!r.reason.is_empty());
                }
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn hubspot_fields_come_from_properties_and_dates_parse() {
        let m = mapping(
            r#"[mapping.hubspot.contact]
            visa_status = { field = "visa_status", type = "string" }
            sectors = { field = "target_sectors", type = "list<string>", separator = ";" }
            start = { field = "available_from", type = "date" }"#,
        );
        let e = m.entity("hubspot", "contact").unwrap();
        let got = extract(
            r#"{"id":"5","visa_status":"top-level is not a property","properties":{"visa_status":"Work visa","target_sectors":"Fintech, Banking;Energy","available_from":"2026-03-01T09:30:00.000Z"},"archived":false}"#,
            "hubspot",
            e,
        )
        .unwrap();
        assert_eq!(
            got["visa_status"],
            AttributeValue::String("Work visa".into())
        );
        assert_eq!(
            got["sectors"],
            AttributeValue::List(vec!["Fintech, Banking".into(), "Energy".into()])
        );
        assert_eq!(
            got["start"],
            AttributeValue::Date(AttributeDate {
                epoch_ms: 1_772_357_400_000
            })
        );
        assert!(m.entity("hubspot", "deal").is_none());
        assert!(m.entity("bullhorn", "contact").is_none());
    }

    #[test]
    fn rule_names_are_interned_once() {
        let a = mapping(BULLHORN);
        let b = mapping(BULLHORN);
        let ra = a.entity("bullhorn", "candidate").unwrap().attrs[0].rule_names()[2];
        let rb = b.entity("bullhorn", "candidate").unwrap().attrs[0].rule_names()[2];
        assert_eq!(ra, "mapping.available_from.enum");
        assert!(std::ptr::eq(ra, rb));
    }
}
