//! The client's error boundary: every way a Salesforce call can fail, and the one place that says which are
//! worth trying again ([`ClientError::is_retriable`]).
//!
//! Messages never contain secrets: tokens travel only in headers and form bodies, and transport errors are
//! stored without their URL.

use crate::wire::ApiErrorItem;

/// Why authentication failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The token endpoint answered `{"error":..,"error_description":..}`.
    #[error("token endpoint refused: {error}: {description}")]
    Refused {
        /// OAuth error code, e.g. `invalid_grant`, `invalid_client_id`.
        error: String,
        /// Its description.
        description: String,
    },
    /// The JWT assertion could not be built (bad private key).
    #[error("cannot sign the JWT assertion: {0}")]
    Jwt(String),
    /// A given access token expired or was revoked; only its owner can renew it.
    #[error("the configured access token is no longer valid")]
    TokenExpired,
}

/// Why a Salesforce call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// 401 `INVALID_SESSION_ID`, still there after authenticating again.
    #[error("session rejected by {endpoint} (401 INVALID_SESSION_ID)")]
    InvalidSession {
        /// Endpoint label.
        endpoint: String,
    },
    /// 403 `REQUEST_LIMIT_EXCEEDED`: the org's daily allowance is spent.
    #[error("org API limit exceeded ({endpoint}): {message}")]
    LimitExceeded {
        /// Endpoint label.
        endpoint: String,
        /// Salesforce's message.
        message: String,
    },
    /// Waited `budget_wait_max` for the usage to fall under the configured share.
    #[error("API budget exhausted: {used}/{max} used, share allowed {share}")]
    BudgetExhausted {
        /// Requests used.
        used: u64,
        /// Daily allowance.
        max: u64,
        /// Share the client may use.
        share: f64,
    },
    /// 5xx (503: unavailable or overloaded).
    #[error("server error {status} from {endpoint}: {message}")]
    Server {
        /// Endpoint label.
        endpoint: String,
        /// HTTP status.
        status: u16,
        /// First error message or the start of the body.
        message: String,
    },
    /// Any other error answer (400 `MALFORMED_QUERY`, 400 `INVALID_FIELD`, 404 `NOT_FOUND`, ...).
    #[error(
        "{endpoint} answered {status} {}: {}",
        first_code(errors),
        first_message(errors)
    )]
    Api {
        /// Endpoint label.
        endpoint: String,
        /// HTTP status.
        status: u16,
        /// The JSON error array.
        errors: Vec<ApiErrorItem>,
    },
    /// No answer within the request timeout.
    #[error("timeout calling {endpoint}")]
    Timeout {
        /// Endpoint label.
        endpoint: String,
    },
    /// The connection failed or broke.
    #[error("transport error during {endpoint}: {message}")]
    Transport {
        /// Endpoint label.
        endpoint: String,
        /// Cause, without URL.
        message: String,
    },
    /// The answer was not the document expected.
    #[error("cannot decode the answer of {endpoint}: {message}")]
    Decode {
        /// Endpoint label.
        endpoint: String,
        /// Parser message.
        message: String,
    },
    /// Authentication failed.
    #[error("salesforce authentication failed: {0}")]
    Auth(#[from] AuthError),
    /// Bad settings (URL, CA file, version).
    #[error("salesforce client configuration: {0}")]
    Config(String),
}

fn first_code(errors: &[ApiErrorItem]) -> &str {
    errors.first().map(|e| e.error_code.as_str()).unwrap_or("")
}

fn first_message(errors: &[ApiErrorItem]) -> &str {
    errors.first().map(|e| e.message.as_str()).unwrap_or("")
}

impl ClientError {
    /// Whether the same call can succeed later: sessions, limits, budget, 5xx and transport failures can;
    /// a malformed query, a bad field, refused credentials or bad settings cannot.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::InvalidSession { .. }
            | ClientError::LimitExceeded { .. }
            | ClientError::BudgetExhausted { .. }
            | ClientError::Server { .. }
            | ClientError::Timeout { .. }
            | ClientError::Transport { .. } => true,
            ClientError::Auth(AuthError::Refused { error, .. }) => {
                // Salesforce answers `invalid_grant` for transient states too (a user being provisioned), but
                // for bad credentials as well; `unknown_error`/`server_error` are the clearly transient ones.
                matches!(error.as_str(), "unknown_error" | "server_error")
            }
            ClientError::Api { .. }
            | ClientError::Decode { .. }
            | ClientError::Auth(_)
            | ClientError::Config(_) => false,
        }
    }

    /// Whether the client itself resends the request after this failure (with backoff).
    pub(crate) fn is_transient(&self) -> bool {
        matches!(
            self,
            ClientError::Server { .. }
                | ClientError::Timeout { .. }
                | ClientError::Transport { .. }
        )
    }

    /// The Salesforce `errorCode` of an error answer, e.g. `MALFORMED_QUERY`.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            ClientError::Api { errors, .. } => errors.first().map(|e| e.error_code.as_str()),
            ClientError::InvalidSession { .. } => Some("INVALID_SESSION_ID"),
            ClientError::LimitExceeded { .. } => Some("REQUEST_LIMIT_EXCEEDED"),
            _ => None,
        }
    }

    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::InvalidSession { .. } => Some(401),
            ClientError::LimitExceeded { .. } => Some(403),
            ClientError::Server { status, .. } | ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// A transport error without the URL (which could carry ids, never secrets, but is noise).
    pub(crate) fn from_reqwest(endpoint: &str, e: reqwest::Error) -> Self {
        let endpoint = endpoint.to_string();
        if e.is_timeout() {
            ClientError::Timeout { endpoint }
        } else if e.is_decode() {
            ClientError::Decode {
                endpoint,
                message: e.without_url().to_string(),
            }
        } else {
            ClientError::Transport {
                endpoint,
                message: e.without_url().to_string(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: &str) -> ClientError {
        ClientError::Api {
            endpoint: "query".into(),
            status: 400,
            errors: vec![ApiErrorItem {
                message: "bad".into(),
                error_code: code.into(),
                fields: None,
            }],
        }
    }

    #[test]
    fn retriable_table() {
        let cases: Vec<(ClientError, bool)> = vec![
            (
                ClientError::InvalidSession {
                    endpoint: "q".into(),
                },
                true,
            ),
            (
                ClientError::LimitExceeded {
                    endpoint: "q".into(),
                    message: "x".into(),
                },
                true,
            ),
            (
                ClientError::Server {
                    endpoint: "q".into(),
                    status: 503,
                    message: "x".into(),
                },
                true,
            ),
            (
                ClientError::Timeout {
                    endpoint: "q".into(),
                },
                true,
            ),
            (api("MALFORMED_QUERY"), false),
            (
                ClientError::Auth(AuthError::Refused {
                    error: "invalid_client_id".into(),
                    description: "client identifier invalid".into(),
                }),
                false,
            ),
            (ClientError::Config("x".into()), false),
        ];
        for (e, want) in cases {
            assert_eq!(e.is_retriable(), want, "{e}");
        }
        assert_eq!(api("MALFORMED_QUERY").error_code(), Some("MALFORMED_QUERY"));
        assert!(api("MALFORMED_QUERY")
            .to_string()
            .contains("MALFORMED_QUERY"));
    }
}
