//! The Bullhorn source's section (`[bullhorn]`): account, credentials, entities, fields and pacing.

use std::path::PathBuf;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::{redact_opt, ConfigError};

/// How the Bullhorn source reads changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BullhornMode {
    /// Incremental `search` by `dateLastModified` (default).
    Poll,
    /// Bullhorn's event-subscription API: the subscription is opened first, then every record is
    /// read by poll (the snapshot), then the events are followed.
    Events,
}

/// Bullhorn account and source behaviour.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BullhornConfig {
    /// Whether `crmflow run --stages ingest` reads Bullhorn when `--sources` does not say (on by
    /// default; its credentials are then required).
    pub enabled: bool,
    /// Discovery URL ending in `/rest-services`. Env: `BULLHORN_REST_URL`.
    pub rest_url: String,
    /// Env: `BULLHORN_CLIENT_ID`.
    pub client_id: Option<String>,
    /// Env: `BULLHORN_CLIENT_SECRET`.
    #[serde(serialize_with = "redact_opt")]
    pub client_secret: Option<SecretString>,
    /// File holding `client_secret`. Env: `BULLHORN_CLIENT_SECRET_FILE`.
    pub client_secret_file: Option<PathBuf>,
    /// API user. Env: `BULLHORN_USERNAME`.
    pub username: Option<String>,
    /// Env: `BULLHORN_PASSWORD`.
    #[serde(serialize_with = "redact_opt")]
    pub password: Option<SecretString>,
    /// File holding `password`. Env: `BULLHORN_PASSWORD_FILE`.
    pub password_file: Option<PathBuf>,
    /// Entities to read.
    pub entities: Vec<String>,
    /// `poll` or `events`.
    pub mode: BullhornMode,
    /// Seconds between incremental polls once caught up.
    pub poll_interval_secs: u64,
    /// Records per search page (Bullhorn's maximum is 500).
    pub page_size: u32,
    /// Client-side request budget per minute (Bullhorn's default limit is 1,500).
    pub requests_per_minute: u32,
    /// Requests in flight at once.
    pub max_concurrent_requests: usize,
    /// Event subscription id (events mode).
    pub subscription_id: String,
    /// Events per poll (events mode).
    pub max_events: u32,
    /// `fields=` read per entity (search and reads by id); an entity not listed reads
    /// `id,dateAdded,dateLastModified,isDeleted`. The defaults cover the canonical model.
    pub fields: std::collections::BTreeMap<String, String>,
    /// `dateLastModified` sub-ranges fetched concurrently when a poll finds more than a page.
    pub fetch_concurrency: usize,
    /// Each incremental poll starts this many milliseconds before the cursor, so a record saved
    /// late with an older timestamp is still found; records seen again are de-duplicated.
    pub overlap_ms: u64,
}

/// Default `fields=` of Candidate: everything the canonical candidate is built from.
pub const CANDIDATE_FIELDS: &str = "id,firstName,lastName,name,email,phone,mobile,\
address(address1,address2,city,state,zip,countryID,countryName,countryCode),status,occupation,\
companyName,skillSet,primarySkills(id,name),description,dateAvailable,owner(id,firstName,lastName),\
dateAdded,dateLastModified,isDeleted";

/// Default `fields=` of JobOrder: everything the canonical position is built from.
pub const JOB_ORDER_FIELDS: &str = "id,title,description,publicDescription,status,isOpen,\
employmentType,salary,salaryUnit,payRate,numOpenings,startDate,skills(id,name),skillList,\
address(address1,address2,city,state,zip,countryID,countryName,countryCode),\
clientCorporation(id,name),owner(id,firstName,lastName),dateAdded,dateLastModified,isDeleted";

impl Default for BullhornConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            rest_url: "https://rest.bullhornstaffing.com/rest-services".into(),
            client_id: None,
            client_secret: None,
            client_secret_file: None,
            username: None,
            password: None,
            password_file: None,
            entities: vec!["Candidate".into(), "JobOrder".into()],
            mode: BullhornMode::Poll,
            poll_interval_secs: 30,
            page_size: 500,
            requests_per_minute: 1_400,
            max_concurrent_requests: 8,
            subscription_id: "crmflow".into(),
            max_events: 500,
            fields: [
                ("Candidate".to_string(), CANDIDATE_FIELDS.to_string()),
                ("JobOrder".to_string(), JOB_ORDER_FIELDS.to_string()),
            ]
            .into(),
            fetch_concurrency: 8,
            overlap_ms: 1_000,
        }
    }
}

impl BullhornConfig {
    /// The four credentials, or a one-line error naming the first one missing.
    pub fn credentials(&self) -> Result<BullhornCredentials, ConfigError> {
        let missing = |key, env| ConfigError::Missing { key, env };
        Ok(BullhornCredentials {
            client_id: self
                .client_id
                .clone()
                .ok_or_else(|| missing("bullhorn.client_id", "BULLHORN_CLIENT_ID"))?,
            client_secret: self
                .client_secret
                .clone()
                .ok_or_else(|| missing("bullhorn.client_secret", "BULLHORN_CLIENT_SECRET"))?,
            username: self
                .username
                .clone()
                .ok_or_else(|| missing("bullhorn.username", "BULLHORN_USERNAME"))?,
            password: self
                .password
                .clone()
                .ok_or_else(|| missing("bullhorn.password", "BULLHORN_PASSWORD"))?,
        })
    }
}

/// Bullhorn API credentials; `Debug` shows no secret.
#[derive(Clone, Debug)]
pub struct BullhornCredentials {
    pub client_id: String,
    pub client_secret: SecretString,
    pub username: String,
    pub password: SecretString,
}
