//! The embed stage: canonical topics -> ML service -> `embeddings` (pgvector), exactly-once in
//! effect, with up to `max_in_flight` ML requests at once and offsets that only move forward
//! contiguously.
//!
//! Flow, per micro-batch of up to `batch_size` messages (or `linger_ms`):
//! decode > collapse repeated keys (newest version wins) > render the text from the entity's
//! template ([`text`]) > content hash > decide against the expected stored state: skip when the
//! hash is unchanged (or the version is older), embed otherwise, delete for tombstones > spawn the
//! ML call (a tokio task, so it progresses while the loop gathers and commits) > dealt by
//! partition to `writers` concurrent writers > per writer, in batch order, ONE transaction per
//! batch part: replay-epoch check, vectors (binary COPY + guarded upsert), deletes (vectors and
//! matches), match-queue entries, the next offsets of that writer's partitions > tell Kafka (for
//! lag tools only).
//!
//! Ordering: spawned ML calls sit in a `FuturesOrdered`, so batches reach the writers in order.
//! Partition p belongs to writer `p % writers` and each writer runs one transaction at a time,
//! so batch N's part for p commits after batch N-1's part for p, even if N's vectors arrived
//! first; the writers never touch the same offset row (nor, since a key lives in one partition,
//! the same vector). Why several: pgvector's HNSW insert is CPU-bound in one backend, and it is
//! nearly all of the write cost. A crash loses at most the uncommitted parts, which are re-read
//! from their partitions' stored offsets.
//!
//! The skip decision needs "what Postgres will hold once everything in flight has committed".
//! Three layers answer it: `pending` (keys of in-flight batches, exact, per batch sequence),
//! then a moka cache of committed states, then one batched Postgres read for the misses. The
//! cache only learns what a commit confirmed (the upsert's `RETURNING`), and everything is
//! forgotten on a rebalance or replay, when another instance may have written our keys.
//!
//! ML failures: retriable ones (429, 5xx, timeouts, after the client's own retries) back off
//! and resend the same batch, never skipping it; inputs the service rejects are isolated by the
//! client's bisecting and go to the DLQ (`error.stage=embed`, rule `ml.input_rejected`) while
//! their batch-mates are written. Anything else (auth, a broken response) stops the stage.

pub mod backfill;
pub mod bulk;
mod prepare;
pub mod store;
pub mod text;
mod write;

use prepare::prepare;
use write::{commit, settle};

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crmflow_embedding::{ClientConfig, EmbedError, EmbeddingClient, Protocol};
use deadpool_postgres::Pool;
use futures::stream::{FuturesOrdered, FuturesUnordered};
use futures::StreamExt;
use rdkafka::consumer::Consumer;
use tokio_postgres::types::Type;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use self::store::{Key, State, VectorRow};
use self::text::{content_hash, Entity, Templates};
use super::sink::{apply_replay, commit_to_kafka, Input};
use crate::codec;
use crate::config::{Config, MlProtocol};
use crate::dlq::{self, DeadLetter};
use crate::error::{Error, Result};
use crate::kafka::trace;
use crate::kafka::{self, Producer, Topics};
use crate::observe;
use crate::runtime::offsets::{self, PgOffsets, Positions};
use crate::runtime::{RunCtx, StageName};
use crate::telemetry::outage;
use tracing::Instrument;

/// Builds the ML client from the configuration (shared with `crmflow embed backfill`).
pub fn ml_client(cfg: &Config) -> Result<EmbeddingClient> {
    let url = url::Url::parse(&cfg.ml.url)
        .map_err(|e| Error::Other(format!("ml.url {:?} is not a URL: {e}", cfg.ml.url)))?;
    let protocol = match cfg.ml.protocol {
        MlProtocol::Tei => Protocol::Tei,
        MlProtocol::Openai => Protocol::OpenAi,
    };
    let mut cc = ClientConfig::new(url, protocol, cfg.ml.model.clone());
    cc.timeout = Duration::from_secs(cfg.ml.timeout_secs.max(1));
    cc.api_key = cfg.ml.api_key.clone();
    cc.expected_dim = Some(cfg.ml.dim);
    Ok(EmbeddingClient::new(cc)?)
}

/// Sends `texts` until the service answers for every input: retriable failures back off and
/// resend the same batch (never skipped); per-input rejections come back as inner `Err`s.
pub(crate) async fn embed_until_done(
    client: &EmbeddingClient,
    texts: &[String],
    shutdown: &CancellationToken,
) -> Result<Vec<Result<Vec<f32>, EmbedError>>> {
    let mut attempt = 0;
    loop {
        match client.embed_isolating(texts).await {
            Ok(v) => return Ok(v),
            Err(error) if error.is_retriable() => {
                let wait = crate::runtime::backoff(attempt, Duration::from_secs(30));
                tracing::warn!(%error, attempt, batch_len = texts.len(), wait_ms = wait.as_millis() as u64,
                    "ml service unavailable after the client's retries; backing off, batch kept");
                observe::retry("embed", "ml", &error);
                tokio::select! {
                    _ = shutdown.cancelled() => return Err(Error::Other("shutdown".into())),
                    _ = tokio::time::sleep(wait) => {}
                }
                attempt += 1;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// Counters of one run.
#[derive(Debug, Default)]
pub struct EmbedStats {
    /// Vectors written.
    pub embedded: AtomicU64,
    /// Records whose text was unchanged (or whose version was older): nothing sent.
    pub skipped: AtomicU64,
    /// Deletes applied.
    pub deleted: AtomicU64,
    /// Records sent to the DLQ.
    pub rejected: AtomicU64,
    pub batches: AtomicU64,
}

/// What to do with one record of a batch.
enum Action {
    Embed { text: String, hash: Arc<str> },
    Delete,
}

/// One record after collapsing.
struct Rec {
    key: Key,
    version: i64,
    action: Action,
    input: Input,
    /// The record's span in its own trace, when it is sampled (lives until its write).
    span: Option<tracing::Span>,
}

impl Rec {
    /// The `traceparent` stored with the vector and the match-queue entry: the record span's
    /// context when sampled (the match span hangs under it), else the incoming header.
    fn traceparent(&self) -> Option<String> {
        match &self.span {
            Some(span) => Some(trace::downstream(Some(span), self.input.trace).to_header()),
            None => self.input.trace.map(|t| t.to_header()),
        }
    }
}

/// A batch being gathered.
struct Gather {
    recs: HashMap<Key, Rec>,
    undecodable: Vec<(Input, String)>,
    next: Positions,
    messages: usize,
    /// Messages per input partition, so a batch dealt to several writers counts each message
    /// once (in the part of its partition).
    by_partition: HashMap<i32, usize>,
    started: Option<tokio::time::Instant>,
}

impl Gather {
    fn new() -> Self {
        Self {
            recs: HashMap::new(),
            undecodable: Vec::new(),
            next: Positions::new(),
            messages: 0,
            by_partition: HashMap::new(),
            started: None,
        }
    }

    fn add(&mut self, input: Input, topics: &InputTopics, templates: &Templates, model: &str) {
        self.started.get_or_insert_with(tokio::time::Instant::now);
        self.messages += 1;
        *self.by_partition.entry(input.partition).or_default() += 1;
        self.next
            .insert((input.topic.clone(), input.partition), input.offset + 1);
        let decoded = if input.topic == topics.candidate {
            codec::candidate().decode(&input.payload).map(|c| {
                let key = Key {
                    entity: Entity::Candidate,
                    crm: c.crm.clone(),
                    crm_id: c.crm_id.clone(),
                };
                let action = if c.deleted {
                    Action::Delete
                } else {
                    embed_action(templates.candidate.render_candidate(&c), model)
                };
                (key, c.source_version, action)
            })
        } else if input.topic == topics.position {
            codec::position().decode(&input.payload).map(|p| {
                let key = Key {
                    entity: Entity::Position,
                    crm: p.crm.clone(),
                    crm_id: p.crm_id.clone(),
                };
                let action = if p.deleted {
                    Action::Delete
                } else {
                    embed_action(templates.position.render_position(&p), model)
                };
                (key, p.source_version, action)
            })
        } else {
            let reason = format!("unexpected topic {}", input.topic);
            self.undecodable.push((input, reason));
            return;
        };
        match decoded {
            Err(e) => self.undecodable.push((input, e.to_string())),
            Ok((key, version, action)) => {
                // Newest version wins; on equal versions the later offset.
                let newer = self
                    .recs
                    .get(&key)
                    .is_none_or(|old| (old.version, old.input.offset) < (version, input.offset));
                if newer {
                    self.recs.insert(
                        key.clone(),
                        Rec {
                            key,
                            version,
                            action,
                            input,
                            span: None,
                        },
                    );
                }
            }
        }
    }
}

fn embed_action(text: String, model: &str) -> Action {
    let hash: Arc<str> = Arc::from(content_hash(model, &text));
    Action::Embed { text, hash }
}

struct InputTopics {
    candidate: String,
    position: String,
}

/// A batch whose decisions are made, on its way to the ML service and Postgres.
struct Prepared {
    seq: u64,
    /// Records to embed; `texts[i]` belongs to `embed[i]`.
    embed: Vec<(Rec, Arc<str>)>,
    texts: Vec<String>,
    deletes: Vec<Rec>,
    /// Empty-text records and undecodable messages: DLQ.
    dead: Vec<(Input, &'static str, &'static str, String)>,
    /// Keys decided "nothing to do", the state the cache may hold after commit, and the
    /// record's partition.
    skipped: Vec<(Key, State, i32)>,
    next: Positions,
    messages: usize,
    /// Messages per input partition (their sum is `messages`).
    by_partition: HashMap<i32, usize>,
}

/// A batch with its ML answers.
struct Embedded {
    prepared: Prepared,
    vectors: Vec<Result<Vec<f32>, EmbedError>>,
}

/// What a commit did.
enum Outcome {
    Written {
        written: HashSet<Key>,
        removed: HashSet<Key>,
    },
    /// A replay rewound the stage since the batch was read; nothing was written.
    Replayed(i64),
}

/// Everything a commit needs, shared by the commit tasks.
struct Writer {
    pool: Pool,
    producer: Producer,
    dlq_topic: String,
    group: String,
    model: String,
    vector_type: Type,
    stats: EmbedStats,
    shutdown: CancellationToken,
}

/// A commit task: the writer (lane) it ran on, its part of a batch, what it did.
type CommitTask = AbortOnDropHandle<(usize, Embedded, Result<Outcome>)>;

/// The concurrent writers. Each batch is dealt to them by partition ([`split`]); a writer
/// commits its parts strictly in batch order, one transaction at a time, so the offsets of a
/// partition only move forward and a crash loses at most uncommitted parts, which are re-read
/// from their partitions' stored offsets.
struct Lanes {
    queues: Vec<VecDeque<Embedded>>,
    busy: Vec<bool>,
    committing: FuturesUnordered<CommitTask>,
    /// Batches handed to the writers and not fully committed: seq -> parts left.
    unsettled: HashMap<u64, usize>,
}

impl Lanes {
    fn new(writers: usize) -> Self {
        Self {
            queues: (0..writers).map(|_| VecDeque::new()).collect(),
            busy: vec![false; writers],
            committing: FuturesUnordered::new(),
            unsettled: HashMap::new(),
        }
    }

    /// Hands a batch with its ML answers to the writers.
    fn push(&mut self, embedded: Embedded) {
        let seq = embedded.prepared.seq;
        let parts = split(embedded, self.queues.len());
        if !parts.is_empty() {
            self.unsettled.insert(seq, parts.len());
        }
        for (lane, part) in parts {
            self.queues[lane].push_back(part);
        }
    }

    /// Starts the next part of every idle writer.
    fn start(&mut self, writer: &Arc<Writer>, epoch: i64) {
        for (lane, queue) in self.queues.iter_mut().enumerate() {
            if self.busy[lane] {
                continue;
            }
            if let Some(part) = queue.pop_front() {
                self.busy[lane] = true;
                let writer = writer.clone();
                self.committing
                    .push(AbortOnDropHandle::new(tokio::spawn(async move {
                        let outcome = commit(&writer, epoch, &part).await;
                        (lane, part, outcome)
                    })));
            }
        }
    }

    /// A part committed (or found a replay): its writer is free again.
    fn done(&mut self, lane: usize, seq: u64) {
        self.busy[lane] = false;
        if let Some(left) = self.unsettled.get_mut(&seq) {
            *left -= 1;
            if *left == 0 {
                self.unsettled.remove(&seq);
            }
        }
    }

    /// Batches somewhere between the ML answer and their last commit.
    fn batches(&self) -> usize {
        self.unsettled.len()
    }

    fn is_idle(&self) -> bool {
        self.committing.is_empty() && self.queues.iter().all(VecDeque::is_empty)
    }

    /// Lets running commits finish (their writes are guarded and their offsets covered by
    /// their rows) and drops everything not yet started.
    async fn drain(&mut self) {
        while self.committing.next().await.is_some() {}
        for q in &mut self.queues {
            q.clear();
        }
        self.busy.fill(false);
        self.unsettled.clear();
    }
}

/// Deals a batch to `writers` writers by partition (`partition % writers`), each part with its
/// own partitions' records, dead letters and next offsets; parts without any message are left
/// out. A record's key travels with its partition, so no key is written by two parts.
fn split(embedded: Embedded, writers: usize) -> Vec<(usize, Embedded)> {
    if writers <= 1 {
        return vec![(0, embedded)];
    }
    let lane = |partition: i32| partition.rem_euclid(writers as i32) as usize;
    let Embedded {
        prepared: p,
        vectors,
    } = embedded;
    let mut parts: Vec<Embedded> = (0..writers)
        .map(|_| Embedded {
            prepared: Prepared {
                seq: p.seq,
                embed: Vec::new(),
                texts: Vec::new(),
                deletes: Vec::new(),
                dead: Vec::new(),
                skipped: Vec::new(),
                next: Positions::new(),
                messages: 0,
                by_partition: HashMap::new(),
            },
            vectors: Vec::new(),
        })
        .collect();
    for (e, v) in p.embed.into_iter().zip(vectors) {
        let part = &mut parts[lane(e.0.input.partition)];
        part.prepared.embed.push(e);
        part.vectors.push(v);
    }
    for r in p.deletes {
        parts[lane(r.input.partition)].prepared.deletes.push(r);
    }
    for d in p.dead {
        parts[lane(d.0.partition)].prepared.dead.push(d);
    }
    for s in p.skipped {
        parts[lane(s.2)].prepared.skipped.push(s);
    }
    for ((topic, partition), offset) in p.next {
        parts[lane(partition)]
            .prepared
            .next
            .insert((topic, partition), offset);
    }
    // Each part counts its own partitions' messages: the batch's inputs are counted once in
    // all (they were counted once per writer, which made `records_in` of embed twice its input).
    for (partition, n) in p.by_partition {
        let part = &mut parts[lane(partition)].prepared;
        part.messages += n;
        part.by_partition.insert(partition, n);
    }
    parts
        .into_iter()
        .enumerate()
        .filter(|(_, part)| !part.prepared.next.is_empty())
        .collect()
}

/// Runs the embed stage until shutdown (or, in one-shot mode, until caught up).
pub async fn run(ctx: RunCtx) -> Result<()> {
    let cfg = ctx.cfg.clone();
    let topics = Topics::new(&cfg.kafka);
    let group = topics.group("embed");
    let inputs = InputTopics {
        candidate: topics.canonical("candidate"),
        position: topics.canonical("position"),
    };
    let input_list = vec![inputs.candidate.clone(), inputs.position.clone()];
    let templates = Templates::from_config(&cfg.embed).map_err(Error::Other)?;
    let model = cfg.ml.model.clone();
    let client = ml_client(&cfg)?;
    let pool = crate::store::pool(&cfg)?;
    // A database that goes away right after start-up (a crash) is waited for, not the end.
    let vector_type = crate::runtime::retry_transient("embed start-up", &ctx.shutdown, || async {
        let mut c = pool.get().await?;
        store::ensure_indexes(&mut c, &model, &store::IndexParams::from_config(&cfg)).await?;
        store::vector_type(&c).await.map_err(store::no_pgvector)
    })
    .await?;
    let lookup = Arc::new(PgOffsets::new(pool.clone(), group.clone()));
    let mut consumer = kafka::consumer(
        &cfg.kafka,
        &group,
        &[&inputs.candidate, &inputs.position],
        Some(lookup),
    )?;
    let mut bulk_active =
        crate::runtime::retry_transient("embed bulk-path check", &ctx.shutdown, || {
            enter_bulk_if_large(&cfg, &consumer, &pool, &group, &inputs)
        })
        .await?;
    let writer = Arc::new(Writer {
        pool: pool.clone(),
        producer: Producer::new(&cfg.kafka)?,
        dlq_topic: topics.dlq(),
        group: group.clone(),
        model: model.clone(),
        vector_type,
        stats: EmbedStats::default(),
        shutdown: ctx.shutdown.clone(),
    });
    let mut epoch = offsets::epoch(&pool.get().await?, &group).await?;
    let linger = Duration::from_millis(cfg.embed.linger_ms);
    let max_messages = cfg.embed.batch_size.max(1);
    let max_in_flight = cfg.embed.max_in_flight.max(1);
    let writers = cfg.embed.writers.max(1);
    let cache: moka::sync::Cache<Key, State> =
        moka::sync::Cache::new(cfg.embed.hash_cache_capacity);
    // Keys of batches not yet committed: (batch seq, expected state).
    let mut pending: HashMap<Key, (u64, State)> = HashMap::new();
    let mut inflight: FuturesOrdered<AbortOnDropHandle<Result<Embedded>>> = FuturesOrdered::new();
    let mut lanes = Lanes::new(writers);
    let mut gather = Gather::new();
    let mut seq: u64 = 0;
    let mut generation = consumer.context().generation();
    let mut last_control_check = Instant::now();

    tracing::info!(
        group,
        model,
        batch_size = max_messages,
        max_in_flight,
        writers,
        linger_ms = cfg.embed.linger_ms,
        "embed started"
    );
    loop {
        // Partitions moved: what we hold (gathered, in flight) may belong to another instance,
        // and the consumer was re-seeked to the stored offsets. Drop it all; a commit already
        // running finishes first (its writes are guarded and its offsets covered by its rows).
        let g = consumer.context().generation();
        if g > generation {
            lanes.drain().await;
            tracing::info!(
                dropped_batches = inflight.len(),
                "rebalance: dropping uncommitted batches"
            );
            inflight = FuturesOrdered::new();
            gather = Gather::new();
            pending.clear();
            cache.invalidate_all();
            generation = g;
        }

        let cut_due = gather
            .started
            .is_some_and(|s| s + linger <= tokio::time::Instant::now());
        lanes.start(&writer, epoch);
        let room = inflight.len() + lanes.batches() < max_in_flight;
        if room && (gather.messages >= max_messages || cut_due) {
            let batch = std::mem::replace(&mut gather, Gather::new());
            seq += 1;
            let prepared = prepare(batch, seq, &cache, &mut pending, &pool, &model).await?;
            let client = client.clone();
            let shutdown = ctx.shutdown.clone();
            // The ML request of a batch: its HTTP client spans sit under an `embed` span linked
            // to the batch's sampled records.
            let ml_span = if trace::exporting() && !prepared.texts.is_empty() {
                let span = tracing::info_span!(
                    "batch",
                    otel.name = "embed ml",
                    otel.kind = "internal",
                    crmflow.stage = "embed",
                    crmflow.ml.inputs = prepared.texts.len() as i64,
                );
                trace::link_sampled(
                    &span,
                    prepared
                        .embed
                        .iter()
                        .filter(|(r, _)| r.span.is_some())
                        .filter_map(|(r, _)| r.input.trace.as_ref()),
                );
                span
            } else {
                tracing::Span::none()
            };
            inflight.push_back(AbortOnDropHandle::new(tokio::spawn(
                async move {
                    let vectors = if prepared.texts.is_empty() {
                        Vec::new()
                    } else {
                        embed_until_done(&client, &prepared.texts, &shutdown).await?
                    };
                    Ok(Embedded { prepared, vectors })
                }
                .instrument(ml_span),
            )));
            continue;
        }

        let wake = gather
            .started
            .map(|s| s + linger)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_millis(200));
        // A full batch, or one past its linger time, waits for room without reading on (and
        // without spinning on an expired timer).
        let can_read = gather.messages < max_messages && (room || !cut_due);
        tokio::select! {
            _ = ctx.shutdown.cancelled() => {
                tracing::info!("embed stopping; uncommitted batches are dropped and re-read later");
                lanes.drain().await;
                return Ok(());
            }
            done = lanes.committing.next(), if !lanes.committing.is_empty() => {
                let (lane, embedded, outcome) = done
                    .expect("non-empty")
                    .map_err(|e| Error::Other(format!("embed commit task: {e}")))?;
                lanes.done(lane, embedded.prepared.seq);
                match outcome? {
                    Outcome::Written { written, removed } => {
                        settle(&embedded, &written, &removed, &cache, &mut pending);
                        commit_to_kafka(&consumer, &embedded.prepared.next);
                        last_control_check = Instant::now();
                    }
                    Outcome::Replayed(e) => {
                        tracing::info!(epoch = e, "replay requested: dropping uncommitted batches and seeking");
                        lanes.drain().await;
                        inflight = FuturesOrdered::new();
                        gather = Gather::new();
                        pending.clear();
                        cache.invalidate_all();
                        apply_replay(&consumer, &pool, &group, &input_list).await?;
                        epoch = e;
                    }
                }
            }
            next = inflight.next(), if !inflight.is_empty() => {
                let embedded = next
                    .expect("non-empty")
                    .map_err(|e| Error::Other(format!("embed task: {e}")))??;
                lanes.push(embedded);
            }
            msg = consumer.recv_until(wake), if can_read => match msg {
                Ok(None) => {
                    if gather.messages == 0 && inflight.is_empty() && lanes.is_idle() {
                        if bulk_active && crate::runtime::retry_transient("embed lag", &ctx.shutdown, || caught_up(&consumer, &pool, &group, &input_list)).await? {
                            bulk::finish(&pool, &cfg, &model).await?;
                            bulk_active = false;
                        }
                        if let Some(e) = idle(&ctx, &consumer, &pool, &group, &input_list, epoch, &mut last_control_check, &writer.stats).await? {
                            match e {
                                Idle::Done => return Ok(()),
                                Idle::Replayed(e) => {
                                    pending.clear();
                                    cache.invalidate_all();
                                    epoch = e;
                                }
                            }
                        }
                    }
                }
                Err(error) => {
                    crate::kafka::logs::consume_error("embed", &error);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok(Some(polled)) if polled.generation < generation => {
                    // Fetched before a rebalance or seek we already acted on.
                }
                Ok(Some(polled)) => {
                    let m = polled.msg;
                    if polled.generation > generation {
                        // The message is from the new assignment: keep it, drop the rest.
                        lanes.drain().await;
                        tracing::info!(dropped_batches = inflight.len(), "rebalance: dropping uncommitted batches");
                        inflight = FuturesOrdered::new();
                        gather = Gather::new();
                        pending.clear();
                        cache.invalidate_all();
                        generation = polled.generation;
                    }
                    gather.add(Input::from_message(&m), &inputs, &templates, &model);
                }
            },
        }
    }
}

enum Idle {
    Done,
    Replayed(i64),
}

/// Takes the bulk path ([`bulk`]) for each side whose input backlog is past
/// `embed.bulk_threshold` and past the vectors stored for it. Returns whether a bulk load (this
/// one, or one an earlier run left unfinished) is in progress for the model.
async fn enter_bulk_if_large(
    cfg: &Config,
    consumer: &kafka::StageConsumer,
    pool: &Pool,
    group: &str,
    inputs: &InputTopics,
) -> Result<bool> {
    let model = &cfg.ml.model;
    if cfg.embed.bulk_threshold > 0 {
        let stored_offsets = offsets::load_all(&pool.get().await?, group).await?;
        let topics = [inputs.candidate.clone(), inputs.position.clone()];
        let lags = crate::runtime::progress::lag(consumer, &topics, &stored_offsets).await?;
        let client = pool.get().await?;
        for (entity, topic) in [
            (Entity::Candidate, &inputs.candidate),
            (Entity::Position, &inputs.position),
        ] {
            let backlog: u64 = lags
                .iter()
                .filter(|((t, _), _)| t == topic)
                .map(|(_, &l)| l.max(0) as u64)
                .sum();
            if backlog < cfg.embed.bulk_threshold {
                continue;
            }
            let stored = bulk::stored(&client, model, entity).await?;
            if bulk::should_bulk(backlog, stored, cfg.embed.bulk_threshold) {
                bulk::enter(pool, model, entity, bulk::Reason::Backlog, backlog).await?;
            }
        }
    }
    Ok(!bulk::active(&pool.get().await?, model).await?.is_empty())
}

/// Whether the group has consumed every input to its end (stored offsets at the high
/// watermarks): the moment a bulk load builds its index.
async fn caught_up(
    consumer: &kafka::StageConsumer,
    pool: &Pool,
    group: &str,
    input_list: &[String],
) -> Result<bool> {
    let stored = offsets::load_all(&pool.get().await?, group).await?;
    let lag = crate::runtime::progress::lag(consumer, input_list, &stored).await?;
    Ok(lag.values().all(|&l| l <= 0))
}

/// Idle housekeeping: notice a replay request, and in one-shot mode whether we are done.
#[allow(clippy::too_many_arguments)]
async fn idle(
    ctx: &RunCtx,
    consumer: &kafka::StageConsumer,
    pool: &Pool,
    group: &str,
    input_list: &[String],
    epoch: i64,
    last_control_check: &mut Instant,
    stats: &EmbedStats,
) -> Result<Option<Idle>> {
    if last_control_check.elapsed() > Duration::from_secs(1) {
        *last_control_check = Instant::now();
        if let Ok(client) = pool.get().await {
            if let Ok(e) = offsets::epoch(&client, group).await {
                if e != epoch {
                    apply_replay(consumer, pool, group, input_list).await?;
                    return Ok(Some(Idle::Replayed(e)));
                }
            }
        }
    }
    if ctx.until_caught_up && ctx.finished.upstream_done(StageName::Embed) {
        let stored = offsets::load_all(&pool.get().await?, group).await?;
        let lag = crate::runtime::progress::lag(consumer, input_list, &stored).await?;
        if lag.values().all(|&l| l == 0) {
            tracing::info!(
                embedded = stats.embedded.load(Relaxed),
                skipped = stats.skipped.load(Relaxed),
                deleted = stats.deleted.load(Relaxed),
                rejected = stats.rejected.load(Relaxed),
                "embed caught up"
            );
            return Ok(Some(Idle::Done));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests;
