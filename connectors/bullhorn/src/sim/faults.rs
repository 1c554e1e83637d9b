//! Fault injection and request statistics, as two axum middlewares.
//!
//! [`fault_layer`] runs before every OAuth and REST handler (never before `/sim/...` control endpoints): it
//! adds latency, drops connections (the response body fails before a byte is written, so hyper closes the
//! socket without an answer), answers random 500/503s, and enforces the requests-per-minute budget with a token
//! bucket (429, optional `Retry-After`). Deterministic `fail_next`/`drop_next` counters let tests trigger one
//! fault exactly. [`stats_layer`] wraps everything and counts requests by endpoint and status, so every fault
//! is observable at `/sim/stats`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::Shared;

/// Fault settings, changeable at run time through `POST /sim/faults`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultSettings {
    /// REST requests per minute before 429 (0 = unlimited).
    pub rate_limit_per_min: u32,
    /// `Retry-After` seconds sent with 429 (none by default, as on Bullhorn).
    pub retry_after_secs: Option<u64>,
    /// Share of requests answered 500/503.
    pub error_rate: f64,
    /// Share of requests whose connection is dropped.
    pub drop_rate: f64,
    /// Latency added to each request, ms.
    pub latency_ms: u64,
    /// The next N requests get a 500/503 regardless of `error_rate`.
    pub fail_next: u32,
    /// The next N requests are dropped regardless of `drop_rate`.
    pub drop_next: u32,
    /// The next N REST requests get a 429 regardless of the budget.
    pub rate_limit_next: u32,
    /// Live sessions allowed before `/login` answers 429.
    pub max_concurrent_sessions: usize,
}

/// Partial update of [`FaultSettings`]; absent fields keep their value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsPatch {
    /// See [`FaultSettings::rate_limit_per_min`].
    pub rate_limit_per_min: Option<u32>,
    /// See [`FaultSettings::retry_after_secs`]; `0` removes the header.
    pub retry_after_secs: Option<u64>,
    /// See [`FaultSettings::error_rate`].
    pub error_rate: Option<f64>,
    /// See [`FaultSettings::drop_rate`].
    pub drop_rate: Option<f64>,
    /// See [`FaultSettings::latency_ms`].
    pub latency_ms: Option<u64>,
    /// See [`FaultSettings::fail_next`].
    pub fail_next: Option<u32>,
    /// See [`FaultSettings::drop_next`].
    pub drop_next: Option<u32>,
    /// See [`FaultSettings::rate_limit_next`].
    pub rate_limit_next: Option<u32>,
    /// See [`FaultSettings::max_concurrent_sessions`].
    pub max_concurrent_sessions: Option<usize>,
}

/// Fault settings plus the state behind them.
#[derive(Debug)]
pub struct FaultState {
    /// Current settings.
    pub settings: FaultSettings,
    rng: ChaCha8Rng,
    tokens: f64,
    refilled: Instant,
}

impl FaultState {
    /// Initial state; the RNG is seeded so a fault sequence is reproducible for a given request order.
    pub fn new(settings: FaultSettings, seed: u64) -> Self {
        let tokens = f64::from(settings.rate_limit_per_min);
        Self {
            settings,
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0xfa17),
            tokens,
            refilled: Instant::now(),
        }
    }

    /// Applies a patch, validating rates.
    pub fn apply(&mut self, p: FaultsPatch) -> Result<(), ApiError> {
        for r in [p.error_rate, p.drop_rate].into_iter().flatten() {
            if !(0.0..=1.0).contains(&r) {
                return Err(ApiError::bad_request(format!(
                    "rates must be within 0..=1, got {r}"
                )));
            }
        }
        let s = &mut self.settings;
        if let Some(v) = p.rate_limit_per_min {
            s.rate_limit_per_min = v;
            self.tokens = f64::from(v);
            self.refilled = Instant::now();
        }
        if let Some(v) = p.retry_after_secs {
            s.retry_after_secs = (v > 0).then_some(v);
        }
        if let Some(v) = p.error_rate {
            s.error_rate = v;
        }
        if let Some(v) = p.drop_rate {
            s.drop_rate = v;
        }
        if let Some(v) = p.latency_ms {
            s.latency_ms = v;
        }
        if let Some(v) = p.fail_next {
            s.fail_next = v;
        }
        if let Some(v) = p.drop_next {
            s.drop_next = v;
        }
        if let Some(v) = p.rate_limit_next {
            s.rate_limit_next = v;
        }
        if let Some(v) = p.max_concurrent_sessions {
            s.max_concurrent_sessions = v;
        }
        Ok(())
    }

    /// Takes one request from the per-minute budget; false when it is spent.
    fn take_token(&mut self) -> bool {
        let limit = f64::from(self.settings.rate_limit_per_min);
        if limit <= 0.0 {
            return true;
        }
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * limit / 60.0).min(limit);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Request counts by endpoint and status.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    /// Every request seen.
    pub total_requests: u64,
    /// Connections closed without an answer.
    pub dropped_connections: u64,
    /// Counts by endpoint label (e.g. `search/Candidate`, `oauth/token`) then status (`"200"`, `"dropped"`).
    pub requests: BTreeMap<String, BTreeMap<String, u64>>,
}

/// Marker put on a response whose connection must be dropped.
#[derive(Clone, Copy)]
struct Dropped;

/// Stable label of a request path for `/sim/stats`.
pub fn endpoint_label(path: &str) -> String {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["sim", rest @ ..] => format!("sim/{}", rest.first().copied().unwrap_or("")),
        ["oauth", x, ..] => format!("oauth/{x}"),
        ["west", ..] => "wrong_dc".into(),
        ["rest-services", "loginInfo"] => "loginInfo".into(),
        ["rest-services", "login"] => "login".into(),
        ["rest-services", _corp, kind @ ("entity" | "search" | "query" | "meta" | "event"), x, ..] =>
        {
            format!("{kind}/{x}")
        }
        ["rest-services", _corp, kind, ..] => (*kind).to_string(),
        _ => "other".into(),
    }
}

fn is_rest_call(path: &str) -> bool {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    segs.len() >= 3 && segs[0] == "rest-services"
}

/// Outermost middleware: counts every request by endpoint and final status.
pub async fn stats_layer(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let label = endpoint_label(req.uri().path());
    let resp = next.run(req).await;
    let status = if resp.extensions().get::<Dropped>().is_some() {
        "dropped".to_string()
    } else {
        resp.status().as_u16().to_string()
    };
    let mut st = s.stats.lock();
    st.total_requests += 1;
    if status == "dropped" {
        st.dropped_connections += 1;
    }
    *st.requests
        .entry(label)
        .or_default()
        .entry(status)
        .or_default() += 1;
    resp
}

/// A response that makes hyper abort the connection: its body fails before yielding any data.
fn dropped_response() -> Response {
    let stream = futures::stream::once(async {
        Err::<bytes::Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "simulated dropped connection",
        ))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    resp.extensions_mut().insert(Dropped);
    resp
}

enum Verdict {
    Pass,
    Drop,
    Fail(StatusCode),
    RateLimited(Option<u64>),
}

/// Fault middleware for OAuth and REST paths.
pub async fn fault_layer(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if path.starts_with("/sim/") {
        return next.run(req).await;
    }
    let latency = s.faults.lock().settings.latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let verdict = {
        let mut f = s.faults.lock();
        let roll_drop: f64 = f.rng.random();
        let roll_fail: f64 = f.rng.random();
        if f.settings.drop_next > 0 {
            f.settings.drop_next -= 1;
            Verdict::Drop
        } else if roll_drop < f.settings.drop_rate {
            Verdict::Drop
        } else if f.settings.fail_next > 0 || roll_fail < f.settings.error_rate {
            f.settings.fail_next = f.settings.fail_next.saturating_sub(1);
            if f.rng.random_bool(0.5) {
                Verdict::Fail(StatusCode::INTERNAL_SERVER_ERROR)
            } else {
                Verdict::Fail(StatusCode::SERVICE_UNAVAILABLE)
            }
        } else if is_rest_call(&path) && f.settings.rate_limit_next > 0 {
            f.settings.rate_limit_next -= 1;
            Verdict::RateLimited(f.settings.retry_after_secs)
        } else if is_rest_call(&path) && !f.take_token() {
            Verdict::RateLimited(f.settings.retry_after_secs)
        } else {
            Verdict::Pass
        }
    };
    match verdict {
        Verdict::Pass => next.run(req).await,
        Verdict::Drop => dropped_response(),
        Verdict::Fail(status) => ApiError::new(
            status,
            "errors.simulated",
            format!("Simulated server error ({})", status.as_u16()),
        )
        .into_response(),
        Verdict::RateLimited(retry) => {
            let mut resp = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "errors.rateLimited",
                "Rate Limited -- Wait 1 second then retry request. Repeat until successful.",
            )
            .into_response();
            if let Some(secs) = retry {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_group_requests_by_endpoint() {
        assert_eq!(
            endpoint_label("/rest-services/sim42/search/Candidate"),
            "search/Candidate"
        );
        assert_eq!(
            endpoint_label("/rest-services/sim42/entity/JobOrder/1,2"),
            "entity/JobOrder"
        );
        assert_eq!(endpoint_label("/rest-services/sim42/ping"), "ping");
        assert_eq!(endpoint_label("/rest-services/loginInfo"), "loginInfo");
        assert_eq!(endpoint_label("/oauth/token"), "oauth/token");
        assert_eq!(endpoint_label("/sim/stats"), "sim/stats");
    }

    #[test]
    fn token_bucket_spends_the_budget() {
        let mut f = FaultState::new(
            FaultSettings {
                rate_limit_per_min: 3,
                retry_after_secs: None,
                error_rate: 0.0,
                drop_rate: 0.0,
                latency_ms: 0,
                fail_next: 0,
                drop_next: 0,
                rate_limit_next: 0,
                max_concurrent_sessions: 1,
            },
            1,
        );
        assert!(f.take_token() && f.take_token() && f.take_token());
        assert!(!f.take_token());
    }
}
