//! The object types the simulated account has — contacts (`0-1`), deals (`0-3`) and one custom object for jobs
//! (`2-…`, named `jobs`) — with their property definitions, the names each type answers to, the properties a
//! read returns by default, and the webhook subscription type prefix (`contact.`, `deal.`, or the generic
//! `object.` with `objectTypeId` for the custom object, as HubSpot does for custom objects).

use crate::wire::{PropertyDef, PropertyOption};

/// How values of a property compare in search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropKind {
    /// Free text; compared case-insensitively.
    String,
    /// A number (stored as its decimal string).
    Number,
    /// A date-time (stored as ISO 8601; filters take epoch ms or ISO 8601).
    DateTime,
    /// One of fixed options.
    Enumeration,
}

impl PropKind {
    fn wire(self) -> (&'static str, &'static str) {
        match self {
            PropKind::String => ("string", "text"),
            PropKind::Number => ("number", "number"),
            PropKind::DateTime => ("datetime", "date"),
            PropKind::Enumeration => ("enumeration", "select"),
        }
    }
}

/// One property.
#[derive(Debug, Clone)]
pub struct PropDef {
    /// Internal name.
    pub name: &'static str,
    /// Value kind.
    pub kind: PropKind,
    /// Options of an enumeration.
    pub options: &'static [&'static str],
    /// Maintained by the simulator (ids and timestamps), not writable.
    pub calculated: bool,
    /// `(type, fieldType)` on the wire when they differ from the kind's (custom properties:
    /// `bool`/`booleancheckbox`, `date`/`date`, `enumeration`/`checkbox` for multiple values).
    pub wire: Option<(&'static str, &'static str)>,
    /// `dataSensitivity: sensitive`: the simulated app lacks the sensitive-data scopes.
    pub sensitive: bool,
}

/// One object type.
#[derive(Debug, Clone)]
pub struct TypeDef {
    /// Plural API name (`contacts`, `deals`, `jobs`).
    pub name: String,
    /// `objectTypeId` (`0-1`, `0-3`, `2-12345678`).
    pub object_type_id: String,
    /// Every name the API accepts for the type in paths.
    pub aliases: Vec<String>,
    /// Property holding the creation time.
    pub created_prop: &'static str,
    /// Property holding the last modification time (what incremental search filters on).
    pub modified_prop: &'static str,
    /// Properties a read returns when none are asked for.
    pub default_props: Vec<&'static str>,
    /// All properties.
    pub props: Vec<PropDef>,
    /// `contact` / `deal` for legacy webhook types; `None`: generic `object.*` with `objectTypeId`.
    pub webhook_prefix: Option<&'static str>,
    /// Properties searched by the free-text `query`.
    pub text_props: Vec<&'static str>,
}

impl TypeDef {
    /// The definition of a property.
    pub fn prop(&self, name: &str) -> Option<&PropDef> {
        self.props.iter().find(|p| p.name == name)
    }

    /// The `GET /crm/v3/properties/{object}` documents.
    pub fn property_defs(&self) -> Vec<PropertyDef> {
        self.props
            .iter()
            .map(|p| {
                let (kind, field_type) = p.wire.unwrap_or(p.kind.wire());
                PropertyDef {
                    name: p.name.to_string(),
                    label: custom_label(p.name).map_or_else(|| label(p.name), str::to_string),
                    kind: kind.to_string(),
                    field_type: field_type.to_string(),
                    group_name: format!("{}information", self.name.trim_end_matches('s')),
                    description: String::new(),
                    options: p
                        .options
                        .iter()
                        .enumerate()
                        .map(|(i, o)| PropertyOption {
                            value: (*o).to_string(),
                            label: label(o),
                            display_order: i as i32,
                            hidden: false,
                        })
                        .collect(),
                    calculated: p.calculated,
                    has_unique_value: p.name == "hs_object_id",
                    hidden: false,
                    data_sensitivity: Some(
                        if p.sensitive {
                            "sensitive"
                        } else {
                            "non_sensitive"
                        }
                        .to_string(),
                    ),
                }
            })
            .collect()
    }
}

fn label(name: &str) -> String {
    name.trim_start_matches("hs_")
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

const fn p(name: &'static str, kind: PropKind) -> PropDef {
    PropDef {
        name,
        kind,
        options: &[],
        calculated: false,
        wire: None,
        sensitive: false,
    }
}

const fn calc(name: &'static str, kind: PropKind) -> PropDef {
    PropDef {
        name,
        kind,
        options: &[],
        calculated: true,
        wire: None,
        sensitive: false,
    }
}

const fn e(name: &'static str, options: &'static [&'static str]) -> PropDef {
    PropDef {
        name,
        kind: PropKind::Enumeration,
        options,
        calculated: false,
        wire: None,
        sensitive: false,
    }
}

/// A custom property with its own wire type (see [`PropDef::wire`]).
const fn custom(
    name: &'static str,
    kind: PropKind,
    wire: (&'static str, &'static str),
    options: &'static [&'static str],
    sensitive: bool,
) -> PropDef {
    PropDef {
        name,
        kind,
        options,
        calculated: false,
        wire: Some(wire),
        sensitive,
    }
}

/// Labels the account gave its custom contact properties.
fn custom_label(name: &str) -> Option<&'static str> {
    Some(match name {
        "visa_status" => "Visa status",
        "target_sectors" => "Target sectors",
        "notice_period_days" => "Notice period (days)",
        "day_rate" => "Day rate",
        "available_from" => "Available from",
        "will_relocate" => "Will relocate",
        "passport_number" => "Passport number",
        _ => return None,
    })
}

/// Options of the custom `visa_status` property.
pub const VISA: &[&str] = &[
    "citizen",
    "permanent_resident",
    "work_visa",
    "sponsorship_needed",
];
/// Options of the custom `target_sectors` property (multiple checkboxes, `;`-separated values).
pub const SECTORS: &[&str] = &["fintech", "healthcare", "energy", "retail", "public_sector"];

/// Lifecycle stages of contacts.
pub const LIFECYCLE: &[&str] = &[
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "other",
];
/// Lead statuses of contacts.
pub const LEAD_STATUS: &[&str] = &["NEW", "OPEN", "IN_PROGRESS", "CONNECTED", "UNQUALIFIED"];
/// Deal stages.
pub const DEAL_STAGES: &[&str] = &[
    "appointmentscheduled",
    "qualifiedtobuy",
    "presentationscheduled",
    "contractsent",
    "closedwon",
    "closedlost",
];
/// Job statuses.
pub const JOB_STATUS: &[&str] = &["open", "on_hold", "filled", "closed"];
/// Employment types of jobs.
pub const EMPLOYMENT: &[&str] = &["full_time", "part_time", "contract", "temporary"];

/// The three types of the simulated account; the custom object gets `custom_type_id` and the portal's
/// fully-qualified name `p{portal}_jobs`.
pub fn types(custom_type_id: &str, portal_id: u64) -> Vec<TypeDef> {
    use PropKind::*;
    vec![
        TypeDef {
            name: "contacts".into(),
            object_type_id: "0-1".into(),
            aliases: vec!["contacts".into(), "contact".into(), "0-1".into()],
            created_prop: "createdate",
            modified_prop: "lastmodifieddate",
            default_props: vec![
                "createdate",
                "email",
                "firstname",
                "hs_object_id",
                "lastmodifieddate",
                "lastname",
            ],
            props: vec![
                p("email", String),
                p("firstname", String),
                p("lastname", String),
                p("phone", String),
                p("mobilephone", String),
                p("jobtitle", String),
                p("company", String),
                p("city", String),
                p("state", String),
                p("country", String),
                p("zip", String),
                p("skills", String),
                p("years_experience", Number),
                p("summary", String),
                e("lifecyclestage", LIFECYCLE),
                e("hs_lead_status", LEAD_STATUS),
                // The account's custom properties (recruiting).
                custom(
                    "visa_status",
                    Enumeration,
                    ("enumeration", "select"),
                    VISA,
                    false,
                ),
                custom(
                    "target_sectors",
                    String,
                    ("enumeration", "checkbox"),
                    SECTORS,
                    false,
                ),
                p("notice_period_days", Number),
                p("day_rate", Number),
                custom("available_from", String, ("date", "date"), &[], false),
                custom(
                    "will_relocate",
                    String,
                    ("bool", "booleancheckbox"),
                    &[],
                    false,
                ),
                custom("passport_number", String, ("string", "text"), &[], true),
                calc("hs_merged_object_ids", String),
                calc("createdate", DateTime),
                calc("lastmodifieddate", DateTime),
                calc("hs_object_id", Number),
            ],
            webhook_prefix: Some("contact"),
            text_props: vec!["email", "firstname", "lastname", "phone", "company"],
        },
        TypeDef {
            name: "deals".into(),
            object_type_id: "0-3".into(),
            aliases: vec!["deals".into(), "deal".into(), "0-3".into()],
            created_prop: "createdate",
            modified_prop: "hs_lastmodifieddate",
            default_props: vec![
                "amount",
                "closedate",
                "createdate",
                "dealname",
                "dealstage",
                "hs_lastmodifieddate",
                "hs_object_id",
                "pipeline",
            ],
            props: vec![
                p("dealname", String),
                p("amount", Number),
                e("dealstage", DEAL_STAGES),
                e("pipeline", &["default"]),
                p("closedate", DateTime),
                p("description", String),
                p("skills", String),
                p("location", String),
                calc("hs_merged_object_ids", String),
                calc("createdate", DateTime),
                calc("hs_lastmodifieddate", DateTime),
                calc("hs_object_id", Number),
            ],
            webhook_prefix: Some("deal"),
            text_props: vec!["dealname"],
        },
        TypeDef {
            name: "jobs".into(),
            object_type_id: custom_type_id.to_string(),
            aliases: vec![
                "jobs".into(),
                "job".into(),
                custom_type_id.to_string(),
                format!("p{portal_id}_jobs"),
            ],
            created_prop: "hs_createdate",
            modified_prop: "hs_lastmodifieddate",
            default_props: vec!["hs_createdate", "hs_lastmodifieddate", "hs_object_id"],
            props: vec![
                p("job_title", String),
                p("job_description", String),
                p("skills", String),
                p("location", String),
                p("company_name", String),
                e("job_status", JOB_STATUS),
                e("employment_type", EMPLOYMENT),
                p("salary_min", Number),
                p("salary_max", Number),
                p("openings", Number),
                calc("hs_merged_object_ids", String),
                calc("hs_createdate", DateTime),
                calc("hs_lastmodifieddate", DateTime),
                calc("hs_object_id", Number),
            ],
            webhook_prefix: None,
            text_props: vec!["job_title", "company_name"],
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_answer_to_their_aliases_and_name_their_modified_property() {
        let t = types("2-12345678", 62515);
        assert_eq!(
            t[0].modified_prop,
            crate::wire::modified_property("contacts")
        );
        assert_eq!(t[1].modified_prop, crate::wire::modified_property("deals"));
        assert_eq!(
            t[2].modified_prop,
            crate::wire::modified_property("2-12345678")
        );
        assert!(t[2].aliases.iter().any(|a| a == "p62515_jobs"));
        for ty in &t {
            for d in &ty.default_props {
                assert!(ty.prop(d).is_some(), "{} lacks default {d}", ty.name);
            }
            assert!(ty.prop(ty.modified_prop).is_some());
        }
        assert_eq!(label("hs_lead_status"), "Lead Status");
    }
}
