//! Sources: read CRMs and write their changes to the raw topics (`crm.raw.<crm>.<entity>`) as Avro
//! `ChangeEvent`s, one per record version, keyed by the CRM record id.
//!
//! A source moves its cursor (kept in Postgres, `source_cursors`) only after Kafka acknowledged every
//! event before it, so a crash at any instant repeats work instead of losing it; repeats carry the same
//! deterministic `event_id` and are de-duplicated downstream.
//!
//! # How a source plugs in
//!
//! A CRM adapter lives in `src/sources/<crm>/` (over its connector crate's client) and provides:
//! 1. a type implementing [`Source`]: `crm()` (the `crm` of its events, the `source` of its cursor,
//!    lease and status rows and the `source` label of its metrics), `entities()`, and `run(io)`, which
//!    reads changes until `io.shutdown` is cancelled (or, with `io.until_caught_up`, until it has read
//!    everything) and returns a [`SourceError`] whose [`SourceError::is_retriable`] says whether to try
//!    again. `run` is called each time this process becomes the source's active reader, so it loads its
//!    cursors at its start, never from a previous call;
//! 2. a [`SourceKind`] constant (`name`, `configured`, `build`) added to [`KINDS`]: the source is on when
//!    `configured(cfg)` says its config section is there, and `crmflow run --sources a,b` narrows it.
//!
//! Inside `run`, everything goes through the [`SourceIo`] handle: [`SourceIo::emitter`] gives one
//! [`emit::Emitter`] per entity (CRM-neutral: the source says id, version, op, and the raw JSON travels
//! unchanged; it de-duplicates `(id, version)` and returns Kafka delivery futures to await before a cursor
//! save); [`SourceIo::cursors`] loads and saves cursor documents whose shape the source owns, and records
//! the phase of each entity ([`cursors::Phase`]: `polling`; or `snapshot` with progress, then `streaming`)
//! for `crmflow status`; [`SourceIo::synced`] reports how far the source has read (the source-lag gauge and
//! heartbeat). Saves are fenced: a process that lost the source's lease gets [`SourceError::LeaseLost`]
//! and its cursor does not move.
//!
//! A push or event source snapshots before it streams: it opens its subscription first (so the CRM keeps
//! the events from then on), then reads everything by poll with its own cursor (phase `snapshot`, resumed
//! after a restart), then follows the events (phase `streaming`). [`bullhorn`]'s events mode is the
//! example.
//!
//! # Active/standby
//!
//! [`run`] runs each selected source under a lease ([`lease`]): one process reads a source at a time;
//! the others wait as standby, polling the lease, and take over when the active one stops renewing it
//! (death or hang, after `sources.lease_ttl_ms`) or releases it (clean stop, at once).
//!
//! Modules: [`bullhorn`] (incremental poller and event-subscription reader over
//! `crmflow_bullhorn::client`), [`cursors`] (cursor and phase rows), [`emit`] (record > event > Kafka,
//! with the de-duplication cache), [`lease`] (active/standby).

pub mod bullhorn;
pub mod cursors;
pub mod emit;
pub mod hubspot;
pub mod lease;
pub mod salesforce;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::kafka::{Producer, Topics};
use crate::runtime::RunCtx;
use cursors::CursorStore;
use emit::Emitter;

/// A boxed error from a connector's client.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a source stopped or a step failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The CRM's client failed; the connector said whether trying again can help.
    #[error("{crm}: {source}")]
    Client {
        crm: &'static str,
        retriable: bool,
        source: BoxError,
    },
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Codec(#[from] crate::codec::CodecError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("{entity} record without a usable {what}: {record}")]
    BadRecord {
        entity: String,
        what: &'static str,
        record: String,
    },
    /// Another process holds the source's lease now: this one must stop reading (its cursor
    /// writes are refused).
    #[error("source {source_name} is no longer held by this process (lease lost)")]
    LeaseLost { source_name: String },
    #[error("{0}")]
    Stuck(String),
}

impl SourceError {
    /// A client error of `crm`.
    pub fn client(
        crm: &'static str,
        retriable: bool,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        SourceError::Client {
            crm,
            retriable,
            source: Box::new(e),
        }
    }

    /// Whether the step can be tried again later (the cursor has not moved past it).
    pub fn is_retriable(&self) -> bool {
        match self {
            SourceError::Client { retriable, .. } => *retriable,
            SourceError::Kafka(_) => true,
            SourceError::Store(e) => e.is_retriable(),
            _ => false,
        }
    }
}

impl From<tokio_postgres::Error> for SourceError {
    fn from(e: tokio_postgres::Error) -> Self {
        SourceError::Store(crate::store::StoreError::Pg(e))
    }
}

impl From<deadpool_postgres::PoolError> for SourceError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        SourceError::Store(crate::store::StoreError::Pool(e))
    }
}

impl From<SourceError> for Error {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::Kafka(k) => Error::Kafka(k),
            SourceError::Store(s) => Error::Store(s),
            SourceError::Codec(c) => Error::Codec(c),
            SourceError::Config(c) => Error::Config(c),
            other => Error::Other(other.to_string()),
        }
    }
}

/// One CRM source. See the module docs for how one plugs in.
pub trait Source: Send + Sync {
    /// The CRM this source reads (`bullhorn`, `hubspot`, ...).
    fn crm(&self) -> &'static str;
    /// The entities it reads, as named in its raw topics.
    fn entities(&self) -> Vec<String>;
    /// Reads changes into `io` until `io.shutdown` is cancelled, or with `io.until_caught_up` until
    /// everything up to now was read and acknowledged. Called each time this process becomes the
    /// active reader.
    fn run(&self, io: SourceIo) -> BoxFuture<'_, Result<(), SourceError>>;
}

/// A source known to crmflow.
pub struct SourceKind {
    /// The name `--sources` takes (the source's `crm`).
    pub name: &'static str,
    /// Whether the configuration turns the source on.
    pub configured: fn(&Config) -> bool,
    /// What to set to turn it on (for the error when `--sources` names it anyway).
    pub how_to_configure: &'static str,
    /// Builds the source from the configuration.
    pub build: fn(&Config) -> Result<Box<dyn Source>, SourceError>,
}

/// Every source crmflow knows. A new CRM adds its `KIND` here.
pub const KINDS: &[&SourceKind] = &[&bullhorn::KIND, &hubspot::KIND, &salesforce::KIND];

/// The sources a run reads: the `--sources` names (each must be known and configured), else every
/// configured source. The error is one line.
pub fn select(cfg: &Config, names: Option<&[String]>) -> Result<Vec<&'static SourceKind>, String> {
    let known = || KINDS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ");
    match names {
        None => Ok(KINDS
            .iter()
            .copied()
            .filter(|k| (k.configured)(cfg))
            .collect()),
        Some(names) => {
            let mut out: Vec<&'static SourceKind> = Vec::new();
            for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
                let kind = KINDS
                    .iter()
                    .copied()
                    .find(|k| k.name.eq_ignore_ascii_case(name))
                    .ok_or_else(|| format!("unknown source {name:?}; sources are {}", known()))?;
                if !(kind.configured)(cfg) {
                    return Err(format!(
                        "source {:?} is not configured ({})",
                        kind.name, kind.how_to_configure
                    ));
                }
                if !out.iter().any(|k| k.name == kind.name) {
                    out.push(kind);
                }
            }
            if out.is_empty() {
                return Err(format!(
                    "--sources names no source; sources are {}",
                    known()
                ));
            }
            Ok(out)
        }
    }
}

/// What a source reads and writes through while it is the active reader.
#[derive(Clone)]
pub struct SourceIo {
    /// The effective configuration.
    pub cfg: Arc<Config>,
    /// Cancelled on shutdown, and when this process lost the source's lease.
    pub shutdown: CancellationToken,
    /// One-shot mode: return once everything up to now was read and acknowledged.
    pub until_caught_up: bool,
    crm: &'static str,
    producer: Producer,
    topics: Topics,
    cursors: CursorStore,
}

impl SourceIo {
    /// A handle for `crm` writing cursors through `cursors` (fenced by a lease, or not).
    pub fn new(
        cfg: Arc<Config>,
        crm: &'static str,
        producer: Producer,
        cursors: CursorStore,
        shutdown: CancellationToken,
        until_caught_up: bool,
    ) -> Self {
        let topics = Topics::new(&cfg.kafka);
        Self {
            cfg,
            shutdown,
            until_caught_up,
            crm,
            producer,
            topics,
            cursors,
        }
    }

    /// A handle without a lease (one process known to be alone: tests, benchmarks).
    pub fn unfenced(
        cfg: &Config,
        crm: &'static str,
        shutdown: CancellationToken,
        until_caught_up: bool,
    ) -> Result<Self, SourceError> {
        let producer = Producer::new(&cfg.kafka)?;
        let cursors = CursorStore::new(crate::store::pool(cfg)?, crm);
        Ok(Self::new(
            Arc::new(cfg.clone()),
            crm,
            producer,
            cursors,
            shutdown,
            until_caught_up,
        ))
    }

    /// The CRM this handle serves.
    pub fn crm(&self) -> &'static str {
        self.crm
    }

    /// An emitter for `entity`'s raw topic; `mode` is recorded in each event's `source_mode`.
    pub fn emitter(&self, entity: &str, mode: &'static str) -> Emitter {
        Emitter::new(
            self.producer.clone(),
            self.crm,
            entity,
            self.topics.raw(self.crm, entity),
            mode,
        )
    }

    /// This source's cursors and phases.
    pub fn cursors(&self) -> &CursorStore {
        &self.cursors
    }

    /// `entity` has read everything modified up to `synced_ms` (epoch ms).
    pub fn synced(&self, entity: &str, synced_ms: i64) {
        crate::observe::source_synced(self.crm, entity, synced_ms);
    }

    /// Waits (bounded) for queued events to be delivered; for a clean exit only, since every cursor
    /// save already waited for what it covers.
    pub fn flush(&self) {
        let _ = self.producer.flush(Duration::from_secs(10));
    }
}

/// The ingest stage: runs every selected source (active/standby under its lease) until shutdown, or in
/// one-shot mode until each has caught up. The first source that fails stops the others.
pub async fn run(ctx: RunCtx) -> Result<()> {
    let kinds = select(&ctx.cfg, ctx.sources.as_deref()).map_err(Error::Other)?;
    if kinds.is_empty() {
        return Err(Error::Other(
            "no source is configured (see `crmflow config check`)".into(),
        ));
    }
    let mut set = tokio::task::JoinSet::new();
    for kind in kinds {
        let source: Arc<dyn Source> = Arc::from((kind.build)(&ctx.cfg)?);
        let ctx = ctx.clone();
        set.spawn(async move { (kind.name, lease::supervise(source, ctx).await) });
    }
    let mut first_error = None;
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((name, Ok(()))) => info!(source = name, "source stopped"),
            Ok((name, Err(error))) => {
                warn!(source = name, %error, "source failed");
                ctx.shutdown.cancel();
                first_error.get_or_insert(Error::from(error));
            }
            Err(join) => {
                ctx.shutdown.cancel();
                first_error.get_or_insert(Error::Other(format!("source panicked: {join}")));
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_defaults_to_configured_sources_and_names_bad_ones() {
        let mut cfg = Config::default();
        let names = |v: Vec<&SourceKind>| v.iter().map(|k| k.name).collect::<Vec<_>>();
        assert_eq!(names(select(&cfg, None).unwrap()), ["bullhorn"]);
        assert_eq!(
            names(select(&cfg, Some(&["bullhorn".into(), " Bullhorn".into()])).unwrap()),
            ["bullhorn"]
        );
        let err = select(&cfg, Some(&["nope".into()])).map(names).unwrap_err();
        assert!(
            err.starts_with("unknown source \"nope\"; sources are bullhorn"),
            "{err}"
        );
        assert!(!err.contains('\n'));
        cfg.bullhorn.enabled = false;
        assert!(select(&cfg, None).unwrap().is_empty());
        let err = select(&cfg, Some(&["bullhorn".into()]))
            .map(names)
            .unwrap_err();
        assert!(err.contains("not configured"), "{err}");
        assert!(select(&cfg, Some(&[])).is_err());
    }
}
