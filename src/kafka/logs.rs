//! Where librdkafka's own log lines and global errors go. By default rdkafka writes each one as
//! an ERROR/WARN line, so a broker outage printed one line per reconnect attempt per client
//! (hundreds in ten seconds). Here connectivity errors feed the process-wide Kafka outage
//! tracker ([`crate::telemetry::outage`]: one line down, a reminder every 30 s, one line back),
//! and any other repeated librdkafka warning is written at most once per 30 s per kind.

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientContext;

use crate::telemetry::outage;

/// Whether `error` means the cluster (or this client's connection to it) is unreachable.
pub fn is_connectivity(error: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        error.rdkafka_error_code(),
        Some(
            C::AllBrokersDown
                | C::BrokerTransportFailure
                | C::Resolve
                | C::BrokerNotAvailable
                | C::NetworkException
                | C::RequestTimedOut
                | C::OperationTimedOut
        )
    )
}

/// A consume or poll error seen by `who`: an outage signal, or a throttled warning.
pub fn consume_error(who: &str, error: &KafkaError) {
    if is_connectivity(error) {
        outage::kafka().failed(who, error);
    } else if let Some(suppressed) = outage::throttle(&format!("{who}:{error}")) {
        tracing::warn!(%error, suppressed, who, "kafka consume error");
    }
}

/// librdkafka's log callback.
pub fn log(level: RDKafkaLogLevel, fac: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error
        | RDKafkaLogLevel::Warning => {
            // Connection failures ("Connect to ipv4#... failed", "Disconnected", ...) are the
            // outage the tracker already reports; everything else once per 30 s per facility.
            if outage::kafka().is_down() || matches!(fac, "FAIL" | "ERROR" | "BROKERFAIL") {
                tracing::debug!(target: "librdkafka", fac, message);
            } else if let Some(suppressed) = outage::throttle(&format!("librdkafka:{fac}")) {
                tracing::warn!(target: "librdkafka", fac, suppressed, "{message}");
            }
        }
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", fac, "{message}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", fac, "{message}"),
    }
}

/// librdkafka's global error callback.
pub fn error(error: KafkaError, reason: &str) {
    if is_connectivity(&error) {
        outage::kafka().failed("kafka client", &format_args!("{error}: {reason}"));
    } else if let Some(suppressed) = outage::throttle(&format!("librdkafka-error:{error}")) {
        tracing::error!(target: "librdkafka", %error, reason, suppressed, "kafka client error");
    }
}

/// The context of producers and metadata clients: logs as above, nothing else.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogContext;

impl rdkafka::consumer::ConsumerContext for LogContext {}

impl ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log(level, fac, message)
    }
    fn error(&self, error: KafkaError, reason: &str) {
        self::error(error, reason)
    }
}
