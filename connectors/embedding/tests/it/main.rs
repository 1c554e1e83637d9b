//! Integration tests: the real client against the real simulator over loopback HTTP.
//!
//! One test binary (modules below) so it compiles once. Every test starts its own simulator on port 0 with
//! zero latency and a client with short timeouts and backoffs, so tests run in parallel and in seconds.

mod isolation;
mod retries;
mod roundtrip;
mod stats;

use std::time::Duration;

use crmflow_embedding::sim::{Faults, SimArgs, SimHandle, Simulator};
use crmflow_embedding::{ClientConfig, EmbeddingClient, Protocol};

/// A simulator with test defaults adjusted by `tweak`.
pub async fn start_sim(tweak: impl FnOnce(&mut SimArgs)) -> SimHandle {
    let mut args = SimArgs::for_tests();
    tweak(&mut args);
    Simulator::start(args).await.expect("simulator starts")
}

/// A client with fast retries: tests measure behaviour, not patience.
pub fn client_config(sim: &SimHandle, protocol: Protocol) -> ClientConfig {
    let mut config = ClientConfig::new(sim.base_url(), protocol, "test-model");
    config.timeout = Duration::from_secs(5);
    config.max_retries = 5;
    config.backoff_initial = Duration::from_millis(10);
    config.backoff_max = Duration::from_millis(50);
    config
}

pub fn client(sim: &SimHandle, protocol: Protocol) -> EmbeddingClient {
    EmbeddingClient::new(client_config(sim, protocol)).expect("client builds")
}

/// `n` distinct texts, each about a different pair of topics.
pub fn texts(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                "record {i}: senior engineer number {i} skilled in topic{i} and area{}",
                i * 7
            )
        })
        .collect()
}

/// Updates the simulator's fault plan in place.
pub fn set_faults(sim: &SimHandle, update: impl FnOnce(&mut Faults)) {
    let mut faults = sim.faults();
    update(&mut faults);
    sim.set_faults(faults);
}

pub const PROTOCOLS: [Protocol; 2] = [Protocol::Tei, Protocol::OpenAi];
