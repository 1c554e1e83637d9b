//! ML service simulator (feature `sim`): a local stand-in for text-embeddings-inference and OpenAI-compatible
//! embedding servers, for tests, the demo and benchmarks.
//!
//! [`SimArgs`] are the CLI flags of `crmflow sim ml`; [`Simulator::start`] serves them on the current tokio
//! runtime and returns a [`SimHandle`] through which tests read [`SimStats`] and change [`Faults`] while it runs
//! (the same is reachable over HTTP under `/sim/...`). Vectors come from [`vectors::embed_text`], a hashed bag
//! of words in which similar texts get similar vectors.

mod args;
mod server;
mod state;
pub mod vectors;

pub use args::SimArgs;
pub use server::{run, Embedder, SimError, SimHandle, Simulator};
pub use state::{Faults, SimStats};
