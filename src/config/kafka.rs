//! `[kafka]`: bootstrap servers, topic layout, and connection security (`security_protocol`,
//! `tls.*`, `sasl.*`) that `kafka::security_properties` maps onto librdkafka properties.

use std::path::PathBuf;

use secrecy::SecretString;
use serde::{Deserialize, Serialize, Serializer};

use super::redact_opt;

/// Kafka connection and topic layout.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list. Env: `KAFKA_BOOTSTRAP_SERVERS`.
    pub bootstrap_servers: String,
    /// Prepended to every topic and consumer-group name; lets tests and tenants share a cluster.
    pub topic_prefix: String,
    /// Partitions of topics crmflow creates.
    pub partitions: i32,
    /// Replication factor of topics crmflow creates (1 on a single local broker).
    pub replication_factor: i32,
    /// Consumer session timeout, milliseconds: how long a dead instance holds its partitions.
    pub session_timeout_ms: u32,
    /// Static group membership (`group.instance.id`): a restarted instance with the same id
    /// takes its partitions back at once, without a rebalance. Unique per instance.
    pub group_instance_id: Option<String>,
    /// `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL` (librdkafka `security.protocol`).
    /// Unset: `SASL_SSL` when `kafka.sasl.mechanism` is set, `SSL` when a `kafka.tls` file is
    /// set, else `PLAINTEXT`. Env: `KAFKA_SECURITY_PROTOCOL`.
    pub security_protocol: Option<SecurityProtocol>,
    /// TLS to the brokers (`SSL`, `SASL_SSL`).
    pub tls: KafkaTlsConfig,
    /// SASL authentication (`SASL_PLAINTEXT`, `SASL_SSL`).
    pub sasl: KafkaSaslConfig,
    /// Extra librdkafka properties applied to every client, after (so over) the ones the
    /// `kafka.*` keys above produce. Values of sensitive properties (`sasl.password`,
    /// `ssl.key.password`, ...) are redacted by `config check` and `Debug`.
    pub client_properties: ClientProperties,
}

/// librdkafka `security.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SecurityProtocol {
    #[serde(alias = "plaintext")]
    Plaintext,
    #[serde(alias = "ssl")]
    Ssl,
    #[serde(alias = "sasl_plaintext")]
    SaslPlaintext,
    #[serde(alias = "sasl_ssl")]
    SaslSsl,
}

impl SecurityProtocol {
    /// librdkafka's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }
}

/// TLS to Kafka: the CA that signed the brokers' certificates and, for mTLS, the client's.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaTlsConfig {
    /// PEM CA file (`ssl.ca.location`); unset: the system's CA store. Env:
    /// `KAFKA_SSL_CA_LOCATION`.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for mTLS (`ssl.certificate.location`). Env:
    /// `KAFKA_SSL_CERTIFICATE_LOCATION`.
    pub cert_file: Option<PathBuf>,
    /// PEM client private key for mTLS (`ssl.key.location`). Env: `KAFKA_SSL_KEY_LOCATION`.
    pub key_file: Option<PathBuf>,
    /// Password of an encrypted `key_file` (`ssl.key.password`). Env: `KAFKA_SSL_KEY_PASSWORD`.
    #[serde(serialize_with = "redact_opt")]
    pub key_password: Option<SecretString>,
    /// File holding `key_password`. Env: `KAFKA_SSL_KEY_PASSWORD_FILE`.
    pub key_password_file: Option<PathBuf>,
    /// Check that the broker certificate names the host connected to
    /// (`ssl.endpoint.identification.algorithm = https`); `false` only for test setups.
    pub verify_hostname: bool,
}

impl Default for KafkaTlsConfig {
    fn default() -> Self {
        Self {
            ca_file: None,
            cert_file: None,
            key_file: None,
            key_password: None,
            key_password_file: None,
            verify_hostname: true,
        }
    }
}

/// SASL mechanism (librdkafka `sasl.mechanisms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN", alias = "plain")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256", alias = "scram-sha-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512", alias = "scram-sha-512")]
    ScramSha512,
    #[serde(rename = "OAUTHBEARER", alias = "oauthbearer")]
    OAuthBearer,
}

impl SaslMechanism {
    /// librdkafka's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
            Self::OAuthBearer => "OAUTHBEARER",
        }
    }
}

/// SASL credentials. PLAIN and SCRAM use `username`/`password`; OAUTHBEARER uses the
/// `oauthbearer_*` keys (OIDC client credentials, fetched and refreshed by librdkafka).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSaslConfig {
    /// Env: `KAFKA_SASL_MECHANISM`.
    pub mechanism: Option<SaslMechanism>,
    /// Env: `KAFKA_SASL_USERNAME`.
    pub username: Option<String>,
    /// Env: `KAFKA_SASL_PASSWORD`.
    #[serde(serialize_with = "redact_opt")]
    pub password: Option<SecretString>,
    /// File holding `password`. Env: `KAFKA_SASL_PASSWORD_FILE`.
    pub password_file: Option<PathBuf>,
    /// `oidc` (default when a token endpoint is set: client-credentials grant against
    /// `oauthbearer_token_endpoint_url`) or `unsecured-jwt` (an unsigned token for test
    /// brokers, `oauthbearer_config` e.g. `principal=admin`). Env:
    /// `KAFKA_SASL_OAUTHBEARER_METHOD`.
    pub oauthbearer_method: Option<String>,
    /// Env: `KAFKA_SASL_OAUTHBEARER_CLIENT_ID`.
    pub oauthbearer_client_id: Option<String>,
    /// Env: `KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET`.
    #[serde(serialize_with = "redact_opt")]
    pub oauthbearer_client_secret: Option<SecretString>,
    /// File holding `oauthbearer_client_secret`.
    pub oauthbearer_client_secret_file: Option<PathBuf>,
    /// Env: `KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL`.
    pub oauthbearer_token_endpoint_url: Option<String>,
    /// Space-separated scopes. Env: `KAFKA_SASL_OAUTHBEARER_SCOPE`.
    pub oauthbearer_scope: Option<String>,
    /// Extensions as `key=value,...` (Confluent Cloud: `logicalCluster=lkc-...,identityPoolId=pool-...`).
    pub oauthbearer_extensions: Option<String>,
    /// librdkafka `sasl.oauthbearer.config` (the unsecured-JWT method's `principal=...`).
    pub oauthbearer_config: Option<String>,
}

/// Raw librdkafka properties. `Debug` and `config check` redact the values of sensitive keys.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct ClientProperties(pub std::collections::BTreeMap<String, String>);

impl ClientProperties {
    /// Whether a librdkafka property holds a secret (its value is never printed).
    pub fn is_sensitive(key: &str) -> bool {
        let k = key.to_ascii_lowercase();
        k.contains("password")
            || k.contains("secret")
            || k.contains("jaas")
            || k.ends_with(".pem") && k.contains("key")
            || k == "sasl.oauthbearer.config"
    }

    fn redacted(&self) -> std::collections::BTreeMap<&str, &str> {
        self.0
            .iter()
            .map(|(k, v)| {
                let v = if Self::is_sensitive(k) {
                    "[redacted]"
                } else {
                    v.as_str()
                };
                (k.as_str(), v)
            })
            .collect()
    }
}

impl std::ops::Deref for ClientProperties {
    type Target = std::collections::BTreeMap<String, String>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for ClientProperties {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl std::fmt::Debug for ClientProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.redacted().fmt(f)
    }
}

impl Serialize for ClientProperties {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.redacted().serialize(s)
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: "127.0.0.1:9092".into(),
            topic_prefix: String::new(),
            partitions: 6,
            replication_factor: 1,
            session_timeout_ms: 10_000,
            group_instance_id: None,
            security_protocol: None,
            tls: KafkaTlsConfig::default(),
            sasl: KafkaSaslConfig::default(),
            client_properties: Default::default(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)]
mod tests {
    use crate::config::Config;
    use figment::Jail;
    use std::path::Path;

    use super::super::{SaslMechanism, SecurityProtocol};

    #[test]
    fn kafka_security_env_names_and_redacted_client_properties() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("KAFKA_SECURITY_PROTOCOL", "SASL_SSL");
            jail.set_env("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512");
            jail.set_env("KAFKA_SASL_USERNAME", "app");
            jail.set_env("KAFKA_SASL_PASSWORD", "sasl-hunter2");
            jail.set_env("KAFKA_SSL_CA_LOCATION", "/ca.pem");
            jail.set_env("KAFKA_SSL_VERIFY_HOSTNAME", "false");
            jail.set_env("KAFKA_SSL_CERTIFICATE_LOCATION", "");
            jail.create_file(
                "crmflow.toml",
                "[kafka.client_properties]\n\"sasl.password\" = \"raw-hunter2\"\n\"ssl.key.password\" = \"key-hunter2\"\n\"sasl.oauthbearer.client.secret\" = \"oidc-hunter2\"\n\"linger.ms\" = \"5\"\n",
            )?;
            let c = Config::load(None).map_err(|e| e.to_string())?;
            let k = &c.kafka;
            assert_eq!(k.security_protocol, Some(SecurityProtocol::SaslSsl));
            assert_eq!(k.sasl.mechanism, Some(SaslMechanism::ScramSha512));
            assert_eq!(k.tls.ca_file.as_deref(), Some(Path::new("/ca.pem")));
            assert_eq!(k.tls.cert_file, None, "an empty value is unset");
            assert!(!k.tls.verify_hostname);
            assert_eq!(
                k.client_properties.get("linger.ms").map(String::as_str),
                Some("5")
            );
            let shown = format!("{c:?}\n{}", c.redacted_toml());
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(c.redacted_toml().contains("\"linger.ms\" = \"5\""));
            Ok(())
        });
    }
}
