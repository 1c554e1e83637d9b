//! `crmflow run`: starts the listed stages (ingest runs the sources) and stops them together on
//! SIGINT/SIGTERM, or, in one-shot mode, when every one of them has caught up and returned. This
//! module sits above both [`crate::sources`] and [`crate::stages`]; neither imports it.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::runtime::{progress, RunCtx, StageName};
use crate::stages::{embed, matching, normalize, sink};

/// Runs one stage to completion (one-shot mode) or until shutdown.
async fn run_stage(name: StageName, ctx: RunCtx) -> Result<()> {
    match name {
        StageName::Ingest => crate::sources::run(ctx).await,
        StageName::Normalize => normalize::run(ctx).await,
        StageName::Sink => sink::run(ctx).await,
        StageName::Embed => embed::run(ctx).await,
        StageName::Match => matching::run(ctx).await,
        StageName::Ingress => crate::ingress::run(ctx).await,
    }
}

/// Starts `stages` and waits for them. The first stage that fails stops the others.
pub async fn run(cfg: Config, stages: &[StageName], until_caught_up: bool) -> Result<()> {
    run_sources(cfg, stages, None, until_caught_up).await
}

/// Same as [`run`], with ingest reading only the named `sources` (`--sources`; `None`: every
/// configured source). An unknown or unconfigured name is a one-line error before anything starts.
pub async fn run_sources(
    mut cfg: Config,
    stages: &[StageName],
    sources: Option<Vec<String>>,
    until_caught_up: bool,
) -> Result<()> {
    if stages.contains(&StageName::Ingest) || sources.is_some() {
        let selected = crate::sources::select(&cfg, sources.as_deref()).map_err(Error::Other)?;
        // A mapping the CRM cannot serve is refused before anything is read (the lines of
        // `crmflow mapping check`).
        let crms: Vec<&str> = selected.iter().map(|k| k.name).collect();
        crate::mapping::refuse_invalid(&cfg, &crms)
            .await
            .map_err(crate::config::ConfigError::Invalid)?;
    }
    // Custom fields: the sources read the mapped fields (idempotent after `Config::load`).
    crate::config::mapping::validate(&cfg.mapping).map_err(crate::config::ConfigError::Invalid)?;
    cfg.add_mapped_fields();
    let ctx = RunCtx {
        cfg: Arc::new(cfg),
        shutdown: CancellationToken::new(),
        until_caught_up,
        finished: progress::Finished::new(stages),
        sources,
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
