//! Bearer tokens: a private app's fixed token, or OAuth access tokens obtained with the refresh token.
//!
//! [`TokenManager::get`] hands out the current token; an OAuth token is renewed a margin before it expires
//! (`expires_in`, 30 minutes on HubSpot) and after a 401 ([`TokenManager::renew`]). Concurrent callers that
//! hit the same 401 share one renewal through a generation number. The refresh grant is
//! `POST /oauth/v1/token`, form-encoded `grant_type=refresh_token&client_id=..&client_secret=..&refresh_token=..`
//! (secrets in the body, never in the URL). HubSpot refresh tokens are long-lived and reusable; when an answer
//! carries a new one it replaces the old.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;
use tracing::{info, warn};

use super::api::{classify, decode};
use super::config::{Auth, ClientConfig};
use super::error::{AuthError, ClientError};
use super::retry::{Attempts, Decision};
use crate::wire::TokenResponse;

/// A bearer token and when to renew it.
pub struct Token {
    /// Sent as `Authorization: Bearer`.
    pub bearer: SecretString,
    /// Increases with every renewal; a caller that saw a 401 names the generation it used.
    pub generation: u64,
    /// When to renew proactively (`None`: never, a private-app token).
    pub renew_at: Option<Instant>,
}

/// When an access token obtained at `now` with lifetime `expires_in` must be renewed: `margin` before its
/// expiry, but never sooner than half its lifetime (so a tiny lifetime does not cause a renewal storm).
pub fn renew_at(now: Instant, expires_in: Duration, margin: Duration) -> Instant {
    let lead = margin.min(expires_in / 2);
    now + (expires_in - lead)
}

/// Owns the token and renews it.
pub struct TokenManager {
    cfg: ClientConfig,
    http: reqwest::Client,
    current: RwLock<Option<Arc<Token>>>,
    renewing: tokio::sync::Mutex<RefreshState>,
}

struct RefreshState {
    /// The refresh token to use next (a new one from an answer replaces the configured one).
    refresh_token: Option<SecretString>,
    generation: u64,
}

impl TokenManager {
    /// A manager; OAuth tokens are fetched on first use.
    pub fn new(cfg: ClientConfig, http: reqwest::Client) -> Self {
        let (current, refresh_token) = match &cfg.auth {
            Auth::PrivateApp { token } => (
                Some(Arc::new(Token {
                    bearer: token.clone(),
                    generation: 0,
                    renew_at: None,
                })),
                None,
            ),
            Auth::OAuth { refresh_token, .. } => (None, Some(refresh_token.clone())),
        };
        Self {
            cfg,
            http,
            current: RwLock::new(current),
            renewing: tokio::sync::Mutex::new(RefreshState {
                refresh_token,
                generation: 0,
            }),
        }
    }

    /// The current token, renewed first when it is due.
    pub async fn get(&self) -> Result<Arc<Token>, ClientError> {
        if let Some(t) = self.current.read().as_ref() {
            if t.renew_at.is_none_or(|at| Instant::now() < at) {
                return Ok(t.clone());
            }
        }
        self.renew(None).await
    }

    /// Renews the token. `rejected`: the generation a 401 was answered for; if another caller renewed since,
    /// its token is returned instead of renewing again. A private-app token cannot be renewed: its rejection
    /// is final ([`AuthError::Rejected`]).
    pub async fn renew(&self, rejected: Option<u64>) -> Result<Arc<Token>, ClientError> {
        let Auth::OAuth {
            client_id,
            client_secret,
            ..
        } = &self.cfg.auth
        else {
            return Err(AuthError::Rejected("the private-app token was refused".into()).into());
        };
        let mut state = self.renewing.lock().await;
        if let Some(t) = self.current.read().as_ref() {
            let still_good = t.renew_at.is_none_or(|at| Instant::now() < at);
            let fresh_since = rejected.is_some_and(|g| g != t.generation);
            if fresh_since || (rejected.is_none() && still_good) {
                return Ok(t.clone());
            }
        }
        let refresh_token = state
            .refresh_token
            .clone()
            .ok_or_else(|| ClientError::Config("no refresh token".into()))?;
        let mut attempts = Attempts::default();
        let tokens = loop {
            match self.refresh(client_id, client_secret, &refresh_token).await {
                Ok(t) => break t,
                Err(error) => match self.cfg.retry.decide(&error, &mut attempts, true) {
                    Decision::Retry(delay) => {
                        warn!(%error, delay_ms = delay.as_millis() as u64, "hubspot token refresh failed, retrying");
                        tokio::time::sleep(delay).await;
                    }
                    _ => return Err(self.cfg.retry.exhausted(error, &attempts)),
                },
            }
        };
        if let Some(rt) = tokens.refresh_token.filter(|s| !s.is_empty()) {
            state.refresh_token = Some(rt.into());
        }
        state.generation += 1;
        let token = Arc::new(Token {
            bearer: tokens.access_token.into(),
            generation: state.generation,
            renew_at: Some(renew_at(
                Instant::now(),
                Duration::from_secs(tokens.expires_in),
                self.cfg.refresh_margin,
            )),
        });
        info!(
            generation = state.generation,
            expires_in_secs = tokens.expires_in,
            "hubspot access token refreshed"
        );
        *self.current.write() = Some(token.clone());
        Ok(token)
    }

    async fn refresh(
        &self,
        client_id: &str,
        client_secret: &SecretString,
        refresh_token: &SecretString,
    ) -> Result<TokenResponse, ClientError> {
        let endpoint = "oauth/token";
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("client_secret", client_secret.expose_secret()),
            ("refresh_token", refresh_token.expose_secret()),
        ];
        let resp = self
            .http
            .post(format!("{}/oauth/v1/token", self.cfg.base_url))
            .form(&form)
            .send()
            .await
            .map_err(|e| ClientError::from_reqwest(endpoint, e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .map_err(|e| ClientError::from_reqwest(endpoint, e))?;
        if (200..300).contains(&status) {
            return decode(endpoint, &body);
        }
        // The token endpoint answers 400 with `{"status":"BAD_REFRESH_TOKEN",..}` and friends.
        let err = classify(endpoint, status, &headers, &body);
        Err(match err {
            ClientError::Api {
                status: 400 | 401 | 403,
                category,
                message,
                ..
            } => {
                let what = if category.is_empty() {
                    message
                } else {
                    category
                };
                if what.contains("CLIENT") {
                    AuthError::InvalidClient(what).into()
                } else {
                    AuthError::InvalidGrant(what).into()
                }
            }
            ClientError::Unauthorized { category, .. } => AuthError::InvalidGrant(category).into(),
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn renewal_is_due_a_margin_before_expiry_but_not_before_half_life() {
        let now = Instant::now();
        assert_eq!(
            renew_at(now, Duration::from_secs(1800), Duration::from_secs(300)),
            now + Duration::from_secs(1500)
        );
        assert_eq!(
            renew_at(now, Duration::from_secs(10), Duration::from_secs(300)),
            now + Duration::from_secs(5)
        );
    }
}
