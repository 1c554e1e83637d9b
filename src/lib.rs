//! crmflow: change-data-capture from CRMs into PostgreSQL and pgvector, through Kafka.
//!
//! Data flows `sources` -> Kafka `crm.raw.*` -> normalize -> `crm.canonical.*` -> sink / embed.
//! Module map:
//! - [`config`]: defaults < TOML file < environment, secrets redacted.
//! - [`model`]: the raw `ChangeEvent` and the canonical `Candidate` / `Position`.
//! - [`codec`]: Avro single-object encoding of those types.
//! - [`kafka`]: producer with backpressure, consumers with manual offsets, topics, traceparent.
//! - [`operators`]: pure transform and validation operators of the normalize stage.
//! - [`dlq`]: dead-letter records and their headers.
//! - [`ingress`]: the HubSpot webhook receiver (`--stages ingress`): signed POSTs > batch read >
//!   raw topics, answered 2xx only after Kafka acknowledged.
//! - [`sources`]: CRM readers into the raw topics (Bullhorn poller and event reader), cursors in Postgres.
//! - [`store`]: Postgres pool and migrations.
//! - [`telemetry`]: structured logs and the optional OTLP exporter.
//! - [`pipeline`]: the topics of a deployment.
//! - [`runtime`]: the run context below sources and stages: `RunCtx`, stage names, backoff,
//!   one-shot progress and lag, stage offsets in Postgres.
//! - [`stages`]: normalize, sink, embed, match, replay; [`error`]: the stage-level error.
//! - [`run`]: `crmflow run`, which starts sources and stages over one `RunCtx`.
//! - [`observe`]: metrics, `/healthz` and `/readyz`, heartbeats, progress display.
//! - [`status`]: lag, sources and dead letters as `crmflow status` shows them.
//! - [`demo`]: `crmflow demo`, the whole pipeline with both simulators in process.
//! - [`lineage`]: `crmflow lineage`, where a row came from, read from what is stored.
//! - [`reconcile`]: `crmflow reconcile` and its scheduled mode: CRM listings compared with
//!   Postgres, repairs sent through the raw topics.

pub mod codec;
pub mod config;
pub mod demo;
pub mod dlq;
pub mod error;
pub mod ingress;
pub mod kafka;
pub mod lineage;
pub mod mapping;
pub mod model;
pub mod observe;
pub mod operators;
pub mod pipeline;
pub mod reconcile;
pub mod run;
pub mod runtime;
pub mod soak;
pub mod sources;
pub mod stages;
pub mod status;
pub mod store;
pub mod telemetry;
