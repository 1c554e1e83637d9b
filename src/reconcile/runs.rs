//! Reconciliation's Postgres side: the lock that keeps one reconcile at a time per schema, the
//! `reconcile_runs` rows (progress per id range and results, V8 and V9), and the ordered reads of a
//! table's `(crm_id, source_version, deleted)` in one id range.

use std::collections::VecDeque;

use deadpool_postgres::Pool;
use serde::{Deserialize, Serialize};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Transaction};

use super::diff::{IdOrder, Kind, Stored};
use super::paging::IdRange;
use super::{EntityReport, ReconcileError};
use crate::config::Config;

/// Rows fetched per round trip of the ordered Postgres cursor.
const PG_CHUNK: i32 = 5_000;

/// The reconcile lock: a session advisory lock on a dedicated connection, so it dies with the
/// process (a killed reconcile never leaves it held).
pub struct ReconcileLock {
    client: Client,
    key: String,
}

impl ReconcileLock {
    /// Takes the lock of `cfg`'s schema, or `None` when another session holds it.
    pub async fn try_acquire(cfg: &Config) -> Result<Option<Self>, ReconcileError> {
        let client = crate::store::connect(cfg).await?;
        let key = format!("crmflow-reconcile:{}", cfg.postgres.schema);
        let got: bool = client
            .query_one("SELECT pg_try_advisory_lock(hashtext($1))", &[&key])
            .await?
            .get(0);
        Ok(got.then_some(Self { client, key }))
    }

    /// The lock's connection (the ordered reads run on it).
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Releases the lock (closing the connection would too).
    pub async fn release(self) {
        let _ = self
            .client
            .execute("SELECT pg_advisory_unlock(hashtext($1))", &[&self.key])
            .await;
    }
}

/// The canonical table of a CRM entity (`candidates` or `positions`).
pub fn table_of(entity: &str) -> Option<&'static str> {
    // A Salesforce custom object (`Position__c`) is named after its canonical entity.
    let entity = entity
        .strip_suffix("__c")
        .or_else(|| entity.strip_suffix("__C"))
        .unwrap_or(entity);
    match crate::lineage::canonical_entity(entity)? {
        "candidate" => Some("candidates"),
        "position" => Some("positions"),
        _ => None,
    }
}

/// `ORDER BY` of an id order.
fn order_sql(order: IdOrder) -> &'static str {
    match order {
        IdOrder::Numeric => "length(crm_id), crm_id COLLATE \"C\"",
        IdOrder::Text => "crm_id COLLATE \"C\"",
    }
}

/// `crm_id {op} $n` in an id order.
fn compare_sql(order: IdOrder, op: &str, n: usize) -> String {
    match order {
        IdOrder::Numeric => format!(
            "(length(crm_id), crm_id COLLATE \"C\") {op} (length(${n}), ${n} COLLATE \"C\")"
        ),
        IdOrder::Text => format!("crm_id COLLATE \"C\" {op} ${n} COLLATE \"C\""),
    }
}

/// One table's rows of one CRM in id order, read through a cursor (portal) in chunks, from after a
/// resume point through the end of an id range.
pub struct PgSide<'t> {
    tx: &'t Transaction<'t>,
    portal: tokio_postgres::Portal,
    order: IdOrder,
    buf: VecDeque<Stored>,
    done: bool,
}

impl<'t> PgSide<'t> {
    /// Opens the cursor over the rows of `table` written from `raw_topic` (one CRM entity: several
    /// entities of a CRM can share a table) for `crm`, ids after `after` through `through`.
    pub async fn open(
        tx: &'t Transaction<'t>,
        table: &str,
        crm: &str,
        raw_topic: &str,
        order: IdOrder,
        after: Option<&str>,
        through: Option<&str>,
    ) -> Result<Self, ReconcileError> {
        let mut sql = format!(
            "SELECT crm_id, source_version, deleted_at IS NOT NULL FROM {table} \
             WHERE crm = $1 AND raw_topic = $2"
        );
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&crm, &raw_topic];
        if let Some(after) = &after {
            params.push(after);
            sql.push_str(" AND ");
            sql.push_str(&compare_sql(order, ">", params.len()));
        }
        if let Some(through) = &through {
            params.push(through);
            sql.push_str(" AND ");
            sql.push_str(&compare_sql(order, "<=", params.len()));
        }
        sql.push_str(" ORDER BY ");
        sql.push_str(order_sql(order));
        let portal = tx.bind(sql.as_str(), &params).await?;
        Ok(Self {
            tx,
            portal,
            order,
            buf: VecDeque::new(),
            done: false,
        })
    }

    async fn fill(&mut self) -> Result<(), ReconcileError> {
        if self.done {
            return Ok(());
        }
        let rows = self.tx.query_portal(&self.portal, PG_CHUNK).await?;
        if rows.len() < PG_CHUNK as usize {
            self.done = true;
        }
        self.buf.extend(rows.into_iter().map(|r| Stored {
            id: r.get(0),
            version: r.get(1),
            deleted: r.get(2),
        }));
        Ok(())
    }

    /// Every row with an id up to `last` (inclusive); `None`: every remaining row, at most
    /// `PG_CHUNK` at a time (an empty answer is the end).
    pub async fn take_through(
        &mut self,
        last: Option<&str>,
    ) -> Result<Vec<Stored>, ReconcileError> {
        let mut out = Vec::new();
        match last {
            Some(last) => loop {
                while let Some(front) = self.buf.front() {
                    if self.order.cmp(&front.id, last) == std::cmp::Ordering::Greater {
                        return Ok(out);
                    }
                    out.extend(self.buf.pop_front());
                }
                if self.done {
                    return Ok(out);
                }
                self.fill().await?;
            },
            None => {
                if self.buf.is_empty() {
                    self.fill().await?;
                }
                out.extend(self.buf.drain(..));
                Ok(out)
            }
        }
    }
}

/// The current Postgres state of some ids (to re-check findings before repairing them, since the
/// cursor's snapshot is as old as the run).
pub async fn current(
    pool: &Pool,
    table: &str,
    crm: &str,
    raw_topic: &str,
    ids: &[String],
) -> Result<std::collections::HashMap<String, Stored>, ReconcileError> {
    if ids.is_empty() {
        return Ok(Default::default());
    }
    let client = pool.get().await?;
    let sql = format!(
        "SELECT crm_id, source_version, deleted_at IS NOT NULL FROM {table} \
         WHERE crm = $1 AND crm_id = ANY($2) AND raw_topic = $3"
    );
    Ok(client
        .query(sql.as_str(), &[&crm, &ids, &raw_topic])
        .await?
        .into_iter()
        .map(|r| {
            let s = Stored {
                id: r.get(0),
                version: r.get(1),
                deleted: r.get(2),
            };
            (s.id.clone(), s)
        })
        .collect())
}

/// What one id range of a run found so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub listed: u64,
    pub missing: u64,
    pub stale: u64,
    pub gone: u64,
    pub newer_in_pg: u64,
    pub in_dlq: u64,
    pub repaired: u64,
}

impl Counts {
    /// Adds one finding.
    pub fn count(&mut self, kind: Kind, n: u64) {
        match kind {
            Kind::Missing => self.missing += n,
            Kind::Stale => self.stale += n,
            Kind::Gone => self.gone += n,
            Kind::NewerInPg => self.newer_in_pg += n,
            Kind::InDlq => self.in_dlq += n,
        }
    }

    /// Adds these counts to a report's.
    pub fn add_to(&self, r: &mut EntityReport) {
        r.listed += self.listed;
        r.missing += self.missing;
        r.stale += self.stale;
        r.gone += self.gone;
        r.newer_in_pg += self.newer_in_pg;
        r.in_dlq += self.in_dlq;
        r.repaired += self.repaired;
    }
}

/// One id range of a run: its bounds, how far it got (everything through `last` compared and its
/// repairs acknowledged), whether it is done, and its counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeProgress {
    pub range: IdRange,
    pub last: Option<String>,
    pub done: bool,
    pub counts: Counts,
}

impl RangeProgress {
    /// A range not started.
    pub fn new(range: IdRange) -> Self {
        Self {
            range,
            last: None,
            done: false,
            counts: Counts::default(),
        }
    }

    /// Where its listing continues: after `last`, else after the range's start.
    pub fn resume_after(&self) -> Option<&str> {
        self.last.as_deref().or(self.range.after.as_deref())
    }
}

/// The report of a run whose ranges are `ranges` (the sums of their counts).
pub fn totals(base: &EntityReport, ranges: &[RangeProgress]) -> EntityReport {
    let mut r = EntityReport {
        listed: 0,
        missing: 0,
        stale: 0,
        gone: 0,
        newer_in_pg: 0,
        in_dlq: 0,
        repaired: 0,
        ..base.clone()
    };
    for p in ranges {
        p.counts.add_to(&mut r);
    }
    r
}

/// A run row: where it is and what it found so far.
#[derive(Debug, Clone)]
pub struct RunRow {
    pub run_id: i64,
    /// The ranges of a run that has them (none for a new run, or one started before V9).
    pub ranges: Option<Vec<RangeProgress>>,
    /// How far a run started before V9 got (one range from the start).
    pub last_id: Option<String>,
    pub report: EntityReport,
}

/// Continues the interrupted run of `(crm, entity)` if there is one, else starts a new one.
pub async fn start(pool: &Pool, crm: &str, entity: &str) -> Result<RunRow, ReconcileError> {
    let client = pool.get().await?;
    let resumed = client
        .query_opt(
            "SELECT run_id, last_id, listed, missing, stale, gone, newer_in_pg, in_dlq, repaired, requests, \
             ranges::text FROM reconcile_runs WHERE crm = $1 AND entity = $2 AND NOT dry_run AND state = 'running' \
             ORDER BY run_id DESC LIMIT 1",
            &[&crm, &entity],
        )
        .await?;
    let report =
        |listed, missing, stale, gone, newer_in_pg, in_dlq, repaired, requests, resumed| {
            EntityReport {
                crm: crm.to_owned(),
                entity: entity.to_owned(),
                listed,
                missing,
                stale,
                gone,
                newer_in_pg,
                in_dlq,
                repaired,
                requests,
                resumed,
                dry_run: false,
                duration_seconds: 0.0,
            }
        };
    if let Some(r) = resumed {
        let n = |i: usize| r.get::<_, i64>(i).max(0) as u64;
        // Unreadable ranges (never written by this version) restart the run's listing.
        let ranges = r
            .get::<_, Option<String>>(10)
            .and_then(|t| serde_json::from_str::<Vec<RangeProgress>>(&t).ok());
        return Ok(RunRow {
            run_id: r.get(0),
            ranges,
            last_id: r.get(1),
            report: report(n(2), n(3), n(4), n(5), n(6), n(7), n(8), n(9), true),
        });
    }
    let run_id: i64 = client
        .query_one(
            "INSERT INTO reconcile_runs (crm, entity, dry_run, state) VALUES ($1, $2, false, 'running') \
             RETURNING run_id",
            &[&crm, &entity],
        )
        .await?
        .get(0);
    Ok(RunRow {
        run_id,
        ranges: None,
        last_id: None,
        report: report(0, 0, 0, 0, 0, 0, 0, 0, false),
    })
}

/// Records progress: each range's (everything through its `last` is compared and its repairs
/// acknowledged) and the run's totals.
pub async fn save(
    pool: &Pool,
    run_id: i64,
    ranges: &[RangeProgress],
    r: &EntityReport,
) -> Result<(), ReconcileError> {
    let client = pool.get().await?;
    let i = |v: u64| v as i64;
    let ranges = serde_json::to_string(ranges)
        .map_err(|e| ReconcileError::Config(format!("reconcile ranges: {e}")))?;
    client
        .execute(
            "UPDATE reconcile_runs SET ranges = $2::text::jsonb, listed = $3, missing = $4, stale = $5, \
             gone = $6, newer_in_pg = $7, in_dlq = $8, repaired = $9, requests = $10, updated_at = now() \
             WHERE run_id = $1",
            &[
                &run_id,
                &ranges,
                &i(r.listed),
                &i(r.missing),
                &i(r.stale),
                &i(r.gone),
                &i(r.newer_in_pg),
                &i(r.in_dlq),
                &i(r.repaired),
                &i(r.requests),
            ],
        )
        .await?;
    Ok(())
}

/// Marks a run finished (`done`) or `failed` with its error.
pub async fn finish(pool: &Pool, run_id: i64, error: Option<&str>) -> Result<(), ReconcileError> {
    let client = pool.get().await?;
    let state = if error.is_some() { "failed" } else { "done" };
    client
        .execute(
            "UPDATE reconcile_runs SET state = $2, error = $3, finished_at = now(), updated_at = now() \
             WHERE run_id = $1",
            &[&run_id, &state, &error],
        )
        .await?;
    Ok(())
}

/// The latest finished run of each `(crm, entity)`, for `crmflow status`.
#[derive(Debug, Clone, Serialize)]
pub struct LastRun {
    pub crm: String,
    pub entity: String,
    pub state: String,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    pub listed: i64,
    pub missing: i64,
    pub stale: i64,
    pub gone: i64,
    pub newer_in_pg: i64,
    pub in_dlq: i64,
    pub repaired: i64,
    pub error: Option<String>,
}

/// Reads the latest run of each entity (running ones included, so a run in progress shows).
pub async fn last_runs(
    client: &impl deadpool_postgres::GenericClient,
) -> Result<Vec<LastRun>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT DISTINCT ON (crm, entity) crm, entity, state, finished_at, listed, missing, stale, \
             gone, newer_in_pg, in_dlq, repaired, error FROM reconcile_runs WHERE NOT dry_run \
             ORDER BY crm, entity, run_id DESC",
            &[],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| LastRun {
            crm: r.get(0),
            entity: r.get(1),
            state: r.get(2),
            finished_at: r.get(3),
            listed: r.get(4),
            missing: r.get(5),
            stale: r.get(6),
            gone: r.get(7),
            newer_in_pg: r.get(8),
            in_dlq: r.get(9),
            repaired: r.get(10),
            error: r.get(11),
        })
        .collect())
}
