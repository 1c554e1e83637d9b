//! Client settings and credentials, parsed at the edge so the rest of the client receives valid values.

use std::fmt;
use std::time::Duration;

use secrecy::SecretString;

use super::retry::RetryPolicy;

/// The four OAuth/API credentials. `Debug` shows only the client id and the user name.
#[derive(Clone)]
pub struct Credentials {
    /// OAuth client id (not secret, but kept out of URLs anyway).
    pub client_id: String,
    /// OAuth client secret.
    pub client_secret: SecretString,
    /// API user name.
    pub username: String,
    /// API user password.
    pub password: SecretString,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .finish()
    }
}

/// How the client talks to Bullhorn.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Discovery URL ending in `/rest-services` (`BULLHORN_REST_URL`); `loginInfo` is asked there and a 307 to
    /// the right data center is followed.
    pub rest_url: String,
    /// Who logs in.
    pub credentials: Credentials,
    /// Client-side budget of REST requests per minute (Bullhorn allows 1,500 by default; stay under it).
    pub requests_per_minute: u32,
    /// Burst allowed by the per-minute budget, requests. Small, so the budget is spread over the minute
    /// instead of being spent in the first second.
    pub burst: u32,
    /// REST requests in flight at once.
    pub max_concurrent_requests: usize,
    /// Whole-request timeout (connect, send, read the body).
    pub request_timeout: Duration,
    /// Session lifetime asked of `/login` (`ttl`), minutes.
    pub session_ttl_minutes: u32,
    /// Renew the session this long before the earlier of the access-token and session expiry.
    pub refresh_margin: Duration,
    /// Retry and backoff settings.
    pub retry: RetryPolicy,
}

impl ClientConfig {
    /// Defaults for everything but the URL and the credentials.
    pub fn new(rest_url: impl Into<String>, credentials: Credentials) -> Self {
        Self {
            rest_url: rest_url.into(),
            credentials,
            requests_per_minute: 1_400,
            burst: 25,
            max_concurrent_requests: 8,
            request_timeout: Duration::from_secs(30),
            session_ttl_minutes: 10,
            refresh_margin: Duration::from_secs(60),
            retry: RetryPolicy::default(),
        }
    }
}
