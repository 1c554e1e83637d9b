//! Integration tests of the Bullhorn simulator: each test starts its own simulator on port 0 and talks to it
//! over HTTP with reqwest, exactly as the pipeline's client will. One binary (modules below) so it compiles
//! once.

mod auth;
mod common;
mod data;
mod events;
mod faults;
mod paging;
mod reads;
