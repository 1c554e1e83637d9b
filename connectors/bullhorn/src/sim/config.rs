//! Simulator configuration: [`SimArgs`] is the `crmflow sim bullhorn` command line (clap), [`SimConfig`] the
//! same knobs as a plain struct that tests build in code (`SimConfig::for_tests()`).
//!
//! Every behaviour the reference marks [U] (unconfirmed) is a knob here with the most likely value as default:
//! session TTL and sliding, access-token reuse, the soft-delete event kind, the empty event poll, how many
//! event batches can be re-got, and whether 429s carry `Retry-After`.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::events::EmptyPoll;
use super::store::SoftDeleteEvent;

/// Default OAuth client id.
pub const DEFAULT_CLIENT_ID: &str = "crmflow-sim-client";
/// Default OAuth client secret.
pub const DEFAULT_CLIENT_SECRET: &str = "crmflow-sim-secret";
/// Default API user name.
pub const DEFAULT_USERNAME: &str = "crmflow";
/// Default API user password.
pub const DEFAULT_PASSWORD: &str = "crmflow-password";

/// Command line of `crmflow sim bullhorn`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8181")]
    pub listen: SocketAddr,
    /// Seed of the generated data: the same seed gives the same records.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Number of candidates to generate.
    #[arg(long, default_value_t = 10_000)]
    pub candidates: usize,
    /// Number of job orders to generate.
    #[arg(long, default_value_t = 1_000)]
    pub job_orders: usize,
    /// Background inserts, updates and soft deletes per second (0 = none).
    #[arg(long, default_value_t = 0.0)]
    pub changes_per_sec: f64,
    /// Latency added to every API request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Share of API requests answered with a random 500 or 503 (0..=1).
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Share of API requests whose connection is closed without an answer (0..=1).
    #[arg(long, default_value_t = 0.0)]
    pub drop_rate: f64,
    /// REST requests allowed per minute before 429 (0 = unlimited).
    #[arg(long, default_value_t = 1_500)]
    pub rate_limit_per_min: u32,
    /// Send `Retry-After: N` seconds with 429 answers (Bullhorn documents none).
    #[arg(long)]
    pub retry_after_secs: Option<u64>,
    /// Live REST sessions allowed; a login beyond this gets 429.
    #[arg(long, default_value_t = 50)]
    pub max_concurrent_sessions: usize,
    /// OAuth client id.
    #[arg(long, default_value = DEFAULT_CLIENT_ID)]
    pub client_id: String,
    /// OAuth client secret.
    #[arg(long, default_value = DEFAULT_CLIENT_SECRET)]
    pub client_secret: String,
    /// API user name.
    #[arg(long, default_value = DEFAULT_USERNAME)]
    pub username: String,
    /// API user password.
    #[arg(long, default_value = DEFAULT_PASSWORD)]
    pub password: String,
    /// Corporation token in session URLs (default `sim{seed}`).
    #[arg(long)]
    pub corp_token: Option<String>,
    /// Session lifetime when `/login` gets no `ttl`, in minutes.
    #[arg(long, default_value_t = 10)]
    pub session_ttl_minutes: u64,
    /// Push session expiry forward on every request.
    #[arg(long)]
    pub session_sliding: bool,
    /// Let one OAuth access token open several sessions (default: single use).
    #[arg(long)]
    pub access_token_reusable: bool,
    /// How many past event batches per subscription can be re-got with `requestId`.
    #[arg(long, default_value_t = 10)]
    pub event_requestid_depth: usize,
    /// Largest `maxEvents` honoured per poll.
    #[arg(long, default_value_t = 100)]
    pub max_events_per_poll: usize,
    /// Most event subscriptions allowed.
    #[arg(long, default_value_t = 50)]
    pub max_subscriptions: usize,
    /// Event emitted by a soft delete.
    #[arg(long, value_enum, default_value_t = SoftDeleteEvent::Deleted)]
    pub soft_delete_event: SoftDeleteEvent,
    /// Answer to an event poll with no events.
    #[arg(long, value_enum, default_value_t = EmptyPoll::EmptyBody)]
    pub empty_poll: EmptyPoll,
    /// Share of generated records written by bulk imports (same `dateLastModified` millisecond).
    #[arg(long, default_value_t = 0.3)]
    pub tie_share: f64,
    /// Share of generated records with dirty data (missing email, malformed phone, odd characters, ...).
    #[arg(long, default_value_t = 0.08)]
    pub dirty_share: f64,
}

/// Simulator settings; see [`SimArgs`] for the meaning of each field.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Data seed.
    pub seed: u64,
    /// Candidates generated.
    pub candidates: usize,
    /// Job orders generated.
    pub job_orders: usize,
    /// Background changes per second.
    pub changes_per_sec: f64,
    /// Added latency, ms.
    pub latency_ms: u64,
    /// Random 5xx share.
    pub error_rate: f64,
    /// Dropped-connection share.
    pub drop_rate: f64,
    /// REST requests per minute (0 = unlimited).
    pub rate_limit_per_min: u32,
    /// `Retry-After` seconds on 429.
    pub retry_after_secs: Option<u64>,
    /// Live sessions allowed.
    pub max_concurrent_sessions: usize,
    /// OAuth client id.
    pub client_id: String,
    /// OAuth client secret.
    pub client_secret: String,
    /// API user name.
    pub username: String,
    /// API user password.
    pub password: String,
    /// Corp token (`None` = `sim{seed}`).
    pub corp_token: Option<String>,
    /// Default session TTL, minutes.
    pub session_ttl_minutes: u64,
    /// Sliding session expiry.
    pub session_sliding: bool,
    /// Access token usable for several logins.
    pub access_token_reusable: bool,
    /// Access-token lifetime, seconds (`expires_in`).
    pub access_token_ttl_secs: u64,
    /// Authorization-code lifetime, seconds.
    pub auth_code_ttl_secs: u64,
    /// Re-gettable event batches per subscription.
    pub event_requestid_depth: usize,
    /// Events per poll at most.
    pub max_events_per_poll: usize,
    /// Subscriptions at most.
    pub max_subscriptions: usize,
    /// Soft-delete event kind.
    pub soft_delete_event: SoftDeleteEvent,
    /// Empty-poll answer.
    pub empty_poll: EmptyPoll,
    /// Bulk-import share.
    pub tie_share: f64,
    /// Dirty-record share.
    pub dirty_share: f64,
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
        // Every field has a default, so parsing an empty command line cannot fail.
        let m = cmd
            .no_binary_name(true)
            .get_matches_from(Vec::<String>::new());
        Self::from_arg_matches(&m).unwrap_or_else(|e| panic!("SimArgs defaults: {e}"))
    }
}

impl SimConfig {
    /// Small, fast, fault-free settings for tests: port 0, 200 candidates, 50 job orders, no rate limit.
    pub fn for_tests() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            candidates: 200,
            job_orders: 50,
            rate_limit_per_min: 0,
            ..Self::default()
        }
    }

    /// The corp token used in session URLs.
    pub fn corp_token(&self) -> String {
        self.corp_token
            .clone()
            .unwrap_or_else(|| format!("sim{}", self.seed))
    }

    /// Checks ranges that would otherwise misbehave silently.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("error_rate", self.error_rate),
            ("drop_rate", self.drop_rate),
            ("tie_share", self.tie_share),
            ("dirty_share", self.dirty_share),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{name} must be within 0..=1, got {v}"));
            }
        }
        if self.changes_per_sec < 0.0 || !self.changes_per_sec.is_finite() {
            return Err("changes_per_sec must be >= 0".into());
        }
        Ok(())
    }
}

impl From<SimArgs> for SimConfig {
    fn from(a: SimArgs) -> Self {
        Self {
            listen: a.listen,
            seed: a.seed,
            candidates: a.candidates,
            job_orders: a.job_orders,
            changes_per_sec: a.changes_per_sec,
            latency_ms: a.latency_ms,
            error_rate: a.error_rate,
            drop_rate: a.drop_rate,
            rate_limit_per_min: a.rate_limit_per_min,
            retry_after_secs: a.retry_after_secs,
            max_concurrent_sessions: a.max_concurrent_sessions,
            client_id: a.client_id,
            client_secret: a.client_secret,
            username: a.username,
            password: a.password,
            corp_token: a.corp_token,
            session_ttl_minutes: a.session_ttl_minutes,
            session_sliding: a.session_sliding,
            access_token_reusable: a.access_token_reusable,
            access_token_ttl_secs: 600,
            auth_code_ttl_secs: 300,
            event_requestid_depth: a.event_requestid_depth,
            max_events_per_poll: a.max_events_per_poll,
            max_subscriptions: a.max_subscriptions,
            soft_delete_event: a.soft_delete_event,
            empty_poll: a.empty_poll,
            tie_share: a.tie_share,
            dirty_share: a.dirty_share,
        }
    }
}
