//! A source's progress in Postgres: its cursors (`source_cursors`, keyed by source and a key the source
//! chooses, as JSON documents whose shape the source owns — the Bullhorn poller stores
//! `{"date_last_modified":..,"id":..}`, the event reader `{"request_id":..,"state":..}`) and the phase of
//! each entity (`source_phases`: polling, snapshot with progress, streaming) that `crmflow status` shows.
//!
//! A cursor save is one upsert, issued only after Kafka acknowledged what it covers. Under a lease
//! ([`Fence`]) the save is conditional on the lease's epoch still being this holder's, and holds a share
//! lock on the lease row while it writes: a takeover waits for it, and a holder whose lease was taken
//! over (it was paused past its expiry, then resumed) writes nothing and gets
//! [`SourceError::LeaseLost`].

use deadpool_postgres::Pool;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::SourceError;

/// The lease a writer must still hold for its writes to count: holder name and epoch (the fencing
/// token; each takeover increments it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub holder: String,
    pub epoch: i64,
}

/// What an entity of a source is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Incremental polling (poll sources).
    Polling,
    /// Reading everything by poll before following events (push and event sources).
    Snapshot,
    /// Following events, after the snapshot.
    Streaming,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Polling => "polling",
            Phase::Snapshot => "snapshot",
            Phase::Streaming => "streaming",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Phase::Polling, Phase::Snapshot, Phase::Streaming]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// A stored phase: during a snapshot, how many records it has read of how many it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhaseState {
    pub phase: Phase,
    pub read: i64,
    pub total: Option<i64>,
}

/// Reads and writes the cursors and phases of one source.
#[derive(Clone)]
pub struct CursorStore {
    pool: Pool,
    source: String,
    fence: Option<Fence>,
}

const FENCED_CURSOR: &str = "WITH lease AS (
        SELECT 1 FROM source_leases
        WHERE source = $1 AND holder = $4 AND epoch = $5
        FOR SHARE)
    INSERT INTO source_cursors (source, entity, cursor, updated_at)
    SELECT $1, $2, $3, now() FROM lease
    ON CONFLICT (source, entity) DO UPDATE SET cursor = EXCLUDED.cursor, updated_at = now()";

const FENCED_PHASE: &str = "WITH lease AS (
        SELECT 1 FROM source_leases
        WHERE source = $1 AND holder = $6 AND epoch = $7
        FOR SHARE)
    INSERT INTO source_phases (source, entity, phase, snapshot_read, snapshot_total, updated_at)
    SELECT $1, $2, $3, $4, $5, now() FROM lease
    ON CONFLICT (source, entity) DO UPDATE SET phase = EXCLUDED.phase,
        snapshot_read = EXCLUDED.snapshot_read, snapshot_total = EXCLUDED.snapshot_total,
        updated_at = now()";

impl CursorStore {
    /// Unfenced: for a process known to be the only reader of `source`.
    pub fn new(pool: Pool, source: &str) -> Self {
        Self {
            pool,
            source: source.to_owned(),
            fence: None,
        }
    }

    /// The same store, writing only while `fence` is the source's current lease.
    pub fn fenced(mut self, fence: Fence) -> Self {
        self.fence = Some(fence);
        self
    }

    /// The source these cursors belong to.
    pub fn source(&self) -> &str {
        &self.source
    }

    fn lost(&self) -> SourceError {
        SourceError::LeaseLost {
            source_name: self.source.clone(),
        }
    }

    /// The stored cursor of `key`, if any.
    pub async fn load<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SourceError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT cursor FROM source_cursors WHERE source = $1 AND entity = $2",
                &[&self.source, &key],
            )
            .await?;
        Ok(row
            .map(|r| r.get::<_, serde_json::Value>(0))
            .and_then(|v| serde_json::from_value(v).ok()))
    }

    /// Stores the cursor of `key` (fenced: only while the lease is still this holder's).
    pub async fn save<T: Serialize>(&self, key: &str, value: &T) -> Result<(), SourceError> {
        let json = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
        let client = self.pool.get().await?;
        match &self.fence {
            None => {
                client
                    .execute(
                        "INSERT INTO source_cursors (source, entity, cursor, updated_at) VALUES ($1, $2, $3, now()) \
                         ON CONFLICT (source, entity) DO UPDATE SET cursor = EXCLUDED.cursor, updated_at = now()",
                        &[&self.source, &key, &json],
                    )
                    .await?;
            }
            Some(f) => {
                let n = client
                    .execute(
                        FENCED_CURSOR,
                        &[&self.source, &key, &json, &f.holder, &f.epoch],
                    )
                    .await?;
                if n == 0 {
                    return Err(self.lost());
                }
            }
        }
        Ok(())
    }

    /// Waits until Kafka acknowledged every one of `deliveries` (the events the cursor covers), then
    /// stores the cursor of `key`; nothing is saved if a delivery failed.
    pub async fn save_acked<T: Serialize>(
        &self,
        deliveries: Vec<crate::kafka::Delivery>,
        key: &str,
        value: &T,
    ) -> Result<usize, SourceError> {
        let n = super::emit::acked(deliveries).await?;
        self.save(key, value).await?;
        Ok(n)
    }

    /// The stored phase of `entity`, if any.
    pub async fn phase(&self, entity: &str) -> Result<Option<PhaseState>, SourceError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT phase, snapshot_read, snapshot_total FROM source_phases
                 WHERE source = $1 AND entity = $2",
                &[&self.source, &entity],
            )
            .await?;
        Ok(row.and_then(|r| {
            Some(PhaseState {
                phase: Phase::parse(r.get(0))?,
                read: r.get(1),
                total: r.get(2),
            })
        }))
    }

    /// Records the phase of `entity` (fenced like a cursor save).
    pub async fn set_phase(&self, entity: &str, state: PhaseState) -> Result<(), SourceError> {
        let client = self.pool.get().await?;
        let phase = state.phase.as_str();
        match &self.fence {
            None => {
                client
                    .execute(
                        "INSERT INTO source_phases (source, entity, phase, snapshot_read, snapshot_total, updated_at)
                         VALUES ($1, $2, $3, $4, $5, now())
                         ON CONFLICT (source, entity) DO UPDATE SET phase = EXCLUDED.phase,
                             snapshot_read = EXCLUDED.snapshot_read,
                             snapshot_total = EXCLUDED.snapshot_total, updated_at = now()",
                        &[&self.source, &entity, &phase, &state.read, &state.total],
                    )
                    .await?;
            }
            Some(f) => {
                let n = client
                    .execute(
                        FENCED_PHASE,
                        &[
                            &self.source,
                            &entity,
                            &phase,
                            &state.read,
                            &state.total,
                            &f.holder,
                            &f.epoch,
                        ],
                    )
                    .await?;
                if n == 0 {
                    return Err(self.lost());
                }
            }
        }
        Ok(())
    }
}
