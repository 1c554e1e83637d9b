//! Configuration: defaults < TOML file < environment.
//!
//! The file is `--config PATH`, else `$CRMFLOW_CONFIG`, else `crmflow.toml` when it exists.
//! Environment overrides come in two forms: the old service's names (`DB_HOST`, `DB_PORT`,
//! `DB_NAME`, `DB_USER`, `DB_PASSWORD`, `BULLHORN_*`, `ML_SERVICE_URL`) plus
//! `KAFKA_BOOTSTRAP_SERVERS` and the standard `OTEL_*` variables, and a generic
//! `CRMFLOW_<SECTION>__<KEY>` for every key (e.g. `CRMFLOW_SINK__BATCH_SIZE=2000`).
//!
//! Every struct denies unknown keys, so a typo is an error naming the key and where it came
//! from instead of a silently ignored setting. Secrets are [`SecretString`]: they are never
//! printed by `Debug`, and `crmflow config check` shows them as `[redacted]` (so are the
//! sensitive librdkafka properties in `kafka.client_properties`, see [`ClientProperties`]).
//!
//! ## Secrets from files
//!
//! Every secret also comes from a file (the Docker/Kubernetes secrets convention): the config
//! key `<key>_file` (e.g. `postgres.password_file`), or the environment name with `_FILE`
//! (`DB_PASSWORD_FILE`, `BULLHORN_CLIENT_SECRET_FILE`, `KAFKA_SASL_PASSWORD_FILE`, and
//! `CRMFLOW_<SECTION>__<KEY>_FILE` for any secret). The file is read once at start, one
//! trailing newline (`\n` or `\r\n`) trimmed; a file, when given, wins over the plain value.
//! A missing or unreadable file is a one-line error naming the key and the file, never its
//! content. To add a secret: a `SecretString` field plus a `<field>_file: Option<PathBuf>`
//! field, a row in [`SECRET_KEYS`] (which gives the `_FILE` environment name), and a line in
//! `Config::resolve_secret_files` calling [`read_secret_file`].
//!
//! ## Postgres connection strings
//!
//! `postgres.url` (`DATABASE_URL`) takes a libpq URL or keyword/value string, `sslmode` and
//! friends included ([`conninfo`]). Its parts are the lowest layer of `[postgres]`: a
//! `postgres.*` key set in the file or the environment overrides the matching part.

use std::path::{Path, PathBuf};
use std::time::Duration;

mod bullhorn;
pub mod conninfo;
mod hubspot;
mod kafka;
pub mod mapping;
mod postgres;
#[cfg(test)]
mod proptests;
mod reconcile;
mod salesforce;
mod secrets;
mod stages;
mod telemetry;

pub use bullhorn::{
    BullhornConfig, BullhornCredentials, BullhornMode, CANDIDATE_FIELDS, JOB_ORDER_FIELDS,
};
pub use hubspot::{
    HubspotConfig, HubspotMode, HubspotObject, IngressConfig, HUBSPOT_CONTACT_PROPERTIES,
    HUBSPOT_DEAL_PROPERTIES, HUBSPOT_JOB_PROPERTIES,
};
pub use kafka::{
    ClientProperties, KafkaConfig, KafkaSaslConfig, KafkaTlsConfig, SaslMechanism, SecurityProtocol,
};
use postgres::url_layer;
pub use postgres::{PostgresConfig, SslMode};
pub use reconcile::ReconcileConfig;
pub use salesforce::{
    SalesforceAuth, SalesforceConfig, SalesforceMode, SalesforceNormalizeConfig,
    SALESFORCE_CONTACT_FIELDS, SALESFORCE_POSITION_FIELDS,
};
use secrets::secret_from_file;
pub use secrets::{read_secret_file, SECRET_KEYS};
pub use stages::{
    EmbedConfig, HubspotNormalizeConfig, MlConfig, MlProtocol, NormalizeConfig, SinkConfig,
    VectorStorage,
};
pub use telemetry::{LogFormat, MetricsConfig, TelemetryConfig};

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

/// The old service's environment names and the standard ones, mapped to config keys.
pub const ENV_ALIASES: &[(&str, &str)] = &[
    ("DB_HOST", "postgres.host"),
    ("DB_PORT", "postgres.port"),
    ("DB_NAME", "postgres.dbname"),
    ("DB_USER", "postgres.user"),
    ("DB_PASSWORD", "postgres.password"),
    ("KAFKA_BOOTSTRAP_SERVERS", "kafka.bootstrap_servers"),
    ("BULLHORN_REST_URL", "bullhorn.rest_url"),
    ("BULLHORN_CLIENT_ID", "bullhorn.client_id"),
    ("BULLHORN_CLIENT_SECRET", "bullhorn.client_secret"),
    ("BULLHORN_USERNAME", "bullhorn.username"),
    ("BULLHORN_PASSWORD", "bullhorn.password"),
    ("ML_SERVICE_URL", "ml.url"),
    ("HUBSPOT_BASE_URL", "hubspot.base_url"),
    ("HUBSPOT_ACCESS_TOKEN", "hubspot.access_token"),
    ("HUBSPOT_CLIENT_ID", "hubspot.client_id"),
    ("HUBSPOT_REFRESH_TOKEN", "hubspot.refresh_token"),
    ("HUBSPOT_CLIENT_SECRET", "ingress.client_secret"),
    ("HUBSPOT_OAUTH_CLIENT_SECRET", "hubspot.client_secret"),
    ("SALESFORCE_CLIENT_SECRET", "salesforce.client_secret"),
    ("SALESFORCE_ACCESS_TOKEN", "salesforce.access_token"),
    ("CRMFLOW_INGRESS_PUBLIC_URL", "ingress.public_url"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "telemetry.otlp_endpoint"),
    ("OTEL_SERVICE_NAME", "telemetry.service_name"),
    // Connectivity (issue #12): libpq's and the Kafka clients' usual names.
    ("DATABASE_URL", "postgres.url"),
    ("DB_SSLMODE", "postgres.sslmode"),
    ("PGSSLMODE", "postgres.sslmode"),
    ("DB_SSLROOTCERT", "postgres.sslrootcert"),
    ("PGSSLROOTCERT", "postgres.sslrootcert"),
    ("DB_SSLCERT", "postgres.sslcert"),
    ("PGSSLCERT", "postgres.sslcert"),
    ("DB_SSLKEY", "postgres.sslkey"),
    ("PGSSLKEY", "postgres.sslkey"),
    ("KAFKA_SECURITY_PROTOCOL", "kafka.security_protocol"),
    ("KAFKA_SSL_CA_LOCATION", "kafka.tls.ca_file"),
    ("KAFKA_SSL_CERTIFICATE_LOCATION", "kafka.tls.cert_file"),
    ("KAFKA_SSL_KEY_LOCATION", "kafka.tls.key_file"),
    ("KAFKA_SSL_KEY_PASSWORD", "kafka.tls.key_password"),
    ("KAFKA_SSL_VERIFY_HOSTNAME", "kafka.tls.verify_hostname"),
    ("KAFKA_SASL_MECHANISM", "kafka.sasl.mechanism"),
    ("KAFKA_SASL_USERNAME", "kafka.sasl.username"),
    ("KAFKA_SASL_PASSWORD", "kafka.sasl.password"),
    (
        "KAFKA_SASL_OAUTHBEARER_METHOD",
        "kafka.sasl.oauthbearer_method",
    ),
    (
        "KAFKA_SASL_OAUTHBEARER_CLIENT_ID",
        "kafka.sasl.oauthbearer_client_id",
    ),
    (
        "KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET",
        "kafka.sasl.oauthbearer_client_secret",
    ),
    (
        "KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL",
        "kafka.sasl.oauthbearer_token_endpoint_url",
    ),
    (
        "KAFKA_SASL_OAUTHBEARER_SCOPE",
        "kafka.sasl.oauthbearer_scope",
    ),
    ("ML_API_KEY", "ml.api_key"),
];

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key has a bad value or is unknown; figment's message names the key and its source.
    #[error("configuration error: {0}")]
    Invalid(String),
    /// A key that the chosen stages need has no value.
    #[error("configuration error: missing `{key}` (set {env} or `{key}` in the config file)")]
    Missing {
        key: &'static str,
        env: &'static str,
    },
    #[error("configuration error: config file {0} does not exist")]
    NoFile(PathBuf),
    /// A secret file (`<key>_file`, `<ENV>_FILE`) cannot be read.
    #[error("configuration error: cannot read `{key}` {}: {reason}", path.display())]
    SecretFile {
        key: String,
        path: PathBuf,
        reason: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub postgres: PostgresConfig,
    pub bullhorn: BullhornConfig,
    pub salesforce: SalesforceConfig,
    /// The HubSpot source; on when the section (or a `HUBSPOT_*` variable) is present.
    pub hubspot: Option<HubspotConfig>,
    /// The webhook ingress (`crmflow run --stages ingress`).
    pub ingress: IngressConfig,
    pub sources: SourcesConfig,
    pub ml: MlConfig,
    pub normalize: NormalizeConfig,
    pub sink: SinkConfig,
    pub embed: EmbedConfig,
    pub telemetry: TelemetryConfig,
    pub metrics: MetricsConfig,
    /// Reconciliation of each CRM against Postgres (`crmflow reconcile`, scheduled inside `run`).
    pub reconcile: ReconcileConfig,
    /// Custom fields: `[mapping.<crm>.<entity>]` entries that become typed `attributes`
    /// (see [`mapping`]).
    pub mapping: mapping::MappingConfig,
}

/// What every source shares: how its active/standby lease behaves.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourcesConfig {
    /// Time to live of a source's lease, milliseconds: how long a dead or hung active reader keeps
    /// its source before a standby takes over. The holder renews, and a standby polls, every fifth
    /// of it.
    pub lease_ttl_ms: u64,
}

impl Default for SourcesConfig {
    fn default() -> Self {
        Self {
            lease_ttl_ms: 5_000,
        }
    }
}

pub(crate) fn redact<S: Serializer>(_: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("[redacted]")
}

pub(crate) fn redact_opt<S: Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_str("[redacted]"),
        None => s.serialize_none(),
    }
}

impl Config {
    /// Loads defaults < file < environment. `path` is the `--config` flag.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let file = match path {
            Some(p) => Some(p.to_path_buf()),
            None => std::env::var_os("CRMFLOW_CONFIG").map(PathBuf::from),
        };
        // Defaults come from `#[serde(default)]`, not from a serialized `Config::default()`:
        // serializing redacts secrets, which would turn the default password into "[redacted]".
        let mut fig = Figment::new();
        match file {
            Some(p) if !p.exists() => return Err(ConfigError::NoFile(p)),
            Some(p) => fig = fig.merge(Toml::file_exact(p)),
            None if Path::new("crmflow.toml").exists() => {
                fig = fig.merge(Toml::file_exact("crmflow.toml"))
            }
            None => {}
        }
        secrets::check_env_values()?;
        fig = fig.merge(Self::env_provider());
        // postgres.url (DATABASE_URL) is the base of [postgres]: its parts go below the file
        // and the environment, so explicitly set keys override them.
        let url = match fig.extract_inner::<Option<PathBuf>>("postgres.url_file") {
            Ok(Some(path)) if !path.as_os_str().is_empty() => {
                Some(read_secret_file("postgres.url", &path)?)
            }
            _ => fig
                .extract_inner::<Option<String>>("postgres.url")
                .ok()
                .flatten()
                .map(SecretString::from),
        };
        if let Some(url) = url {
            let info = conninfo::ConnInfo::parse(url.expose_secret()).map_err(|e| {
                ConfigError::Invalid(format!("{e} in `postgres.url` (DATABASE_URL)"))
            })?;
            fig = url_layer(info).merge(fig);
        }
        let mut cfg = fig
            .extract::<Config>()
            .map_err(|e| ConfigError::Invalid(one_line(&e)))?;
        cfg.resolve_secret_files()?;
        mapping::validate(&cfg.mapping).map_err(ConfigError::Invalid)?;
        cfg.add_mapped_fields();
        Ok(cfg)
    }

    /// Reads every `<secret>_file` that is set into its secret (see the module docs). An
    /// empty path (`KAFKA_SSL_CA_LOCATION=` from a compose `${VAR:-}`) counts as unset.
    pub fn resolve_secret_files(&mut self) -> Result<(), ConfigError> {
        let (p, k) = (&mut self.postgres, &mut self.kafka);
        for path in [
            &mut p.password_file,
            &mut p.url_file,
            &mut p.sslrootcert,
            &mut p.sslcert,
            &mut p.sslkey,
            &mut k.tls.ca_file,
            &mut k.tls.cert_file,
            &mut k.tls.key_file,
            &mut k.tls.key_password_file,
            &mut k.sasl.password_file,
            &mut k.sasl.oauthbearer_client_secret_file,
            &mut self.bullhorn.client_secret_file,
            &mut self.bullhorn.password_file,
            &mut self.ml.api_key_file,
            &mut self.ingress.client_secret_file,
            &mut self.salesforce.client_secret_file,
            &mut self.salesforce.access_token_file,
        ] {
            if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                *path = None;
            }
        }
        if let Some(path) = &self.postgres.password_file {
            self.postgres.password = read_secret_file("postgres.password", path)?;
        }
        secret_from_file(
            "postgres.url",
            &mut self.postgres.url,
            &self.postgres.url_file,
        )?;
        let b = &mut self.bullhorn;
        secret_from_file(
            "bullhorn.client_secret",
            &mut b.client_secret,
            &b.client_secret_file,
        )?;
        secret_from_file("bullhorn.password", &mut b.password, &b.password_file)?;
        let m = &mut self.ml;
        secret_from_file("ml.api_key", &mut m.api_key, &m.api_key_file)?;
        if let Some(h) = &mut self.hubspot {
            for path in [
                &mut h.access_token_file,
                &mut h.client_secret_file,
                &mut h.refresh_token_file,
            ] {
                if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                    *path = None;
                }
            }
            secret_from_file(
                "hubspot.access_token",
                &mut h.access_token,
                &h.access_token_file,
            )?;
            secret_from_file(
                "hubspot.client_secret",
                &mut h.client_secret,
                &h.client_secret_file,
            )?;
            secret_from_file(
                "hubspot.refresh_token",
                &mut h.refresh_token,
                &h.refresh_token_file,
            )?;
        }
        let i = &mut self.ingress;
        secret_from_file(
            "ingress.client_secret",
            &mut i.client_secret,
            &i.client_secret_file,
        )?;
        let sf = &mut self.salesforce;
        secret_from_file(
            "salesforce.client_secret",
            &mut sf.client_secret,
            &sf.client_secret_file,
        )?;
        secret_from_file(
            "salesforce.access_token",
            &mut sf.access_token,
            &sf.access_token_file,
        )?;
        let k = &mut self.kafka;
        secret_from_file(
            "kafka.sasl.password",
            &mut k.sasl.password,
            &k.sasl.password_file,
        )?;
        secret_from_file(
            "kafka.tls.key_password",
            &mut k.tls.key_password,
            &k.tls.key_password_file,
        )?;
        secret_from_file(
            "kafka.sasl.oauthbearer_client_secret",
            &mut k.sasl.oauthbearer_client_secret,
            &k.sasl.oauthbearer_client_secret_file,
        )?;
        Ok(())
    }

    /// The environment layer: aliases (and `<ENV>_FILE` of every secret) plus
    /// `CRMFLOW_<SECTION>__<KEY>`.
    pub fn env_provider() -> Figment {
        let aliases = Env::raw()
            .filter(|k| !secrets::is_secret_env(k.as_str()))
            .filter_map(|k| {
                ENV_ALIASES
                    .iter()
                    .find(|(env, _)| k.as_str().eq_ignore_ascii_case(env))
                    .map(|(_, key)| (*key).into())
                    .or_else(|| {
                        // `<ENV>_FILE` of a secret: `<key>_file`.
                        let name = k.as_str().to_ascii_uppercase();
                        let base = name.strip_suffix("_FILE")?;
                        SECRET_KEYS
                            .iter()
                            .find(|(_, env)| base == *env)
                            .map(|(key, _)| format!("{key}_file").into())
                    })
            })
            .split(".");
        // Only names with a section separator, so CRMFLOW_CONFIG and script variables such as
        // CRMFLOW_STATE_DIR are not mistaken for keys.
        let generic = Env::prefixed("CRMFLOW_")
            .filter(|k| k.as_str().contains("__"))
            .filter(|k| !secrets::is_secret_env(&format!("CRMFLOW_{}", k.as_str())))
            .split("__");
        Figment::new()
            .merge(aliases)
            .merge(generic)
            .merge(secrets::RawSecretEnv)
    }

    /// The configuration as TOML with secrets redacted, for `crmflow config check`.
    pub fn redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }

    /// Postgres connection settings for tokio-postgres (the TLS connector comes from
    /// `store::tls`; open connections with `store::connect` or `store::pool`).
    pub fn pg_config(&self) -> tokio_postgres::Config {
        let p = &self.postgres;
        let mut c = tokio_postgres::Config::new();
        for host in p.host.split(',').map(str::trim).filter(|h| !h.is_empty()) {
            c.host(host);
        }
        c.ssl_mode(match p.sslmode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
        c.port(p.port)
            .dbname(&p.dbname)
            .user(&p.user)
            .password(p.password.expose_secret())
            .application_name("crmflow")
            .connect_timeout(Duration::from_secs(p.connect_timeout_secs));
        if p.schema != "public" {
            c.options(format!("-c search_path={},public", p.schema));
        }
        c
    }
}

/// figment's messages can span lines (one per error); the operator wants one line that names
/// the key and, for environment overrides, the variable to fix.
fn one_line(e: &figment::Error) -> String {
    e.clone()
        .into_iter()
        .map(|e| {
            let key = e.path.join(".").to_lowercase();
            let from_env = e
                .metadata
                .as_ref()
                .is_some_and(|m| m.name.contains("environment"));
            let mut msg = if SECRET_KEYS.iter().any(|(k, _)| *k == key) {
                // serde's messages quote the value found ("found unsigned int `123`"): never
                // for a secret.
                match &e.kind {
                    figment::error::Kind::InvalidType(_, expected)
                    | figment::error::Kind::InvalidValue(_, expected) => {
                        format!("invalid value (not shown: a secret), expected {expected}")
                    }
                    _ => "invalid value (not shown: a secret)".to_owned(),
                }
            } else {
                without_excerpt(&e.kind.to_string())
            };
            if !key.is_empty() {
                msg.push_str(&format!(" for key `{key}`"));
            }
            if from_env {
                let vars: Vec<String> = ENV_ALIASES
                    .iter()
                    .filter(|(_, k)| *k == key)
                    .map(|(v, _)| (*v).to_owned())
                    .chain(std::iter::once(format!(
                        "CRMFLOW_{}",
                        key.to_uppercase().replace('.', "__")
                    )))
                    .collect();
                msg.push_str(&format!(" from environment variable {}", vars.join(" or ")));
            } else if let Some(m) = &e.metadata {
                let src = m
                    .source
                    .as_ref()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| m.name.to_string());
                msg.push_str(&format!(" in {src}"));
            }
            msg
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A parser message without the source excerpt TOML errors carry (`2 | password = "abc`, then
/// a caret line): the excerpt may hold a secret, and it spans lines. What is left is one line:
/// `TOML parse error at line 2, column 13: invalid basic string`.
fn without_excerpt(msg: &str) -> String {
    let is_excerpt = |l: &str| {
        let t = l.trim_start();
        let digits = t.trim_start_matches(|c: char| c.is_ascii_digit());
        digits.trim_start().starts_with('|')
    };
    msg.lines()
        .filter(|l| !is_excerpt(l))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(": ")
}

#[cfg(test)]
// figment's Jail closures return figment::Error, which is large; that is fine in tests.
#[allow(clippy::result_large_err)]
mod tests;
