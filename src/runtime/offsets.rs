//! Stage positions kept in Postgres (`stage_offsets`) and the replay control row
//! (`stage_control`).
//!
//! A Kafka -> Postgres stage writes its next offsets in the same transaction as its rows, and the
//! consumer's rebalance callback reads them back through [`PgOffsets`], so the position and the
//! data can never disagree. `crmflow replay` rewinds the rows here and bumps the stage's
//! `replay_epoch`; running stages notice and seek.

use std::collections::HashMap;
use std::time::Duration;

use deadpool_postgres::GenericClient;
use deadpool_postgres::Pool;
use tokio::runtime::Handle;

use crate::error::Result;
use crate::kafka::OffsetLookup;

/// Next offset per (topic, partition).
pub type Positions = HashMap<(String, i32), i64>;

/// Reads a stage's stored positions during a rebalance.
pub struct PgOffsets {
    pool: Pool,
    stage: String,
    handle: Handle,
}

impl PgOffsets {
    pub fn new(pool: Pool, stage: String) -> Self {
        Self {
            pool,
            stage,
            handle: Handle::current(),
        }
    }
}

impl OffsetLookup for PgOffsets {
    fn lookup(&self, topic: &str, partition: i32) -> Option<i64> {
        // The rebalance callback runs on the consumer's polling thread, outside the async
        // runtime, so it can wait for Postgres with block_on. If Postgres is unreachable the
        // assignment must not silently start from the beginning: retry until it answers.
        self.handle.block_on(async {
            let mut attempt = 0;
            loop {
                match load_one(&self.pool, &self.stage, topic, partition).await {
                    Ok(v) => return v,
                    Err(error) => {
                        tracing::warn!(%error, topic, partition, attempt, "cannot read stored offset, retrying");
                        tokio::time::sleep(super::backoff(attempt, Duration::from_secs(5))).await;
                        attempt += 1;
                    }
                }
            }
        })
    }
}

async fn load_one(pool: &Pool, stage: &str, topic: &str, partition: i32) -> Result<Option<i64>> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT next_offset FROM stage_offsets WHERE stage = $1 AND topic = $2 AND partition = $3",
            &[&stage, &topic, &partition],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Every stored position of `stage`.
pub async fn load_all(client: &impl GenericClient, stage: &str) -> Result<Positions> {
    let rows = client
        .query(
            "SELECT topic, partition, next_offset FROM stage_offsets WHERE stage = $1",
            &[&stage],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ((r.get::<_, String>(0), r.get::<_, i32>(1)), r.get(2)))
        .collect())
}

/// Upserts positions (inside the caller's transaction).
pub async fn store(client: &impl GenericClient, stage: &str, positions: &Positions) -> Result<()> {
    if positions.is_empty() {
        return Ok(());
    }
    let mut topics = Vec::with_capacity(positions.len());
    let mut parts = Vec::with_capacity(positions.len());
    let mut offs = Vec::with_capacity(positions.len());
    for ((t, p), o) in positions {
        topics.push(t.as_str());
        parts.push(*p);
        offs.push(*o);
    }
    client
        .execute(
            "INSERT INTO stage_offsets (stage, topic, partition, next_offset, updated_at)
             SELECT $1, t, p, o, now() FROM unnest($2::text[], $3::int4[], $4::int8[]) AS u(t, p, o)
             ON CONFLICT (stage, topic, partition)
             DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()",
            &[&stage, &topics, &parts, &offs],
        )
        .await?;
    Ok(())
}

/// The stage's replay epoch (0 when it was never replayed).
pub async fn epoch(client: &impl GenericClient, stage: &str) -> Result<i64> {
    let row = client
        .query_opt(
            "SELECT replay_epoch FROM stage_control WHERE stage = $1",
            &[&stage],
        )
        .await?;
    Ok(row.map(|r| r.get(0)).unwrap_or(0))
}

/// The epoch, read with a share lock inside a write transaction: a replay (which takes the row
/// FOR UPDATE) either happened before and is seen, or waits until this write committed.
pub async fn epoch_for_share(client: &impl GenericClient, stage: &str) -> Result<i64> {
    let row = client
        .query_opt(
            "SELECT replay_epoch FROM stage_control WHERE stage = $1 FOR SHARE",
            &[&stage],
        )
        .await?;
    Ok(row.map(|r| r.get(0)).unwrap_or(0))
}
