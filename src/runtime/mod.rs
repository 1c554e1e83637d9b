//! The run context that sources and stages share, below both: the configuration, the shutdown
//! signal, one-shot mode and which parts of a run have finished ([`RunCtx`]); the names of the
//! stages ([`StageName`]); the retry backoff; one-shot progress and lag ([`progress`]); and the
//! stage positions kept in Postgres ([`offsets`]). Nothing here imports a source or a stage.

pub mod offsets;
pub mod progress;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// What every source and stage gets.
#[derive(Clone)]
pub struct RunCtx {
    /// The effective configuration.
    pub cfg: Arc<Config>,
    /// Cancelled on shutdown; stages finish the batch in hand (or drop it uncommitted) and return.
    pub shutdown: CancellationToken,
    /// One-shot mode: return once the inputs are consumed to their end and written.
    pub until_caught_up: bool,
    /// Which stages of this run have finished (one-shot mode waits for upstream stages).
    pub finished: progress::Finished,
    /// The sources ingest reads (`--sources`); `None`: every configured source.
    pub sources: Option<Vec<String>>,
}

/// A stage name as given to `--stages`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StageName {
    Ingest,
    Normalize,
    Sink,
    Embed,
    Match,
    Ingress,
}

impl StageName {
    /// The stages a `run` without `--stages` starts (the webhook ingress is opted into).
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
            StageName::Ingress => "ingress",
        }
    }
}

impl std::str::FromStr for StageName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        StageName::ALL
            .into_iter()
            .chain([StageName::Ingress])
            .find(|n| n.as_str() == s.trim())
            .ok_or_else(|| {
                format!(
                    "unknown stage {s:?}; stages are ingest, normalize, sink, embed, match, ingress"
                )
            })
    }
}

/// Runs `step` until it succeeds, fails with an error that is not retriable, or `shutdown` is
/// cancelled (then the last error is returned). For the housekeeping a stage does between
/// batches (lag, watermarks): right after a broker restart a partition may have no leader yet
/// (`NotLeaderForPartition`), which is worth a wait, not the end of the stage.
pub async fn retry_transient<T, F, Fut>(
    what: &str,
    shutdown: &CancellationToken,
    mut step: F,
) -> crate::error::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = crate::error::Result<T>>,
{
    let mut attempt = 0u32;
    loop {
        match step().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retriable() && !shutdown.is_cancelled() => {
                if attempt == 0 {
                    tracing::warn!(error = %e, "{what} failed; retrying");
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff(attempt, Duration::from_secs(5))) => {}
                    _ = shutdown.cancelled() => return Err(e),
                }
                attempt = attempt.saturating_add(1);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Jittered exponential backoff for stage-level retries: 100 ms doubling to `cap`.
pub fn backoff(attempt: u32, cap: Duration) -> Duration {
    let base = Duration::from_millis(100).saturating_mul(1u32 << attempt.min(16));
    let capped = base.min(cap);
    let jitter = rand::random::<f64>() * 0.5 + 0.75;
    capped.mul_f64(jitter)
}

#[cfg(test)]
mod retry_tests {
    use super::*;
    use crate::error::Error;
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};

    #[tokio::test]
    async fn transient_errors_are_waited_out_and_others_returned_at_once() {
        // Found by the soak: both embed instances ended on NotLeaderForPartition right after a
        // broker restart, while deciding on the bulk path.
        let shutdown = CancellationToken::new();
        let mut calls = 0;
        let got = retry_transient("lag", &shutdown, || {
            calls += 1;
            let n = calls;
            async move {
                if n < 3 {
                    Err(Error::Kafka(KafkaError::MetadataFetch(
                        RDKafkaErrorCode::NotLeaderForPartition,
                    )))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(got.unwrap(), 3);

        let mut calls = 0;
        let got: crate::error::Result<()> = retry_transient("lag", &shutdown, || {
            calls += 1;
            async { Err(Error::Other("bad".into())) }
        })
        .await;
        assert!(got.is_err());
        assert_eq!(calls, 1, "not retriable: returned at once");

        shutdown.cancel();
        let got: crate::error::Result<()> = retry_transient("lag", &shutdown, || async {
            Err(Error::Kafka(KafkaError::MetadataFetch(
                RDKafkaErrorCode::NotLeaderForPartition,
            )))
        })
        .await;
        assert!(got.is_err(), "shutdown ends the wait");
    }
}
