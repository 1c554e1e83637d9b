//! [`BullhornClient`]: the calls the pipeline makes — `search`, `query`, entity reads by id and the event
//! subscription API — over one request path that applies the client-side limits, the session and the retry
//! policy.
//!
//! Limits: a token bucket of `requests_per_minute` (small burst) and a semaphore of `max_concurrent_requests`
//! permits, both taken per attempt (not held while backing off). The session token travels in the
//! `BhRestToken` header, so URLs carry no secret.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::Method;
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::auth::{decode, follow_307_308, read_body};
use super::config::ClientConfig;
use super::error::ClientError;
use super::retry::{Decision, RetryPolicy};
use super::session::SessionManager;
use crate::wire::{
    DataEnvelope, EventBatch, ListEnvelope, PingResponse, ResultResponse, SubscriptionCreated,
};

/// A Bullhorn REST client (cheap to clone; clones share the session and the limits).
#[derive(Clone)]
pub struct BullhornClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    sessions: SessionManager,
    limiter: DefaultDirectRateLimiter,
    permits: Semaphore,
    policy: RetryPolicy,
    requests: AtomicU64,
}

/// Re-authentications one call may make when its sessions keep expiring under it.
const MAX_RENEWALS_PER_CALL: u32 = 5;

/// One REST call to make.
struct Call<'a> {
    method: Method,
    path: String,
    query: Vec<(&'a str, String)>,
    /// Label for errors and logs, e.g. `search/Candidate`.
    endpoint: String,
    /// Whether sending it twice is harmless.
    idempotent: bool,
}

impl BullhornClient {
    /// Builds a client; it logs in on the first call.
    pub fn new(cfg: ClientConfig) -> Result<Self, ClientError> {
        let rpm = NonZeroU32::new(cfg.requests_per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(cfg.burst.clamp(1, cfg.requests_per_minute.max(1)))
            .unwrap_or(NonZeroU32::MIN);
        let http = reqwest::Client::builder()
            .redirect(follow_307_308())
            .timeout(cfg.request_timeout)
            .connect_timeout(std::time::Duration::from_secs(10))
            .pool_max_idle_per_host(cfg.max_concurrent_requests.max(1))
            .build()
            .map_err(|e| ClientError::Config(e.without_url().to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                limiter: RateLimiter::direct(Quota::per_minute(rpm).allow_burst(burst)),
                permits: Semaphore::new(cfg.max_concurrent_requests.max(1)),
                policy: cfg.retry.clone(),
                requests: AtomicU64::new(0),
                sessions: SessionManager::new(cfg)?,
            }),
        })
    }

    /// Builds a client and logs in now, so bad credentials fail at start-up rather than at the first read.
    pub async fn connect(cfg: ClientConfig) -> Result<Self, ClientError> {
        let c = Self::new(cfg)?;
        c.inner.sessions.get().await?;
        Ok(c)
    }

    /// REST requests sent so far (every attempt counts; authentication calls do not).
    pub fn requests_sent(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// `GET search/{entity}?query=&fields=&sort=&start=&count=`. `T` is the record type: `serde_json::Value`,
    /// a struct, or `Box<RawValue>` to keep each record's JSON exactly as received.
    pub async fn search<T: DeserializeOwned>(
        &self,
        entity: &str,
        query: &str,
        fields: &str,
        sort: Option<&str>,
        start: u64,
        count: u32,
    ) -> Result<ListEnvelope<T>, ClientError> {
        let mut q = vec![
            ("query", query.to_string()),
            ("fields", fields.to_string()),
            ("start", start.to_string()),
            ("count", count.to_string()),
        ];
        if let Some(s) = sort {
            q.push(("sort", s.to_string()));
        }
        let endpoint = format!("search/{entity}");
        self.get_list(endpoint, q).await
    }

    /// An idempotent `GET` of a list endpoint (`search/..`, `query/..`), decoded.
    async fn get_list<T: DeserializeOwned>(
        &self,
        endpoint: String,
        query: Vec<(&'static str, String)>,
    ) -> Result<ListEnvelope<T>, ClientError> {
        let body = self
            .call(Call {
                method: Method::GET,
                path: endpoint.clone(),
                query,
                endpoint: endpoint.clone(),
                idempotent: true,
            })
            .await?;
        decode(&endpoint, &body)
    }

    /// `GET query/{entity}?where=&fields=&orderBy=&start=&count=&showTotalMatched=true` (JPQL `where`).
    pub async fn query<T: DeserializeOwned>(
        &self,
        entity: &str,
        where_: &str,
        fields: &str,
        order_by: Option<&str>,
        start: u64,
        count: u32,
    ) -> Result<ListEnvelope<T>, ClientError> {
        let mut q = vec![
            ("where", where_.to_string()),
            ("fields", fields.to_string()),
            ("start", start.to_string()),
            ("count", count.to_string()),
            ("showTotalMatched", "true".to_string()),
        ];
        if let Some(o) = order_by {
            q.push(("orderBy", o.to_string()));
        }
        let endpoint = format!("query/{entity}");
        self.get_list(endpoint, q).await
    }

    /// `GET entity/{entity}/{id1,id2,..}?fields=`: the records that exist (missing ids are simply absent; a
    /// single missing id is a 404, answered as an empty list).
    pub async fn get_entities<T: DeserializeOwned>(
        &self,
        entity: &str,
        ids: &[i64],
        fields: &str,
    ) -> Result<Vec<T>, ClientError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let endpoint = format!("entity/{entity}");
        let result = self
            .call(Call {
                method: Method::GET,
                path: format!("entity/{entity}/{list}"),
                query: vec![("fields", fields.to_string())],
                endpoint: endpoint.clone(),
                idempotent: true,
            })
            .await;
        let body = match result {
            Err(ClientError::Api {
                status: 404, key, ..
            }) if key.as_deref() != Some("errors.unknownEntity") => return Ok(Vec::new()),
            other => other?,
        };
        // `{"data":{..}}` for one id, `{"data":[..]}` for several: look at the raw data before typing it.
        let env: DataEnvelope<Box<RawValue>> = decode(&endpoint, &body)?;
        let raw = env.data.get();
        if raw.trim_start().starts_with('[') {
            decode(&endpoint, raw.as_bytes())
        } else {
            Ok(vec![decode(&endpoint, raw.as_bytes())?])
        }
    }

    /// `PUT event/subscription/{id}?type=entity&names=..&eventTypes=..`; creating an existing id returns it.
    pub async fn subscribe(
        &self,
        subscription_id: &str,
        entities: &[String],
        event_types: &[&str],
    ) -> Result<SubscriptionCreated, ClientError> {
        let endpoint = "event/subscription".to_string();
        let body = self
            .call(Call {
                method: Method::PUT,
                path: format!("event/subscription/{subscription_id}"),
                query: vec![
                    ("type", "entity".into()),
                    ("names", entities.join(",")),
                    ("eventTypes", event_types.join(",")),
                ],
                endpoint: endpoint.clone(),
                idempotent: true,
            })
            .await?;
        decode(&endpoint, &body)
    }

    /// `GET event/subscription/{id}?maxEvents=N`: the next batch (`None` when there is nothing new). The batch
    /// is consumed by this call, so a failure that may have reached the server is not resent: the caller
    /// recovers through [`Self::last_request_id`] and [`Self::reget_events`].
    pub async fn poll_events(
        &self,
        subscription_id: &str,
        max_events: u32,
    ) -> Result<Option<EventBatch>, ClientError> {
        self.events(
            subscription_id,
            ("maxEvents", max_events.to_string()),
            false,
        )
        .await
    }

    /// `GET event/subscription/{id}?requestId=N`: batch `N` again (`None` if Bullhorn no longer has it).
    pub async fn reget_events(
        &self,
        subscription_id: &str,
        request_id: u64,
    ) -> Result<Option<EventBatch>, ClientError> {
        self.events(subscription_id, ("requestId", request_id.to_string()), true)
            .await
    }

    async fn events(
        &self,
        subscription_id: &str,
        param: (&'static str, String),
        idempotent: bool,
    ) -> Result<Option<EventBatch>, ClientError> {
        let endpoint = "event/subscription".to_string();
        let body = self
            .call(Call {
                method: Method::GET,
                path: format!("event/subscription/{subscription_id}"),
                query: vec![param],
                endpoint: endpoint.clone(),
                idempotent,
            })
            .await?;
        // An empty poll is an empty body (or `{"events":[]}`) depending on the tenant.
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let batch: EventBatch = decode(&endpoint, &body)?;
        Ok((!batch.events.is_empty()).then_some(batch))
    }

    /// `GET event/subscription/{id}/lastRequestId`.
    pub async fn last_request_id(&self, subscription_id: &str) -> Result<u64, ClientError> {
        let endpoint = "event/subscription/lastRequestId".to_string();
        let body = self
            .call(Call {
                method: Method::GET,
                path: format!("event/subscription/{subscription_id}/lastRequestId"),
                query: vec![],
                endpoint: endpoint.clone(),
                idempotent: true,
            })
            .await?;
        Ok(decode::<ResultResponse<u64>>(&endpoint, &body)?.result)
    }

    /// `DELETE event/subscription/{id}`.
    pub async fn unsubscribe(&self, subscription_id: &str) -> Result<bool, ClientError> {
        let endpoint = "event/subscription".to_string();
        let body = self
            .call(Call {
                method: Method::DELETE,
                path: format!("event/subscription/{subscription_id}"),
                query: vec![],
                endpoint: endpoint.clone(),
                idempotent: true,
            })
            .await?;
        Ok(decode::<ResultResponse<bool>>(&endpoint, &body)?.result)
    }

    /// `GET meta/{entity}?fields=*`: the entity's fields, types and labels.
    pub async fn meta(&self, entity: &str) -> Result<crate::wire::EntityMeta, ClientError> {
        let endpoint = format!("meta/{entity}");
        let body = self
            .call(Call {
                method: Method::GET,
                path: endpoint.clone(),
                query: vec![("fields", "*".to_string())],
                endpoint: endpoint.clone(),
                idempotent: true,
            })
            .await?;
        decode(&endpoint, &body)
    }

    /// `GET ping`: when the session expires.
    pub async fn ping(&self) -> Result<PingResponse, ClientError> {
        let endpoint = "ping".to_string();
        let body = self
            .call(Call {
                method: Method::GET,
                path: "ping".into(),
                query: vec![],
                endpoint: endpoint.clone(),
                idempotent: true,
            })
            .await?;
        decode(&endpoint, &body)
    }

    /// The request path: limits, session, send, classify, and whatever the retry policy decides.
    async fn call(&self, call: Call<'_>) -> Result<Vec<u8>, ClientError> {
        let inner = &*self.inner;
        let mut attempts = super::retry::Attempts::default();
        // The session this call re-authenticated into, and how often it did.
        let mut renewed_into: Option<u64> = None;
        let mut renewals = 0u32;
        loop {
            let session = inner.sessions.get().await?;
            inner.limiter.until_ready().await;
            let result = {
                let _permit = inner
                    .permits
                    .acquire()
                    .await
                    .map_err(|_| ClientError::Config("client closed".into()))?;
                inner.requests.fetch_add(1, Ordering::Relaxed);
                let url = format!("{}{}", session.rest_url, call.path);
                // One HTTP client span per attempt (OpenTelemetry HTTP conventions): the URL
                // without query and with the corporation token masked; the session token
                // travels in a header and is never recorded.
                let span = tracing::info_span!(
                    "http",
                    otel.name = call.method.as_str(),
                    otel.kind = "client",
                    http.request.method = call.method.as_str(),
                    url.full = redact_url(&url),
                    url.template = call.endpoint.as_str(),
                    http.request.resend_count = i64::from(attempts.total()),
                    http.response.status_code = tracing::field::Empty,
                    error.type = tracing::field::Empty,
                );
                let sent = tracing::Instrument::instrument(
                    inner
                        .http
                        .request(call.method.clone(), url)
                        .header("BhRestToken", session.bh_rest_token.expose_secret())
                        .query(&call.query)
                        .send(),
                    span.clone(),
                )
                .await;
                let result = match sent {
                    Ok(resp) => {
                        span.record(
                            "http.response.status_code",
                            i64::from(resp.status().as_u16()),
                        );
                        read_body(&call.endpoint, resp).await
                    }
                    Err(e) => Err(ClientError::from_reqwest(&call.endpoint, e)),
                };
                if let Err(e) = &result {
                    span.record(
                        "error.type",
                        e.to_string().chars().take(80).collect::<String>(),
                    );
                }
                result
            };
            let error = match result {
                Ok(body) => return Ok(body),
                Err(e) => e,
            };
            if matches!(error, ClientError::InvalidSession { .. })
                && renewed_into != Some(session.generation)
                && renewals < MAX_RENEWALS_PER_CALL
            {
                // Rejected on a session other than the one this call logged in for: it expired again while
                // the call waited (e.g. out a 429), which is not the persistent rejection that "retry once"
                // guards against.
                attempts.reauthenticated = false;
            }
            match inner.policy.decide(&error, &mut attempts, call.idempotent) {
                Decision::Retry(delay) => {
                    if matches!(error, ClientError::RateLimited { .. }) {
                        debug!(endpoint = %call.endpoint, delay_ms = delay.as_millis() as u64, "bullhorn rate limit, waiting");
                    } else {
                        warn!(endpoint = %call.endpoint, attempt = attempts.total(), %error, delay_ms = delay.as_millis() as u64, "bullhorn request failed, retrying");
                    }
                    tokio::time::sleep(delay).await;
                }
                Decision::Reauthenticate => {
                    warn!(endpoint = %call.endpoint, generation = session.generation, "bullhorn session rejected, logging in again");
                    renewed_into = Some(
                        inner
                            .sessions
                            .renew(Some(session.generation))
                            .await?
                            .generation,
                    );
                    renewals += 1;
                }
                Decision::GiveUp => return Err(inner.policy.exhausted(error, &attempts)),
            }
        }
    }
}

/// `url` as it may be recorded: no query, and the corporation token of a
/// `.../rest-services/<corpToken>/...` path masked.
fn redact_url(url: &str) -> String {
    let url = url.split('?').next().unwrap_or_default();
    match url.split_once("/rest-services/") {
        Some((base, rest)) => match rest.split_once('/') {
            Some((_, tail)) => format!("{base}/rest-services/{{corpToken}}/{tail}"),
            None => format!("{base}/rest-services/{{corpToken}}"),
        },
        None => url.to_owned(),
    }
}

impl std::fmt::Debug for BullhornClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BullhornClient")
            .field("requests_sent", &self.requests_sent())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn recorded_urls_carry_no_token_or_query() {
        for (url, want) in [
            (
                "https://rest9.bullhornstaffing.com/rest-services/e999/search/Candidate?BhRestToken=x&query=id:1",
                "https://rest9.bullhornstaffing.com/rest-services/{corpToken}/search/Candidate",
            ),
            (
                "http://127.0.0.1:1/rest-services/abc/ping",
                "http://127.0.0.1:1/rest-services/{corpToken}/ping",
            ),
            ("http://h/rest-services/abc", "http://h/rest-services/{corpToken}"),
            ("http://h/oauth/token?code=secret", "http://h/oauth/token"),
        ] {
            assert_eq!(redact_url(url), want);
        }
    }
}
