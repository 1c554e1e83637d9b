//! The simulated org's objects: a candidate-like `Contact` and a position-like custom object
//! (`Position__c` by default; both names configurable), their fields and types, the `describe` document and
//! the Avro schema of their change events (`{Object}ChangeEvent`, custom objects `{Name}__ChangeEvent`).

use serde_json::{json, Value};

use crate::wire::{DescribeField, DescribeSObject};

/// Salesforce field types the simulator uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// Record id.
    Id,
    /// Short text.
    String,
    /// Email address.
    Email,
    /// Phone number.
    Phone,
    /// Long text.
    Textarea,
    /// Picklist value.
    Picklist,
    /// Id of another record.
    Reference,
    /// Timestamp.
    DateTime,
    /// Calendar date.
    Date,
    /// true/false.
    Boolean,
    /// Number.
    Double,
}

impl FieldType {
    fn describe_name(self) -> &'static str {
        match self {
            FieldType::Id => "id",
            FieldType::String => "string",
            FieldType::Email => "email",
            FieldType::Phone => "phone",
            FieldType::Textarea => "textarea",
            FieldType::Picklist => "picklist",
            FieldType::Reference => "reference",
            FieldType::DateTime => "datetime",
            FieldType::Date => "date",
            FieldType::Boolean => "boolean",
            FieldType::Double => "double",
        }
    }

    /// Whether values compare as ids (case-sensitive, 15/18 characters).
    pub fn is_id(self) -> bool {
        matches!(self, FieldType::Id | FieldType::Reference)
    }

    fn avro(self) -> Value {
        match self {
            FieldType::DateTime => json!("long"),
            FieldType::Date => json!("int"),
            FieldType::Boolean => json!("boolean"),
            FieldType::Double => json!("double"),
            _ => json!("string"),
        }
    }
}

/// One field.
#[derive(Debug, Clone)]
pub struct FieldDef {
    /// API name.
    pub name: &'static str,
    /// Type.
    pub ftype: FieldType,
    /// Whether it may be null.
    pub nillable: bool,
    /// Whether change events carry it (system fields like `SystemModstamp`, `IsDeleted` and `Id` do not).
    pub in_events: bool,
}

/// Which of the two simulated objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// People (→ candidates).
    Contact,
    /// Openings (→ positions).
    Position,
}

/// One object.
#[derive(Debug, Clone)]
pub struct ObjectDef {
    /// API name (`Contact`, `Position__c`).
    pub name: String,
    /// Which object it is.
    pub kind: ObjectKind,
    /// Key prefix of its ids.
    pub key_prefix: &'static str,
    /// Fields, `Id` first.
    pub fields: Vec<FieldDef>,
}

fn f(name: &'static str, ftype: FieldType, nillable: bool) -> FieldDef {
    FieldDef {
        name,
        ftype,
        nillable,
        in_events: !matches!(
            name,
            "Id" | "SystemModstamp" | "IsDeleted" | "MasterRecordId"
        ),
    }
}

impl ObjectDef {
    /// The Contact-like object.
    pub fn contact(name: &str) -> Self {
        use FieldType::*;
        Self {
            name: name.to_string(),
            kind: ObjectKind::Contact,
            key_prefix: "003",
            fields: vec![
                f("Id", Id, false),
                f("IsDeleted", Boolean, false),
                f("MasterRecordId", Reference, true),
                f("FirstName", String, true),
                f("LastName", String, false),
                f("Name", String, false),
                f("Email", Email, true),
                f("Phone", Phone, true),
                f("MobilePhone", Phone, true),
                f("Title", String, true),
                f("Department", String, true),
                f("MailingCity", String, true),
                f("MailingState", String, true),
                f("MailingPostalCode", String, true),
                f("MailingCountry", String, true),
                f("Description", Textarea, true),
                f("LeadSource", Picklist, true),
                f("Skills__c", Textarea, true),
                f("Candidate_Status__c", Picklist, true),
                f("OwnerId", Reference, false),
                f("CreatedDate", DateTime, false),
                f("LastModifiedDate", DateTime, false),
                f("SystemModstamp", DateTime, false),
            ],
        }
    }

    /// The position-like custom object.
    pub fn position(name: &str) -> Self {
        use FieldType::*;
        Self {
            name: name.to_string(),
            kind: ObjectKind::Position,
            key_prefix: "a01",
            fields: vec![
                f("Id", Id, false),
                f("IsDeleted", Boolean, false),
                f("Name", String, false),
                f("Description__c", Textarea, true),
                f("Skills__c", Textarea, true),
                f("Status__c", Picklist, true),
                f("City__c", String, true),
                f("State__c", String, true),
                f("Country__c", String, true),
                f("Salary_Min__c", Double, true),
                f("Salary_Max__c", Double, true),
                f("Open_Date__c", Date, true),
                f("Remote__c", Boolean, false),
                f("OwnerId", Reference, false),
                f("CreatedDate", DateTime, false),
                f("LastModifiedDate", DateTime, false),
                f("SystemModstamp", DateTime, false),
            ],
        }
    }

    /// The field named `name` (case-insensitive), with its canonical spelling.
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// Whether this is a custom object.
    pub fn custom(&self) -> bool {
        self.name.ends_with("__c")
    }

    /// Change event entity name: `ContactChangeEvent`, `Position__ChangeEvent`.
    pub fn change_event_name(&self) -> String {
        match self.name.strip_suffix("__c") {
            Some(base) => format!("{base}__ChangeEvent"),
            None => format!("{}ChangeEvent", self.name),
        }
    }

    /// Pub/Sub topic of its change events.
    pub fn topic(&self) -> String {
        format!("/data/{}", self.change_event_name())
    }

    /// Fields carried by change events, in schema order (after `ChangeEventHeader`).
    pub fn event_fields(&self) -> impl Iterator<Item = &FieldDef> {
        self.fields.iter().filter(|f| f.in_events)
    }

    /// `sobjects/{type}/describe`.
    pub fn describe(&self) -> DescribeSObject {
        DescribeSObject {
            name: self.name.clone(),
            label: match self.kind {
                ObjectKind::Contact => "Contact".into(),
                ObjectKind::Position => "Position".into(),
            },
            key_prefix: self.key_prefix.into(),
            custom: self.custom(),
            fields: self
                .fields
                .iter()
                .map(|fd| DescribeField {
                    name: fd.name.into(),
                    label: fd.name.trim_end_matches("__c").replace('_', " "),
                    field_type: fd.ftype.describe_name().into(),
                    nillable: fd.nillable,
                    length: match fd.ftype {
                        FieldType::Textarea => 32768,
                        FieldType::String | FieldType::Picklist | FieldType::Phone => 255,
                        FieldType::Email => 80,
                        FieldType::Id | FieldType::Reference => 18,
                        _ => 0,
                    },
                    custom: fd.name.ends_with("__c"),
                })
                .collect(),
        }
    }

    /// The Avro schema (JSON) of its change events: `ChangeEventHeader`, then every event field as a
    /// nullable union (datetimes as epoch-millisecond longs, dates as epoch-day ints).
    pub fn avro_schema(&self) -> Value {
        let mut fields = vec![json!({"name": "ChangeEventHeader", "type": header_schema()})];
        for fd in self.event_fields() {
            fields
                .push(json!({"name": fd.name, "type": ["null", fd.ftype.avro()], "default": null}));
        }
        json!({
            "type": "record",
            "name": self.change_event_name(),
            "namespace": "com.sforce.eventbus",
            "fields": fields,
        })
    }
}

fn header_schema() -> Value {
    json!({
        "type": "record",
        "name": "ChangeEventHeader",
        "fields": [
            {"name": "entityName", "type": "string"},
            {"name": "recordIds", "type": {"type": "array", "items": "string"}},
            {"name": "changeType", "type": {"type": "enum", "name": "ChangeType", "symbols": [
                "CREATE", "UPDATE", "DELETE", "UNDELETE",
                "GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE", "GAP_OVERFLOW", "SNAPSHOT"]}},
            {"name": "changeOrigin", "type": "string"},
            {"name": "transactionKey", "type": "string"},
            {"name": "sequenceNumber", "type": "int"},
            {"name": "commitTimestamp", "type": "long"},
            {"name": "commitNumber", "type": "long"},
            {"name": "commitUser", "type": "string"},
            {"name": "nulledFields", "type": {"type": "array", "items": "string"}},
            {"name": "diffFields", "type": {"type": "array", "items": "string"}},
            {"name": "changedFields", "type": {"type": "array", "items": "string"}}
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_and_schemas_parse() {
        let c = ObjectDef::contact("Contact");
        let p = ObjectDef::position("Position__c");
        assert_eq!(c.topic(), "/data/ContactChangeEvent");
        assert_eq!(p.topic(), "/data/Position__ChangeEvent");
        for o in [c, p] {
            let s = apache_avro::Schema::parse(&o.avro_schema()).unwrap();
            assert!(matches!(s, apache_avro::Schema::Record(_)));
            assert!(o.field("systemmodstamp").is_some());
        }
    }
}
