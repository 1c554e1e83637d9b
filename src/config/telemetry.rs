//! Observability sections: `[telemetry]` (logs and traces) and `[metrics]` (the operator endpoint).

use serde::{Deserialize, Serialize};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Logs and traces.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    /// `tracing` filter directive; `RUST_LOG` wins when set.
    pub log_level: String,
    /// OTLP gRPC endpoint; traces are exported only when set. Env: `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub otlp_endpoint: Option<String>,
    /// Env: `OTEL_SERVICE_NAME`.
    pub service_name: String,
    /// Share of CRM changes (0.0–1.0) whose journey is traced record by record (decided once
    /// at the source, carried in the `traceparent` flags). The standard
    /// `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` win when set. Batch spans are always
    /// exported while `otlp_endpoint` is set.
    pub sample_ratio: f64,
    /// A trace viewer URL with `{trace_id}` in it (Jaeger: `http://localhost:16686/trace/{trace_id}`);
    /// `crmflow lineage` prints the record's trace link with it.
    pub trace_ui_url: Option<String>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Pretty,
            log_level: "info".into(),
            otlp_endpoint: None,
            service_name: "crmflow".into(),
            sample_ratio: 0.01,
            trace_ui_url: None,
        }
    }
}

/// The operator HTTP endpoint (`/metrics`, `/healthz`, `/readyz`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `host:port`; empty disables the endpoint.
    pub listen: String,
    /// How often a running process measures its lag, the DLQ depth and source lag, and
    /// writes its heartbeat for `crmflow status`.
    pub refresh_secs: u64,
    /// A stage with input waiting and no progress for this long is stalled (`/readyz` 503).
    pub stall_after_secs: u64,
    /// Progress log interval of one-shot runs when stderr is not a terminal.
    pub progress_log_secs: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9464".into(),
            refresh_secs: 10,
            stall_after_secs: 300,
            progress_log_secs: 10,
        }
    }
}
