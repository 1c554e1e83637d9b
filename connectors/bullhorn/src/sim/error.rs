//! Errors of the simulator: [`ApiError`] is what a REST handler answers (Bullhorn's JSON error envelope with
//! its HTTP status), [`SimError`] is what the in-process API (`SimHandle`, `Simulator::start`) returns.
//!
//! Parsers and the store produce `ApiError` directly because every one of their failures is the answer to some
//! request; the in-process API converts them so tests see a typed error.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::wire::{ErrorEnvelope, INVALID_REST_TOKEN_KEY, INVALID_REST_TOKEN_MESSAGE};

/// A REST error answer: status plus Bullhorn's `{errorMessage, errorMessageKey, errorCode}` body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    /// HTTP status, repeated as `errorCode` in the body.
    pub status: StatusCode,
    /// Human-readable message (`errorMessage`).
    pub message: String,
    /// Stable key (`errorMessageKey`).
    pub key: &'static str,
}

impl ApiError {
    /// Builds an error with an explicit status and key.
    pub fn new(status: StatusCode, key: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            key,
        }
    }

    /// 400 for a request the simulator cannot understand (bad syntax, bad value).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "errors.badRequest", message)
    }

    /// 400 for a malformed `query` (Lucene) or `where` (JPQL) parameter.
    pub fn bad_query(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "errors.invalidQuery", message)
    }

    /// 404 for an entity type the API does not know.
    pub fn unknown_entity(name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "errors.unknownEntity",
            format!("Invalid entity type: '{name}'"),
        )
    }

    /// 404 for a field the entity does not have (in `fields`, `sort` or a sub-resource path).
    pub fn unknown_field(entity: &str, field: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "errors.unknownField",
            format!("Invalid field '{field}' for entity type '{entity}'"),
        )
    }

    /// 404 for a record id that does not exist.
    pub fn not_found(entity: &str, id: i64) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "errors.cannotFindEntity",
            format!("Cannot find entity of type '{entity}' with id {id}"),
        )
    }

    /// 401 with Bullhorn's exact invalid-session body.
    pub fn invalid_session() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            INVALID_REST_TOKEN_KEY,
            INVALID_REST_TOKEN_MESSAGE,
        )
    }

    /// 412 when no session token was sent at all.
    pub fn missing_session() -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            "errors.authentication.missingRestToken",
            "Missing 'BhRestToken': send it as a query parameter, a BhRestToken header or a cookie.",
        )
    }

    /// The body as Bullhorn's error envelope.
    pub fn envelope(&self) -> ErrorEnvelope {
        ErrorEnvelope {
            error_message: self.message.clone(),
            error_message_key: Some(self.key.to_string()),
            error_code: self.status.as_u16(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.envelope())).into_response()
    }
}

/// Error of the in-process simulator API.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The listen address could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// Address asked for.
        addr: std::net::SocketAddr,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// The configuration is inconsistent (e.g. a rate outside 0..=1).
    #[error("invalid simulator configuration: {0}")]
    Config(String),
    /// An I/O error while serving.
    #[error("simulator I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A data operation was refused, with the answer the REST API would have given.
    #[error("simulator refused the operation: {0}")]
    Api(#[from] ApiError),
}
