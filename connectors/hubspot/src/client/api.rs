//! [`HubSpotClient`]: the calls a sync makes — list pages (live or archived), search by modified time, batch
//! read, one object, property definitions — over one request path that applies the limits, the token and the
//! retry policy.
//!
//! Every call here is a read, so every call is idempotent (search and batch read are POSTs, but resending
//! them is harmless) and may be resent after a timeout or a 5xx.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use reqwest::header::HeaderMap;
use reqwest::Method;
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::auth::TokenManager;
use super::config::ClientConfig;
use super::error::{ClientError, RateLimitPolicy};
use super::limits::{Limits, RateLimitSnapshot};
use super::retry::{Attempts, Decision, RetryPolicy};
use crate::wire::{
    modified_property, BatchId, BatchReadRequest, BatchResponse, CollectionPage, Direction,
    ErrorBody, Filter, FilterGroup, Operator, PropertiesPage, PropertyDef, SearchPage,
    SearchRequest, Sort,
};

/// Most ids HubSpot accepts in one batch read.
pub const BATCH_READ_MAX: usize = 100;

/// Results reachable through one search query: paging to `after >= 10000` is a 400.
pub const SEARCH_RESULT_CAP: u64 = 10_000;

/// Query of `GET /crm/v3/objects/{type}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListParams {
    /// Page size (at most the configured `list_page_max`; HubSpot's default 10 when `None`).
    pub limit: Option<u32>,
    /// Cursor from the previous page's `paging.next.after`.
    pub after: Option<String>,
    /// Properties to return (HubSpot's defaults when empty).
    pub properties: Vec<String>,
    /// `true`: archived (deleted) objects only.
    pub archived: bool,
}

/// A HubSpot CRM client (cheap to clone; clones share the token and the limits).
#[derive(Clone)]
pub struct HubSpotClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base_url: String,
    tokens: TokenManager,
    limits: Limits,
    permits: Semaphore,
    policy: RetryPolicy,
    search_page_max: u32,
    list_page_max: u32,
    requests: AtomicU64,
}

/// One call to make.
struct Call<'a, B: Serialize> {
    method: Method,
    path: String,
    query: Vec<(&'a str, String)>,
    body: Option<&'a B>,
    /// Label for errors and logs, e.g. `search/contacts`.
    endpoint: String,
    /// Whether it is a search call (search has its own per-second limit).
    search: bool,
}

/// Times one call may get a new token when its tokens keep expiring under it.
const MAX_RENEWALS_PER_CALL: u32 = 5;

impl HubSpotClient {
    /// Builds a client; an OAuth client fetches its first access token on the first call.
    pub fn new(cfg: ClientConfig) -> Result<Self, ClientError> {
        url::Url::parse(&cfg.base_url)
            .map_err(|e| ClientError::Config(format!("base_url: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(cfg.request_timeout)
            .connect_timeout(std::time::Duration::from_secs(10))
            .pool_max_idle_per_host(cfg.max_concurrent_requests.max(1))
            .build()
            .map_err(|e| ClientError::Config(e.without_url().to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                limits: Limits::new(
                    cfg.requests_per_10s,
                    cfg.search_requests_per_sec,
                    cfg.pause_at_remaining,
                ),
                permits: Semaphore::new(cfg.max_concurrent_requests.max(1)),
                policy: cfg.retry.clone(),
                search_page_max: cfg.search_page_max.max(1),
                list_page_max: cfg.list_page_max.max(1),
                requests: AtomicU64::new(0),
                base_url: cfg.base_url.clone(),
                tokens: TokenManager::new(cfg, http.clone()),
                http,
            }),
        })
    }

    /// Builds a client and checks the credentials now (one token refresh and one small list call), so bad
    /// credentials fail at start-up rather than at the first read.
    pub async fn connect(cfg: ClientConfig, object_type: &str) -> Result<Self, ClientError> {
        let c = Self::new(cfg)?;
        c.get_page::<serde_json::Value>(
            object_type,
            &ListParams {
                limit: Some(1),
                ..Default::default()
            },
        )
        .await?;
        Ok(c)
    }

    /// API requests sent so far (every attempt counts; token refreshes do not).
    pub fn requests_sent(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// The `X-HubSpot-RateLimit-*` headers of the last answer that had them.
    pub fn rate_limits(&self) -> Option<RateLimitSnapshot> {
        self.inner.limits.snapshot()
    }

    /// Largest search page this client asks for.
    pub fn search_page_max(&self) -> u32 {
        self.inner.search_page_max
    }

    /// `GET /crm/v3/objects/{type}?limit=&after=&properties=&archived=`: one page of objects in id order.
    /// `T` is the object type: [`crate::wire::CrmObject`], `serde_json::Value`, or `Box<RawValue>`.
    pub async fn get_page<T: DeserializeOwned>(
        &self,
        object_type: &str,
        params: &ListParams,
    ) -> Result<CollectionPage<T>, ClientError> {
        let mut q = Vec::new();
        if let Some(l) = params.limit {
            if l > self.inner.list_page_max {
                return Err(ClientError::InvalidRequest(format!(
                    "list limit {l} is over the maximum {}",
                    self.inner.list_page_max
                )));
            }
            q.push(("limit", l.to_string()));
        }
        if let Some(a) = &params.after {
            q.push(("after", a.clone()));
        }
        if !params.properties.is_empty() {
            q.push(("properties", params.properties.join(",")));
        }
        q.push(("archived", params.archived.to_string()));
        let endpoint = format!("objects/{object_type}");
        self.json(Call::<()> {
            method: Method::GET,
            path: format!("/crm/v3/objects/{object_type}"),
            query: q,
            body: None,
            endpoint,
            search: false,
        })
        .await
    }

    /// `GET /crm/v3/objects/{type}/{id}` (`None` when it does not exist; `archived`: look among archived
    /// objects). A merged-away contact id answers with the surviving object.
    pub async fn get_object<T: DeserializeOwned>(
        &self,
        object_type: &str,
        id: &str,
        properties: &[String],
        archived: bool,
    ) -> Result<Option<T>, ClientError> {
        let mut q = vec![("archived", archived.to_string())];
        if !properties.is_empty() {
            q.push(("properties", properties.join(",")));
        }
        let r = self
            .json(Call::<()> {
                method: Method::GET,
                path: format!("/crm/v3/objects/{object_type}/{id}"),
                query: q,
                body: None,
                endpoint: format!("objects/{object_type}/id"),
                search: false,
            })
            .await;
        match r {
            Ok(v) => Ok(Some(v)),
            Err(ClientError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /crm/v3/objects/{type}/search` with `request` as is (its `limit` must not exceed
    /// `search_page_max`). Paging with `after >= 10000` is answered 400 by HubSpot ([`SEARCH_RESULT_CAP`]).
    pub async fn search<T: DeserializeOwned>(
        &self,
        object_type: &str,
        request: &SearchRequest,
    ) -> Result<SearchPage<T>, ClientError> {
        if let Some(l) = request.limit {
            if l > self.inner.search_page_max {
                return Err(ClientError::InvalidRequest(format!(
                    "search limit {l} is over the maximum {}",
                    self.inner.search_page_max
                )));
            }
        }
        self.json(Call {
            method: Method::POST,
            path: format!("/crm/v3/objects/{object_type}/search"),
            query: vec![],
            body: Some(request),
            endpoint: format!("search/{object_type}"),
            search: true,
        })
        .await
    }

    /// One page of objects modified in `[since_ms, until_ms]` (epoch ms, inclusive; `until_ms = None`: no upper
    /// bound), oldest first, on the object's modified-time property (`lastmodifieddate` for contacts,
    /// `hs_lastmodifieddate` otherwise); `limit = None` asks for `search_page_max`. The modified-time
    /// property is always among the returned properties.
    pub async fn search_modified<T: DeserializeOwned>(
        &self,
        object_type: &str,
        since_ms: i64,
        until_ms: Option<i64>,
        properties: &[String],
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<SearchPage<T>, ClientError> {
        let request = modified_search_request(
            object_type,
            since_ms,
            until_ms,
            properties,
            after,
            limit.unwrap_or(self.inner.search_page_max),
        );
        self.search(object_type, &request).await
    }

    /// `POST /crm/v3/objects/{type}/batch/read`: the objects with these ids, in chunks of 100 (one request per
    /// chunk). Ids that do not exist (or are archived, unless `archived`) are simply absent from the result
    /// (HubSpot answers 207 with `OBJECT_NOT_FOUND` errors for them).
    pub async fn batch_read<T: DeserializeOwned>(
        &self,
        object_type: &str,
        ids: &[String],
        properties: &[String],
        archived: bool,
    ) -> Result<Vec<T>, ClientError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(BATCH_READ_MAX) {
            let req = BatchReadRequest {
                inputs: chunk.iter().map(|id| BatchId { id: id.clone() }).collect(),
                properties: properties.to_vec(),
                properties_with_history: vec![],
                id_property: None,
            };
            let resp: BatchResponse<T> = self
                .json(Call {
                    method: Method::POST,
                    path: format!("/crm/v3/objects/{object_type}/batch/read"),
                    query: vec![("archived", archived.to_string())],
                    body: Some(&req),
                    endpoint: format!("batch/read/{object_type}"),
                    search: false,
                })
                .await?;
            out.extend(resp.results);
        }
        Ok(out)
    }

    /// `GET /crm/v3/properties/{object}`: the property definitions of an object type.
    pub async fn properties(&self, object_type: &str) -> Result<Vec<PropertyDef>, ClientError> {
        let page: PropertiesPage = self
            .json(Call::<()> {
                method: Method::GET,
                path: format!("/crm/v3/properties/{object_type}"),
                query: vec![],
                body: None,
                endpoint: format!("properties/{object_type}"),
                search: false,
            })
            .await?;
        Ok(page.results)
    }

    async fn json<T: DeserializeOwned, B: Serialize>(
        &self,
        call: Call<'_, B>,
    ) -> Result<T, ClientError> {
        let endpoint = call.endpoint.clone();
        let body = self.call(call).await?;
        decode(&endpoint, &body)
    }

    /// The request path: limits, token, send, classify, and whatever the retry policy decides.
    async fn call<B: Serialize>(&self, call: Call<'_, B>) -> Result<Vec<u8>, ClientError> {
        let inner = &*self.inner;
        let mut attempts = Attempts::default();
        let mut renewed_into: Option<u64> = None;
        let mut renewals = 0u32;
        let url = format!("{}{}", inner.base_url, call.path);
        loop {
            let token = inner.tokens.get().await?;
            inner.limits.until_ready(call.search).await;
            let result = {
                let _permit = inner
                    .permits
                    .acquire()
                    .await
                    .map_err(|_| ClientError::Config("client closed".into()))?;
                inner.requests.fetch_add(1, Ordering::Relaxed);
                let mut req = inner
                    .http
                    .request(call.method.clone(), &url)
                    .bearer_auth(token.bearer.expose_secret())
                    .query(&call.query);
                if let Some(b) = call.body {
                    req = req.json(b);
                }
                match req.send().await {
                    Ok(resp) => self.read(&call.endpoint, resp).await,
                    Err(e) => Err(ClientError::from_reqwest(&call.endpoint, e)),
                }
            };
            let error = match result {
                Ok(body) => return Ok(body),
                Err(e) => e,
            };
            if matches!(error, ClientError::Unauthorized { .. })
                && renewed_into != Some(token.generation)
                && renewals < MAX_RENEWALS_PER_CALL
            {
                // Refused on a token other than the one this call renewed into: it expired again while the
                // call waited, which is not the persistent refusal that "renew once" guards against.
                attempts.reauthenticated = false;
            }
            match inner.policy.decide(&error, &mut attempts, true) {
                Decision::Retry(delay) => {
                    if matches!(error, ClientError::RateLimited { .. }) {
                        debug!(endpoint = %call.endpoint, delay_ms = delay.as_millis() as u64, "hubspot rate limit, waiting");
                    } else {
                        warn!(endpoint = %call.endpoint, attempt = attempts.failed, %error, delay_ms = delay.as_millis() as u64, "hubspot request failed, retrying");
                    }
                    tokio::time::sleep(delay).await;
                }
                Decision::Reauthenticate => {
                    warn!(endpoint = %call.endpoint, generation = token.generation, "hubspot token refused, refreshing");
                    renewed_into =
                        Some(inner.tokens.renew(Some(token.generation)).await?.generation);
                    renewals += 1;
                }
                Decision::GiveUp => return Err(inner.policy.exhausted(error, &attempts)),
            }
        }
    }

    async fn read(&self, endpoint: &str, resp: reqwest::Response) -> Result<Vec<u8>, ClientError> {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        self.inner.limits.observe(&headers);
        let body = resp
            .bytes()
            .await
            .map_err(|e| ClientError::from_reqwest(endpoint, e))?;
        if (200..300).contains(&status) {
            Ok(body.to_vec())
        } else {
            Err(classify(endpoint, status, &headers, &body))
        }
    }
}

impl std::fmt::Debug for HubSpotClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubSpotClient")
            .field("base_url", &self.inner.base_url)
            .field("requests_sent", &self.requests_sent())
            .finish_non_exhaustive()
    }
}

/// The search request of [`HubSpotClient::search_modified`]: `modified GTE since [AND modified LTE until]`,
/// sorted ascending on the modified time.
pub fn modified_search_request(
    object_type: &str,
    since_ms: i64,
    until_ms: Option<i64>,
    properties: &[String],
    after: Option<&str>,
    limit: u32,
) -> SearchRequest {
    let prop = modified_property(object_type);
    let mut filters = vec![Filter::new(prop, Operator::Gte, since_ms.to_string())];
    if let Some(u) = until_ms {
        filters.push(Filter::new(prop, Operator::Lte, u.to_string()));
    }
    let mut props = properties.to_vec();
    if !props.iter().any(|p| p == prop) {
        props.push(prop.to_string());
    }
    SearchRequest {
        filter_groups: vec![FilterGroup { filters }],
        sorts: vec![Sort {
            property_name: prop.to_string(),
            direction: Direction::Ascending,
        }],
        query: None,
        properties: props,
        limit: Some(limit),
        after: after.map(str::to_string),
    }
}

/// Decodes a JSON answer.
pub(crate) fn decode<T: DeserializeOwned>(endpoint: &str, body: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(body).map_err(|e| ClientError::Decode {
        endpoint: endpoint.to_string(),
        message: e.to_string(),
    })
}

/// Turns a non-2xx answer into an error.
pub(crate) fn classify(
    endpoint: &str,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) -> ClientError {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let endpoint = endpoint.to_string();
    let message = parsed
        .as_ref()
        .map(|b| b.message.clone())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    let category = parsed
        .as_ref()
        .and_then(|b| {
            b.category
                .clone()
                .or_else(|| (b.status != "error" && !b.status.is_empty()).then(|| b.status.clone()))
        })
        .unwrap_or_default();
    match status {
        401 => ClientError::Unauthorized { endpoint, category },
        429 => ClientError::RateLimited {
            endpoint,
            policy: RateLimitPolicy::parse(parsed.as_ref().and_then(|b| b.policy_name.as_deref())),
            retry_after: headers
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(std::time::Duration::from_secs),
        },
        500..=599 => ClientError::Server {
            endpoint,
            status,
            message,
        },
        _ => ClientError::Api {
            endpoint,
            status,
            category,
            message,
            correlation_id: parsed.and_then(|b| b.correlation_id),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modified_search_uses_the_object_property_and_sorts_ascending() {
        let r =
            modified_search_request("deals", 5, Some(9), &["dealname".into()], Some("200"), 100);
        let v = serde_json::to_value(&r).expect("json");
        assert_eq!(
            v["filterGroups"][0]["filters"],
            serde_json::json!([
                {"propertyName":"hs_lastmodifieddate","operator":"GTE","value":"5"},
                {"propertyName":"hs_lastmodifieddate","operator":"LTE","value":"9"}
            ])
        );
        assert_eq!(v["sorts"][0]["direction"], "ASCENDING");
        assert_eq!(
            v["properties"],
            serde_json::json!(["dealname", "hs_lastmodifieddate"])
        );
        assert_eq!(v["after"], "200");
        let c = modified_search_request("contacts", 5, None, &[], None, 100);
        assert_eq!(c.filter_groups[0].filters.len(), 1);
        assert_eq!(c.sorts[0].property_name, "lastmodifieddate");
    }

    #[test]
    fn answers_are_classified() {
        let h = HeaderMap::new();
        let e = classify(
            "x",
            429,
            &h,
            br#"{"status":"error","message":"You have reached your daily limit.","errorType":"RATE_LIMIT","policyName":"DAILY"}"#,
        );
        assert!(e.is_daily_limit(), "{e}");
        let e = classify(
            "x",
            401,
            &h,
            br#"{"status":"error","message":"expired","category":"EXPIRED_AUTHENTICATION"}"#,
        );
        assert!(
            matches!(e, ClientError::Unauthorized { ref category, .. } if category == "EXPIRED_AUTHENTICATION")
        );
        let e = classify(
            "oauth/token",
            400,
            &h,
            br#"{"status":"BAD_REFRESH_TOKEN","message":"missing or unknown refresh token"}"#,
        );
        assert!(
            matches!(e, ClientError::Api { ref category, .. } if category == "BAD_REFRESH_TOKEN")
        );
        let e = classify("x", 502, &h, b"<html>bad gateway</html>");
        assert!(matches!(e, ClientError::Server { status: 502, .. }));
    }
}
