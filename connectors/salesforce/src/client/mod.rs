//! Salesforce REST client: authentication, API budget, retries and the reads a sync needs.
//!
//! It knows Salesforce and nothing of the pipeline. A call on [`SalesforceClient`] (`api.rs`) first passes the
//! [`budget::Budget`] gate (which waits while the org's API usage is above the configured share), takes the
//! current session from [`auth`] (client credentials, JWT bearer, or a given token), sends the request and
//! classifies the answer into a [`ClientError`]. `INVALID_SESSION_ID` makes it authenticate again once and
//! resend; 503, timeouts and dropped connections are retried with jittered exponential backoff (every read
//! is idempotent); `REQUEST_LIMIT_EXCEEDED` closes the budget gate. Every answer's `Sforce-Limit-Info`
//! feeds the budget. Secrets are [`secrecy::SecretString`]s and never leave request bodies and headers.

pub mod api;
pub mod auth;
pub mod budget;
pub mod config;
pub mod error;

pub use api::SalesforceClient;
pub use auth::Session;
pub use budget::{Budget, BudgetState};
pub use config::{AuthConfig, ClientConfig};
pub use error::{AuthError, ClientError};
