//! The REST session and the token bookkeeping behind it.
//!
//! [`TokenBook`] is the pure part: it keeps the one valid refresh token (single-use, so every grant's new one
//! replaces the old, and it is taken out before use so a failed refresh can never reuse it) and the instant at
//! which the session must be renewed — a margin before the earlier of the access-token expiry (`expires_in`)
//! and the session TTL. [`SessionManager`] does the I/O: it hands out the current [`Session`], renews it ahead
//! of expiry or after a 401 (refresh grant + login, falling back to the full flow when the refresh fails), and
//! makes concurrent callers that hit the same 401 share one renewal through a generation number.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use secrecy::SecretString;
use tokio::time::Instant;
use tracing::{info, warn};

use super::auth::{self, AuthHttp, Tokens};
use super::config::ClientConfig;
use super::error::ClientError;
use super::retry::{Attempts, Decision};
use crate::wire::LoginInfo;

/// A live REST session.
pub struct Session {
    /// `BhRestToken`, sent as a header.
    pub bh_rest_token: SecretString,
    /// Session base URL, ending in `/`.
    pub rest_url: String,
    /// Increases with every renewal; a caller that saw a 401 names the generation it used.
    pub generation: u64,
    /// When to renew proactively.
    pub renew_at: Instant,
}

/// Refresh-token and expiry bookkeeping (no I/O).
#[derive(Default)]
pub struct TokenBook {
    refresh_token: Option<SecretString>,
    renew_at: Option<Instant>,
}

impl TokenBook {
    /// Records a grant used to open a session at `now` with lifetime `session_ttl`: the grant's refresh token
    /// replaces the previous one, and renewal is due `margin` before the earlier expiry (but never sooner than
    /// half the lifetime, so a tiny TTL does not cause a renewal storm).
    pub fn record(
        &mut self,
        tokens: &Tokens,
        session_ttl: Duration,
        margin: Duration,
        now: Instant,
    ) -> Instant {
        self.refresh_token = Some(tokens.refresh_token.clone());
        let life = tokens.expires_in.min(session_ttl);
        let lead = margin.min(life / 2);
        let at = now + (life - lead);
        self.renew_at = Some(at);
        at
    }

    /// Whether the session must be renewed before the next request.
    pub fn needs_renewal(&self, now: Instant) -> bool {
        self.renew_at.is_none_or(|at| now >= at)
    }

    /// Takes the refresh token out for use; it is spent whatever the outcome.
    pub fn take_refresh_token(&mut self) -> Option<SecretString> {
        self.refresh_token.take()
    }

    /// Forgets everything (after a failed renewal, the next one starts with the full flow).
    pub fn clear(&mut self) {
        *self = Self::default();
    }
}

struct Inner {
    book: TokenBook,
    endpoints: Option<LoginInfo>,
    generation: u64,
}

/// Owns the session and renews it.
pub struct SessionManager {
    cfg: ClientConfig,
    http: AuthHttp,
    current: RwLock<Option<Arc<Session>>>,
    inner: tokio::sync::Mutex<Inner>,
}

impl SessionManager {
    /// A manager that logs in on first use.
    pub fn new(cfg: ClientConfig) -> Result<Self, ClientError> {
        let http = AuthHttp::new(cfg.request_timeout)?;
        Ok(Self {
            cfg,
            http,
            current: RwLock::new(None),
            inner: tokio::sync::Mutex::new(Inner {
                book: TokenBook::default(),
                endpoints: None,
                generation: 0,
            }),
        })
    }

    /// The current session, renewed first when it is due.
    pub async fn get(&self) -> Result<Arc<Session>, ClientError> {
        if let Some(s) = self.current.read().as_ref() {
            if Instant::now() < s.renew_at {
                return Ok(s.clone());
            }
        }
        self.renew(None).await
    }

    /// Renews the session. `rejected`: the generation a 401 was answered for; if another caller renewed
    /// since, its session is returned instead of renewing again.
    pub async fn renew(&self, rejected: Option<u64>) -> Result<Arc<Session>, ClientError> {
        let mut inner = self.inner.lock().await;
        if let Some(s) = self.current.read().as_ref() {
            let still_good = Instant::now() < s.renew_at;
            let fresh_since = rejected.is_some_and(|g| g != s.generation);
            if fresh_since || (rejected.is_none() && still_good) {
                return Ok(s.clone());
            }
        }
        let (logged, tokens, how) = match inner.book.take_refresh_token() {
            Some(rt) => match self.refresh_login(&mut inner, &rt).await {
                Ok((l, t)) => (l, t, "refresh"),
                Err(error) => {
                    warn!(%error, "bullhorn token refresh failed, logging in again");
                    let (l, t) = self.full_login(&mut inner).await?;
                    (l, t, "login")
                }
            },
            None => {
                let (l, t) = self.full_login(&mut inner).await?;
                (l, t, "login")
            }
        };
        let ttl = Duration::from_secs(u64::from(self.cfg.session_ttl_minutes) * 60);
        let renew_at = inner
            .book
            .record(&tokens, ttl, self.cfg.refresh_margin, Instant::now());
        inner.generation += 1;
        let session = Arc::new(Session {
            bh_rest_token: logged.bh_rest_token,
            rest_url: logged.rest_url,
            generation: inner.generation,
            renew_at,
        });
        info!(
            generation = inner.generation,
            via = how,
            "bullhorn session opened"
        );
        *self.current.write() = Some(session.clone());
        Ok(session)
    }

    async fn refresh_login(
        &self,
        inner: &mut Inner,
        refresh_token: &SecretString,
    ) -> Result<(auth::LoggedIn, Tokens), ClientError> {
        let endpoints = self.endpoints(inner).await?;
        let tokens = auth::refresh(
            &self.http,
            &endpoints.oauth_url,
            &self.cfg.credentials,
            refresh_token,
        )
        .await?;
        // The new refresh token is recorded even if login fails, so it is the one tried next time.
        inner
            .book
            .record(&tokens, Duration::ZERO, Duration::ZERO, Instant::now());
        let logged = auth::login(
            &self.http,
            &endpoints.rest_url,
            &tokens.access_token,
            self.cfg.session_ttl_minutes,
        )
        .await?;
        Ok((logged, tokens))
    }

    /// authorize > token > login, retried as one unit (codes and access tokens are single-use, so a step
    /// that failed half-way is redone from the start).
    async fn full_login(&self, inner: &mut Inner) -> Result<(auth::LoggedIn, Tokens), ClientError> {
        let mut attempts = Attempts::default();
        loop {
            let result = async {
                let endpoints = self.endpoints(inner).await?;
                let creds = &self.cfg.credentials;
                let code = auth::authorize(&self.http, &endpoints.oauth_url, creds).await?;
                let tokens =
                    auth::exchange_code(&self.http, &endpoints.oauth_url, creds, &code).await?;
                let logged = auth::login(
                    &self.http,
                    &endpoints.rest_url,
                    &tokens.access_token,
                    self.cfg.session_ttl_minutes,
                )
                .await?;
                Ok::<_, ClientError>((logged, tokens))
            }
            .await;
            match result {
                Ok(ok) => return Ok(ok),
                Err(error) => match self.cfg.retry.decide(&error, &mut attempts, true) {
                    Decision::Retry(delay) => {
                        warn!(attempt = attempts.total(), %error, delay_ms = delay.as_millis() as u64, "bullhorn login failed, retrying");
                        // A move of data center or a stale loginInfo is cured by asking again.
                        inner.endpoints = None;
                        tokio::time::sleep(delay).await;
                    }
                    _ => {
                        inner.book.clear();
                        return Err(self.cfg.retry.exhausted(error, &attempts));
                    }
                },
            }
        }
    }

    async fn endpoints(&self, inner: &mut Inner) -> Result<LoginInfo, ClientError> {
        if let Some(e) = &inner.endpoints {
            return Ok(e.clone());
        }
        let info = auth::login_info(
            &self.http,
            &self.cfg.rest_url,
            &self.cfg.credentials.username,
        )
        .await?;
        inner.endpoints = Some(info.clone());
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn tokens(refresh: &str, secs: u64) -> Tokens {
        Tokens {
            access_token: "a".to_string().into(),
            refresh_token: refresh.to_string().into(),
            expires_in: Duration::from_secs(secs),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn renewal_is_due_a_margin_before_the_earlier_expiry() {
        let mut book = TokenBook::default();
        let now = Instant::now();
        assert!(book.needs_renewal(now), "no session yet");
        let at = book.record(
            &tokens("r1", 600),
            Duration::from_secs(3600),
            Duration::from_secs(60),
            now,
        );
        assert_eq!(at, now + Duration::from_secs(540));
        assert!(!book.needs_renewal(now + Duration::from_secs(539)));
        assert!(book.needs_renewal(now + Duration::from_secs(540)));
        // A shorter session TTL wins over the access-token lifetime.
        let at = book.record(
            &tokens("r2", 600),
            Duration::from_secs(300),
            Duration::from_secs(60),
            now,
        );
        assert_eq!(at, now + Duration::from_secs(240));
        // A margin larger than half the lifetime is cut to half.
        let at = book.record(
            &tokens("r3", 10),
            Duration::from_secs(600),
            Duration::from_secs(60),
            now,
        );
        assert_eq!(at, now + Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn refresh_tokens_are_single_use_and_replaced() {
        let mut book = TokenBook::default();
        let now = Instant::now();
        book.record(
            &tokens("r1", 600),
            Duration::from_secs(600),
            Duration::from_secs(60),
            now,
        );
        let r1 = book.take_refresh_token().expect("r1");
        assert_eq!(r1.expose_secret(), "r1");
        assert!(
            book.take_refresh_token().is_none(),
            "a refresh token is never handed out twice"
        );
        book.record(
            &tokens("r2", 600),
            Duration::from_secs(600),
            Duration::from_secs(60),
            now,
        );
        assert_eq!(book.take_refresh_token().expect("r2").expose_secret(), "r2");
        book.clear();
        assert!(book.needs_renewal(now));
    }
}
