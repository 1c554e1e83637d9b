//! Client and simulator together over real TLS sockets: REST (auth flows, paging, windows, composite,
//! budget, errors), the Pub/Sub API, and the Python client simple-salesforce.

mod common;
mod pubsub;
mod python;
mod rest;
mod stream_faults;
