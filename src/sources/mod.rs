//! Sources: read CRMs and write their changes to the raw topics (`crm.raw.<crm>.<entity>`) as Avro
//! `ChangeEvent`s, one per record version, keyed by the CRM record id.
//!
//! A source moves its cursor (kept in Postgres, `source_cursors`) only after Kafka acknowledged every event
//! before it, so a crash at any instant repeats work instead of losing it; repeats carry the same
//! deterministic `event_id` and are de-duplicated downstream. Modules: [`bullhorn`] (incremental poller and
//! event-subscription reader over `crmflow_bullhorn::client`), [`cursors`] (the cursor table), [`emit`]
//! (record > event > Kafka, with the de-duplication cache).

pub mod bullhorn;
pub mod cursors;
pub mod emit;
pub mod hubspot;

use crate::error::{Error, Result};
use crate::runtime::RunCtx;

/// Why a source stopped or a step failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Client(#[from] crmflow_bullhorn::client::ClientError),
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
    #[error("{0}")]
    Stuck(String),
}

impl SourceError {
    /// Whether the step can be tried again later (the cursor has not moved past it).
    pub fn is_retriable(&self) -> bool {
        match self {
            SourceError::Client(e) => e.is_retriable(),
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

/// The ingest stage: runs every configured source until shutdown (or, in one-shot mode, until caught up).
pub async fn run(ctx: RunCtx) -> Result<()> {
    bullhorn::run(ctx).await.map_err(|e| match e {
        SourceError::Kafka(k) => Error::Kafka(k),
        SourceError::Store(s) => Error::Store(s),
        SourceError::Codec(c) => Error::Codec(c),
        SourceError::Config(c) => Error::Config(c),
        other => Error::Other(other.to_string()),
    })
}
