//! The library's error type at stage level. Each boundary has its own enum (`CodecError`,
//! `StoreError`, `ConfigError`, Kafka's); this one gathers them where a stage gives up, and
//! carries the single retry decision for the stage loop (`is_retriable`).

use crate::codec::CodecError;
use crate::config::ConfigError;
use crate::store::StoreError;

/// Why a stage stopped or a step failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The ML service failed a whole batch (after the client's own retries).
    #[error("ml service: {0}")]
    Embed(#[from] crmflow_embedding::EmbedError),
    #[error("{0}")]
    Other(String),
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        Error::Store(StoreError::Pg(e))
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Error::Store(StoreError::Pool(e))
    }
}

impl Error {
    /// Whether the stage should back off and try the same work again.
    pub fn is_retriable(&self) -> bool {
        use rdkafka::error::KafkaError as K;
        match self {
            Error::Store(e) => e.is_retriable(),
            Error::Embed(e) => e.is_retriable(),
            Error::Kafka(K::MessageProduction(_) | K::Transaction(_) | K::Global(_)) => true,
            Error::Kafka(K::ConsumerCommit(_) | K::Flush(_) | K::MetadataFetch(_)) => true,
            _ => false,
        }
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
