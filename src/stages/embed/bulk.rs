//! The bulk path for large backlogs: load vectors without per-row HNSW inserts, build the index
//! once at the end.
//!
//! pgvector's HNSW insert is nearly all of the embed stage's write cost (a graph search per
//! row in one backend); one `CREATE INDEX` over the loaded rows costs a fraction of that and
//! runs on parallel maintenance workers. So when the backlog of a (model, entity) is large and
//! larger than what is stored for it (an initial sync, a new model, `embed backfill`), the
//! stage [`enter`]s the bulk path for it: in one transaction it records the (model, entity) in
//! `embed_bulk` and drops its partial HNSW index. Nothing else changes: the batches go through
//! the same guarded upserts, deletes (cascading to matches), content-hash skips and offsets in
//! the same transaction, so exactly-once effects hold as on the incremental path. Matching keeps
//! answering, by exact search over the stored vectors of that side; other models' indexes (the
//! old model's during a model change) are untouched.
//!
//! When the stage has caught up, [`finish`] builds the index on a dedicated connection with
//! `maintenance_work_mem` and `max_parallel_maintenance_workers` from the configuration, and
//! deletes the `embed_bulk` row in the same transaction: the index appears atomically, and
//! queries use it from that commit on. A crash at any point leaves the row; the next run keeps
//! loading without the index and builds it when caught up (an uncommitted build leaves nothing).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use deadpool_postgres::{GenericClient, Pool};

use super::store::{index_name, IndexParams};
use super::text::Entity;
use crate::config::Config;
use crate::error::Result;

/// Serialises index DDL between the stages (embed, match, backfill) and instances.
pub const CATALOG_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtext('crmflow-hnsw-index'))";

/// Why a bulk load started (stored in `embed_bulk.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The stage found a backlog past `embed.bulk_threshold` on an input topic.
    Backlog,
    /// `crmflow embed backfill`.
    Backfill,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Backlog => "backlog",
            Reason::Backfill => "backfill",
        }
    }
}

/// Whether a backlog of `backlog` records for a (model, entity) that has `stored` vectors
/// takes the bulk path: it must reach the threshold and outnumber what is stored, so a replay
/// over vectors that are mostly current (skipped by their content hash) keeps its index.
pub fn should_bulk(backlog: u64, stored: u64, threshold: u64) -> bool {
    threshold > 0 && backlog >= threshold && backlog > stored
}

/// The sides of `model` being bulk-loaded.
pub async fn active(client: &impl GenericClient, model: &str) -> Result<HashSet<Entity>> {
    let rows = client
        .query("SELECT entity FROM embed_bulk WHERE model = $1", &[&model])
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| Entity::parse(r.get(0)))
        .collect())
}

/// Vectors stored for (model, entity).
pub async fn stored(client: &impl GenericClient, model: &str, entity: Entity) -> Result<u64> {
    let n: i64 = client
        .query_one(
            "SELECT count(*) FROM embeddings WHERE model = $1 AND entity = $2",
            &[&model, &entity.as_str()],
        )
        .await?
        .get(0);
    Ok(n as u64)
}

/// Starts a bulk load of (model, entity): records it and drops its index, in one transaction.
/// Returns false when it was already in progress.
pub async fn enter(
    pool: &Pool,
    model: &str,
    entity: Entity,
    reason: Reason,
    backlog: u64,
) -> Result<bool> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute(CATALOG_LOCK, &[]).await?;
    let inserted = tx
        .execute(
            "INSERT INTO embed_bulk (model, entity, reason, backlog) VALUES ($1, $2, $3, $4)
             ON CONFLICT (model, entity) DO NOTHING",
            &[
                &model,
                &entity.as_str(),
                &reason.as_str(),
                &(backlog as i64),
            ],
        )
        .await?;
    for storage in [
        crate::config::VectorStorage::Vector,
        crate::config::VectorStorage::Halfvec,
    ] {
        tx.batch_execute(&format!(
            "DROP INDEX IF EXISTS {}",
            index_name(model, entity, storage)
        ))
        .await?;
    }
    tx.commit().await?;
    if inserted > 0 {
        tracing::info!(
            model,
            entity = entity.as_str(),
            backlog,
            reason = reason.as_str(),
            "bulk path: index dropped, loading without per-row HNSW inserts"
        );
    }
    Ok(inserted > 0)
}

/// One index built by [`finish`].
#[derive(Debug, Clone, PartialEq)]
pub struct Built {
    pub entity: Entity,
    pub vectors: u64,
    pub took: Duration,
}

/// Builds the index of every side of `model` being bulk-loaded and ends its bulk load, each in
/// one transaction (the index and the deleted `embed_bulk` row commit together). Writers of
/// that side wait on the build's lock meanwhile; readers (matching) do not.
pub async fn finish(pool: &Pool, cfg: &Config, model: &str) -> Result<Vec<Built>> {
    let params = IndexParams::from_config(cfg);
    let mut client = pool.get().await?;
    let sides = active(&client, model).await?;
    let mut built = Vec::new();
    for entity in [Entity::Candidate, Entity::Position] {
        if !sides.contains(&entity) {
            continue;
        }
        let started = Instant::now();
        let tx = client.transaction().await?;
        tx.execute(CATALOG_LOCK, &[]).await?;
        // Another instance may have finished it while we waited for the lock.
        let still = tx
            .execute(
                "DELETE FROM embed_bulk WHERE model = $1 AND entity = $2",
                &[&model, &entity.as_str()],
            )
            .await?;
        if still == 0 {
            tx.rollback().await?;
            continue;
        }
        tx.batch_execute(&format!(
            "SET LOCAL maintenance_work_mem = '{}MB'; SET LOCAL max_parallel_maintenance_workers = {}",
            cfg.embed.index_build_mem_mb.max(64),
            cfg.embed.index_build_workers,
        ))
        .await?;
        tx.batch_execute(&params.create_sql(model, entity)).await?;
        let vectors = stored(&tx, model, entity).await?;
        tx.commit().await?;
        let took = started.elapsed();
        tracing::info!(
            model,
            entity = entity.as_str(),
            vectors,
            build_seconds = took.as_secs_f64(),
            "bulk path: HNSW index built and in use"
        );
        built.push(Built {
            entity,
            vectors,
            took,
        });
    }
    Ok(built)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_needs_a_backlog_past_the_threshold_and_past_what_is_stored() {
        // (backlog, stored, threshold) -> bulk?
        let table = [
            (50_000, 0, 20_000, true),         // initial sync
            (200_000, 1_000, 20_000, true),    // new model, barely started
            (19_999, 0, 20_000, false),        // small backlog: incremental
            (200_000, 200_000, 20_000, false), // replay over current vectors: keep the index
            (200_000, 150_000, 20_000, true),  // more to load than stored
            (1_000_000, 0, 0, false),          // disabled
        ];
        for (backlog, stored, threshold, want) in table {
            assert_eq!(
                should_bulk(backlog, stored, threshold),
                want,
                "backlog {backlog}, stored {stored}, threshold {threshold}"
            );
        }
    }
}
