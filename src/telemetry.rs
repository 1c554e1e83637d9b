//! Logs and traces. `tracing` everywhere; structured key/value logs, pretty or JSON by config;
//! spans exported over OTLP only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `telemetry.otlp_endpoint`) is set. The other standard `OTEL_*` variables are read by the
//! OpenTelemetry SDK itself, except the sampler: `OTEL_TRACES_SAMPLER` / `_ARG` set the share
//! of CRM changes traced record by record ([`effective_ratio`]), decided once at the source
//! (see [`crate::kafka::trace`]); spans follow their parent's decision, and batch spans (roots)
//! are always kept. [`outage`] turns dependency outages into a few log lines.

pub mod outage;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, TelemetryConfig};

/// Keeps the exporter alive; flushes pending spans when dropped.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

/// Installs the global subscriber. Call once, early in `main`.
pub fn init(cfg: &TelemetryConfig) -> anyhow::Result<TelemetryGuard> {
    let filter = match EnvFilter::try_from_default_env() {
        Ok(f) => f,
        // librdkafka's own logs are routed through `log`, which is noisy at info.
        Err(_) => EnvFilter::try_new(&cfg.log_level)
            .unwrap_or_else(|_| EnvFilter::new("info"))
            .add_directive("rdkafka=warn".parse()?)
            // deadpool warns once per pooled connection when Postgres goes away; the outage
            // tracker already says so in one line.
            .add_directive("deadpool=error".parse()?),
    };
    let fmt = match cfg.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(false)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let (otel, provider) = match cfg.otlp_endpoint.as_deref().filter(|e| !e.is_empty()) {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()?;
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
                .with_resource(
                    Resource::builder()
                        .with_service_name(cfg.service_name.clone())
                        .build(),
                )
                .build();
            let tracer = provider.tracer("crmflow");
            opentelemetry::global::set_tracer_provider(provider.clone());
            let ratio = effective_ratio(
                cfg.sample_ratio,
                std::env::var("OTEL_TRACES_SAMPLER").ok().as_deref(),
                std::env::var("OTEL_TRACES_SAMPLER_ARG").ok().as_deref(),
            );
            crate::kafka::trace::enable(ratio);
            (
                Some(tracing_opentelemetry::layer().with_tracer(tracer)),
                Some(provider),
            )
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        // The log level filters log lines only: spans reach the exporter whatever it is (with
        // RUST_LOG=warn every info span, so every trace, was dropped before the exporter).
        .with(fmt.with_filter(filter))
        .with(otel.map(|o| o.with_filter(tracing_subscriber::filter::LevelFilter::INFO)))
        .try_init()?;
    Ok(TelemetryGuard { provider })
}

/// The share of changes sampled: `OTEL_TRACES_SAMPLER` (`always_on`, `always_off`,
/// `traceidratio` with `OTEL_TRACES_SAMPLER_ARG`, and their `parentbased_` forms — a change
/// has no parent, so those mean the same) when set, else `telemetry.sample_ratio`.
pub fn effective_ratio(configured: f64, sampler: Option<&str>, arg: Option<&str>) -> f64 {
    let arg = || {
        arg.and_then(|a| a.trim().parse::<f64>().ok())
            .filter(|r| (0.0..=1.0).contains(r))
            .unwrap_or(1.0)
    };
    let ratio = match sampler.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        Some("always_on" | "parentbased_always_on") => 1.0,
        Some("always_off" | "parentbased_always_off") => 0.0,
        Some("traceidratio" | "parentbased_traceidratio") => arg(),
        _ => configured,
    };
    ratio.clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::effective_ratio;

    #[test]
    fn standard_sampler_variables_win_over_the_configured_ratio() {
        for (sampler, arg, want) in [
            (None, None, 0.01),
            (Some("always_on"), None, 1.0),
            (Some("parentbased_always_off"), None, 0.0),
            (Some("traceidratio"), Some("0.25"), 0.25),
            (Some("parentbased_traceidratio"), Some(" 0.5 "), 0.5),
            (Some("traceidratio"), None, 1.0),
            (Some("traceidratio"), Some("2"), 1.0),
            (Some("jaeger_remote"), None, 0.01),
        ] {
            assert_eq!(
                effective_ratio(0.01, sampler, arg),
                want,
                "{sampler:?} {arg:?}"
            );
        }
        assert_eq!(effective_ratio(7.0, None, None), 1.0);
    }
}
