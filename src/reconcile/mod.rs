//! Reconciliation: find and heal what incremental change capture misses (hard deletes, merge
//! losers, events lost by a lapsed subscription, rows damaged by hand).
//!
//! For each configured CRM and entity, a [`Lister`] lists `(id, version, deleted)` from the CRM in id
//! order, page by page, as cheaply as its API allows, using its own share of the CRM's request budget
//! (`reconcile.api_share`). The [`engine`] merges each page with the Postgres rows of the same id range
//! (read through one ordered cursor) and the versions the DLQ holds ([`dlq`]), and [`diff`] (pure)
//! classifies: `missing` and `stale` are re-read from the CRM and emitted, `gone` is emitted as a
//! tombstone, `newer_in_pg` is only reported. Repairs are ordinary `ChangeEvent`s on the raw topics
//! (with `crmflow.op` and `crmflow.reason` headers), so normalize, sink, embed and match apply them
//! with their usual exactly-once rules; reconcile never writes a row itself.
//!
//! A run records its progress in `reconcile_runs` ([`runs`]): the last id whose repairs Kafka
//! acknowledged and the counts so far, so a killed run is resumed by the next one. One process
//! reconciles at a time (a Postgres advisory lock per schema); `crmflow reconcile` fails fast when
//! another holds it, the scheduled mode ([`schedule`], inside `crmflow run`) skips its round.
//!
//! Stages never import this module; it sits beside `sources` and uses their emitter.

pub mod bullhorn;
pub mod diff;
pub mod dlq;
pub mod engine;
pub mod hubspot;
pub mod paging;
pub mod runs;
pub mod salesforce;
pub mod schedule;

use futures::future::BoxFuture;
use serde::Serialize;

use crate::config::Config;
use crate::kafka::Delivery;
use crate::sources::emit::Emitter;
use crate::sources::SourceError;
use crate::store::StoreError;
pub use diff::{Finding, IdOrder, Kind, Listed};
pub use paging::IdRange;

/// Header naming the operation of a repair event (`upsert` or `delete`).
pub const H_OP: &str = "crmflow.op";
/// Header naming why a repair event was sent (`reconcile.missing`, `reconcile.stale`,
/// `reconcile.gone`).
pub const H_REASON: &str = "crmflow.reason";
/// `source_mode` of repair events.
pub const MODE: &str = "reconcile";

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// Reading the CRM or writing Kafka failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Another process is reconciling this schema now.
    #[error("another reconcile is running against schema {0} (advisory lock held)")]
    Busy(String),
    /// The CRM listed ids out of order: comparing would report everything out of place as both
    /// missing and gone, so the run stops instead.
    #[error("{crm} {entity}: the listing is not in id order after {after:?}; refusing to compare")]
    Unsorted {
        crm: &'static str,
        entity: String,
        after: Option<String>,
    },
    /// The dead-letter queue could not be read.
    #[error("dead-letter queue: {0}")]
    Dlq(String),
    /// A CRM or entity that cannot be reconciled as configured.
    #[error("{0}")]
    Config(String),
}

impl ReconcileError {
    /// Whether trying again later can help.
    pub fn is_retriable(&self) -> bool {
        match self {
            ReconcileError::Source(e) => e.is_retriable(),
            ReconcileError::Store(e) => e.is_retriable(),
            ReconcileError::Busy(_) | ReconcileError::Dlq(_) => true,
            ReconcileError::Unsorted { .. } | ReconcileError::Config(_) => false,
        }
    }
}

impl From<tokio_postgres::Error> for ReconcileError {
    fn from(e: tokio_postgres::Error) -> Self {
        ReconcileError::Store(StoreError::Pg(e))
    }
}

impl From<deadpool_postgres::PoolError> for ReconcileError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        ReconcileError::Store(StoreError::Pool(e))
    }
}

impl From<rdkafka::error::KafkaError> for ReconcileError {
    fn from(e: rdkafka::error::KafkaError) -> Self {
        ReconcileError::Source(SourceError::Kafka(e))
    }
}

/// One CRM as reconciliation sees it: a cheap id listing, a check that ids are really gone, and
/// re-reads of full records emitted as ordinary events.
pub trait Lister: Send + Sync {
    /// The CRM (`crm` of its events and rows).
    fn crm(&self) -> &'static str;
    /// The entities to reconcile, as named in the raw topics.
    fn entities(&self) -> Vec<String>;
    /// How the listing orders ids.
    fn order(&self) -> IdOrder;
    /// Requests sent to the CRM so far.
    fn requests(&self) -> u64;
    /// The next page of `(id, version, deleted)` after `after` (exclusive), in id order; empty at
    /// the end. Deleted (soft-deleted, archived) records are included. `through` (inclusive) is
    /// the end of the range being listed: a lister may stop there (the engine drops what lies
    /// past it either way).
    fn list<'a>(
        &'a self,
        entity: &'a str,
        after: Option<&'a str>,
        through: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Listed>, ReconcileError>>;
    /// Splits the entity's id space into about `n` consecutive ranges to list concurrently (the
    /// last one without an end). The default, for a CRM whose id span is not cheap to learn, is one
    /// range of everything.
    fn split<'a>(
        &'a self,
        entity: &'a str,
        n: usize,
    ) -> BoxFuture<'a, Result<Vec<IdRange>, ReconcileError>> {
        let _ = (entity, n);
        Box::pin(async { Ok(vec![IdRange::all()]) })
    }
    /// Of `ids` (not in the listing), those the CRM still returns when asked by id: they are not
    /// gone (a listing that raced a change), so no tombstone is sent for them.
    fn still_present<'a>(
        &'a self,
        entity: &'a str,
        ids: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<String>, ReconcileError>>;
    /// Re-reads the records of `findings` (missing or stale) and emits them through `emitter`,
    /// tagged with [`H_OP`] and [`H_REASON`]; returns the deliveries to await.
    fn reread<'a>(
        &'a self,
        emitter: &'a Emitter,
        findings: &'a [Finding],
    ) -> BoxFuture<'a, Result<Vec<Delivery>, ReconcileError>>;
    /// The raw JSON of a tombstone for `id` (the CRM's own id field).
    fn tombstone_raw(&self, id: &str) -> String;
}

/// What to reconcile.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Only this CRM.
    pub crm: Option<String>,
    /// Only this entity (as named in the raw topics, case-insensitive).
    pub entity: Option<String>,
    /// Compare and report, send and record nothing.
    pub dry_run: bool,
}

/// What one entity's reconcile found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EntityReport {
    pub crm: String,
    pub entity: String,
    /// Records the CRM listed (this run, resumed parts included).
    pub listed: u64,
    pub missing: u64,
    pub stale: u64,
    pub gone: u64,
    pub newer_in_pg: u64,
    pub in_dlq: u64,
    /// Repair events sent and acknowledged (0 in a dry run).
    pub repaired: u64,
    /// CRM requests this run made.
    pub requests: u64,
    /// Whether this run continued one a kill interrupted.
    pub resumed: bool,
    pub dry_run: bool,
    pub duration_seconds: f64,
}

impl EntityReport {
    /// Adds one finding to the counts.
    pub fn count(&mut self, kind: Kind, n: u64) {
        match kind {
            Kind::Missing => self.missing += n,
            Kind::Stale => self.stale += n,
            Kind::Gone => self.gone += n,
            Kind::NewerInPg => self.newer_in_pg += n,
            Kind::InDlq => self.in_dlq += n,
        }
    }

    /// The count of one kind.
    pub fn of(&self, kind: Kind) -> u64 {
        match kind {
            Kind::Missing => self.missing,
            Kind::Stale => self.stale,
            Kind::Gone => self.gone,
            Kind::NewerInPg => self.newer_in_pg,
            Kind::InDlq => self.in_dlq,
        }
    }
}

/// The listers of the configured CRMs that `opts.crm` selects, each with its share of the budget.
pub async fn listers(cfg: &Config, opts: &Options) -> Result<Vec<Box<dyn Lister>>, ReconcileError> {
    let wanted = |crm: &str| {
        opts.crm
            .as_deref()
            .is_none_or(|c| c.eq_ignore_ascii_case(crm))
    };
    let mut out: Vec<Box<dyn Lister>> = Vec::new();
    if cfg.bullhorn.enabled && wanted(bullhorn::CRM) {
        out.push(Box::new(bullhorn::BullhornLister::connect(cfg).await?));
    }
    if let Some(hs) = cfg
        .hubspot
        .as_ref()
        .filter(|_| (crate::sources::hubspot::KIND.configured)(cfg) && wanted(hubspot::CRM))
    {
        out.push(Box::new(hubspot::HubspotLister::new(cfg, hs)?));
    }
    if cfg.salesforce.enabled && wanted(salesforce::CRM) {
        out.push(Box::new(salesforce::SalesforceLister::new(cfg)?));
    }
    if let Some(crm) = &opts.crm {
        if out.is_empty() {
            return Err(ReconcileError::Config(format!(
                "cannot reconcile {crm:?}: reconciliation supports bullhorn, hubspot and salesforce, when configured"
            )));
        }
    }
    Ok(out)
}

/// Reconciles every selected CRM and entity once, holding the reconcile lock (fails with
/// [`ReconcileError::Busy`] when another process holds it).
pub async fn run(cfg: &Config, opts: &Options) -> Result<Vec<EntityReport>, ReconcileError> {
    crate::store::migrate(cfg).await?;
    let mut lock = runs::ReconcileLock::try_acquire(cfg)
        .await?
        .ok_or_else(|| ReconcileError::Busy(cfg.postgres.schema.clone()))?;
    let result = async {
        let listers = listers(cfg, opts).await?;
        engine::run_all(cfg, &mut lock, &listers, opts, &Default::default()).await
    }
    .await;
    lock.release().await;
    result
}

/// Renders reports as one line per entity.
pub fn render(reports: &[EntityReport]) -> String {
    let mut out = String::new();
    for r in reports {
        out.push_str(&format!(
            "{crm} {entity}: listed {listed}, missing {missing}, stale {stale}, gone {gone}, newer in postgres {newer}, in dlq {dlq}; {action} in {secs:.1} s, {requests} requests{resumed}\n",
            crm = r.crm,
            entity = r.entity,
            listed = r.listed,
            missing = r.missing,
            stale = r.stale,
            gone = r.gone,
            newer = r.newer_in_pg,
            dlq = r.in_dlq,
            action = if r.dry_run {
                "dry run, nothing sent".to_owned()
            } else {
                format!("{} repaired", r.repaired)
            },
            secs = r.duration_seconds,
            requests = r.requests,
            resumed = if r.resumed { " (resumed)" } else { "" },
        ));
    }
    if reports.is_empty() {
        out.push_str("nothing to reconcile (no CRM configured)\n");
    }
    out
}
