//! Embedding connector: everything crmflow knows about the ML service's wire protocol, both sides of it.
//!
//! - [`wire`] holds the request and response bodies of the two protocols we speak: Hugging Face
//!   text-embeddings-inference (`POST /embed`) and the OpenAI-compatible API (`POST /v1/embeddings`).
//! - [`client`] sends a batch of texts and returns one vector per text. It owns the timeouts, the retry policy
//!   (429/5xx/timeouts, `Retry-After`, jittered exponential backoff; a retried batch stays one request) and the
//!   isolation of a poison input by bisecting a batch the service rejected.
//! - `model` (feature `model`) serves sentence-transformers/all-MiniLM-L6-v2 computed on the CPU behind the
//!   simulator's routes (`crmflow ml serve`).
//! - `sim` (feature `sim`) is a local stand-in for the ML service that serves both protocols with deterministic,
//!   similarity-preserving vectors, enforces the service's limits, injects faults and counts what it saw, so the
//!   embed stage can be tested and benchmarked without a GPU.
//!
//! The crate knows nothing of Kafka or Postgres: the embed stage in the `crmflow` crate adapts it.

pub mod client;
#[cfg(feature = "model")]
pub mod model;
#[cfg(feature = "sim")]
pub mod sim;
pub mod wire;

pub use client::{ClientConfig, EmbedError, EmbeddingClient, Protocol};
