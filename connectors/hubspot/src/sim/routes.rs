//! The CRM v3 API routes and their handlers.
//!
//! Reads: `GET /crm/v3/objects/{type}` (id-ordered pages, `after` cursor, `properties` repeated or
//! comma-separated, `archived=true` for archived objects only), `GET /crm/v3/objects/{type}/{id}`,
//! `POST /crm/v3/objects/{type}/search` (see `search.rs`), `POST /crm/v3/objects/{type}/batch/read` (≤ 100
//! ids; 207 with `OBJECT_NOT_FOUND` for missing ones), `GET /crm/v3/properties/{type}`. Writes, so that any
//! HubSpot client can drive the simulator: `POST /crm/v3/objects/{type}`, `PATCH`/`DELETE
//! /crm/v3/objects/{type}/{id}`, `POST /crm/v3/objects/{type}/merge`. `{type}` is any name the type answers
//! to (`contacts`, `0-1`, `deals`, `jobs`, `2-12345678`, `p62515_jobs`).

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use super::error::ApiError;
use super::faults::{api_layer, stats_layer};
use super::search::{self, SearchLimits};
use super::store::{iso, now_ms, Db};
use super::{auth, control, Shared, WriteOp};
use crate::wire::{
    BatchReadRequest, BatchResponse, CollectionPage, CrmObject, ErrorBody, NextPage, Paging,
    PropertiesPage, SearchPage, SearchRequest,
};

/// Every route, with the middlewares.
pub fn router(s: Shared) -> Router {
    Router::new()
        .route("/crm/v3/objects/{object}", get(list).post(create))
        .route("/crm/v3/objects/{object}/search", post(search_handler))
        .route("/crm/v3/objects/{object}/batch/read", post(batch_read))
        .route("/crm/v3/objects/{object}/merge", post(merge))
        .route(
            "/crm/v3/objects/{object}/{id}",
            get(get_one).patch(update).delete(archive),
        )
        .route("/crm/v3/properties/{object}", get(properties))
        .route("/oauth/v1/token", post(auth::token))
        .merge(control::router())
        .layer(middleware::from_fn_with_state(s.clone(), api_layer))
        .layer(middleware::from_fn_with_state(s.clone(), stats_layer))
        .with_state(s)
}

/// Query parameters, keeping repeated keys.
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Parses a raw query string.
    pub fn parse(q: Option<&str>) -> Self {
        Self(
            url::form_urlencoded::parse(q.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }

    /// The first value of a key.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated, comma-separated key.
    pub fn list(&self, k: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(key, _)| key == k)
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .collect()
    }

    fn flag(&self, k: &str) -> bool {
        self.get(k).is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    fn number<T: std::str::FromStr>(&self, k: &str) -> Result<Option<T>, ApiError> {
        self.get(k)
            .map(|v| {
                v.trim()
                    .parse()
                    .map_err(|_| ApiError::validation(format!("Invalid {k} '{v}'")))
            })
            .transpose()
    }
}

fn json_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::validation(format!("Invalid input JSON on line 1: {e}")))
}

fn parse_id(id: &str) -> Result<u64, ApiError> {
    id.trim()
        .parse()
        .map_err(|_| ApiError::not_found(format!("resource not found: invalid id '{id}'")))
}

async fn list(
    State(s): State<Shared>,
    Path(object): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(q.as_deref());
    let limit: u32 = p.number("limit")?.unwrap_or(10);
    if limit > s.config.list_page_max {
        return Err(ApiError::validation(format!(
            "limit: must be less than or equal to {}",
            s.config.list_page_max
        )));
    }
    let after: u64 = p.number("after")?.unwrap_or(0);
    let archived = p.flag("archived");
    let props = p.list("properties");
    let db = s.db.read();
    let t = db.type_idx(&object)?;
    let def = &db.types[t];
    let sel = Db::selection(def, &props);
    let mut it = db.stores[t]
        .records
        .range(after..)
        .map(|(_, r)| r)
        .filter(|r| r.archived == archived);
    let results: Vec<CrmObject> = it
        .by_ref()
        .take(limit as usize)
        .map(|r| Db::render(def, r, &sel, true))
        .collect();
    let paging = it.next().map(|r| Paging {
        next: Some(NextPage {
            after: r.id.to_string(),
            link: Some(format!(
                "{}/crm/v3/objects/{object}?after={}",
                s.base_url, r.id
            )),
        }),
    });
    Ok(Json(CollectionPage { results, paging }).into_response())
}

async fn get_one(
    State(s): State<Shared>,
    Path((object, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(q.as_deref());
    let id = parse_id(&id)?;
    let archived = p.flag("archived");
    let props = p.list("properties");
    let db = s.db.read();
    let t = db.type_idx(&object)?;
    let def = &db.types[t];
    match db.get(t, id) {
        Some(r) if r.archived == archived => {
            Ok(Json(Db::render(def, r, &Db::selection(def, &props), true)).into_response())
        }
        _ => Err(ApiError::not_found("resource not found")),
    }
}

/// The JSON body of a search answer (shared by the HTTP handler and `SimHandle::search`).
///
/// The sorted matches of a query are cached by (type, index generation, filters + sorts + query), so paging
/// through one query sorts once, as long as the index does not change in between.
pub fn search_bytes(s: &Shared, object: &str, req: &SearchRequest) -> Result<Vec<u8>, ApiError> {
    let now = tokio::time::Instant::now();
    if s.db.read().index_due(now) {
        s.db.write().refresh_index(now);
    }
    let limits = SearchLimits {
        page_max: s.config.search_page_max,
        result_cap: s.config.search_result_cap,
        default_limit: 10,
    };
    let (limit, after) = search::paging(req, limits)?;
    let db = s.db.read();
    let t = db.type_idx(object)?;
    let def = &db.types[t];
    let key = (
        t,
        db.stores[t].index_generation,
        serde_json::to_string(&(&req.filter_groups, &req.sorts, &req.query)).unwrap_or_default(),
    );
    let cached = s
        .search_cache
        .lock()
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.clone());
    let hits = match cached {
        Some(h) => h,
        None => {
            let h = std::sync::Arc::new(search::matching(def, db.stores[t].index.values(), req)?);
            let mut c = s.search_cache.lock();
            if c.len() >= SEARCH_CACHE_ENTRIES {
                c.pop_front();
            }
            c.push_back((key, h.clone()));
            h
        }
    };
    let hits = search::page(&hits, limit, after, limits);
    let sel = Db::selection(def, &req.properties);
    let page = SearchPage {
        total: hits.total,
        results: hits
            .page
            .iter()
            .map(|r| Db::render(def, r, &sel, false))
            .collect(),
        paging: hits.next_after.map(|a| Paging {
            next: Some(NextPage {
                after: a.to_string(),
                link: None,
            }),
        }),
    };
    serde_json::to_vec(&page).map_err(|e| ApiError::validation(e.to_string()))
}

/// Queries whose sorted matches are kept.
const SEARCH_CACHE_ENTRIES: usize = 16;

async fn search_handler(
    State(s): State<Shared>,
    Path(object): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: SearchRequest = json_body(&body)?;
    let bytes = search_bytes(&s, &object, &req)?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        bytes,
    )
        .into_response())
}

async fn batch_read(
    State(s): State<Shared>,
    Path(object): Path<String>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let started = iso(now_ms());
    let p = Params::parse(q.as_deref());
    let archived = p.flag("archived");
    let req: BatchReadRequest = json_body(&body)?;
    if req.inputs.len() > 100 {
        return Err(ApiError::validation(format!(
            "Batch input limit exceeded: {} inputs, at most 100",
            req.inputs.len()
        )));
    }
    if req
        .id_property
        .as_deref()
        .is_some_and(|p| p != "hs_object_id")
    {
        return Err(ApiError::validation(
            "idProperty other than hs_object_id is not supported by the simulator",
        ));
    }
    let db = s.db.read();
    let t = db.type_idx(&object)?;
    let def = &db.types[t];
    let sel = Db::selection(def, &req.properties);
    let mut results = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut missing = Vec::new();
    for input in &req.inputs {
        let found = input
            .id
            .trim()
            .parse::<u64>()
            .ok()
            .and_then(|id| db.get(t, id))
            .filter(|r| r.archived == archived);
        match found {
            Some(r) => {
                if seen.insert(r.id) {
                    results.push(Db::render(def, r, &sel, archived));
                }
            }
            None => missing.push(input.id.clone()),
        }
    }
    let errors = if missing.is_empty() {
        vec![]
    } else {
        vec![ErrorBody {
            status: "error".into(),
            message: format!(
                "Could not get some {} objects, they may be deleted or not exist. Check that ids are valid.",
                def.name.trim_end_matches('s').to_uppercase()
            ),
            correlation_id: None,
            category: Some("OBJECT_NOT_FOUND".into()),
            error_type: None,
            policy_name: None,
            context: Some(serde_json::json!({ "ids": missing })),
            links: Some(serde_json::json!({})),
            errors: Some(vec![]),
        }]
    };
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::MULTI_STATUS
    };
    let num_errors = (!errors.is_empty()).then_some(errors.len() as u32);
    Ok((
        status,
        Json(BatchResponse {
            status: "COMPLETE".into(),
            results,
            errors,
            num_errors,
            started_at: Some(started),
            completed_at: Some(iso(now_ms())),
        }),
    )
        .into_response())
}

async fn properties(
    State(s): State<Shared>,
    Path(object): Path<String>,
) -> Result<Response, ApiError> {
    let db = s.db.read();
    let t = db.type_idx(&object)?;
    Ok(Json(PropertiesPage {
        results: db.types[t].property_defs(),
    })
    .into_response())
}

#[derive(Deserialize)]
struct PropsInput {
    #[serde(default)]
    properties: BTreeMap<String, Value>,
}

fn props_of(input: PropsInput) -> BTreeMap<String, Option<String>> {
    input
        .properties
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Value::Null => None,
                Value::String(s) => Some(s),
                other => Some(other.to_string()),
            };
            (k, v)
        })
        .collect()
}

fn render_one(s: &Shared, t: usize, id: u64) -> Result<Response, ApiError> {
    let db = s.db.read();
    let def = &db.types[t];
    let r = db
        .get(t, id)
        .ok_or_else(|| ApiError::not_found("resource not found"))?;
    let sel: Vec<&str> = def.props.iter().map(|p| p.name).collect();
    Ok(Json(Db::render(def, r, &sel, true)).into_response())
}

async fn create(
    State(s): State<Shared>,
    Path(object): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let props = props_of(json_body(&body)?);
    let t = s.db.read().type_idx(&object)?;
    let changes = s.apply(WriteOp::Create {
        t,
        props,
        source: "API",
    })?;
    let id = changes.first().map(|c| c.id).unwrap_or_default();
    let mut resp = render_one(&s, t, id)?;
    *resp.status_mut() = StatusCode::CREATED;
    Ok(resp)
}

async fn update(
    State(s): State<Shared>,
    Path((object, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let props = props_of(json_body(&body)?);
    let id = parse_id(&id)?;
    let t = s.db.read().type_idx(&object)?;
    s.apply(WriteOp::Update {
        t,
        id,
        props,
        source: "API",
    })?;
    render_one(&s, t, id)
}

async fn archive(
    State(s): State<Shared>,
    Path((object, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let t = s.db.read().type_idx(&object)?;
    s.apply(WriteOp::Archive {
        t,
        id,
        source: "API",
    })?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MergeInput {
    primary_object_id: String,
    object_id_to_merge: String,
}

async fn merge(
    State(s): State<Shared>,
    Path(object): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let m: MergeInput = json_body(&body)?;
    let primary = parse_id(&m.primary_object_id)?;
    let secondary = parse_id(&m.object_id_to_merge)?;
    let t = s.db.read().type_idx(&object)?;
    s.apply(WriteOp::Merge {
        t,
        primary,
        secondary,
        source: "API",
    })?;
    render_one(&s, t, primary)
}
