//! Control endpoints under `/sim/` (no session needed): ground truth (`/sim/state`, `/sim/state/{object}`),
//! random writes (`/sim/changes?count=N`), statistics (`/sim/stats`), faults (`GET`/`POST /sim/faults`) and
//! connection details (`/sim/info`), and hard deletes the incremental feed never reports
//! (`POST /sim/purge/{object}/{id}`).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::faults::FaultsPatch;
use super::Shared;

fn object_state(s: &Shared, o: usize) -> Value {
    let db = s.db.read();
    let store = &db.objects[o];
    Value::Array(
        store
            .records
            .values()
            .map(|r| Value::Object(r.fields.clone()))
            .collect(),
    )
}

/// `GET /sim/state`: every record of every object (deleted ones with `IsDeleted` true).
pub async fn state(State(s): State<Shared>) -> Response {
    let names: Vec<String> =
        s.db.read()
            .objects
            .iter()
            .map(|o| o.def.name.clone())
            .collect();
    let mut m = Map::new();
    for (i, n) in names.into_iter().enumerate() {
        m.insert(n, object_state(&s, i));
    }
    Json(Value::Object(m)).into_response()
}

/// `GET /sim/state/{object}`.
pub async fn state_of(State(s): State<Shared>, Path(obj): Path<String>) -> Response {
    let o = s.db.read().object_index(&obj);
    match o {
        Some(o) => Json(object_state(&s, o)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("unknown object {obj}")})),
        )
            .into_response(),
    }
}

/// `GET|POST /sim/changes?count=N`: applies N random writes now.
pub async fn changes(
    State(s): State<Shared>,
    Query(p): Query<HashMap<String, String>>,
) -> Response {
    let n = p
        .get("count")
        .and_then(|c| c.parse::<usize>().ok())
        .unwrap_or(1);
    let applied = s.random_changes(n);
    Json(json!({"requested": n, "applied": applied})).into_response()
}

/// `GET /sim/stats`.
pub async fn stats(State(s): State<Shared>) -> Response {
    Json(s.stats_json()).into_response()
}

/// `GET /sim/faults`.
pub async fn faults(State(s): State<Shared>) -> Response {
    Json(s.faults.lock().clone()).into_response()
}

/// `POST /sim/faults` with a [`FaultsPatch`].
pub async fn patch_faults(State(s): State<Shared>, body: axum::body::Bytes) -> Response {
    let patch: FaultsPatch = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": e.to_string()})),
            )
                .into_response()
        }
    };
    s.apply_faults(&patch);
    Json(s.faults.lock().clone()).into_response()
}

/// `GET /sim/info`: URLs and credentials a client needs.
pub async fn info(State(s): State<Shared>) -> Response {
    Json(s.info()).into_response()
}

/// `POST /sim/purge/{object}/{id}`: removes a record without a trace (no event, absent from
/// `queryAll` and `deleted`), as a hard delete or an emptied recycle bin does; 404 when unknown.
pub async fn purge(State(s): State<Shared>, Path((obj, id)): Path<(String, String)>) -> Response {
    let o = s.db.read().object_index(&obj);
    let Some(o) = o else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("unknown object {obj}")})),
        )
            .into_response();
    };
    match s.purge(o, &id) {
        Ok(()) => Json(json!({"purged": id})).into_response(),
        Err(e) => (StatusCode::NOT_FOUND, Json(json!({"error": e.to_string()}))).into_response(),
    }
}
