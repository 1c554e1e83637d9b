//! `crmflow ml serve`: the simulator's HTTP server (TEI `POST /embed`, OpenAI `POST /v1/embeddings`, `/info`,
//! `/health`, `/v1/models`, `/sim/stats`) answering with [`MiniLm`] vectors instead of the bag of words.
//!
//! No fault is injected and no latency added; the poison marker is off. Requests are served concurrently, but
//! forward passes run one at a time on every core candle uses (`RAYON_NUM_THREADS`, default all), so throughput
//! is bound by the CPU, not by the number of requests in flight.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use super::{MiniLm, ModelError};
use crate::sim::{Embedder, SimArgs, SimError, SimHandle, Simulator};

/// Model name reported by `/info`, `/v1/models` and OpenAI responses by default.
pub const DEFAULT_MODEL_NAME: &str = "sentence-transformers/all-MiniLM-L6-v2";

/// Flags of `crmflow ml serve`.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port. The default is `ml.url`'s default.
    #[arg(long, default_value = "127.0.0.1:8282")]
    pub listen: SocketAddr,
    /// Directory holding model.safetensors, tokenizer.json and config.json (`scripts/model` prints it).
    /// Default: `ml.model_dir` from the configuration.
    #[arg(long)]
    pub model_dir: Option<PathBuf>,
    /// Model name reported to clients.
    #[arg(long, default_value = DEFAULT_MODEL_NAME)]
    pub model: String,
    /// Texts per forward pass (a request's texts are sorted by length and cut into such batches).
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Most inputs accepted in one request; larger requests get 413.
    #[arg(long, default_value_t = 512)]
    pub max_batch: usize,
}

impl ServeArgs {
    /// Defaults for tests: a free port, the given model directory.
    pub fn for_tests(model_dir: PathBuf) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            model_dir: Some(model_dir),
            model: DEFAULT_MODEL_NAME.into(),
            batch_size: 32,
            max_batch: 512,
        }
    }
}

/// Why `ml serve` could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Neither `--model-dir` nor `ml.model_dir` names the model.
    #[error("no model directory: pass --model-dir or set ml.model_dir (scripts/model fetches the model and prints it)")]
    NoModelDir,
    /// The model did not load.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The server did not start or failed.
    #[error(transparent)]
    Server(#[from] SimError),
}

impl ServeError {
    /// Only a server failure (a port in use, say) may heal by itself.
    pub fn is_retriable(&self) -> bool {
        matches!(self, ServeError::Server(SimError::Bind { .. }))
    }
}

impl Embedder for MiniLm {
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, String> {
        MiniLm::embed(self, texts).map_err(|e| e.to_string())
    }

    fn blocking(&self) -> bool {
        true
    }
}

/// Loads the model named by `args.model_dir` (on a blocking thread: it reads ~90 MB).
pub async fn load(args: &ServeArgs) -> Result<Arc<MiniLm>, ServeError> {
    let dir = args.model_dir.clone().ok_or(ServeError::NoModelDir)?;
    let batch_size = args.batch_size;
    let model = tokio::task::spawn_blocking(move || MiniLm::load(&dir, batch_size))
        .await
        .map_err(|join| SimError::Serve(std::io::Error::other(join)))??;
    Ok(Arc::new(model))
}

/// Serves `model` on `args.listen` on the current tokio runtime until the handle shuts it down.
pub async fn start(args: &ServeArgs, model: Arc<MiniLm>) -> Result<SimHandle, ServeError> {
    let sim_args = SimArgs {
        listen: args.listen,
        dim: model.dim(),
        latency_ms: 0,
        max_batch: args.max_batch,
        // Inputs are cut at the model's token limit; the character limit only bounds the work per text.
        max_input_chars: 1 << 20,
        poison_marker: String::new(),
        model: args.model.clone(),
        ..SimArgs::default()
    };
    Ok(Simulator::start_with(sim_args, model).await?)
}

/// Loads the model and serves it until ctrl-c: what `crmflow ml serve` runs.
pub async fn run(args: ServeArgs) -> Result<(), ServeError> {
    let model = load(&args).await?;
    let handle = start(&args, model.clone()).await?;
    println!(
        "crmflow ML server listening on {} (model {}, dim {}, max {} tokens, {} texts per forward pass, \
         TEI POST /embed, OpenAI POST /v1/embeddings)",
        handle.base_url(),
        args.model,
        model.dim(),
        model.max_seq_length(),
        args.batch_size,
    );
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| ServeError::Server(SimError::Serve(e)))?;
    println!("shutting down");
    Ok(handle.shutdown().await?)
}
