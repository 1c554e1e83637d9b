//! A quick connection check before real work: a metadata request through a client whose
//! error callback records librdkafka's global errors, so a wrong password, an unknown CA or a
//! host name mismatch fails at once with librdkafka's own one-line reason instead of an
//! operation timeout (librdkafka retries such connections forever).

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};

use crate::config::KafkaConfig;

/// Records the first error that waiting will not cure (authentication, TLS).
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Option<String>>>);

impl Capture {
    fn note(&self, reason: &str) {
        self.0.lock().get_or_insert_with(|| reason.to_owned());
    }
}

/// librdkafka's words for failures that waiting will not cure.
fn is_fatal_text(reason: &str) -> bool {
    [
        "SSL handshake failed",
        "certificate verify failed",
        "SASL authentication error",
        "Authentication failed",
        "SSL routines",
    ]
    .iter()
    .any(|m| reason.contains(m))
}

impl ClientContext for Capture {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(%error, reason, "kafka connection check");
        let fatal = matches!(
            error.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::SSL
                    | RDKafkaErrorCode::Authentication
                    | RDKafkaErrorCode::SaslAuthenticationFailed
                    | RDKafkaErrorCode::UnsupportedSASLMechanism
                    | RDKafkaErrorCode::IllegalSASLState
            )
        );
        if fatal || is_fatal_text(reason) {
            self.note(reason);
        }
    }

    // A failed TLS handshake is reported as a transport failure whose reason may only be in
    // the log line; the line goes to the logs as usual.
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        if is_fatal_text(message) {
            self.note(message);
        }
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", "librdkafka: {fac} {message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", "librdkafka: {fac} {message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", "librdkafka: {fac} {message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", "librdkafka: {fac} {message}")
            }
        }
    }
}

impl ProducerContext for Capture {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

/// Fails fast (within `timeout`, usually far sooner) when the brokers cannot be reached,
/// authenticated with or trusted. The error names the servers and librdkafka's reason.
pub async fn check_connection(cfg: &KafkaConfig, timeout: Duration) -> Result<(), KafkaError> {
    let servers = cfg.bootstrap_servers.clone();
    let fail = move |why: String| {
        KafkaError::ClientCreation(format!("cannot connect to Kafka at {servers}: {why}"))
    };
    let capture = Capture::default();
    let mut conf = super::client_config(cfg);
    conf.set("reconnect.backoff.ms", "100");
    let client: BaseProducer<Capture> = conf
        .create_with_context(capture.clone())
        .map_err(|e| fail(e.to_string()))?;
    let client = Arc::new(client);
    let deadline = Instant::now() + timeout;
    loop {
        let c = client.clone();
        let md = tokio::task::spawn_blocking(move || {
            let md = c
                .client()
                .fetch_metadata(None, Duration::from_millis(500))
                .map(|md| md.brokers().len());
            // Serves the error events (the callback above).
            c.poll(Duration::ZERO);
            md
        })
        .await
        .map_err(|e| fail(e.to_string()))?;
        if let Some(reason) = capture.0.lock().take() {
            return Err(fail(reason));
        }
        match md {
            Ok(n) if n > 0 => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(fail(e.to_string())),
            _ if Instant::now() >= deadline => {
                return Err(fail("no broker in the metadata".into()))
            }
            _ => {}
        }
    }
}
