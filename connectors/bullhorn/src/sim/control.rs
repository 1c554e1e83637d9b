//! `/sim/...` control endpoints: not part of Bullhorn's API, never subject to faults, no session needed.
//!
//! - `GET /sim/info`: URLs, corp token and credentials.
//! - `GET /sim/stats`, `POST /sim/stats/reset`: request counts by endpoint and status.
//! - `GET /sim/faults`, `POST /sim/faults` (JSON [`FaultsPatch`]): fault settings.
//! - `POST /sim/expire-sessions`: every session token answers 401 from now on.
//! - `POST /sim/changes?count=N`: applies N random inserts/updates/soft deletes now.
//! - `POST /sim/hard-delete/{Type}/{id}`: removes a record with no event and no newer `dateLastModified`
//!   (a purge or GDPR erasure; what incremental reads cannot see).
//! - `POST /sim/merge/{Type}?winner=A&loser=B[&silent=true]`: a duplicate merge: the loser vanishes
//!   unreported, the winner is updated (with an event unless `silent`).
//! - `POST /sim/events/lapse`, `POST /sim/events/resume`: while lapsed, every subscription loses its queued
//!   events and every new one.
//! - `GET /sim/state/{Type}`: ground truth, every record (deleted ones included, all stored fields) as JSON
//!   lines, streamed in chunks so the store lock is never held for the whole dump.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use serde_json::json;

use super::auth::params;
use super::error::ApiError;
use super::faults::FaultsPatch;
use super::Shared;

/// Records serialized per chunk of a `/sim/state` stream.
const STATE_CHUNK: usize = 256;

/// The `/sim` routes.
pub fn router() -> Router<Shared> {
    Router::new()
        .route("/sim/info", get(info))
        .route("/sim/stats", get(stats))
        .route("/sim/stats/reset", post(reset_stats))
        .route("/sim/faults", get(get_faults).post(set_faults))
        .route("/sim/expire-sessions", post(expire_sessions))
        .route("/sim/changes", post(changes))
        .route("/sim/state/{entity}", get(state))
        .route("/sim/hard-delete/{entity}/{id}", post(hard_delete))
        .route("/sim/merge/{entity}", post(merge))
        .route("/sim/events/lapse", post(lapse))
        .route("/sim/events/resume", post(resume))
}

async fn info(State(s): State<Shared>) -> Json<serde_json::Value> {
    Json(s.info())
}

async fn stats(State(s): State<Shared>) -> Json<serde_json::Value> {
    Json(s.stats_json())
}

async fn reset_stats(State(s): State<Shared>) -> Json<serde_json::Value> {
    *s.stats.lock() = Default::default();
    Json(json!({ "reset": true }))
}

async fn get_faults(State(s): State<Shared>) -> Response {
    Json(s.faults.lock().settings.clone()).into_response()
}

async fn set_faults(
    State(s): State<Shared>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let patch: FaultsPatch = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("Invalid faults document: {e}")))?;
    let mut f = s.faults.lock();
    f.apply(patch)?;
    Ok(Json(f.settings.clone()).into_response())
}

async fn expire_sessions(State(s): State<Shared>) -> Json<serde_json::Value> {
    let n = s.auth.lock().expire_sessions();
    Json(json!({ "expired": n }))
}

async fn changes(State(s): State<Shared>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let p = params(q.as_deref(), &[]);
    let n: usize = match p.get("count") {
        None => 1,
        Some(v) => v
            .parse()
            .map_err(|_| ApiError::bad_request(format!("Invalid count '{v}'")))?,
    };
    let applied = s.random_changes(n);
    Ok(Json(json!({ "applied": applied })).into_response())
}

async fn hard_delete(
    State(s): State<Shared>,
    Path((entity, id)): Path<(String, i64)>,
) -> Result<Response, ApiError> {
    let existed = s.hard_delete(&entity, id)?;
    Ok(Json(json!({ "deleted": existed })).into_response())
}

async fn merge(
    State(s): State<Shared>,
    Path(entity): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p = params(q.as_deref(), &[]);
    let id = |k: &str| -> Result<i64, ApiError> {
        p.get(k)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| ApiError::bad_request(format!("merge needs a numeric {k}")))
    };
    let silent = p.get("silent").is_some_and(|v| v == "true");
    let ts = s.merge(&entity, id("winner")?, id("loser")?, silent)?;
    Ok(Json(json!({ "dateLastModified": ts })).into_response())
}

async fn lapse(State(s): State<Shared>) -> Json<serde_json::Value> {
    let dropped = s.lapse_events(true);
    Json(json!({ "lapsed": true, "dropped": dropped }))
}

async fn resume(State(s): State<Shared>) -> Json<serde_json::Value> {
    s.lapse_events(false);
    Json(json!({ "lapsed": false }))
}

async fn state(State(s): State<Shared>, Path(entity): Path<String>) -> Result<Response, ApiError> {
    let ids: Vec<i64> = {
        let db = s.db.read();
        db.store(&entity)?.records.keys().copied().collect()
    };
    let chunks = ids
        .chunks(STATE_CHUNK)
        .map(<[i64]>::to_vec)
        .collect::<Vec<_>>();
    let stream = futures::stream::iter(chunks).map(move |chunk| {
        let db = s.db.read();
        let mut out = Vec::with_capacity(chunk.len() * 1024);
        for id in chunk {
            if let Some(r) = db.record(&entity, id) {
                // Serializing a Map into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut out, &r.fields);
                out.push(b'\n');
            }
        }
        Ok::<_, std::io::Error>(bytes::Bytes::from(out))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}
