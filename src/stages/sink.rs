//! The Postgres sink: canonical topics -> `candidates` / `positions`, exactly-once in effect.
//!
//! Loop: gather a batch (size or linger) > decode > collapse repeated keys (newest source
//! version wins) > in ONE transaction: check the replay epoch, binary-COPY into a staging table,
//! upsert with a version guard, store the next offsets > commit > tell Kafka (for lag tools
//! only). On assignment the consumer seeks to the offsets stored here, so a crash at any point
//! either loses the whole uncommitted batch (re-read later) or none of it.
//!
//! A row Postgres rejects is isolated by bisecting the batch; it goes to the DLQ and its
//! batch-mates are written. Connection loss and serialization failures are retried with
//! backoff, never skipped.

use std::collections::HashMap;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::ToSql;

use super::rows::{self, SinkRow};
use crate::codec;
use crate::dlq::{self, DeadLetter};
use crate::error::{Error, Result};
use crate::kafka::{self, trace, Producer, Topics};
use crate::model::{Candidate, Position};
use crate::observe;
use crate::runtime::offsets::{self, PgOffsets, Positions};
use crate::runtime::{RunCtx, StageName};
use crate::store::{self, StoreError};
use crate::telemetry::outage;

/// One input message, owned (the consumer's borrowed message cannot outlive `recv`).
pub(crate) struct Input {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) payload: Vec<u8>,
    pub(crate) trace: Option<trace::TraceParent>,
    pub(crate) replay_count: u32,
}

impl Input {
    pub(crate) fn from_message(m: &impl Message) -> Self {
        Input {
            topic: m.topic().to_owned(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().unwrap_or_default().to_vec(),
            trace: trace::extract(m.headers()),
            replay_count: dlq::replay_count(m.headers()),
        }
    }

    fn dead_letter<'a>(&'a self, class: &'a str, rule: &'a str, reason: &'a str) -> DeadLetter<'a> {
        DeadLetter {
            stage: "sink",
            class,
            rule: Some(rule),
            reason,
            source_topic: &self.topic,
            source_partition: self.partition,
            source_offset: self.offset,
            key: self.key.as_deref(),
            payload: Some(&self.payload),
            trace: self.trace,
            replay_count: self.replay_count,
        }
    }
}

/// Rows of one kind, collapsed by key.
struct Collapsed<R> {
    rows: HashMap<(String, String), (R, Input)>,
}

impl<R: SinkRow> Collapsed<R> {
    fn new() -> Self {
        Self {
            rows: HashMap::new(),
        }
    }

    /// Keeps the newest version per key; on equal versions the later offset wins.
    fn add(&mut self, row: R, input: Input) {
        let key = (row.crm().to_owned(), row.crm_id().to_owned());
        match self.rows.get(&key) {
            Some((old, old_in))
                if (old.source_version(), old_in.offset)
                    >= (row.source_version(), input.offset) => {}
            _ => {
                self.rows.insert(key, (row, input));
            }
        }
    }
}

/// What one batch holds.
pub(crate) struct Batch {
    candidates: Collapsed<Candidate>,
    positions: Collapsed<Position>,
    undecodable: Vec<(Input, String)>,
    next: Positions,
    messages: usize,
    started: Option<Instant>,
}

impl Batch {
    fn new() -> Self {
        Self {
            candidates: Collapsed::new(),
            positions: Collapsed::new(),
            undecodable: Vec::new(),
            next: Positions::new(),
            messages: 0,
            started: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.messages == 0
    }

    fn add(&mut self, input: Input, topics: &InputTopics) {
        self.started.get_or_insert_with(Instant::now);
        self.messages += 1;
        self.next
            .insert((input.topic.clone(), input.partition), input.offset + 1);
        if input.topic == topics.candidate {
            match codec::candidate().decode(&input.payload) {
                Ok(c) => self.candidates.add(c, input),
                Err(e) => self.undecodable.push((input, e.to_string())),
            }
        } else if input.topic == topics.position {
            match codec::position().decode(&input.payload) {
                Ok(p) => self.positions.add(p, input),
                Err(e) => self.undecodable.push((input, e.to_string())),
            }
        } else {
            let reason = format!("unexpected topic {}", input.topic);
            self.undecodable.push((input, reason));
        }
    }
}

struct InputTopics {
    candidate: String,
    position: String,
}

/// Counters for one run, shared with metrics and tests.
#[derive(Debug, Default)]
pub struct SinkStats {
    pub rows_written: std::sync::atomic::AtomicU64,
    pub rejected: std::sync::atomic::AtomicU64,
    pub batches: std::sync::atomic::AtomicU64,
}

/// Runs the sink until shutdown (or, in one-shot mode, until caught up).
pub async fn run(ctx: RunCtx) -> Result<()> {
    let cfg = ctx.cfg.clone();
    let topics = Topics::new(&cfg.kafka);
    let group = topics.group("sink");
    let inputs = InputTopics {
        candidate: topics.canonical("candidate"),
        position: topics.canonical("position"),
    };
    let input_list = vec![inputs.candidate.clone(), inputs.position.clone()];
    let pool = store::pool(&cfg)?;
    let lookup = Arc::new(PgOffsets::new(pool.clone(), group.clone()));
    let mut consumer = kafka::consumer(
        &cfg.kafka,
        &group,
        &[&inputs.candidate, &inputs.position],
        Some(lookup),
    )?;
    let producer = Producer::new(&cfg.kafka)?;
    let dlq_topic = topics.dlq();
    let mut epoch = offsets::epoch(&pool.get().await?, &group).await?;
    let linger = Duration::from_millis(cfg.sink.linger_ms);
    let max = cfg.sink.batch_size.max(1);
    let stats = Arc::new(SinkStats::default());
    let mut in_flight: Option<WriteTask> = None;
    let mut last_control_check = Instant::now();

    tracing::info!(
        group,
        batch_size = max,
        linger_ms = cfg.sink.linger_ms,
        "sink started"
    );
    loop {
        // Gather.
        let mut batch = Batch::new();
        let mut generation = consumer.context().generation();
        let deadline = tokio::time::Instant::now() + linger;
        loop {
            let next = tokio::select! {
                _ = ctx.shutdown.cancelled() => {
                    tracing::info!("sink stopping; uncommitted batch is dropped and re-read later");
                    if let Some(task) = in_flight.take() {
                        let _ = task.await;
                    }
                    return Ok(());
                }
                n = consumer.recv_until(deadline) => n,
            };
            match next {
                Ok(None) => break,
                Err(error) => {
                    crate::kafka::logs::consume_error("sink", &error);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok(Some(polled)) => {
                    if polled.generation < generation {
                        continue; // fetched before a seek or rebalance we already acted on
                    }
                    if polled.generation > generation {
                        // Partitions moved (or were rewound) while we gathered: what we hold
                        // may belong to another instance now. Drop it; assigned partitions
                        // resume from the stored offsets.
                        batch = Batch::new();
                        generation = polled.generation;
                    }
                    batch.add(Input::from_message(&polled.msg), &inputs);
                    if batch.messages >= max {
                        break;
                    }
                }
            }
        }

        // One write in flight while the next batch is gathered and decoded: the write of batch
        // N overlaps the gathering of N+1, and commits stay in order.
        if let Some(task) = in_flight.take() {
            let (done, result) = task
                .await
                .map_err(|e| Error::Other(format!("sink write task: {e}")))?;
            match result? {
                WriteOutcome::Written => {
                    commit_to_kafka(&consumer, &done.next);
                    last_control_check = Instant::now();
                }
                WriteOutcome::Replayed(new_epoch) => {
                    apply_replay(&consumer, &pool, &group, &input_list).await?;
                    epoch = new_epoch;
                    // Gathered from positions before the rewind.
                    batch = Batch::new();
                }
                WriteOutcome::Abandoned => return Ok(()),
            }
        }
        let idle = batch.is_empty();
        if !idle {
            in_flight = Some(spawn_write(
                WriteJob {
                    pool: pool.clone(),
                    producer: producer.clone(),
                    dlq_topic: dlq_topic.clone(),
                    group: group.clone(),
                    epoch,
                    stats: stats.clone(),
                    shutdown: ctx.shutdown.clone(),
                },
                batch,
            ));
        } else if last_control_check.elapsed() > Duration::from_secs(1) {
            // Idle: look for a replay request now and then.
            last_control_check = Instant::now();
            if let Ok(client) = pool.get().await {
                if let Ok(e) = offsets::epoch(&client, &group).await {
                    if e != epoch {
                        apply_replay(&consumer, &pool, &group, &input_list).await?;
                        epoch = e;
                    }
                }
            }
        }

        if ctx.until_caught_up
            && idle
            && in_flight.is_none()
            && ctx.finished.upstream_done(StageName::Sink)
        {
            let stored = offsets::load_all(&pool.get().await?, &group).await?;
            let check = Instant::now();
            let lag = crate::runtime::progress::lag(&consumer, &input_list, &stored).await?;
            tracing::debug!(
                took_ms = check.elapsed().as_millis() as u64,
                behind = lag.values().sum::<i64>(),
                "caught-up check"
            );
            if lag.values().all(|&l| l == 0) {
                tracing::info!(
                    rows = stats
                        .rows_written
                        .load(std::sync::atomic::Ordering::Relaxed),
                    "sink caught up"
                );
                return Ok(());
            }
        }
    }
}

enum WriteOutcome {
    Written,
    /// A replay rewound this stage since the batch was read; the batch was not written.
    Replayed(i64),
    /// Shutdown while retrying; nothing committed.
    Abandoned,
}

/// What a write task needs besides the batch.
struct WriteJob {
    pool: Pool,
    producer: Producer,
    dlq_topic: String,
    group: String,
    epoch: i64,
    stats: Arc<SinkStats>,
    shutdown: tokio_util::sync::CancellationToken,
}

type WriteTask = tokio::task::JoinHandle<(Batch, Result<WriteOutcome>)>;

/// Writes one batch on its own task, retrying retriable failures with backoff until it is
/// written or the stage shuts down. Never skips a batch.
fn spawn_write(job: WriteJob, batch: Batch) -> WriteTask {
    tokio::spawn(async move {
        let mut attempt = 0;
        loop {
            let res = write_batch(
                &job.pool,
                &job.producer,
                &job.dlq_topic,
                &job.group,
                job.epoch,
                &batch,
                &job.stats,
            )
            .await;
            match res {
                Err(error) if error.is_retriable() && !job.shutdown.is_cancelled() => {
                    let wait = crate::runtime::backoff(attempt, Duration::from_secs(30));
                    outage::retrying("sink", "sink write", &error, attempt);
                    observe::retry("sink", "postgres", &error);
                    tokio::select! {
                        _ = job.shutdown.cancelled() => return (batch, Ok(WriteOutcome::Abandoned)),
                        _ = tokio::time::sleep(wait) => {}
                    }
                    attempt += 1;
                }
                other => {
                    if other.is_ok() {
                        outage::postgres().ok();
                    }
                    return (batch, other);
                }
            }
        }
    })
}

/// Writes one batch with its offsets in one transaction, isolating rejected rows.
async fn write_batch(
    pool: &Pool,
    producer: &Producer,
    dlq_topic: &str,
    group: &str,
    epoch: i64,
    batch: &Batch,
    stats: &SinkStats,
) -> Result<WriteOutcome> {
    use std::sync::atomic::Ordering::Relaxed;
    let write_started = Instant::now();
    let mut client = pool.get().await?;
    // Undecodable messages go to the DLQ before the offsets that cover them are stored.
    let mut dead = Vec::new();
    for (input, reason) in &batch.undecodable {
        dead.push(
            dlq::send(
                producer,
                dlq_topic,
                &input.dead_letter("decode", "canonical.decode", reason),
            )
            .await?,
        );
    }
    for d in dead {
        d.await?;
    }
    let cands: Vec<&(Candidate, Input)> = batch.candidates.rows.values().collect();
    let poss: Vec<&(Position, Input)> = batch.positions.rows.values().collect();

    // One `process` span per batch, linked to its sampled records, with the transaction as a
    // database span under it; a sampled record gets its own span in its trace.
    let inputs = || cands.iter().map(|r| &r.1).chain(poss.iter().map(|r| &r.1));
    let batch_span = trace::batch_span("sink", "process", "canonical", batch.messages);
    trace::record_offsets(&batch_span, inputs().map(|i| (i.partition, i.offset)));
    trace::link_sampled(&batch_span, inputs().filter_map(|i| i.trace.as_ref()));
    let db_span = trace::db_span(
        "COPY+UPSERT",
        "candidates,positions",
        cands.len() + poss.len(),
    );
    if let Some(tp) = trace::TraceParent::of_span(&batch_span) {
        tp.set_as_parent_of(&db_span);
    }
    let record_spans: Vec<tracing::Span> = cands
        .iter()
        .map(|r| (&r.1, "candidates", r.0.source_version))
        .chain(poss.iter().map(|r| (&r.1, "positions", r.0.source_version)))
        .filter_map(|(i, table, version)| {
            trace::record_span(i.trace.as_ref(), || {
                tracing::info_span!(
                    "record",
                    otel.name = "sink write",
                    otel.kind = "consumer",
                    crmflow.stage = "sink",
                    messaging.system = "kafka",
                    messaging.operation.type = "process",
                    messaging.destination.name = i.topic.as_str(),
                    messaging.destination.partition.id = i.partition,
                    messaging.kafka.offset = i.offset,
                    db.system.name = "postgresql",
                    db.collection.name = table,
                    crmflow.source_version = version,
                )
            })
        })
        .collect();

    let attempt = async {
        let tx = client.transaction().await?;
        if offsets::epoch_for_share(&tx, group).await? != epoch {
            let e = offsets::epoch(&tx, group).await?;
            return Ok::<_, Error>(Some(e));
        }
        copy_upsert(&tx, &cands).await?;
        copy_upsert(&tx, &poss).await?;
        offsets::store(&tx, group, &batch.next).await?;
        tx.commit().await?;
        Ok(None)
    }
    .await;
    drop(db_span);
    drop(record_spans);
    drop(batch_span);
    match attempt {
        Ok(None) => {
            stats
                .rows_written
                .fetch_add((cands.len() + poss.len()) as u64, Relaxed);
            stats.batches.fetch_add(1, Relaxed);
            report(batch, &cands, &poss, write_started.elapsed());
            tracing::debug!(
                rows = cands.len() + poss.len(),
                messages = batch.messages,
                gather_ms = batch
                    .started
                    .map(|s| write_started.duration_since(s).as_millis() as u64)
                    .unwrap_or(0),
                write_ms = write_started.elapsed().as_millis() as u64,
                "batch written"
            );
            return Ok(WriteOutcome::Written);
        }
        Ok(Some(e)) => return Ok(WriteOutcome::Replayed(e)),
        Err(e) if e.is_retriable() => return Err(e),
        Err(error) => {
            tracing::warn!(%error, rows = cands.len() + poss.len(), "batch rejected by postgres, isolating the bad rows");
        }
    }
    // Bisect: write halves in their own transactions until single bad rows remain.
    let mut bad = Vec::new();
    isolate(&mut client, &cands, &mut bad).await?;
    isolate(&mut client, &poss, &mut bad).await?;
    let mut dead = Vec::new();
    for (input, reason) in &bad {
        dead.push(
            dlq::send(
                producer,
                dlq_topic,
                &input.dead_letter("sink", "postgres.rejected", reason),
            )
            .await?,
        );
    }
    for d in dead {
        d.await?;
    }
    stats.rejected.fetch_add(bad.len() as u64, Relaxed);
    observe::rejected("sink", "postgres.rejected", bad.len() as u64);
    let tx = client.transaction().await?;
    if offsets::epoch_for_share(&tx, group).await? != epoch {
        let e = offsets::epoch(&tx, group).await?;
        return Ok(WriteOutcome::Replayed(e));
    }
    offsets::store(&tx, group, &batch.next).await?;
    tx.commit().await?;
    stats
        .rows_written
        .fetch_add((cands.len() + poss.len() - bad.len()) as u64, Relaxed);
    let is_bad = |i: &Input| {
        bad.iter()
            .any(|(b, _)| b.partition == i.partition && b.offset == i.offset)
    };
    let cands: Vec<_> = cands.into_iter().filter(|(_, i)| !is_bad(i)).collect();
    let poss: Vec<_> = poss.into_iter().filter(|(_, i)| !is_bad(i)).collect();
    report(batch, &cands, &poss, write_started.elapsed());
    Ok(WriteOutcome::Written)
}

/// Metrics of one written batch: messages in, rows out (after collapsing repeated keys),
/// undecodable messages rejected, and the rows' freshness (CRM modification to commit).
fn report(
    batch: &Batch,
    cands: &[&(Candidate, Input)],
    poss: &[&(Position, Input)],
    took: Duration,
) {
    observe::records_in("sink", batch.messages as u64);
    if !batch.undecodable.is_empty() {
        observe::rejected("sink", "canonical.decode", batch.undecodable.len() as u64);
    }
    observe::batch("sink", batch.messages, took);
    let versions: Vec<i64> = cands.iter().map(|(c, _)| c.source_version).collect();
    observe::freshness("sink", "candidate", &versions);
    let versions: Vec<i64> = poss.iter().map(|(p, _)| p.source_version).collect();
    observe::freshness("sink", "position", &versions);
    observe::records_out("sink", (cands.len() + poss.len()) as u64);
}

/// Writes `rows` (without offsets); rows Postgres rejects on their own end up in `bad`.
async fn isolate<'a, R: SinkRow>(
    client: &mut deadpool_postgres::Object,
    rows: &[&'a (R, Input)],
    bad: &mut Vec<(&'a Input, String)>,
) -> Result<()> {
    let mut stack: Vec<&[&'a (R, Input)]> = vec![rows];
    while let Some(part) = stack.pop() {
        if part.is_empty() {
            continue;
        }
        let tx = client.transaction().await?;
        let res = copy_upsert(&tx, part).await;
        match res {
            Ok(()) => tx.commit().await?,
            Err(e) if e.is_retriable() => return Err(e),
            Err(e) => {
                drop(tx);
                if part.len() == 1 {
                    bad.push((&part[0].1, e.to_string()));
                } else {
                    let (a, b) = part.split_at(part.len() / 2);
                    stack.push(a);
                    stack.push(b);
                }
            }
        }
    }
    Ok(())
}

/// COPY the rows into a session-local staging table and upsert them with the version guard.
async fn copy_upsert<R: SinkRow>(
    tx: &deadpool_postgres::Transaction<'_>,
    rows: &[&(R, Input)],
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let staging = format!("crmflow_stage_{}", R::TABLE);
    tx.batch_execute(&format!(
        "CREATE TEMP TABLE IF NOT EXISTS {staging} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
        table = R::TABLE
    ))
    .await
    .map_err(StoreError::Pg)?;
    let sink = tx.copy_in(&rows::copy_sql::<R>(&staging)).await?;
    let writer = BinaryCopyInWriter::new(sink, &rows::types::<R>());
    let mut writer = pin!(writer);
    for (row, input) in rows.iter().map(|r| (&r.0, &r.1)) {
        let mut values = row.values();
        values.push(Box::new(input.partition));
        values.push(Box::new(input.offset));
        let refs: Vec<&(dyn ToSql + Sync)> = values
            .iter()
            .map(|v| v.as_ref() as &(dyn ToSql + Sync))
            .collect();
        writer.as_mut().write(&refs).await?;
    }
    writer.finish().await?;
    tx.execute(&rows::upsert_sql::<R>(&staging), &[]).await?;
    // ON COMMIT DELETE ROWS empties it at commit; a rolled-back attempt leaves nothing either.
    Ok(())
}

/// After Postgres has the batch, tell Kafka too, so standard lag tools see progress.
pub(crate) fn commit_to_kafka(consumer: &kafka::StageConsumer, next: &Positions) {
    let mut tpl = TopicPartitionList::new();
    for ((t, p), o) in next {
        let _ = tpl.add_partition_offset(t, *p, Offset::Offset(*o));
    }
    if let Err(error) = consumer.commit(&tpl, CommitMode::Async) {
        tracing::debug!(%error, "kafka commit (informational) failed");
    }
}

/// A replay rewound our stored offsets: seek every assigned partition to them.
pub(crate) async fn apply_replay(
    consumer: &kafka::StageConsumer,
    pool: &Pool,
    group: &str,
    inputs: &[String],
) -> Result<()> {
    let stored = offsets::load_all(&pool.get().await?, group).await?;
    let assignment = consumer.assignment()?;
    let mut targets = Vec::new();
    for e in assignment.elements() {
        if !inputs.iter().any(|t| t == e.topic()) {
            continue;
        }
        let target = stored
            .get(&(e.topic().to_owned(), e.partition()))
            .map(|o| Offset::Offset(*o))
            .unwrap_or(Offset::Beginning);
        tracing::info!(topic = e.topic(), partition = e.partition(), offset = ?target, "replay: seeking");
        targets.push((e.topic().to_owned(), e.partition(), target));
    }
    consumer.seek_partitions(targets).await?;
    Ok(())
}
