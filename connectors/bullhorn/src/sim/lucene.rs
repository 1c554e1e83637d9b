//! Parser for the Lucene subset that `search/{Type}?query=` accepts, compiled to a [`filter::Expr`].
//!
//! Supported: `field:value`, `field:"quoted phrase"`, `field:prefix*`, `field:*`, ranges `[a TO b]` /
//! `{a TO b}` (mixed brackets allowed) with `*` for an open end, `AND`/`&&`, `OR`/`||`, `NOT`/`!`/`-`, `+`,
//! parentheses, `field:(a OR b)` groups, and Bullhorn's id lists `id:1 2 3` (a bare value takes the field of the
//! clause before it). Adjacent clauses without an operator are OR'ed, as in Lucene. Dates are accepted as epoch
//! milliseconds or as `yyyyMMddHHmmss` / `yyyyMMdd` in UTC; booleans as `0|1|true|false`. Every syntax error
//! and unknown field is a 400 with a message saying what and where.
//!
//! [`filter::Expr`]: super::filter::Expr

use super::error::ApiError;
use super::filter::{CmpOp, Expr, Lit, Path, TextMatch};
use super::schema::EntityDef;
use super::store::FieldType;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    And,
    Or,
    Not,
    Plus,
    Field(String),
    Word(String),
    Phrase(String),
    Range {
        lo: String,
        hi: String,
        lo_incl: bool,
        hi_incl: bool,
    },
}

fn err(pos: usize, what: impl std::fmt::Display) -> ApiError {
    ApiError::bad_query(format!("Malformed search query at position {pos}: {what}"))
}

fn is_special(c: char) -> bool {
    matches!(c, '(' | ')' | '[' | ']' | '{' | '}' | '"' | ':')
}

fn tokenize(q: &str) -> Result<Vec<(usize, Tok)>, ApiError> {
    let chars: Vec<char> = q.chars().collect();
    let mut out: Vec<(usize, Tok)> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let after_field = matches!(out.last(), Some((_, Tok::Field(_))));
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        match c {
            '(' => {
                out.push((i, Tok::LParen));
                i += 1;
            }
            ')' => {
                out.push((i, Tok::RParen));
                i += 1;
            }
            '"' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(err(start, "unterminated quoted phrase")),
                        Some('\\') => {
                            if let Some(n) = chars.get(i + 1) {
                                s.push(*n);
                            }
                            i += 2;
                        }
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            s.push(*ch);
                            i += 1;
                        }
                    }
                }
                out.push((start, Tok::Phrase(s)));
            }
            '[' | '{' => {
                let lo_incl = c == '[';
                let close = chars[i + 1..]
                    .iter()
                    .position(|ch| *ch == ']' || *ch == '}')
                    .map(|p| p + i + 1)
                    .ok_or_else(|| err(start, "unterminated range (missing ']' or '}')"))?;
                let inner: String = chars[i + 1..close].iter().collect();
                let parts: Vec<&str> = inner.split_whitespace().collect();
                if parts.len() != 3 || parts[1] != "TO" {
                    return Err(err(
                        start,
                        format!(
                            "a range must look like [a TO b], got '{}{inner}{}'",
                            c, chars[close]
                        ),
                    ));
                }
                out.push((
                    start,
                    Tok::Range {
                        lo: parts[0].to_string(),
                        hi: parts[2].to_string(),
                        lo_incl,
                        hi_incl: chars[close] == ']',
                    },
                ));
                i = close + 1;
            }
            ']' | '}' => return Err(err(i, format!("unexpected '{c}'"))),
            ':' => return Err(err(i, "':' without a field name")),
            '&' if chars.get(i + 1) == Some(&'&') => {
                out.push((i, Tok::And));
                i += 2;
            }
            '|' if chars.get(i + 1) == Some(&'|') => {
                out.push((i, Tok::Or));
                i += 2;
            }
            '!' if !after_field => {
                out.push((i, Tok::Not));
                i += 1;
            }
            '-' if !after_field => {
                out.push((i, Tok::Not));
                i += 1;
            }
            '+' if !after_field => {
                out.push((i, Tok::Plus));
                i += 1;
            }
            _ => {
                let mut s = String::new();
                while i < chars.len() && !chars[i].is_whitespace() && !is_special(chars[i]) {
                    if chars[i] == '\\' {
                        if let Some(n) = chars.get(i + 1) {
                            s.push(*n);
                        }
                        i += 2;
                    } else {
                        s.push(chars[i]);
                        i += 1;
                    }
                }
                if chars.get(i) == Some(&':') {
                    i += 1;
                    out.push((start, Tok::Field(s)));
                    continue;
                }
                // Lucene boosts (`term^2`) change scores only; the simulator scores every hit 1.0.
                if let Some(caret) = s.find('^') {
                    s.truncate(caret);
                }
                let tok = match s.as_str() {
                    "AND" => Tok::And,
                    "OR" => Tok::Or,
                    "NOT" => Tok::Not,
                    _ => Tok::Word(s),
                };
                out.push((start, tok));
            }
        }
    }
    Ok(out)
}

struct Parser<'a> {
    def: &'a EntityDef,
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
    /// Field applied to a bare value: the field of the previous clause (so `id:1 2 3` is an id list).
    last_field: String,
    /// Groups and negations open around the current token (see [`MAX_DEPTH`]).
    depth: usize,
}

/// Deepest nesting of groups and negations accepted: each level is a recursive call, so a query
/// of 100,000 `(` overflowed the stack and took the process down.
pub const MAX_DEPTH: usize = 64;

/// Parses a Lucene `query` for entity `def`.
pub fn parse(def: &EntityDef, query: &str) -> Result<Expr, ApiError> {
    if query.trim().is_empty() {
        return Err(ApiError::bad_query("Missing or empty 'query' parameter"));
    }
    let toks = tokenize(query)?;
    let mut p = Parser {
        def,
        toks,
        pos: 0,
        end: query.chars().count(),
        last_field: default_field(def).to_string(),
        depth: 0,
    };
    let e = p.or_expr()?;
    if let Some((at, t)) = p.toks.get(p.pos) {
        return Err(err(*at, format!("unexpected {}", describe(t))));
    }
    Ok(e)
}

/// Field searched by a bare term at the start of a query.
fn default_field(def: &EntityDef) -> &'static str {
    if def.field("name").is_some() {
        "name"
    } else {
        "title"
    }
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::LParen => "'('".into(),
        Tok::RParen => "')'".into(),
        Tok::And => "AND".into(),
        Tok::Or => "OR".into(),
        Tok::Not => "NOT".into(),
        Tok::Plus => "'+'".into(),
        Tok::Field(f) => format!("field '{f}:'"),
        Tok::Word(w) => format!("'{w}'"),
        Tok::Phrase(p) => format!("\"{p}\""),
        Tok::Range { .. } => "range".into(),
    }
}

/// Builds a conjunction, flattening nested ones so the index planner sees every top-level bound.
pub fn and(items: Vec<Expr>) -> Expr {
    let mut flat = Vec::with_capacity(items.len());
    for e in items {
        match e {
            Expr::And(xs) => flat.extend(xs),
            e => flat.push(e),
        }
    }
    if flat.len() == 1 {
        flat.pop().unwrap_or(Expr::All)
    } else {
        Expr::And(flat)
    }
}

fn or(mut items: Vec<Expr>) -> Expr {
    if items.len() == 1 {
        items.pop().unwrap_or(Expr::All)
    } else {
        Expr::Or(items)
    }
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }

    fn at(&self) -> usize {
        self.toks.get(self.pos).map(|(p, _)| *p).unwrap_or(self.end)
    }

    fn or_expr(&mut self) -> Result<Expr, ApiError> {
        let mut items = vec![self.and_expr()?];
        loop {
            match self.peek() {
                Some(Tok::Or) => {
                    self.pos += 1;
                    items.push(self.and_expr()?);
                }
                None | Some(Tok::RParen) => break,
                // Implicit operator between adjacent clauses: OR, Lucene's default.
                Some(_) => items.push(self.and_expr()?),
            }
        }
        Ok(or(items))
    }

    fn and_expr(&mut self) -> Result<Expr, ApiError> {
        let mut items = vec![self.unary()?];
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            items.push(self.unary()?);
        }
        Ok(and(items))
    }

    /// Runs `f` one nesting level deeper, refusing past [`MAX_DEPTH`].
    fn nested<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        if self.depth >= MAX_DEPTH {
            return Err(err(
                self.at(),
                format!("groups and negations nest deeper than {MAX_DEPTH} levels"),
            ));
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }

    fn unary(&mut self) -> Result<Expr, ApiError> {
        self.nested(Self::unary_inner)
    }

    fn unary_inner(&mut self) -> Result<Expr, ApiError> {
        match self.peek() {
            Some(Tok::Not) => {
                self.pos += 1;
                Ok(Expr::Not(Box::new(self.unary()?)))
            }
            Some(Tok::Plus) => {
                self.pos += 1;
                self.unary()
            }
            _ => self.primary(),
        }
    }

    fn primary(&mut self) -> Result<Expr, ApiError> {
        let at = self.at();
        let Some((_, tok)) = self.toks.get(self.pos).cloned() else {
            return Err(err(at, "unexpected end of query (a clause is missing)"));
        };
        self.pos += 1;
        match tok {
            Tok::LParen => {
                let e = self.nested(Self::or_expr)?;
                self.expect_rparen(at)?;
                Ok(e)
            }
            Tok::Field(f) => {
                if f.is_empty() {
                    return Err(err(at, "empty field name"));
                }
                self.last_field = f.clone();
                let vat = self.at();
                match self.toks.get(self.pos).cloned() {
                    Some((_, Tok::LParen)) => {
                        // field:(a OR b): values inside the group default to this field.
                        self.pos += 1;
                        let e = self.nested(Self::or_expr)?;
                        self.expect_rparen(vat)?;
                        Ok(e)
                    }
                    Some((_, v @ (Tok::Word(_) | Tok::Phrase(_) | Tok::Range { .. }))) => {
                        self.pos += 1;
                        clause(self.def, &f, v, vat)
                    }
                    Some((_, t)) => Err(err(
                        vat,
                        format!("expected a value after '{f}:', got {}", describe(&t)),
                    )),
                    None => Err(err(vat, format!("expected a value after '{f}:'"))),
                }
            }
            v @ (Tok::Word(_) | Tok::Phrase(_) | Tok::Range { .. }) => {
                let f = self.last_field.clone();
                clause(self.def, &f, v, at)
            }
            t => Err(err(at, format!("unexpected {}", describe(&t)))),
        }
    }

    fn expect_rparen(&mut self, open: usize) -> Result<(), ApiError> {
        if self.peek() == Some(&Tok::RParen) {
            self.pos += 1;
            Ok(())
        } else {
            Err(err(open, "unbalanced parenthesis: '(' is never closed"))
        }
    }
}

fn clause(def: &EntityDef, field: &str, value: Tok, at: usize) -> Result<Expr, ApiError> {
    let path = Path::resolve(def, field)?;
    match value {
        Tok::Word(w) if w == "*" => Ok(Expr::IsNull(path, false)),
        Tok::Word(w) => term(path, &w, false, at),
        Tok::Phrase(p) => term(path, &p, true, at),
        Tok::Range {
            lo,
            hi,
            lo_incl,
            hi_incl,
        } => {
            let mut parts = Vec::new();
            if lo != "*" {
                let op = if lo_incl { CmpOp::Ge } else { CmpOp::Gt };
                parts.push(Expr::Cmp(path.clone(), op, literal(&path, field, &lo, at)?));
            }
            if hi != "*" {
                let op = if hi_incl { CmpOp::Le } else { CmpOp::Lt };
                parts.push(Expr::Cmp(path.clone(), op, literal(&path, field, &hi, at)?));
            }
            if parts.is_empty() {
                return Ok(Expr::IsNull(path, false));
            }
            Ok(and(parts))
        }
        t => Err(err(at, format!("expected a value, got {}", describe(&t)))),
    }
}

fn term(path: Path, text: &str, phrase: bool, at: usize) -> Result<Expr, ApiError> {
    if path.leaf == FieldType::Str {
        let lower = text.to_lowercase();
        let m = if phrase {
            TextMatch::Phrase(lower.split_whitespace().collect::<Vec<_>>().join(" "))
        } else if lower.contains('*') || lower.contains('?') {
            TextMatch::Wildcard(lower)
        } else {
            TextMatch::Term(lower)
        };
        return Ok(Expr::Text(path, m));
    }
    let field = path.segs.join(".");
    let lit = literal(&path, &field, text.trim(), at)?;
    Ok(Expr::Cmp(path, CmpOp::Eq, lit))
}

fn literal(path: &Path, field: &str, text: &str, at: usize) -> Result<Lit, ApiError> {
    let bad = |what: &str| {
        err(
            at,
            format!("'{text}' is not a valid {what} for field '{field}'"),
        )
    };
    match path.leaf {
        FieldType::Str => Ok(Lit::Str(text.to_string())),
        FieldType::Bool => match text.to_ascii_lowercase().as_str() {
            "1" | "true" => Ok(Lit::Bool(true)),
            "0" | "false" => Ok(Lit::Bool(false)),
            _ => Err(bad("boolean (0, 1, true, false)")),
        },
        FieldType::Date => parse_date(text)
            .map(|ms| Lit::Num(ms as f64))
            .ok_or_else(|| bad("date (epoch milliseconds or yyyyMMddHHmmss)")),
        FieldType::Int | FieldType::Number | FieldType::ToOne(_) | FieldType::ToMany(_) => text
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .map(Lit::Num)
            .ok_or_else(|| bad("number")),
        FieldType::Address => Err(bad("value (address is a composite)")),
    }
}

/// Parses a Lucene date: `yyyyMMddHHmmss` (14 digits, UTC), `yyyyMMdd` (8 digits) or epoch milliseconds.
pub fn parse_date(text: &str) -> Option<i64> {
    let digits = text.bytes().all(|b| b.is_ascii_digit());
    if digits && (text.len() == 14 || text.len() == 8) {
        let n = |a: usize, b: usize| text[a..b].parse::<i64>().ok();
        let (y, mo, d) = (n(0, 4)?, n(4, 6)?, n(6, 8)?);
        let (h, mi, s) = if text.len() == 14 {
            (n(8, 10)?, n(10, 12)?, n(12, 14)?)
        } else {
            (0, 0, 0)
        };
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 59 {
            return None;
        }
        return Some(((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60_000 + s * 1000);
    }
    text.parse::<i64>().ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::store::entity_def;

    fn cand() -> &'static EntityDef {
        entity_def("Candidate").expect("Candidate schema")
    }

    #[test]
    fn valid_queries_parse() {
        let ok = [
            "isDeleted:0 AND dateLastModified:[20221215121030 TO *]",
            "isDeleted:false AND dateLastModified:[1700000000000 TO *]",
            "id:1 2 3",
            "id:[10 TO 20]",
            "id:{10 TO 20]",
            "firstName:\"Mary Ann\"",
            "lastName:Smi* OR lastName:J?nes",
            "NOT isDeleted:1",
            "-isDeleted:true AND (status:Active OR status:\"New Lead\")",
            "status:(Active OR Placed) && !isDeleted:1",
            "address.city:Boston",
            "owner.id:3",
            "email:*",
            "salary:[* TO 0]",
            "+firstName:john",
            "john",
        ];
        for q in ok {
            assert!(
                parse(cand(), q).is_ok(),
                "{q} should parse: {:?}",
                parse(cand(), q)
            );
        }
    }

    #[test]
    fn malformed_queries_are_400_with_a_message() {
        let bad = [
            ("", "empty"),
            ("(isDeleted:0", "never closed"),
            ("isDeleted:0)", "unexpected ')'"),
            ("firstName:\"open", "unterminated"),
            ("id:[1 2]", "[a TO b]"),
            ("id:[1 TO 2", "unterminated range"),
            ("isDeleted:maybe", "boolean"),
            ("dateLastModified:[yesterday TO *]", "date"),
            ("noSuchField:1", "Invalid field"),
            ("isDeleted:", "expected a value"),
            ("AND isDeleted:0", "unexpected AND"),
            ("isDeleted:0 AND", "unexpected end"),
            ("address:Boston", "composite"),
            (":x", "without a field"),
        ];
        for (q, needle) in bad {
            let e = parse(cand(), q).expect_err(q);
            assert_eq!(e.status.as_u16(), 400, "{q}");
            assert!(e.message.contains(needle), "{q}: {}", e.message);
        }
    }

    #[test]
    fn incremental_query_yields_index_bounds() {
        let e = parse(
            cand(),
            "isDeleted:0 AND dateLastModified:[20240101000000 TO *]",
        )
        .expect("parse");
        let (lo, hi) = e.modified_bounds();
        assert_eq!(lo, std::ops::Bound::Included(1_704_067_200_000));
        assert_eq!(hi, std::ops::Bound::Unbounded);
    }

    #[test]
    fn dates_parse_in_both_formats() {
        assert_eq!(parse_date("20240101000000"), Some(1_704_067_200_000));
        assert_eq!(parse_date("20240101"), Some(1_704_067_200_000));
        assert_eq!(parse_date("1704067200000"), Some(1_704_067_200_000));
        assert_eq!(parse_date("20241301000000"), None);
    }
}
