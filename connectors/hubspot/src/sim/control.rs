//! `/sim/...` control endpoints: not part of HubSpot's API, never subject to faults, no token needed.
//!
//! - `GET /sim/info`: URLs, tokens, OAuth credentials, object types.
//! - `GET /sim/stats`, `POST /sim/stats/reset`: requests by route and status, 429s by policy, tokens issued,
//!   webhook deliveries/retries, record counts, writes still invisible to search.
//! - `GET /sim/faults`, `POST /sim/faults` (JSON [`FaultsPatch`]): faults and limits.
//! - `POST /sim/expire-tokens`: every issued OAuth access token answers 401 `EXPIRED_AUTHENTICATION` from now on.
//! - `POST /sim/changes?count=N`: N random updates/creates/archives/restores/merges now.
//! - `GET /sim/state/{object}`: ground truth, one JSON object per line (every property, `archived`,
//!   `archivedAt`), archived objects included, merged-away ones not (`GET /sim/merged/{object}` maps those
//!   to the id they were merged into).
//! - `GET|POST /sim/webhooks` (`{"url": .., "secret": ..}`, `{"url": null}` stops): the webhook target.
//! - `POST /sim/index/flush`: make every write visible to search now.
//! - `POST /sim/purge/{object}/{id}`: a permanent (GDPR) deletion, in no listing (archived ones included) and
//!   sent to no webhook; with `{"url": null}` on `/sim/webhooks` (a lapsed subscription) this is what only
//!   reconciliation finds.

use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::faults::FaultsPatch;
use super::routes::Params;
use super::store::Db;
use super::webhooks::Target;
use super::Shared;

/// The `/sim` routes.
pub fn router() -> Router<Shared> {
    Router::new()
        .route("/sim/info", get(info))
        .route("/sim/stats", get(stats))
        .route("/sim/stats/reset", post(reset_stats))
        .route("/sim/faults", get(get_faults).post(set_faults))
        .route("/sim/expire-tokens", post(expire_tokens))
        .route("/sim/changes", post(changes).get(changes))
        .route("/sim/state/{object}", get(state))
        .route("/sim/merged/{object}", get(merged))
        .route("/sim/webhooks", get(get_webhooks).post(set_webhooks))
        .route("/sim/index/flush", post(flush_index))
        .route("/sim/purge/{object}/{id}", post(purge))
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
        .map_err(|e| ApiError::validation(format!("Invalid faults document: {e}")))?;
    let mut f = s.faults.lock();
    f.apply(patch)?;
    Ok(Json(f.settings.clone()).into_response())
}

async fn expire_tokens(State(s): State<Shared>) -> Json<serde_json::Value> {
    let n = s.auth.lock().expire_all(std::time::Instant::now());
    Json(json!({ "expired": n }))
}

async fn changes(State(s): State<Shared>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let p = Params::parse(q.as_deref());
    let n: usize = match p.get("count") {
        None => 1,
        Some(v) => v
            .parse()
            .map_err(|_| ApiError::validation(format!("Invalid count '{v}'")))?,
    };
    let applied = s.random_changes(n);
    Ok(Json(json!({ "applied": applied })).into_response())
}

async fn state(State(s): State<Shared>, Path(object): Path<String>) -> Result<Response, ApiError> {
    let db = s.db.read();
    let t = db.type_idx(&object)?;
    let def = &db.types[t];
    let mut out = Vec::with_capacity(db.stores[t].records.len() * 700);
    for r in db.stores[t].records.values() {
        let mut v = serde_json::to_value(Db::render_all(def, r)).unwrap_or_default();
        v["objectTypeId"] = def.object_type_id.clone().into();
        // Writing a Value into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, &v);
        out.push(b'\n');
    }
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], out).into_response())
}

async fn merged(State(s): State<Shared>, Path(object): Path<String>) -> Result<Response, ApiError> {
    let db = s.db.read();
    let store = db.store(&object)?;
    let m: serde_json::Map<String, serde_json::Value> = store
        .merged_into
        .keys()
        .map(|from| (from.to_string(), store.resolve(*from).to_string().into()))
        .collect();
    Ok(Json(m).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookPatch {
    url: Option<String>,
    secret: Option<String>,
}

async fn get_webhooks(State(s): State<Shared>) -> Json<serde_json::Value> {
    let t = s.webhooks.lock().target.clone();
    Json(json!({ "url": t.map(|t| t.url) }))
}

async fn set_webhooks(
    State(s): State<Shared>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let p: WebhookPatch = serde_json::from_slice(&body)
        .map_err(|e| ApiError::validation(format!("Invalid webhooks document: {e}")))?;
    let target = match p.url {
        None => None,
        Some(url) => {
            url::Url::parse(&url).map_err(|e| ApiError::validation(format!("url: {e}")))?;
            Some(Target {
                url,
                secret: p
                    .secret
                    .unwrap_or_else(|| s.config.webhook_key().to_string()),
            })
        }
    };
    s.webhooks.lock().target = target.clone();
    Ok(Json(json!({ "url": target.map(|t| t.url) })).into_response())
}

async fn flush_index(State(s): State<Shared>) -> Json<serde_json::Value> {
    s.db.write().flush_index();
    Json(json!({ "flushed": true }))
}

/// `POST /sim/purge/{object}/{id}`: a permanent (GDPR) deletion that no listing and no webhook reports.
async fn purge(
    State(s): State<Shared>,
    Path((object, id)): Path<(String, u64)>,
) -> Result<Response, ApiError> {
    let mut db = s.db.write();
    let t = db.type_idx(&object)?;
    let existed = db.purge(t, id);
    Ok(Json(json!({ "purged": existed })).into_response())
}
