//! Command-line flags of the simulator (`crmflow sim ml ...`), which double as its in-code configuration.
//!
//! Defaults live only in the clap attributes; [`SimArgs::default`] parses an empty command line so code and CLI
//! cannot drift apart.

use std::net::SocketAddr;

use clap::Parser;

use super::Faults;

/// How the simulated ML service behaves. Limits are fixed for the server's life; the fault flags only set the
/// initial [`Faults`], which `POST /sim/faults` or [`SimHandle::set_faults`](super::SimHandle::set_faults)
/// change later.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct SimArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8282")]
    pub listen: SocketAddr,
    /// Dimension of the vectors served.
    #[arg(long, default_value_t = 384)]
    pub dim: usize,
    /// Latency added to every successful embedding request, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub latency_ms: u64,
    /// Most inputs accepted in one request; larger batches get 413.
    #[arg(long, default_value_t = 512)]
    pub max_batch: usize,
    /// Longest accepted input, in characters; a longer one gets a validation error (422 TEI, 400 OpenAI).
    #[arg(long, default_value_t = 20_000)]
    pub max_input_chars: usize,
    /// Largest request body, in bytes; a larger one gets 413 like TEI's payload limit.
    #[arg(long, default_value_t = 32 * 1024 * 1024)]
    pub max_payload_bytes: usize,
    /// An input containing this substring is rejected with a validation error, so tests can plant a poison
    /// record in a batch. Empty disables it.
    #[arg(long, default_value = "__POISON__")]
    pub poison_marker: String,
    /// Model name reported by `/info`, `/v1/models` and OpenAI responses.
    #[arg(long, default_value = "crmflow-sim/hashed-bow")]
    pub model: String,
    /// Fraction (0..=1) of embedding requests failed at random with `--fail-status`.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Embedding requests allowed per second (fixed one-second window); beyond it 429 with `Retry-After: 1`.
    /// 0 means unlimited.
    #[arg(long, default_value_t = 0)]
    pub rate_limit_per_sec: u32,
    /// Fail the next N embedding requests with `--fail-status`.
    #[arg(long, default_value_t = 0)]
    pub fail_next: u32,
    /// Status of injected failures (429, 500, 503, ...).
    #[arg(long, default_value_t = 503)]
    pub fail_status: u16,
    /// `Retry-After` seconds sent with injected failures.
    #[arg(long)]
    pub retry_after_secs: Option<u64>,
    /// Hang the next N embedding requests (no answer for `--hang-secs`, or until shutdown).
    #[arg(long, default_value_t = 0)]
    pub hang_next: u32,
    /// How long a hung request hangs, in seconds: longer than any sane client timeout.
    #[arg(long, default_value_t = 300)]
    pub hang_secs: u64,
}

/// Wrapper that lets [`SimArgs::default`] reuse clap's defaults.
#[derive(Parser)]
struct DefaultsOnly {
    #[command(flatten)]
    args: SimArgs,
}

impl Default for SimArgs {
    /// The CLI defaults: port 8282, 384 dimensions, 100 ms latency, batches up to 512.
    fn default() -> Self {
        DefaultsOnly::parse_from(["sim"]).args
    }
}

impl SimArgs {
    /// Defaults for tests: a free port and no added latency, so a test run takes milliseconds.
    pub fn for_tests() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            latency_ms: 0,
            ..Self::default()
        }
    }

    /// The fault settings these flags start the server with.
    pub fn initial_faults(&self) -> Faults {
        Faults {
            fail_next: self.fail_next,
            fail_status: self.fail_status,
            retry_after_secs: self.retry_after_secs,
            hang_next: self.hang_next,
            hang_secs: self.hang_secs,
            error_rate: self.error_rate,
            latency_ms: self.latency_ms,
            rate_limit_per_sec: self.rate_limit_per_sec,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_cli() {
        let args = SimArgs::default();
        assert_eq!(args.listen.to_string(), "127.0.0.1:8282");
        assert_eq!(
            (
                args.dim,
                args.latency_ms,
                args.max_batch,
                args.max_input_chars
            ),
            (384, 100, 512, 20_000)
        );
        assert_eq!(args.poison_marker, "__POISON__");
        assert_eq!(SimArgs::for_tests().listen.port(), 0);
    }

    #[test]
    fn flags_parse() {
        let parsed = DefaultsOnly::parse_from([
            "sim",
            "--listen",
            "0.0.0.0:9000",
            "--dim",
            "8",
            "--latency-ms",
            "5",
            "--max-batch",
            "4",
            "--fail-next",
            "2",
            "--fail-status",
            "429",
            "--retry-after-secs",
            "1",
        ])
        .args;
        assert_eq!(parsed.listen.port(), 9000);
        assert_eq!((parsed.dim, parsed.latency_ms, parsed.max_batch), (8, 5, 4));
        let faults = parsed.initial_faults();
        assert_eq!(
            (
                faults.fail_next,
                faults.fail_status,
                faults.retry_after_secs
            ),
            (2, 429, Some(1))
        );
    }
}
