//! The client's error boundary: every way a HubSpot call can fail, and the one place that says which of them
//! are worth retrying ([`ClientError::retry_class`], used by [`super::retry::RetryPolicy`]).
//!
//! Messages never contain secrets: tokens travel in headers and form bodies only, and transport errors are
//! stored with their URL stripped.

use std::time::Duration;

/// Which HubSpot limit a 429 names (`policyName` of the body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitPolicy {
    /// The rolling 10-second burst limit: wait a little.
    TenSecondlyRolling,
    /// A per-second limit (search's own): wait a second.
    Secondly,
    /// The daily limit: nothing to gain by retrying before the day rolls over.
    Daily,
    /// Absent or unknown `policyName`.
    Unknown,
}

impl RateLimitPolicy {
    /// From a `policyName`.
    pub fn parse(name: Option<&str>) -> Self {
        match name {
            Some("TEN_SECONDLY_ROLLING") => Self::TenSecondlyRolling,
            Some("SECONDLY") => Self::Secondly,
            Some("DAILY") => Self::Daily,
            _ => Self::Unknown,
        }
    }
}

/// Why obtaining an access token failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The token endpoint refused the client id or secret (`BAD_CLIENT_ID` / `BAD_CLIENT_SECRET`).
    #[error("HubSpot rejected the OAuth client id or secret: {0}")]
    InvalidClient(String),
    /// The token endpoint refused the refresh token (`BAD_REFRESH_TOKEN`, revoked installation).
    #[error("HubSpot rejected the refresh token: {0}")]
    InvalidGrant(String),
    /// A token that was just issued or configured is refused by the API (wrong token, missing scopes).
    #[error("HubSpot rejects the access token: {0}")]
    Rejected(String),
}

/// Why a HubSpot call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// 401: the token is missing, invalid or expired (`category` tells which).
    #[error("{endpoint} refused the token (401 {category})")]
    Unauthorized {
        /// Endpoint label, e.g. `search/contacts`.
        endpoint: String,
        /// `INVALID_AUTHENTICATION`, `EXPIRED_AUTHENTICATION`, ...
        category: String,
    },
    /// 429.
    #[error("rate limited by {endpoint} (429 {policy:?})")]
    RateLimited {
        /// Endpoint label.
        endpoint: String,
        /// The limit hit.
        policy: RateLimitPolicy,
        /// `Retry-After`, when the answer had one.
        retry_after: Option<Duration>,
    },
    /// 5xx.
    #[error("server error {status} from {endpoint}: {message}")]
    Server {
        /// Endpoint label.
        endpoint: String,
        /// HTTP status.
        status: u16,
        /// `message` or the start of the body.
        message: String,
    },
    /// Any other non-success answer (400, 403, 404, ...), e.g. paging a search past 10,000 results.
    #[error("{endpoint} answered {status} {category}: {message}")]
    Api {
        /// Endpoint label.
        endpoint: String,
        /// HTTP status.
        status: u16,
        /// `category`, e.g. `VALIDATION_ERROR`, `OBJECT_NOT_FOUND` (empty when absent).
        category: String,
        /// `message` or the start of the body.
        message: String,
        /// `correlationId`, for HubSpot support.
        correlation_id: Option<String>,
    },
    /// No answer within the request timeout.
    #[error("timeout calling {endpoint}")]
    Timeout {
        /// Endpoint label.
        endpoint: String,
    },
    /// The connection could not be opened: the request was certainly not processed.
    #[error("cannot connect for {endpoint}: {message}")]
    Connect {
        /// Endpoint label.
        endpoint: String,
        /// Cause, without URL.
        message: String,
    },
    /// The connection broke after the request was sent.
    #[error("connection lost during {endpoint}: {message}")]
    Transport {
        /// Endpoint label.
        endpoint: String,
        /// Cause, without URL.
        message: String,
    },
    /// The answer was not the JSON document expected.
    #[error("cannot decode the answer of {endpoint}: {message}")]
    Decode {
        /// Endpoint label.
        endpoint: String,
        /// Parser message.
        message: String,
    },
    /// Obtaining a token failed.
    #[error("hubspot authentication failed: {0}")]
    Auth(#[from] AuthError),
    /// The retry budget ran out; `last` is the final failure.
    #[error("gave up after {attempts} attempts: {last}")]
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// The last error.
        last: Box<ClientError>,
    },
    /// A request the client refuses to send (e.g. more than 100 ids in a batch read, a page size over the
    /// configured maximum).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// Bad client settings.
    #[error("hubspot client configuration: {0}")]
    Config(String),
}

/// What kind of failure an error is, for the retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryClass {
    /// Get a new token, then resend once.
    Unauthorized,
    /// Wait (`Retry-After`, or the policy's wait for this limit) and resend; does not use up the attempt
    /// budget.
    RateLimited(RateLimitPolicy, Option<Duration>),
    /// Back off and resend. `maybe_processed`: the server may have acted on the request.
    Transient {
        /// Whether the request may have been processed.
        maybe_processed: bool,
    },
    /// Resending now cannot help (the daily limit is here: the caller may try again much later).
    Fatal,
}

impl ClientError {
    /// The retry classification; the single source of every retry decision.
    pub fn retry_class(&self) -> RetryClass {
        match self {
            ClientError::Unauthorized { .. } => RetryClass::Unauthorized,
            ClientError::RateLimited {
                policy: RateLimitPolicy::Daily,
                ..
            } => RetryClass::Fatal,
            ClientError::RateLimited {
                policy,
                retry_after,
                ..
            } => RetryClass::RateLimited(*policy, *retry_after),
            ClientError::Server { .. }
            | ClientError::Timeout { .. }
            | ClientError::Transport { .. } => RetryClass::Transient {
                maybe_processed: true,
            },
            ClientError::Connect { .. } => RetryClass::Transient {
                maybe_processed: false,
            },
            ClientError::Auth(_)
            | ClientError::Api { .. }
            | ClientError::Decode { .. }
            | ClientError::RetriesExhausted { .. }
            | ClientError::InvalidRequest(_)
            | ClientError::Config(_) => RetryClass::Fatal,
        }
    }

    /// Whether trying the same call again later can succeed. After the client's own retries ran out this
    /// answers for the last failure, so a poll loop with a longer horizon can try the step again. A DAILY 429
    /// is retriable in that sense (tomorrow), though the client itself never resends it: check
    /// [`ClientError::is_daily_limit`] to wait long.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::RetriesExhausted { last, .. } => last.is_retriable(),
            ClientError::RateLimited { .. } => true,
            e => e.retry_class() != RetryClass::Fatal,
        }
    }

    /// Whether the daily limit is spent.
    pub fn is_daily_limit(&self) -> bool {
        match self {
            ClientError::RateLimited { policy, .. } => *policy == RateLimitPolicy::Daily,
            ClientError::RetriesExhausted { last, .. } => last.is_daily_limit(),
            _ => false,
        }
    }

    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Unauthorized { .. } => Some(401),
            ClientError::RateLimited { .. } => Some(429),
            ClientError::Server { status, .. } | ClientError::Api { status, .. } => Some(*status),
            ClientError::RetriesExhausted { last, .. } => last.status(),
            _ => None,
        }
    }

    /// Classifies a reqwest failure; the URL is dropped from the message.
    pub(crate) fn from_reqwest(endpoint: &str, e: reqwest::Error) -> Self {
        let endpoint = endpoint.to_string();
        let is_timeout = e.is_timeout();
        let is_connect = e.is_connect();
        let message = error_chain(&e.without_url());
        if is_timeout {
            ClientError::Timeout { endpoint }
        } else if is_connect {
            ClientError::Connect { endpoint, message }
        } else {
            ClientError::Transport { endpoint, message }
        }
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep() -> String {
        "search/contacts".into()
    }

    #[test]
    fn classification_table() {
        let rl = |policy| ClientError::RateLimited {
            endpoint: ep(),
            policy,
            retry_after: None,
        };
        let cases: Vec<(ClientError, RetryClass, bool)> = vec![
            (
                ClientError::Unauthorized {
                    endpoint: ep(),
                    category: "EXPIRED_AUTHENTICATION".into(),
                },
                RetryClass::Unauthorized,
                true,
            ),
            (
                rl(RateLimitPolicy::TenSecondlyRolling),
                RetryClass::RateLimited(RateLimitPolicy::TenSecondlyRolling, None),
                true,
            ),
            (
                rl(RateLimitPolicy::Secondly),
                RetryClass::RateLimited(RateLimitPolicy::Secondly, None),
                true,
            ),
            (rl(RateLimitPolicy::Daily), RetryClass::Fatal, true),
            (
                ClientError::Server {
                    endpoint: ep(),
                    status: 502,
                    message: String::new(),
                },
                RetryClass::Transient {
                    maybe_processed: true,
                },
                true,
            ),
            (
                ClientError::Timeout { endpoint: ep() },
                RetryClass::Transient {
                    maybe_processed: true,
                },
                true,
            ),
            (
                ClientError::Connect {
                    endpoint: ep(),
                    message: String::new(),
                },
                RetryClass::Transient {
                    maybe_processed: false,
                },
                true,
            ),
            (
                ClientError::Api {
                    endpoint: ep(),
                    status: 400,
                    category: "VALIDATION_ERROR".into(),
                    message: String::new(),
                    correlation_id: None,
                },
                RetryClass::Fatal,
                false,
            ),
            (
                ClientError::Auth(AuthError::InvalidGrant("BAD_REFRESH_TOKEN".into())),
                RetryClass::Fatal,
                false,
            ),
            (
                ClientError::InvalidRequest("101 ids".into()),
                RetryClass::Fatal,
                false,
            ),
        ];
        for (e, class, retriable) in cases {
            assert_eq!(e.retry_class(), class, "{e}");
            assert_eq!(e.is_retriable(), retriable, "{e}");
        }
        assert!(rl(RateLimitPolicy::Daily).is_daily_limit());
        let exhausted = ClientError::RetriesExhausted {
            attempts: 6,
            last: Box::new(ClientError::Timeout { endpoint: ep() }),
        };
        assert_eq!(exhausted.retry_class(), RetryClass::Fatal);
        assert!(exhausted.is_retriable());
        assert_eq!(
            RateLimitPolicy::parse(Some("TEN_SECONDLY_ROLLING")),
            RateLimitPolicy::TenSecondlyRolling
        );
        assert_eq!(RateLimitPolicy::parse(None), RateLimitPolicy::Unknown);
    }
}
