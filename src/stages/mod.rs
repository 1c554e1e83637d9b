//! Stages and the `run` command that starts them.
//!
//! A stage is: get a batch > apply operators > send rejects to the DLQ > write > commit the
//! checkpoint; never a checkpoint before the write it covers is durable. Each stage runs as one
//! task; `run` starts the listed ones and stops them together on SIGINT/SIGTERM (or, in
//! one-shot mode, when every one of them has caught up and returned).

pub mod embed;
pub mod matching;
pub mod normalize;
pub mod offsets;
pub mod progress;
pub mod replay;
mod rows;
pub mod sink;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::{Error, Result};

/// What every stage gets.
#[derive(Clone)]
pub struct StageCtx {
    /// The effective configuration.
    pub cfg: Arc<Config>,
    /// Cancelled on shutdown; stages finish the batch in hand (or drop it uncommitted) and return.
    pub shutdown: CancellationToken,
    /// One-shot mode: return once the inputs are consumed to their end and written.
    pub until_caught_up: bool,
    /// Which stages of this run have finished (one-shot mode waits for upstream stages).
    pub finished: progress::Finished,
}

/// A stage name as given to `--stages`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StageName {
    Ingest,
    Normalize,
    Sink,
    Embed,
    Match,
}

impl StageName {
    pub const ALL: [StageName; 5] = [
        StageName::Ingest,
        StageName::Normalize,
        StageName::Sink,
        StageName::Embed,
        StageName::Match,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StageName::Ingest => "ingest",
            StageName::Normalize => "normalize",
            StageName::Sink => "sink",
            StageName::Embed => "embed",
            StageName::Match => "match",
        }
    }
}

impl std::str::FromStr for StageName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        StageName::ALL
            .into_iter()
            .find(|n| n.as_str() == s.trim())
            .ok_or_else(|| {
                format!("unknown stage {s:?}; stages are ingest, normalize, sink, embed, match")
            })
    }
}

/// Runs one stage to completion (one-shot mode) or until shutdown.
async fn run_stage(name: StageName, ctx: StageCtx) -> Result<()> {
    match name {
        StageName::Ingest => crate::sources::run(ctx).await,
        StageName::Normalize => normalize::run(ctx).await,
        StageName::Sink => sink::run(ctx).await,
        StageName::Embed => embed::run(ctx).await,
        StageName::Match => matching::run(ctx).await,
    }
}

/// Starts `stages` and waits for them. The first stage that fails stops the others.
pub async fn run(cfg: Config, stages: &[StageName], until_caught_up: bool) -> Result<()> {
    let ctx = StageCtx {
        cfg: Arc::new(cfg),
        shutdown: CancellationToken::new(),
        until_caught_up,
        finished: progress::Finished::new(stages),
    };
    crate::store::migrate(&ctx.cfg).await?;
    crate::kafka::ensure_topics(&ctx.cfg.kafka, &crate::pipeline::topic_specs(&ctx.cfg)).await?;
    crate::observe::install();
    crate::observe::server::serve(ctx.cfg.clone()).await?;
    for &name in stages {
        crate::observe::stage_started(name.as_str());
    }
    // Observation stops after the stages (so the last heartbeat carries the final counts).
    let observing = CancellationToken::new();
    let displaying = CancellationToken::new();
    // One-shot runs are watched closely: their lag and ETA are what the operator looks at.
    let refresh = Duration::from_secs(ctx.cfg.metrics.refresh_secs.max(1));
    let refresh = if until_caught_up {
        refresh.min(Duration::from_secs(2))
    } else {
        refresh
    };
    let watcher = tokio::spawn(crate::observe::watch::run(
        ctx.cfg.clone(),
        stages.to_vec(),
        refresh,
        observing.clone(),
    ));
    let display = until_caught_up.then(|| {
        tokio::spawn(crate::observe::display::run(
            stages.to_vec(),
            crate::observe::display::Mode::detect(),
            Duration::from_secs(ctx.cfg.metrics.progress_log_secs.max(1)),
            displaying.clone(),
        ))
    });

    let signals = {
        let shutdown = ctx.shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown requested");
            shutdown.cancel();
        })
    };
    let mut set = tokio::task::JoinSet::new();
    for &name in stages {
        let ctx = ctx.clone();
        set.spawn(async move {
            let result = run_stage(name, ctx.clone()).await;
            ctx.finished.mark(name);
            (name, result)
        });
    }
    let mut first_error = None;
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((name, Ok(()))) => tracing::info!(stage = name.as_str(), "stage finished"),
            Ok((name, Err(error))) => {
                tracing::error!(stage = name.as_str(), %error, "stage failed");
                crate::observe::error_seen(name.as_str(), &error);
                ctx.shutdown.cancel();
                first_error.get_or_insert(error);
            }
            Err(join) => {
                ctx.shutdown.cancel();
                first_error.get_or_insert(Error::Other(format!("stage panicked: {join}")));
            }
        }
    }
    signals.abort();
    observing.cancel();
    let _ = watcher.await;
    // The display's last lines come after the watcher's last measurement.
    displaying.cancel();
    if let Some(d) = display {
        let _ = d.await;
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Resolves on SIGINT or SIGTERM only. A signal listener that cannot be set up (or whose
/// driver went away, as happens when several runtimes share a test process) must never be
/// mistaken for a shutdown request: it waits forever instead.
async fn wait_for_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                if s.recv().await.is_none() {
                    std::future::pending::<()>().await;
                }
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Jittered exponential backoff for stage-level retries: 100 ms doubling to `cap`.
pub fn backoff(attempt: u32, cap: Duration) -> Duration {
    let base = Duration::from_millis(100).saturating_mul(1u32 << attempt.min(16));
    let capped = base.min(cap);
    let jitter = rand::random::<f64>() * 0.5 + 0.75;
    capped.mul_f64(jitter)
}
