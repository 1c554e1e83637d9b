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

/// Jittered exponential backoff for stage-level retries: 100 ms doubling to `cap`.
pub fn backoff(attempt: u32, cap: Duration) -> Duration {
    let base = Duration::from_millis(100).saturating_mul(1u32 << attempt.min(16));
    let capped = base.min(cap);
    let jitter = rand::random::<f64>() * 0.5 + 0.75;
    capped.mul_f64(jitter)
}
