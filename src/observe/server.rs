//! The operator endpoint: `GET /metrics` (Prometheus text), `GET /healthz` (the process is
//! alive and its runtime answers), `GET /readyz` (Kafka and Postgres reachable, no stage
//! stalled; 503 with the failing checks otherwise).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::Serialize;

use crate::config::Config;
use crate::error::{Error, Result};

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

struct Probe {
    cfg: Arc<Config>,
    kafka: Arc<BaseConsumer<crate::kafka::LogContext>>,
}

/// What `/readyz` answers, as JSON.
#[derive(Debug, Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub postgres: String,
    pub kafka: String,
    /// Stages of this process that are stalled, with why.
    pub stalled: Vec<String>,
}

/// Binds `cfg.metrics.listen` and serves until the runtime stops. Returns the bound address,
/// or `None` when the endpoint is disabled (empty `listen`).
pub async fn serve(cfg: Arc<Config>) -> Result<Option<std::net::SocketAddr>> {
    let listen = cfg.metrics.listen.trim().to_owned();
    if listen.is_empty() {
        return Ok(None);
    }
    super::install();
    let listener = tokio::net::TcpListener::bind(&listen).await.map_err(|e| {
        Error::Other(format!(
            "metrics.listen = {listen:?} (CRMFLOW_METRICS__LISTEN): cannot bind: {e}"
        ))
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Other(e.to_string()))?;
    let kafka: BaseConsumer<crate::kafka::LogContext> = crate::kafka::client_config(&cfg.kafka)
        .set("client.id", "crmflow-readyz")
        .create_with_context(crate::kafka::LogContext)?;
    let probe = Arc::new(Probe {
        cfg,
        kafka: Arc::new(kafka),
    });
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(probe);
    tokio::spawn(async move {
        let limits = crmflow_httpd::Limits::default();
        crmflow_httpd::serve(listener, app, limits, std::future::pending()).await;
        tracing::error!("metrics endpoint stopped");
    });
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    Ok(Some(addr))
}

async fn metrics() -> Response {
    match super::install() {
        Some(h) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            h.render(),
        )
            .into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "no metrics recorder\n").into_response(),
    }
}

async fn readyz(State(p): State<Arc<Probe>>) -> Response {
    let r = readiness(&p).await;
    let code = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(r)).into_response()
}

/// Whether Postgres accepts a connection and answers `SELECT 1` within the probe timeout.
pub async fn postgres_reachable(cfg: &Config) -> std::result::Result<(), String> {
    let pg = async {
        let (client, driver) = crate::store::connect_with_driver(cfg).await?;
        let r = client.simple_query("SELECT 1").await.map(|_| ());
        drop(client);
        let _ = driver.await;
        r.map_err(crate::store::StoreError::from)
    };
    match tokio::time::timeout(PROBE_TIMEOUT, pg).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(with_sources(&e)),
        Err(_) => Err("timed out".to_owned()),
    }
}

/// Whether the Kafka cluster answers a metadata request within the probe timeout, through
/// `client` (a group-less client).
pub async fn kafka_reachable(
    client: Arc<BaseConsumer<crate::kafka::LogContext>>,
) -> std::result::Result<(), String> {
    match tokio::task::spawn_blocking(move || client.fetch_metadata(None, PROBE_TIMEOUT)).await {
        Ok(Ok(md)) if !md.brokers().is_empty() => Ok(()),
        Ok(Ok(_)) => Err("no brokers in metadata".to_owned()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("probe failed: {e}")),
    }
}

/// An error with its causes, `a: b: c` (tokio-postgres keeps the server's message in its
/// source).
pub fn with_sources(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !s.contains(&text) {
            s = format!("{s}: {text}");
        }
        cause = c.source();
    }
    s
}

async fn readiness(p: &Probe) -> Readiness {
    let show = |r: std::result::Result<(), String>| match r {
        Ok(()) => "ok".to_owned(),
        Err(e) => format!("unreachable: {e}"),
    };
    let postgres = show(postgres_reachable(&p.cfg).await);
    let kafka = show(kafka_reachable(p.kafka.clone()).await);
    let after = Duration::from_secs(p.cfg.metrics.stall_after_secs);
    let stalled: Vec<String> = super::stages()
        .into_iter()
        .filter(|(_, s)| s.stalled(after))
        .map(|(name, s)| {
            format!(
                "{name}: lag {} and no progress for {} s",
                s.lag.unwrap_or(0),
                s.last_progress.unwrap_or(s.started).elapsed().as_secs()
            )
        })
        .collect();
    Readiness {
        ready: postgres == "ok" && kafka == "ok" && stalled.is_empty(),
        postgres,
        kafka,
        stalled,
    }
}
