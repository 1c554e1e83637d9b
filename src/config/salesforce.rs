//! `[salesforce]`: the Salesforce org and how its source reads it (poll mode: SOQL by
//! `(SystemModstamp, Id)` over `queryAll`).

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::redact_opt;

/// How the Salesforce source authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SalesforceAuth {
    /// OAuth 2.0 client credentials (`client_id`, `client_secret`) against the My Domain `login_url`.
    ClientCredentials,
    /// OAuth 2.0 JWT bearer (`client_id`, `username`, `private_key_file`) against `login_url`.
    JwtBearer,
    /// A session id obtained elsewhere (`access_token` with `instance_url`); it cannot be renewed.
    AccessToken,
}

/// Salesforce org and source behaviour (poll mode: SOQL by `(SystemModstamp, Id)` over `queryAll`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SalesforceConfig {
    /// Whether `crmflow run --stages ingest` reads Salesforce (off by default).
    pub enabled: bool,
    /// Host of `/services/oauth2/token`: the My Domain URL (client credentials) or
    /// `https://login.salesforce.com` (JWT bearer).
    pub login_url: String,
    /// The org's instance URL (required with `access_token`; otherwise from the token answer).
    pub instance_url: Option<String>,
    pub auth: SalesforceAuth,
    /// Connected app consumer key.
    pub client_id: Option<String>,
    /// Connected app consumer secret (client credentials).
    #[serde(serialize_with = "redact_opt")]
    pub client_secret: Option<SecretString>,
    /// File holding `client_secret` (env `SALESFORCE_CLIENT_SECRET_FILE`).
    pub client_secret_file: Option<std::path::PathBuf>,
    /// Integration user (JWT bearer `sub`).
    pub username: Option<String>,
    /// RSA private key (PEM) signing the JWT assertion.
    pub private_key_file: Option<std::path::PathBuf>,
    /// JWT `aud` (default: `https://login.salesforce.com`).
    pub jwt_audience: Option<String>,
    /// A given session id (`auth = "access_token"`).
    #[serde(serialize_with = "redact_opt")]
    pub access_token: Option<SecretString>,
    /// File holding `access_token` (env `SALESFORCE_ACCESS_TOKEN_FILE`).
    pub access_token_file: Option<std::path::PathBuf>,
    /// REST API version, e.g. `62.0`.
    pub api_version: String,
    /// Extra CA certificate(s) to trust, PEM file (a proxy's, or the simulator's).
    pub ca_file: Option<std::path::PathBuf>,
    /// Objects to read (each is an entity of `crm.raw.salesforce.<object>`).
    pub objects: Vec<String>,
    /// Fields selected per object (comma-separated); `Id`, `SystemModstamp` and `IsDeleted` are
    /// always read. An object not listed reads only those.
    pub fields: std::collections::BTreeMap<String, String>,
    /// Records per SOQL page (`LIMIT`, and `Sforce-Query-Options: batchSize`), 200..=2000.
    pub page_size: u32,
    /// Seconds between polls once caught up.
    pub poll_interval_secs: u64,
    /// Each poll starts this many milliseconds before the cursor (records seen again are
    /// de-duplicated).
    pub overlap_ms: u64,
    /// Share of the org's daily API allowance crmflow may use (0..=1); above it, polls wait.
    pub budget_share: f64,
    /// Per-request timeout, seconds.
    pub request_timeout_secs: u64,
}

/// Default `Contact` fields: everything a canonical candidate is built from.
pub const SALESFORCE_CONTACT_FIELDS: &str = "Id,FirstName,LastName,Name,Email,Phone,MobilePhone,\
Title,Department,MailingCity,MailingState,MailingPostalCode,MailingCountry,Description,LeadSource,\
OwnerId,MasterRecordId,CreatedDate,LastModifiedDate,SystemModstamp,IsDeleted";

impl Default for SalesforceConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            login_url: "https://login.salesforce.com".into(),
            instance_url: None,
            auth: SalesforceAuth::ClientCredentials,
            client_id: None,
            client_secret: None,
            client_secret_file: None,
            username: None,
            private_key_file: None,
            jwt_audience: None,
            access_token: None,
            access_token_file: None,
            api_version: "62.0".into(),
            ca_file: None,
            objects: vec!["Contact".into()],
            fields: [("Contact".to_string(), SALESFORCE_CONTACT_FIELDS.to_string())].into(),
            page_size: 2000,
            poll_interval_secs: 30,
            overlap_ms: 1_000,
            budget_share: 0.8,
            request_timeout_secs: 60,
        }
    }
}
