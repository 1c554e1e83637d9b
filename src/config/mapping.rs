//! `[mapping.<crm>.<entity>]`: which CRM fields (custom fields above all) become typed canonical
//! attributes, and the rules their values must pass.
//!
//! ```toml
//! [mapping.bullhorn.candidate]
//! visa_status = { field = "customText2", type = "string", enum = ["Citizen", "Permanent resident", "Work visa", "Sponsorship needed"] }
//! notice_days = { field = "customInt1", type = "long", min = 0, max = 365 }
//! sectors     = { field = "customText3", type = "list<string>", separator = ";" }
//! ```
//!
//! This module owns the file format and its checks: a CRM or entity crmflow has no transform for,
//! an attribute name that is not a lower-case identifier, a rule that does not fit the type (a
//! range on a string, an enum on a number), an invalid regex, the same attribute with two types
//! for one canonical record. Each is a one-line error naming the key. What the entries *do* with
//! a record is [`crate::operators::attributes`]; whether the CRM has the field is
//! `crmflow mapping check` ([`crate::mapping`]).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// `[mapping]`: CRM -> CRM entity (lower case, as in the raw topic) -> attribute name -> entry.
pub type MappingConfig = BTreeMap<String, BTreeMap<String, BTreeMap<String, AttributeSpec>>>;

/// The type of an attribute's value in the canonical record (and in `attributes` jsonb).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AttrType {
    #[serde(rename = "string")]
    String,
    /// A 64-bit integer.
    #[serde(rename = "long")]
    Long,
    /// A 64-bit float.
    #[serde(rename = "double")]
    Double,
    #[serde(rename = "boolean")]
    Boolean,
    /// A point in time: epoch ms in Avro, RFC 3339 UTC text in Postgres. CRM values may be
    /// epoch ms, `YYYY-MM-DD` (midnight UTC) or RFC 3339.
    #[serde(rename = "date")]
    Date,
    /// A list of texts: a JSON array, or one text split at `separator`.
    #[serde(rename = "list<string>")]
    ListString,
}

impl AttrType {
    pub fn as_str(self) -> &'static str {
        match self {
            AttrType::String => "string",
            AttrType::Long => "long",
            AttrType::Double => "double",
            AttrType::Boolean => "boolean",
            AttrType::Date => "date",
            AttrType::ListString => "list<string>",
        }
    }
}

impl fmt::Display for AttrType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One attribute: where it comes from, its type, and its rules. Each rule that fails sends the
/// record to `crm.dlq` with rule `mapping.<attribute>.<rule>` (`required`, `enum`, `regex`,
/// `range`, and `type` for a value that cannot be read as the type).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeSpec {
    /// The CRM's API name of the field (`customText2`, `visa_status`, `Visa_Status__c`).
    pub field: String,
    /// `string`, `long`, `double`, `boolean`, `date` or `list<string>`.
    #[serde(rename = "type")]
    pub ty: AttrType,
    /// A record without a value (absent, null or blank) is rejected.
    #[serde(default, skip_serializing_if = "is_false")]
    pub required: bool,
    /// Allowed values (string, list<string>: each item), compared ASCII case-insensitively; the
    /// stored value is the spelling given here.
    #[serde(default, rename = "enum", skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<String>>,
    /// A regular expression the whole value (each item of a list) must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// Smallest allowed value, inclusive (long, double).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Largest allowed value, inclusive (long, double).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Separators of a list given as one text (list<string>); default `;` and `,`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub separator: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The (CRM, entity) pairs crmflow has a transform for, and the canonical record each feeds.
pub const MAPPABLE: &[(&str, &str, &str)] = &[
    ("bullhorn", "candidate", "candidate"),
    ("bullhorn", "joborder", "position"),
    ("hubspot", "contact", "candidate"),
    ("hubspot", "job", "position"),
    ("hubspot", "deal", "position"),
    ("salesforce", "contact", "candidate"),
    ("salesforce", "position__c", "position"),
];

/// The canonical record (`candidate`, `position`) a CRM entity feeds, when it has a transform.
pub fn canonical_of(crm: &str, entity: &str) -> Option<&'static str> {
    MAPPABLE
        .iter()
        .find(|(c, e, _)| c.eq_ignore_ascii_case(crm) && e.eq_ignore_ascii_case(entity))
        .map(|(_, _, canonical)| *canonical)
}

/// A valid attribute name: `[a-z][a-z0-9_]*`, at most 63 characters (it is a jsonb key, a
/// template placeholder and part of a rule name).
pub fn valid_attribute_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && name.len() <= 63
}

/// Checks the whole `[mapping]` table; the error names the offending key.
pub fn validate(mapping: &MappingConfig) -> Result<(), String> {
    // attribute name -> (canonical record, type, where first seen)
    let mut seen: BTreeMap<(&str, &str), (AttrType, String)> = BTreeMap::new();
    for (crm, entities) in mapping {
        for (entity, attrs) in entities {
            let at = format!("mapping.{crm}.{entity}");
            let canonical = canonical_of(crm, entity).ok_or_else(|| {
                let known: Vec<String> = MAPPABLE
                    .iter()
                    .map(|(c, e, _)| format!("{c}.{e}"))
                    .collect();
                format!(
                    "`{at}`: no transform for this CRM entity; known: {}",
                    known.join(", ")
                )
            })?;
            for (name, spec) in attrs {
                let key = format!("{at}.{name}");
                validate_entry(&key, name, spec)?;
                match seen.get(&(canonical, name.as_str())) {
                    Some((ty, first)) if *ty != spec.ty => {
                        return Err(format!(
                            "`{key}`: type {} differs from {} at `{first}`; one {canonical} attribute has one type",
                            spec.ty, ty
                        ))
                    }
                    Some(_) => {}
                    None => {
                        seen.insert((canonical, name.as_str()), (spec.ty, key.clone()));
                    }
                }
            }
        }
    }
    Ok(())
}

fn validate_entry(key: &str, name: &str, spec: &AttributeSpec) -> Result<(), String> {
    if !valid_attribute_name(name) {
        return Err(format!(
            "`{key}`: attribute names are lower-case identifiers ([a-z][a-z0-9_]*, at most 63 characters)"
        ));
    }
    if spec.field.trim().is_empty() || spec.field.contains([',', '(', ')', ' ']) {
        return Err(format!(
            "`{key}.field`: `{}` is not a CRM field name",
            spec.field
        ));
    }
    let textual = matches!(spec.ty, AttrType::String | AttrType::ListString);
    let numeric = matches!(spec.ty, AttrType::Long | AttrType::Double);
    if spec.allowed.is_some() && !textual {
        return Err(format!(
            "`{key}.enum`: applies to string and list<string>, not {}",
            spec.ty
        ));
    }
    if let Some(values) = &spec.allowed {
        if values.is_empty() {
            return Err(format!("`{key}.enum`: lists no value"));
        }
    }
    if spec.regex.is_some() && !textual {
        return Err(format!(
            "`{key}.regex`: applies to string and list<string>, not {}",
            spec.ty
        ));
    }
    if let Some(re) = &spec.regex {
        regex::Regex::new(re).map_err(|e| {
            format!(
                "`{key}.regex`: invalid regular expression: {}",
                e.to_string().replace('\n', " ")
            )
        })?;
    }
    if (spec.min.is_some() || spec.max.is_some()) && !numeric {
        return Err(format!(
            "`{key}.min`/`max`: a range applies to long and double, not {}",
            spec.ty
        ));
    }
    if let (Some(lo), Some(hi)) = (spec.min, spec.max) {
        if lo > hi {
            return Err(format!("`{key}`: min {lo} is above max {hi}"));
        }
    }
    if spec.separator.is_some() && spec.ty != AttrType::ListString {
        return Err(format!(
            "`{key}.separator`: applies to list<string>, not {}",
            spec.ty
        ));
    }
    if spec.separator.as_deref() == Some("") {
        return Err(format!("`{key}.separator`: is empty"));
    }
    Ok(())
}

/// The mapped fields of one CRM entity (for the sources' field lists), in attribute order.
pub fn fields_of<'a>(mapping: &'a MappingConfig, crm: &str, entity: &str) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for (c, entities) in mapping {
        if !c.eq_ignore_ascii_case(crm) {
            continue;
        }
        for (e, attrs) in entities {
            if !e.eq_ignore_ascii_case(entity) {
                continue;
            }
            for spec in attrs.values() {
                if !out.contains(&spec.field.as_str()) {
                    out.push(&spec.field);
                }
            }
        }
    }
    out
}

/// The top-level names of a Bullhorn `fields=` list (`a,b(c,d),e` -> `a`, `b`, `e`).
fn top_level_fields(list: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0usize, 0usize);
    for (i, c) in list.char_indices() {
        match c {
            '(' => {
                if depth == 0 {
                    out.push(list[start..i].trim());
                }
                depth += 1;
            }
            ')' => {
                depth = depth.saturating_sub(1);
                start = i + 1;
            }
            ',' if depth == 0 => {
                out.push(list[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(list[start..].trim());
    out.retain(|f| !f.is_empty());
    out
}

/// Appends `extra` to a comma-separated field list, skipping names already read.
fn append_fields(list: &mut String, extra: &[&str]) {
    for field in extra {
        let present = top_level_fields(list)
            .iter()
            .any(|f| f.eq_ignore_ascii_case(field));
        if !present {
            if !list.trim().is_empty() {
                list.push(',');
            }
            list.push_str(field);
        }
    }
}

impl super::Config {
    /// Makes every source read the fields its mapping names: Bullhorn's `fields=` list,
    /// HubSpot's `properties=`, Salesforce's SOQL select list. Idempotent; `Config::load` calls
    /// it, and so does `crmflow run` for configurations built in code.
    pub fn add_mapped_fields(&mut self) {
        let mapping = self.mapping.clone();
        let entities = self.bullhorn.entities.clone();
        for entity in &entities {
            let extra = fields_of(&mapping, "bullhorn", entity);
            if extra.is_empty() {
                continue;
            }
            let list = match self
                .bullhorn
                .fields
                .iter_mut()
                .find(|(k, _)| k.eq_ignore_ascii_case(entity))
            {
                Some((_, v)) => v,
                None => self
                    .bullhorn
                    .fields
                    .entry(entity.clone())
                    .or_insert_with(|| "id,dateAdded,dateLastModified,isDeleted".to_owned()),
            };
            append_fields(list, &extra);
        }
        if let Some(hs) = self.hubspot.as_mut() {
            for i in 0..hs.objects.len() {
                let extra = fields_of(&mapping, "hubspot", &hs.objects[i].entity);
                if extra.is_empty() {
                    continue;
                }
                let mut props = hs.properties_of(&hs.objects[i]);
                for f in extra {
                    if !props.iter().any(|p| p == f) {
                        props.push(f.to_owned());
                    }
                }
                hs.objects[i].properties = props;
            }
        }
        let objects = self.salesforce.objects.clone();
        for object in &objects {
            let extra = fields_of(&mapping, "salesforce", object);
            if extra.is_empty() {
                continue;
            }
            let list = match self
                .salesforce
                .fields
                .iter_mut()
                .find(|(k, _)| k.eq_ignore_ascii_case(object))
            {
                Some((_, v)) => v,
                None => self.salesforce.fields.entry(object.clone()).or_default(),
            };
            append_fields(list, &extra);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<MappingConfig, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            mapping: MappingConfig,
        }
        let f: File = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        validate(&f.mapping)?;
        Ok(f.mapping)
    }

    #[test]
    fn a_good_mapping_parses_with_every_type() {
        let m = parse(
            r#"
            [mapping.bullhorn.candidate]
            visa_status = { field = "customText2", type = "string", required = true, enum = ["Citizen", "Work visa"] }
            notice_days = { field = "customInt1", type = "long", min = 0, max = 365 }
            day_rate = { field = "customFloat1", type = "double", min = 0 }
            relocate = { field = "customText5", type = "boolean" }
            available_from = { field = "customDate1", type = "date" }
            sectors = { field = "customText3", type = "list<string>", separator = ";", regex = "[A-Za-z &]+" }
            [mapping.hubspot.contact]
            visa_status = { field = "visa_status", type = "string" }
            "#,
        )
        .unwrap();
        let c = &m["bullhorn"]["candidate"];
        assert_eq!(c["sectors"].ty, AttrType::ListString);
        assert_eq!(c["notice_days"].max, Some(365.0));
        assert!(c["visa_status"].required);
        assert_eq!(
            fields_of(&m, "bullhorn", "Candidate"),
            vec![
                "customDate1",
                "customFloat1",
                "customInt1",
                "customText5",
                "customText3",
                "customText2"
            ]
        );
        assert!(fields_of(&m, "bullhorn", "JobOrder").is_empty());

        let mut cfg = crate::config::Config {
            mapping: m,
            hubspot: Some(Default::default()),
            ..Default::default()
        };
        cfg.add_mapped_fields();
        cfg.add_mapped_fields();
        let bh = &cfg.bullhorn.fields["Candidate"];
        assert!(bh.starts_with(crate::config::CANDIDATE_FIELDS), "{bh}");
        assert!(
            bh.ends_with(
                ",customDate1,customFloat1,customInt1,customText5,customText3,customText2"
            ),
            "{bh}"
        );
        assert_eq!(bh.matches("customText2").count(), 1, "idempotent");
        assert_eq!(
            cfg.bullhorn.fields["JobOrder"],
            crate::config::JOB_ORDER_FIELDS
        );
        let hs = cfg.hubspot.as_ref().unwrap();
        let contact = hs.objects.iter().find(|o| o.entity == "contact").unwrap();
        assert!(
            contact.properties.iter().any(|p| p == "email"),
            "defaults kept"
        );
        assert_eq!(
            contact
                .properties
                .iter()
                .filter(|p| *p == "visa_status")
                .count(),
            1
        );
        assert_eq!(top_level_fields("a, b(c,d(e)),f"), vec!["a", "b", "f"]);
    }

    #[test]
    fn mistakes_are_one_line_errors_naming_the_key() {
        let cases: &[(&str, &str)] = &[
            (
                r#"[mapping.bullhorn.candidate]
                x = { field = "customText1", type = "text" }"#,
                "unknown variant `text`",
            ),
            (
                r#"[mapping.bullhorn.candidate]
                x = { field = "customText1", type = "string", requird = true }"#,
                "unknown field `requird`",
            ),
            (
                r#"[mapping.bullhorn.candidat]
                x = { field = "customText1", type = "string" }"#,
                "`mapping.bullhorn.candidat`: no transform",
            ),
            (
                r#"[mapping.bullhorn.candidate]
                Visa = { field = "customText1", type = "string" }"#,
                "`mapping.bullhorn.candidate.Visa`: attribute names",
            ),
            (
                r#"[mapping.bullhorn.candidate]
                x = { field = "customInt1", type = "long", enum = ["1"] }"#,
                "`mapping.bullhorn.candidate.x.enum`: applies to string",
            ),
            (
                r#"[mapping.bullhorn.candidate]
                x = { field = "customText1", type = "string", min = 1 }"#,
                "`mapping.bullhorn.candidate.x.min`/`max`: a range applies",
            ),
            (
                r#"[mapping.bullhorn.candidate]
                x = { field = "customText1", type = "string", regex = "(" }"#,
                "`mapping.bullhorn.candidate.x.regex`: invalid regular expression",
            ),
            (
                r#"[mapping.bullhorn.candidate]
                x = { field = "customInt1", type = "long", min = 5, max = 1 }"#,
                "min 5 is above max 1",
            ),
            (
                r#"[mapping.bullhorn.candidate]
                x = { field = "customInt1,customInt2", type = "long" }"#,
                "is not a CRM field name",
            ),
            (
                r#"[mapping.bullhorn.candidate]
                x = { field = "customInt1", type = "long" }
                [mapping.hubspot.contact]
                x = { field = "x", type = "string" }"#,
                "type string differs from long at `mapping.bullhorn.candidate.x`",
            ),
            (
                r#"[mapping.bullhorn.candidate]
                x = { field = "customText1", type = "string", separator = ";" }"#,
                "`mapping.bullhorn.candidate.x.separator`: applies to list<string>",
            ),
        ];
        for (text, want) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.contains(want), "{text}\n got: {err}\nwant: {want}");
            assert!(
                !err.trim_end().contains('\n') || err.contains("TOML"),
                "{err}"
            );
        }
        // The same attribute on a candidate and a position may differ in type.
        parse(
            r#"[mapping.bullhorn.candidate]
            x = { field = "customInt1", type = "long" }
            [mapping.bullhorn.joborder]
            x = { field = "customText1", type = "string" }"#,
        )
        .unwrap();
    }
}
