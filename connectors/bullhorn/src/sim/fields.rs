//! The `fields` parameter: parsing (`id,address(city,zip),owner(id,firstName),categories[3](name)`) and
//! rendering stored records into Bullhorn's response shapes.
//!
//! Rendering writes JSON straight into a byte buffer instead of building `serde_json::Value` trees: a search page
//! of 500 records is the simulator's hottest path and must not be what limits the pipeline. To-one references
//! become `{"id":N}` (or the selected fields of the referenced record); to-many associations become
//! `{"total":N,"data":[...]}` holding at most the requested count (default 5, at most 10) and never soft-deleted
//! members; a selected field that is unset is `null`.

use serde_json::Value;

use super::error::ApiError;
use super::schema::EntityDef;
use super::store::{entity_def, Db, FieldType, Record, ADDRESS_FIELDS};

/// Default number of to-many members rendered inline.
pub const DEFAULT_TO_MANY: usize = 5;
/// Largest number of to-many members rendered inline.
pub const MAX_TO_MANY: usize = 10;

/// One selected field.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSel {
    /// Field name.
    pub name: String,
    /// Type of the field (resolved against the schema).
    pub ty: FieldType,
    /// `[n]` limit for to-many fields.
    pub limit: Option<usize>,
    /// Nested selection `(a,b)`; `None` means the default shape.
    pub sub: Option<Vec<FieldSel>>,
}

/// Parses `fields` for entity `def`. `*` selects every field (rejected at top level by the REST layer, as
/// Bullhorn does outside `/meta`). Unknown fields are Bullhorn's 404.
pub fn parse(def: &EntityDef, spec: &str) -> Result<Vec<FieldSel>, ApiError> {
    let chars: Vec<char> = spec.chars().filter(|c| !c.is_whitespace()).collect();
    let mut pos = 0;
    let sel = parse_list(def.name, Some(def), &chars, &mut pos)?;
    if pos != chars.len() {
        return Err(ApiError::bad_request(format!(
            "Malformed fields parameter at position {pos}: unexpected '{}'",
            chars[pos]
        )));
    }
    Ok(sel)
}

/// Every field of `def`, in default shapes.
pub fn all_fields(def: &EntityDef) -> Vec<FieldSel> {
    def.fields
        .iter()
        .map(|(n, t)| FieldSel {
            name: (*n).to_string(),
            ty: *t,
            limit: None,
            sub: None,
        })
        .collect()
}

fn parse_list(
    entity: &str,
    def: Option<&EntityDef>,
    chars: &[char],
    pos: &mut usize,
) -> Result<Vec<FieldSel>, ApiError> {
    let mut out: Vec<FieldSel> = Vec::new();
    loop {
        let start = *pos;
        while *pos < chars.len()
            && (chars[*pos].is_alphanumeric() || chars[*pos] == '_' || chars[*pos] == '*')
        {
            *pos += 1;
        }
        let name: String = chars[start..*pos].iter().collect();
        if name.is_empty() {
            return Err(ApiError::bad_request(format!(
                "Malformed fields parameter at position {start}: expected a field name"
            )));
        }
        if name == "*" {
            match def {
                Some(d) => out.extend(all_fields(d)),
                None => out.push(FieldSel {
                    name: "id".into(),
                    ty: FieldType::Int,
                    limit: None,
                    sub: None,
                }),
            }
        } else {
            let ty = match def {
                Some(d) => d
                    .field(&name)
                    .ok_or_else(|| ApiError::unknown_field(entity, &name))?,
                None if entity == "Address" => {
                    if !ADDRESS_FIELDS.contains(&name.as_str()) {
                        return Err(ApiError::unknown_field(entity, &name));
                    }
                    FieldType::Str
                }
                // Referenced types the simulator does not store: any name, rendered as null.
                None => FieldType::Str,
            };
            let mut limit = None;
            if chars.get(*pos) == Some(&'[') {
                let s = *pos + 1;
                let close = chars[s..]
                    .iter()
                    .position(|c| *c == ']')
                    .map(|p| p + s)
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "Malformed fields parameter: '[' after '{name}' is never closed"
                        ))
                    })?;
                let n: String = chars[s..close].iter().collect();
                let n: usize = n.parse().map_err(|_| {
                    ApiError::bad_request(format!(
                        "Malformed fields parameter: '{n}' is not a count in '{name}[..]'"
                    ))
                })?;
                if !matches!(ty, FieldType::ToMany(_)) {
                    return Err(ApiError::bad_request(format!(
                        "Malformed fields parameter: '{name}' is not a to-many association and takes no [count]"
                    )));
                }
                limit = Some(n);
                *pos = close + 1;
            }
            let mut sub = None;
            if chars.get(*pos) == Some(&'(') {
                *pos += 1;
                let (sub_entity, sub_def) = match ty {
                    FieldType::ToOne(t) | FieldType::ToMany(t) => (t, entity_def(t)),
                    FieldType::Address => ("Address", None),
                    _ => {
                        return Err(ApiError::bad_request(format!(
                        "Malformed fields parameter: '{name}' is a scalar and takes no sub-fields"
                    )))
                    }
                };
                sub = Some(parse_list(sub_entity, sub_def, chars, pos)?);
                if chars.get(*pos) != Some(&')') {
                    return Err(ApiError::bad_request(format!(
                        "Malformed fields parameter: '(' after '{name}' is never closed"
                    )));
                }
                *pos += 1;
            }
            out.push(FieldSel {
                name,
                ty,
                limit,
                sub,
            });
        }
        if chars.get(*pos) == Some(&',') {
            *pos += 1;
            continue;
        }
        return Ok(out);
    }
}

/// Appends `rec` rendered with `sel` as a JSON object; `score` adds search's `_score`.
pub fn render(out: &mut Vec<u8>, db: &Db, rec: &Record, sel: &[FieldSel], score: Option<f64>) {
    out.push(b'{');
    let mut first = true;
    for f in sel {
        if !first {
            out.push(b',');
        }
        first = false;
        key(out, &f.name);
        render_field(out, db, rec.get(&f.name), f);
    }
    if let Some(s) = score {
        if !first {
            out.push(b',');
        }
        key(out, "_score");
        write_json(out, &Value::from(s));
    }
    out.push(b'}');
}

fn key(out: &mut Vec<u8>, name: &str) {
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

fn write_json(out: &mut Vec<u8>, v: &Value) {
    // Writing into a Vec cannot fail; a Value always serializes.
    let _ = serde_json::to_writer(&mut *out, v);
}

fn render_field(out: &mut Vec<u8>, db: &Db, value: Option<&Value>, f: &FieldSel) {
    match f.ty {
        FieldType::Address => match (value, &f.sub) {
            (Some(Value::Object(addr)), Some(sub)) => {
                out.push(b'{');
                for (i, s) in sub.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    key(out, &s.name);
                    write_json(out, addr.get(&s.name).unwrap_or(&Value::Null));
                }
                out.push(b'}');
            }
            (Some(v), _) => write_json(out, v),
            (None, _) => out.extend_from_slice(b"null"),
        },
        FieldType::ToOne(target) => {
            let id = value.and_then(|v| v.get("id")).and_then(Value::as_i64);
            match (id, &f.sub) {
                (None, _) => out.extend_from_slice(b"null"),
                (Some(id), Some(sub)) => match db.record(target, id) {
                    Some(r) => render(out, db, r, sub, None),
                    None => {
                        out.extend_from_slice(b"{\"id\":");
                        out.extend_from_slice(id.to_string().as_bytes());
                        out.push(b'}');
                    }
                },
                (Some(id), None) => {
                    out.extend_from_slice(b"{\"id\":");
                    out.extend_from_slice(id.to_string().as_bytes());
                    out.push(b'}');
                }
            }
        }
        FieldType::ToMany(target) => {
            let limit = f.limit.unwrap_or(DEFAULT_TO_MANY).min(MAX_TO_MANY);
            let ids = value
                .and_then(|v| v.get("data"))
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|m| m.get("id").and_then(Value::as_i64))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            // To-many associations hide soft-deleted members.
            let live: Vec<i64> = ids
                .into_iter()
                .filter(|id| db.record(target, *id).is_none_or(|r| !r.deleted))
                .collect();
            out.extend_from_slice(b"{\"total\":");
            out.extend_from_slice(live.len().to_string().as_bytes());
            out.extend_from_slice(b",\"data\":[");
            for (i, id) in live.iter().take(limit).enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                match (&f.sub, db.record(target, *id)) {
                    (Some(sub), Some(r)) => render(out, db, r, sub, None),
                    _ => {
                        out.extend_from_slice(b"{\"id\":");
                        out.extend_from_slice(id.to_string().as_bytes());
                        out.push(b'}');
                    }
                }
            }
            out.extend_from_slice(b"]}");
        }
        _ => match value {
            Some(v) => write_json(out, v),
            None => out.extend_from_slice(b"null"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_and_limited_selections() {
        let def = entity_def("Candidate").expect("schema");
        let sel = parse(
            def,
            "id, address(city,zip),owner(id,firstName),primarySkills[3](name)",
        )
        .expect("parse");
        assert_eq!(sel.len(), 4);
        assert_eq!(sel[1].sub.as_ref().map(Vec::len), Some(2));
        assert_eq!(sel[3].limit, Some(3));
        assert_eq!(
            sel[3].sub.as_ref().map(|s| s[0].name.as_str()),
            Some("name")
        );
    }

    #[test]
    fn unknown_fields_are_404_and_bad_syntax_400() {
        let def = entity_def("Candidate").expect("schema");
        assert_eq!(
            parse(def, "id,bogus").expect_err("unknown").status.as_u16(),
            404
        );
        assert_eq!(
            parse(def, "owner(bogus)")
                .expect_err("unknown sub")
                .status
                .as_u16(),
            404
        );
        assert_eq!(
            parse(def, "address(nope)")
                .expect_err("address sub")
                .status
                .as_u16(),
            404
        );
        assert_eq!(
            parse(def, "id,,name").expect_err("empty").status.as_u16(),
            400
        );
        assert_eq!(
            parse(def, "owner(id")
                .expect_err("unclosed")
                .status
                .as_u16(),
            400
        );
        assert_eq!(
            parse(def, "firstName[3]")
                .expect_err("limit on scalar")
                .status
                .as_u16(),
            400
        );
    }
}
