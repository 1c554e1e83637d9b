//! Simulator configuration: [`SimArgs`] is the `crmflow sim salesforce` command line, [`SimConfig`] the same
//! knobs as a struct tests build in code (`SimConfig::for_tests()`).
//!
//! Behaviour the reference marks unconfirmed is a knob with the conservative reading as default: the
//! session timeout and whether it slides, the minimum batch size, whether `/limits` counts against the
//! allowance (it does not here), the Pub/Sub retention (72 h) and keepalive interval (270 s).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Default connected-app consumer key.
pub const DEFAULT_CLIENT_ID: &str = "crmflow-sim-consumer-key";
/// Default consumer secret.
pub const DEFAULT_CLIENT_SECRET: &str = "crmflow-sim-consumer-secret";
/// Default integration user.
pub const DEFAULT_USERNAME: &str = "integration@crmflow.sim";
/// Default password.
pub const DEFAULT_PASSWORD: &str = "crmflow-password";
/// Default security token (appended to the password in SOAP logins).
pub const DEFAULT_SECURITY_TOKEN: &str = "SIMTOKEN";

/// Command line of `crmflow sim salesforce`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Address to listen on (HTTPS and gRPC on the same port; port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Contacts to generate.
    #[arg(long, default_value_t = 10_000)]
    pub contacts: usize,
    /// Positions to generate.
    #[arg(long, default_value_t = 1_000)]
    pub positions: usize,
    /// API name of the candidate object.
    #[arg(long, default_value = "Contact")]
    pub contact_object: String,
    /// API name of the position object (a custom object, `__c`).
    #[arg(long, default_value = "Position__c")]
    pub position_object: String,
    /// Write the CA certificate (PEM) clients must trust to this file.
    #[arg(long)]
    pub ca_out: Option<PathBuf>,
    /// Background writes (insert, update, delete, undelete, merge) per second (0 = none).
    #[arg(long, default_value_t = 0.0)]
    pub changes_per_sec: f64,
    /// Answer time of every REST request, in milliseconds: the answer leaves no sooner than this
    /// after the request arrived, the simulator's own work (query evaluation, rendering) included,
    /// as a real org's latency includes its compute. Injected hangs come on top.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Share of REST requests answered 503 (0..=1).
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// The org's daily API request allowance (`Sforce-Limit-Info: api-usage=N/M`).
    #[arg(long, default_value_t = 100_000)]
    pub daily_api_limit: u64,
    /// Session lifetime, in seconds.
    #[arg(long, default_value_t = 7_200)]
    pub session_ttl_secs: u64,
    /// Push a session's expiry forward on every request (Salesforce's inactivity timeout).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub session_sliding: bool,
    /// Smallest batch size honoured in `Sforce-Query-Options` (Salesforce documents 200).
    #[arg(long, default_value_t = 200)]
    pub min_batch_size: usize,
    /// Batch size without `Sforce-Query-Options`.
    #[arg(long, default_value_t = 2_000)]
    pub default_batch_size: usize,
    /// Days the generated history spans (`SystemModstamp` of generated records).
    #[arg(long, default_value_t = 20)]
    pub history_days: u32,
    /// Days `sobjects/{type}/deleted` remembers deletions.
    #[arg(long, default_value_t = 15)]
    pub deleted_retention_days: u32,
    /// Days `sobjects/{type}/updated` reaches back.
    #[arg(long, default_value_t = 30)]
    pub updated_window_days: u32,
    /// Resolution of the updated/deleted windows, in seconds (Salesforce ignores seconds: 60).
    #[arg(long, default_value_t = 60)]
    pub window_resolution_secs: u64,
    /// Seconds change events stay replayable over the Pub/Sub API.
    #[arg(long, default_value_t = 72 * 3600)]
    pub event_retention_secs: u64,
    /// Seconds between empty keepalive FetchResponses on an idle subscription.
    #[arg(long, default_value_t = 270)]
    pub keepalive_secs: u64,
    /// Most events in one FetchResponse.
    #[arg(long, default_value_t = 100)]
    pub max_events_per_response: usize,
    /// Share of generated records written by bulk loads (same `SystemModstamp` millisecond).
    #[arg(long, default_value_t = 0.3)]
    pub tie_share: f64,
    /// Share of generated records with dirty data (bad emails, odd phones, markup, stray spaces).
    #[arg(long, default_value_t = 0.08)]
    pub dirty_share: f64,
    /// Share of generated records already in the recycle bin.
    #[arg(long, default_value_t = 0.02)]
    pub deleted_share: f64,
    /// Connected-app consumer key.
    #[arg(long, default_value = DEFAULT_CLIENT_ID)]
    pub client_id: String,
    /// Consumer secret.
    #[arg(long, default_value = DEFAULT_CLIENT_SECRET)]
    pub client_secret: String,
    /// Integration user name.
    #[arg(long, default_value = DEFAULT_USERNAME)]
    pub username: String,
    /// Password.
    #[arg(long, default_value = DEFAULT_PASSWORD)]
    pub password: String,
    /// Security token (SOAP logins send password + token).
    #[arg(long, default_value = DEFAULT_SECURITY_TOKEN)]
    pub security_token: String,
    /// PEM file of the RSA public key (or certificate's key) JWT bearer assertions are verified with.
    #[arg(long)]
    pub jwt_public_key: Option<PathBuf>,
}

/// Simulator settings; see [`SimArgs`] for each field.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Data seed.
    pub seed: u64,
    /// Contacts generated.
    pub contacts: usize,
    /// Positions generated.
    pub positions: usize,
    /// Candidate object name.
    pub contact_object: String,
    /// Position object name.
    pub position_object: String,
    /// Where to write the CA PEM.
    pub ca_out: Option<PathBuf>,
    /// Background writes per second.
    pub changes_per_sec: f64,
    /// Answer time of every REST request, ms, compute included (see [`SimArgs`]).
    pub latency_ms: u64,
    /// 503 share.
    pub error_rate: f64,
    /// Daily API allowance.
    pub daily_api_limit: u64,
    /// Session lifetime, s.
    pub session_ttl_secs: u64,
    /// Sliding sessions.
    pub session_sliding: bool,
    /// Smallest batch size.
    pub min_batch_size: usize,
    /// Default batch size.
    pub default_batch_size: usize,
    /// History span, days.
    pub history_days: u32,
    /// Delete-log retention, days.
    pub deleted_retention_days: u32,
    /// `updated` reach, days.
    pub updated_window_days: u32,
    /// Window resolution, s.
    pub window_resolution_secs: u64,
    /// Event retention, s.
    pub event_retention_secs: u64,
    /// Keepalive interval, s.
    pub keepalive_secs: u64,
    /// Events per FetchResponse at most.
    pub max_events_per_response: usize,
    /// Bulk-load share.
    pub tie_share: f64,
    /// Dirty-record share.
    pub dirty_share: f64,
    /// Deleted-record share.
    pub deleted_share: f64,
    /// Consumer key.
    pub client_id: String,
    /// Consumer secret.
    pub client_secret: String,
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
    /// Security token.
    pub security_token: String,
    /// JWT verification key (PEM text).
    pub jwt_public_key_pem: Option<String>,
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

impl Default for SimConfig {
    fn default() -> Self {
        let a = SimArgs::defaults();
        Self::from_args(a).unwrap_or_else(|e| panic!("SimConfig defaults: {e}"))
    }
}

impl SimConfig {
    /// Small and fault-free: port 0, 500 contacts, 60 positions, no background writes.
    pub fn for_tests() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            contacts: 500,
            positions: 60,
            ..Self::default()
        }
    }

    /// From the command line (reads the JWT key file).
    pub fn from_args(a: SimArgs) -> Result<Self, String> {
        let jwt_public_key_pem = a
            .jwt_public_key
            .as_ref()
            .map(|p| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display())))
            .transpose()?;
        Ok(Self {
            listen: a.listen,
            seed: a.seed,
            contacts: a.contacts,
            positions: a.positions,
            contact_object: a.contact_object,
            position_object: a.position_object,
            ca_out: a.ca_out,
            changes_per_sec: a.changes_per_sec,
            latency_ms: a.latency_ms,
            error_rate: a.error_rate,
            daily_api_limit: a.daily_api_limit,
            session_ttl_secs: a.session_ttl_secs,
            session_sliding: a.session_sliding,
            min_batch_size: a.min_batch_size,
            default_batch_size: a.default_batch_size,
            history_days: a.history_days,
            deleted_retention_days: a.deleted_retention_days,
            updated_window_days: a.updated_window_days,
            window_resolution_secs: a.window_resolution_secs,
            event_retention_secs: a.event_retention_secs,
            keepalive_secs: a.keepalive_secs,
            max_events_per_response: a.max_events_per_response,
            tie_share: a.tie_share,
            dirty_share: a.dirty_share,
            deleted_share: a.deleted_share,
            client_id: a.client_id,
            client_secret: a.client_secret,
            username: a.username,
            password: a.password,
            security_token: a.security_token,
            jwt_public_key_pem,
        })
    }

    /// Checks ranges that would otherwise misbehave silently.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("error_rate", self.error_rate),
            ("tie_share", self.tie_share),
            ("dirty_share", self.dirty_share),
            ("deleted_share", self.deleted_share),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{name} must be within 0..=1, got {v}"));
            }
        }
        if !self.changes_per_sec.is_finite() || self.changes_per_sec < 0.0 {
            return Err("changes_per_sec must be >= 0".into());
        }
        if self.min_batch_size == 0 || self.default_batch_size < self.min_batch_size {
            return Err("batch sizes must satisfy 0 < min_batch_size <= default_batch_size".into());
        }
        if self.window_resolution_secs == 0 {
            return Err("window_resolution_secs must be > 0".into());
        }
        if !self.position_object.ends_with("__c") {
            return Err("position_object must be a custom object name ending in __c".into());
        }
        if self
            .contact_object
            .eq_ignore_ascii_case(&self.position_object)
        {
            return Err("contact_object and position_object must differ".into());
        }
        Ok(())
    }
}
