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
    // Scheduled reconciliation (long-running runs with ingest only) takes its share of each CRM's
    // request budget; ingest keeps the rest, so together they stay under the CRM's limit.
    let reconcile = cfg
        .reconcile
        .interval()
        .filter(|_| stages.contains(&StageName::Ingest) && !until_caught_up)
        .map(|interval| (cfg.clone(), interval));
    if reconcile.is_some() {
        crate::reconcile::schedule::leave_ingest_the_rest(&mut cfg);
    }
    let ctx = RunCtx {
        cfg: Arc::new(cfg),
        shutdown: CancellationToken::new(),
        until_caught_up,
        finished: progress::Finished::new(stages),
        sources,
    };
    tokio::select! {
        r = prepare(&ctx.cfg) => r?,
        _ = wait_for_signal() => return Err(Error::Other(
            "stopped while waiting for Postgres and Kafka at start-up".into(),
        )),
    }
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
    let reconciling = reconcile.map(|(cfg, interval)| {
        tokio::spawn(crate::reconcile::schedule::run(
            cfg,
            interval,
            ctx.shutdown.clone(),
        ))
    });
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
    if let Some(r) = reconciling {
        ctx.shutdown.cancel();
        let _ = r.await;
    }
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

/// Migrations and topics, before any stage starts. A database or broker that is down or still
/// recovering (a Postgres replaying its WAL after a crash answers "not yet accepting
/// connections") is waited for, as during an outage mid-run, instead of ending the process.
async fn prepare(cfg: &Config) -> Result<()> {
    let mut attempt = 0u32;
    loop {
        let step = async {
            crate::store::migrate(cfg).await?;
            crate::kafka::ensure_topics(&cfg.kafka, &crate::pipeline::topic_specs(cfg)).await?;
            Ok::<(), Error>(())
        };
        match step.await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_retriable() => {
                if attempt == 0 {
                    tracing::warn!(error = %e, "start-up waits for Postgres and Kafka");
                }
                tokio::time::sleep(crate::runtime::backoff(attempt, Duration::from_secs(5))).await;
                attempt = attempt.saturating_add(1);
            }
            Err(e) => return Err(e),
        }
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
