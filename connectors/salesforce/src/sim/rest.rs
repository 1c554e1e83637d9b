//! The REST API under `/services/data/vXX.X/`: `query` and `queryAll` with query locators
//! (`nextRecordsUrl`, batch size from `Sforce-Query-Options`), `sobjects/{type}/{id}`, `updated`, `deleted`,
//! `describe`, `composite/sobjects/{type}` (retrieve by ids, GET or POST) and `limits`. Every route needs a
//! live session (401 `INVALID_SESSION_ID` otherwise); errors are JSON arrays as Salesforce sends them.
//! Query answers are written as Salesforce writes them — each record's `attributes` first, then its
//! fields in the order selected — from records rendered once to JSON text when the query runs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DurationRound, TimeDelta, Utc};
use rand::distr::Alphanumeric;
use rand::Rng;
use serde_json::{json, Value};

use super::faults::api_error;
use super::soql;
use super::store::{render, render_json};
use super::Shared;
use crate::wire::{
    format_datetime, parse_datetime, CompositeRetrieve, DeletedRecord, DeletedResult, QueryPage,
    UpdatedResult, MAX_BATCH_SIZE, MAX_COMPOSITE_IDS, QUERY_OPTIONS_HEADER,
};

/// An open query cursor: the result snapshot, rendered (each record's JSON text), served page by page.
pub struct Locator {
    rows: Arc<Vec<String>>,
    batch: usize,
    resource: &'static str,
    touched: Instant,
}

/// Open cursors.
#[derive(Default)]
pub struct Locators {
    open: HashMap<String, Locator>,
}

/// Most cursors kept; the least recently used goes first (Salesforce limits open cursors per user too).
const MAX_LOCATORS: usize = 64;
/// Idle cursors expire after this long (Salesforce: 15 minutes).
const LOCATOR_IDLE: Duration = Duration::from_secs(15 * 60);

fn version_ok(v: &str) -> Option<&str> {
    let n = v.strip_prefix('v')?;
    let (a, b) = n.split_once('.')?;
    (a.parse::<u32>().is_ok() && b.parse::<u32>().is_ok()).then_some(n)
}

/// Session check for every data route.
pub async fn require_session(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let ok = super::auth::bearer(req.headers()).is_some_and(|t| {
        s.auth.lock().check(
            t,
            Duration::from_secs(s.config.session_ttl_secs),
            s.config.session_sliding,
        )
    });
    if !ok {
        return api_error(
            StatusCode::UNAUTHORIZED,
            "INVALID_SESSION_ID",
            "Session expired or invalid",
        );
    }
    next.run(req).await
}

fn not_found() -> Response {
    api_error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "The requested resource does not exist",
    )
}

fn batch_size(s: &Shared, headers: &HeaderMap) -> usize {
    let asked = headers
        .get(QUERY_OPTIONS_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',').find_map(|p| {
                p.trim()
                    .strip_prefix("batchSize=")
                    .and_then(|n| n.trim().parse::<usize>().ok())
            })
        });
    match asked {
        Some(n) => n.clamp(s.config.min_batch_size, MAX_BATCH_SIZE),
        None => s.config.default_batch_size,
    }
}

/// One page of a query's answer: whether it is the last, and the JSON body.
struct Page {
    done: bool,
    body: String,
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            self.body,
        )
            .into_response()
    }
}

/// The page at `offset`, as Salesforce writes it (`totalSize`, `done`, `nextRecordsUrl` when not
/// done, `records`), assembled from the records' rendered text.
fn page(s: &Shared, version: &str, loc_id: &str, loc: &Locator, offset: usize) -> Page {
    let end = (offset + loc.batch).min(loc.rows.len());
    let records = &loc.rows[offset.min(end)..end];
    {
        let mut st = s.stats.lock();
        st.query_pages += 1;
        st.query_records += records.len() as u64;
    }
    let done = end >= loc.rows.len();
    let size: usize = records.iter().map(|r| r.len() + 1).sum();
    let mut out: Vec<u8> = Vec::with_capacity(size + 160);
    out.extend_from_slice(
        format!("{{\"totalSize\":{},\"done\":{done},", loc.rows.len()).as_bytes(),
    );
    if !done {
        out.extend_from_slice(b"\"nextRecordsUrl\":");
        super::store::json_str(
            &mut out,
            &format!("/services/data/v{version}/{}/{loc_id}-{end}", loc.resource),
        );
        out.push(b',');
    }
    out.extend_from_slice(b"\"records\":[");
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(r.as_bytes());
    }
    out.extend_from_slice(b"]}");
    Page {
        done,
        body: String::from_utf8(out).unwrap_or_default(),
    }
}

async fn run_query(
    s: Shared,
    version: String,
    headers: HeaderMap,
    params: HashMap<String, String>,
    all: bool,
) -> Response {
    let started = Instant::now();
    let Some(version) = version_ok(&version).map(str::to_string) else {
        return not_found();
    };
    let Some(q) = params.get("q") else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "MALFORMED_QUERY",
            "A query string has to be specified",
        );
    };
    let parsed = match soql::parse(q) {
        Ok(p) => p,
        Err(e) => return soql_error(e),
    };
    let batch = batch_size(&s, &headers);
    let resource = if all { "queryAll" } else { "query" };
    let result = {
        let db = s.db.read();
        db.run_query(&parsed, all).map(|(n, rows, fields)| {
            if matches!(parsed.select, soql::Select::Count) {
                Err(n)
            } else {
                let def = &db.objects[db.object_index(&parsed.from).unwrap_or(0)].def;
                Ok(rows
                    .into_iter()
                    .map(|r| render_json(def, r, &fields, &version))
                    .collect::<Vec<_>>())
            }
        })
    };
    let rows = match result {
        Err(e) => return soql_error(e),
        Ok(Err(count)) => {
            return Json(QueryPage {
                total_size: count as u64,
                done: true,
                next_records_url: None,
                records: Vec::new(),
            })
            .into_response()
        }
        Ok(Ok(rows)) => rows,
    };
    let loc_id: String = format!(
        "01g{}",
        rand::rng()
            .sample_iter(&Alphanumeric)
            .take(15)
            .map(char::from)
            .collect::<String>()
    );
    let loc = Locator {
        rows: Arc::new(rows),
        batch,
        resource,
        touched: Instant::now(),
    };
    let p = page(&s, &version, &loc_id, &loc, 0);
    if !p.done {
        let mut l = s.locators.lock();
        l.open.retain(|_, v| v.touched.elapsed() < LOCATOR_IDLE);
        if l.open.len() >= MAX_LOCATORS {
            if let Some(oldest) = l
                .open
                .iter()
                .min_by_key(|(_, v)| v.touched)
                .map(|(k, _)| k.clone())
            {
                l.open.remove(&oldest);
            }
        }
        l.open.insert(loc_id, loc);
    }
    s.stats.lock().query_micros += started.elapsed().as_micros() as u64;
    p.into_response()
}

fn soql_error(e: soql::SoqlError) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!([{"message": e.message, "errorCode": e.code, "fields": []}])),
    )
        .into_response()
}

/// `GET /services/data/{v}/query?q=`.
pub async fn query(
    State(s): State<Shared>,
    Path(v): Path<String>,
    headers: HeaderMap,
    Query(p): Query<HashMap<String, String>>,
) -> Response {
    run_query(s, v, headers, p, false).await
}

/// `GET /services/data/{v}/queryAll?q=`.
pub async fn query_all(
    State(s): State<Shared>,
    Path(v): Path<String>,
    headers: HeaderMap,
    Query(p): Query<HashMap<String, String>>,
) -> Response {
    run_query(s, v, headers, p, true).await
}

/// `GET /services/data/{v}/query/{locator}-{offset}` (and `queryAll/...`).
pub async fn query_more(
    State(s): State<Shared>,
    Path((v, next)): Path<(String, String)>,
) -> Response {
    let Some(version) = version_ok(&v) else {
        return not_found();
    };
    let Some((loc_id, offset)) = next.rsplit_once('-') else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "INVALID_QUERY_LOCATOR",
            "invalid query locator",
        );
    };
    let Ok(offset) = offset.parse::<usize>() else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "INVALID_QUERY_LOCATOR",
            "invalid query locator",
        );
    };
    let mut l = s.locators.lock();
    let Some(loc) = l.open.get_mut(loc_id) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "INVALID_QUERY_LOCATOR",
            "invalid query locator",
        );
    };
    let started = Instant::now();
    loc.touched = started;
    let p = page(&s, version, loc_id, loc, offset);
    if p.done {
        l.open.remove(loc_id);
    }
    drop(l);
    s.stats.lock().query_micros += started.elapsed().as_micros() as u64;
    p.into_response()
}

/// `GET /services/data/{v}/sobjects/{type}/{id}[?fields=a,b]`.
pub async fn get_record(
    State(s): State<Shared>,
    Path((v, obj, id)): Path<(String, String, String)>,
    Query(p): Query<HashMap<String, String>>,
) -> Response {
    let Some(version) = version_ok(&v) else {
        return not_found();
    };
    let db = s.db.read();
    let Some(o) = db.object_index(&obj) else {
        return api_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("The requested resource does not exist: {obj}"),
        );
    };
    let def = &db.objects[o].def;
    let fields: Option<Vec<&'static str>> = match p.get("fields") {
        Some(list) => {
            let mut out = Vec::new();
            for f in list.split(',').map(str::trim).filter(|f| !f.is_empty()) {
                match def.field(f) {
                    Some(fd) => out.push(fd.name),
                    None => {
                        return api_error(
                            StatusCode::BAD_REQUEST,
                            "INVALID_FIELD",
                            &format!("No such column '{f}' on sobject of type {}", def.name),
                        )
                    }
                }
            }
            Some(out)
        }
        None => None,
    };
    match db.get(o, &id) {
        Some(r) if !r.is_deleted => {
            Json(render(def, r, fields.as_deref(), version)).into_response()
        }
        Some(_) => api_error(
            StatusCode::NOT_FOUND,
            "ENTITY_IS_DELETED",
            "entity is deleted",
        ),
        None => not_found(),
    }
}

/// The `[start, end)` window in epoch ms, or the error answer (boxed: a response is large).
fn window(
    p: &HashMap<String, String>,
    reach_days: u32,
    resolution_secs: u64,
) -> Result<(i64, i64), Box<Response>> {
    let bad = |m: &str| {
        Box::new(api_error(
            StatusCode::BAD_REQUEST,
            "INVALID_REPLICATION_DATE",
            m,
        ))
    };
    let start = p
        .get("start")
        .and_then(|v| parse_datetime(v))
        .ok_or_else(|| bad("start must be a valid dateTime"))?;
    let end = p
        .get("end")
        .and_then(|v| parse_datetime(v))
        .ok_or_else(|| bad("end must be a valid dateTime"))?;
    let now = Utc::now();
    // Salesforce ignores seconds: both ends go down to the minute (the resolution), and the covered end
    // cannot pass now.
    let minute = TimeDelta::seconds(resolution_secs as i64);
    let start = start.duration_trunc(minute).unwrap_or(start);
    let end = end.min(now).duration_trunc(minute).unwrap_or(end);
    if end < start {
        return Err(bad("end date must be after start date"));
    }
    if start < now - TimeDelta::days(i64::from(reach_days)) {
        return Err(bad(&format!(
            "start date must be within the last {reach_days} days"
        )));
    }
    Ok((start.timestamp_millis(), end.timestamp_millis()))
}

/// `GET /services/data/{v}/sobjects/{type}/updated?start=&end=`.
pub async fn updated(
    State(s): State<Shared>,
    Path((_v, obj)): Path<(String, String)>,
    Query(p): Query<HashMap<String, String>>,
) -> Response {
    let (start, end) = match window(
        &p,
        s.config.updated_window_days,
        s.config.window_resolution_secs,
    ) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let db = s.db.read();
    let Some(o) = db.object_index(&obj) else {
        return not_found();
    };
    Json(UpdatedResult {
        ids: db.updated_ids(o, start, end),
        latest_date_covered: format_ms(end),
    })
    .into_response()
}

fn format_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(format_datetime)
        .unwrap_or_default()
}

/// `GET /services/data/{v}/sobjects/{type}/deleted?start=&end=`.
pub async fn deleted(
    State(s): State<Shared>,
    Path((_v, obj)): Path<(String, String)>,
    Query(p): Query<HashMap<String, String>>,
) -> Response {
    let (start, end) = match window(
        &p,
        s.config
            .updated_window_days
            .max(s.config.deleted_retention_days),
        s.config.window_resolution_secs,
    ) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let retention_start =
        Utc::now().timestamp_millis() - i64::from(s.config.deleted_retention_days) * 86_400_000;
    let mut db = s.db.write();
    let Some(o) = db.object_index(&obj) else {
        return not_found();
    };
    db.purge_deleted_log(o, retention_start);
    // Rounded up to the window resolution: the answer must never claim deletions it no longer has.
    let res = (s.config.window_resolution_secs as i64).max(1) * 1000;
    let earliest = db.objects[o].log_purged_before_ms.max(retention_start);
    let earliest = earliest + (res - earliest.rem_euclid(res)) % res;
    Json(DeletedResult {
        deleted_records: db
            .deleted_in(o, start, end)
            .into_iter()
            .map(|(id, t)| DeletedRecord {
                id,
                deleted_date: format_ms(t),
            })
            .collect(),
        earliest_date_available: format_ms(earliest),
        latest_date_covered: format_ms(end),
    })
    .into_response()
}

/// `GET /services/data/{v}/sobjects/{type}/describe`.
pub async fn describe(
    State(s): State<Shared>,
    Path((_v, obj)): Path<(String, String)>,
) -> Response {
    let db = s.db.read();
    match db.object_index(&obj) {
        Some(o) => Json(db.objects[o].def.describe()).into_response(),
        None => not_found(),
    }
}

fn retrieve(s: &Shared, version: &str, obj: &str, req: CompositeRetrieve) -> Response {
    if req.ids.is_empty() || req.fields.is_empty() {
        return api_error(
            StatusCode::BAD_REQUEST,
            "INVALID_FIELD",
            "ids and fields are required",
        );
    }
    if req.ids.len() > MAX_COMPOSITE_IDS {
        return api_error(
            StatusCode::BAD_REQUEST,
            "EXCEEDED_ID_LIMIT",
            "cannot retrieve more than 2000 records",
        );
    }
    let db = s.db.read();
    let Some(o) = db.object_index(obj) else {
        return not_found();
    };
    let def = &db.objects[o].def;
    let mut fields = Vec::new();
    for f in &req.fields {
        match def.field(f) {
            Some(fd) => fields.push(fd.name),
            None => {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_FIELD",
                    &format!("No such column '{f}' on sobject of type {}", def.name),
                )
            }
        }
    }
    let out: Vec<Value> = req
        .ids
        .iter()
        .map(|id| match db.get(o, id) {
            Some(r) if !r.is_deleted => Value::Object(render(def, r, Some(&fields), version)),
            _ => Value::Null,
        })
        .collect();
    Json(out).into_response()
}

/// `GET /services/data/{v}/composite/sobjects/{type}?ids=..&fields=..`.
pub async fn composite_get(
    State(s): State<Shared>,
    Path((v, obj)): Path<(String, String)>,
    Query(p): Query<HashMap<String, String>>,
) -> Response {
    let Some(version) = version_ok(&v) else {
        return not_found();
    };
    let split = |k: &str| -> Vec<String> {
        p.get(k)
            .map(|v| {
                v.split(',')
                    .map(|x| x.trim().to_string())
                    .filter(|x| !x.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    };
    retrieve(
        &s,
        version,
        &obj,
        CompositeRetrieve {
            ids: split("ids"),
            fields: split("fields"),
        },
    )
}

/// `POST /services/data/{v}/composite/sobjects/{type}` with `{"ids":[..],"fields":[..]}`.
pub async fn composite_post(
    State(s): State<Shared>,
    Path((v, obj)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let Some(version) = version_ok(&v) else {
        return not_found();
    };
    match serde_json::from_slice::<CompositeRetrieve>(&body) {
        Ok(req) => retrieve(&s, version, &obj, req),
        Err(e) => api_error(StatusCode::BAD_REQUEST, "JSON_PARSER_ERROR", &e.to_string()),
    }
}

/// `GET /services/data/{v}/limits`.
pub async fn limits(State(s): State<Shared>) -> Response {
    let f = s.faults.lock();
    Json(json!({
        "DailyApiRequests": {"Max": f.daily_api_limit, "Remaining": f.daily_api_limit.saturating_sub(f.api_usage)}
    }))
    .into_response()
}

/// `GET /services/data`: the versions served.
pub async fn versions() -> Response {
    Json(json!([{"label": "Winter '25", "url": "/services/data/v62.0", "version": "62.0"}]))
        .into_response()
}
