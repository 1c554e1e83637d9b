//! The webhook ingress (`crmflow run --stages ingress`): HubSpot POSTs signed batches of change
//! events here; they leave as `ChangeEvent`s on `crm.raw.hubspot.<entity>`.
//!
//! One request, in order ([`handle`]):
//! 1. the body is capped at `ingress.max_body_bytes` (413);
//! 2. `X-HubSpot-Signature-v3` is checked in constant time over method + the public URL HubSpot
//!    called (`ingress.public_url`, plus the query) + body + `X-HubSpot-Request-Timestamp`, and the
//!    timestamp must be within `ingress.max_timestamp_age_secs` (401); a byte-identical request seen
//!    before (same signature) is a replay (401) — HubSpot's own retries carry a new timestamp, so
//!    they are not replays;
//! 3. the body must be a JSON array of events (400 with the parser's message);
//! 4. events already delivered are dropped (moka, keyed on `(subscriptionId, eventId, occurredAt,
//!    objectId)`, remembered only once Kafka acknowledged them);
//! 5. [`plan`] says which objects to re-read and which ids are gone; the current objects are read
//!    with batch read (ids no longer live are looked up among archived objects, giving tombstones at
//!    `archivedAt`);
//! 6. every event is produced and the answer waits for Kafka's acknowledgement of all of them:
//!    200 only then; a HubSpot or Kafka failure, or a request slower than
//!    `ingress.request_timeout_ms`, answers 503 so HubSpot delivers again. Event ids are
//!    deterministic (crm, entity, id, version), so a redelivery is harmless downstream.

pub mod plan;

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use rdkafka::message::OwnedHeaders;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError, HubspotConfig, IngressConfig};
use crate::error::{Error, Result};
use crate::kafka::trace::{inject, TraceParent};
use crate::kafka::{Producer, Topics};
use crate::model::{ChangeEvent, Op};
use crate::runtime::RunCtx;
use crate::sources::hubspot::record;
use crmflow_hubspot::client::HubSpotClient;
use crmflow_hubspot::signature::{self, SIGNATURE_V3_HEADER, TIMESTAMP_HEADER};
use crmflow_hubspot::wire::{modified_property, CrmObject, WebhookEvent};

const STAGE: &str = "ingress";

/// Path served when `ingress.public_url` is empty.
pub const DEFAULT_PATH: &str = "/webhooks/hubspot";

/// Why a request was not accepted; each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    /// Bad or missing signature, stale timestamp, replay: 401, HubSpot should not retry.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// Not a JSON array of events: 400.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// HubSpot or Kafka failed, or too slow: 503, HubSpot delivers again.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl IngressError {
    pub fn status(&self) -> StatusCode {
        match self {
            IngressError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            IngressError::BadRequest(_) => StatusCode::BAD_REQUEST,
            IngressError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Whether the sender should deliver the same events again.
    pub fn is_retriable(&self) -> bool {
        matches!(self, IngressError::Unavailable(_))
    }
}

impl IntoResponse for IngressError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "status": "error", "message": self.to_string() });
        (self.status(), Json(body)).into_response()
    }
}

/// The answer to an accepted request.
#[derive(Debug, Serialize)]
pub struct Accepted {
    /// Events in the request.
    pub events: usize,
    /// Events delivered before (dropped).
    pub duplicates: usize,
    /// Events of objects or kinds not read.
    pub ignored: usize,
    /// Change events Kafka acknowledged.
    pub emitted: usize,
}

/// One configured object, ready to serve.
struct Object {
    entity: String,
    object_type: String,
    properties: Vec<String>,
    modified: &'static str,
    topic: String,
}

/// Everything a request needs.
struct Shared {
    hubspot: HubspotConfig,
    objects: Vec<Object>,
    client: HubSpotClient,
    producer: Producer,
    secret: SecretString,
    /// The URL the signature covers (without the query).
    signed_url: String,
    max_age: Duration,
    timeout: Duration,
    /// Events Kafka acknowledged.
    seen_events: moka::sync::Cache<plan::EventKey, ()>,
    /// Signatures of verified requests, for replay refusal.
    seen_signatures: moka::sync::Cache<String, ()>,
    /// `(object, id, version, delete)` Kafka acknowledged: a re-read of an unchanged object is
    /// not produced again.
    seen_versions: moka::sync::Cache<(usize, String, i64, bool), ()>,
}

/// A running ingress.
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    /// The URL HubSpot must call (what the signature is computed over).
    pub url: String,
    /// Ends when the server stopped.
    pub task: tokio::task::JoinHandle<()>,
}

/// The ingress stage: serves until shutdown. It has no end to catch up with, so one-shot mode
/// does not stop it: a `--until-caught-up` run that lists it ends on SIGINT/SIGTERM.
pub async fn run(ctx: RunCtx) -> Result<()> {
    if ctx.until_caught_up {
        tracing::warn!(
            "the webhook ingress serves until stopped; --until-caught-up does not end it"
        );
    }
    let running = serve(&ctx.cfg, ctx.shutdown.clone()).await?;
    tracing::info!(addr = %running.addr, url = %running.url, "webhook ingress listening");
    let _ = running.task.await;
    Ok(())
}

/// Binds `ingress.listen` and serves until `shutdown`.
pub async fn serve(cfg: &Config, shutdown: CancellationToken) -> Result<Running> {
    let hubspot = cfg.hubspot.clone().ok_or(ConfigError::Missing {
        key: "hubspot.access_token",
        env: "HUBSPOT_ACCESS_TOKEN",
    })?;
    let ing = &cfg.ingress;
    let secret = ing.client_secret.clone().ok_or(ConfigError::Missing {
        key: "ingress.client_secret",
        env: "HUBSPOT_CLIENT_SECRET",
    })?;
    let client = crate::sources::hubspot::client(&hubspot, ing)?;
    let producer = Producer::new(&cfg.kafka)?;
    let listener = tokio::net::TcpListener::bind(&ing.listen)
        .await
        .map_err(|e| {
            Error::Other(format!(
                "ingress.listen = {:?}: cannot bind: {e}",
                ing.listen
            ))
        })?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Other(e.to_string()))?;
    let url = ing.signed_url(addr);
    let path = route_path(ing)?;
    let topics = Topics::new(&cfg.kafka);
    let objects = hubspot
        .objects
        .iter()
        .map(|o| Object {
            entity: o.entity.clone(),
            object_type: o.object_type.clone(),
            properties: hubspot.properties_of(o),
            modified: modified_property(&o.object_type),
            topic: topics.raw(record::CRM, &o.entity),
        })
        .collect();
    let shared_timeout = Duration::from_millis(ing.request_timeout_ms.max(1));
    let shared = Arc::new(Shared {
        hubspot,
        objects,
        client,
        producer,
        secret,
        signed_url: url.clone(),
        max_age: Duration::from_secs(ing.max_timestamp_age_secs),
        timeout: Duration::from_millis(ing.request_timeout_ms.max(1)),
        seen_events: moka::sync::Cache::builder()
            .max_capacity(ing.dedupe_capacity)
            .time_to_live(Duration::from_secs(24 * 3600))
            .build(),
        seen_signatures: moka::sync::Cache::builder()
            .max_capacity(ing.dedupe_capacity)
            .time_to_live(Duration::from_secs(
                ing.max_timestamp_age_secs.saturating_mul(2).max(1),
            ))
            .build(),
        seen_versions: moka::sync::Cache::builder()
            .max_capacity(ing.dedupe_capacity)
            .time_to_idle(Duration::from_secs(3600))
            .build(),
    });
    let app = Router::new()
        .route(&path, post(webhook))
        .layer(DefaultBodyLimit::max(ing.max_body_bytes))
        .with_state(shared);
    // Past the handler's own deadline (503, HubSpot retries) only a client still sending its
    // body is left; it gets 408 after as long again.
    let limits = crmflow_httpd::Limits::default()
        .with_request_timeout(shared_timeout.saturating_mul(2))
        .with_max_body_bytes(ing.max_body_bytes);
    let task = tokio::spawn(async move {
        crmflow_httpd::serve(listener, app, limits, shutdown.cancelled_owned()).await;
    });
    Ok(Running { addr, url, task })
}

/// The path of `ingress.public_url` (HubSpot calls that path; a proxy in front must keep it).
fn route_path(ing: &IngressConfig) -> Result<String> {
    if ing.public_url.is_empty() {
        return Ok(DEFAULT_PATH.to_owned());
    }
    let u = url::Url::parse(&ing.public_url).map_err(|e| {
        ConfigError::Invalid(format!("ingress.public_url = {:?}: {e}", ing.public_url))
    })?;
    Ok(u.path().to_owned())
}

async fn webhook(
    State(st): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = std::time::Instant::now();
    let result =
        match tokio::time::timeout(st.timeout, handle(&st, &method, &uri, &headers, &body)).await {
            Ok(r) => r,
            Err(_) => Err(IngressError::Unavailable(format!(
                "not acknowledged within {} ms",
                st.timeout.as_millis()
            ))),
        };
    match result {
        Ok(a) => {
            crate::observe::batch(STAGE, a.events, started.elapsed());
            crate::observe::progress(STAGE);
            (StatusCode::OK, Json(a)).into_response()
        }
        Err(e) => {
            if e.is_retriable() {
                crate::observe::retry(STAGE, "crm", &e);
                tracing::warn!(error = %e, "webhook request not acknowledged; HubSpot will retry");
            } else {
                crate::observe::rejected(STAGE, "webhook.refused", 1);
                tracing::info!(error = %e, "webhook request refused");
            }
            e.into_response()
        }
    }
}

/// Verifies, reads and emits one request; `Ok` only after Kafka acknowledged every event.
async fn handle(
    st: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Accepted, IngressError> {
    verify(st, method, uri, headers, body)?;
    let events: Vec<WebhookEvent> = serde_json::from_slice(body).map_err(|e| {
        IngressError::BadRequest(format!(
            "the body is not a JSON array of HubSpot events: {e}"
        ))
    })?;
    crate::observe::records_in(STAGE, events.len() as u64);
    let mut keys = HashSet::with_capacity(events.len());
    let fresh: Vec<&WebhookEvent> = events
        .iter()
        .filter(|e| {
            let k = plan::event_key(e);
            !st.seen_events.contains_key(&k) && keys.insert(k)
        })
        .collect();
    let duplicates = events.len() - fresh.len();
    let plan = plan::plan(&st.hubspot, fresh.iter().copied());
    let observed_at = chrono::Utc::now().timestamp_millis();
    let mut out: Vec<(usize, ChangeEvent)> = Vec::new();
    for (&idx, p) in &plan.objects {
        let o = &st.objects[idx];
        for (id, at) in &p.tombstones {
            out.push((
                idx,
                record::bare_tombstone(&o.entity, id, *at, "webhook", observed_at),
            ));
        }
        if p.reads.is_empty() {
            continue;
        }
        let ids: Vec<String> = p.reads.iter().cloned().collect();
        let live = read(st, o, &ids, false).await?;
        let found: HashSet<&str> = live.iter().map(|x| x.id.as_str()).collect();
        let missing: Vec<String> = ids
            .iter()
            .filter(|id| !found.contains(id.as_str()))
            .cloned()
            .collect();
        let gone = if missing.is_empty() {
            Vec::new()
        } else {
            read(st, o, &missing, true).await?
        };
        for obj in live.iter().chain(gone.iter()) {
            let changed = p
                .changed
                .get(&obj.id)
                .map(|s: &BTreeSet<String>| s.iter().cloned().collect())
                .unwrap_or_default();
            match record::object_event(&o.entity, obj, o.modified, "webhook", changed, observed_at)
            {
                Some(ev) => {
                    // Ids merged into this object are gone (the merge event may be lost or late).
                    for id in record::merged_ids(obj) {
                        let t = record::bare_tombstone(
                            &o.entity,
                            &id,
                            ev.source_version,
                            "webhook",
                            observed_at,
                        );
                        out.push((idx, t));
                    }
                    out.push((idx, ev))
                }
                None => {
                    tracing::warn!(entity = %o.entity, id = %obj.id, "object without a usable modified time; skipped")
                }
            }
        }
    }
    let emitted = emit(st, out).await?;
    for k in keys {
        st.seen_events.insert(k, ());
    }
    Ok(Accepted {
        events: events.len(),
        duplicates,
        ignored: plan.ignored,
        emitted,
    })
}

/// Checks the v3 signature, the timestamp's age and that the request is no replay.
fn verify(
    st: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), IngressError> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| IngressError::Unauthorized(format!("missing header {name}")))
    };
    let sig = header(SIGNATURE_V3_HEADER)?;
    let ts = header(TIMESTAMP_HEADER)?;
    let url = match uri.query() {
        Some(q) => format!("{}?{q}", st.signed_url),
        None => st.signed_url.clone(),
    };
    let now = chrono::Utc::now().timestamp_millis();
    let secret = st.secret.expose_secret().as_bytes();
    let check =
        |u: &str| signature::verify_v3(secret, method.as_str(), u, body, ts, sig, now, st.max_age);
    match check(&url) {
        Ok(()) => {}
        // HubSpot's docs have receivers decode a few escapes in the URI before signing.
        Err(signature::SignatureError::Mismatch)
            if signature::decode_uri_for_signature(&url) != url =>
        {
            check(&signature::decode_uri_for_signature(&url))
                .map_err(|e| IngressError::Unauthorized(e.to_string()))?
        }
        Err(e) => return Err(IngressError::Unauthorized(e.to_string())),
    }
    // A verified signature is unique to (timestamp, body): seeing it again is a replay.
    let entry = st.seen_signatures.entry(sig.to_owned()).or_insert(());
    if !entry.is_fresh() {
        return Err(IngressError::Unauthorized("replayed request".into()));
    }
    Ok(())
}

async fn read(
    st: &Shared,
    o: &Object,
    ids: &[String],
    archived: bool,
) -> Result<Vec<CrmObject>, IngressError> {
    st.client
        .batch_read::<CrmObject>(&o.object_type, ids, &o.properties, archived)
        .await
        .map_err(|e| {
            IngressError::Unavailable(format!("hubspot batch read of {}: {e}", o.object_type))
        })
}

/// Produces the events (skipping versions already acknowledged) and waits for every ack.
async fn emit(st: &Shared, events: Vec<(usize, ChangeEvent)>) -> Result<usize, IngressError> {
    let tp = TraceParent::current_or_new();
    let mut deliveries = Vec::with_capacity(events.len());
    let mut sent = Vec::with_capacity(events.len());
    let unavailable = |e: &dyn std::fmt::Display| IngressError::Unavailable(format!("kafka: {e}"));
    for (idx, ev) in events {
        let key = (
            idx,
            ev.record_id.clone(),
            ev.source_version,
            ev.op == Op::Delete,
        );
        if st.seen_versions.contains_key(&key) {
            continue;
        }
        let o = &st.objects[idx];
        let payload = crate::codec::change_event()
            .encode(&ev)
            .map_err(|e| unavailable(&e))?;
        let headers = inject(OwnedHeaders::new(), &tp);
        let d = st
            .producer
            .send(&o.topic, ev.record_id.as_bytes(), &payload, headers)
            .await
            .map_err(|e| unavailable(&e))?;
        deliveries.push(d);
        sent.push((key, idx));
    }
    futures::future::try_join_all(deliveries)
        .await
        .map_err(|e| unavailable(&e))?;
    for (key, idx) in &sent {
        crate::observe::source_records(record::CRM, &st.objects[*idx].entity, 1);
        st.seen_versions.insert(key.clone(), ());
    }
    crate::observe::records_out(STAGE, sent.len() as u64);
    Ok(sent.len())
}
