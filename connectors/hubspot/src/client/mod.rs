//! HubSpot CRM v3 client: authentication, limits, retries and the read API a sync needs.
//!
//! It knows HubSpot and nothing of the pipeline. Data flows: a call on [`HubSpotClient`] (`api.rs`) waits for
//! the client-side limits ([`limits`]: a token bucket for the 10-second budget, a separate one for search's
//! per-second limit, a pause learned from `X-HubSpot-RateLimit-*` headers, a concurrency semaphore), asks
//! [`auth::TokenManager`] for a bearer token (a private-app token as is, or an OAuth access token refreshed
//! ahead of its expiry), sends the request and classifies the answer into a [`ClientError`];
//! [`retry::RetryPolicy`] alone decides what happens next (wait and resend, refresh the token once, or give up
//! with a typed error). Secrets are [`secrecy::SecretString`]s, sent only in headers and form bodies, never in
//! URLs, errors, logs or `Debug` output.

pub mod api;
pub mod auth;
pub mod config;
pub mod error;
pub mod limits;
pub mod retry;

pub use api::{HubSpotClient, ListParams};
pub use config::{Auth, ClientConfig};
pub use error::{AuthError, ClientError, RateLimitPolicy, RetryClass};
pub use limits::RateLimitSnapshot;
pub use retry::{Attempts, Decision, RetryPolicy};
