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

/// The codes of the API itself, which refine a kind for the web: each with
/// its status and when it is used.
const API_CODES: &[(&str, u16, &str)] = &[
    (
        "csrf_failed",
        403,
        "a cookie-authenticated change without the session's X-CSRF-Token, or a login without X-Requested-With: cpam",
    ),
    ("throttled", 429, "too many failed logins; see Retry-After"),
];

/// The HTTP status of an error kind and when the API answers with it. One
/// match without a catch-all arm: a new kind does not compile until it has
/// a status here.
pub fn kind_status(kind: ErrorKind) -> (StatusCode, &'static str) {
    match kind {
        ErrorKind::InvalidArgument => (
            StatusCode::BAD_REQUEST,
            "a value in the request is malformed or out of range",
        ),
        ErrorKind::NotFound => (
            StatusCode::NOT_FOUND,
            "no such object, or one outside the caller's scope",
        ),
        ErrorKind::PermissionDenied => (
            StatusCode::FORBIDDEN,
            "the caller lacks the permission the route needs",
        ),
        ErrorKind::AccessExpired => (
            StatusCode::FORBIDDEN,
            "the grant that allowed this expired or is outside its time window",
        ),
        ErrorKind::Unauthenticated => (
            StatusCode::UNAUTHORIZED,
            "no valid session cookie or bearer token",
        ),
        ErrorKind::TunnelUnavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the server cannot reach the gatekeeper or target",
        ),
        ErrorKind::Io => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "an I/O fault on the server; details are in its log",
        ),
        ErrorKind::Protocol => (
            StatusCode::BAD_GATEWAY,
            "a peer of the server broke its protocol",
        ),
        ErrorKind::Storage => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the server cannot use its database",
        ),
        ErrorKind::Recording => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the server cannot record; details are in its log",
        ),
        ErrorKind::Timeout => (
            StatusCode::GATEWAY_TIMEOUT,
            "something the server waited for did not answer in time",
        ),
        ErrorKind::Cancelled => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the operation was cancelled (the server is stopping)",
        ),
        ErrorKind::Internal => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "a fault on the server; details are in its log",
        ),
        ErrorKind::Conflict => (
            StatusCode::CONFLICT,
            "the object's state does not allow this (name taken, not registered, not live, built in)",
        ),
    }
}

/// Every code the API answers with, its status and when it is used: the
/// name of every [`ErrorKind`], then the API's own codes.
pub static CODES: std::sync::LazyLock<Vec<(&'static str, u16, &'static str)>> =
    std::sync::LazyLock::new(|| {
        ErrorKind::ALL
            .iter()
            .map(|&kind| {
                let (status, when) = kind_status(kind);
                (kind.as_str(), status.as_u16(), when)
            })
            .chain(API_CODES.iter().copied())
            .collect()
    });

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
        let kind = e.kind();
        let (status, when) = kind_status(kind);
        let message = if status.is_server_error() {
            tracing::error!(error = %e, kind = %kind, "web request failed");
            when.to_string()
        } else {
            e.message().to_string()
        };
        ApiError::new(status, kind.as_str(), message)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_answers_with_its_own_name() {
        for &kind in ErrorKind::ALL {
            let e = ApiError::from(Error::new(kind, "boom"));
            assert_eq!(e.code, kind.as_str());
            assert_eq!(e.status, kind_status(kind).0, "{kind}");
            assert!(
                CODES.contains(&(kind.as_str(), e.status.as_u16(), kind_status(kind).1)),
                "{kind} is not in CODES"
            );
        }
        let names: std::collections::HashSet<_> = CODES.iter().map(|c| c.0).collect();
        assert_eq!(names.len(), CODES.len(), "a code is listed twice");
    }

    #[test]
    fn server_faults_keep_their_detail_in_the_log() {
        let e = ApiError::from(Error::new(ErrorKind::Storage, "database: secret detail"));
        assert_eq!((e.status.as_u16(), e.code), (503, "storage"));
        assert!(!e.message.contains("secret detail"), "{}", e.message);
        let e = ApiError::from(Error::conflict("customer `acme` already exists"));
        assert_eq!((e.status.as_u16(), e.code), (409, "conflict"));
        assert_eq!(e.message, "customer `acme` already exists");
    }

    #[test]
    fn docs_list_every_code_with_its_status() {
        let docs = include_str!("../../../docs/api.md");
        for (code, status, _) in CODES.iter() {
            let row = format!("| `{code}` | {status} |");
            assert!(
                docs.lines().any(|l| l.starts_with(&row)),
                "docs/api.md lacks a row starting `{row}`"
            );
        }
    }
}
