//! Consumers with manual offset control.
//!
//! Auto-commit and auto offset store are off: a stage commits only what it has durably
//! processed. Stages that write to Postgres keep their offsets there; for them the consumer's
//! rebalance callback asks an [`OffsetLookup`] where each newly assigned partition resumes, so
//! the position comes from the same transaction as the rows. Revocations are counted in a
//! generation number so a stage can drop work that belongs to partitions it no longer owns.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::OwnedMessage;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot};

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

    /// Increases on every assignment change and every seek.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

impl ClientContext for StageConsumerContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        super::logs::log(level, fac, message)
    }
    fn error(&self, error: KafkaError, reason: &str) {
        super::logs::error(error, reason)
    }
}

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

/// A message as the stage receives it, with the assignment generation it was fetched under.
pub struct Polled {
    pub msg: OwnedMessage,
    /// [`StageConsumerContext::generation`] right after the poll that returned it: messages of
    /// an older generation were fetched before a rebalance or seek and must not be mixed with
    /// newer ones.
    pub generation: u64,
}

enum Command {
    Seek(Vec<(String, i32, Offset)>, oneshot::Sender<KafkaResult<()>>),
}

/// A group consumer polled on a dedicated thread that hands owned messages to the stage over a
/// bounded channel.
///
/// Why not rdkafka's `StreamConsumer`: under load we saw partitions stop being delivered after
/// eager rebalances; a plain `BaseConsumer` driven by one thread has no waker to lose. The
/// rebalance callback (and its Postgres lookup) runs on that thread too, outside the async
/// runtime, and seeks are executed there between polls so the generation tag of every message
/// is exact. The bounded channel is the backpressure: a slow stage stops the polling thread.
pub struct StageConsumer {
    inner: Arc<BaseConsumer<StageConsumerContext>>,
    /// A second, group-less client for watermark and metadata queries: on the group consumer's
    /// connection they would queue behind fetch long-polls (up to 500 ms each).
    watermarks: BaseConsumer<super::LogContext>,
    rx: mpsc::Receiver<KafkaResult<Polled>>,
    commands: std::sync::mpsc::Sender<Command>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::ops::Deref for StageConsumer {
    type Target = BaseConsumer<StageConsumerContext>;
    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl StageConsumer {
    /// The client to ask for watermarks and metadata (see the field's note).
    pub fn watermark_client(&self) -> &BaseConsumer<super::LogContext> {
        &self.watermarks
    }

    /// The next message, or `Ok(None)` when `deadline` passed first.
    pub async fn recv_until(
        &mut self,
        deadline: tokio::time::Instant,
    ) -> KafkaResult<Option<Polled>> {
        match tokio::time::timeout_at(deadline, self.rx.recv()).await {
            Err(_) => Ok(None),
            Ok(Some(Ok(p))) => Ok(Some(p)),
            Ok(Some(Err(e))) => Err(e),
            Ok(None) => Err(KafkaError::Canceled),
        }
    }

    /// Up to `max` messages (or errors) already waiting, appended to `out`; waits until
    /// `deadline` for the first. Returns how many were appended: 0 when the deadline passed.
    /// Taking a batch per call spares the per-message timer and wake-up of [`Self::recv_until`].
    pub async fn recv_batch_until(
        &mut self,
        deadline: tokio::time::Instant,
        out: &mut Vec<KafkaResult<Polled>>,
        max: usize,
    ) -> KafkaResult<usize> {
        match tokio::time::timeout_at(deadline, self.rx.recv_many(out, max)).await {
            Err(_) => Ok(0),
            Ok(0) => Err(KafkaError::Canceled),
            Ok(n) => Ok(n),
        }
    }

    /// Seeks partitions on the polling thread; messages fetched before carry an older
    /// generation afterwards.
    pub async fn seek_partitions(&self, targets: Vec<(String, i32, Offset)>) -> KafkaResult<()> {
        if targets.is_empty() {
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Seek(targets, tx))
            .map_err(|_| KafkaError::Canceled)?;
        rx.await.map_err(|_| KafkaError::Canceled)?
    }
}

impl Drop for StageConsumer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.rx.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn poll_loop(
    consumer: Arc<BaseConsumer<StageConsumerContext>>,
    tx: mpsc::Sender<KafkaResult<Polled>>,
    commands: std::sync::mpsc::Receiver<Command>,
    stop: Arc<AtomicBool>,
) {
    let mut held: Option<KafkaResult<Polled>> = None;
    let mut last_probe = std::time::Instant::now();
    while !stop.load(Ordering::SeqCst) {
        // While Kafka is considered away, ask for metadata every 2 s: an idle consumer gets no
        // message to prove it is back.
        if crate::telemetry::outage::kafka().is_down()
            && last_probe.elapsed() >= Duration::from_secs(2)
        {
            last_probe = std::time::Instant::now();
            if consumer
                .fetch_metadata(None, Duration::from_secs(1))
                .is_ok()
            {
                crate::telemetry::outage::kafka().ok();
            }
        }
        while let Ok(Command::Seek(targets, reply)) = commands.try_recv() {
            let mut result = Ok(());
            for (topic, partition, offset) in targets {
                if let Err(e) = consumer.seek(&topic, partition, offset, Duration::from_secs(10)) {
                    result = Err(e);
                }
            }
            consumer.context().bump();
            // Whatever was fetched before the seek is stale now.
            held = None;
            let _ = reply.send(result);
        }
        if let Some(item) = held.take() {
            match tx.try_send(item) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(item)) => {
                    held = Some(item);
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => {
                crate::telemetry::outage::kafka().ok();
                let generation = consumer.context().generation();
                held = Some(Ok(Polled {
                    msg: m.detach(),
                    generation,
                }));
            }
            Some(Err(e)) => held = Some(Err(e)),
        }
    }
}

/// Creates a consumer in `group` with manual commits, subscribed to `topics`, polled on its own
/// thread. `capacity` bounds the messages buffered between that thread and the stage.
pub fn consumer(
    cfg: &KafkaConfig,
    group: &str,
    topics: &[&str],
    lookup: Option<Arc<dyn OffsetLookup>>,
) -> KafkaResult<StageConsumer> {
    let mut conf = super::client_config(cfg);
    if let Some(id) = &cfg.group_instance_id {
        // One id per stage, so one process can run several stages with static membership.
        conf.set("group.instance.id", format!("{id}-{group}"));
    }
    let c: BaseConsumer<StageConsumerContext> = conf
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "range")
        .set("session.timeout.ms", cfg.session_timeout_ms.to_string())
        .set("heartbeat.interval.ms", "1000")
        .set("max.poll.interval.ms", "300000")
        // Memory: what librdkafka holds is bounded by the fetches in flight (compressed
        // batches are decompressed into buffers that live until their last message is
        // consumed), far more than by the queue limit below: 50 MB fetches of 1 MB per
        // partition kept a normalize process near 300 MB; 8 MB of 256 KB per partition keep
        // it under 220 MB at the same speed (larger messages still come: librdkafka grows the
        // size it asks for).
        .set("fetch.max.bytes", "8388608")
        .set("max.partition.fetch.bytes", "262144")
        .set("queued.max.messages.kbytes", "16384")
        // Once the queue above is full, librdkafka postpones the next fetch of a partition by
        // this long (default 1 s): with a small queue a fast stage drained it in a fraction of
        // that and then waited, which capped normalize at ~37k events/s.
        .set("fetch.queue.backoff.ms", "10")
        .create_with_context(StageConsumerContext::new(lookup))?;
    c.subscribe(topics)?;
    let inner = Arc::new(c);
    let (tx, rx) = mpsc::channel(10_000);
    let (cmd_tx, cmd_rx) = std::sync::mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let inner = inner.clone();
        let stop = stop.clone();
        std::thread::Builder::new()
            .name(format!("poll-{group}").chars().take(15).collect())
            .spawn(move || poll_loop(inner, tx, cmd_rx, stop))
            .map_err(|e| KafkaError::ClientCreation(e.to_string()))?
    };
    let watermarks: BaseConsumer<super::LogContext> = super::client_config(cfg)
        .set("client.id", "crmflow-watermarks")
        .create_with_context(super::LogContext)?;
    Ok(StageConsumer {
        inner,
        watermarks,
        rx,
        commands: cmd_tx,
        stop,
        thread: Some(thread),
    })
}
