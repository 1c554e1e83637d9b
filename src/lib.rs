//! crmflow: change-data-capture from CRMs into PostgreSQL and pgvector, through Kafka.
//!
//! Data flows `sources` -> Kafka `crm.raw.*` -> normalize -> `crm.canonical.*` -> sink / embed.
//! Module map:
//! - [`config`]: defaults < TOML file < environment, secrets redacted.
//! - [`model`]: the raw `ChangeEvent` and the canonical `Candidate` / `Position`.
//! - [`codec`]: Avro single-object encoding of those types.
//! - [`kafka`]: producer with backpressure, consumers with manual offsets, topics, traceparent.
//! - [`store`]: Postgres pool and migrations.
//! - [`telemetry`]: structured logs and the optional OTLP exporter.
//! - [`pipeline`]: the topics (and stages) of a deployment.

pub mod codec;
pub mod config;
pub mod kafka;
pub mod model;
pub mod pipeline;
pub mod store;
pub mod telemetry;
