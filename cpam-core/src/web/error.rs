//! JSON errors with stable codes: `{"error": {"code": "...", "message": "..."}}`.

use crate::{Error, ErrorKind};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answer of the API.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for `Retry-After` (throttling).
    pub retry_after: Option<u64>,
}

/// Every code the API answers with, its status and when it is used.
pub const CODES: &[(&str, u16, &str)] = &[
    (
        "invalid_argument",
        400,
        "a value in the request is malformed or out of range",
    ),
    (
        "unauthenticated",
        401,
        "no valid session cookie or bearer token",
    ),
    (
        "csrf_failed",
        403,
        "a cookie-authenticated change without the session's X-CSRF-Token, or a login without X-Requested-With: cpam",
    ),
    (
        "permission_denied",
        403,
        "the caller lacks the permission the route needs",
    ),
    (
        "not_found",
        404,
        "no such object, or one outside the caller's scope",
    ),
    (
        "conflict",
        409,
        "the object's state does not allow this (not registered, not live, built in)",
    ),
    ("throttled", 429, "too many failed logins; see Retry-After"),
    (
        "internal",
        500,
        "a fault on the server; details are in its log",
    ),
    (
        "unavailable",
        503,
        "the server cannot reach what it needs (database, tunnel)",
    ),
];

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    pub fn csrf(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "csrf_failed", message)
    }

    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "permission_denied", message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_argument", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn throttled(retry_after: u64) -> Self {
        ApiError {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "throttled",
                "too many failed logins; try again later",
            )
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let (status, code) = match e.kind() {
            ErrorKind::InvalidArgument => (StatusCode::BAD_REQUEST, "invalid_argument"),
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ErrorKind::PermissionDenied | ErrorKind::AccessExpired => {
                (StatusCode::FORBIDDEN, "permission_denied")
            }
            ErrorKind::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            ErrorKind::Conflict => (StatusCode::CONFLICT, "conflict"),
            ErrorKind::TunnelUnavailable | ErrorKind::Timeout | ErrorKind::Storage => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        let message = if status.is_server_error() {
            tracing::error!(error = %e, kind = %e.kind(), "web request failed");
            match code {
                "unavailable" => "the server cannot reach its database or tunnel".to_string(),
                _ => "internal error (see the server log)".to_string(),
            }
        } else {
            e.message().to_string()
        };
        ApiError::new(status, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        let mut r = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    }
}

/// `Result` for handlers.
pub type ApiResult<T> = std::result::Result<T, ApiError>;
