//! Integration tests against the real services (`scripts/services up`): PostgreSQL with
//! pgvector and a Kafka broker on loopback. One binary, so it compiles once.
//!
//! Every test makes its own topic prefix and Postgres schema, so tests run in parallel and can
//! be re-run against the same services.

mod common;
mod demo;
mod e2e;
mod embed;
mod fixtures;
mod foundation;
mod hostile;
mod hubspot;
mod ingest;
mod lineage;
mod mapping;
mod operate;
mod outage;
mod reconcile;
mod salesforce;
mod secure;
mod semantic;
mod soak;
mod sources;
mod stages;
mod traces;
