//! Faults, authentication, HubSpot's rate limits and request statistics, as two axum middlewares.
//!
//! [`api_layer`] runs before every `/crm/` and `/oauth/` handler (never before `/sim/` control endpoints), in
//! the order HubSpot's front door would: added latency; injected faults (a hang longer than any client timeout,
//! a 5xx, a 429 storm, a forced 401 `EXPIRED_AUTHENTICATION`); then, for `/crm/` only, the bearer token
//! check and the limits — search's per-second limit (`SECONDLY`), the rolling 10-second limit
//! (`TEN_SECONDLY_ROLLING`) and the daily limit (`DAILY`) — answering 429 with HubSpot's JSON body and adding the
//! `X-HubSpot-RateLimit-*` headers to every non-search answer. [`stats_layer`] wraps everything and counts
//! requests by route and status, and 429s by policy, for `/sim/stats`.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::error::ApiError;
use super::Shared;
use crate::wire::ErrorBody;

/// Fault and limit settings, changeable at run time through `POST /sim/faults`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultSettings {
    /// Latency added to each API request, ms.
    pub latency_ms: u64,
    /// Share of API requests answered 500/502/503.
    pub error_rate: f64,
    /// The next N API requests get a 5xx.
    pub fail_next: u32,
    /// The next N API requests get a 429 (a storm), with `rate_limit_next_policy`.
    pub rate_limit_next: u32,
    /// `policyName` of the forced 429s: `TEN_SECONDLY_ROLLING`, `SECONDLY` or `DAILY`.
    pub rate_limit_next_policy: String,
    /// The next N API requests hang for `hang_ms` before being answered.
    pub hang_next: u32,
    /// Share of API requests that hang.
    pub hang_rate: f64,
    /// How long a hang lasts, ms.
    pub hang_ms: u64,
    /// The next N API requests get 401 `EXPIRED_AUTHENTICATION` whatever their token.
    pub unauthorized_next: u32,
    /// `Retry-After` seconds sent with 429s (none by default).
    pub retry_after_secs: Option<u64>,
    /// Requests per rolling 10 s (0 = unlimited).
    pub ten_secondly_limit: u32,
    /// Search requests per second (0 = unlimited).
    pub search_per_sec: u32,
    /// Requests per day (0 = unlimited).
    pub daily_limit: u64,
    /// Rate-limit headers on search answers too.
    pub search_rate_limit_headers: bool,
}

/// Partial update of [`FaultSettings`]; absent fields keep their value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct FaultsPatch {
    pub latency_ms: Option<u64>,
    pub error_rate: Option<f64>,
    pub fail_next: Option<u32>,
    pub rate_limit_next: Option<u32>,
    pub rate_limit_next_policy: Option<String>,
    pub hang_next: Option<u32>,
    pub hang_rate: Option<f64>,
    pub hang_ms: Option<u64>,
    pub unauthorized_next: Option<u32>,
    /// `0` removes the header.
    pub retry_after_secs: Option<u64>,
    pub ten_secondly_limit: Option<u32>,
    pub search_per_sec: Option<u32>,
    pub daily_limit: Option<u64>,
    pub search_rate_limit_headers: Option<bool>,
}

/// A sliding-window counter.
#[derive(Debug, Default)]
struct Window {
    hits: VecDeque<Instant>,
}

impl Window {
    fn count(&mut self, now: Instant, span: Duration) -> usize {
        while self
            .hits
            .front()
            .is_some_and(|t| now.duration_since(*t) >= span)
        {
            self.hits.pop_front();
        }
        self.hits.len()
    }
}

/// Settings plus the state behind them.
#[derive(Debug)]
pub struct FaultState {
    /// Current settings.
    pub settings: FaultSettings,
    rng: ChaCha8Rng,
    ten: Window,
    search: Window,
    day: (i64, u64),
}

impl FaultState {
    /// Initial state; the RNG is seeded so a fault sequence is reproducible for a given request order.
    pub fn new(settings: FaultSettings, seed: u64) -> Self {
        Self {
            settings,
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0xfa17),
            ten: Window::default(),
            search: Window::default(),
            day: (0, 0),
        }
    }

    /// Applies a patch, validating rates and policy names.
    pub fn apply(&mut self, p: FaultsPatch) -> Result<(), ApiError> {
        for r in [p.error_rate, p.hang_rate].into_iter().flatten() {
            if !(0.0..=1.0).contains(&r) {
                return Err(ApiError::validation(format!(
                    "rates must be within 0..=1, got {r}"
                )));
            }
        }
        if let Some(pol) = &p.rate_limit_next_policy {
            if !["TEN_SECONDLY_ROLLING", "SECONDLY", "DAILY"].contains(&pol.as_str()) {
                return Err(ApiError::validation(format!("unknown policy {pol}")));
            }
        }
        let s = &mut self.settings;
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = p.$f { s.$f = v; } )* };
        }
        set!(
            latency_ms,
            error_rate,
            fail_next,
            rate_limit_next,
            rate_limit_next_policy,
            hang_next,
            hang_rate,
            hang_ms,
            unauthorized_next,
            ten_secondly_limit,
            search_per_sec,
            daily_limit,
            search_rate_limit_headers
        );
        if let Some(v) = p.retry_after_secs {
            s.retry_after_secs = (v > 0).then_some(v);
        }
        Ok(())
    }

    /// Counts one API request against the limits; the policy it breaks, if any. Refused requests do not
    /// count (HubSpot counts only what it served).
    fn take(&mut self, search: bool, now: Instant) -> Option<&'static str> {
        let s = &self.settings;
        let today = chrono::Utc::now().timestamp().div_euclid(86_400);
        if self.day.0 != today {
            self.day = (today, 0);
        }
        if s.daily_limit > 0 && self.day.1 >= s.daily_limit {
            return Some("DAILY");
        }
        if search {
            if s.search_per_sec > 0 {
                if self.search.count(now, Duration::from_secs(1)) >= s.search_per_sec as usize {
                    return Some("SECONDLY");
                }
                // Only a limited window is kept (and trimmed), so an unlimited one cannot grow forever.
                self.search.hits.push_back(now);
            }
        } else {
            if s.ten_secondly_limit > 0 {
                if self.ten.count(now, Duration::from_secs(10)) >= s.ten_secondly_limit as usize {
                    return Some("TEN_SECONDLY_ROLLING");
                }
                self.ten.hits.push_back(now);
            }
        }
        self.day.1 += 1;
        None
    }

    /// The `X-HubSpot-RateLimit-*` headers as of now.
    fn headers(&mut self, now: Instant) -> Vec<(&'static str, u64)> {
        let s = &self.settings;
        let mut h = Vec::new();
        if s.ten_secondly_limit > 0 {
            let used = self.ten.count(now, Duration::from_secs(10)) as u64;
            let max = u64::from(s.ten_secondly_limit);
            h.push(("x-hubspot-ratelimit-interval-milliseconds", 10_000));
            h.push(("x-hubspot-ratelimit-max", max));
            h.push(("x-hubspot-ratelimit-remaining", max.saturating_sub(used)));
        }
        if s.daily_limit > 0 {
            h.push(("x-hubspot-ratelimit-daily", s.daily_limit));
            h.push((
                "x-hubspot-ratelimit-daily-remaining",
                s.daily_limit.saturating_sub(self.day.1),
            ));
        }
        h
    }
}

/// Webhook delivery counters.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct WebhookStats {
    /// Events produced by writes while a target was configured.
    pub events: u64,
    /// Extra copies of events injected as duplicates.
    pub duplicates: u64,
    /// Batches formed (each delivered at least once).
    pub batches: u64,
    /// HTTP requests made (first tries and retries).
    pub deliveries: u64,
    /// Requests that were retries.
    pub retries: u64,
    /// Batches acknowledged with a 2xx.
    pub delivered: u64,
    /// Requests that failed (non-2xx, error, or slower than the timeout).
    pub failed_attempts: u64,
    /// Of those, the ones that timed out.
    pub timeouts: u64,
    /// Batches given up after the last retry.
    pub given_up: u64,
}

/// Request counts by route and status.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    /// Every request seen.
    pub total_requests: u64,
    /// Counts by route label (e.g. `search/contacts`, `batch/read/contacts`, `oauth/token`) then status.
    pub requests: BTreeMap<String, BTreeMap<String, u64>>,
    /// 429s by `policyName`.
    pub rate_limited: BTreeMap<String, u64>,
    /// OAuth access tokens issued.
    pub tokens_issued: u64,
    /// Webhook deliveries.
    pub webhooks: WebhookStats,
}

impl Stats {
    /// Requests of a route that got a status (`"200"`, `"429"`, ...).
    pub fn count(&self, route: &str, status: &str) -> u64 {
        self.requests
            .get(route)
            .and_then(|m| m.get(status))
            .copied()
            .unwrap_or(0)
    }

    /// Requests of a route, whatever the status.
    pub fn route_total(&self, route: &str) -> u64 {
        self.requests
            .get(route)
            .map(|m| m.values().sum())
            .unwrap_or(0)
    }
}

/// Stable label of a request path for `/sim/stats`.
pub fn route_label(path: &str) -> String {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["sim", rest @ ..] => format!("sim/{}", rest.first().copied().unwrap_or("")),
        ["oauth", _, "token"] => "oauth/token".into(),
        ["crm", "v3", "objects", t] => format!("objects/{t}"),
        ["crm", "v3", "objects", t, "search"] => format!("search/{t}"),
        ["crm", "v3", "objects", t, "batch", op] => format!("batch/{op}/{t}"),
        ["crm", "v3", "objects", t, "merge"] => format!("merge/{t}"),
        ["crm", "v3", "objects", t, _id] => format!("objects/{t}/id"),
        ["crm", "v3", "properties", t, ..] => format!("properties/{t}"),
        _ => "other".into(),
    }
}

fn is_search(path: &str) -> bool {
    path.starts_with("/crm/") && path.ends_with("/search")
}

/// Outermost middleware: counts every request by route and final status.
pub async fn stats_layer(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let label = route_label(req.uri().path());
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    let mut st = s.stats.lock();
    st.total_requests += 1;
    *st.requests
        .entry(label)
        .or_default()
        .entry(status)
        .or_default() += 1;
    resp
}

/// HubSpot's 429 answer for a policy.
pub fn rate_limited(policy: &str, retry_after: Option<u64>) -> Response {
    let what = policy.to_lowercase();
    let body = ErrorBody {
        status: "error".into(),
        message: format!("You have reached your {what} limit."),
        correlation_id: Some(uuid::Uuid::new_v4().to_string()),
        category: Some("RATE_LIMITS".into()),
        error_type: Some("RATE_LIMIT".into()),
        policy_name: Some(policy.to_string()),
        ..Default::default()
    };
    let mut resp = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// HubSpot's 401 answers.
pub fn unauthorized(expired: bool) -> Response {
    let e = if expired {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "EXPIRED_AUTHENTICATION",
            "The OAuth token used to make this call expired 0 minute(s) ago.",
        )
    } else {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "INVALID_AUTHENTICATION",
            "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
        )
    };
    e.into_response()
}

fn bearer(h: &HeaderMap) -> Option<&str> {
    h.get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

enum Verdict {
    Pass,
    Fail(StatusCode),
    RateLimited(String),
    Unauthorized,
}

/// Fault, auth and limit middleware for `/crm/` and `/oauth/` paths.
pub async fn api_layer(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if path.starts_with("/sim/") {
        return next.run(req).await;
    }
    let (latency, hang) = {
        let mut f = s.faults.lock();
        let roll: f64 = f.rng.random();
        let hang = if f.settings.hang_next > 0 {
            f.settings.hang_next -= 1;
            true
        } else {
            roll < f.settings.hang_rate
        };
        (f.settings.latency_ms, hang.then_some(f.settings.hang_ms))
    };
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    if let Some(ms) = hang {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let api = path.starts_with("/crm/");
    let search = is_search(&path);
    let verdict = {
        let mut f = s.faults.lock();
        let roll: f64 = f.rng.random();
        if f.settings.fail_next > 0 || roll < f.settings.error_rate {
            f.settings.fail_next = f.settings.fail_next.saturating_sub(1);
            let codes = [
                StatusCode::INTERNAL_SERVER_ERROR,
                StatusCode::BAD_GATEWAY,
                StatusCode::SERVICE_UNAVAILABLE,
            ];
            let i = f.rng.random_range(0..codes.len());
            Verdict::Fail(codes[i])
        } else if api && f.settings.rate_limit_next > 0 {
            f.settings.rate_limit_next -= 1;
            Verdict::RateLimited(f.settings.rate_limit_next_policy.clone())
        } else if api && f.settings.unauthorized_next > 0 {
            f.settings.unauthorized_next -= 1;
            Verdict::Unauthorized
        } else {
            Verdict::Pass
        }
    };
    let retry_after = s.faults.lock().settings.retry_after_secs;
    match verdict {
        Verdict::Pass => {}
        Verdict::Fail(status) => {
            return ApiError::new(
                status,
                "INTERNAL_ERROR",
                format!("Simulated server error ({})", status.as_u16()),
            )
            .into_response()
        }
        Verdict::RateLimited(policy) => {
            *s.stats
                .lock()
                .rate_limited
                .entry(policy.clone())
                .or_default() += 1;
            return rate_limited(&policy, retry_after);
        }
        Verdict::Unauthorized => return unauthorized(true),
    }
    if !api {
        return next.run(req).await;
    }
    match s
        .auth
        .lock()
        .check(bearer(req.headers()), std::time::Instant::now())
    {
        Ok(()) => {}
        Err(expired) => return unauthorized(expired),
    }
    let now = Instant::now();
    let broken = s.faults.lock().take(search, now);
    if let Some(policy) = broken {
        *s.stats
            .lock()
            .rate_limited
            .entry(policy.to_string())
            .or_default() += 1;
        let mut resp = rate_limited(policy, retry_after);
        add_headers(&s, &mut resp, now);
        return resp;
    }
    let mut resp = next.run(req).await;
    if !search || s.faults.lock().settings.search_rate_limit_headers {
        add_headers(&s, &mut resp, now);
    }
    resp
}

fn add_headers(s: &Shared, resp: &mut Response, now: Instant) {
    let h = s.faults.lock().headers(now);
    for (name, v) in h {
        resp.headers_mut().insert(name, HeaderValue::from(v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> FaultSettings {
        FaultSettings {
            latency_ms: 0,
            error_rate: 0.0,
            fail_next: 0,
            rate_limit_next: 0,
            rate_limit_next_policy: "TEN_SECONDLY_ROLLING".into(),
            hang_next: 0,
            hang_rate: 0.0,
            hang_ms: 0,
            unauthorized_next: 0,
            retry_after_secs: None,
            ten_secondly_limit: 3,
            search_per_sec: 2,
            daily_limit: 5,
            search_rate_limit_headers: false,
        }
    }

    #[test]
    fn labels_group_requests_by_route() {
        assert_eq!(route_label("/crm/v3/objects/contacts"), "objects/contacts");
        assert_eq!(
            route_label("/crm/v3/objects/contacts/search"),
            "search/contacts"
        );
        assert_eq!(
            route_label("/crm/v3/objects/2-12345678/batch/read"),
            "batch/read/2-12345678"
        );
        assert_eq!(route_label("/crm/v3/objects/deals/123"), "objects/deals/id");
        assert_eq!(
            route_label("/crm/v3/properties/contacts"),
            "properties/contacts"
        );
        assert_eq!(route_label("/oauth/v1/token"), "oauth/token");
        assert_eq!(route_label("/sim/stats"), "sim/stats");
    }

    #[tokio::test(start_paused = true)]
    async fn windows_roll_and_the_day_runs_out() {
        let mut f = FaultState::new(settings(), 1);
        let t0 = Instant::now();
        assert_eq!(f.take(false, t0), None);
        assert_eq!(f.take(false, t0), None);
        assert_eq!(f.take(false, t0), None);
        assert_eq!(f.take(false, t0), Some("TEN_SECONDLY_ROLLING"));
        let h = f.headers(t0);
        assert!(h.contains(&("x-hubspot-ratelimit-remaining", 0)));
        assert!(h.contains(&("x-hubspot-ratelimit-daily-remaining", 2)));
        assert_eq!(f.take(true, t0), None);
        assert_eq!(f.take(true, t0), None);
        assert_eq!(f.take(true, t0), Some("DAILY"), "five served today");
        f.settings.daily_limit = 0;
        assert_eq!(f.take(true, t0), Some("SECONDLY"));
        let later = t0 + Duration::from_secs(10);
        assert_eq!(f.take(false, later), None, "the 10 s window rolled");
        assert_eq!(f.take(true, later), None);
    }
}
