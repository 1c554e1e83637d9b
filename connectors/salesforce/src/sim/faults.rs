//! Faults and statistics as one middleware around the REST, OAuth and SOAP routes: added latency, hangs,
//! 503 answers (random or the next N), 403 `REQUEST_LIMIT_EXCEEDED` (the next N, or when the daily allowance
//! is spent), API usage counting with the `Sforce-Limit-Info` header, and per-route request counts.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Shared;
use crate::wire::{ApiUsage, LIMIT_INFO_HEADER};

/// Fault settings, readable and patchable at `/sim/faults`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultSettings {
    /// Answer time of every REST request at the server, ms: the answer leaves no sooner than this
    /// after the request arrived, the server's own work included (a real org's latency includes its
    /// compute). Injected hangs come on top.
    pub latency_ms: u64,
    /// Share of REST requests answered 503.
    pub error_rate: f64,
    /// The next N REST requests answer 503.
    pub fail_next: u32,
    /// The next N REST requests hang `hang_ms` before being served.
    pub hang_next: u32,
    /// How long a hang lasts, ms.
    pub hang_ms: u64,
    /// The next N REST requests answer 403 `REQUEST_LIMIT_EXCEEDED`.
    pub limit_exceeded_next: u32,
    /// The org's daily allowance.
    pub daily_api_limit: u64,
    /// Requests counted against it.
    pub api_usage: u64,
    /// The next N changes publish `GAP_*` events.
    pub gap_next: u32,
    /// The next N writes publish one `GAP_OVERFLOW` event.
    pub overflow_next: u32,
}

/// Body of `POST /sim/faults`: any subset of the settings, plus actions.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsPatch {
    /// See [`FaultSettings`].
    pub latency_ms: Option<u64>,
    /// See [`FaultSettings`].
    pub error_rate: Option<f64>,
    /// See [`FaultSettings`].
    pub fail_next: Option<u32>,
    /// See [`FaultSettings`].
    pub hang_next: Option<u32>,
    /// See [`FaultSettings`].
    pub hang_ms: Option<u64>,
    /// See [`FaultSettings`].
    pub limit_exceeded_next: Option<u32>,
    /// See [`FaultSettings`].
    pub daily_api_limit: Option<u64>,
    /// Set the usage counter (0 resets the day).
    pub api_usage: Option<u64>,
    /// See [`FaultSettings`].
    pub gap_next: Option<u32>,
    /// See [`FaultSettings`].
    pub overflow_next: Option<u32>,
    /// End every session now (clients then get 401 `INVALID_SESSION_ID`).
    #[serde(default)]
    pub expire_sessions: bool,
    /// Drop every stored change event (as if the retention window passed).
    #[serde(default)]
    pub purge_events: bool,
    /// Empty the deleted-records log (`earliestDateAvailable` becomes now).
    #[serde(default)]
    pub purge_deleted_log: bool,
    /// End every open Pub/Sub `Subscribe` stream now with gRPC `UNAVAILABLE` (a dropped stream, as
    /// a restarted server or a broken connection gives); clients must resubscribe.
    #[serde(default)]
    pub break_streams: bool,
}

/// Request statistics at `/sim/stats`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// REST/OAuth/SOAP requests seen.
    pub requests: u64,
    /// By route label.
    pub by_route: BTreeMap<String, u64>,
    /// 401 answers.
    pub unauthorized: u64,
    /// 403 `REQUEST_LIMIT_EXCEEDED` answers.
    pub limit_exceeded: u64,
    /// Injected 503 answers.
    pub unavailable: u64,
    /// Injected hangs.
    pub hangs: u64,
    /// Query pages served (first pages and `nextRecordsUrl` pages).
    pub query_pages: u64,
    /// Records served by queries.
    pub query_records: u64,
    /// Time spent computing query answers (parse, evaluation, rendering; not the latency), µs.
    pub query_micros: u64,
    /// Pub/Sub subscriptions opened.
    pub subscriptions: u64,
    /// Pub/Sub events delivered.
    pub events_delivered: u64,
    /// Largest `num_requested` credit outstanding on any stream.
    pub max_pending_credit: u64,
}

/// Whether a request path counts against the API allowance (`/limits` does not; see the config module).
fn counted(path: &str) -> bool {
    path.starts_with("/services/data/") && !path.trim_end_matches('/').ends_with("/limits")
}

fn route_label(path: &str) -> String {
    let p: Vec<&str> = path.trim_matches('/').split('/').collect();
    match p.as_slice() {
        ["services", "data", _, "sobjects", obj, rest @ ..] => match rest.first() {
            Some(&"updated") => format!("sobjects/{obj}/updated"),
            Some(&"deleted") => format!("sobjects/{obj}/deleted"),
            Some(&"describe") => format!("sobjects/{obj}/describe"),
            Some(_) => format!("sobjects/{obj}/{{id}}"),
            None => format!("sobjects/{obj}"),
        },
        ["services", "data", _, "composite", ..] => "composite/sobjects".into(),
        ["services", "data", _, r, ..] => (*r).to_string(),
        ["services", "oauth2", "token"] => "oauth2/token".into(),
        ["services", "Soap", ..] => "soap/login".into(),
        _ => path.to_string(),
    }
}

pub(crate) fn api_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!([{"message": message, "errorCode": code}])),
    )
        .into_response()
}

/// The middleware.
pub async fn layer(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let arrived = tokio::time::Instant::now();
    let path = req.uri().path().to_string();
    let is_data = counted(&path);
    let (latency, hang, fail, limit) = {
        let mut f = s.faults.lock();
        let hang = if f.hang_next > 0 {
            f.hang_next -= 1;
            Some(Duration::from_millis(f.hang_ms))
        } else {
            None
        };
        // One fault per request: a hung request is served (late) without another fault.
        let fail = if hang.is_some() {
            false
        } else if f.fail_next > 0 {
            f.fail_next -= 1;
            true
        } else {
            f.error_rate > 0.0 && rand::rng().random_bool(f.error_rate.clamp(0.0, 1.0))
        };
        let limit = if is_data && f.limit_exceeded_next > 0 {
            f.limit_exceeded_next -= 1;
            true
        } else {
            false
        };
        (Duration::from_millis(f.latency_ms), hang, fail, limit)
    };
    {
        let mut st = s.stats.lock();
        st.requests += 1;
        *st.by_route.entry(route_label(&path)).or_default() += 1;
        if hang.is_some() {
            st.hangs += 1;
        }
    }
    // The answer leaves at `arrived + latency (+ hang)` at the earliest, whatever the work took.
    let answer_at = arrived + latency + hang.unwrap_or_default();
    if let Some(h) = hang {
        tokio::time::sleep(h).await;
    }
    if fail {
        tokio::time::sleep_until(answer_at).await;
        s.stats.lock().unavailable += 1;
        return api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVER_UNAVAILABLE",
            "Server temporarily unavailable, try again",
        );
    }
    let usage = if is_data {
        let mut f = s.faults.lock();
        let over = limit || f.api_usage >= f.daily_api_limit;
        if !over {
            f.api_usage += 1;
        }
        Some((
            ApiUsage {
                used: f.api_usage,
                max: f.daily_api_limit,
            },
            over,
        ))
    } else {
        None
    };
    let mut resp = match usage {
        Some((_, true)) => {
            s.stats.lock().limit_exceeded += 1;
            api_error(
                StatusCode::FORBIDDEN,
                "REQUEST_LIMIT_EXCEEDED",
                "TotalRequests Limit exceeded.",
            )
        }
        _ => next.run(req).await,
    };
    tokio::time::sleep_until(answer_at).await;
    if resp.status() == StatusCode::UNAUTHORIZED {
        s.stats.lock().unauthorized += 1;
    }
    if let Some((u, _)) = usage {
        if let Ok(v) = HeaderValue::from_str(&u.header_value()) {
            resp.headers_mut().insert(LIMIT_INFO_HEADER, v);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_counting() {
        assert_eq!(route_label("/services/data/v62.0/query/"), "query");
        assert_eq!(
            route_label("/services/data/v62.0/sobjects/Contact/updated/"),
            "sobjects/Contact/updated"
        );
        assert_eq!(
            route_label("/services/data/v62.0/sobjects/Contact/003xx"),
            "sobjects/Contact/{id}"
        );
        assert!(counted("/services/data/v62.0/query"));
        assert!(!counted("/services/data/v62.0/limits/"));
        assert!(!counted("/services/oauth2/token"));
    }
}
