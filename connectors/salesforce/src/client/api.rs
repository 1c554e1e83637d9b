//! [`SalesforceClient`]: the REST calls a sync makes, on top of one request loop (`call`) that owns the
//! budget gate, the session, re-authentication, retries and error classification.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use rand::Rng;
use reqwest::Method;
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::auth::{self, Session};
use super::budget::{Budget, BudgetState, Gate};
use super::config::ClientConfig;
use super::error::ClientError;
use crate::wire::{
    ApiErrorItem, ApiUsage, CompositeRetrieve, DeletedResult, DescribeSObject, QueryPage,
    RawQueryPage, UpdatedResult, LIMIT_INFO_HEADER, MAX_COMPOSITE_IDS, QUERY_OPTIONS_HEADER,
};

/// A Salesforce REST client; cheap to share behind an `Arc`, safe to call concurrently.
pub struct SalesforceClient {
    http: reqwest::Client,
    config: ClientConfig,
    session: tokio::sync::Mutex<Option<Session>>,
    generation: AtomicU64,
    budget: Budget,
}

impl std::fmt::Debug for SalesforceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SalesforceClient")
            .field("login_url", &self.config.login_url.as_str())
            .field("api_version", &self.config.api_version)
            .finish_non_exhaustive()
    }
}

/// One request, as `call` sends it (possibly several times).
struct Req<'a> {
    endpoint: &'a str,
    method: Method,
    path: String,
    query: Vec<(&'static str, String)>,
    json: Option<Value>,
    batch_size: bool,
}

impl<'a> Req<'a> {
    fn get(endpoint: &'a str, path: String) -> Self {
        Self {
            endpoint,
            method: Method::GET,
            path,
            query: Vec::new(),
            json: None,
            batch_size: false,
        }
    }
}

impl SalesforceClient {
    /// Builds the client (no network yet: the first call logs in).
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        config.validate().map_err(ClientError::Config)?;
        let mut builder = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("crmflow-salesforce/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &config.ca_pem {
            for cert in
                crate::tls::parse_pem_certs(pem).map_err(|e| ClientError::Config(e.to_string()))?
            {
                let c = reqwest::Certificate::from_der(&cert)
                    .map_err(|e| ClientError::Config(e.to_string()))?;
                builder = builder.add_root_certificate(c);
            }
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Config(e.to_string()))?;
        Ok(Self {
            budget: Budget::new(
                config.budget_share,
                config.budget_recheck,
                config.budget_wait_max,
            ),
            http,
            config,
            session: tokio::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
        })
    }

    /// The settings.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// What the client knows of the org's API usage and whether it is waiting for budget.
    pub fn budget(&self) -> BudgetState {
        self.budget.state()
    }

    /// The current session, logging in when there is none (also what the Pub/Sub client authenticates with).
    pub async fn session(&self) -> Result<Session, ClientError> {
        let mut guard = self.session.lock().await;
        if let Some(s) = guard.as_ref() {
            return Ok(s.clone());
        }
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let s = auth::login(&self.http, &self.config, generation).await?;
        *guard = Some(s.clone());
        Ok(s)
    }

    /// Drops the session `stale` (if it is still the current one) and logs in again.
    pub async fn renew_session(&self, stale: &Session) -> Result<Session, ClientError> {
        {
            let mut guard = self.session.lock().await;
            if guard
                .as_ref()
                .is_some_and(|s| s.generation == stale.generation)
            {
                *guard = None;
            }
        }
        self.session().await
    }

    fn data_path(&self, rest: &str) -> String {
        format!(
            "/services/data/v{}/{rest}",
            self.config.api_version.trim_start_matches('v')
        )
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.config.backoff_base.as_millis() as u64;
        let exp = base.saturating_mul(1u64 << attempt.min(16));
        let capped = exp.min(self.config.backoff_max.as_millis() as u64).max(1);
        let jitter = rand::rng().random_range(capped / 2..=capped);
        Duration::from_millis(jitter)
    }

    /// Waits while the budget is spent, re-reading the usage from `/limits` every `budget_recheck`.
    async fn wait_for_budget(&self) -> Result<(), ClientError> {
        let mut since: Option<Instant> = None;
        loop {
            match self.budget.gate(since) {
                Gate::Go => return Ok(()),
                Gate::GiveUp(u) => {
                    return Err(ClientError::BudgetExhausted {
                        used: u.used,
                        max: u.max,
                        share: self.budget.share(),
                    })
                }
                Gate::Wait(d) => {
                    since.get_or_insert_with(Instant::now);
                    tokio::time::sleep(d).await;
                    // Boxed: `refresh_usage` goes through `call`, which (ungated) never comes back here.
                    if let Err(e) = Box::pin(self.refresh_usage()).await {
                        tracing::debug!(%e, "cannot read the API usage while waiting for budget");
                    }
                }
            }
        }
    }

    /// Reads `/limits` (which the budget gate does not block) and records the daily usage.
    async fn refresh_usage(&self) -> Result<ApiUsage, ClientError> {
        let v: Value = self
            .send_json(&Req::get("limits", self.data_path("limits/")), false)
            .await?;
        let daily = &v["DailyApiRequests"];
        let max = daily["Max"].as_u64().unwrap_or(0);
        let remaining = daily["Remaining"].as_u64().unwrap_or(0);
        let usage = ApiUsage {
            used: max.saturating_sub(remaining),
            max,
        };
        self.budget.record(usage);
        Ok(usage)
    }

    /// The org's `/limits` document.
    pub async fn limits(&self) -> Result<Value, ClientError> {
        self.send_json(&Req::get("limits", self.data_path("limits/")), false)
            .await
    }

    async fn send_json<T: DeserializeOwned>(
        &self,
        req: &Req<'_>,
        gated: bool,
    ) -> Result<T, ClientError> {
        let body = self.call(req, gated).await?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Decode {
            endpoint: req.endpoint.to_string(),
            message: e.to_string(),
        })
    }

    /// The request loop.
    async fn call(&self, req: &Req<'_>, gated: bool) -> Result<Bytes, ClientError> {
        let mut attempt = 0u32;
        let mut reauthenticated = false;
        loop {
            if gated {
                self.wait_for_budget().await?;
            }
            let session = self.session().await?;
            let err = match self.send_once(req, &session).await {
                Ok(body) => return Ok(body),
                Err(e) => e,
            };
            match &err {
                ClientError::InvalidSession { .. } if !reauthenticated => {
                    tracing::info!(
                        endpoint = req.endpoint,
                        "salesforce session expired, authenticating again"
                    );
                    reauthenticated = true;
                    self.renew_session(&session).await?;
                    continue;
                }
                ClientError::LimitExceeded { .. } if gated => {
                    self.budget.record_limit_exceeded();
                    continue;
                }
                e if e.is_transient() && attempt < self.config.max_retries => {
                    let wait = self.backoff(attempt);
                    attempt += 1;
                    tracing::warn!(endpoint = req.endpoint, attempt, error = %e, ?wait, "salesforce call failed, retrying");
                    tokio::time::sleep(wait).await;
                    continue;
                }
                _ => return Err(err),
            }
        }
    }

    async fn send_once(&self, req: &Req<'_>, session: &Session) -> Result<Bytes, ClientError> {
        let endpoint = req.endpoint;
        let url = if req.path.starts_with("https://") || req.path.starts_with("http://") {
            url::Url::parse(&req.path)
        } else {
            session.instance_url.join(&req.path)
        }
        .map_err(|e| ClientError::Config(format!("bad URL for {endpoint}: {e}")))?;
        let mut rb = self
            .http
            .request(req.method.clone(), url)
            .bearer_auth(session.access_token.expose_secret())
            .header("Accept", "application/json");
        if !req.query.is_empty() {
            rb = rb.query(&req.query);
        }
        if req.batch_size {
            if let Some(n) = self.config.query_batch_size {
                rb = rb.header(QUERY_OPTIONS_HEADER, format!("batchSize={n}"));
            }
        }
        if let Some(j) = &req.json {
            rb = rb.json(j);
        }
        let resp = rb
            .send()
            .await
            .map_err(|e| ClientError::from_reqwest(endpoint, e))?;
        if let Some(u) = resp
            .headers()
            .get(LIMIT_INFO_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(ApiUsage::parse)
        {
            self.budget.record(u);
        }
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| ClientError::from_reqwest(endpoint, e))?;
        if status.is_success() {
            return Ok(body);
        }
        let errors: Vec<ApiErrorItem> = serde_json::from_slice(&body).unwrap_or_else(|_| {
            vec![ApiErrorItem {
                message: String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
                error_code: String::new(),
                fields: None,
            }]
        });
        let code = errors.first().map(|e| e.error_code.as_str()).unwrap_or("");
        let endpoint = endpoint.to_string();
        Err(match (status.as_u16(), code) {
            (401, _) => ClientError::InvalidSession { endpoint },
            (403, "REQUEST_LIMIT_EXCEEDED") => ClientError::LimitExceeded {
                endpoint,
                message: errors
                    .first()
                    .map(|e| e.message.clone())
                    .unwrap_or_default(),
            },
            (s, _) if s >= 500 => ClientError::Server {
                endpoint,
                status: s,
                message: errors
                    .first()
                    .map(|e| e.message.clone())
                    .unwrap_or_default(),
            },
            (s, _) => ClientError::Api {
                endpoint,
                status: s,
                errors,
            },
        })
    }

    /// First page of a SOQL query over live records (`/query`).
    pub async fn query(&self, soql: &str) -> Result<QueryPage, ClientError> {
        self.query_at("query", soql).await
    }

    /// First page of a SOQL query that also returns deleted and merged records (`/queryAll`).
    pub async fn query_all(&self, soql: &str) -> Result<QueryPage, ClientError> {
        self.query_at("queryAll", soql).await
    }

    async fn query_at<T: DeserializeOwned>(
        &self,
        resource: &'static str,
        soql: &str,
    ) -> Result<T, ClientError> {
        let mut req = Req::get(resource, self.data_path(&format!("{resource}/")));
        req.query.push(("q", soql.to_string()));
        req.batch_size = true;
        self.send_json(&req, true).await
    }

    /// The next page: `next` is a page's `nextRecordsUrl` (or a bare query locator `01g...-2000`).
    pub async fn query_more(&self, next: &str) -> Result<QueryPage, ClientError> {
        self.query_more_as(next).await
    }

    async fn query_more_as<T: DeserializeOwned>(&self, next: &str) -> Result<T, ClientError> {
        let path = if next.starts_with('/') || next.starts_with("http") {
            next.to_string()
        } else {
            self.data_path(&format!("query/{next}"))
        };
        let mut req = Req::get("query", path);
        req.batch_size = true;
        self.send_json(&req, true).await
    }

    /// First page of a query (`include_deleted`: `queryAll`) with its records left as JSON text.
    pub async fn query_raw(
        &self,
        soql: &str,
        include_deleted: bool,
    ) -> Result<RawQueryPage, ClientError> {
        let resource = if include_deleted { "queryAll" } else { "query" };
        self.query_at(resource, soql).await
    }

    /// The next page of [`SalesforceClient::query_raw`] (`next`: its `nextRecordsUrl`).
    pub async fn query_more_raw(&self, next: &str) -> Result<RawQueryPage, ClientError> {
        self.query_more_as(next).await
    }

    /// [`SalesforceClient::query_collect`] with the records left as the JSON text received: no map
    /// is built, and the text can be passed on unchanged.
    pub async fn query_collect_raw(
        &self,
        soql: &str,
        include_deleted: bool,
    ) -> Result<Vec<Box<RawValue>>, ClientError> {
        let mut page = self.query_raw(soql, include_deleted).await?;
        let mut out = std::mem::take(&mut page.records);
        while let (false, Some(next)) = (page.done, page.next_records_url.take()) {
            page = self.query_more_raw(&next).await?;
            out.append(&mut page.records);
        }
        Ok(out)
    }

    /// Every record of a query, following `nextRecordsUrl` to the end (`include_deleted`: `queryAll`).
    pub async fn query_collect(
        &self,
        soql: &str,
        include_deleted: bool,
    ) -> Result<Vec<Map<String, Value>>, ClientError> {
        let mut page = if include_deleted {
            self.query_all(soql).await?
        } else {
            self.query(soql).await?
        };
        let mut out = std::mem::take(&mut page.records);
        while let (false, Some(next)) = (page.done, page.next_records_url.take()) {
            page = self.query_more(&next).await?;
            out.append(&mut page.records);
        }
        Ok(out)
    }

    /// `SELECT COUNT() FROM {sobject}`.
    pub async fn count(&self, sobject: &str) -> Result<u64, ClientError> {
        Ok(self
            .query(&format!("SELECT COUNT() FROM {sobject}"))
            .await?
            .total_size)
    }

    fn window(start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<(&'static str, String)> {
        let f = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string();
        vec![("start", f(start)), ("end", f(end))]
    }

    /// Ids of records changed in `[start, end)` (`sobjects/{type}/updated`); minute resolution, last 30 days.
    pub async fn updated(
        &self,
        sobject: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<UpdatedResult, ClientError> {
        let mut req = Req::get(
            "updated",
            self.data_path(&format!("sobjects/{sobject}/updated/")),
        );
        req.query = Self::window(start, end);
        self.send_json(&req, true).await
    }

    /// Records deleted in `[start, end)` (`sobjects/{type}/deleted`). If `earliestDateAvailable` is after
    /// `start`, deletions were purged and the caller must resync.
    pub async fn deleted(
        &self,
        sobject: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<DeletedResult, ClientError> {
        let mut req = Req::get(
            "deleted",
            self.data_path(&format!("sobjects/{sobject}/deleted/")),
        );
        req.query = Self::window(start, end);
        self.send_json(&req, true).await
    }

    /// One record by id (`sobjects/{type}/{id}`), all fields or `fields`.
    pub async fn get(
        &self,
        sobject: &str,
        id: &str,
        fields: Option<&[&str]>,
    ) -> Result<Map<String, Value>, ClientError> {
        let mut req = Req::get(
            "sobject",
            self.data_path(&format!("sobjects/{sobject}/{id}")),
        );
        if let Some(f) = fields {
            req.query.push(("fields", f.join(",")));
        }
        self.send_json(&req, true).await
    }

    /// Records by id (`POST composite/sobjects/{type}`), in the order asked, `None` for ids that do not exist
    /// (or are deleted). More than 2,000 ids are sent as several requests.
    pub async fn retrieve(
        &self,
        sobject: &str,
        ids: &[String],
        fields: &[&str],
    ) -> Result<Vec<Option<Map<String, Value>>>, ClientError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_COMPOSITE_IDS) {
            let body = CompositeRetrieve {
                ids: chunk.to_vec(),
                fields: fields.iter().map(|s| s.to_string()).collect(),
            };
            let req = Req {
                endpoint: "composite/sobjects",
                method: Method::POST,
                path: self.data_path(&format!("composite/sobjects/{sobject}")),
                query: Vec::new(),
                json: Some(
                    serde_json::to_value(&body).map_err(|e| ClientError::Config(e.to_string()))?,
                ),
                batch_size: false,
            };
            let page: Vec<Option<Map<String, Value>>> = self.send_json(&req, true).await?;
            out.extend(page);
        }
        Ok(out)
    }

    /// Field metadata (`sobjects/{type}/describe`).
    pub async fn describe(&self, sobject: &str) -> Result<DescribeSObject, ClientError> {
        let req = Req::get(
            "describe",
            self.data_path(&format!("sobjects/{sobject}/describe/")),
        );
        self.send_json(&req, true).await
    }
}
