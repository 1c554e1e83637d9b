//! Simulator configuration: [`SimArgs`] is the `crmflow sim hubspot` command line (clap), [`SimConfig`] the
//! same knobs as a plain struct that tests build in code (`SimConfig::for_tests()`).
//!
//! Every behaviour the reference marks [U] is a knob with the conservative reading as default: search page
//! maximum 100 (not 200), search limit 4/s (not 5), the smallest tier's 100 requests per 10 s and 250,000 per
//! day, no `Retry-After` on 429s, no rate-limit headers on search answers, a 2-second search index lag, and a
//! webhook retry schedule of 10 retries with doubling waits.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Default private-app token.
pub const DEFAULT_PRIVATE_APP_TOKEN: &str = "pat-na1-crmflow-sim-token";
/// Default OAuth client id.
pub const DEFAULT_CLIENT_ID: &str = "crmflow-sim-client-id";
/// Default OAuth client secret (also the webhook signing key unless `webhook_secret` is set).
pub const DEFAULT_CLIENT_SECRET: &str = "crmflow-sim-client-secret";
/// Default OAuth refresh token.
pub const DEFAULT_REFRESH_TOKEN: &str = "crmflow-sim-refresh-token";

/// Command line of `crmflow sim hubspot`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8383")]
    pub listen: SocketAddr,
    /// Seed of the generated data: the same seed gives the same records.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Contacts to generate.
    #[arg(long, default_value_t = 10_000)]
    pub contacts: usize,
    /// Deals to generate.
    #[arg(long, default_value_t = 1_000)]
    pub deals: usize,
    /// Jobs (custom object) to generate.
    #[arg(long, default_value_t = 1_000)]
    pub jobs: usize,
    /// objectTypeId of the jobs custom object.
    #[arg(long, default_value = "2-12345678")]
    pub jobs_object_type_id: String,
    /// HubSpot account id (`portalId`).
    #[arg(long, default_value_t = 62_515)]
    pub portal_id: u64,
    /// App id in webhook events.
    #[arg(long, default_value_t = 54_321)]
    pub app_id: u64,
    /// Background changes per second (updates, creates, archives, restores, merges; 0 = none).
    #[arg(long, default_value_t = 0.0)]
    pub changes_per_sec: f64,
    /// Private-app access token accepted as `Authorization: Bearer`.
    #[arg(long, default_value = DEFAULT_PRIVATE_APP_TOKEN)]
    pub private_app_token: String,
    /// OAuth client id.
    #[arg(long, default_value = DEFAULT_CLIENT_ID)]
    pub client_id: String,
    /// OAuth client secret.
    #[arg(long, default_value = DEFAULT_CLIENT_SECRET)]
    pub client_secret: String,
    /// OAuth refresh token accepted by `POST /oauth/v1/token`.
    #[arg(long, default_value = DEFAULT_REFRESH_TOKEN)]
    pub refresh_token: String,
    /// Lifetime of issued OAuth access tokens, seconds (HubSpot: 1800).
    #[arg(long, default_value_t = 1_800)]
    pub access_token_ttl_secs: u64,
    /// Largest search `limit`; more is a 400 (HubSpot: 200 in today's docs, 100 in older ones).
    #[arg(long, default_value_t = 100)]
    pub search_page_max: u32,
    /// Largest list `limit`; more is a 400.
    #[arg(long, default_value_t = 100)]
    pub list_page_max: u32,
    /// Results reachable per search query; paging to `after` >= this is a 400.
    #[arg(long, default_value_t = 10_000)]
    pub search_result_cap: u64,
    /// Delay before a write becomes visible to search, milliseconds.
    #[arg(long, default_value_t = 2_000)]
    pub index_lag_ms: u64,
    /// Requests per rolling 10 seconds before 429 TEN_SECONDLY_ROLLING (0 = unlimited).
    #[arg(long, default_value_t = 100)]
    pub ten_secondly_limit: u32,
    /// Search requests per second before 429 SECONDLY (0 = unlimited).
    #[arg(long, default_value_t = 4)]
    pub search_per_sec: u32,
    /// Requests per day before 429 DAILY (0 = unlimited).
    #[arg(long, default_value_t = 250_000)]
    pub daily_limit: u64,
    /// Send `Retry-After: N` seconds with 429s (HubSpot does not promise one).
    #[arg(long)]
    pub retry_after_secs: Option<u64>,
    /// Send the X-HubSpot-RateLimit-* headers on search answers too.
    #[arg(long)]
    pub search_rate_limit_headers: bool,
    /// Latency added to every API request, milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Share of API requests answered 500/502/503 (0..=1).
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Share of generated records with dirty data.
    #[arg(long, default_value_t = 0.08)]
    pub dirty_share: f64,
    /// Share of generated records that share the previous record's modified millisecond.
    #[arg(long, default_value_t = 0.3)]
    pub tie_share: f64,
    /// Webhook target URL (none: no webhooks are sent).
    #[arg(long)]
    pub webhook_url: Option<String>,
    /// Webhook signing key (default: the client secret).
    #[arg(long)]
    pub webhook_secret: Option<String>,
    /// Events per webhook request at most (HubSpot: 100).
    #[arg(long, default_value_t = 100)]
    pub webhook_batch_max: usize,
    /// How long events wait to be batched, milliseconds.
    #[arg(long, default_value_t = 200)]
    pub webhook_flush_ms: u64,
    /// Share of events delivered twice.
    #[arg(long, default_value_t = 0.02)]
    pub webhook_duplicate_rate: f64,
    /// Deliver the events of a batch in random order (HubSpot does not promise order).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub webhook_shuffle: bool,
    /// A delivery that takes longer than this fails and is retried, milliseconds (HubSpot: 5 s).
    #[arg(long, default_value_t = 5_000)]
    pub webhook_timeout_ms: u64,
    /// Waits before each retry of a failed delivery, milliseconds, comma-separated (its length is the
    /// number of retries).
    #[arg(long, value_delimiter = ',', default_values_t = default_retry_schedule())]
    pub webhook_retry_ms: Vec<u64>,
    /// Webhook requests in flight at once.
    #[arg(long, default_value_t = 10)]
    pub webhook_concurrency: usize,
}

/// 10 retries: 1 s, 2 s, 4 s, ... 512 s (about 17 minutes in all); HubSpot's own schedule spreads 10 retries
/// over 24 hours (unconfirmed).
pub fn default_retry_schedule() -> Vec<u64> {
    (0..10).map(|i| 1_000u64 << i).collect()
}

/// Simulator settings; see [`SimArgs`] for the meaning of each field.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct SimConfig {
    pub listen: SocketAddr,
    pub seed: u64,
    pub contacts: usize,
    pub deals: usize,
    pub jobs: usize,
    pub jobs_object_type_id: String,
    pub portal_id: u64,
    pub app_id: u64,
    pub changes_per_sec: f64,
    pub private_app_token: String,
    pub client_id: String,
    pub client_secret: String,
    pub refresh_token: String,
    pub access_token_ttl_secs: u64,
    pub search_page_max: u32,
    pub list_page_max: u32,
    pub search_result_cap: u64,
    pub index_lag_ms: u64,
    pub ten_secondly_limit: u32,
    pub search_per_sec: u32,
    pub daily_limit: u64,
    pub retry_after_secs: Option<u64>,
    pub search_rate_limit_headers: bool,
    pub latency_ms: u64,
    pub error_rate: f64,
    pub dirty_share: f64,
    pub tie_share: f64,
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<String>,
    pub webhook_batch_max: usize,
    pub webhook_flush_ms: u64,
    pub webhook_duplicate_rate: f64,
    pub webhook_shuffle: bool,
    pub webhook_timeout_ms: u64,
    pub webhook_retry_ms: Vec<u64>,
    pub webhook_concurrency: usize,
}

impl Default for SimConfig {
    /// The CLI defaults.
    fn default() -> Self {
        SimArgs::defaults().into()
    }
}

impl SimArgs {
    /// The documented defaults, as if no flag were given.
    pub fn defaults() -> Self {
        use clap::FromArgMatches;
        let cmd = <Self as clap::Args>::augment_args(clap::Command::new("sim"));
        let m = cmd
            .no_binary_name(true)
            .get_matches_from(Vec::<String>::new());
        Self::from_arg_matches(&m).unwrap_or_else(|e| panic!("SimArgs defaults: {e}"))
    }
}

impl SimConfig {
    /// Small, fast, fault-free settings for tests: port 0, 200 contacts, 50 deals, 50 jobs, no rate limits,
    /// no index lag, quick webhook batching and retries.
    pub fn for_tests() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            contacts: 200,
            deals: 50,
            jobs: 50,
            ten_secondly_limit: 0,
            search_per_sec: 0,
            daily_limit: 0,
            index_lag_ms: 0,
            webhook_flush_ms: 20,
            webhook_retry_ms: vec![50, 100, 200, 400],
            ..Self::default()
        }
    }

    /// The webhook signing key.
    pub fn webhook_key(&self) -> &str {
        self.webhook_secret
            .as_deref()
            .unwrap_or(&self.client_secret)
    }

    /// Checks ranges that would otherwise misbehave silently.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("error_rate", self.error_rate),
            ("dirty_share", self.dirty_share),
            ("tie_share", self.tie_share),
            ("webhook_duplicate_rate", self.webhook_duplicate_rate),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{name} must be within 0..=1, got {v}"));
            }
        }
        if self.changes_per_sec < 0.0 || !self.changes_per_sec.is_finite() {
            return Err("changes_per_sec must be >= 0".into());
        }
        if !self.jobs_object_type_id.starts_with("2-") {
            return Err(format!(
                "jobs_object_type_id must look like 2-<digits>, got {}",
                self.jobs_object_type_id
            ));
        }
        if self.webhook_batch_max == 0 || self.webhook_batch_max > 100 {
            return Err("webhook_batch_max must be within 1..=100".into());
        }
        if let Some(u) = &self.webhook_url {
            url::Url::parse(u).map_err(|e| format!("webhook_url: {e}"))?;
        }
        Ok(())
    }
}

impl From<SimArgs> for SimConfig {
    fn from(a: SimArgs) -> Self {
        Self {
            listen: a.listen,
            seed: a.seed,
            contacts: a.contacts,
            deals: a.deals,
            jobs: a.jobs,
            jobs_object_type_id: a.jobs_object_type_id,
            portal_id: a.portal_id,
            app_id: a.app_id,
            changes_per_sec: a.changes_per_sec,
            private_app_token: a.private_app_token,
            client_id: a.client_id,
            client_secret: a.client_secret,
            refresh_token: a.refresh_token,
            access_token_ttl_secs: a.access_token_ttl_secs,
            search_page_max: a.search_page_max,
            list_page_max: a.list_page_max,
            search_result_cap: a.search_result_cap,
            index_lag_ms: a.index_lag_ms,
            ten_secondly_limit: a.ten_secondly_limit,
            search_per_sec: a.search_per_sec,
            daily_limit: a.daily_limit,
            retry_after_secs: a.retry_after_secs,
            search_rate_limit_headers: a.search_rate_limit_headers,
            latency_ms: a.latency_ms,
            error_rate: a.error_rate,
            dirty_share: a.dirty_share,
            tie_share: a.tie_share,
            webhook_url: a.webhook_url,
            webhook_secret: a.webhook_secret,
            webhook_batch_max: a.webhook_batch_max,
            webhook_flush_ms: a.webhook_flush_ms,
            webhook_duplicate_rate: a.webhook_duplicate_rate,
            webhook_shuffle: a.webhook_shuffle,
            webhook_timeout_ms: a.webhook_timeout_ms,
            webhook_retry_ms: a.webhook_retry_ms,
            webhook_concurrency: a.webhook_concurrency,
        }
    }
}
