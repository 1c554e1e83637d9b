//! Authentication: the private-app token, OAuth access tokens issued by `POST /oauth/v1/token` (refresh-token
//! grant, form-encoded, as HubSpot's v1 token endpoint), their expiry, and HubSpot's error answers
//! (`BAD_CLIENT_ID`, `BAD_CLIENT_SECRET`, `BAD_REFRESH_TOKEN`, `BAD_GRANT_TYPE`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};

use super::Shared;
use crate::wire::{ErrorBody, TokenResponse};

/// Tokens the simulator accepts.
#[derive(Debug)]
pub struct AuthState {
    private_app_token: String,
    /// Issued access token → expiry.
    issued: HashMap<String, Instant>,
    counter: u64,
}

impl AuthState {
    /// State accepting `private_app_token`.
    pub fn new(private_app_token: String) -> Self {
        Self {
            private_app_token,
            issued: HashMap::new(),
            counter: 0,
        }
    }

    /// Checks a bearer token: `Err(true)` expired, `Err(false)` missing or unknown.
    pub fn check(&self, bearer: Option<&str>, now: Instant) -> Result<(), bool> {
        let Some(t) = bearer else { return Err(false) };
        if !self.private_app_token.is_empty() && t == self.private_app_token {
            return Ok(());
        }
        match self.issued.get(t) {
            Some(exp) if now < *exp => Ok(()),
            Some(_) => Err(true),
            None => Err(false),
        }
    }

    /// Issues an access token valid for `ttl`.
    pub fn issue(&mut self, ttl: Duration, now: Instant) -> String {
        self.counter += 1;
        let token = format!("sim-at-{}-{}", self.counter, uuid::Uuid::new_v4().simple());
        self.issued.retain(|_, exp| *exp > now);
        self.issued.insert(token.clone(), now + ttl);
        token
    }

    /// Expires every issued access token now; returns how many there were.
    pub fn expire_all(&mut self, now: Instant) -> usize {
        let n = self.issued.len();
        for exp in self.issued.values_mut() {
            *exp = now;
        }
        n
    }

    /// Access tokens still valid.
    pub fn live_tokens(&self, now: Instant) -> usize {
        self.issued.values().filter(|e| **e > now).count()
    }
}

fn oauth_error(code: &str, message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(ErrorBody {
            status: code.into(),
            message: message.into(),
            correlation_id: Some(uuid::Uuid::new_v4().to_string()),
            ..Default::default()
        }),
    )
        .into_response()
}

/// `POST /oauth/v1/token` (form-encoded).
pub async fn token(State(s): State<Shared>, Form(f): Form<HashMap<String, String>>) -> Response {
    let c = &s.config;
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    if get("grant_type") != "refresh_token" {
        return oauth_error("BAD_GRANT_TYPE", "grant_type must be refresh_token");
    }
    if get("client_id") != c.client_id {
        return oauth_error("BAD_CLIENT_ID", "missing or unknown client id");
    }
    if get("client_secret") != c.client_secret {
        return oauth_error("BAD_CLIENT_SECRET", "missing or invalid client secret");
    }
    if get("refresh_token") != c.refresh_token {
        return oauth_error("BAD_REFRESH_TOKEN", "missing or unknown refresh token");
    }
    let ttl = Duration::from_secs(c.access_token_ttl_secs);
    let access = s.auth.lock().issue(ttl, Instant::now());
    s.stats.lock().tokens_issued += 1;
    Json(TokenResponse {
        token_type: "bearer".into(),
        refresh_token: Some(c.refresh_token.clone()),
        access_token: access,
        expires_in: c.access_token_ttl_secs,
    })
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_expire() {
        let mut a = AuthState::new("pat".into());
        let now = Instant::now();
        assert_eq!(a.check(Some("pat"), now), Ok(()));
        assert_eq!(a.check(None, now), Err(false));
        assert_eq!(a.check(Some("nope"), now), Err(false));
        let t = a.issue(Duration::from_secs(60), now);
        assert_eq!(a.check(Some(&t), now), Ok(()));
        assert_eq!(a.check(Some(&t), now + Duration::from_secs(60)), Err(true));
        let t2 = a.issue(Duration::from_secs(60), now);
        assert_eq!(a.expire_all(now), 2);
        assert_eq!(a.check(Some(&t2), now), Err(true));
    }
}
