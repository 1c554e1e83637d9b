//! Pub/Sub API subscriber: a gRPC channel over TLS (public roots + an optional CA file), the auth metadata
//! (`accesstoken`, `instanceurl`, `tenantid`), `GetTopic`, `GetSchema` with a schema cache, and
//! [`Subscription`], which keeps the server's credit topped up (`num_requested`, one batch ahead) and turns
//! each `ConsumerEvent` into a [`ReceivedEvent`]: replay id, typed [`ChangeEventHeader`] and the changed
//! fields as JSON (bitmap field lists decoded into names with the writer schema).

mod decode;
#[cfg(test)]
mod hostile;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Streaming};

pub use decode::{decode_bitmap, ChangeEventHeader};

use crate::client::Session;
use crate::proto::pub_sub_client::PubSubClient as Grpc;
use crate::proto::{
    ConsumerEvent, FetchRequest, FetchResponse, ReplayPreset, SchemaRequest, TopicInfo,
    TopicRequest,
};
pub use crmflow_avro_bounds::BoundedSchema;

/// The Pub/Sub API's public endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://api.pubsub.salesforce.com:7443";
/// `error-code` trailer of a replay id outside the retention window (or otherwise invalid).
pub const REPLAY_ID_CORRUPTED: &str =
    "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted";

/// Why a Pub/Sub call failed.
#[derive(Debug, thiserror::Error)]
pub enum PubSubError {
    /// The server answered a gRPC status.
    #[error("pub/sub {code:?}: {message} (error-code {error_code:?})")]
    Status {
        /// gRPC code.
        code: tonic::Code,
        /// Message.
        message: String,
        /// Salesforce's `error-code` trailer.
        error_code: Option<String>,
    },
    /// The connection could not be made.
    #[error("pub/sub transport: {0}")]
    Transport(String),
    /// An event could not be decoded.
    #[error("cannot decode a pub/sub event: {0}")]
    Decode(String),
    /// Bad settings.
    #[error("pub/sub configuration: {0}")]
    Config(String),
}

impl PubSubError {
    fn from_status(s: tonic::Status) -> Self {
        PubSubError::Status {
            code: s.code(),
            message: s.message().to_string(),
            error_code: s
                .metadata()
                .get("error-code")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        }
    }

    /// Whether the stored replay id is no longer usable (past the retention window): resubscribe from
    /// EARLIEST and resynchronise what may have been missed.
    pub fn is_replay_expired(&self) -> bool {
        matches!(self, PubSubError::Status { error_code: Some(c), .. } if c == REPLAY_ID_CORRUPTED)
    }

    /// Whether the session must be renewed before trying again.
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            PubSubError::Status {
                code: tonic::Code::Unauthenticated,
                ..
            }
        )
    }

    /// Whether subscribing again (after backoff, and after renewing the session when [`Self::is_auth`]) can
    /// succeed. An expired replay id cannot: it needs a different start.
    pub fn is_retriable(&self) -> bool {
        match self {
            PubSubError::Status { code, .. } => matches!(
                code,
                tonic::Code::Unavailable
                    | tonic::Code::Internal
                    | tonic::Code::Unknown
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::ResourceExhausted
                    | tonic::Code::Aborted
                    | tonic::Code::Cancelled
                    | tonic::Code::Unauthenticated
            ),
            PubSubError::Transport(_) => true,
            PubSubError::Decode(_) | PubSubError::Config(_) => false,
        }
    }
}

/// Who the calls are made as.
#[derive(Clone)]
pub struct Credentials {
    /// Session id.
    pub access_token: SecretString,
    /// The org's instance URL.
    pub instance_url: String,
    /// Org id.
    pub tenant_id: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_token", &"[REDACTED]")
            .field("instance_url", &self.instance_url)
            .field("tenant_id", &self.tenant_id)
            .finish()
    }
}

impl Credentials {
    /// From a REST session (the org id from the token answer, or the token's prefix).
    pub fn from_session(s: &Session) -> Result<Self, PubSubError> {
        Ok(Self {
            access_token: s.access_token.clone(),
            instance_url: s.instance_url.as_str().trim_end_matches('/').to_string(),
            tenant_id: s.org_id.clone().ok_or_else(|| {
                PubSubError::Config("the session does not name its org (tenant) id".into())
            })?,
        })
    }
}

/// Where to connect.
#[derive(Debug, Clone)]
pub struct PubSubConfig {
    /// `https://api.pubsub.salesforce.com:7443`, or the simulator's URL.
    pub endpoint: url::Url,
    /// Extra CA certificate(s), PEM.
    pub ca_pem: Option<Vec<u8>>,
    /// Events asked for per FetchRequest (Salesforce caps one request at 100).
    pub batch_size: i32,
    /// Connect timeout.
    pub connect_timeout: Duration,
}

impl PubSubConfig {
    /// Defaults for `endpoint`.
    pub fn new(endpoint: url::Url) -> Self {
        Self {
            endpoint,
            ca_pem: None,
            batch_size: 100,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Where a subscription starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayStart {
    /// Only events published from now on.
    Latest,
    /// The oldest retained event.
    Earliest,
    /// After the event with this replay id.
    After(Vec<u8>),
}

/// A decoded change event.
#[derive(Debug, Clone)]
pub struct ReceivedEvent {
    /// Position in the stream (store it to resume after).
    pub replay_id: Vec<u8>,
    /// Event uuid.
    pub event_id: String,
    /// Writer schema id.
    pub schema_id: String,
    /// The change header.
    pub header: ChangeEventHeader,
    /// The record fields the event carries (UPDATE: only the changed ones), nulls dropped.
    pub fields: Map<String, Value>,
}

/// A Pub/Sub API client; clones share the channel and the schema cache.
#[derive(Clone)]
pub struct PubSubClient {
    grpc: Grpc<Channel>,
    creds: Arc<Mutex<Credentials>>,
    schemas: Arc<Mutex<HashMap<String, Arc<BoundedSchema>>>>,
    batch_size: i32,
}

impl PubSubClient {
    /// Opens the channel (TLS, HTTP/2).
    pub async fn connect(config: &PubSubConfig, creds: Credentials) -> Result<Self, PubSubError> {
        let tls = crate::tls::client_config(config.ca_pem.as_deref(), &[b"h2"])
            .map_err(|e| PubSubError::Config(e.to_string()))?;
        let host = config
            .endpoint
            .host_str()
            .ok_or_else(|| PubSubError::Config("endpoint has no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = config.endpoint.port_or_known_default().unwrap_or(443);
        let origin: http::Uri = config
            .endpoint
            .as_str()
            .trim_end_matches('/')
            .parse()
            .map_err(|e| PubSubError::Config(format!("endpoint: {e}")))?;
        // TLS happens in the connector below, so the endpoint URI is plain http (tonic then does no TLS of its
        // own); requests still carry the https origin.
        let endpoint = Endpoint::from_shared(format!("http://{}", config.endpoint.authority()))
            .map_err(|e| PubSubError::Config(e.to_string()))?
            .origin(origin)
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true);
        let connector = tower::service_fn(move |_uri: http::Uri| {
            let tls = tls.clone();
            let host = host.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
                let name = rustls_pki_types::ServerName::try_from(host)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
                let stream = tokio_rustls::TlsConnector::from(tls)
                    .connect(name, tcp)
                    .await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        });
        let channel = endpoint
            .connect_with_connector(connector)
            .await
            .map_err(|e| {
                PubSubError::Transport(format!("{e}: {:?}", std::error::Error::source(&e)))
            })?;
        Ok(Self {
            grpc: Grpc::new(channel).max_decoding_message_size(64 << 20),
            creds: Arc::new(Mutex::new(creds)),
            schemas: Arc::new(Mutex::new(HashMap::new())),
            batch_size: config.batch_size.max(1),
        })
    }

    /// Replaces the credentials (after the session was renewed).
    pub fn set_credentials(&self, creds: Credentials) {
        *self.creds.lock() = creds;
    }

    fn request<T>(&self, msg: T) -> Result<Request<T>, PubSubError> {
        let c = self.creds.lock().clone();
        let mut r = Request::new(msg);
        let md = r.metadata_mut();
        let val = |s: &str| -> Result<MetadataValue<_>, PubSubError> {
            s.parse()
                .map_err(|_| PubSubError::Config("credentials are not valid header values".into()))
        };
        md.insert("accesstoken", val(c.access_token.expose_secret())?);
        md.insert("instanceurl", val(&c.instance_url)?);
        md.insert("tenantid", val(&c.tenant_id)?);
        Ok(r)
    }

    /// `GetTopic`.
    pub async fn get_topic(&self, topic: &str) -> Result<TopicInfo, PubSubError> {
        let req = self.request(TopicRequest {
            topic_name: topic.to_string(),
        })?;
        self.grpc
            .clone()
            .get_topic(req)
            .await
            .map(|r| r.into_inner())
            .map_err(PubSubError::from_status)
    }

    /// The writer schema `schema_id` (`GetSchema`, cached), with its named types resolved for the
    /// bounds check every payload gets before it is decoded.
    pub async fn schema(&self, schema_id: &str) -> Result<Arc<BoundedSchema>, PubSubError> {
        if let Some(s) = self.schemas.lock().get(schema_id) {
            return Ok(s.clone());
        }
        let req = self.request(SchemaRequest {
            schema_id: schema_id.to_string(),
        })?;
        let info = self
            .grpc
            .clone()
            .get_schema(req)
            .await
            .map_err(PubSubError::from_status)?
            .into_inner();
        let schema = apache_avro::Schema::parse_str(&info.schema_json)
            .map_err(|e| PubSubError::Decode(e.to_string()))?;
        let schema =
            Arc::new(BoundedSchema::new(schema).map_err(|e| PubSubError::Decode(e.to_string()))?);
        self.schemas
            .lock()
            .insert(schema_id.to_string(), schema.clone());
        Ok(schema)
    }

    /// Opens a subscription to `topic` from `start`.
    pub async fn subscribe(
        &self,
        topic: &str,
        start: ReplayStart,
    ) -> Result<Subscription, PubSubError> {
        let (preset, replay_id) = match start {
            ReplayStart::Latest => (ReplayPreset::Latest, Vec::new()),
            ReplayStart::Earliest => (ReplayPreset::Earliest, Vec::new()),
            ReplayStart::After(id) => (ReplayPreset::Custom, id),
        };
        let (tx, rx) = mpsc::channel::<FetchRequest>(16);
        let first = FetchRequest {
            topic_name: topic.to_string(),
            replay_preset: preset as i32,
            replay_id,
            num_requested: self.batch_size,
            auth_refresh: String::new(),
        };
        tx.send(first)
            .await
            .map_err(|_| PubSubError::Transport("request stream closed".into()))?;
        let req = self.request(tokio_stream::wrappers::ReceiverStream::new(rx))?;
        let inbound = self
            .grpc
            .clone()
            .subscribe(req)
            .await
            .map_err(PubSubError::from_status)?
            .into_inner();
        Ok(Subscription {
            client: self.clone(),
            tx,
            inbound,
            buffered: VecDeque::new(),
            outstanding: i64::from(self.batch_size),
            latest_replay_id: Vec::new(),
        })
    }
}

/// An open subscription.
pub struct Subscription {
    client: PubSubClient,
    tx: mpsc::Sender<FetchRequest>,
    inbound: Streaming<FetchResponse>,
    buffered: VecDeque<ConsumerEvent>,
    outstanding: i64,
    latest_replay_id: Vec<u8>,
}

impl Subscription {
    /// The latest replay id the server reported (also from keepalives): where to resume when nothing newer
    /// was processed.
    pub fn latest_replay_id(&self) -> &[u8] {
        &self.latest_replay_id
    }

    /// Events asked for and not yet received.
    pub fn outstanding(&self) -> i64 {
        self.outstanding
    }

    /// The next raw event (schema not applied), or `None` when the server closed the stream.
    pub async fn next_raw(&mut self) -> Result<Option<ConsumerEvent>, PubSubError> {
        loop {
            if let Some(e) = self.buffered.pop_front() {
                return Ok(Some(e));
            }
            let batch = i64::from(self.client.batch_size);
            if self.outstanding <= batch / 2 {
                // One batch ahead, so the server never idles waiting for credit.
                let more = FetchRequest {
                    num_requested: self.client.batch_size,
                    ..Default::default()
                };
                if self.tx.send(more).await.is_ok() {
                    self.outstanding += batch;
                }
            }
            match self.inbound.message().await {
                Ok(Some(resp)) => {
                    self.outstanding -= resp.events.len() as i64;
                    if !resp.latest_replay_id.is_empty() {
                        self.latest_replay_id = resp.latest_replay_id;
                    }
                    self.buffered.extend(resp.events);
                }
                Ok(None) => return Ok(None),
                Err(s) => return Err(PubSubError::from_status(s)),
            }
        }
    }

    /// The next decoded event, or `None` when the server closed the stream.
    pub async fn next_event(&mut self) -> Result<Option<ReceivedEvent>, PubSubError> {
        let Some(ce) = self.next_raw().await? else {
            return Ok(None);
        };
        let ev = ce
            .event
            .ok_or_else(|| PubSubError::Decode("ConsumerEvent without event".into()))?;
        let schema = self.client.schema(&ev.schema_id).await?;
        let (header, fields) = decode::decode(&schema, &ev.payload)?;
        Ok(Some(ReceivedEvent {
            replay_id: ce.replay_id,
            event_id: ev.id,
            schema_id: ev.schema_id,
            header,
            fields,
        }))
    }
}
