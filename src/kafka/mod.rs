//! Kafka plumbing shared by every stage: client settings (connection security included),
//! topic names and creation, an idempotent producer whose full queue is backpressure,
//! consumers with manual offset control, and W3C `traceparent` propagation on message headers.
//!
//! Nothing here knows what a stage does with messages; the stages own delivery semantics.

mod consumer;
pub mod logs;
mod preflight;
mod producer;
mod security;
mod topics;
pub mod trace;

pub use consumer::{consumer, OffsetLookup, StageConsumer, StageConsumerContext};
pub use logs::LogContext;
pub use preflight::check_connection;
pub use producer::{Delivery, Producer};
pub use security::security_properties;
pub use topics::{ensure_topics, TopicSpec, Topics};

use rdkafka::ClientConfig;

use crate::config::KafkaConfig;

/// Base librdkafka settings for every client of this deployment: bootstrap servers, then the
/// properties the `kafka.security_protocol` / `kafka.tls.*` / `kafka.sasl.*` keys produce,
/// then `kafka.client_properties` (which win over both).
pub fn client_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.bootstrap_servers);
    c.set("client.id", "crmflow");
    for (k, v) in security_properties(cfg) {
        c.set(k, v);
    }
    for (k, v) in cfg.client_properties.iter() {
        c.set(k, v);
    }
    c
}
