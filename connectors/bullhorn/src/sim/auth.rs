//! Bullhorn's authentication, simulated: data-center discovery (`loginInfo`), the OAuth authorization-code
//! flow (`/oauth/authorize`, `/oauth/token`), REST login/ping/logout and session checks.
//!
//! State lives in [`AuthState`]: authorization codes, access tokens and refresh tokens are single-use (a second
//! use gets `invalid_grant` or the invalid-token 400), sessions expire after their TTL (optionally sliding) and
//! can all be expired at once by the fault controls. Session tokens are accepted as a `BhRestToken` query
//! parameter, a `BhRestToken`/`BHRestToken` header or a cookie, as the real API does.

use std::collections::{HashMap, HashSet};

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde_json::json;

use super::error::ApiError;
use super::store::now_ms;
use super::Shared;
use crate::wire::{
    LoginInfo, LoginResponse, LogoutResponse, OAuthError, PingResponse, TokenResponse,
    INVALID_OAUTH_TOKEN_KEY,
};

/// Largest `ttl` (minutes) a login may ask for, as in Bullhorn's SDK.
pub const MAX_TTL_MINUTES: u64 = 2880;

/// One REST session.
#[derive(Debug, Clone)]
pub struct Session {
    /// Expiry, epoch ms.
    pub expires: i64,
    /// Lifetime, ms (used to slide the expiry when configured).
    pub ttl_ms: i64,
}

/// Tokens and sessions.
#[derive(Debug, Default)]
pub struct AuthState {
    /// Counter used as the `n:` prefix of codes and tokens.
    seq: u64,
    /// Unused authorization codes → expiry (ms).
    codes: HashMap<String, i64>,
    /// Unused access tokens → expiry (ms).
    access: HashMap<String, i64>,
    /// Unused refresh tokens.
    refresh: HashSet<String>,
    /// Live sessions by `BhRestToken`.
    pub sessions: HashMap<String, Session>,
}

impl AuthState {
    fn token(&mut self) -> String {
        self.seq += 1;
        format!("{}:{}", self.seq, uuid::Uuid::new_v4())
    }

    /// Drops every session (fault control): the next call with any token gets the 401.
    pub fn expire_sessions(&mut self) -> usize {
        let n = self.sessions.len();
        self.sessions.clear();
        n
    }

    /// Number of sessions not yet expired.
    pub fn live_sessions(&mut self) -> usize {
        let now = now_ms();
        self.sessions.retain(|_, s| s.expires > now);
        self.sessions.len()
    }

    /// Checks a session token; slides its expiry when `sliding`.
    pub fn check(&mut self, token: &str, sliding: bool) -> Result<i64, ApiError> {
        let now = now_ms();
        match self.sessions.get_mut(token) {
            Some(s) if s.expires > now => {
                if sliding {
                    s.expires = now + s.ttl_ms;
                }
                Ok(s.expires)
            }
            Some(_) => {
                self.sessions.remove(token);
                Err(ApiError::invalid_session())
            }
            None => Err(ApiError::invalid_session()),
        }
    }
}

/// Parameters of the query string and, for POSTs, of a form body (later values win).
pub fn params(query: Option<&str>, body: &[u8]) -> HashMap<String, String> {
    let mut out: HashMap<String, String> =
        url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    if !body.is_empty() {
        out.extend(url::form_urlencoded::parse(body).into_owned());
    }
    out
}

/// Session token of a request: query parameter, header, then cookie. `None` when absent.
pub fn session_token(headers: &HeaderMap, query: &HashMap<String, String>) -> Option<String> {
    if let Some(t) = query
        .get("BhRestToken")
        .or_else(|| query.get("BHRestToken"))
    {
        return Some(t.clone());
    }
    if let Some(t) = headers.get("BhRestToken").and_then(|v| v.to_str().ok()) {
        return Some(t.to_string());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case("BhRestToken"))
        .map(|(_, v)| v.to_string())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn login_page(client_id: &str, username: &str, error: bool) -> Response {
    let err = if error {
        "<p class=\"error\">Invalid credentials.</p>\n"
    } else {
        ""
    };
    let body = format!(
        "<!DOCTYPE html>\n<html><head><title>Bullhorn Login</title></head><body>\n\
         <form method=\"post\" action=\"authorize\">\n{err}\
         <input type=\"hidden\" name=\"client_id\" value=\"{}\"/>\n\
         <input type=\"hidden\" name=\"response_type\" value=\"code\"/>\n\
         <input type=\"hidden\" name=\"action\" value=\"Login\"/>\n\
         <label>Username <input type=\"text\" name=\"username\" value=\"{}\"/></label>\n\
         <label>Password <input type=\"password\" name=\"password\"/></label>\n\
         <button type=\"submit\">Login</button>\n</form></body></html>\n",
        escape(client_id),
        escape(username)
    );
    (StatusCode::OK, Html(body)).into_response()
}

fn oauth_error_page(status: StatusCode, title: &str, detail: &str) -> Response {
    let body = format!(
        "<!DOCTYPE html>\n<html><head><title>{t}</title></head><body><h1>{t}</h1><p>{d}</p></body></html>\n",
        t = escape(title),
        d = escape(detail)
    );
    (status, Html(body)).into_response()
}

fn oauth_json_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(OAuthError {
            error: error.into(),
            error_description: Some(description.into()),
        }),
    )
        .into_response()
}

/// `GET /rest-services/loginInfo?username=`: where the OAuth and REST services of this user live.
pub async fn login_info(State(s): State<Shared>, RawQuery(q): RawQuery) -> Response {
    let p = params(q.as_deref(), &[]);
    if p.get("username").is_none_or(|u| u.is_empty()) {
        return ApiError::bad_request("Missing required parameter 'username'").into_response();
    }
    let base = &s.base_url;
    Json(LoginInfo {
        ats_url: Some(base.clone()),
        core_url: Some(format!("{base}/core")),
        oauth_url: format!("{base}/oauth"),
        rest_url: format!("{base}/rest-services"),
        data_center_id: Some(1),
        super_cluster_id: Some(42),
    })
    .into_response()
}

/// `GET|POST /oauth/authorize`: checks client and credentials, then 302s with a single-use code.
pub async fn authorize(State(s): State<Shared>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let p = params(q.as_deref(), &body);
    let get = |k: &str| p.get(k).map(String::as_str).unwrap_or("");
    let cfg = &s.config;
    if get("client_id") != cfg.client_id {
        return oauth_error_page(
            StatusCode::OK,
            "Bullhorn OAuth Error - Invalid Client Id",
            "The client_id is missing or is not registered.",
        );
    }
    if get("response_type") != "code" {
        return oauth_error_page(
            StatusCode::BAD_REQUEST,
            "Bullhorn OAuth Error - Invalid Response Type",
            "response_type must be 'code'.",
        );
    }
    let (user, pass) = (get("username"), get("password"));
    if user.is_empty() && pass.is_empty() {
        return login_page(&cfg.client_id, "", false);
    }
    if user != cfg.username || pass != cfg.password || !get("action").eq_ignore_ascii_case("login")
    {
        return login_page(&cfg.client_id, user, true);
    }
    let code = {
        let mut a = s.auth.lock();
        let code = a.token();
        a.codes.insert(
            code.clone(),
            now_ms() + cfg.auth_code_ttl_secs as i64 * 1000,
        );
        code
    };
    let target = match p.get("redirect_uri").filter(|r| !r.is_empty()) {
        Some(r) => r.clone(),
        None => format!("{}/oauth/landing", s.base_url),
    };
    let mut qs = url::form_urlencoded::Serializer::new(String::new());
    qs.append_pair("code", &code)
        .append_pair("client_id", &cfg.client_id);
    if let Some(state) = p.get("state") {
        qs.append_pair("state", state);
    }
    let sep = if target.contains('?') { '&' } else { '?' };
    let location = format!("{target}{sep}{}", qs.finish());
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

/// `GET /oauth/landing`: where the code redirect ends when the client gave no `redirect_uri`.
pub async fn landing(RawQuery(q): RawQuery) -> Response {
    let p = params(q.as_deref(), &[]);
    let code = p.get("code").map(String::as_str).unwrap_or("");
    let body = format!(
        "<!DOCTYPE html>\n<html><head><title>Bullhorn OAuth - Authorized</title></head><body>\
         <p>Authorization code: <code>{}</code></p></body></html>\n",
        escape(code)
    );
    (StatusCode::OK, Html(body)).into_response()
}

/// `POST /oauth/token`: authorization-code and refresh-token grants; codes and refresh tokens are single-use.
pub async fn token(State(s): State<Shared>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let p = params(q.as_deref(), &body);
    let get = |k: &str| p.get(k).map(String::as_str).unwrap_or("");
    let cfg = &s.config;
    if get("client_id") != cfg.client_id || get("client_secret") != cfg.client_secret {
        return oauth_json_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed.",
        );
    }
    let now = now_ms();
    let mut a = s.auth.lock();
    match get("grant_type") {
        "authorization_code" => {
            let valid = a.codes.remove(get("code")).is_some_and(|exp| exp > now);
            if !valid {
                return oauth_json_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Invalid, expired, or revoked authorization code.",
                );
            }
        }
        "refresh_token" => {
            if !a.refresh.remove(get("refresh_token")) {
                return oauth_json_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Invalid, expired, or revoked refresh token.",
                );
            }
        }
        "" => {
            return oauth_json_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Missing grant_type.",
            )
        }
        other => {
            return oauth_json_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                &format!("Unsupported grant_type '{other}'."),
            )
        }
    }
    let access = a.token();
    let refresh = a.token();
    a.access.insert(
        access.clone(),
        now + cfg.access_token_ttl_secs as i64 * 1000,
    );
    a.refresh.insert(refresh.clone());
    Json(TokenResponse {
        access_token: access,
        token_type: "Bearer".into(),
        expires_in: cfg.access_token_ttl_secs,
        refresh_token: refresh,
    })
    .into_response()
}

/// `GET|POST /rest-services/login?version=*&access_token=..[&ttl=]`: opens a REST session.
pub async fn login(State(s): State<Shared>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let p = params(q.as_deref(), &body);
    let cfg = &s.config;
    let ttl_min = match p.get("ttl") {
        None => cfg.session_ttl_minutes,
        Some(t) => match t.parse::<u64>() {
            Ok(t) if t > 0 => t.min(MAX_TTL_MINUTES),
            _ => {
                return ApiError::bad_request(format!("Invalid ttl '{t}': expected minutes > 0"))
                    .into_response()
            }
        },
    };
    let now = now_ms();
    let mut a = s.auth.lock();
    let token = p.get("access_token").map(String::as_str).unwrap_or("");
    let valid = if cfg.access_token_reusable {
        a.access.get(token).is_some_and(|exp| *exp > now)
    } else {
        a.access.remove(token).is_some_and(|exp| exp > now)
    };
    if !valid {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            INVALID_OAUTH_TOKEN_KEY,
            "Invalid or expired OAuth access token.",
        )
        .into_response();
    }
    let max = s.faults.lock().settings.max_concurrent_sessions;
    if a.live_sessions() >= max {
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "errors.tooManySessions",
            format!("Too many concurrent sessions (limit {max})"),
        )
        .into_response();
    }
    let bh = uuid::Uuid::new_v4().to_string();
    let ttl_ms = ttl_min as i64 * 60_000;
    a.sessions.insert(
        bh.clone(),
        Session {
            expires: now + ttl_ms,
            ttl_ms,
        },
    );
    let cookie = format!("BhRestToken={bh}; Path=/; HttpOnly");
    (
        [(header::SET_COOKIE, cookie)],
        Json(LoginResponse {
            bh_rest_token: bh,
            rest_url: format!("{}/rest-services/{}/", s.base_url, s.corp_token),
        }),
    )
        .into_response()
}

/// `GET {restUrl}ping`: session expiry.
pub async fn ping(State(s): State<Shared>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let p = params(q.as_deref(), &[]);
    let Some(token) = session_token(&headers, &p) else {
        return ApiError::missing_session().into_response();
    };
    match s.auth.lock().sessions.get(&token) {
        Some(sess) => Json(PingResponse {
            session_expires: sess.expires,
        })
        .into_response(),
        None => ApiError::invalid_session().into_response(),
    }
}

/// `GET|POST {restUrl}logout`: ends the session.
pub async fn logout(
    State(s): State<Shared>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let p = params(q.as_deref(), &[]);
    if let Some(token) = session_token(&headers, &p) {
        s.auth.lock().sessions.remove(&token);
    }
    Json(LogoutResponse {
        logout: "OK".into(),
    })
    .into_response()
}

/// `/west/...`: a wrong data center, answering 307 to the same path on the right one.
pub async fn wrong_data_center(State(s): State<Shared>, uri: axum::http::Uri) -> Response {
    let path = uri.path().strip_prefix("/west").unwrap_or(uri.path());
    let q = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let location = format!("{}{path}{q}", s.base_url);
    (
        StatusCode::TEMPORARY_REDIRECT,
        [(header::LOCATION, location)],
        Json(json!({"errorMessage": "Wrong data center", "errorCode": 307})),
    )
        .into_response()
}
