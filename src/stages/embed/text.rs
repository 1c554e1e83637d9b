//! What gets embedded: the text of a record, built from a configured template, and its content
//! hash.
//!
//! A template such as `"{occupation}\nSkills: {skills}\n{summary}"` is parsed once at start-up
//! into literal and field segments; an unknown `{field}` is a configuration error, not an empty
//! string at run time. The same template renders a canonical record from Kafka (the stage) and a
//! row from Postgres (`crmflow embed backfill`), so both produce the same text and hash for the
//! same record. Fields are the canonical field names that are also `candidates` / `positions`
//! columns; list fields (`skills`) are joined with ", ". `{attributes.<name>}` names a mapped
//! custom field (`[mapping]`): its text is [`AttributeValue::to_text`], which is what the SQL of
//! [`Template::sql_columns`] computes from the `attributes` jsonb column, and nothing when the
//! record has no such attribute (an attribute name is not checked against the mapping, so a
//! template may name an attribute before it is mapped or backfilled).
//!
//! [`AttributeValue::to_text`]: crate::model::AttributeValue::to_text
//!
//! The hash covers the model name and the text: a new model or a changed template changes every
//! hash, which is what makes the stage re-embed; a change to a field outside the template leaves
//! the hash alone, so nothing is sent.

use std::borrow::Cow;

use sha2::{Digest, Sha256};

use crate::model::{AttributeValue, Attributes, Candidate, Position};

/// The two sides of matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Entity {
    Candidate,
    Position,
}

impl Entity {
    /// The value of `embeddings.entity` / `matches.*_entity`.
    pub fn as_str(self) -> &'static str {
        match self {
            Entity::Candidate => "candidate",
            Entity::Position => "position",
        }
    }

    /// The side a record of this entity is matched against.
    pub fn other(self) -> Entity {
        match self {
            Entity::Candidate => Entity::Position,
            Entity::Position => Entity::Candidate,
        }
    }

    /// The canonical table holding this entity's records.
    pub fn table(self) -> &'static str {
        match self {
            Entity::Candidate => "candidates",
            Entity::Position => "positions",
        }
    }

    pub fn parse(s: &str) -> Option<Entity> {
        match s {
            "candidate" => Some(Entity::Candidate),
            "position" => Some(Entity::Position),
            _ => None,
        }
    }

    /// Fields a template of this entity may name: `(name, SQL expression over the table)`.
    fn fields(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Entity::Candidate => &[
                ("first_name", "first_name"),
                ("last_name", "last_name"),
                ("status", "status"),
                ("occupation", "occupation"),
                ("company_name", "company_name"),
                ("skills", "array_to_string(skills, ', ')"),
                ("summary", "summary"),
                ("owner_name", "owner_name"),
                ("city", "city"),
                ("state", "state"),
                ("country_code", "country_code"),
            ],
            Entity::Position => &[
                ("title", "title"),
                ("description", "description"),
                ("status", "status"),
                ("employment_type", "employment_type"),
                ("skills", "array_to_string(skills, ', ')"),
                ("client_corporation_name", "client_corporation_name"),
                ("owner_name", "owner_name"),
                ("city", "city"),
                ("state", "state"),
                ("country_code", "country_code"),
            ],
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Literal(String),
    /// Index into [`Template::fields`].
    Field(usize),
}

/// What a placeholder names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Field {
    /// A canonical field that is a column, by its name in [`Entity::fields`].
    Column(&'static str),
    /// `{attributes.<name>}`.
    Attribute(String),
}

impl Field {
    fn name(&self) -> Cow<'_, str> {
        match self {
            Field::Column(c) => Cow::Borrowed(c),
            Field::Attribute(a) => Cow::Owned(format!("attributes.{a}")),
        }
    }
}

/// A parsed text template of one entity.
#[derive(Debug, Clone)]
pub struct Template {
    entity: Entity,
    segments: Vec<Segment>,
    /// Distinct fields used, in first-use order.
    fields: Vec<Field>,
}

impl Template {
    /// Parses `{field}` placeholders; `{{` and `}}` stand for literal braces.
    pub fn parse(entity: Entity, template: &str) -> Result<Self, String> {
        let mut segments = Vec::new();
        let mut fields: Vec<Field> = Vec::new();
        let mut lit = String::new();
        let mut chars = template.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => {
                                return Err(format!(
                                    "unclosed '{{' in {} template",
                                    entity.as_str()
                                ))
                            }
                        }
                    }
                    let name = name.trim();
                    let known = if let Some(attr) = name.strip_prefix("attributes.") {
                        if !crate::config::mapping::valid_attribute_name(attr) {
                            return Err(format!(
                                "{} template names {{{name}}}: attribute names are lower-case identifiers",
                                entity.as_str()
                            ));
                        }
                        Field::Attribute(attr.to_owned())
                    } else {
                        entity
                            .fields()
                            .iter()
                            .find(|(f, _)| *f == name)
                            .map(|(f, _)| Field::Column(f))
                            .ok_or_else(|| {
                                format!(
                                    "{} template names unknown field {{{name}}}; known: {}, attributes.<name>",
                                    entity.as_str(),
                                    entity
                                        .fields()
                                        .iter()
                                        .map(|(f, _)| *f)
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                )
                            })?
                    };
                    if !lit.is_empty() {
                        segments.push(Segment::Literal(std::mem::take(&mut lit)));
                    }
                    let idx = match fields.iter().position(|f| f == &known) {
                        Some(i) => i,
                        None => {
                            fields.push(known);
                            fields.len() - 1
                        }
                    };
                    segments.push(Segment::Field(idx));
                }
                '}' => return Err(format!("unmatched '}}' in {} template", entity.as_str())),
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            segments.push(Segment::Literal(lit));
        }
        if fields.is_empty() {
            return Err(format!("{} template names no field", entity.as_str()));
        }
        Ok(Self {
            entity,
            segments,
            fields,
        })
    }

    pub fn entity(&self) -> Entity {
        self.entity
    }

    /// The field names the template uses (in the order `render_values` expects them);
    /// attributes as `attributes.<name>`.
    pub fn fields(&self) -> Vec<Cow<'_, str>> {
        self.fields.iter().map(Field::name).collect()
    }

    /// SQL expressions selecting [`Self::fields`] as text from the entity's table. An attribute
    /// gives `attributes->>'name'`, a list attribute its items joined with ", " (what
    /// [`crate::model::AttributeValue::to_text`] gives).
    pub fn sql_columns(&self) -> Vec<Cow<'static, str>> {
        self.fields
            .iter()
            .map(|f| match f {
                Field::Column(c) => Cow::Borrowed(
                    self.entity
                        .fields()
                        .iter()
                        .find(|(n, _)| n == c)
                        .map(|(_, sql)| *sql)
                        .expect("validated at parse"),
                ),
                // The name is [a-z][a-z0-9_]* (checked at parse), safe inside quotes.
                Field::Attribute(a) => Cow::Owned(format!(
                    "CASE WHEN jsonb_typeof(attributes->'{a}') = 'array' \
                     THEN (SELECT string_agg(e.v, ', ' ORDER BY e.n) \
                     FROM jsonb_array_elements_text(attributes->'{a}') WITH ORDINALITY AS e(v, n)) \
                     ELSE attributes->>'{a}' END"
                )),
            })
            .collect()
    }

    /// Renders with one value per [`Self::fields`] entry; the result is trimmed.
    pub fn render_values(&self, values: &[Option<Cow<'_, str>>]) -> String {
        let mut out = String::with_capacity(256);
        for s in &self.segments {
            match s {
                Segment::Literal(l) => out.push_str(l),
                Segment::Field(i) => {
                    if let Some(Some(v)) = values.get(*i) {
                        out.push_str(v.trim());
                    }
                }
            }
        }
        out.trim().to_owned()
    }

    /// Renders a canonical candidate (the template must be a candidate template).
    pub fn render_candidate(&self, c: &Candidate) -> String {
        let values: Vec<Option<Cow<'_, str>>> = self
            .fields
            .iter()
            .map(|f| match f {
                Field::Column(name) => candidate_field(c, name),
                Field::Attribute(a) => attribute_text(&c.attributes, a),
            })
            .collect();
        self.render_values(&values)
    }

    /// Renders a canonical position (the template must be a position template).
    pub fn render_position(&self, p: &Position) -> String {
        let values: Vec<Option<Cow<'_, str>>> = self
            .fields
            .iter()
            .map(|f| match f {
                Field::Column(name) => position_field(p, name),
                Field::Attribute(a) => attribute_text(&p.attributes, a),
            })
            .collect();
        self.render_values(&values)
    }
}

fn attribute_text<'a>(attrs: &'a Attributes, name: &str) -> Option<Cow<'a, str>> {
    match attrs.get(name)? {
        AttributeValue::String(s) => Some(Cow::Borrowed(s)),
        v => v.to_text().map(Cow::Owned),
    }
}

fn borrowed(s: &Option<String>) -> Option<Cow<'_, str>> {
    s.as_deref().map(Cow::Borrowed)
}

fn joined(v: &[String]) -> Option<Cow<'_, str>> {
    (!v.is_empty()).then(|| Cow::Owned(v.join(", ")))
}

fn candidate_field<'a>(c: &'a Candidate, f: &str) -> Option<Cow<'a, str>> {
    let addr = c.address.as_ref();
    match f {
        "first_name" => borrowed(&c.first_name),
        "last_name" => borrowed(&c.last_name),
        "status" => borrowed(&c.status),
        "occupation" => borrowed(&c.occupation),
        "company_name" => borrowed(&c.company_name),
        "skills" => joined(&c.skills),
        "summary" => borrowed(&c.summary),
        "owner_name" => borrowed(&c.owner_name),
        "city" => addr.and_then(|a| borrowed(&a.city)),
        "state" => addr.and_then(|a| borrowed(&a.state)),
        "country_code" => addr.and_then(|a| borrowed(&a.country_code)),
        _ => None,
    }
}

fn position_field<'a>(p: &'a Position, f: &str) -> Option<Cow<'a, str>> {
    let addr = p.address.as_ref();
    match f {
        "title" => borrowed(&p.title),
        "description" => borrowed(&p.description),
        "status" => borrowed(&p.status),
        "employment_type" => borrowed(&p.employment_type),
        "skills" => joined(&p.skills),
        "client_corporation_name" => borrowed(&p.client_corporation_name),
        "owner_name" => borrowed(&p.owner_name),
        "city" => addr.and_then(|a| borrowed(&a.city)),
        "state" => addr.and_then(|a| borrowed(&a.state)),
        "country_code" => addr.and_then(|a| borrowed(&a.country_code)),
        _ => None,
    }
}

/// Both templates of a configuration.
#[derive(Debug, Clone)]
pub struct Templates {
    pub candidate: Template,
    pub position: Template,
}

impl Templates {
    pub fn from_config(cfg: &crate::config::EmbedConfig) -> Result<Self, String> {
        Ok(Self {
            candidate: Template::parse(Entity::Candidate, &cfg.candidate_template)?,
            position: Template::parse(Entity::Position, &cfg.position_template)?,
        })
    }

    pub fn get(&self, entity: Entity) -> &Template {
        match entity {
            Entity::Candidate => &self.candidate,
            Entity::Position => &self.position,
        }
    }
}

/// Hex SHA-256 of the model name and the text (separated, so no two pairs collide).
pub fn content_hash(model: &str, text: &str) -> String {
    let mut h = Sha256::new();
    h.update(model.as_bytes());
    h.update([0x1f]);
    h.update(text.as_bytes());
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (template, field values, rendered text or `Err` for a template that must not parse)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Result<&'a str, ()>);

    #[test]
    fn templates_parse_render_and_reject_unknown_fields() {
        let cases: &[Case<'_>] = &[
            (
                "{occupation}\nSkills: {skills}\n{summary}",
                &[
                    ("occupation", "Welder"),
                    ("skills", "TIG, MIG"),
                    ("summary", " Ten years "),
                ],
                Ok("Welder\nSkills: TIG, MIG\nTen years"),
            ),
            (
                "{occupation} {{raw}}",
                &[("occupation", "X")],
                Ok("X {raw}"),
            ),
            ("  {summary}  ", &[], Ok("")),
            (
                "{occupation} and {occupation}",
                &[("occupation", "A")],
                Ok("A and A"),
            ),
            ("{salary}", &[], Err(())),
            ("no fields", &[], Err(())),
            ("{occupation", &[], Err(())),
            ("stray }", &[], Err(())),
        ];
        for (src, values, want) in cases {
            let t = Template::parse(Entity::Candidate, src);
            match (t, want) {
                (Ok(t), Ok(want)) => {
                    let vals: Vec<Option<Cow<'_, str>>> = t
                        .fields()
                        .iter()
                        .map(|f| {
                            values
                                .iter()
                                .find(|(n, _)| *n == f.as_ref())
                                .map(|(_, v)| Cow::Borrowed(*v))
                        })
                        .collect();
                    assert_eq!(t.render_values(&vals), *want, "{src:?}");
                }
                (Err(_), Err(())) => {}
                (got, want) => panic!("{src:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn position_fields_differ_from_candidate_fields() {
        assert!(Template::parse(Entity::Position, "{title} {description}").is_ok());
        assert!(Template::parse(Entity::Position, "{occupation}").is_err());
        let t = Template::parse(Entity::Position, "{title}: {skills}").unwrap();
        assert_eq!(
            t.sql_columns(),
            vec!["title", "array_to_string(skills, ', ')"]
        );
    }

    #[test]
    fn attributes_render_as_text_and_as_sql() {
        use crate::model::{AttributeDate, AttributeValue as V};
        let t = Template::parse(
            Entity::Candidate,
            "{occupation} | {attributes.sectors} | {attributes.day_rate} | {attributes.start} | {attributes.relocate} | {attributes.notice} | {attributes.missing}",
        )
        .unwrap();
        assert_eq!(t.fields()[1], "attributes.sectors");
        let mut c = Candidate {
            occupation: Some("Welder".into()),
            ..Default::default()
        };
        c.attributes = [
            ("sectors", V::List(vec!["Fintech".into(), "Energy".into()])),
            ("day_rate", V::Double(650.0)),
            (
                "start",
                V::Date(AttributeDate {
                    epoch_ms: 1_767_225_600_000,
                }),
            ),
            ("relocate", V::Boolean(false)),
            ("notice", V::Long(30)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        assert_eq!(
            t.render_candidate(&c),
            "Welder | Fintech, Energy | 650.0 | 2026-01-01T00:00:00.000Z | false | 30 |"
        );
        let sql = t.sql_columns();
        assert!(sql[1].contains("jsonb_array_elements_text(attributes->'sectors')"));
        assert!(sql[2].ends_with("ELSE attributes->>'day_rate' END"));
        // Names are identifiers (they go into SQL), and the prefix is required.
        assert!(Template::parse(Entity::Candidate, "{attributes.x'y}").is_err());
        assert!(Template::parse(Entity::Candidate, "{attributes.}").is_err());
        assert!(Template::parse(Entity::Candidate, "{sectors}").is_err());
        // A template change alters the hash only of records whose text it changes.
        let before = Template::parse(Entity::Candidate, "{occupation}").unwrap();
        let after =
            Template::parse(Entity::Candidate, "{occupation}\n{attributes.sectors}").unwrap();
        let plain = Candidate {
            occupation: Some("Welder".into()),
            ..Default::default()
        };
        let hash = |t: &Template, c: &Candidate| content_hash("m", &t.render_candidate(c));
        assert_eq!(hash(&before, &plain), hash(&after, &plain));
        assert_ne!(hash(&before, &c), hash(&after, &c));
    }

    #[test]
    fn hash_depends_on_model_and_text_only() {
        let a = content_hash("m1", "text");
        assert_eq!(a, content_hash("m1", "text"));
        assert_eq!(a.len(), 64);
        assert_ne!(a, content_hash("m2", "text"));
        assert_ne!(a, content_hash("m1", "text2"));
        assert_ne!(content_hash("a", "bc"), content_hash("ab", "c"));
    }
}
