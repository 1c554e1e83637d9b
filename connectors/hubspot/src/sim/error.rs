//! Errors of the simulator: [`ApiError`] is what an API handler answers (HubSpot's
//! `{"status":"error","message":..,"correlationId":..,"category":..}` with its HTTP status), [`SimError`] is
//! what the in-process API (`Simulator::start`, `SimHandle`) returns.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::wire::ErrorBody;

/// An API error answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{status}: {}", body.message)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The JSON body (boxed: errors travel in `Result`s on every path and should stay small).
    pub body: Box<ErrorBody>,
}

impl ApiError {
    /// An error with HubSpot's usual body.
    pub fn new(status: StatusCode, category: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: Box::new(ErrorBody {
                status: "error".into(),
                message: message.into(),
                correlation_id: Some(uuid::Uuid::new_v4().to_string()),
                category: Some(category.into()),
                ..Default::default()
            }),
        }
    }

    /// 400 `VALIDATION_ERROR`.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message)
    }

    /// 404 `OBJECT_NOT_FOUND`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", message)
    }

    /// 400 for an object type the account does not have (HubSpot's answer to an unknown type).
    pub fn unknown_object_type(name: &str) -> Self {
        Self::validation(format!("Unable to infer object type from: {name}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(*self.body)).into_response()
    }
}

/// Errors of the in-process API.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Binding the listener failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address asked for.
        addr: std::net::SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// Other I/O.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Bad settings.
    #[error("hubspot simulator configuration: {0}")]
    Config(String),
    /// An API-level refusal (unknown object, unknown id, ...).
    #[error(transparent)]
    Api(#[from] ApiError),
}
