//! `crmflow mapping check`: the `[mapping]` against each CRM's own field metadata (Bullhorn
//! `meta/{entity}`, HubSpot `/crm/v3/properties/{object}`, Salesforce `sobjects/{type}/describe`).
//! `crmflow run` makes the same check before it starts reading a CRM, and refuses to start with the
//! same lines.
//!
//! Each problem is one line naming the mapping key: a field the CRM does not have, a field whose
//! CRM type cannot give the attribute's type, a field the API user cannot read (Bullhorn:
//! `confidential`; HubSpot: `dataSensitivity` other than `non_sensitive`; Salesforce hides such
//! fields from `describe`, so they show as not found), or metadata that could not be read. The
//! judging ([`check_entity`]) is pure and table-tested; this module only fetches.
//!
//! The backfill of a newly mapped attribute lives in [`backfill`].

pub mod backfill;

use std::collections::BTreeMap;
use std::fmt;

use crate::config::mapping::{AttrType, AttributeSpec};
use crate::config::Config;

/// A CRM field type, as far as attributes care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrmType {
    Text,
    Integer,
    /// A decimal or floating number.
    Decimal,
    /// HubSpot's `number`: integer or decimal.
    Number,
    Boolean,
    /// A date or a timestamp.
    Date,
    /// Several values in one field (HubSpot checkboxes, Salesforce multipicklist).
    MultiText,
    /// A composite, association or binary field: no attribute type fits.
    Other,
}

/// One field of a CRM entity, from its metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldMeta {
    pub name: String,
    pub label: String,
    pub ty: CrmType,
    /// The type as the CRM names it, for messages.
    pub type_name: String,
    /// `None` when the API user can read it, else why not.
    pub unreadable: Option<String>,
}

/// What is wrong with one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    UnknownField,
    WrongType,
    Unreadable,
    /// The metadata itself could not be read.
    Metadata,
}

/// One line of `crmflow mapping check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `mapping.<crm>.<entity>.<attribute>` (or `mapping.<crm>.<entity>` for metadata).
    pub key: String,
    pub kind: ProblemKind,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Whether a field of CRM type `crm` can give attribute type `ty`.
pub fn fits(ty: AttrType, crm: CrmType) -> bool {
    use CrmType::*;
    match ty {
        AttrType::String => matches!(crm, Text),
        AttrType::Long => matches!(crm, Integer | Number),
        AttrType::Double => matches!(crm, Integer | Decimal | Number),
        AttrType::Boolean => matches!(crm, Boolean),
        AttrType::Date => matches!(crm, Date),
        AttrType::ListString => matches!(crm, Text | MultiText),
    }
}

const ALL_TYPES: [AttrType; 6] = [
    AttrType::String,
    AttrType::Long,
    AttrType::Double,
    AttrType::Boolean,
    AttrType::Date,
    AttrType::ListString,
];

/// Judges one entity's entries against its fields. `source` names the metadata in messages
/// (`Bullhorn meta/Candidate`); `hidden_means` is what a missing field may also mean there.
pub fn check_entity(
    prefix: &str,
    attrs: &BTreeMap<String, AttributeSpec>,
    fields: &[FieldMeta],
    source: &str,
    hidden_means: Option<&str>,
) -> Vec<Problem> {
    let mut out = Vec::new();
    for (name, spec) in attrs {
        let key = format!("{prefix}.{name}");
        let Some(f) = fields.iter().find(|f| f.name == spec.field) else {
            let near = fields
                .iter()
                .find(|f| f.name.eq_ignore_ascii_case(&spec.field))
                .map(|f| format!(" (did you mean {}?)", f.name))
                .unwrap_or_default();
            out.push(Problem {
                key,
                kind: ProblemKind::UnknownField,
                message: format!(
                    "unknown field {}: not in {source}{near}{}",
                    spec.field,
                    hidden_means.map(|h| format!(" ({h})")).unwrap_or_default()
                ),
            });
            continue;
        };
        if let Some(why) = &f.unreadable {
            out.push(Problem {
                key,
                kind: ProblemKind::Unreadable,
                message: format!("unreadable field {} \"{}\": {why}", f.name, f.label),
            });
            continue;
        }
        if !fits(spec.ty, f.ty) {
            let ok: Vec<&str> = ALL_TYPES
                .iter()
                .filter(|t| fits(**t, f.ty))
                .map(|t| t.as_str())
                .collect();
            out.push(Problem {
                key,
                kind: ProblemKind::WrongType,
                message: format!(
                    "wrong type: {} does not fit field {} \"{}\" ({}); it fits {}",
                    spec.ty,
                    f.name,
                    f.label,
                    f.type_name,
                    if ok.is_empty() {
                        "no attribute type".to_owned()
                    } else {
                        ok.join(", ")
                    }
                ),
            });
        }
    }
    out
}

/// Bullhorn `meta/{entity}` fields.
pub fn bullhorn_fields(meta: &crmflow_bullhorn::wire::EntityMeta) -> Vec<FieldMeta> {
    meta.fields
        .iter()
        .map(|f| {
            let ty = match (f.kind.as_str(), f.data_type.as_str()) {
                ("TO_ONE" | "TO_MANY" | "COMPOSITE", _) => CrmType::Other,
                (_, "String") => CrmType::Text,
                (_, "Integer" | "Long" | "Short") => CrmType::Integer,
                (_, "BigDecimal" | "Double" | "Float") => CrmType::Decimal,
                (_, "Boolean") => CrmType::Boolean,
                (_, "Timestamp" | "Date") => CrmType::Date,
                _ => CrmType::Other,
            };
            FieldMeta {
                name: f.name.clone(),
                label: f.label.clone(),
                ty,
                type_name: f.data_type.clone(),
                unreadable: f
                    .confidential
                    .then(|| "it is confidential and the API user may not read its values".into()),
            }
        })
        .collect()
}

/// HubSpot `/crm/v3/properties/{object}` properties.
pub fn hubspot_fields(props: &[crmflow_hubspot::wire::PropertyDef]) -> Vec<FieldMeta> {
    props
        .iter()
        .map(|p| {
            let ty = match (p.kind.as_str(), p.field_type.as_str()) {
                ("string" | "phone_number", _) => CrmType::Text,
                ("number", _) => CrmType::Number,
                ("bool", _) | ("enumeration", "booleancheckbox") => CrmType::Boolean,
                ("date" | "datetime", _) => CrmType::Date,
                ("enumeration", "checkbox") => CrmType::MultiText,
                ("enumeration", _) => CrmType::Text,
                _ => CrmType::Other,
            };
            let sensitive = p
                .data_sensitivity
                .as_deref()
                .is_some_and(|s| s != "non_sensitive");
            FieldMeta {
                name: p.name.clone(),
                label: p.label.clone(),
                ty,
                type_name: format!("{}/{}", p.kind, p.field_type),
                unreadable: sensitive.then(|| {
                    format!(
                        "it holds {} data, which needs the app's sensitive-data read scopes",
                        p.data_sensitivity.as_deref().unwrap_or_default()
                    )
                }),
            }
        })
        .collect()
}

/// Salesforce `sobjects/{type}/describe` fields.
pub fn salesforce_fields(d: &crmflow_salesforce::wire::DescribeSObject) -> Vec<FieldMeta> {
    d.fields
        .iter()
        .map(|f| {
            let ty = match f.field_type.as_str() {
                "string" | "textarea" | "email" | "phone" | "url" | "picklist" | "id"
                | "reference" | "combobox" => CrmType::Text,
                "int" | "long" => CrmType::Integer,
                "double" | "currency" | "percent" => CrmType::Decimal,
                "boolean" => CrmType::Boolean,
                "date" | "datetime" => CrmType::Date,
                "multipicklist" => CrmType::MultiText,
                _ => CrmType::Other,
            };
            FieldMeta {
                name: f.name.clone(),
                label: f.label.clone(),
                ty,
                type_name: f.field_type.clone(),
                unreadable: None,
            }
        })
        .collect()
}

/// The CRM's own name of a mapped entity: as configured for its source, else the usual one.
fn crm_entity_name(cfg: &Config, crm: &str, entity: &str) -> String {
    let configured: Vec<String> = match crm {
        "bullhorn" => cfg.bullhorn.entities.clone(),
        "salesforce" => cfg.salesforce.objects.clone(),
        _ => vec![],
    };
    configured
        .into_iter()
        .find(|e| e.eq_ignore_ascii_case(entity))
        .unwrap_or_else(|| match (crm, entity) {
            ("bullhorn", "joborder") => "JobOrder".into(),
            ("salesforce", "position__c") => "Position__c".into(),
            _ => {
                let mut c = entity.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            }
        })
}

/// The fields of one mapped CRM entity, with the name of their source for messages and what a
/// missing field may also mean there.
async fn fetch(
    cfg: &Config,
    crm: &str,
    entity: &str,
) -> Result<(Vec<FieldMeta>, String, Option<&'static str>), String> {
    match crm {
        "bullhorn" => {
            let name = crm_entity_name(cfg, crm, entity);
            let cc = crate::sources::bullhorn::client_config(&cfg.bullhorn)
                .map_err(|e| e.to_string())?;
            let client = crmflow_bullhorn::client::BullhornClient::connect(cc)
                .await
                .map_err(|e| e.to_string())?;
            let meta = client.meta(&name).await.map_err(|e| e.to_string())?;
            Ok((
                bullhorn_fields(&meta),
                format!("Bullhorn meta/{name}"),
                None,
            ))
        }
        "hubspot" => {
            let hs = cfg
                .hubspot
                .as_ref()
                .ok_or("no [hubspot] section configures the account")?;
            let object = hs
                .objects
                .iter()
                .find(|o| o.entity.eq_ignore_ascii_case(entity))
                .map(|o| o.object_type.clone())
                .ok_or_else(|| format!("[hubspot] reads no `{entity}` object"))?;
            let client =
                crate::sources::hubspot::client(hs, &cfg.ingress).map_err(|e| e.to_string())?;
            let props = client
                .properties(&object)
                .await
                .map_err(|e| e.to_string())?;
            Ok((
                hubspot_fields(&props),
                format!("HubSpot /crm/v3/properties/{object}"),
                None,
            ))
        }
        "salesforce" => {
            let name = crm_entity_name(cfg, crm, entity);
            let cc = crate::sources::salesforce::client_config(&cfg.salesforce)
                .map_err(|e| e.to_string())?;
            let client =
                crmflow_salesforce::client::SalesforceClient::new(cc).map_err(|e| e.to_string())?;
            let d = client.describe(&name).await.map_err(|e| e.to_string())?;
            Ok((
                salesforce_fields(&d),
                format!("Salesforce sobjects/{name}/describe"),
                Some("no such field, or field-level security hides it from the integration user"),
            ))
        }
        other => Err(format!("no metadata reader for CRM `{other}`")),
    }
}

/// Checks every mapped entity (or only those of `crms`) against its CRM's metadata; one
/// problem per bad entry, in key order. An empty answer means the mapping is good.
pub async fn check(cfg: &Config, crms: Option<&[&str]>) -> Vec<Problem> {
    let mut out = Vec::new();
    if let Err(e) = crate::config::mapping::validate(&cfg.mapping) {
        out.push(Problem {
            key: "mapping".into(),
            kind: ProblemKind::Metadata,
            message: e,
        });
        return out;
    }
    for (crm, entities) in &cfg.mapping {
        if crms.is_some_and(|c| !c.iter().any(|x| x.eq_ignore_ascii_case(crm))) {
            continue;
        }
        for (entity, attrs) in entities {
            if attrs.is_empty() {
                continue;
            }
            let prefix = format!("mapping.{crm}.{entity}");
            match fetch(cfg, &crm.to_ascii_lowercase(), &entity.to_ascii_lowercase()).await {
                Ok((fields, source, hidden)) => {
                    out.extend(check_entity(&prefix, attrs, &fields, &source, hidden))
                }
                Err(e) => out.push(Problem {
                    key: prefix,
                    kind: ProblemKind::Metadata,
                    message: format!("cannot read the CRM's field metadata: {e}"),
                }),
            }
        }
    }
    out
}

/// The check `crmflow run` makes before ingest reads the CRMs in `crms`: `Err` holds the same
/// lines `crmflow mapping check` prints.
pub async fn refuse_invalid(cfg: &Config, crms: &[&str]) -> Result<(), String> {
    if cfg
        .mapping
        .values()
        .all(|e| e.values().all(BTreeMap::is_empty))
    {
        return Ok(());
    }
    let problems = check(cfg, Some(crms)).await;
    if problems.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    Err(format!(
        "invalid mapping (crmflow mapping check):\n{}",
        lines.join("\n")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, ty: CrmType, unreadable: bool) -> FieldMeta {
        FieldMeta {
            name: name.into(),
            label: format!("{name} label"),
            ty,
            type_name: format!("{ty:?}"),
            unreadable: unreadable.then(|| "confidential".into()),
        }
    }

    fn spec(field: &str, ty: AttrType) -> AttributeSpec {
        AttributeSpec {
            field: field.into(),
            ty,
            required: false,
            allowed: None,
            regex: None,
            min: None,
            max: None,
            separator: None,
        }
    }

    #[test]
    fn each_kind_of_problem_is_one_line() {
        let fields = [
            field("customText2", CrmType::Text, false),
            field("customInt1", CrmType::Integer, false),
            field("customFloat1", CrmType::Decimal, false),
            field("customDate1", CrmType::Date, false),
            field("customEncryptedText1", CrmType::Text, true),
            field("owner", CrmType::Other, false),
        ];
        let attrs: BTreeMap<String, AttributeSpec> = [
            ("a_ok", spec("customText2", AttrType::String)),
            ("b_list_ok", spec("customText2", AttrType::ListString)),
            ("c_unknown", spec("customText99", AttrType::String)),
            ("d_case", spec("customtext2", AttrType::String)),
            ("e_wrong", spec("customText2", AttrType::Long)),
            ("f_rate", spec("customInt1", AttrType::Double)),
            ("g_date_as_long", spec("customDate1", AttrType::Long)),
            ("h_secret", spec("customEncryptedText1", AttrType::String)),
            ("i_owner", spec("owner", AttrType::String)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let got = check_entity(
            "mapping.bullhorn.candidate",
            &attrs,
            &fields,
            "Bullhorn meta/Candidate",
            None,
        );
        let kinds: Vec<(&str, ProblemKind)> = got
            .iter()
            .map(|p| (p.key.rsplit('.').next().unwrap(), p.kind))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("c_unknown", ProblemKind::UnknownField),
                ("d_case", ProblemKind::UnknownField),
                ("e_wrong", ProblemKind::WrongType),
                ("g_date_as_long", ProblemKind::WrongType),
                ("h_secret", ProblemKind::Unreadable),
                ("i_owner", ProblemKind::WrongType),
            ]
        );
        let lines: Vec<String> = got.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines[0],
            "mapping.bullhorn.candidate.c_unknown: unknown field customText99: not in Bullhorn meta/Candidate"
        );
        assert!(
            lines[1].ends_with("(did you mean customText2?)"),
            "{}",
            lines[1]
        );
        assert_eq!(
            lines[2],
            "mapping.bullhorn.candidate.e_wrong: wrong type: long does not fit field customText2 \"customText2 label\" (Text); it fits string, list<string>"
        );
        assert!(lines[4].contains("unreadable field customEncryptedText1"));
        assert!(lines[5].ends_with("it fits no attribute type"));
        assert!(lines.iter().all(|l| !l.contains('\n')));
    }

    #[test]
    fn crm_types_map_from_each_metadata_format() {
        let bh: crmflow_bullhorn::wire::EntityMeta = serde_json::from_str(
            r#"{"entity":"Candidate","fields":[
                {"name":"customInt1","type":"SCALAR","dataType":"Integer","label":"Notice"},
                {"name":"customFloat1","type":"SCALAR","dataType":"BigDecimal"},
                {"name":"customDate1","type":"SCALAR","dataType":"Timestamp"},
                {"name":"address","type":"COMPOSITE","dataType":"Address"},
                {"name":"customEncryptedText1","type":"SCALAR","dataType":"String","confidential":true}]}"#,
        )
        .unwrap();
        let f = bullhorn_fields(&bh);
        assert_eq!(
            f.iter().map(|f| f.ty).collect::<Vec<_>>(),
            vec![
                CrmType::Integer,
                CrmType::Decimal,
                CrmType::Date,
                CrmType::Other,
                CrmType::Text
            ]
        );
        assert_eq!(f[0].label, "Notice");
        assert!(f[4].unreadable.is_some() && f[0].unreadable.is_none());

        let hs: Vec<crmflow_hubspot::wire::PropertyDef> = serde_json::from_str(
            r#"[{"name":"a","type":"enumeration","fieldType":"checkbox"},
                {"name":"b","type":"enumeration","fieldType":"booleancheckbox"},
                {"name":"c","type":"number","fieldType":"number","dataSensitivity":"non_sensitive"},
                {"name":"d","type":"string","fieldType":"text","dataSensitivity":"sensitive"}]"#,
        )
        .unwrap();
        let f = hubspot_fields(&hs);
        assert_eq!(
            f.iter().map(|f| f.ty).collect::<Vec<_>>(),
            vec![
                CrmType::MultiText,
                CrmType::Boolean,
                CrmType::Number,
                CrmType::Text
            ]
        );
        assert!(f[3].unreadable.is_some() && f[2].unreadable.is_none());
        assert!(fits(AttrType::Long, CrmType::Number) && fits(AttrType::Double, CrmType::Number));
        assert!(!fits(AttrType::String, CrmType::MultiText));
    }
}
