//! The client's error boundary: every way a Bullhorn call can fail, and the one place that says which of them
//! are worth retrying ([`ClientError::retry_class`], used by [`super::retry::RetryPolicy`]).
//!
//! Messages never contain secrets: the client keeps credentials and tokens out of URLs, and transport errors
//! are stored with their URL stripped.

use std::time::Duration;

/// Why authentication failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// `authorize` answered the login page with "Invalid credentials".
    #[error("Bullhorn rejected the API user name or password")]
    InvalidCredentials,
    /// `authorize` answered the "Invalid Client Id" page, or `token` said `invalid_client`.
    #[error("Bullhorn rejected the OAuth client id or secret")]
    InvalidClient,
    /// `token` said `invalid_grant` (used, expired or revoked code or refresh token).
    #[error("OAuth grant rejected: {0}")]
    InvalidGrant(String),
    /// `login` rejected the access token.
    #[error("REST login rejected the OAuth access token")]
    InvalidAccessToken,
    /// Anything else the flow did not expect (e.g. a consent page, a missing `code`).
    #[error("unexpected OAuth answer: {0}")]
    Unexpected(String),
}

/// Why a Bullhorn call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The session token was missing, bad or expired (401).
    #[error("session rejected by {endpoint} (401)")]
    InvalidSession {
        /// Endpoint label, e.g. `search/Candidate`.
        endpoint: String,
    },
    /// 429: Bullhorn asks to wait (1 s by its docs; `Retry-After` when sent).
    #[error("rate limited by {endpoint} (429)")]
    RateLimited {
        /// Endpoint label.
        endpoint: String,
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
        /// `errorMessage` or the start of the body.
        message: String,
    },
    /// Any other non-success answer (400, 403, 404, ...).
    #[error("{endpoint} answered {status}: {message}")]
    Api {
        /// Endpoint label.
        endpoint: String,
        /// HTTP status.
        status: u16,
        /// `errorMessageKey`, e.g. `errors.authentication.invalidRestToken`.
        key: Option<String>,
        /// `errorMessage` or the start of the body.
        message: String,
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
    /// The connection broke after the request was sent (dropped connection, truncated body).
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
    /// Authentication failed.
    #[error("bullhorn authentication failed: {0}")]
    Auth(#[from] AuthError),
    /// The retry budget ran out; `last` is the final failure.
    #[error("gave up after {attempts} attempts: {last}")]
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// The last error.
        last: Box<ClientError>,
    },
    /// Bad client settings (e.g. an unparsable URL).
    #[error("bullhorn client configuration: {0}")]
    Config(String),
}

/// What kind of failure an error is, for the retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryClass {
    /// Log in again, then resend once.
    Session,
    /// Wait (the given time, or the policy's 429 wait) and resend; does not count against the attempt budget.
    RateLimited(Option<Duration>),
    /// Back off and resend. `maybe_processed`: the server may have acted on the request, so only idempotent
    /// requests may be resent.
    Transient {
        /// Whether the request may have been processed.
        maybe_processed: bool,
    },
    /// Resending cannot help.
    Fatal,
}

impl ClientError {
    /// The retry classification; the single source of every retry decision.
    pub fn retry_class(&self) -> RetryClass {
        match self {
            ClientError::InvalidSession { .. } => RetryClass::Session,
            ClientError::RateLimited { retry_after, .. } => RetryClass::RateLimited(*retry_after),
            // The simulator and Bullhorn's front door answer 5xx before touching data, but a 500 from the
            // application may come after a partial effect: treat it as possibly processed.
            ClientError::Server { .. }
            | ClientError::Timeout { .. }
            | ClientError::Transport { .. } => RetryClass::Transient {
                maybe_processed: true,
            },
            ClientError::Connect { .. } => RetryClass::Transient {
                maybe_processed: false,
            },
            // A bad or reused one-time token is cured by running the flow again.
            ClientError::Auth(AuthError::InvalidGrant(_) | AuthError::InvalidAccessToken) => {
                RetryClass::Transient {
                    maybe_processed: false,
                }
            }
            ClientError::Auth(_)
            | ClientError::Api { .. }
            | ClientError::Decode { .. }
            | ClientError::RetriesExhausted { .. }
            | ClientError::Config(_) => RetryClass::Fatal,
        }
    }

    /// Whether trying the same call again later can succeed. After the client's own retries ran out
    /// ([`ClientError::RetriesExhausted`]) this answers for the last failure, so a caller with a longer
    /// horizon (a poll loop) can decide to try the whole step again later.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::RetriesExhausted { last, .. } => last.is_retriable(),
            e => e.retry_class() != RetryClass::Fatal,
        }
    }

    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::InvalidSession { .. } => Some(401),
            ClientError::RateLimited { .. } => Some(429),
            ClientError::Server { status, .. } | ClientError::Api { status, .. } => Some(*status),
            ClientError::RetriesExhausted { last, .. } => last.status(),
            _ => None,
        }
    }

    /// Classifies a reqwest failure; the URL is dropped from the message because auth URLs are the API's
    /// business, not the log's.
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
        "search/Candidate".into()
    }

    #[test]
    fn classification_table() {
        let cases: Vec<(ClientError, RetryClass, bool)> = vec![
            (
                ClientError::InvalidSession { endpoint: ep() },
                RetryClass::Session,
                true,
            ),
            (
                ClientError::RateLimited {
                    endpoint: ep(),
                    retry_after: None,
                },
                RetryClass::RateLimited(None),
                true,
            ),
            (
                ClientError::Server {
                    endpoint: ep(),
                    status: 503,
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
                    key: None,
                    message: String::new(),
                },
                RetryClass::Fatal,
                false,
            ),
            (
                ClientError::Auth(AuthError::InvalidCredentials),
                RetryClass::Fatal,
                false,
            ),
            (
                ClientError::Auth(AuthError::InvalidGrant("used".into())),
                RetryClass::Transient {
                    maybe_processed: false,
                },
                true,
            ),
        ];
        for (e, class, retriable) in cases {
            assert_eq!(e.retry_class(), class, "{e}");
            assert_eq!(e.is_retriable(), retriable, "{e}");
        }
        let exhausted = ClientError::RetriesExhausted {
            attempts: 6,
            last: Box::new(ClientError::Timeout { endpoint: ep() }),
        };
        assert_eq!(exhausted.retry_class(), RetryClass::Fatal);
        assert!(exhausted.is_retriable());
    }
}
