//! The producer every stage uses: idempotent, `acks=all`, and a full local queue is
//! backpressure (wait and retry) rather than an error.
//!
//! `send` hands back a [`Delivery`] future per message; callers keep them and await them before
//! they move a cursor or commit an offset, so nothing is acknowledged upstream before Kafka has it.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;

use crate::config::KafkaConfig;

/// An idempotent producer (cheap to clone).
#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer<super::LogContext>,
}

/// The outcome of one send: `(partition, offset)` once the broker acknowledged it.
pub type Delivery =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(i32, i64), KafkaError>> + Send>>;

impl Producer {
    pub fn new(cfg: &KafkaConfig) -> Result<Self, KafkaError> {
        let inner: FutureProducer<super::LogContext> = super::client_config(cfg)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", "10")
            .set("batch.size", "1000000")
            .set("queue.buffering.max.messages", "200000")
            .set("queue.buffering.max.kbytes", "262144")
            // Retries inside librdkafka are bounded by time: a broker restart shorter than this
            // is invisible to the stage; a longer outage surfaces as a delivery error.
            .set("delivery.timeout.ms", "300000")
            .set("message.max.bytes", "10000000")
            .create_with_context(super::LogContext)?;
        Ok(Self { inner })
    }

    /// Enqueues one message. Waits (without blocking the runtime) while the local queue is
    /// full. The returned future resolves when the broker acknowledged the message.
    pub async fn send(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
        headers: OwnedHeaders,
    ) -> Result<Delivery, KafkaError> {
        let mut record = FutureRecord::to(topic)
            .key(key)
            .payload(payload)
            .headers(headers);
        let mut wait = Duration::from_millis(1);
        loop {
            match self.inner.send_result(record) {
                Ok(fut) => {
                    return Ok(Box::pin(async move {
                        match fut.await {
                            Ok(Ok(d)) => {
                                crate::telemetry::outage::kafka().ok();
                                Ok((d.partition, d.offset))
                            }
                            Ok(Err((e, _))) => Err(e),
                            Err(_canceled) => Err(KafkaError::Canceled),
                        }
                    }));
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    tracing::debug!(
                        wait_ms = wait.as_millis() as u64,
                        "producer queue full, waiting"
                    );
                    record = r;
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_millis(100));
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// Sends and waits for the acknowledgement (for low-volume paths such as the DLQ).
    pub async fn send_and_wait(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
        headers: OwnedHeaders,
    ) -> Result<(i32, i64), KafkaError> {
        self.send(topic, key, payload, headers).await?.await
    }

    /// Waits until every queued message was delivered or failed.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.inner.flush(Timeout::After(timeout))
    }

    /// The underlying client, for metadata queries.
    pub fn client(&self) -> &FutureProducer<super::LogContext> {
        &self.inner
    }
}
