//! Integration tests of the HubSpot simulator: each test starts its own simulator on port 0 and talks to it
//! over HTTP (reqwest, a webhook receiver on another port, HubSpot's Python SDK). One binary, so it compiles
//! once.

mod api;
mod common;
mod python_sdk;
mod webhooks;
