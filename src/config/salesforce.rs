//! `[salesforce]`: the Salesforce org and how its source reads it (poll mode: SOQL by
//! `(SystemModstamp, Id)` over `queryAll`; CDC mode: change events over the Pub/Sub API after a
//! snapshot by poll), and `[normalize.salesforce]`: which objects are candidates and positions and
//! the value sets their rules check.

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

/// How the Salesforce source follows changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SalesforceMode {
    /// SOQL polling by `(SystemModstamp, Id)` every `poll_interval_secs` (the default).
    #[default]
    Poll,
    /// Change Data Capture: subscribe to each object's change channel over the Pub/Sub API, snapshot
    /// by poll, then follow the events (cursor: the last replay id Kafka acknowledged).
    Cdc,
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
    /// While over budget (or after `REQUEST_LIMIT_EXCEEDED`), seconds between looks at the usage.
    pub budget_recheck_secs: u64,
    /// `poll` (default) or `cdc`.
    pub mode: SalesforceMode,
    /// Pub/Sub API endpoint (CDC mode); default `https://api.pubsub.salesforce.com:7443`.
    pub pubsub_endpoint: Option<String>,
    /// Change channel per object (CDC mode), when not the standard one (`/data/ContactChangeEvent`,
    /// `/data/Position__ChangeEvent` for `Position__c`), e.g. a custom channel `/data/Crm__chn`.
    pub channels: std::collections::BTreeMap<String, String>,
    /// Events asked for per Pub/Sub `FetchRequest` (CDC mode; Salesforce caps it at 100).
    pub pubsub_batch_size: i32,
    /// Most events handled as one batch (CDC mode): their record re-reads share requests and the
    /// replay id is stored once per batch, after Kafka acknowledged all of it.
    pub cdc_batch_events: usize,
    /// Longest wait for more events before a partial batch is handled, milliseconds (CDC mode).
    pub cdc_batch_wait_ms: u64,
}

/// Default `Contact` fields: everything a canonical candidate is built from.
pub const SALESFORCE_CONTACT_FIELDS: &str = "Id,FirstName,LastName,Name,Email,Phone,MobilePhone,\
Title,Department,MailingCity,MailingState,MailingPostalCode,MailingCountry,Description,LeadSource,\
OwnerId,MasterRecordId,CreatedDate,LastModifiedDate,SystemModstamp,IsDeleted";

/// Default `Position__c` fields (the custom position object of the README's set-up).
pub const SALESFORCE_POSITION_FIELDS: &str = "Id,Name,Description__c,Skills__c,Status__c,City__c,\
State__c,Country__c,Salary_Min__c,Salary_Max__c,Open_Date__c,Remote__c,OwnerId,CreatedDate,\
LastModifiedDate,SystemModstamp,IsDeleted";

impl SalesforceConfig {
    /// The Pub/Sub change channel of `object`: the configured one, else `/data/<Object>ChangeEvent`
    /// (custom objects `X__c`: `/data/X__ChangeEvent`).
    pub fn channel_of(&self, object: &str) -> String {
        if let Some((_, c)) = self
            .channels
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(object))
        {
            return c.clone();
        }
        match object.strip_suffix("__c") {
            Some(base) => format!("/data/{base}__ChangeEvent"),
            None => format!("/data/{object}ChangeEvent"),
        }
    }
}

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
            fields: [
                ("Contact".to_string(), SALESFORCE_CONTACT_FIELDS.to_string()),
                (
                    "Position__c".to_string(),
                    SALESFORCE_POSITION_FIELDS.to_string(),
                ),
            ]
            .into(),
            page_size: 2000,
            poll_interval_secs: 30,
            overlap_ms: 1_000,
            budget_share: 0.8,
            request_timeout_secs: 60,
            budget_recheck_secs: 60,
            mode: SalesforceMode::Poll,
            pubsub_endpoint: None,
            channels: Default::default(),
            pubsub_batch_size: 100,
            cdc_batch_events: 2_000,
            cdc_batch_wait_ms: 50,
        }
    }
}

/// `[normalize.salesforce]`: which Salesforce objects become candidates and positions (the field
/// names each transform reads are in `operators::salesforce`), and the value sets of the
/// `salesforce.*` rules. An empty value list disables its check.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SalesforceNormalizeConfig {
    /// Objects read as candidates (raw entity names, ASCII case-insensitive).
    pub candidate_objects: Vec<String>,
    /// Objects read as positions.
    pub position_objects: Vec<String>,
    /// Allowed `Candidate_Status__c` values (rule `salesforce.candidate.status.allowed`).
    pub candidate_statuses: Vec<String>,
    /// Allowed `Status__c` values of positions (rule `salesforce.position.status.allowed`).
    pub position_statuses: Vec<String>,
}

impl Default for SalesforceNormalizeConfig {
    fn default() -> Self {
        Self {
            candidate_objects: vec!["Contact".into()],
            position_objects: vec!["Position__c".into()],
            candidate_statuses: ["Active", "Passive", "Placed", "Do Not Contact"]
                .map(String::from)
                .to_vec(),
            position_statuses: ["Open", "On Hold", "Filled", "Closed"]
                .map(String::from)
                .to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_follow_salesforce_naming_unless_configured() {
        let mut c = SalesforceConfig::default();
        assert_eq!(c.channel_of("Contact"), "/data/ContactChangeEvent");
        assert_eq!(c.channel_of("Position__c"), "/data/Position__ChangeEvent");
        c.channels
            .insert("contact".into(), "/data/Crmflow__chn".into());
        assert_eq!(c.channel_of("Contact"), "/data/Crmflow__chn");
        assert_eq!(c.mode, SalesforceMode::Poll, "poll stays the default");
        let parsed: SalesforceConfig = toml::from_str("mode = \"cdc\"").unwrap();
        assert_eq!(parsed.mode, SalesforceMode::Cdc);
    }
}
