//! Salesforce connector: the wire protocols crmflow speaks with a Salesforce org, both sides of them.
//!
//! - [`ids`]: 15/18-character record ids (the case-safe checksum suffix) and key prefixes.
//! - [`wire`]: serde types of the REST documents (query pages, updated/deleted windows, errors, OAuth tokens)
//!   and Salesforce's datetime format. Client and simulator share them, so they cannot drift apart.
//! - [`proto`]: the generated `eventbus.v1` Pub/Sub API (gRPC) messages, client and server traits.
//! - [`client`]: REST client (OAuth client credentials / JWT bearer / given token, re-authentication, API
//!   budget from `Sforce-Limit-Info`, query paging, updated/deleted, composite reads, describe).
//! - [`pubsub`]: Pub/Sub API subscriber (replay presets, flow control, Avro decoding with cached schemas).
//! - [`tls`]: the rustls client configuration both clients use (system-independent roots + a CA file).
//! - `sim` (feature `sim`): an in-memory Salesforce org over TLS (REST, SOAP login, OAuth, Pub/Sub), run as
//!   `crmflow sim salesforce` or started in-process by tests on port 0.

pub mod client;
pub mod ids;
#[cfg(test)]
mod proptests;
pub mod proto;
pub mod pubsub;
pub mod tls;
pub mod wire;

#[cfg(feature = "sim")]
pub mod sim;
