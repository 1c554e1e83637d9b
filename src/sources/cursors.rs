//! Source cursors in Postgres (`source_cursors`, keyed by source and entity), as JSON documents whose shape
//! each source owns: the Bullhorn poller stores `{"date_last_modified":..,"id":..}`, the event reader
//! `{"request_id":..,"state":..}`. A save is one upsert, issued only after Kafka acknowledged what it covers.

use deadpool_postgres::Pool;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::SourceError;

/// Reads and writes the cursors of one source.
#[derive(Clone)]
pub struct CursorStore {
    pool: Pool,
    source: String,
}

impl CursorStore {
    pub fn new(pool: Pool, source: &str) -> Self {
        Self {
            pool,
            source: source.to_owned(),
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

    /// Stores the cursor of `key`.
    pub async fn save<T: Serialize>(&self, key: &str, value: &T) -> Result<(), SourceError> {
        let json = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO source_cursors (source, entity, cursor, updated_at) VALUES ($1, $2, $3, now()) \
                 ON CONFLICT (source, entity) DO UPDATE SET cursor = EXCLUDED.cursor, updated_at = now()",
                &[&self.source, &key, &json],
            )
            .await?;
        Ok(())
    }
}
