//! The predicate tree both query languages compile to, and its evaluation against a stored record.
//!
//! `lucene.rs` (search) and `jpql.rs` (query `where`) parse into [`Expr`]; field paths are resolved and literals
//! typed at parse time against the entity schema, so evaluation never fails and unknown fields are reported as
//! 400s before any record is touched. `id`, `dateLastModified` and `isDeleted` are read from the record struct
//! instead of its JSON map because nearly every incremental poll filters on them.

use std::ops::Bound;

use serde_json::Value;

use super::error::ApiError;
use super::schema::EntityDef;
use super::store::{FieldType, Record, ADDRESS_FIELDS};

/// Fields with a fast accessor on [`Record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    /// `id`.
    Id,
    /// `dateLastModified`.
    Modified,
    /// `isDeleted`.
    Deleted,
    /// Anything else: looked up in the JSON map.
    None,
}

/// A resolved field path such as `dateLastModified`, `address.city` or `owner.id`.
#[derive(Debug, Clone)]
pub struct Path {
    /// Segments; at most two (field, then address sub-field or `id` of a reference).
    pub segs: Vec<String>,
    /// Type of the leaf value.
    pub leaf: FieldType,
    /// Fast accessor, if any.
    pub special: Special,
}

impl Path {
    /// Resolves a dotted path against `def`, or answers 400 naming the bad segment.
    pub fn resolve(def: &EntityDef, dotted: &str) -> Result<Path, ApiError> {
        let segs: Vec<String> = dotted.split('.').map(str::to_string).collect();
        let bad = || {
            ApiError::bad_query(format!(
                "Invalid field '{dotted}' for entity type '{}'",
                def.name
            ))
        };
        let first = def.field(&segs[0]).ok_or_else(bad)?;
        let leaf = match (first, segs.len()) {
            (FieldType::Address, 2) if ADDRESS_FIELDS.contains(&segs[1].as_str()) => {
                if segs[1] == "countryID" {
                    FieldType::Int
                } else {
                    FieldType::Str
                }
            }
            // Only the id of a referenced record is stored inline; deeper joins are not simulated.
            (FieldType::ToOne(_) | FieldType::ToMany(_), 2) if segs[1] == "id" => FieldType::Int,
            (FieldType::ToOne(_) | FieldType::ToMany(_), 1) => {
                return Ok(Path {
                    segs: vec![segs[0].clone(), "id".into()],
                    leaf: FieldType::Int,
                    special: Special::None,
                })
            }
            (FieldType::Address, 1) => {
                return Err(ApiError::bad_query(format!(
                    "Field '{dotted}' is a composite; name one of its parts, e.g. '{dotted}.city'"
                )))
            }
            (t, 1) => t,
            _ => return Err(bad()),
        };
        let special = match (segs.len(), segs[0].as_str()) {
            (1, "id") => Special::Id,
            (1, "dateLastModified") => Special::Modified,
            (1, "isDeleted") => Special::Deleted,
            _ => Special::None,
        };
        Ok(Path {
            segs,
            leaf,
            special,
        })
    }

    /// Calls `f` with every value at this path (several for to-many associations) until it returns true.
    fn any(&self, rec: &Record, f: &mut dyn FnMut(Option<&Value>) -> bool) -> bool {
        match self.special {
            Special::Id => return f(Some(&Value::from(rec.id))),
            Special::Modified => return f(Some(&Value::from(rec.modified))),
            Special::Deleted => return f(Some(&Value::Bool(rec.deleted))),
            Special::None => {}
        }
        let top = rec.get(&self.segs[0]);
        if self.segs.len() == 1 {
            return f(top);
        }
        let sub = &self.segs[1];
        match top {
            Some(Value::Object(o)) => match o.get("data") {
                Some(Value::Array(items)) => items.iter().any(|it| f(it.get(sub.as_str()))),
                _ => f(o.get(sub.as_str()).filter(|v| !v.is_null())),
            },
            _ => f(None),
        }
    }

    /// First value at this path (sort key).
    pub fn first_value<'a>(&self, rec: &'a Record) -> Option<&'a Value> {
        // Specials are not in a borrowed form on the struct, but they are mirrored in the map.
        let top = rec.get(&self.segs[0]);
        if self.segs.len() == 1 {
            return top;
        }
        match top? {
            Value::Object(o) => match o.get("data") {
                Some(Value::Array(items)) => items.first()?.get(self.segs[1].as_str()),
                _ => o.get(self.segs[1].as_str()),
            },
            _ => None,
        }
    }
}

/// A typed literal.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    /// Number (also dates as epoch ms).
    Num(f64),
    /// String, compared case-insensitively.
    Str(String),
    /// Boolean.
    Bool(bool),
}

/// Comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `<>` / `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// How a Lucene text clause matches a string field.
#[derive(Debug, Clone, PartialEq)]
pub enum TextMatch {
    /// A word of the value (or the whole value) equals the term, case-insensitively.
    Term(String),
    /// The value contains the phrase, case-insensitively.
    Phrase(String),
    /// Glob with `*` and `?` over a word of the value or the whole value.
    Wildcard(String),
}

/// Predicate tree.
#[derive(Debug, Clone)]
pub enum Expr {
    /// Matches every record.
    All,
    /// All children match.
    And(Vec<Expr>),
    /// Any child matches.
    Or(Vec<Expr>),
    /// The child does not match.
    Not(Box<Expr>),
    /// `path op literal`; false when the value is null (SQL semantics).
    Cmp(Path, CmpOp, Lit),
    /// `path IN (...)`.
    In(Path, Vec<Lit>),
    /// `path IS NULL` (`true`) or `IS NOT NULL` (`false`).
    IsNull(Path, bool),
    /// `path LIKE 'pattern'` with `%` and `_`.
    Like(Path, String),
    /// Lucene text match on a string field.
    Text(Path, TextMatch),
}

impl Expr {
    /// Whether `rec` matches.
    pub fn eval(&self, rec: &Record) -> bool {
        match self {
            Expr::All => true,
            Expr::And(xs) => xs.iter().all(|x| x.eval(rec)),
            Expr::Or(xs) => xs.iter().any(|x| x.eval(rec)),
            Expr::Not(x) => !x.eval(rec),
            Expr::Cmp(p, op, lit) => match p.special {
                // Fast paths: no map lookup, no Value construction.
                Special::Modified | Special::Id => {
                    let v = if p.special == Special::Id {
                        rec.id
                    } else {
                        rec.modified
                    } as f64;
                    match lit {
                        Lit::Num(n) => cmp_f64(v, *op, *n),
                        _ => false,
                    }
                }
                Special::Deleted => match lit {
                    Lit::Bool(b) => cmp_bool(rec.deleted, *op, *b),
                    _ => false,
                },
                Special::None => p.any(rec, &mut |v| v.is_some_and(|v| cmp_value(v, *op, lit))),
            },
            Expr::In(p, lits) => p.any(rec, &mut |v| {
                v.is_some_and(|v| lits.iter().any(|l| cmp_value(v, CmpOp::Eq, l)))
            }),
            Expr::IsNull(p, null) => {
                let mut seen = false;
                p.any(rec, &mut |v| {
                    seen |= v.is_some();
                    seen
                });
                seen != *null
            }
            Expr::Like(p, pat) => p.any(rec, &mut |v| {
                v.and_then(Value::as_str)
                    .is_some_and(|s| like(&s.to_lowercase(), pat))
            }),
            Expr::Text(p, m) => p.any(rec, &mut |v| {
                v.and_then(Value::as_str).is_some_and(|s| text_match(s, m))
            }),
        }
    }

    /// Whether the filter reads only `id`, `dateLastModified` and `isDeleted`, so [`Expr::eval_key`] can
    /// decide it from the index alone.
    pub fn key_only(&self) -> bool {
        match self {
            Expr::All => true,
            Expr::And(xs) | Expr::Or(xs) => xs.iter().all(Expr::key_only),
            Expr::Not(x) => x.key_only(),
            Expr::Cmp(p, _, _) | Expr::In(p, _) | Expr::IsNull(p, _) => p.special != Special::None,
            Expr::Like(..) | Expr::Text(..) => false,
        }
    }

    /// Evaluates a [`Expr::key_only`] filter from index values.
    pub fn eval_key(&self, id: i64, modified: i64, deleted: bool) -> bool {
        let num = |p: &Path| match p.special {
            Special::Id => Some(id as f64),
            Special::Modified => Some(modified as f64),
            _ => None,
        };
        match self {
            Expr::All => true,
            Expr::And(xs) => xs.iter().all(|x| x.eval_key(id, modified, deleted)),
            Expr::Or(xs) => xs.iter().any(|x| x.eval_key(id, modified, deleted)),
            Expr::Not(x) => !x.eval_key(id, modified, deleted),
            Expr::Cmp(p, op, lit) => match (p.special, lit) {
                (Special::Deleted, Lit::Bool(b)) => cmp_bool(deleted, *op, *b),
                (_, Lit::Num(n)) => num(p).is_some_and(|v| cmp_f64(v, *op, *n)),
                _ => false,
            },
            Expr::In(p, lits) => lits.iter().any(|l| match (p.special, l) {
                (Special::Deleted, Lit::Bool(b)) => deleted == *b,
                (_, Lit::Num(n)) => num(p) == Some(*n),
                _ => false,
            }),
            // id, dateLastModified and isDeleted are never null.
            Expr::IsNull(_, null) => !null,
            Expr::Like(..) | Expr::Text(..) => false,
        }
    }

    /// Bounds on `dateLastModified` implied by the top-level conjunction (used to narrow the index scan; the
    /// full filter is still evaluated on every record in range).
    pub fn modified_bounds(&self) -> (Bound<i64>, Bound<i64>) {
        self.bounds_of(Special::Modified)
    }

    /// The `id` bounds of the top-level conjunction (for a range scan of the records by id, as a keyset
    /// listing `id > last ORDER BY id` does).
    pub fn id_bounds(&self) -> (Bound<i64>, Bound<i64>) {
        self.bounds_of(Special::Id)
    }

    fn bounds_of(&self, special: Special) -> (Bound<i64>, Bound<i64>) {
        let mut lo = Bound::Unbounded;
        let mut hi = Bound::Unbounded;
        let mut visit = |e: &Expr| {
            if let Expr::Cmp(p, op, Lit::Num(n)) = e {
                if p.special != special || n.fract() != 0.0 {
                    return;
                }
                let n = *n as i64;
                match op {
                    CmpOp::Ge => lo = tighter_lo(lo, Bound::Included(n)),
                    CmpOp::Gt => lo = tighter_lo(lo, Bound::Excluded(n)),
                    CmpOp::Le => hi = tighter_hi(hi, Bound::Included(n)),
                    CmpOp::Lt => hi = tighter_hi(hi, Bound::Excluded(n)),
                    CmpOp::Eq => {
                        lo = tighter_lo(lo, Bound::Included(n));
                        hi = tighter_hi(hi, Bound::Included(n));
                    }
                    CmpOp::Ne => {}
                }
            }
        };
        match self {
            Expr::And(xs) => xs.iter().for_each(&mut visit),
            e => visit(e),
        }
        (lo, hi)
    }
}

fn bound_val(b: &Bound<i64>) -> Option<(i64, bool)> {
    match b {
        Bound::Included(x) => Some((*x, true)),
        Bound::Excluded(x) => Some((*x, false)),
        Bound::Unbounded => None,
    }
}

fn tighter_lo(a: Bound<i64>, b: Bound<i64>) -> Bound<i64> {
    match (bound_val(&a), bound_val(&b)) {
        (None, _) => b,
        (_, None) => a,
        (Some((x, xi)), Some((y, yi))) => {
            if y > x || (y == x && !yi && xi) {
                b
            } else {
                a
            }
        }
    }
}

fn tighter_hi(a: Bound<i64>, b: Bound<i64>) -> Bound<i64> {
    match (bound_val(&a), bound_val(&b)) {
        (None, _) => b,
        (_, None) => a,
        (Some((x, xi)), Some((y, yi))) => {
            if y < x || (y == x && !yi && xi) {
                b
            } else {
                a
            }
        }
    }
}

fn cmp_f64(v: f64, op: CmpOp, n: f64) -> bool {
    match op {
        CmpOp::Eq => v == n,
        CmpOp::Ne => v != n,
        CmpOp::Lt => v < n,
        CmpOp::Le => v <= n,
        CmpOp::Gt => v > n,
        CmpOp::Ge => v >= n,
    }
}

fn cmp_bool(v: bool, op: CmpOp, b: bool) -> bool {
    match op {
        CmpOp::Eq => v == b,
        CmpOp::Ne => v != b,
        CmpOp::Lt => !v & b,
        CmpOp::Le => v <= b,
        CmpOp::Gt => v & !b,
        CmpOp::Ge => v >= b,
    }
}

fn cmp_value(v: &Value, op: CmpOp, lit: &Lit) -> bool {
    match (v, lit) {
        (Value::Number(x), Lit::Num(n)) => x.as_f64().is_some_and(|x| cmp_f64(x, op, *n)),
        (Value::Bool(x), Lit::Bool(b)) => cmp_bool(*x, op, *b),
        (Value::Bool(x), Lit::Num(n)) => cmp_f64(f64::from(u8::from(*x)), op, *n),
        (Value::String(s), Lit::Str(t)) => {
            let s = s.to_lowercase();
            let t = t.to_lowercase();
            match op {
                CmpOp::Eq => s == t,
                CmpOp::Ne => s != t,
                CmpOp::Lt => s < t,
                CmpOp::Le => s <= t,
                CmpOp::Gt => s > t,
                CmpOp::Ge => s >= t,
            }
        }
        (Value::String(s), Lit::Num(n)) => {
            s.trim().parse::<f64>().is_ok_and(|x| cmp_f64(x, op, *n))
        }
        _ => false,
    }
}

/// SQL LIKE over lowercase strings (`pat` is already lowercase).
fn like(s: &str, pat: &str) -> bool {
    glob(s, pat, '%', '_')
}

/// Iterative glob matcher with a multi-char and a single-char wildcard.
fn glob(s: &str, pat: &str, many: char, one: char) -> bool {
    let s: Vec<char> = s.chars().collect();
    let p: Vec<char> = pat.chars().collect();
    let (mut i, mut j) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if j < p.len() && (p[j] == one || p[j] == s[i]) {
            i += 1;
            j += 1;
        } else if j < p.len() && p[j] == many {
            star = Some((j, i));
            j += 1;
        } else if let Some((sj, si)) = star {
            j = sj + 1;
            i = si + 1;
            star = Some((sj, si + 1));
        } else {
            return false;
        }
    }
    while j < p.len() && p[j] == many {
        j += 1;
    }
    j == p.len()
}

/// Lucene-ish text match: terms and wildcards are tried against the whole value and against each word;
/// phrases are substring matches. All comparisons are case-insensitive (terms arrive lowercase).
fn text_match(value: &str, m: &TextMatch) -> bool {
    let v = value.to_lowercase();
    match m {
        TextMatch::Phrase(p) => v.contains(p.as_str()),
        TextMatch::Term(t) => {
            v == *t
                || v.split_whitespace().any(|w| w == t)
                || v.split(|c: char| !c.is_alphanumeric()).any(|w| w == t)
        }
        TextMatch::Wildcard(g) => {
            glob(&v, g, '*', '?')
                || v.split_whitespace().any(|w| glob(w, g, '*', '?'))
                || v.split(|c: char| !c.is_alphanumeric())
                    .any(|w| glob(w, g, '*', '?'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches() {
        assert!(glob("johnson", "john*", '*', '?'));
        assert!(glob("jon", "j?n", '*', '?'));
        assert!(!glob("jane", "john*", '*', '?'));
        assert!(like("hello world", "%wor%"));
        assert!(!like("hello", "h_lo"));
    }

    #[test]
    fn text_terms_match_words_and_whole_values() {
        assert!(text_match(
            "Senior Java Developer",
            &TextMatch::Term("java".into())
        ));
        assert!(text_match("a@b.com", &TextMatch::Term("a@b.com".into())));
        assert!(!text_match("Javascript", &TextMatch::Term("java".into())));
        assert!(text_match(
            "Senior Java Developer",
            &TextMatch::Phrase("java dev".into())
        ));
    }
}
