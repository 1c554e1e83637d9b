//! Client settings: where the org is, how to authenticate, the API version, TLS trust, timeouts, retries
//! and the API budget.

use std::path::Path;
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use crate::wire::DEFAULT_API_VERSION;

/// How the client obtains a session.
#[derive(Debug, Clone)]
pub enum AuthConfig {
    /// A session id obtained elsewhere, used with [`ClientConfig::instance_url`]; it cannot be renewed, so an
    /// expired one surfaces as [`super::ClientError::InvalidSession`].
    AccessToken {
        /// The session id.
        token: SecretString,
    },
    /// OAuth 2.0 client credentials (`grant_type=client_credentials`) against the My Domain host.
    ClientCredentials {
        /// Consumer key of the connected app.
        client_id: String,
        /// Consumer secret.
        client_secret: SecretString,
    },
    /// OAuth 2.0 JWT bearer (`urn:ietf:params:oauth:grant-type:jwt-bearer`), RS256 assertion.
    JwtBearer {
        /// Consumer key (`iss`).
        client_id: String,
        /// Integration user name (`sub`).
        username: String,
        /// RSA private key, PEM (PKCS#1 or PKCS#8).
        private_key_pem: SecretString,
        /// `aud` claim: `https://login.salesforce.com` (or `https://test.salesforce.com`); `None` uses the
        /// login URL's origin.
        audience: Option<String>,
    },
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Host of `/services/oauth2/token`: the My Domain URL for client credentials,
    /// `https://login.salesforce.com` for JWT bearer.
    pub login_url: Url,
    /// The org's instance URL; required with [`AuthConfig::AccessToken`], otherwise taken from the token
    /// answer.
    pub instance_url: Option<Url>,
    /// How to authenticate.
    pub auth: AuthConfig,
    /// REST API version without `v`, e.g. `62.0`.
    pub api_version: String,
    /// Extra CA certificate(s) to trust (PEM bytes), e.g. the simulator's.
    pub ca_pem: Option<Vec<u8>>,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Query batch size sent as `Sforce-Query-Options: batchSize=N` (200..=2000; `None` = server default).
    pub query_batch_size: Option<u32>,
    /// Share of the org's daily API allowance this client may use (0..=1); above it calls wait.
    pub budget_share: f64,
    /// While over budget, how long to wait between looks at the usage.
    pub budget_recheck: Duration,
    /// Give up waiting for budget after this long with [`super::ClientError::BudgetExhausted`]
    /// (`None` = wait for as long as it takes).
    pub budget_wait_max: Option<Duration>,
    /// Retries of a retriable failure (503, timeout, dropped connection) before giving up.
    pub max_retries: u32,
    /// First backoff; doubles per retry, with jitter, capped at `backoff_max`.
    pub backoff_base: Duration,
    /// Longest backoff.
    pub backoff_max: Duration,
}

impl ClientConfig {
    /// Defaults for everything but where and how to log in.
    pub fn new(login_url: Url, auth: AuthConfig) -> Self {
        Self {
            login_url,
            instance_url: None,
            auth,
            api_version: DEFAULT_API_VERSION.to_string(),
            ca_pem: None,
            request_timeout: Duration::from_secs(60),
            query_batch_size: None,
            budget_share: 0.8,
            budget_recheck: Duration::from_secs(60),
            budget_wait_max: None,
            max_retries: 5,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
        }
    }

    /// A given session id on a given instance.
    pub fn with_access_token(instance_url: Url, token: SecretString) -> Self {
        let mut c = Self::new(instance_url.clone(), AuthConfig::AccessToken { token });
        c.instance_url = Some(instance_url);
        c
    }

    /// Reads the CA file into [`ClientConfig::ca_pem`].
    pub fn with_ca_file(mut self, path: &Path) -> Result<Self, crate::tls::TlsError> {
        self.ca_pem = Some(crate::tls::read_ca_file(path)?);
        Ok(self)
    }

    /// Checks values that would misbehave silently.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.budget_share) {
            return Err(format!(
                "budget_share must be within 0..=1, got {}",
                self.budget_share
            ));
        }
        if let Some(b) = self.query_batch_size {
            if !(200..=2000).contains(&b) {
                return Err(format!(
                    "query_batch_size must be within 200..=2000, got {b}"
                ));
            }
        }
        if matches!(self.auth, AuthConfig::AccessToken { .. }) && self.instance_url.is_none() {
            return Err("an access token needs instance_url".into());
        }
        let v = self.api_version.trim_start_matches('v');
        if v.split_once('.')
            .is_none_or(|(a, b)| a.parse::<u32>().is_err() || b.parse::<u32>().is_err())
        {
            return Err(format!(
                "api_version must look like 62.0, got {}",
                self.api_version
            ));
        }
        Ok(())
    }
}
