//! Postgres connection strings, both forms libpq accepts: URLs
//! (`postgres://user:pw@host:port/db?sslmode=verify-full&sslrootcert=/ca.pem`) and keyword/value
//! strings (`host=db port=5432 dbname=crmflow sslmode=require`).
//!
//! The TLS keywords (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`) are taken out here, because
//! tokio-postgres knows only `disable | prefer | require`; the rest is parsed by tokio-postgres.
//! The result becomes the lowest configuration layer of `[postgres]`: keys set in the file or
//! the environment override the string's parts.

use std::str::FromStr;

use super::SslMode;

/// The parts of a connection string crmflow uses.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ConnInfo {
    /// Comma-separated when the string names several hosts (tried in order).
    pub host: Option<String>,
    pub port: Option<u16>,
    pub dbname: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub sslmode: Option<SslMode>,
    pub sslrootcert: Option<String>,
    pub sslcert: Option<String>,
    pub sslkey: Option<String>,
    pub connect_timeout_secs: Option<u64>,
}

const TLS_KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

impl ConnInfo {
    /// Parses either form. Errors never repeat the string (it may hold a password).
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let mut tls: Vec<(String, String)> = Vec::new();
        let rest = if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            match s.split_once('?') {
                None => s.to_owned(),
                Some((base, query)) => {
                    let mut kept = Vec::new();
                    for pair in query.split('&').filter(|p| !p.is_empty()) {
                        let key = pair.split('=').next().unwrap_or_default();
                        if TLS_KEYS.contains(&key) {
                            let (k, v) = url::form_urlencoded::parse(pair.as_bytes())
                                .next()
                                .unwrap_or_default();
                            tls.push((k.into_owned(), v.into_owned()));
                        } else {
                            kept.push(pair);
                        }
                    }
                    if kept.is_empty() {
                        base.to_owned()
                    } else {
                        format!("{base}?{}", kept.join("&"))
                    }
                }
            }
        } else {
            let mut kept = Vec::new();
            for (k, v) in keyword_pairs(s)? {
                if TLS_KEYS.contains(&k.as_str()) {
                    tls.push((k, v));
                } else {
                    kept.push(format!(
                        "{k}='{}'",
                        v.replace('\\', "\\\\").replace('\'', "\\'")
                    ));
                }
            }
            kept.join(" ")
        };
        let pg = tokio_postgres::Config::from_str(&rest)
            .map_err(|e| format!("invalid connection string: {e}"))?;
        let mut info = ConnInfo::default();
        let hosts: Vec<String> = pg
            .get_hosts()
            .iter()
            .filter_map(|h| match h {
                tokio_postgres::config::Host::Tcp(h) => Some(h.clone()),
                #[allow(unreachable_patterns)]
                _ => None,
            })
            .collect();
        if !hosts.is_empty() {
            info.host = Some(hosts.join(","));
        }
        info.port = pg.get_ports().first().copied();
        info.dbname = pg.get_dbname().map(str::to_owned);
        info.user = pg.get_user().map(str::to_owned);
        info.password = pg
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned());
        info.connect_timeout_secs = pg.get_connect_timeout().map(|d| d.as_secs().max(1));
        for (k, v) in tls {
            match k.as_str() {
                "sslmode" => info.sslmode = Some(v.parse()?),
                "sslrootcert" => info.sslrootcert = Some(v),
                "sslcert" => info.sslcert = Some(v),
                _ => info.sslkey = Some(v),
            }
        }
        Ok(info)
    }
}

/// libpq's keyword/value syntax: `key = value` pairs separated by whitespace; a value may be
/// single-quoted, with `\'` and `\\` escapes.
fn keyword_pairs(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(format!(
                "invalid connection string: `{key}` is not followed by `=`"
            ));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            loop {
                match chars.next() {
                    None => {
                        return Err(format!(
                            "invalid connection string: unterminated quote in `{key}`"
                        ))
                    }
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                if c == '\\' {
                    chars.next();
                    value.extend(chars.next());
                    continue;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_with_tls_parameters() {
        let i = ConnInfo::parse(
            "postgres://app:p%40ss@db.example.com:6543/crm?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(i.host.as_deref(), Some("db.example.com"));
        assert_eq!(i.port, Some(6543));
        assert_eq!(i.dbname.as_deref(), Some("crm"));
        assert_eq!(i.user.as_deref(), Some("app"));
        assert_eq!(i.password.as_deref(), Some("p@ss"));
        assert_eq!(i.sslmode, Some(SslMode::VerifyFull));
        assert_eq!(i.sslrootcert.as_deref(), Some("/etc/ca.pem"));
    }

    #[test]
    fn url_without_query_and_postgresql_scheme() {
        let i = ConnInfo::parse("postgresql://u@h/d").unwrap();
        assert_eq!(
            (i.host.as_deref(), i.port, i.dbname.as_deref(), i.password),
            (Some("h"), Some(5432), Some("d"), None)
        );
        assert_eq!(i.sslmode, None);
    }

    #[test]
    fn keyword_value_form() {
        let i = ConnInfo::parse(
            r"host=db1,db2 port=5433 dbname = crm user=app password='it\'s secret' sslmode=verify-ca sslcert=/c.pem sslkey='/k ey.pem' connect_timeout=7",
        )
        .unwrap();
        assert_eq!(i.host.as_deref(), Some("db1,db2"));
        assert_eq!(i.port, Some(5433));
        assert_eq!(i.dbname.as_deref(), Some("crm"));
        assert_eq!(i.password.as_deref(), Some("it's secret"));
        assert_eq!(i.sslmode, Some(SslMode::VerifyCa));
        assert_eq!(i.sslcert.as_deref(), Some("/c.pem"));
        assert_eq!(i.sslkey.as_deref(), Some("/k ey.pem"));
        assert_eq!(i.connect_timeout_secs, Some(7));
    }

    #[test]
    fn every_sslmode_parses_and_bad_ones_are_named() {
        for (s, m) in [
            ("disable", SslMode::Disable),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::VerifyCa),
            ("verify-full", SslMode::VerifyFull),
        ] {
            let i = ConnInfo::parse(&format!("host=h sslmode={s}")).unwrap();
            assert_eq!(i.sslmode, Some(m));
            assert_eq!(m.as_str(), s);
        }
        let e = ConnInfo::parse("postgres://u:hunter2@h/d?sslmode=verify").unwrap_err();
        assert!(e.contains("sslmode") && e.contains("verify-full"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn errors_do_not_repeat_the_password() {
        let e = ConnInfo::parse("host=h password=hunter2 bogus=1").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
        let e = ConnInfo::parse("host=h password='hunter2").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
    }
}
