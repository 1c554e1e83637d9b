//! The normalize stage: `crm.raw.*` -> transform > validate -> `crm.canonical.*`, rejects to
//! `crm.dlq`.
//!
//! Kafka to Kafka, at-least-once with deterministic output: the same input always yields the
//! same canonical bytes and key, so a redelivery after a crash produces an identical event that
//! the sink's version guard absorbs. Input offsets are committed only after every output (and
//! every dead letter) they cover was acknowledged by the broker. Nothing crashes the stage:
//! undecodable bytes, unknown entities and failed rules all become dead letters.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{Message, OwnedHeaders, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};

use crate::codec;
use crate::config::Config;
use crate::dlq::{self, DeadLetter};
use crate::error::Result;
use crate::kafka::{self, trace, Delivery, Producer, Topics};
use crate::model::{canonical_key, Lineage};
use crate::observe;
use crate::operators::{self, Canonical};
use crate::runtime::offsets;
use crate::runtime::{RunCtx, StageName};

/// Outputs awaited before one commit.
const COMMIT_EVERY: usize = 20_000;
/// Longest time between commits while messages flow.
const COMMIT_INTERVAL: Duration = Duration::from_millis(500);
/// Most messages taken from the consumer per round.
const BATCH: usize = 2_048;
/// Fewest messages worth handing to another thread.
const MIN_PER_WORKER: usize = 64;

/// The raw topics this deployment reads.
pub fn input_topics(ctx: &RunCtx) -> Vec<String> {
    crate::pipeline::input_topics(&ctx.cfg, StageName::Normalize)
}

/// The canonical topics, by record kind.
struct Outputs {
    candidate: String,
    position: String,
}

impl Outputs {
    fn topic(&self, kind: &str) -> &str {
        if kind == "candidate" {
            &self.candidate
        } else {
            &self.position
        }
    }
}

/// Counters of one run.
#[derive(Debug, Default, Clone, Copy)]
pub struct NormalizeCounts {
    pub read: u64,
    pub written: u64,
    pub rejected: u64,
    /// What the metrics have been told so far (they learn at each acknowledged commit).
    reported: (u64, u64),
}

impl NormalizeCounts {
    /// Reports what was read and written since the last report as one batch.
    fn report(&mut self, took: Duration) {
        let (read, written) = (self.read - self.reported.0, self.written - self.reported.1);
        self.reported = (self.read, self.written);
        if read > 0 {
            observe::records_in(STAGE, read);
            observe::batch(STAGE, read as usize, took);
        }
        observe::records_out(STAGE, written);
    }
}

const STAGE: &str = "normalize";

/// What processing one message produced.
pub enum Outcome {
    /// Canonical topic, key and value.
    Output(&'static str, String, Vec<u8>),
    /// Class, rule and reason.
    Reject(&'static str, &'static str, String),
}

/// Transforms one raw message (pure apart from the clock inside validation bounds).
pub fn process(
    payload: Option<&[u8]>,
    topic: &str,
    partition: i32,
    offset: i64,
    trace_id: Option<String>,
    cfg: &crate::config::NormalizeConfig,
) -> Outcome {
    let Some(payload) = payload else {
        return Outcome::Reject("decode", "record.empty", "message has no value".into());
    };
    let ev = match codec::change_event().decode(payload) {
        Ok(ev) => ev,
        Err(e) => return Outcome::Reject("decode", "record.avro", e.to_string()),
    };
    let lineage = Lineage {
        crm: ev.crm.clone(),
        crm_id: ev.record_id.clone(),
        source_version: ev.source_version,
        event_id: ev.event_id.clone(),
        raw_topic: topic.to_owned(),
        raw_partition: partition,
        raw_offset: offset,
        trace_id,
    };
    match operators::normalize(&ev, lineage, cfg) {
        Ok(Canonical::Candidate(c)) => match codec::candidate().encode(&c) {
            Ok(bytes) => Outcome::Output("candidate", canonical_key(&c.crm, &c.crm_id), bytes),
            Err(e) => Outcome::Reject("transform", "canonical.encode", e.to_string()),
        },
        Ok(Canonical::Position(p)) => match codec::position().encode(&p) {
            Ok(bytes) => Outcome::Output("position", canonical_key(&p.crm, &p.crm_id), bytes),
            Err(e) => Outcome::Reject("transform", "canonical.encode", e.to_string()),
        },
        Err(r) => Outcome::Reject(r.class.as_str(), r.rule, r.reason),
    }
}

/// What the CPU part made of one message: its outcome, the trace parent it carried, and the
/// record's span when it is sampled.
type Processed = (Outcome, Option<trace::TraceParent>, Option<tracing::Span>);

/// Decodes, transforms, validates and encodes one message (see [`process`]).
fn process_message(msg: &OwnedMessage, cfg: &crate::config::NormalizeConfig) -> Processed {
    let tp = trace::extract(msg.headers());
    let span = trace::record_span(tp.as_ref(), || {
        tracing::info_span!(
            "record",
            otel.name = "normalize",
            otel.kind = "consumer",
            crmflow.stage = STAGE,
            messaging.system = "kafka",
            messaging.operation.type = "process",
            messaging.destination.name = msg.topic(),
            messaging.destination.partition.id = msg.partition(),
            messaging.kafka.offset = msg.offset(),
            crmflow.outcome = tracing::field::Empty,
            crmflow.rule = tracing::field::Empty,
            crmflow.reason = tracing::field::Empty,
        )
    });
    let outcome = process(
        msg.payload(),
        msg.topic(),
        msg.partition(),
        msg.offset(),
        tp.map(|t| t.trace_id_hex()),
        cfg,
    );
    if let Some(span) = &span {
        match &outcome {
            Outcome::Output(kind, _, _) => {
                span.record("crmflow.outcome", *kind);
            }
            Outcome::Reject(_, rule, reason) => {
                span.record("crmflow.outcome", "rejected");
                span.record("crmflow.rule", *rule);
                span.record("crmflow.reason", reason.as_str());
            }
        }
    }
    (outcome, tp, span)
}

/// Runs [`process_message`] over `msgs` split across `workers` threads (this task takes the
/// first part, blocking-pool threads the others) and returns the results in input order, so
/// what is sent next keeps the input's order per partition.
async fn process_batch(
    msgs: Vec<OwnedMessage>,
    cfg: &Arc<Config>,
    workers: usize,
) -> Vec<(OwnedMessage, Processed)> {
    let run = |part: Vec<OwnedMessage>, cfg: &crate::config::NormalizeConfig| {
        part.into_iter()
            .map(|m| {
                let p = process_message(&m, cfg);
                (m, p)
            })
            .collect::<Vec<_>>()
    };
    let workers = workers.clamp(1, msgs.len().div_ceil(MIN_PER_WORKER).max(1));
    if workers == 1 {
        return run(msgs, &cfg.normalize);
    }
    let per = msgs.len().div_ceil(workers);
    let mut parts: Vec<Vec<OwnedMessage>> = Vec::with_capacity(workers);
    for m in msgs {
        match parts.last_mut() {
            Some(p) if p.len() < per => p.push(m),
            _ => {
                let mut p = Vec::with_capacity(per);
                p.push(m);
                parts.push(p);
            }
        }
    }
    let mut parts = parts.into_iter();
    let first = parts.next().unwrap_or_default();
    let others: Vec<_> = parts
        .map(|part| {
            let cfg = cfg.clone();
            tokio::task::spawn_blocking(move || run(part, &cfg.normalize))
        })
        .collect();
    let mut out = run(first, &cfg.normalize);
    for handle in others {
        match handle.await {
            Ok(done) => out.extend(done),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("normalize worker cancelled: {e}"),
        }
    }
    out
}

/// The configuration with `[mapping]` compiled into `normalize.mapping` (a config error when it
/// does not compile).
pub fn with_mapping(cfg: &Arc<Config>) -> Result<Arc<Config>> {
    let mapping = operators::attributes::Mapping::compile(&cfg.mapping)
        .map_err(crate::config::ConfigError::Invalid)?;
    if mapping.is_empty() {
        return Ok(cfg.clone());
    }
    let mut owned = (**cfg).clone();
    owned.normalize.mapping = Arc::new(mapping);
    Ok(Arc::new(owned))
}

/// Runs the stage until shutdown (or, in one-shot mode, until caught up).
pub async fn run(ctx: RunCtx) -> Result<()> {
    let cfg = with_mapping(&ctx.cfg)?;
    let workers = cfg.normalize.worker_threads();
    let topics = Topics::new(&cfg.kafka);
    let group = topics.group("normalize");
    let inputs = input_topics(&ctx);
    let input_refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let mut consumer = kafka::consumer(&cfg.kafka, &group, &input_refs, None)?;
    let producer = Producer::new(&cfg.kafka)?;
    let outputs = Outputs {
        candidate: topics.canonical("candidate"),
        position: topics.canonical("position"),
    };
    let dlq_topic = topics.dlq();
    let pool = crate::store::pool(&cfg)?;
    let mut epoch = offsets::epoch(&pool.get().await?, &group).await?;

    let mut pending: Vec<Delivery> = Vec::with_capacity(COMMIT_EVERY);
    let mut next: HashMap<(String, i32), i64> = HashMap::new();
    let mut counts = NormalizeCounts::default();
    let mut last_commit = Instant::now();
    let mut last_control = Instant::now();
    let mut generation = consumer.context().generation();
    let mut polled = Vec::with_capacity(BATCH);
    tracing::info!(group, ?inputs, workers, "normalize started");

    loop {
        let received = tokio::select! {
            _ = ctx.shutdown.cancelled() => None,
            n = consumer.recv_batch_until(
                tokio::time::Instant::now() + Duration::from_millis(200),
                &mut polled,
                BATCH,
            ) => Some(n),
        };
        let Some(received) = received else {
            tracing::info!(read = counts.read, "normalize: shutdown requested");
            // Shutdown: commit what is acknowledged so a restart does not redo it.
            flush(&consumer, &mut pending, &mut next, CommitMode::Sync).await?;
            counts.report(last_commit.elapsed());
            return Ok(());
        };
        let idle = matches!(received, Ok(0));
        if let Err(error) = received {
            crate::kafka::logs::consume_error(STAGE, &error);
        }
        // The batch in runs of one generation: messages fetched before a rebalance or seek are
        // handled (or dropped as stale) before anything of the next generation.
        let mut run_msgs = Vec::with_capacity(polled.len());
        for item in polled.drain(..) {
            match item {
                Ok(p) if p.generation >= generation => {
                    if p.generation > generation {
                        let msgs = std::mem::take(&mut run_msgs);
                        handle_run(
                            msgs,
                            &cfg,
                            workers,
                            &producer,
                            &dlq_topic,
                            &outputs,
                            &mut pending,
                            &mut next,
                            &mut counts,
                        )
                        .await?;
                        // After a rebalance or seek, positions of partitions we may no longer
                        // own must not be committed by us.
                        flush(&consumer, &mut pending, &mut next, CommitMode::Async).await?;
                        next.clear();
                        generation = p.generation;
                    }
                    run_msgs.push(p.msg);
                }
                Ok(_stale) => {}
                Err(error) => {
                    crate::kafka::logs::consume_error(STAGE, &error);
                }
            }
        }
        handle_run(
            run_msgs,
            &cfg,
            workers,
            &producer,
            &dlq_topic,
            &outputs,
            &mut pending,
            &mut next,
            &mut counts,
        )
        .await?;
        if idle {
            tracing::trace!(read = counts.read, "normalize idle");
        }

        if pending.len() >= COMMIT_EVERY
            || (!next.is_empty() && last_commit.elapsed() >= COMMIT_INTERVAL)
        {
            if let Err(error) = flush(&consumer, &mut pending, &mut next, CommitMode::Async).await {
                // A delivery failed after librdkafka's own retries: rewind to the last commit
                // and redo; the output is deterministic, so redoing is safe.
                tracing::warn!(%error, "output not acknowledged, rewinding to the last commit");
                observe::retry(STAGE, "kafka", &error);
                rewind_to_committed(&consumer).await?;
                tokio::time::sleep(Duration::from_secs(1)).await;
            } else {
                counts.report(last_commit.elapsed());
            }
            last_commit = Instant::now();
        }

        if last_control.elapsed() >= Duration::from_secs(1) {
            if let Ok(client) = pool.get().await {
                if let Ok(e) = offsets::epoch(&client, &group).await {
                    if e != epoch {
                        flush(&consumer, &mut pending, &mut next, CommitMode::Async).await?;
                        apply_replay(&consumer, &pool, &group).await?;
                        epoch = e;
                    }
                }
            }
            last_control = Instant::now();
        }

        // Only when nothing arrived for a poll interval: the check costs broker round trips
        // and must not slow the stage down while it is working through a backlog. Not tied to
        // the control tick above, which made a one-shot run idle up to a second longer.
        if idle && ctx.until_caught_up && ctx.finished.upstream_done(StageName::Normalize) {
            flush(&consumer, &mut pending, &mut next, CommitMode::Sync).await?;
            counts.report(last_commit.elapsed());
            if caught_up(&consumer, &inputs).await? {
                tracing::info!(
                    read = counts.read,
                    written = counts.written,
                    rejected = counts.rejected,
                    "normalize caught up"
                );
                return Ok(());
            }
        }
    }
}

/// Processes one run of messages (in parallel), then sends the outputs in input order and
/// records the next offset of each partition, to be committed once they are acknowledged.
#[allow(clippy::too_many_arguments)]
async fn handle_run(
    msgs: Vec<OwnedMessage>,
    cfg: &Arc<Config>,
    workers: usize,
    producer: &Producer,
    dlq_topic: &str,
    outputs: &Outputs,
    pending: &mut Vec<Delivery>,
    next: &mut HashMap<(String, i32), i64>,
    counts: &mut NormalizeCounts,
) -> Result<()> {
    if msgs.is_empty() {
        return Ok(());
    }
    counts.read += msgs.len() as u64;
    let batch_span = trace::batch_span(STAGE, "process", msgs[0].topic(), msgs.len());
    trace::record_offsets(
        &batch_span,
        msgs.iter().map(|m| (m.partition(), m.offset())),
    );
    let done = process_batch(msgs, cfg, workers).await;
    trace::link_sampled(
        &batch_span,
        done.iter().filter_map(|(_, (_, tp, _))| tp.as_ref()),
    );
    let send_span = trace::batch_span(STAGE, "send", "canonical", done.len());
    if let Some(tp) = trace::TraceParent::of_span(&batch_span) {
        tp.set_as_parent_of(&send_span);
    }
    // Last offset per partition in this run (few partitions: a short list beats a map).
    let mut last: Vec<(&str, i32, i64)> = Vec::new();
    for (msg, (outcome, tp, span)) in &done {
        let tp = if span.is_some() {
            Some(trace::downstream(span.as_ref(), *tp))
        } else {
            *tp
        };
        send(
            msg, outcome, tp, producer, dlq_topic, outputs, pending, counts,
        )
        .await?;
        let (t, p, o) = (msg.topic(), msg.partition(), msg.offset());
        match last.iter_mut().find(|(lt, lp, _)| *lp == p && *lt == t) {
            Some(e) => e.2 = o,
            None => last.push((t, p, o)),
        }
    }
    for (t, p, o) in last {
        next.insert((t.to_owned(), p), o + 1);
    }
    drop(send_span);
    Ok(())
}

/// Sends one message's outcome: the canonical record, or a dead letter.
#[allow(clippy::too_many_arguments)]
async fn send(
    msg: &OwnedMessage,
    outcome: &Outcome,
    tp: Option<trace::TraceParent>,
    producer: &Producer,
    dlq_topic: &str,
    outputs: &Outputs,
    pending: &mut Vec<Delivery>,
    counts: &mut NormalizeCounts,
) -> Result<()> {
    match outcome {
        Outcome::Output(kind, key, bytes) => {
            let tp = tp.unwrap_or_else(trace::TraceParent::current_or_new);
            let headers = trace::inject(OwnedHeaders::new_with_capacity(1), &tp);
            pending.push(
                producer
                    .send(outputs.topic(kind), key.as_bytes(), bytes, headers)
                    .await?,
            );
            counts.written += 1;
        }
        Outcome::Reject(class, rule, reason) => {
            let dl = DeadLetter {
                stage: "normalize",
                class,
                rule: Some(*rule),
                reason,
                source_topic: msg.topic(),
                source_partition: msg.partition(),
                source_offset: msg.offset(),
                key: msg.key(),
                payload: msg.payload(),
                trace: tp,
                replay_count: dlq::replay_count(msg.headers()),
            };
            pending.push(dlq::send(producer, dlq_topic, &dl).await?);
            counts.rejected += 1;
            observe::rejected(STAGE, rule, 1);
        }
    }
    Ok(())
}

/// Awaits every pending delivery, then commits the offsets they cover.
async fn flush(
    consumer: &kafka::StageConsumer,
    pending: &mut Vec<Delivery>,
    next: &mut HashMap<(String, i32), i64>,
    mode: CommitMode,
) -> Result<()> {
    tracing::debug!(
        pending = pending.len(),
        partitions = next.len(),
        "flush: awaiting deliveries"
    );
    let results = futures::future::join_all(pending.drain(..)).await;
    tracing::debug!("flush: deliveries done");
    if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
        next.clear();
        return Err(e.into());
    }
    if next.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for ((t, p), o) in next.drain() {
        tpl.add_partition_offset(&t, p, Offset::Offset(o))?;
    }
    // A lost async commit only means redoing a little work after a restart.
    if let Err(error) = consumer.commit(&tpl, mode) {
        tracing::warn!(%error, "offset commit failed; work since the last commit will be redone");
    }
    Ok(())
}

async fn rewind_to_committed(consumer: &kafka::StageConsumer) -> Result<()> {
    let assignment = consumer.assignment()?;
    let committed = consumer.committed_offsets(assignment, Duration::from_secs(10))?;
    let targets = committed
        .elements()
        .iter()
        .map(|e| {
            let offset = match e.offset() {
                Offset::Offset(o) => Offset::Offset(o),
                _ => Offset::Beginning,
            };
            (e.topic().to_owned(), e.partition(), offset)
        })
        .collect();
    consumer.seek_partitions(targets).await?;
    Ok(())
}

/// Seeks assigned partitions to the replay targets stored for this stage, and commits them.
async fn apply_replay(
    consumer: &kafka::StageConsumer,
    pool: &deadpool_postgres::Pool,
    group: &str,
) -> Result<()> {
    let targets = offsets::load_all(&pool.get().await?, group).await?;
    let assignment = consumer.assignment()?;
    let mut tpl = TopicPartitionList::new();
    let mut seeks = Vec::new();
    for e in assignment.elements() {
        if let Some(&o) = targets.get(&(e.topic().to_owned(), e.partition())) {
            tracing::info!(
                topic = e.topic(),
                partition = e.partition(),
                offset = o,
                "replay: seeking"
            );
            seeks.push((e.topic().to_owned(), e.partition(), Offset::Offset(o)));
            tpl.add_partition_offset(e.topic(), e.partition(), Offset::Offset(o))?;
        }
    }
    consumer.seek_partitions(seeks).await?;
    if tpl.count() > 0 {
        consumer.commit(&tpl, CommitMode::Sync)?;
    }
    Ok(())
}

/// Whether the group's committed offsets reach the end of every input partition.
async fn caught_up(consumer: &kafka::StageConsumer, inputs: &[String]) -> Result<bool> {
    let lags = tokio::task::block_in_place(|| {
        crate::runtime::progress::partition_lags(consumer.watermark_client(), inputs, |parts| {
            crate::runtime::progress::committed_positions(consumer, parts)
        })
    })?;
    Ok(lags.iter().all(|l| l.lag == 0))
}
