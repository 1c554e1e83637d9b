//! The simulator's HTTP server: routes, the embedding request pipeline, and the handle tests drive it with.
//!
//! An embedding request goes through the same steps whichever protocol it speaks: count it, apply the fault
//! plan (hang, planned or random failure, rate limit), validate it like the real service (empty, batch size,
//! input length, poison marker), add latency, embed, count the served inputs. Only the request and error body
//! shapes differ between TEI and OpenAI, so the protocol is a parameter, not a second code path.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use parking_lot::Mutex;
use rand::Rng;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use url::Url;

use super::state::InjectedFailure;
use super::vectors::embed_text;
use super::{Faults, SimArgs, SimStats};
use crate::wire::{
    Inputs, OpenAiEmbedding, OpenAiError, OpenAiErrorBody, OpenAiRequest, OpenAiResponse,
    OpenAiUsage, TeiError, TeiInfo, TeiRequest,
};

/// Path of the TEI embedding endpoint.
const TEI_PATH: &str = "/embed";
/// Path of the OpenAI-compatible embedding endpoint.
const OPENAI_PATH: &str = "/v1/embeddings";

/// Why the simulator could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A flag has a value the simulator cannot serve.
    #[error("invalid simulator settings: {0}")]
    InvalidArgs(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address requested.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The server task failed while serving or waiting for ctrl-c.
    #[error("simulator server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// Entry point: `Simulator::start(args)`.
#[derive(Debug)]
pub struct Simulator;

/// A running simulator. Dropping it stops the server (without waiting); [`SimHandle::shutdown`] stops it and
/// waits for the server task.
#[derive(Debug)]
pub struct SimHandle {
    addr: SocketAddr,
    state: Arc<SimState>,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

/// What computes the vectors a server answers with. The simulator's own is the hashed bag of words
/// ([`embed_text`]); `crmflow ml serve` plugs a real model in through [`Simulator::start_with`], keeping the
/// routes, validation and wire shapes of this module.
pub trait Embedder: Send + Sync + 'static {
    /// One L2-normalised vector of the served dimension per text, in input order. CPU-heavy implementations
    /// are called on a blocking thread ([`Embedder::blocking`]).
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, String>;

    /// True when [`Embedder::embed`] takes long enough to stall the async runtime (a neural network).
    fn blocking(&self) -> bool {
        false
    }
}

/// The simulator's vectors: [`embed_text`] at a fixed dimension.
#[derive(Debug)]
struct BagOfWords {
    dim: usize,
}

impl Embedder for BagOfWords {
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, String> {
        Ok(texts
            .iter()
            .map(|text| embed_text(text, self.dim))
            .collect())
    }
}

/// Shared by every request.
struct SimState {
    /// Fixed limits and identity (the fault fields of it are only the initial plan).
    args: SimArgs,
    faults: Mutex<Faults>,
    stats: Mutex<SimStats>,
    /// Fixed one-second rate-limit window: its start and the requests admitted in it.
    window: Mutex<(Instant, u32)>,
    /// Turns true at shutdown, releasing hung requests so graceful shutdown does not wait for them.
    shutdown: watch::Receiver<bool>,
    /// Computes the vectors.
    embedder: Arc<dyn Embedder>,
}

impl std::fmt::Debug for SimState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimState")
            .field("args", &self.args)
            .finish_non_exhaustive()
    }
}

/// Which wire protocol a request came in on: decides paths, statuses and error shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Tei,
    OpenAi,
}

impl Proto {
    fn path(self) -> &'static str {
        match self {
            Proto::Tei => TEI_PATH,
            Proto::OpenAi => OPENAI_PATH,
        }
    }

    /// TEI answers validation errors with 422, OpenAI with 400.
    fn validation_status(self) -> StatusCode {
        match self {
            Proto::Tei => StatusCode::UNPROCESSABLE_ENTITY,
            Proto::OpenAi => StatusCode::BAD_REQUEST,
        }
    }

    /// An error response in the protocol's body shape.
    fn error(self, status: StatusCode, message: impl Into<String>) -> Response {
        let message = message.into();
        match self {
            Proto::Tei => {
                let error_type = match status.as_u16() {
                    429 => "Overloaded",
                    503 => "Unhealthy",
                    500..=599 => "Backend",
                    _ => "Validation",
                };
                (
                    status,
                    Json(TeiError {
                        error: message,
                        error_type: error_type.into(),
                    }),
                )
                    .into_response()
            }
            Proto::OpenAi => {
                let kind = match status.as_u16() {
                    429 => "rate_limit_exceeded",
                    500..=599 => "server_error",
                    _ => "invalid_request_error",
                };
                (
                    status,
                    Json(OpenAiErrorBody {
                        error: OpenAiError {
                            message,
                            kind: kind.into(),
                        },
                    }),
                )
                    .into_response()
            }
        }
    }
}

impl Simulator {
    /// Binds `args.listen` and serves on the current tokio runtime until the handle shuts it down.
    pub async fn start(args: SimArgs) -> Result<SimHandle, SimError> {
        let embedder = Arc::new(BagOfWords { dim: args.dim });
        Self::start_with(args, embedder).await
    }

    /// Like [`Simulator::start`], with vectors computed by `embedder` (which must serve `args.dim` dimensions).
    pub async fn start_with(
        args: SimArgs,
        embedder: Arc<dyn Embedder>,
    ) -> Result<SimHandle, SimError> {
        if args.dim == 0 {
            return Err(SimError::InvalidArgs("--dim must be at least 1".into()));
        }
        if args.max_batch == 0 {
            return Err(SimError::InvalidArgs(
                "--max-batch must be at least 1".into(),
            ));
        }
        let faults = args.initial_faults();
        faults.validate().map_err(SimError::InvalidArgs)?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|source| SimError::Bind {
                addr: args.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SimError::Bind {
            addr: args.listen,
            source,
        })?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let state = Arc::new(SimState {
            faults: Mutex::new(faults),
            stats: Mutex::new(SimStats::default()),
            window: Mutex::new((Instant::now(), 0)),
            shutdown: shutdown_rx.clone(),
            args,
            embedder,
        });
        let app = router(state.clone());
        let mut stop = shutdown_rx;
        let limits =
            crmflow_httpd::Limits::default().with_max_body_bytes(state.args.max_payload_bytes);
        let task = tokio::spawn(async move {
            crmflow_httpd::serve(listener, app, limits, async move {
                // An error means the sender is gone, which is a shutdown too.
                let _ = stop.wait_for(|stopped| *stopped).await;
            })
            .await;
            Ok(())
        });
        tracing::info!(%addr, dim = state.args.dim, model = %state.args.model, "ML simulator listening");
        Ok(SimHandle {
            addr,
            state,
            shutdown,
            task: Some(task),
        })
    }
}

impl SimHandle {
    /// The bound address (the real port when started with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`: the base URL for [`ClientConfig`](crate::ClientConfig) and `ML_SERVICE_URL`.
    pub fn base_url(&self) -> Url {
        Url::parse(&format!("http://{}", self.addr)).expect("a socket address makes a valid URL")
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SimStats {
        self.state.stats.lock().clone()
    }

    /// Zeroes the counters.
    pub fn reset_stats(&self) {
        *self.state.stats.lock() = SimStats::default();
    }

    /// The current fault plan.
    pub fn faults(&self) -> Faults {
        self.state.faults.lock().clone()
    }

    /// Replaces the fault plan; takes effect for the next request.
    pub fn set_faults(&self, faults: Faults) {
        *self.state.faults.lock() = faults;
    }

    /// Stops accepting requests, releases hung ones, and waits for in-flight requests to finish.
    pub async fn shutdown(mut self) -> Result<(), SimError> {
        let _ = self.shutdown.send(true);
        match self.task.take() {
            Some(task) => match task.await {
                Ok(result) => result.map_err(SimError::Serve),
                Err(join) => Err(SimError::Serve(std::io::Error::other(join))),
            },
            None => Ok(()),
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        // A test that forgets to shut down must not leave a server (and its hung requests) behind.
        let _ = self.shutdown.send(true);
    }
}

/// Runs the simulator until ctrl-c, printing where it listens: what `crmflow sim ml` calls.
pub async fn run(args: SimArgs) -> Result<(), SimError> {
    let handle = Simulator::start(args).await?;
    let args = &handle.state.args;
    println!(
        "crmflow ML simulator listening on {} (model {}, dim {}, TEI POST /embed, OpenAI POST /v1/embeddings, \
         stats GET /sim/stats, faults POST /sim/faults)",
        handle.base_url(),
        args.model,
        args.dim
    );
    tokio::signal::ctrl_c().await.map_err(SimError::Serve)?;
    println!("shutting down");
    handle.shutdown().await
}

fn router(state: Arc<SimState>) -> Router {
    let body_limit = state.args.max_payload_bytes;
    Router::new()
        .route(TEI_PATH, post(tei_embed))
        .route(OPENAI_PATH, post(openai_embed))
        .route("/health", get(|| async { StatusCode::OK }))
        .route("/info", get(info))
        .route("/v1/models", get(models))
        .route("/sim/stats", get(stats))
        .route("/sim/reset-stats", post(reset_stats))
        .route("/sim/faults", get(get_faults).post(set_faults))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

async fn tei_embed(
    State(state): State<Arc<SimState>>,
    body: Result<Json<TeiRequest>, JsonRejection>,
) -> Response {
    let inputs = body.map(|Json(request)| request.inputs);
    let response = match embed_request(&state, Proto::Tei, inputs).await {
        Ok(served) => Json(served.vectors).into_response(),
        Err(refusal) => refusal.render(Proto::Tei),
    };
    state.stats.lock().record_status(response.status().as_u16());
    response
}

async fn openai_embed(
    State(state): State<Arc<SimState>>,
    body: Result<Json<OpenAiRequest>, JsonRejection>,
) -> Response {
    let inputs = body.map(|Json(request)| request.input);
    let response = match embed_request(&state, Proto::OpenAi, inputs).await {
        Ok(served) => {
            let data = served
                .vectors
                .into_iter()
                .enumerate()
                .map(|(index, embedding)| OpenAiEmbedding { index, embedding })
                .collect();
            let usage = OpenAiUsage {
                prompt_tokens: served.tokens,
                total_tokens: served.tokens,
            };
            Json(OpenAiResponse {
                data,
                model: state.args.model.clone(),
                usage,
            })
            .into_response()
        }
        Err(refusal) => refusal.render(Proto::OpenAi),
    };
    state.stats.lock().record_status(response.status().as_u16());
    response
}

/// A successful embedding request.
struct Served {
    vectors: Vec<Vec<f32>>,
    /// Rough token count (bytes / 4, the usual rule of thumb) for OpenAI's `usage`.
    tokens: u64,
}

/// The protocol-independent pipeline of an embedding request; `Err` is the error response to send.
async fn embed_request(
    state: &SimState,
    proto: Proto,
    inputs: Result<Inputs, JsonRejection>,
) -> Result<Served, Refusal> {
    {
        // Counted before faults, so a test can see that a retried batch came back whole.
        let mut stats = state.stats.lock();
        stats.record_arrival(proto.path());
        if let Ok(inputs) = &inputs {
            stats.inputs_received += inputs.as_slice().len() as u64;
            stats.max_batch_seen = stats.max_batch_seen.max(inputs.as_slice().len());
        }
    }
    inject_faults(state).await?;

    let inputs =
        inputs.map_err(|rejection| Refusal::new(rejection.status(), rejection.body_text()))?;
    let inputs = inputs.as_slice();
    validate(&state.args, proto, inputs)?;

    let latency = state.faults.lock().latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let vectors = compute(&state.embedder, inputs).await?;
    let tokens = inputs
        .iter()
        .map(|text| text.len().div_ceil(4) as u64)
        .sum();
    {
        let mut stats = state.stats.lock();
        stats.inputs_embedded += inputs.len() as u64;
        stats.batches += 1;
    }
    Ok(Served { vectors, tokens })
}

/// Runs the embedder, on a blocking thread when it is heavy; its failure is the server's (500).
async fn compute(
    embedder: &Arc<dyn Embedder>,
    inputs: &[String],
) -> Result<Vec<Vec<f32>>, Refusal> {
    let result = if embedder.blocking() {
        let embedder = embedder.clone();
        let inputs = inputs.to_vec();
        tokio::task::spawn_blocking(move || embedder.embed(&inputs))
            .await
            .unwrap_or_else(|join| Err(format!("embedding task failed: {join}")))
    } else {
        embedder.embed(inputs)
    };
    result.map_err(|message| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, message))
}

/// Applies the fault plan to one request: hang, planned or random failure, rate limit, in that order.
async fn inject_faults(state: &SimState) -> Result<(), Refusal> {
    let draw: f64 = rand::rng().random();
    let (hang, failure, hang_secs) = {
        let mut faults = state.faults.lock();
        let hang = faults.take_hang();
        // A hung request is not also failed: it consumes only its hang.
        let failure = if hang {
            None
        } else {
            faults.take_failure(draw)
        };
        (hang, failure, faults.hang_secs)
    };
    if hang {
        state.stats.lock().hangs += 1;
        let mut stop = state.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(hang_secs)) => {}
            _ = stop.wait_for(|stopped| *stopped) => {
                return Err(Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "simulator shutting down"));
            }
        }
    }
    if let Some(failure) = failure {
        state.stats.lock().faults_injected += 1;
        return Err(Refusal::injected(failure));
    }
    if !admit(state) {
        state.stats.lock().faults_injected += 1;
        let failure = InjectedFailure {
            status: 429,
            retry_after_secs: Some(1),
        };
        return Err(Refusal::injected(failure));
    }
    Ok(())
}

/// Fixed-window rate limit: admits up to `rate_limit_per_sec` embedding requests per second.
fn admit(state: &SimState) -> bool {
    let limit = state.faults.lock().rate_limit_per_sec;
    if limit == 0 {
        return true;
    }
    let mut window = state.window.lock();
    let now = Instant::now();
    if now.duration_since(window.0) >= Duration::from_secs(1) {
        *window = (now, 0);
    }
    if window.1 < limit {
        window.1 += 1;
        true
    } else {
        false
    }
}

/// A refused embedding request. Rendered in the protocol's body shape only at the edge, so the pipeline
/// carries a small value rather than a whole `Response`.
struct Refusal {
    status: StatusCode,
    message: String,
    retry_after_secs: Option<u64>,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    fn injected(failure: InjectedFailure) -> Self {
        let status =
            StatusCode::from_u16(failure.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        Self {
            status,
            message: format!("injected fault ({})", failure.status),
            retry_after_secs: failure.retry_after_secs,
        }
    }

    fn render(self, proto: Proto) -> Response {
        let mut response = proto.error(self.status, self.message);
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// The service's own limits: non-empty list, batch size, input length, poison marker.
fn validate(args: &SimArgs, proto: Proto, inputs: &[String]) -> Result<(), Refusal> {
    if inputs.is_empty() {
        return Err(Refusal::new(
            proto.validation_status(),
            "`inputs` cannot be empty",
        ));
    }
    if inputs.len() > args.max_batch {
        let message = format!(
            "batch size {} > maximum allowed batch size {}",
            inputs.len(),
            args.max_batch
        );
        return Err(Refusal::new(StatusCode::PAYLOAD_TOO_LARGE, message));
    }
    for (index, text) in inputs.iter().enumerate() {
        // Bytes bound characters from above, so most inputs skip the character count.
        if text.len() > args.max_input_chars && text.chars().count() > args.max_input_chars {
            let message = format!(
                "input {index} is longer than {} characters",
                args.max_input_chars
            );
            return Err(Refusal::new(proto.validation_status(), message));
        }
        if !args.poison_marker.is_empty() && text.contains(&args.poison_marker) {
            let message = format!("input {index} contains the poison marker");
            return Err(Refusal::new(proto.validation_status(), message));
        }
    }
    Ok(())
}

async fn info(State(state): State<Arc<SimState>>) -> Json<TeiInfo> {
    Json(TeiInfo {
        model_id: state.args.model.clone(),
        max_client_batch_size: state.args.max_batch,
        max_input_length: state.args.max_input_chars,
        version: concat!("crmflow-sim-", env!("CARGO_PKG_VERSION")).into(),
    })
}

async fn models(State(state): State<Arc<SimState>>) -> Json<serde_json::Value> {
    Json(json!({
        "object": "list",
        "data": [{"id": state.args.model, "object": "model", "owned_by": "crmflow"}],
    }))
}

async fn stats(State(state): State<Arc<SimState>>) -> Json<SimStats> {
    Json(state.stats.lock().clone())
}

async fn reset_stats(State(state): State<Arc<SimState>>) -> StatusCode {
    *state.stats.lock() = SimStats::default();
    StatusCode::NO_CONTENT
}

async fn get_faults(State(state): State<Arc<SimState>>) -> Json<Faults> {
    Json(state.faults.lock().clone())
}

/// Partial update of the fault plan; answers with the plan now in force.
async fn set_faults(
    State(state): State<Arc<SimState>>,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Response {
    let patch = match body {
        Ok(Json(patch)) => patch,
        Err(rejection) => return (rejection.status(), rejection.body_text()).into_response(),
    };
    let mut faults = state.faults.lock();
    match faults.patched(patch) {
        Ok(updated) => {
            *faults = updated.clone();
            Json(updated).into_response()
        }
        Err(message) => {
            (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
        }
    }
}
