//! Bullhorn REST client: authentication, sessions, retries and the read/event API the pipeline needs.
//!
//! It knows Bullhorn and nothing of the pipeline. Data flows: a call on [`BullhornClient`] (`api.rs`) takes a
//! request-per-minute permit and a concurrency permit, asks [`session`] for a live session (which logs in, or
//! refreshes ahead of expiry, through [`auth`]), sends the request and classifies the answer into a
//! [`ClientError`]; [`retry::RetryPolicy`] alone decides what happens next (wait and resend, re-authenticate
//! once, or give up with a typed error). Secrets are [`secrecy::SecretString`]s and travel only in request
//! bodies and headers, never in URLs, so no error, log line or `Debug` output can carry them.

pub mod api;
pub mod auth;
pub mod config;
pub mod error;
pub mod retry;
pub mod session;

pub use api::BullhornClient;
pub use config::{ClientConfig, Credentials};
pub use error::{AuthError, ClientError};
pub use retry::{Attempts, Decision, RetryPolicy};
