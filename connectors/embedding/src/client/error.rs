//! The client's error type, and the one place that decides what is worth retrying and what is worth bisecting.
//!
//! A batch can fail in three ways that callers must tell apart: the service is struggling (retry the same batch
//! later: [`EmbedError::is_retriable`]), the service rejects the batch's content (split it to find the culprit:
//! [`EmbedError::is_input_rejection`]), or something is wrong that neither fixes (bad URL, auth, a response that
//! breaks the contract): stop and tell an operator.

use std::time::Duration;

/// Why a batch (or, after bisecting, one input) could not be embedded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EmbedError {
    /// The attempt took longer than the configured timeout.
    #[error("request timed out after {after:?}")]
    Timeout {
        /// The timeout that elapsed.
        after: Duration,
    },
    /// The connection could not be made or broke before a full response arrived.
    #[error("transport error: {message}")]
    Transport {
        /// reqwest's description (kept as text so the error stays `Clone`).
        message: String,
    },
    /// 429: the service asks us to slow down.
    #[error("rate limited (429), retry after {retry_after:?}: {body}")]
    RateLimited {
        /// Parsed `Retry-After`, if the service sent one.
        retry_after: Option<Duration>,
        /// Start of the response body.
        body: String,
    },
    /// 5xx: the service failed; most likely transient (overloaded, restarting, GPU out of memory).
    #[error("server error {status}: {body}")]
    Server {
        /// HTTP status.
        status: u16,
        /// Parsed `Retry-After` (503s often carry one).
        retry_after: Option<Duration>,
        /// Start of the response body.
        body: String,
    },
    /// 4xx other than 429: the service refuses this request as sent.
    #[error("rejected with {status}: {body}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// Start of the response body.
        body: String,
    },
    /// 2xx whose body is not the protocol's JSON.
    #[error("cannot decode response: {message}")]
    Decode {
        /// serde_json's description.
        message: String,
    },
    /// The service answered with a different number of vectors than inputs sent.
    #[error("sent {sent} inputs, received {received} vectors")]
    CountMismatch {
        /// Inputs in the request.
        sent: usize,
        /// Vectors in the response.
        received: usize,
    },
    /// Vectors of one response differ in dimension, or differ from the configured one.
    #[error("vector {index} has dimension {got}, expected {expected}")]
    DimensionMismatch {
        /// Position of the offending vector.
        index: usize,
        /// Dimension required (the configured one, else the first vector's).
        expected: usize,
        /// Dimension received.
        got: usize,
    },
    /// OpenAI `index` fields that are not a permutation of `0..n`.
    #[error("response index {index} is out of range or repeated")]
    BadIndex {
        /// The offending index.
        index: usize,
    },
    /// A vector holds NaN or infinity, which pgvector refuses.
    #[error("vector {index} contains a non-finite value")]
    NonFinite {
        /// Position of the offending vector.
        index: usize,
    },
    /// The HTTP client could not be built (TLS backend initialisation).
    #[error("cannot build HTTP client: {message}")]
    Build {
        /// reqwest's description.
        message: String,
    },
}

impl EmbedError {
    /// Whether sending the very same batch again may succeed: timeouts, broken connections, 429 and 5xx.
    /// Everything else would fail the same way again.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            EmbedError::Timeout { .. }
                | EmbedError::Transport { .. }
                | EmbedError::RateLimited { .. }
                | EmbedError::Server { .. }
        )
    }

    /// Whether the service rejected the batch because of what is in it, so a smaller batch may pass: 400 and 422
    /// (validation of one input), 413 (one huge input, or more inputs than the service's batch limit).
    /// 401/403/404 and friends are excluded: splitting cannot fix credentials or a wrong URL.
    pub fn is_input_rejection(&self) -> bool {
        matches!(
            self,
            EmbedError::Rejected {
                status: 400 | 413 | 422,
                ..
            }
        )
    }

    /// How long the service asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            EmbedError::RateLimited { retry_after, .. }
            | EmbedError::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// HTTP status of the response that caused the error, if there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            EmbedError::RateLimited { .. } => Some(429),
            EmbedError::Server { status, .. } | EmbedError::Rejected { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }

    /// Short stable class name, for the DLQ's `error.class` header and log fields.
    pub fn class(&self) -> &'static str {
        match self {
            EmbedError::Timeout { .. } => "timeout",
            EmbedError::Transport { .. } => "transport",
            EmbedError::RateLimited { .. } => "rate_limited",
            EmbedError::Server { .. } => "server",
            EmbedError::Rejected { .. } => "rejected",
            EmbedError::Decode { .. } => "decode",
            EmbedError::CountMismatch { .. } => "count_mismatch",
            EmbedError::DimensionMismatch { .. } => "dimension_mismatch",
            EmbedError::BadIndex { .. } => "bad_index",
            EmbedError::NonFinite { .. } => "non_finite",
            EmbedError::Build { .. } => "build",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(status: u16) -> EmbedError {
        EmbedError::Rejected {
            status,
            body: String::new(),
        }
    }

    #[test]
    fn retry_and_bisect_decisions() {
        let server = EmbedError::Server {
            status: 503,
            retry_after: None,
            body: String::new(),
        };
        let limited = EmbedError::RateLimited {
            retry_after: Some(Duration::from_secs(2)),
            body: String::new(),
        };
        // (error, retriable, input rejection)
        let cases = [
            (
                EmbedError::Timeout {
                    after: Duration::from_secs(1),
                },
                true,
                false,
            ),
            (
                EmbedError::Transport {
                    message: "reset".into(),
                },
                true,
                false,
            ),
            (limited.clone(), true, false),
            (server, true, false),
            (rejected(400), false, true),
            (rejected(413), false, true),
            (rejected(422), false, true),
            (rejected(401), false, false),
            (rejected(404), false, false),
            (
                EmbedError::Decode {
                    message: "x".into(),
                },
                false,
                false,
            ),
            (
                EmbedError::CountMismatch {
                    sent: 2,
                    received: 1,
                },
                false,
                false,
            ),
        ];
        for (error, retriable, rejection) in cases {
            assert_eq!(error.is_retriable(), retriable, "{error}");
            assert_eq!(error.is_input_rejection(), rejection, "{error}");
        }
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(2)));
        assert_eq!(limited.status(), Some(429));
    }
}
