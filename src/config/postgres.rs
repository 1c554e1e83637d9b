//! `[postgres]`: connection settings, libpq's `sslmode` and its TLS files, and the
//! `postgres.url` (`DATABASE_URL`) layer.

use std::path::PathBuf;

use figment::providers::Serialized;
use figment::Figment;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::{conninfo, redact, redact_opt};

/// PostgreSQL connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// Env: `DB_HOST`.
    pub host: String,
    /// Env: `DB_PORT`.
    pub port: u16,
    /// Env: `DB_NAME`.
    pub dbname: String,
    /// Env: `DB_USER`.
    pub user: String,
    /// Env: `DB_PASSWORD`.
    #[serde(serialize_with = "redact")]
    pub password: SecretString,
    /// Schema that holds crmflow's tables (tests use one schema each).
    pub schema: String,
    /// Connections in the pool.
    pub pool_size: usize,
    /// Connect timeout, seconds.
    pub connect_timeout_secs: u64,
    /// libpq connection string, URL (`postgres://user:pw@host:port/db?sslmode=verify-full`) or
    /// keyword/value (`host=db sslmode=require`); the other `postgres.*` keys override its parts.
    /// Env: `DATABASE_URL`.
    #[serde(serialize_with = "redact_opt")]
    pub url: Option<SecretString>,
    /// File holding `url` (it usually holds the password). Env: `DATABASE_URL_FILE`.
    pub url_file: Option<PathBuf>,
    /// File holding `password`. Env: `DB_PASSWORD_FILE`.
    pub password_file: Option<PathBuf>,
    /// `disable`, `prefer` (default), `require`, `verify-ca` or `verify-full`, as in libpq.
    /// Env: `DB_SSLMODE` or `PGSSLMODE`.
    pub sslmode: SslMode,
    /// PEM file of the CA(s) to trust, or `system` for the bundled Mozilla roots. Env:
    /// `DB_SSLROOTCERT` or `PGSSLROOTCERT`.
    pub sslrootcert: Option<PathBuf>,
    /// PEM client certificate (mTLS). Env: `DB_SSLCERT` or `PGSSLCERT`.
    pub sslcert: Option<PathBuf>,
    /// PEM client key (mTLS). Env: `DB_SSLKEY` or `PGSSLKEY`.
    pub sslkey: Option<PathBuf>,
}

/// libpq's `sslmode` (the table is in `store::tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it, unverified; plain otherwise (libpq's default).
    #[default]
    Prefer,
    /// TLS, unverified unless `sslrootcert` is given (then as `verify-ca`).
    Require,
    /// TLS, the chain must lead to `sslrootcert`.
    VerifyCa,
    /// TLS, chain and host name checked.
    VerifyFull,
}

impl SslMode {
    /// libpq's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

impl std::str::FromStr for SslMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            // allow / other values: named with the accepted ones.
            other => {
                return Err(format!(
                "sslmode {other:?} is not one of disable, prefer, require, verify-ca, verify-full"
            ))
            }
        })
    }
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 5432,
            dbname: "crmflow".into(),
            user: "crmflow".into(),
            password: SecretString::from("crmflow"),
            schema: "public".into(),
            pool_size: 8,
            connect_timeout_secs: 5,
            url: None,
            url_file: None,
            password_file: None,
            sslmode: SslMode::Prefer,
            sslrootcert: None,
            sslcert: None,
            sslkey: None,
        }
    }
}

/// The parts of `postgres.url` as a figment layer (only the parts it has).
pub(super) fn url_layer(info: conninfo::ConnInfo) -> Figment {
    let mut f = Figment::new();
    let strings = [
        ("postgres.host", info.host),
        ("postgres.dbname", info.dbname),
        ("postgres.user", info.user),
        ("postgres.password", info.password),
        (
            "postgres.sslmode",
            info.sslmode.map(|m| m.as_str().to_owned()),
        ),
        ("postgres.sslrootcert", info.sslrootcert),
        ("postgres.sslcert", info.sslcert),
        ("postgres.sslkey", info.sslkey),
    ];
    for (key, v) in strings {
        if let Some(v) = v {
            f = f.merge(Serialized::default(key, v));
        }
    }
    if let Some(p) = info.port {
        f = f.merge(Serialized::default("postgres.port", p));
    }
    if let Some(t) = info.connect_timeout_secs {
        f = f.merge(Serialized::default("postgres.connect_timeout_secs", t));
    }
    f
}

#[cfg(test)]
#[allow(clippy::result_large_err)]
mod tests {
    use crate::config::Config;
    use figment::Jail;
    use secrecy::ExposeSecret;
    use std::path::Path;

    use super::super::SslMode;

    #[test]
    fn database_url_is_the_base_and_postgres_keys_override_it() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env(
                "DATABASE_URL",
                "postgres://app:url-pw@db.example.com:6000/crm?sslmode=verify-full&sslrootcert=/ca.pem",
            );
            jail.set_env("DB_PORT", "7000");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            let p = &c.postgres;
            assert_eq!((p.host.as_str(), p.port), ("db.example.com", 7000));
            assert_eq!((p.dbname.as_str(), p.user.as_str()), ("crm", "app"));
            assert_eq!(p.password.expose_secret(), "url-pw");
            assert_eq!(p.sslmode, SslMode::VerifyFull);
            assert_eq!(p.sslrootcert.as_deref(), Some(Path::new("/ca.pem")));
            assert!(!c.redacted_toml().contains("url-pw"));
            let pg = c.pg_config();
            assert_eq!(pg.get_ssl_mode(), tokio_postgres::config::SslMode::Require);

            jail.set_env("DATABASE_URL", "host=a,b sslmode=disable user=kv");
            jail.set_env("PGSSLMODE", "require");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(
                c.postgres.sslmode,
                SslMode::Require,
                "PGSSLMODE wins over the URL"
            );
            assert_eq!(c.postgres.user, "kv");
            assert_eq!(c.pg_config().get_hosts().len(), 2);

            jail.set_env("DATABASE_URL", "postgres://u:hunter2@h/d?sslmode=maybe");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(
                err.contains("sslmode") && err.contains("DATABASE_URL"),
                "{err}"
            );
            assert!(!err.contains("hunter2"), "{err}");
            Ok(())
        });
    }
}
