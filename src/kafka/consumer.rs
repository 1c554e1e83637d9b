//! Consumers with manual offset control.
//!
//! Auto-commit and auto offset store are off: a stage commits only what it has durably
//! processed. Stages that write to Postgres keep their offsets there; for them the consumer's
//! rebalance callback asks an [`OffsetLookup`] where each newly assigned partition resumes, so
//! the position comes from the same transaction as the rows. Revocations are counted in a
//! generation number so a stage can drop work that belongs to partitions it no longer owns.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::config::KafkaConfig;

/// Where a stage resumes a partition: `Some(next_offset)`, or `None` for "no stored position".
pub trait OffsetLookup: Send + Sync + 'static {
    /// Called on the consumer's thread during a rebalance; may block briefly.
    fn lookup(&self, topic: &str, partition: i32) -> Option<i64>;
}

/// Consumer context: seeks assigned partitions to stored offsets and counts rebalances.
pub struct StageConsumerContext {
    lookup: Option<Arc<dyn OffsetLookup>>,
    /// When there is no stored position: start from the beginning (true) or the committed
    /// Kafka offset / `auto.offset.reset` (false).
    missing_from_beginning: bool,
    generation: AtomicU64,
}

impl StageConsumerContext {
    pub fn new(lookup: Option<Arc<dyn OffsetLookup>>) -> Self {
        Self {
            missing_from_beginning: lookup.is_some(),
            lookup,
            generation: AtomicU64::new(0),
        }
    }

    /// Increases on every assignment change.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }
}

impl ClientContext for StageConsumerContext {}

impl ConsumerContext for StageConsumerContext {
    fn rebalance(
        &self,
        base_consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if let Some(lookup) = &self.lookup {
                    let parts: Vec<(String, i32)> = tpl
                        .elements()
                        .iter()
                        .map(|e| (e.topic().to_owned(), e.partition()))
                        .collect();
                    for (topic, partition) in parts {
                        let offset = match lookup.lookup(&topic, partition) {
                            Some(o) => Offset::Offset(o),
                            None if self.missing_from_beginning => Offset::Beginning,
                            None => Offset::Stored,
                        };
                        if let Err(error) = tpl.set_partition_offset(&topic, partition, offset) {
                            tracing::error!(%topic, partition, %error, "cannot set start offset");
                        }
                    }
                }
                tracing::info!(partitions = tpl.count(), "partitions assigned");
                if let Err(error) = base_consumer.assign(tpl) {
                    tracing::error!(%error, "assign failed");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!(partitions = tpl.count(), "partitions revoked");
                if let Err(error) = base_consumer.unassign() {
                    tracing::error!(%error, "unassign failed");
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance error");
                let _ = base_consumer.unassign();
            }
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, _: &Rebalance<'_>) {}
}

/// A stream consumer with our context.
pub type StageConsumer = StreamConsumer<StageConsumerContext>;

/// Creates a consumer in `group` with manual commits, subscribed to `topics`.
pub fn consumer(
    cfg: &KafkaConfig,
    group: &str,
    topics: &[&str],
    lookup: Option<Arc<dyn OffsetLookup>>,
) -> KafkaResult<StageConsumer> {
    let c: StageConsumer = super::client_config(cfg)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "range")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        .set("max.poll.interval.ms", "300000")
        .set("fetch.max.bytes", "52428800")
        .set("queued.max.messages.kbytes", "65536")
        .create_with_context(StageConsumerContext::new(lookup))?;
    c.subscribe(topics)?;
    Ok(c)
}
