//! The SOQL subset a sync needs, parsed by hand: `SELECT f1, f2 | COUNT() FROM obj [WHERE cond] [ORDER BY f
//! [ASC|DESC] [NULLS FIRST|LAST], ...] [LIMIT n]`, where `cond` combines `field op literal`, `field [NOT] IN
//! (...)`, `AND`, `OR`, `NOT` and parentheses. Literals: `'strings'` (with `\'` escapes), numbers, unquoted
//! datetimes (`2024-01-01T00:00:00Z`, `...000+0000`), dates, `true`, `false`, `null`.
//!
//! [`parse`] builds a [`Query`] without knowing any object; the store binds it to an object (field names are
//! case-insensitive there) and evaluates it. Anything outside the subset is `MALFORMED_QUERY`, never a panic.

use crate::wire::parse_datetime;

/// Why a query was refused: Salesforce's `errorCode` and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoqlError {
    /// `MALFORMED_QUERY`, `INVALID_FIELD` or `INVALID_TYPE`.
    pub code: &'static str,
    /// Message.
    pub message: String,
}

impl SoqlError {
    pub(crate) fn malformed(message: impl Into<String>) -> Self {
        Self {
            code: "MALFORMED_QUERY",
            message: message.into(),
        }
    }
}

/// A literal in a condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `'text'`.
    Str(String),
    /// `42`, `-1.5`.
    Num(f64),
    /// An unquoted datetime, as epoch milliseconds.
    DateTime(i64),
    /// An unquoted date `2024-01-31`.
    Date(String),
    /// `true` / `false`.
    Bool(bool),
    /// `null`.
    Null,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=` or `<>`
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

/// A condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// All of them.
    And(Vec<Expr>),
    /// Any of them.
    Or(Vec<Expr>),
    /// Negation.
    Not(Box<Expr>),
    /// `field op literal`.
    Cmp {
        /// Field as written.
        field: String,
        /// Operator.
        op: Op,
        /// Right-hand side.
        value: Literal,
    },
    /// `field [NOT] IN (literals)`.
    In {
        /// Field as written.
        field: String,
        /// The list.
        values: Vec<Literal>,
        /// `NOT IN`.
        negated: bool,
    },
}

/// What is selected.
#[derive(Debug, Clone, PartialEq)]
pub enum Select {
    /// `COUNT()`.
    Count,
    /// Field names as written.
    Fields(Vec<String>),
}

/// One `ORDER BY` key.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderKey {
    /// Field as written.
    pub field: String,
    /// `DESC`.
    pub desc: bool,
    /// `NULLS LAST` (default: nulls first ascending, last descending).
    pub nulls_last: bool,
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// Selection.
    pub select: Select,
    /// Object as written.
    pub from: String,
    /// `WHERE`.
    pub filter: Option<Expr>,
    /// `ORDER BY`.
    pub order: Vec<OrderKey>,
    /// `LIMIT`.
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Lit(Literal),
    Comma,
    LParen,
    RParen,
    Op(Op),
}

fn lex(s: &str) -> Result<Vec<Tok>, SoqlError> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            ',' => {
                out.push(Tok::Comma);
                i += 1
            }
            '(' => {
                out.push(Tok::LParen);
                i += 1
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1
            }
            '=' => {
                out.push(Tok::Op(Op::Eq));
                i += 1
            }
            '!' if chars.get(i + 1) == Some(&'=') => {
                out.push(Tok::Op(Op::Ne));
                i += 2
            }
            '<' => match chars.get(i + 1) {
                Some('=') => {
                    out.push(Tok::Op(Op::Le));
                    i += 2
                }
                Some('>') => {
                    out.push(Tok::Op(Op::Ne));
                    i += 2
                }
                _ => {
                    out.push(Tok::Op(Op::Lt));
                    i += 1
                }
            },
            '>' => {
                if chars.get(i + 1) == Some(&'=') {
                    out.push(Tok::Op(Op::Ge));
                    i += 2
                } else {
                    out.push(Tok::Op(Op::Gt));
                    i += 1
                }
            }
            '\'' => {
                let mut v = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(SoqlError::malformed("unterminated string literal")),
                        Some('\\') => {
                            let e = chars
                                .get(i + 1)
                                .ok_or_else(|| SoqlError::malformed("dangling escape"))?;
                            v.push(match e {
                                'n' => '\n',
                                't' => '\t',
                                'r' => '\r',
                                other => *other,
                            });
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            v.push(*ch);
                            i += 1
                        }
                    }
                }
                out.push(Tok::Str(v));
            }
            c if c.is_ascii_digit()
                || (c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                let start = i;
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric()
                        || matches!(chars[i], ':' | '.' | '+' | '-'))
                {
                    i += 1;
                }
                let raw: String = chars[start..i].iter().collect();
                out.push(Tok::Lit(number_or_date(&raw)?));
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '.'))
                {
                    i += 1;
                }
                out.push(Tok::Word(chars[start..i].iter().collect()));
            }
            other => {
                return Err(SoqlError::malformed(format!(
                    "unexpected character '{other}'"
                )))
            }
        }
    }
    Ok(out)
}

fn number_or_date(raw: &str) -> Result<Literal, SoqlError> {
    if raw.contains('T') {
        return parse_datetime(raw)
            .map(|t| Literal::DateTime(t.timestamp_millis()))
            .ok_or_else(|| SoqlError::malformed(format!("bad datetime literal {raw}")));
    }
    if raw.len() == 10 && raw.as_bytes().get(4) == Some(&b'-') {
        return chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d")
            .map(|_| Literal::Date(raw.to_string()))
            .map_err(|_| SoqlError::malformed(format!("bad date literal {raw}")));
    }
    raw.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .map(Literal::Num)
        .ok_or_else(|| SoqlError::malformed(format!("unexpected token {raw}")))
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    /// Groups and negations open around the current token (see [`MAX_DEPTH`]).
    depth: usize,
}

/// Deepest nesting of groups and `NOT`s accepted: each level is a recursive call, so a query of
/// 100,000 `(` overflowed the stack and took the simulator down.
pub const MAX_DEPTH: usize = 64;

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_kw(&mut self, kw: &str) -> Result<(), SoqlError> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.unexpected(&format!("expecting '{kw}'")))
        }
    }

    fn unexpected(&self, what: &str) -> SoqlError {
        match self.peek() {
            Some(t) => SoqlError::malformed(format!("unexpected token: {t:?}, {what}")),
            None => SoqlError::malformed(format!("unexpected end of query, {what}")),
        }
    }

    fn ident(&mut self) -> Result<String, SoqlError> {
        match self.next() {
            Some(Tok::Word(w)) if !is_reserved(&w) => Ok(w),
            _ => {
                self.pos = self.pos.saturating_sub(1);
                Err(self.unexpected("expecting a field or object name"))
            }
        }
    }

    fn query(&mut self) -> Result<Query, SoqlError> {
        self.expect_kw("SELECT")?;
        let select = if self.is_kw("COUNT") {
            self.pos += 1;
            if self.next() != Some(Tok::LParen) || self.next() != Some(Tok::RParen) {
                return Err(SoqlError::malformed("only COUNT() is supported"));
            }
            Select::Count
        } else {
            let mut fields = vec![self.ident()?];
            while self.peek() == Some(&Tok::Comma) {
                self.pos += 1;
                fields.push(self.ident()?);
            }
            Select::Fields(fields)
        };
        self.expect_kw("FROM")?;
        let from = self.ident()?;
        let filter = if self.eat_kw("WHERE") {
            Some(self.or_expr()?)
        } else {
            None
        };
        let mut order = Vec::new();
        if self.eat_kw("ORDER") {
            self.expect_kw("BY")?;
            loop {
                let field = self.ident()?;
                let desc = if self.eat_kw("DESC") {
                    true
                } else {
                    self.eat_kw("ASC");
                    false
                };
                let nulls_last = if self.eat_kw("NULLS") {
                    if self.eat_kw("LAST") {
                        true
                    } else {
                        self.expect_kw("FIRST")?;
                        false
                    }
                } else {
                    desc
                };
                order.push(OrderKey {
                    field,
                    desc,
                    nulls_last,
                });
                if self.peek() == Some(&Tok::Comma) {
                    self.pos += 1;
                } else {
                    break;
                }
            }
        }
        let limit = if self.eat_kw("LIMIT") {
            match self.next() {
                Some(Tok::Lit(Literal::Num(n))) if n >= 0.0 && n.fract() == 0.0 && n <= 1e9 => {
                    Some(n as usize)
                }
                _ => return Err(SoqlError::malformed("LIMIT needs a non-negative integer")),
            }
        } else {
            None
        };
        if self.peek().is_some() {
            return Err(self.unexpected("expecting end of query"));
        }
        Ok(Query {
            select,
            from,
            filter,
            order,
            limit,
        })
    }

    fn or_expr(&mut self) -> Result<Expr, SoqlError> {
        let mut parts = vec![self.and_expr()?];
        while self.eat_kw("OR") {
            parts.push(self.and_expr()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::Or(parts)
        })
    }

    fn and_expr(&mut self) -> Result<Expr, SoqlError> {
        let mut parts = vec![self.unary()?];
        while self.eat_kw("AND") {
            parts.push(self.unary()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::And(parts)
        })
    }

    fn unary(&mut self) -> Result<Expr, SoqlError> {
        if self.depth >= MAX_DEPTH {
            return Err(SoqlError::malformed(format!(
                "conditions nest deeper than {MAX_DEPTH} levels"
            )));
        }
        self.depth += 1;
        let r = self.unary_inner();
        self.depth -= 1;
        r
    }

    fn unary_inner(&mut self) -> Result<Expr, SoqlError> {
        if self.eat_kw("NOT") {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            let e = self.or_expr()?;
            if self.next() != Some(Tok::RParen) {
                self.pos = self.pos.saturating_sub(1);
                return Err(self.unexpected("expecting ')'"));
            }
            return Ok(e);
        }
        let field = self.ident()?;
        let negated = self.eat_kw("NOT");
        if self.eat_kw("IN") {
            if self.next() != Some(Tok::LParen) {
                return Err(SoqlError::malformed("IN needs a parenthesised list"));
            }
            let mut values = vec![self.literal()?];
            loop {
                match self.next() {
                    Some(Tok::Comma) => values.push(self.literal()?),
                    Some(Tok::RParen) => break,
                    _ => return Err(SoqlError::malformed("unterminated IN list")),
                }
            }
            return Ok(Expr::In {
                field,
                values,
                negated,
            });
        }
        if negated {
            return Err(self.unexpected("expecting IN after NOT"));
        }
        let op = match self.next() {
            Some(Tok::Op(op)) => op,
            _ => {
                self.pos = self.pos.saturating_sub(1);
                return Err(self.unexpected("expecting a comparison operator"));
            }
        };
        let value = self.literal()?;
        Ok(Expr::Cmp { field, op, value })
    }

    fn literal(&mut self) -> Result<Literal, SoqlError> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Literal::Str(s)),
            Some(Tok::Lit(l)) => Ok(l),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("true") => Ok(Literal::Bool(true)),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("false") => Ok(Literal::Bool(false)),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("null") => Ok(Literal::Null),
            _ => {
                self.pos = self.pos.saturating_sub(1);
                Err(self.unexpected("expecting a value"))
            }
        }
    }
}

fn is_reserved(w: &str) -> bool {
    const RESERVED: [&str; 16] = [
        "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "ORDER", "BY", "LIMIT", "ASC", "DESC",
        "NULLS", "TRUE", "FALSE", "NULL",
    ];
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(w))
}

/// Parses a query (see the module documentation).
pub fn parse(soql: &str) -> Result<Query, SoqlError> {
    let toks = lex(soql)?;
    Parser {
        toks,
        pos: 0,
        depth: 0,
    }
    .query()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(field: &str, op: Op, value: Literal) -> Expr {
        Expr::Cmp {
            field: field.into(),
            op,
            value,
        }
    }

    const T0: i64 = 1_704_067_200_000;

    #[test]
    fn accepted_queries() {
        let cases: Vec<(&str, Query)> = vec![
            (
                "SELECT Id, Name FROM Contact",
                Query {
                    select: Select::Fields(vec!["Id".into(), "Name".into()]),
                    from: "Contact".into(),
                    filter: None,
                    order: vec![],
                    limit: None,
                },
            ),
            (
                "select count() from Position__c",
                Query {
                    select: Select::Count,
                    from: "Position__c".into(),
                    filter: None,
                    order: vec![],
                    limit: None,
                },
            ),
            (
                "SELECT Id FROM Contact WHERE SystemModstamp >= 2024-01-01T00:00:00Z AND Id > '003000000000001AAA' ORDER BY SystemModstamp, Id LIMIT 500",
                Query {
                    select: Select::Fields(vec!["Id".into()]),
                    from: "Contact".into(),
                    filter: Some(Expr::And(vec![
                        cmp("SystemModstamp", Op::Ge, Literal::DateTime(T0)),
                        cmp("Id", Op::Gt, Literal::Str("003000000000001AAA".into())),
                    ])),
                    order: vec![
                        OrderKey { field: "SystemModstamp".into(), desc: false, nulls_last: false },
                        OrderKey { field: "Id".into(), desc: false, nulls_last: false },
                    ],
                    limit: Some(500),
                },
            ),
            (
                "SELECT Id FROM Contact WHERE (SystemModstamp > 2024-01-01T00:00:00.000+0000) OR (SystemModstamp = 2024-01-01T00:00:00.000+0000 AND Id > 'x')",
                Query {
                    select: Select::Fields(vec!["Id".into()]),
                    from: "Contact".into(),
                    filter: Some(Expr::Or(vec![
                        cmp("SystemModstamp", Op::Gt, Literal::DateTime(T0)),
                        Expr::And(vec![
                            cmp("SystemModstamp", Op::Eq, Literal::DateTime(T0)),
                            cmp("Id", Op::Gt, Literal::Str("x".into())),
                        ]),
                    ])),
                    order: vec![],
                    limit: None,
                },
            ),
            (
                "SELECT Id FROM Contact WHERE Id IN ('a', 'b\\'c') AND Email != null AND NOT IsDeleted = true ORDER BY Name DESC NULLS FIRST",
                Query {
                    select: Select::Fields(vec!["Id".into()]),
                    from: "Contact".into(),
                    filter: Some(Expr::And(vec![
                        Expr::In {
                            field: "Id".into(),
                            values: vec![Literal::Str("a".into()), Literal::Str("b'c".into())],
                            negated: false,
                        },
                        cmp("Email", Op::Ne, Literal::Null),
                        Expr::Not(Box::new(cmp("IsDeleted", Op::Eq, Literal::Bool(true)))),
                    ])),
                    order: vec![OrderKey { field: "Name".into(), desc: true, nulls_last: false }],
                    limit: None,
                },
            ),
            (
                "SELECT Id FROM Contact WHERE Salary__c <> -1.5 AND Open_Date__c < 2024-02-01 AND Id NOT IN ('z')",
                Query {
                    select: Select::Fields(vec!["Id".into()]),
                    from: "Contact".into(),
                    filter: Some(Expr::And(vec![
                        cmp("Salary__c", Op::Ne, Literal::Num(-1.5)),
                        cmp("Open_Date__c", Op::Lt, Literal::Date("2024-02-01".into())),
                        Expr::In { field: "Id".into(), values: vec![Literal::Str("z".into())], negated: true },
                    ])),
                    order: vec![],
                    limit: None,
                },
            ),
        ];
        for (soql, want) in cases {
            assert_eq!(
                parse(soql).unwrap_or_else(|e| panic!("{soql}: {e:?}")),
                want,
                "{soql}"
            );
        }
    }

    #[test]
    fn malformed_queries() {
        for soql in [
            "",
            "SELECT",
            "SELECT FROM Contact",
            "SELECT Id Contact",
            "SELECT Id FROM",
            "SELECT Id, FROM Contact",
            "SELECT Id FROM Contact WHERE",
            "SELECT Id FROM Contact WHERE Id",
            "SELECT Id FROM Contact WHERE Id = ",
            "SELECT Id FROM Contact WHERE Id = 'unterminated",
            "SELECT Id FROM Contact WHERE SystemModstamp > 2024-13-01T00:00:00Z",
            "SELECT Id FROM Contact WHERE (Id = 'a'",
            "SELECT Id FROM Contact WHERE Id IN 'a'",
            "SELECT Id FROM Contact WHERE Id IN ('a'",
            "SELECT Id FROM Contact LIMIT -1",
            "SELECT Id FROM Contact LIMIT ten",
            "SELECT Id FROM Contact ORDER Id",
            "SELECT Id FROM Contact GROUP BY Id",
            "SELECT COUNT(Id) FROM Contact",
            "SELECT Id FROM Contact WHERE Name LIKE 'a%'",
            "SELECT Id FROM Contact; DROP TABLE x",
            "SELECT (SELECT Id FROM Cases) FROM Contact",
        ] {
            let e = parse(soql).expect_err(soql);
            assert_eq!(e.code, "MALFORMED_QUERY", "{soql}");
        }
    }

    #[test]
    fn garbage_never_panics() {
        // A deterministic generator of token soups and byte noise.
        let pieces = [
            "SELECT",
            "FROM",
            "WHERE",
            "AND",
            "OR",
            "NOT",
            "IN",
            "(",
            ")",
            ",",
            "'",
            "\\",
            "=",
            "<",
            ">=",
            "!",
            "<>",
            "Id",
            "Contact",
            "2024-01-01T00:00:00Z",
            "-",
            "1e999",
            "ORDER",
            "BY",
            "LIMIT",
            "COUNT",
            "NULLS",
            "é",
            "\u{0}",
            "2024-",
            "T",
            ".",
            "null",
            "'a'",
            "--",
            "9",
        ];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            let mut q = String::new();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = (x % 12) as usize;
            for _ in 0..n {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                q.push_str(pieces[(x % pieces.len() as u64) as usize]);
                if x & 1 == 0 {
                    q.push(' ');
                }
            }
            let _ = parse(&q);
        }
    }
}
