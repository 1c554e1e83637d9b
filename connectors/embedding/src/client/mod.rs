//! ML service client: a batch of texts in, one vector per text out.
//!
//! [`EmbeddingClient::embed`] sends a batch as one request and retries it, unchanged, on transient failures
//! (decided by [`EmbedError::is_retriable`]). [`EmbeddingClient::embed_isolating`] builds on it: when the
//! service rejects a batch because of its content (400/413/422, [`EmbedError::is_input_rejection`]) it bisects
//! the batch until the offending inputs stand alone, so one poison record costs only itself.

mod config;
mod error;
mod service;

pub use config::{
    ClientConfig, Protocol, DEFAULT_BACKOFF_INITIAL, DEFAULT_BACKOFF_MAX, DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
};
pub use error::EmbedError;
pub use service::{EmbeddingClient, MAX_RETRY_AFTER};
