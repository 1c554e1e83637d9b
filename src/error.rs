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
            Error::Kafka(e) => e.rdkafka_error_code().is_some_and(kafka_code_is_transient),
            _ => false,
        }
    }
}

/// Broker answers that mean "not now" rather than "never": leadership moving (a broker
/// restart, a topic just created), a coordinator loading, the network. A consumer sees them as
/// `MessageConsumption` errors; they clear on their own, so the stage backs off and retries.
fn kafka_code_is_transient(code: rdkafka::types::RDKafkaErrorCode) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        code,
        C::NotLeaderForPartition
            | C::LeaderNotAvailable
            | C::UnknownTopicOrPartition
            | C::UnknownLeaderEpoch
            | C::FencedLeaderEpoch
            | C::NotCoordinator
            | C::CoordinatorNotAvailable
            | C::CoordinatorLoadInProgress
            | C::RebalanceInProgress
            | C::RequestTimedOut
            | C::NetworkException
            | C::BrokerTransportFailure
            | C::AllBrokersDown
            | C::OperationTimedOut
            | C::BrokerNotAvailable
            | C::ReplicaNotAvailable
            | C::NotEnoughReplicas
            | C::NotEnoughReplicasAfterAppend
            | C::KafkaStorageError
    )
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::error::KafkaError as K;
    use rdkafka::types::RDKafkaErrorCode as C;

    #[test]
    fn leadership_moves_are_retried_and_bad_requests_are_not() {
        let moved = Error::Kafka(K::MessageConsumption(C::NotLeaderForPartition));
        assert!(
            moved.is_retriable(),
            "a consumer seeing a leader move must back off, not stop"
        );
        assert!(Error::Kafka(K::MessageConsumption(C::CoordinatorLoadInProgress)).is_retriable());
        assert!(Error::Kafka(K::MessageConsumption(C::AllBrokersDown)).is_retriable());
        assert!(!Error::Kafka(K::MessageConsumption(C::TopicAuthorizationFailed)).is_retriable());
        assert!(!Error::Kafka(K::MessageConsumption(C::InvalidMessage)).is_retriable());
        assert!(!Error::Other("x".into()).is_retriable());
    }
}
