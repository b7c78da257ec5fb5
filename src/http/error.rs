//! Every error answer is JSON: `{"error": {"code": "...", "message": "..."}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::hub::HubError;
use crate::query::QueryError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        let message = e.to_string();
        match e {
            QueryError::NotAllowed(_) => Self::new(StatusCode::BAD_REQUEST, "not_allowed", message),
            QueryError::Invalid(_) => Self::new(StatusCode::BAD_REQUEST, "invalid_query", message),
            QueryError::Execution(_) => Self::new(StatusCode::BAD_REQUEST, "query_failed", message),
            QueryError::Share(_) => Self::new(StatusCode::CONFLICT, "share_unusable", message),
            QueryError::Timeout(_) => {
                Self::new(StatusCode::REQUEST_TIMEOUT, "query_timeout", message)
            }
            QueryError::TooMuchMemory(..) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "query_too_large", message)
            }
            QueryError::Internal(_) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
            }
        }
    }
}

impl From<HubError> for ApiError {
    fn from(e: HubError) -> Self {
        match e {
            HubError::UnknownPipeline(name) => Self::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no dataset named {name:?}"),
            ),
            HubError::AlreadyRunning(name) => Self::new(
                StatusCode::CONFLICT,
                "already_running",
                format!("pipeline {name:?} is already running; try again when it has finished"),
            ),
            HubError::ShuttingDown => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the hub is shutting down; no new runs start",
            ),
            HubError::State(s) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "state", s.to_string())
            }
            HubError::Query(q) => q.into(),
            HubError::Forbidden(m) => Self::new(StatusCode::FORBIDDEN, "forbidden", m),
            HubError::NotFound(m) => Self::new(StatusCode::NOT_FOUND, "not_found", m),
            HubError::BadRequest { field, message } => Self::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("{field}: {message}"),
            ),
            HubError::Conflict(m) => Self::new(StatusCode::CONFLICT, "conflict", m),
            HubError::UnsupportedMediaType(m) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                m,
            ),
            HubError::Storage(s) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", s.to_string())
            }
            HubError::Report(r) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "report", r.to_string())
            }
        }
    }
}
