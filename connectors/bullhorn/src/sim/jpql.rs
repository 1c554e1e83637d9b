//! Parser for the JPQL `where` subset that `query/{Type}?where=` accepts, compiled to a [`filter::Expr`].
//!
//! Grammar: `expr := and (OR and)*`, `and := not (AND not)*`, `not := NOT not | '(' expr ')' | predicate`,
//! `predicate := path (= | <> | != | < | <= | > | >=) literal | path [NOT] IN (literal, ...) |
//! path IS [NOT] NULL | path [NOT] LIKE 'pattern'`. Literals are numbers (dates are raw epoch ms, as Bullhorn
//! expects), single-quoted strings with `''` as the escaped quote, and `true`/`false`. Keywords are
//! case-insensitive. Unknown fields and syntax errors are 400s with a message.
//!
//! [`filter::Expr`]: super::filter::Expr

use super::error::ApiError;
use super::filter::{CmpOp, Expr, Lit, Path};
use super::lucene::and;
use super::schema::EntityDef;
use super::store::FieldType;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Num(f64),
    Str(String),
    Op(CmpOp),
    LParen,
    RParen,
    Comma,
}

fn err(pos: usize, what: impl std::fmt::Display) -> ApiError {
    ApiError::bad_query(format!("Malformed where clause at position {pos}: {what}"))
}

fn tokenize(w: &str) -> Result<Vec<(usize, Tok)>, ApiError> {
    let chars: Vec<char> = w.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let tok = match (c, two.as_str()) {
            (_, "<=") => {
                i += 2;
                Tok::Op(CmpOp::Le)
            }
            (_, ">=") => {
                i += 2;
                Tok::Op(CmpOp::Ge)
            }
            (_, "<>") | (_, "!=") => {
                i += 2;
                Tok::Op(CmpOp::Ne)
            }
            ('=', _) => {
                i += 1;
                Tok::Op(CmpOp::Eq)
            }
            ('<', _) => {
                i += 1;
                Tok::Op(CmpOp::Lt)
            }
            ('>', _) => {
                i += 1;
                Tok::Op(CmpOp::Gt)
            }
            ('(', _) => {
                i += 1;
                Tok::LParen
            }
            (')', _) => {
                i += 1;
                Tok::RParen
            }
            (',', _) => {
                i += 1;
                Tok::Comma
            }
            ('\'', _) => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(err(start, "unterminated string literal")),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            s.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            s.push(*ch);
                            i += 1;
                        }
                    }
                }
                Tok::Str(s)
            }
            _ if c.is_ascii_digit()
                || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                let mut s = String::from(c);
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                    s.push(chars[i]);
                    i += 1;
                }
                Tok::Num(
                    s.parse()
                        .map_err(|_| err(start, format!("bad number '{s}'")))?,
                )
            }
            _ if c.is_alphabetic() || c == '_' => {
                let mut s = String::new();
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.')
                {
                    s.push(chars[i]);
                    i += 1;
                }
                Tok::Ident(s)
            }
            _ => return Err(err(start, format!("unexpected character '{c}'"))),
        };
        out.push((start, tok));
    }
    Ok(out)
}

struct Parser<'a> {
    def: &'a EntityDef,
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
    /// Groups and negations open around the current token (see [`MAX_DEPTH`]).
    depth: usize,
}

/// Deepest nesting of groups and negations accepted: each level is a recursive call, so a clause
/// of 100,000 `(` overflowed the stack and took the process down.
pub const MAX_DEPTH: usize = 64;

/// Parses a `where` clause for entity `def`.
pub fn parse(def: &EntityDef, where_: &str) -> Result<Expr, ApiError> {
    if where_.trim().is_empty() {
        return Err(ApiError::bad_query("Missing or empty 'where' parameter"));
    }
    let mut p = Parser {
        def,
        toks: tokenize(where_)?,
        pos: 0,
        end: where_.chars().count(),
        depth: 0,
    };
    let e = p.or_expr()?;
    if p.pos < p.toks.len() {
        return Err(err(p.at(), format!("unexpected {}", p.describe())));
    }
    Ok(e)
}

impl Parser<'_> {
    fn at(&self) -> usize {
        self.toks.get(self.pos).map(|(p, _)| *p).unwrap_or(self.end)
    }

    fn describe(&self) -> String {
        match self.toks.get(self.pos).map(|(_, t)| t) {
            None => "end of clause".into(),
            Some(Tok::Ident(s)) => format!("'{s}'"),
            Some(Tok::Num(n)) => format!("'{n}'"),
            Some(Tok::Str(s)) => format!("'{s}'"),
            Some(Tok::Op(o)) => format!("operator {o:?}"),
            Some(Tok::LParen) => "'('".into(),
            Some(Tok::RParen) => "')'".into(),
            Some(Tok::Comma) => "','".into(),
        }
    }

    fn keyword(&self, kw: &str) -> bool {
        matches!(self.toks.get(self.pos), Some((_, Tok::Ident(s))) if s.eq_ignore_ascii_case(kw))
    }

    fn eat_keyword(&mut self, kw: &str) -> bool {
        if self.keyword(kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn or_expr(&mut self) -> Result<Expr, ApiError> {
        let mut items = vec![self.and_expr()?];
        while self.eat_keyword("OR") {
            items.push(self.and_expr()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Or(items)
        })
    }

    fn and_expr(&mut self) -> Result<Expr, ApiError> {
        let mut items = vec![self.not_expr()?];
        while self.eat_keyword("AND") {
            items.push(self.not_expr()?);
        }
        Ok(and(items))
    }

    fn not_expr(&mut self) -> Result<Expr, ApiError> {
        if self.depth >= MAX_DEPTH {
            return Err(err(
                self.at(),
                format!("groups and negations nest deeper than {MAX_DEPTH} levels"),
            ));
        }
        self.depth += 1;
        let r = self.not_expr_inner();
        self.depth -= 1;
        r
    }

    fn not_expr_inner(&mut self) -> Result<Expr, ApiError> {
        if self.eat_keyword("NOT") {
            return Ok(Expr::Not(Box::new(self.not_expr()?)));
        }
        if matches!(self.toks.get(self.pos), Some((_, Tok::LParen))) {
            let open = self.at();
            self.pos += 1;
            let e = self.or_expr()?;
            if !matches!(self.toks.get(self.pos), Some((_, Tok::RParen))) {
                return Err(err(open, "unbalanced parenthesis: '(' is never closed"));
            }
            self.pos += 1;
            return Ok(e);
        }
        self.predicate()
    }

    fn predicate(&mut self) -> Result<Expr, ApiError> {
        let at = self.at();
        let name = match self.toks.get(self.pos) {
            Some((_, Tok::Ident(s))) => s.clone(),
            _ => {
                return Err(err(
                    at,
                    format!("expected a field name, got {}", self.describe()),
                ))
            }
        };
        self.pos += 1;
        let path = Path::resolve(self.def, &name)?;
        if self.eat_keyword("IS") {
            let negated = self.eat_keyword("NOT");
            if !self.eat_keyword("NULL") {
                return Err(err(self.at(), "expected NULL after IS [NOT]"));
            }
            return Ok(Expr::IsNull(path, !negated));
        }
        let negated = self.eat_keyword("NOT");
        if self.eat_keyword("IN") {
            if !matches!(self.toks.get(self.pos), Some((_, Tok::LParen))) {
                return Err(err(self.at(), "expected '(' after IN"));
            }
            self.pos += 1;
            let mut lits = Vec::new();
            loop {
                lits.push(self.literal(&path, &name)?);
                match self.toks.get(self.pos) {
                    Some((_, Tok::Comma)) => self.pos += 1,
                    Some((_, Tok::RParen)) => {
                        self.pos += 1;
                        break;
                    }
                    _ => {
                        return Err(err(
                            self.at(),
                            format!("expected ',' or ')' in IN list, got {}", self.describe()),
                        ))
                    }
                }
            }
            let e = Expr::In(path, lits);
            return Ok(if negated { Expr::Not(Box::new(e)) } else { e });
        }
        if self.eat_keyword("LIKE") {
            let pat = match self.toks.get(self.pos) {
                Some((_, Tok::Str(s))) => s.to_lowercase(),
                _ => return Err(err(self.at(), "expected a quoted pattern after LIKE")),
            };
            self.pos += 1;
            let e = Expr::Like(path, pat);
            return Ok(if negated { Expr::Not(Box::new(e)) } else { e });
        }
        if negated {
            return Err(err(self.at(), "expected IN or LIKE after NOT"));
        }
        let op = match self.toks.get(self.pos) {
            Some((_, Tok::Op(op))) => *op,
            _ => {
                return Err(err(
                    self.at(),
                    format!(
                        "expected an operator after '{name}', got {}",
                        self.describe()
                    ),
                ))
            }
        };
        self.pos += 1;
        let lit = self.literal(&path, &name)?;
        Ok(Expr::Cmp(path, op, lit))
    }

    fn literal(&mut self, path: &Path, name: &str) -> Result<Lit, ApiError> {
        let at = self.at();
        let tok = self.toks.get(self.pos).map(|(_, t)| t.clone());
        let lit = match tok {
            Some(Tok::Num(n)) => Lit::Num(n),
            Some(Tok::Str(s)) => Lit::Str(s),
            Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("true") => Lit::Bool(true),
            Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("false") => Lit::Bool(false),
            _ => {
                return Err(err(
                    at,
                    format!("expected a literal, got {}", self.describe()),
                ))
            }
        };
        self.pos += 1;
        // Type check against the field so that `id = 'abc'` fails loudly instead of matching nothing.
        let ok = match (path.leaf, &lit) {
            (FieldType::Str, Lit::Str(_) | Lit::Num(_)) => true,
            (FieldType::Bool, Lit::Bool(_)) => true,
            (FieldType::Bool, Lit::Num(n)) => *n == 0.0 || *n == 1.0,
            (FieldType::Int | FieldType::Number | FieldType::Date, Lit::Num(_)) => true,
            _ => false,
        };
        if !ok {
            return Err(err(
                at,
                format!(
                    "literal {lit:?} does not fit field '{name}' ({:?})",
                    path.leaf
                ),
            ));
        }
        Ok(match (path.leaf, lit) {
            (FieldType::Bool, Lit::Num(n)) => Lit::Bool(n == 1.0),
            (FieldType::Str, Lit::Num(n)) => Lit::Str(n.to_string()),
            (_, l) => l,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::store::entity_def;

    fn job() -> &'static EntityDef {
        entity_def("JobOrder").expect("JobOrder schema")
    }

    #[test]
    fn valid_clauses_parse() {
        let ok = [
            "id > 0",
            "dateLastModified >= 1324579022000 AND isDeleted = false",
            "isDeleted = 0",
            "status <> 'Closed'",
            "status != 'Closed' OR (isOpen = true AND numOpenings >= 2)",
            "id IN (1, 2, 3)",
            "id NOT IN (4)",
            "dateClosed IS NULL",
            "dateClosed IS NOT NULL",
            "title LIKE '%engineer%'",
            "clientCorporation.id = 5",
            "address.city = 'O''Brien Town'",
            "NOT isOpen = true",
            "salary < -1.5",
        ];
        for w in ok {
            assert!(parse(job(), w).is_ok(), "{w}: {:?}", parse(job(), w));
        }
    }

    #[test]
    fn malformed_clauses_are_400_with_a_message() {
        let bad = [
            ("", "empty"),
            ("id >", "expected a literal"),
            ("id 5", "expected an operator"),
            ("(id = 1", "never closed"),
            ("id = 1)", "unexpected ')'"),
            ("title = 'open", "unterminated"),
            ("nope = 1", "Invalid field"),
            ("id IN 1,2", "expected '('"),
            ("id IN (1 2)", "expected ',' or ')'"),
            ("dateClosed IS 5", "expected NULL"),
            ("id = 'abc'", "does not fit"),
            ("isOpen = 2", "does not fit"),
            ("id = 1 AND", "expected a field name"),
            ("id # 1", "unexpected character"),
        ];
        for (w, needle) in bad {
            let e = parse(job(), w).expect_err(w);
            assert_eq!(e.status.as_u16(), 400, "{w}");
            assert!(e.message.contains(needle), "{w}: {}", e.message);
        }
    }
}
