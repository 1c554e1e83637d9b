//! Email addresses: normalized (cleaned like any text, then lower-cased) and checked for syntax.
//!
//! [`Email::parse`] is the only way to make an [`Email`], so code holding one knows it is valid
//! ("parse at the edge"). The check is deliberately a syntax check, not RFC 5322: one `@`, a
//! non-empty local part, a domain with a dot between non-empty labels, no whitespace. It catches what
//! CRM data entry actually gets wrong (a missing `@`, a name typed into the field, a comma for a dot)
//! without refusing unusual but deliverable addresses.

use std::fmt;

/// A syntactically valid, lower-cased email address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Email(String);

/// Why a text is not an email address; the message goes into the reject's reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("email is empty")]
    Empty,
    #[error("email `{0}` must contain exactly one `@`")]
    At(String),
    #[error("email `{0}` has an empty local part")]
    EmptyLocal(String),
    #[error("email `{0}` needs a domain with a dot between non-empty labels")]
    Domain(String),
    #[error("email `{0}` contains whitespace")]
    Whitespace(String),
    #[error("email `{0}` is longer than 254 characters")]
    TooLong(String),
}

/// Longest address SMTP can carry (RFC 5321 path limit minus the angle brackets).
const MAX_LEN: usize = 254;

/// The normalized spelling of an email field: cleaned ([`super::text::clean_text`]) and lower-cased;
/// `None` when nothing is left. Does not check syntax.
pub fn normalize_email(raw: &str) -> Option<String> {
    let t = super::text::clean_text(raw);
    if t.is_empty() {
        return None;
    }
    Some(if t.is_ascii() {
        t.to_ascii_lowercase()
    } else {
        t.to_lowercase()
    })
}

impl Email {
    /// Normalizes `raw` like [`normalize_email`] and checks its syntax.
    pub fn parse(raw: &str) -> Result<Email, EmailError> {
        let s = normalize_email(raw).ok_or(EmailError::Empty)?;
        if s.chars().any(char::is_whitespace) {
            return Err(EmailError::Whitespace(s));
        }
        if s.len() > MAX_LEN {
            return Err(EmailError::TooLong(s));
        }
        let mut parts = s.split('@');
        let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(EmailError::At(s));
        };
        if local.is_empty() {
            return Err(EmailError::EmptyLocal(s));
        }
        if !domain.contains('.') || domain.split('.').any(str::is_empty) {
            return Err(EmailError::Domain(s));
        }
        Ok(Email(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl AsRef<str> for Email {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let cases: &[(&str, &str, Result<&str, &str>)] = &[
            ("valid", "ada@example.com", Ok("ada@example.com")),
            (
                "upper-case",
                "Ada.Lovelace@Example.COM",
                Ok("ada.lovelace@example.com"),
            ),
            (
                "padded upper-case",
                "  ADA@EXAMPLE.COM  ",
                Ok("ada@example.com"),
            ),
            (
                "plus and subdomain",
                "a+tag@mail.example.co.uk",
                Ok("a+tag@mail.example.co.uk"),
            ),
            (
                "zero-width removed",
                "ada@exa\u{200B}mple.com",
                Ok("ada@example.com"),
            ),
            (
                "unicode lower-cased",
                "JOSÉ@Example.com",
                Ok("josé@example.com"),
            ),
            ("missing @", "ada.example.com", Err("exactly one `@`")),
            ("two @", "ada@lovelace@example.com", Err("exactly one `@`")),
            ("empty local", "@example.com", Err("empty local part")),
            ("no dot", "ada@localhost", Err("domain with a dot")),
            ("comma for dot", "ada@example,com", Err("domain with a dot")),
            ("trailing dot", "ada@example.", Err("domain with a dot")),
            ("double dot", "ada@example..com", Err("domain with a dot")),
            (
                "space inside",
                "ada lovelace@example.com",
                Err("whitespace"),
            ),
            ("empty", "   ", Err("empty")),
        ];
        for (name, input, want) in cases {
            match (Email::parse(input), want) {
                (Ok(e), Ok(w)) => assert_eq!(e.as_str(), *w, "case {name}"),
                (Err(e), Err(w)) => assert!(e.to_string().contains(w), "case {name}: {e}"),
                (got, _) => panic!("case {name}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn too_long_is_rejected() {
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(matches!(Email::parse(&long), Err(EmailError::TooLong(_))));
    }

    #[test]
    fn normalize_does_not_check() {
        assert_eq!(
            normalize_email(" Not An Email "),
            Some("not an email".into())
        );
        assert_eq!(normalize_email("\u{FEFF}"), None);
    }
}
