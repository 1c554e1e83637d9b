//! Bullhorn connector: the wire protocol of Bullhorn's REST API, both sides of it.
//!
//! - [`wire`]: serde types of every document the client and the simulator exchange (auth, list envelopes,
//!   errors, writes, event subscriptions). Both sides depend on them, so they cannot drift apart.
//! - [`client`]: the Bullhorn REST client (OAuth login, sessions, limits, retries, search/query/entity reads and
//!   event subscriptions) used by the pipeline's source.
//! - `sim` (feature `sim`): an in-memory Bullhorn REST simulator, run as `crmflow sim bullhorn` or started
//!   in-process by tests on port 0.

pub mod client;
#[cfg(test)]
mod proptests;
pub mod wire;

#[cfg(feature = "sim")]
pub mod sim;
