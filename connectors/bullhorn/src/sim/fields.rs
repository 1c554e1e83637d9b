//! The `fields` parameter: parsing (`id,address(city,zip),owner(id,firstName),categories[3](name)`) and
//! rendering stored records into Bullhorn's response shapes.
//!
//! Rendering writes JSON straight into a byte buffer instead of building `serde_json::Value` trees: a search page
//! of 500 records is the simulator's hottest path and must not be what limits the pipeline. To-one references
//! become `{"id":N}` (or the selected fields of the referenced record); to-many associations become
//! `{"total":N,"data":[...]}` holding at most the requested count (default 5, at most 10) and never soft-deleted
//! members; a selected field that is unset is `null`.

use std::collections::HashMap;

use serde_json::Value;

use super::error::ApiError;
use super::schema::{EntityDef, ENTITIES};
use super::store::{entity_def, Db, FieldType, PackedValue, Record, ADDRESS_FIELDS};

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
    /// Index of the referenced type in the store, for references to simulated types.
    pub target: Option<usize>,
    /// Position of the field in its entity's schema (for the packed record), when the entity is simulated.
    pub idx: Option<u16>,
}

fn field_index(def: Option<&EntityDef>, name: &str) -> Option<u16> {
    def?.index(name).map(|i| i as u16)
}

/// Store index of the type a reference points to, when the simulator stores that type.
fn target_index(ty: FieldType) -> Option<usize> {
    match ty {
        FieldType::ToOne(t) | FieldType::ToMany(t) => ENTITIES.iter().position(|d| d.name == t),
        _ => None,
    }
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
            target: target_index(*t),
            idx: field_index(Some(def), n),
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
                    target: None,
                    idx: None,
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
            let idx = field_index(def, &name);
            out.push(FieldSel {
                name,
                ty,
                limit,
                sub,
                target: target_index(ty),
                idx,
            });
        }
        if chars.get(*pos) == Some(&',') {
            *pos += 1;
            continue;
        }
        return Ok(out);
    }
}

/// Cache key of a rendered reference: (store index, id, address of the sub-selection or 0).
type RefKey = (usize, i64, usize);

/// Multiply-shift hasher for [`RefKey`]s: the renderer looks references up several times per record, and the
/// keys are small trusted integers, so SipHash's DoS resistance buys nothing here.
#[derive(Default)]
struct RefHasher(u64);

impl std::hash::Hasher for RefHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn write_i64(&mut self, n: i64) {
        self.write_u64(n as u64);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

/// Renders records of one response. Referenced records (owners, skills, categories...) repeat across a page,
/// so each `(type, id, selection)` is rendered once and then copied.
pub struct Renderer<'a> {
    db: &'a Db,
    /// Key → position in `rendered`.
    cache: HashMap<RefKey, usize, std::hash::BuildHasherDefault<RefHasher>>,
    /// (soft-deleted, rendered bytes) of each reference seen.
    rendered: Vec<(bool, Vec<u8>)>,
}

impl<'a> Renderer<'a> {
    /// A renderer reading references from `db`.
    pub fn new(db: &'a Db) -> Self {
        Self {
            db,
            cache: HashMap::default(),
            rendered: Vec::new(),
        }
    }

    /// Appends `rec` rendered with `sel` as a JSON object; `score` adds search's `_score`.
    pub fn record(
        &mut self,
        out: &mut Vec<u8>,
        rec: &Record,
        sel: &[FieldSel],
        score: Option<f64>,
    ) {
        out.push(b'{');
        let mut first = true;
        for f in sel {
            if !first {
                out.push(b',');
            }
            first = false;
            key(out, &f.name);
            let Some(idx) = f.idx else {
                // A field of a type the simulator does not store.
                out.extend_from_slice(b"null");
                continue;
            };
            match (rec.packed.get(idx), f.ty) {
                (Some(PackedValue::Ids(ids)), FieldType::ToOne(_)) => match (ids.first(), f.target)
                {
                    (Some(id), Some(t)) => {
                        let (slot, _) = self.reference(t, *id, f.sub.as_deref());
                        out.extend_from_slice(&self.rendered[slot].1);
                    }
                    (Some(id), None) => id_object(out, *id),
                    (None, _) => out.extend_from_slice(b"null"),
                },
                (Some(PackedValue::Ids(ids)), FieldType::ToMany(_)) => {
                    self.association(out, ids, f)
                }
                (None, FieldType::ToMany(_)) => self.association(out, &[], f),
                (Some(PackedValue::Json(bytes)), _)
                    if !(f.ty == FieldType::Address && f.sub.is_some()) =>
                {
                    out.extend_from_slice(bytes)
                }
                (Some(_), _) => self.field(out, rec.get(&f.name), f),
                (None, _) => out.extend_from_slice(b"null"),
            }
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

    /// `{"total":N,"data":[...]}` of the live members, at most the requested count.
    fn association(&mut self, out: &mut Vec<u8>, ids: &[i64], f: &FieldSel) {
        let limit = f.limit.unwrap_or(DEFAULT_TO_MANY).min(MAX_TO_MANY);
        let mut live: Vec<Result<usize, i64>> = Vec::with_capacity(ids.len());
        for id in ids {
            match f.target {
                Some(t) => {
                    let (slot, deleted) = self.reference(t, *id, f.sub.as_deref());
                    // To-many associations hide soft-deleted members, in `total` too.
                    if !deleted {
                        live.push(Ok(slot));
                    }
                }
                None => live.push(Err(*id)),
            }
        }
        out.extend_from_slice(b"{\"total\":");
        out.extend_from_slice(live.len().to_string().as_bytes());
        out.extend_from_slice(b",\"data\":[");
        for (i, m) in live.iter().take(limit).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            match m {
                Ok(slot) => out.extend_from_slice(&self.rendered[*slot].1),
                Err(id) => id_object(out, *id),
            }
        }
        out.extend_from_slice(b"]}");
    }

    /// Renders (once) a referenced record; returns its slot in `rendered` and whether it is soft-deleted.
    /// A missing record renders as `{"id":N}`.
    fn reference(&mut self, target: usize, id: i64, sub: Option<&[FieldSel]>) -> (usize, bool) {
        let k = (target, id, sub.map(|s| s.as_ptr() as usize).unwrap_or(0));
        if let Some(slot) = self.cache.get(&k) {
            return (*slot, self.rendered[*slot].0);
        }
        let db = self.db;
        let rec = db.stores.get(target).and_then(|s| s.records.get(&id));
        let mut buf = Vec::with_capacity(64);
        match (rec, sub) {
            (Some(r), Some(sub)) => self.record(&mut buf, r, sub, None),
            _ => id_object(&mut buf, id),
        }
        let deleted = rec.is_some_and(|r| r.deleted);
        self.rendered.push((deleted, buf));
        let slot = self.rendered.len() - 1;
        self.cache.insert(k, slot);
        (slot, deleted)
    }

    /// Slow path from the JSON map: addresses with a sub-selection and values too long to pre-serialize.
    fn field(&mut self, out: &mut Vec<u8>, value: Option<&Value>, f: &FieldSel) {
        match (f.ty, value, &f.sub) {
            (FieldType::Address, Some(Value::Object(addr)), Some(sub)) => {
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
            (_, Some(v), _) => write_json(out, v),
            (_, None, _) => out.extend_from_slice(b"null"),
        }
    }
}

fn id_object(out: &mut Vec<u8>, id: i64) {
    out.extend_from_slice(b"{\"id\":");
    out.extend_from_slice(id.to_string().as_bytes());
    out.push(b'}');
}

/// Appends `rec` rendered with `sel` (one-off; prefer a [`Renderer`] for pages).
pub fn render(out: &mut Vec<u8>, db: &Db, rec: &Record, sel: &[FieldSel], score: Option<f64>) {
    Renderer::new(db).record(out, rec, sel, score);
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
