//! `[hubspot]` and `[ingress]`: the HubSpot account, which objects its source reads and how,
//! and the webhook ingress that receives HubSpot's signed event batches.

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::redact_opt;

/// How the HubSpot source learns of changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HubspotMode {
    /// CRM search by modified time, every `poll_interval_secs` (default).
    Poll,
    /// Webhooks through the ingress; the source only takes the initial snapshot by poll.
    Webhook,
    /// Webhooks, with polling beside them as a safety net.
    Both,
}

/// One HubSpot object type the source reads, and the pipeline entity it becomes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubspotObject {
    /// The pipeline's entity: `contact` (-> candidate), `job` or `deal` (-> position). Also the
    /// raw topic, `crm.raw.hubspot.<entity>`.
    pub entity: String,
    /// HubSpot's object type in URLs: `contacts`, `deals`, or a custom object's `2-…` id (or
    /// its fully qualified name, `p<portal>_jobs`).
    pub object_type: String,
    /// The `objectTypeId` webhooks name the object by (`0-1` contacts, `0-3` deals, `2-…` custom
    /// objects), when it differs from `object_type`.
    #[serde(default)]
    pub object_type_id: Option<String>,
    /// Properties read; empty means the defaults of the entity (see [`HubspotConfig::properties_of`]).
    #[serde(default)]
    pub properties: Vec<String>,
}

impl HubspotObject {
    /// Contacts (-> candidates) and the `jobs` custom object (-> positions), whose webhooks name
    /// it `jobs_object_type_id` (`2-…`), each with the entity's default properties.
    pub fn contacts_and_jobs(jobs_object_type_id: impl Into<String>) -> Vec<HubspotObject> {
        vec![
            HubspotObject {
                entity: "contact".into(),
                object_type: "contacts".into(),
                object_type_id: Some("0-1".into()),
                properties: vec![],
            },
            HubspotObject {
                entity: "job".into(),
                object_type: "jobs".into(),
                object_type_id: Some(jobs_object_type_id.into()),
                properties: vec![],
            },
        ]
    }
}

/// HubSpot account and source behaviour (`[hubspot]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubspotConfig {
    /// API base URL. Env: `HUBSPOT_BASE_URL`.
    pub base_url: String,
    /// Private-app access token (Bearer). Env: `HUBSPOT_ACCESS_TOKEN`.
    #[serde(serialize_with = "redact_opt")]
    pub access_token: Option<SecretString>,
    /// File holding `access_token` (env `HUBSPOT_ACCESS_TOKEN_FILE`).
    pub access_token_file: Option<std::path::PathBuf>,
    /// OAuth app client id (instead of an access token). Env: `HUBSPOT_CLIENT_ID`.
    pub client_id: Option<String>,
    /// OAuth app client secret; when unset, `ingress.client_secret` (the same app's secret,
    /// env `HUBSPOT_CLIENT_SECRET`) is used.
    #[serde(serialize_with = "redact_opt")]
    pub client_secret: Option<SecretString>,
    /// File holding `client_secret` (env `CRMFLOW_HUBSPOT__CLIENT_SECRET_FILE`).
    pub client_secret_file: Option<std::path::PathBuf>,
    /// OAuth refresh token. Env: `HUBSPOT_REFRESH_TOKEN`.
    #[serde(serialize_with = "redact_opt")]
    pub refresh_token: Option<SecretString>,
    /// File holding `refresh_token` (env `HUBSPOT_REFRESH_TOKEN_FILE`).
    pub refresh_token_file: Option<std::path::PathBuf>,
    /// `poll`, `webhook` or `both`.
    pub mode: HubspotMode,
    /// Objects read and the entities they become.
    pub objects: Vec<HubspotObject>,
    /// Seconds between incremental polls once caught up.
    pub poll_interval_secs: u64,
    /// Results per search page (HubSpot documents 200 at most; 100 is the conservative reading).
    pub page_size: u32,
    /// Each incremental poll starts this many milliseconds before the cursor: search lags writes
    /// by seconds, so a record indexed late with an older modified time is still found.
    pub overlap_ms: u64,
    /// Results one search query may reach (HubSpot: 10,000; paging past it is a 400). A window
    /// with more is re-anchored at the last modified time read.
    pub search_result_cap: u32,
    /// Client-side budget of requests per 10 seconds (HubSpot's burst limit is 100-190 by tier).
    pub requests_per_10s: u32,
    /// Client-side budget of search requests per second (HubSpot: 4 or 5).
    pub search_requests_per_sec: u32,
    /// Requests in flight at once.
    pub max_concurrent_requests: usize,
}

impl Default for HubspotConfig {
    fn default() -> Self {
        Self {
            base_url: "https://api.hubapi.com".into(),
            access_token: None,
            access_token_file: None,
            client_id: None,
            client_secret: None,
            client_secret_file: None,
            refresh_token: None,
            refresh_token_file: None,
            mode: HubspotMode::Poll,
            objects: HubspotObject::contacts_and_jobs("2-12345678"),
            poll_interval_secs: 30,
            page_size: 100,
            overlap_ms: 30_000,
            search_result_cap: 10_000,
            requests_per_10s: 90,
            search_requests_per_sec: 4,
            max_concurrent_requests: 8,
        }
    }
}

/// Properties of a HubSpot contact the canonical candidate is built from.
pub const HUBSPOT_CONTACT_PROPERTIES: &[&str] = &[
    "firstname",
    "lastname",
    "email",
    "phone",
    "mobilephone",
    "jobtitle",
    "company",
    "address",
    "city",
    "state",
    "zip",
    "country",
    "hs_lead_status",
    "skills",
    "summary",
    "date_available",
    "hubspot_owner_id",
    "createdate",
    "lastmodifieddate",
    "hs_merged_object_ids",
];

/// Properties of the jobs custom object the canonical position is built from.
pub const HUBSPOT_JOB_PROPERTIES: &[&str] = &[
    "job_title",
    "job_description",
    "job_status",
    "is_open",
    "employment_type",
    "salary",
    "salary_min",
    "salary_max",
    "salary_unit",
    "pay_rate",
    "openings",
    "start_date",
    "skills",
    "location",
    "city",
    "state",
    "zip",
    "country",
    "company_id",
    "company_name",
    "hubspot_owner_id",
    "hs_createdate",
    "hs_lastmodifieddate",
    "hs_merged_object_ids",
];

/// Properties of a deal the canonical position is built from.
pub const HUBSPOT_DEAL_PROPERTIES: &[&str] = &[
    "dealname",
    "description",
    "dealstage",
    "amount",
    "hs_is_closed",
    "start_date",
    "skills",
    "location",
    "hubspot_owner_id",
    "createdate",
    "hs_lastmodifieddate",
    "hs_merged_object_ids",
];

impl HubspotConfig {
    /// The object configured for `entity`.
    pub fn object(&self, entity: &str) -> Option<&HubspotObject> {
        self.objects.iter().find(|o| o.entity == entity)
    }

    /// The object whose type is `object_type` (`contacts`, `2-123`, ...), or whose entity a
    /// webhook subscription names (`contact`, `deal`).
    pub fn object_for_type(&self, object_type: &str) -> Option<&HubspotObject> {
        self.objects.iter().find(|o| {
            o.object_type.eq_ignore_ascii_case(object_type)
                || o.entity.eq_ignore_ascii_case(object_type)
        })
    }

    /// The properties read for `o`: its own list, else the entity's defaults.
    pub fn properties_of(&self, o: &HubspotObject) -> Vec<String> {
        if !o.properties.is_empty() {
            return o.properties.clone();
        }
        let defaults = match o.entity.as_str() {
            "contact" => HUBSPOT_CONTACT_PROPERTIES,
            "deal" => HUBSPOT_DEAL_PROPERTIES,
            _ => HUBSPOT_JOB_PROPERTIES,
        };
        defaults.iter().map(|s| (*s).to_owned()).collect()
    }
}

/// The webhook ingress (`[ingress]`): HubSpot POSTs signed event batches here.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngressConfig {
    /// `host:port` the HTTP server binds.
    pub listen: String,
    /// The URL HubSpot calls, as configured in the app (scheme, host, path, no query), e.g.
    /// `https://crm-hooks.example.com/webhooks/hubspot`: the v3 signature covers the full URL, which
    /// behind a proxy differs from what the server sees. Empty: `http://<listen>/webhooks/hubspot`.
    /// Env: `CRMFLOW_INGRESS_PUBLIC_URL`.
    pub public_url: String,
    /// Largest request body accepted, bytes (HubSpot sends at most 100 events per request).
    pub max_body_bytes: usize,
    /// Requests whose `X-HubSpot-Request-Timestamp` is older than this are refused, seconds.
    pub max_timestamp_age_secs: u64,
    /// The HubSpot app's client secret, which signs the webhooks. Env: `HUBSPOT_CLIENT_SECRET`.
    #[serde(serialize_with = "redact_opt")]
    pub client_secret: Option<SecretString>,
    /// File holding `client_secret` (env `HUBSPOT_CLIENT_SECRET_FILE`).
    pub client_secret_file: Option<std::path::PathBuf>,
    /// Webhook events remembered for de-duplication.
    pub dedupe_capacity: u64,
    /// Longest a request may take before it is answered 503 (HubSpot gives up after 5 s and
    /// retries), milliseconds.
    pub request_timeout_ms: u64,
}

impl Default for IngressConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8088".into(),
            public_url: String::new(),
            max_body_bytes: 1_048_576,
            max_timestamp_age_secs: 300,
            client_secret: None,
            client_secret_file: None,
            dedupe_capacity: 1_000_000,
            request_timeout_ms: 4_500,
        }
    }
}

impl IngressConfig {
    /// The URL the signature is computed over.
    pub fn signed_url(&self, bound: std::net::SocketAddr) -> String {
        if self.public_url.is_empty() {
            format!("http://{bound}/webhooks/hubspot")
        } else {
            self.public_url.clone()
        }
    }
}
