//! The demo's embedding service, in this process: the all-MiniLM-L6-v2 model (`crmflow ml
//! serve`'s code) when its directory is there, the bag-of-words ML simulator otherwise; and the
//! `[ml]` / `[embed]` settings that suit the one chosen.

use std::path::PathBuf;

use super::DemoArgs;
use crate::config::{Config, MlProtocol};
use crate::error::{Error, Result};

/// Starts the model server or the ML simulator on a free loopback port and points `[ml]` at it.
/// Returns the server and its name for the banner.
pub async fn start(
    cfg: &mut Config,
    args: &DemoArgs,
) -> Result<(crmflow_embedding::sim::SimHandle, &'static str)> {
    let model_dir = args
        .model_dir
        .clone()
        .or_else(|| cfg.ml.model_dir.as_ref().map(PathBuf::from))
        .filter(|dir| !args.ml_sim && crmflow_embedding::model::MiniLm::present(dir));
    let (ml, ml_name) = match model_dir {
        Some(dir) => {
            let serve = crmflow_embedding::model::ServeArgs::for_tests(dir);
            let model = crmflow_embedding::model::serve::load(&serve)
                .await
                .map_err(|e| Error::Other(format!("ML model: {e}")))?;
            cfg.ml.dim = model.dim();
            cfg.ml.model = "all-MiniLM-L6-v2".into();
            // CPU-bound: one batch computing and one on the wire keeps both cores busy
            // without queueing work behind the model (see README, Performance).
            cfg.embed.max_in_flight = cfg.embed.max_in_flight.min(2);
            cfg.embed.batch_size = cfg.embed.batch_size.min(64);
            // A batch of long texts (256 tokens each) takes seconds on a busy CPU; a timeout
            // would only resend it.
            cfg.ml.timeout_secs = cfg.ml.timeout_secs.max(300);
            let handle = crmflow_embedding::model::serve::start(&serve, model)
                .await
                .map_err(|e| Error::Other(format!("ML server: {e}")))?;
            (handle, "ML model all-MiniLM-L6-v2 (crmflow ml serve)")
        }
        None => {
            let handle =
                crmflow_embedding::sim::Simulator::start(crmflow_embedding::sim::SimArgs {
                    listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                    dim: cfg.ml.dim,
                    latency_ms: args.ml_latency_ms,
                    ..Default::default()
                })
                .await
                .map_err(|e| Error::Other(format!("ML simulator: {e}")))?;
            (handle, "ML simulator")
        }
    };
    cfg.ml.url = ml.base_url().to_string().trim_end_matches('/').to_owned();
    cfg.ml.protocol = MlProtocol::Tei;
    cfg.ml.api_key = None;
    Ok((ml, ml_name))
}
