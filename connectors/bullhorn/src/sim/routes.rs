//! The HTTP surface: the axum router and the REST handlers for entities, search, query, meta and event
//! subscriptions.
//!
//! Layout of the listener: `/rest-services/loginInfo` and `/rest-services/login` (no session), `/oauth/...`,
//! `/rest-services/{corpToken}/...` (session required, checked by [`require_session`]), `/west/...` (a wrong data
//! center answering 307) and `/sim/...` (control, see `control.rs`). Handlers parse every parameter at the edge
//! — a bad one is a 4xx with Bullhorn's error envelope, never a panic — then take the store lock once, run the
//! query and render the page straight to bytes (`fields.rs`).

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::auth::{self, params, session_token};
use super::error::ApiError;
use super::events::{EmptyPoll, PollResult};
use super::fields::{self, FieldSel};
use super::filter::{Expr, Path as FieldPath};
use super::store::{entity_def, FieldType, SortKey};
use super::{control, faults, jpql, lucene, Shared, WriteOp};
use crate::wire::{ChangeResponse, ResultResponse, MAX_PAGE_COUNT};

/// Entity types `search/` serves (Bullhorn indexes only some types; the rest use `query/`).
const SEARCHABLE: &[&str] = &[
    "Candidate",
    "ClientContact",
    "ClientCorporation",
    "JobOrder",
];

/// Builds the whole router. Paths are routed with runs of `/` collapsed (see [`collapse_slashes`]).
pub fn router(shared: Shared) -> Router {
    // A layer on a router runs after its routing, so the rewrite sits on an outer router whose
    // only route is the real one.
    Router::new()
        .fallback_service(routes(shared))
        .layer(axum::middleware::map_request(collapse_slashes))
}

/// Bullhorn's `restUrl` ends with `/`, and clients that join it with `"/".join(...)` (pyhorn-flow)
/// ask for `.../rest-services/<corp>//ping`; Bullhorn serves such paths as if the empty segment
/// were not there, so the simulator does too.
async fn collapse_slashes(mut req: Request) -> Request {
    let uri = req.uri();
    if uri.path().contains("//") {
        let mut path = String::with_capacity(uri.path().len());
        for c in uri.path().chars() {
            if !(c == '/' && path.ends_with('/')) {
                path.push(c);
            }
        }
        let pq = match uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        let mut parts = uri.clone().into_parts();
        if let Ok(pq) = pq.parse() {
            parts.path_and_query = Some(pq);
            if let Ok(new) = axum::http::Uri::from_parts(parts) {
                *req.uri_mut() = new;
            }
        }
    }
    req
}

fn routes(shared: Shared) -> Router {
    let rest = Router::new()
        .route("/rest-services/{corp}/ping", get(auth::ping))
        .route(
            "/rest-services/{corp}/logout",
            get(auth::logout).post(auth::logout),
        )
        .route("/rest-services/{corp}/entity/{entity}", put(entity_insert))
        .route(
            "/rest-services/{corp}/entity/{entity}/{ids}",
            get(entity_get).post(entity_update).delete(entity_delete),
        )
        .route(
            "/rest-services/{corp}/entity/{entity}/{ids}/{assoc}",
            get(entity_assoc),
        )
        .route(
            "/rest-services/{corp}/search/{entity}",
            get(search).post(search),
        )
        .route(
            "/rest-services/{corp}/query/{entity}",
            get(query).post(query),
        )
        .route("/rest-services/{corp}/meta/{entity}", get(meta))
        .route(
            "/rest-services/{corp}/event/subscription/{id}",
            put(sub_create).get(sub_poll).delete(sub_delete),
        )
        .route(
            "/rest-services/{corp}/event/subscription/{id}/lastRequestId",
            get(sub_last),
        )
        .route_layer(from_fn_with_state(shared.clone(), require_session));
    Router::new()
        .route("/rest-services/loginInfo", get(auth::login_info))
        .route("/rest-services/login", get(auth::login).post(auth::login))
        .route(
            "/oauth/authorize",
            get(auth::authorize).post(auth::authorize),
        )
        .route("/oauth/token", post(auth::token))
        .route("/oauth/landing", get(auth::landing))
        .route("/west/{*rest}", any(auth::wrong_data_center))
        .merge(rest)
        .merge(control::router())
        .fallback(not_found)
        .layer(from_fn_with_state(shared.clone(), faults::fault_layer))
        .layer(from_fn_with_state(shared.clone(), faults::stats_layer))
        .with_state(shared)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "errors.notFound",
        format!("No such resource: {}", uri.path()),
    )
}

/// Session check of every `/rest-services/{corpToken}/...` call: 412 without a token, 401 for a bad or expired
/// one, 404 for another corporation's path.
async fn require_session(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let corp = req.uri().path().split('/').nth(2).unwrap_or("");
    if corp != s.corp_token {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "errors.unknownCorporation",
            format!("Unknown corporation token '{corp}'"),
        )
        .into_response();
    }
    let p = params(req.uri().query(), &[]);
    let Some(token) = session_token(req.headers(), &p) else {
        return ApiError::missing_session().into_response();
    };
    if let Err(e) = s.auth.lock().check(&token, s.config.session_sliding) {
        return e.into_response();
    }
    next.run(req).await
}

#[derive(Deserialize)]
struct EntityPath {
    entity: String,
}

#[derive(Deserialize)]
struct IdsPath {
    entity: String,
    ids: String,
}

#[derive(Deserialize)]
struct AssocPath {
    entity: String,
    ids: String,
    assoc: String,
}

#[derive(Deserialize)]
struct SubPath {
    id: String,
}

fn json_bytes(body: Vec<u8>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json;charset=UTF-8")],
        body,
    )
        .into_response()
}

/// Paging parameters: `start` (default 0) and `count` (default 20, capped at 500).
fn paging(p: &HashMap<String, String>) -> Result<(usize, usize, bool), ApiError> {
    let num = |k: &str, d: usize| -> Result<usize, ApiError> {
        match p.get(k) {
            None => Ok(d),
            Some(v) if v.is_empty() => Ok(d),
            Some(v) => v.parse::<usize>().map_err(|_| {
                ApiError::bad_request(format!(
                    "Invalid '{k}' value '{v}': expected an integer >= 0"
                ))
            }),
        }
    };
    let start = num("start", 0)?;
    let count = num("count", 20)?;
    Ok((start, count.min(MAX_PAGE_COUNT), count > MAX_PAGE_COUNT))
}

fn parse_sort(
    def: &super::schema::EntityDef,
    spec: Option<&String>,
) -> Result<Vec<SortKey>, ApiError> {
    let Some(spec) = spec else {
        return Ok(Vec::new());
    };
    spec.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (desc, name) = match s.strip_prefix('-') {
                Some(n) => (true, n),
                None => (false, s.strip_prefix('+').unwrap_or(s)),
            };
            // ` DESC`/` ASC` suffixes are accepted too (query's orderBy is JPQL-flavoured).
            let (name, desc) = match name.split_once(' ') {
                Some((n, dir)) if dir.trim().eq_ignore_ascii_case("desc") => (n, true),
                Some((n, _)) => (n, desc),
                None => (name, desc),
            };
            let path = FieldPath::resolve(def, name)
                .map_err(|_| ApiError::unknown_field(def.name, name))?;
            Ok(SortKey { path, desc })
        })
        .collect()
}

fn parse_fields(
    def: &super::schema::EntityDef,
    spec: Option<&String>,
) -> Result<Option<Vec<FieldSel>>, ApiError> {
    match spec.map(|s| s.trim()) {
        None | Some("") => Ok(None),
        Some("*") => Err(ApiError::bad_request(
            "fields=* is not allowed outside /meta: list the fields you need",
        )),
        Some(s) => fields::parse(def, s).map(Some),
    }
}

/// Which list endpoint is rendering: search adds `_score` and always has `total`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// `search/{Type}`.
    Search,
    /// `query/{Type}` without `showTotalMatched`.
    Query,
    /// `query/{Type}` with `showTotalMatched=true`.
    QueryWithTotal,
}

/// Runs a search or query and renders the list envelope. Shared by the HTTP handlers and the in-process API
/// (the bench measures this function alone).
#[allow(clippy::too_many_arguments)]
pub fn list_bytes(
    s: &Shared,
    entity: &str,
    filter: &Expr,
    sel: Option<&[FieldSel]>,
    sort: &[SortKey],
    start: usize,
    count: usize,
    kind: ListKind,
    over_limit: bool,
) -> Result<Vec<u8>, ApiError> {
    let db = s.db.read();
    let store = db.store(entity)?;
    let page = db.execute(store, filter, sort, start, count);
    let mut out = Vec::with_capacity(64 + page.records.len() * 256);
    out.push(b'{');
    if kind != ListKind::Query {
        out.extend_from_slice(format!("\"total\":{},", page.total).as_bytes());
    }
    out.extend_from_slice(
        format!(
            "\"start\":{start},\"count\":{},\"data\":[",
            page.records.len()
        )
        .as_bytes(),
    );
    let score = (kind == ListKind::Search).then_some(1.0);
    let mut renderer = fields::Renderer::new(&db);
    for (i, rec) in page.records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match sel {
            Some(sel) => renderer.record(&mut out, rec, sel, score),
            None => out.extend_from_slice(rec.id.to_string().as_bytes()),
        }
    }
    out.push(b']');
    if over_limit {
        out.extend_from_slice(
            br#","messages":[{"detailMessage":"count exceeds the maximum of 500; only 500 records were returned","severity":"WARNING","type":"COUNT_LIMIT"}]"#,
        );
    }
    out.push(b'}');
    Ok(out)
}

fn body_param(method: &Method, body: &Bytes, key: &str) -> Result<Option<String>, ApiError> {
    if *method != Method::POST || body.is_empty() {
        return Ok(None);
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("Request body is not valid JSON: {e}")))?;
    Ok(v.get(key).and_then(Value::as_str).map(str::to_string))
}

/// Search query parameters, parsed.
pub struct SearchRequest {
    /// Compiled Lucene query.
    pub filter: Expr,
    /// Field selection (`None`: bare ids).
    pub sel: Option<Vec<FieldSel>>,
    /// Sort keys.
    pub sort: Vec<SortKey>,
    /// Offset.
    pub start: usize,
    /// Page size (capped).
    pub count: usize,
    /// Whether `count` was above 500.
    pub over_limit: bool,
}

/// Parses the parameters of `search/{entity}`.
pub fn parse_search(
    entity: &str,
    p: &HashMap<String, String>,
    query: Option<String>,
) -> Result<SearchRequest, ApiError> {
    let def = entity_def(entity).ok_or_else(|| ApiError::unknown_entity(entity))?;
    if !SEARCHABLE.contains(&def.name) {
        return Err(ApiError::bad_request(format!(
            "search is not supported for entity type '{entity}'; use query/{entity}"
        )));
    }
    let q = query
        .or_else(|| p.get("query").cloned())
        .unwrap_or_default();
    let filter = lucene::parse(def, &q)?;
    let sel = parse_fields(def, p.get("fields"))?;
    let sort = parse_sort(def, p.get("sort"))?;
    let (start, count, over_limit) = paging(p)?;
    Ok(SearchRequest {
        filter,
        sel,
        sort,
        start,
        count,
        over_limit,
    })
}

async fn search(
    State(s): State<Shared>,
    Path(path): Path<EntityPath>,
    method: Method,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = params(q.as_deref(), &[]);
    let query = body_param(&method, &body, "query")?;
    let r = parse_search(&path.entity, &p, query)?;
    let out = list_bytes(
        &s,
        &path.entity,
        &r.filter,
        r.sel.as_deref(),
        &r.sort,
        r.start,
        r.count,
        ListKind::Search,
        r.over_limit,
    )?;
    Ok(json_bytes(out))
}

async fn query(
    State(s): State<Shared>,
    Path(path): Path<EntityPath>,
    method: Method,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = params(q.as_deref(), &[]);
    let def = entity_def(&path.entity).ok_or_else(|| ApiError::unknown_entity(&path.entity))?;
    let where_ = body_param(&method, &body, "where")?
        .or_else(|| p.get("where").cloned())
        .unwrap_or_default();
    let filter = jpql::parse(def, &where_)?;
    let flag = |k: &str| p.get(k).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if flag("totalOnly") {
        let db = s.db.read();
        let store = db.store(def.name)?;
        let total = store.records.values().filter(|r| filter.eval(r)).count();
        return Ok(Json(json!({ "total": total })).into_response());
    }
    let sel = parse_fields(def, p.get("fields"))?.ok_or_else(|| {
        ApiError::bad_request("Missing required parameter 'fields' (or 'layout')")
    })?;
    let sort = parse_sort(def, p.get("orderBy").or_else(|| p.get("sort")))?;
    let (start, count, over) = paging(&p)?;
    let kind = if flag("showTotalMatched") {
        ListKind::QueryWithTotal
    } else {
        ListKind::Query
    };
    let out = list_bytes(
        &s,
        def.name,
        &filter,
        Some(&sel),
        &sort,
        start,
        count,
        kind,
        over,
    )?;
    Ok(json_bytes(out))
}

fn parse_ids(ids: &str) -> Result<Vec<i64>, ApiError> {
    ids.split(',')
        .map(|x| {
            x.trim()
                .parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("Invalid entity id '{x}'")))
        })
        .collect()
}

async fn entity_get(
    State(s): State<Shared>,
    Path(path): Path<IdsPath>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p = params(q.as_deref(), &[]);
    let def = entity_def(&path.entity).ok_or_else(|| ApiError::unknown_entity(&path.entity))?;
    let ids = parse_ids(&path.ids)?;
    let sel = parse_fields(def, p.get("fields"))?.ok_or_else(|| {
        ApiError::bad_request("Missing required parameter 'fields' (or 'layout')")
    })?;
    let db = s.db.read();
    let store = db.store(def.name)?;
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"{\"data\":");
    if ids.len() == 1 {
        let rec = store
            .records
            .get(&ids[0])
            .ok_or_else(|| ApiError::not_found(def.name, ids[0]))?;
        fields::render(&mut out, &db, rec, &sel, None);
    } else {
        let found: Vec<_> = ids.iter().filter_map(|id| store.records.get(id)).collect();
        if found.is_empty() {
            return Err(ApiError::not_found(def.name, ids[0]));
        }
        out.push(b'[');
        for (i, rec) in found.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            fields::render(&mut out, &db, rec, &sel, None);
        }
        out.push(b']');
    }
    out.push(b'}');
    Ok(json_bytes(out))
}

async fn entity_assoc(
    State(s): State<Shared>,
    Path(path): Path<AssocPath>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p = params(q.as_deref(), &[]);
    let def = entity_def(&path.entity).ok_or_else(|| ApiError::unknown_entity(&path.entity))?;
    let id = parse_ids(&path.ids)?
        .first()
        .copied()
        .ok_or_else(|| ApiError::bad_request("Missing entity id"))?;
    let target = match def.field(&path.assoc) {
        Some(FieldType::ToMany(t)) => t,
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "'{}' is not a to-many association of '{}'",
                path.assoc, def.name
            )))
        }
        None => return Err(ApiError::unknown_field(def.name, &path.assoc)),
    };
    let (start, count, _) = paging(&p)?;
    let db = s.db.read();
    let rec = db
        .store(def.name)?
        .records
        .get(&id)
        .ok_or_else(|| ApiError::not_found(def.name, id))?;
    let members: Vec<i64> = rec
        .get(&path.assoc)
        .and_then(|v| v.get("data"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|m| m.get("id").and_then(Value::as_i64))
                .collect()
        })
        .unwrap_or_default();
    let target_def = entity_def(target);
    let live: Vec<_> = members
        .iter()
        .filter_map(|m| db.record(target, *m))
        .filter(|r| !r.deleted)
        .collect();
    let sel = match (target_def, p.get("fields")) {
        (Some(td), Some(f)) if !f.trim().is_empty() => fields::parse(td, f)?,
        (Some(td), _) => fields::parse(td, "id")?,
        (None, _) => Vec::new(),
    };
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(format!("{{\"total\":{},\"start\":{start},", live.len()).as_bytes());
    let page: Vec<_> = live.iter().skip(start).take(count).collect();
    out.extend_from_slice(format!("\"count\":{},\"data\":[", page.len()).as_bytes());
    for (i, r) in page.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        fields::render(&mut out, &db, r, &sel, None);
    }
    out.extend_from_slice(b"]}");
    Ok(json_bytes(out))
}

fn body_object(body: &Bytes) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request("Request body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!(
            "Request body is not valid JSON: {e}"
        ))),
    }
}

fn change_response(c: super::store::Change) -> Response {
    Json(ChangeResponse {
        changed_entity_type: c.entity.into(),
        changed_entity_id: c.id,
        change_type: c.change_type,
        data: c.data,
    })
    .into_response()
}

async fn entity_insert(
    State(s): State<Shared>,
    Path(path): Path<EntityPath>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let fields = body_object(&body)?;
    let c = s.apply(WriteOp::Insert {
        entity: path.entity,
        fields,
    })?;
    Ok(change_response(c))
}

fn single_id(ids: &str) -> Result<i64, ApiError> {
    let ids = parse_ids(ids)?;
    match ids.as_slice() {
        [id] => Ok(*id),
        _ => Err(ApiError::bad_request("Writes take exactly one entity id")),
    }
}

async fn entity_update(
    State(s): State<Shared>,
    Path(path): Path<IdsPath>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = single_id(&path.ids)?;
    let fields = body_object(&body)?;
    let c = s.apply(WriteOp::Update {
        entity: path.entity,
        id,
        fields,
    })?;
    Ok(change_response(c))
}

async fn entity_delete(
    State(s): State<Shared>,
    Path(path): Path<IdsPath>,
) -> Result<Response, ApiError> {
    let id = single_id(&path.ids)?;
    let c = s.apply(WriteOp::Delete {
        entity: path.entity,
        id,
    })?;
    Ok(change_response(c))
}

async fn meta(
    State(_s): State<Shared>,
    Path(path): Path<EntityPath>,
) -> Result<Response, ApiError> {
    let def = entity_def(&path.entity).ok_or_else(|| ApiError::unknown_entity(&path.entity))?;
    let fields: Vec<Value> = def
        .fields
        .iter()
        .map(|(name, ty)| {
            let (kind, data_type, assoc) = match ty {
                FieldType::Int => ("SCALAR", "Integer", None),
                FieldType::Str => ("SCALAR", "String", None),
                FieldType::Number => ("SCALAR", "BigDecimal", None),
                FieldType::Bool => ("SCALAR", "Boolean", None),
                FieldType::Date => ("SCALAR", "Timestamp", None),
                FieldType::Address => ("COMPOSITE", "Address", None),
                FieldType::ToOne(t) => ("TO_ONE", "Integer", Some(*t)),
                FieldType::ToMany(t) => ("TO_MANY", "Integer", Some(*t)),
            };
            let data_type = super::custom::data_type(name).unwrap_or(data_type);
            let mut f = json!({
                "name": name,
                "type": kind,
                "dataType": data_type,
                "label": super::custom::label(def.name, name),
                "confidential": super::custom::confidential(name),
            });
            if let Some(t) = assoc {
                f["associatedEntity"] = json!({ "entity": t });
            }
            f
        })
        .collect();
    Ok(Json(json!({ "entity": def.name, "entityMetaUrl": format!("meta/{}", def.name), "fields": fields })).into_response())
}

async fn sub_create(
    State(s): State<Shared>,
    Path(path): Path<SubPath>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p = params(q.as_deref(), &[]);
    let created = s.events.lock().create(
        &path.id,
        p.get("type").map(String::as_str),
        p.get("names").map(String::as_str),
        p.get("eventTypes").map(String::as_str),
    )?;
    Ok(Json(created).into_response())
}

async fn sub_poll(
    State(s): State<Shared>,
    Path(path): Path<SubPath>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p = params(q.as_deref(), &[]);
    let num = |k: &str| -> Result<Option<u64>, ApiError> {
        p.get(k)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| ApiError::bad_request(format!("Invalid '{k}' value '{v}'")))
            })
            .transpose()
    };
    let result = match num("requestId")? {
        Some(r) => s.events.lock().reget(&path.id, r)?,
        None => {
            let max = num("maxEvents")?
                .map(|m| m as usize)
                .unwrap_or(s.config.max_events_per_poll)
                .min(s.config.max_events_per_poll);
            s.events.lock().poll(&path.id, max)?
        }
    };
    Ok(match result {
        PollResult::Batch(b) => Json(b).into_response(),
        PollResult::Empty { last_request_id } => match s.config.empty_poll {
            EmptyPoll::EmptyBody => (StatusCode::OK, Body::empty()).into_response(),
            EmptyPoll::NoContent => StatusCode::NO_CONTENT.into_response(),
            EmptyPoll::EmptyEvents => {
                Json(json!({ "requestId": last_request_id, "events": [] })).into_response()
            }
        },
    })
}

async fn sub_last(
    State(s): State<Shared>,
    Path(path): Path<SubPath>,
) -> Result<Response, ApiError> {
    let n = s.events.lock().last_request_id(&path.id)?;
    Ok(Json(ResultResponse { result: n }).into_response())
}

async fn sub_delete(
    State(s): State<Shared>,
    Path(path): Path<SubPath>,
) -> Result<Response, ApiError> {
    s.events.lock().delete(&path.id)?;
    Ok(Json(ResultResponse { result: true }).into_response())
}
