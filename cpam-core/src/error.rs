//! The crate-wide error type and its stable [`ErrorKind`].
//!
//! Every module has its own `thiserror` enum; they all convert into [`Error`],
//! whose [`ErrorKind`] is the stable, documented classification that the C
//! status codes and the Python exception classes are derived from.

use std::fmt;

/// Stable classification of every error cpam reports. Values are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// A caller-supplied value is malformed or out of range.
    InvalidArgument,
    /// The named object does not exist.
    NotFound,
    /// The caller is known but not allowed to do this.
    PermissionDenied,
    /// The grant that allowed this has expired or is outside its time window.
    AccessExpired,
    /// The caller could not be authenticated.
    Unauthenticated,
    /// The gatekeeper or server tunnel is not available.
    TunnelUnavailable,
    /// An operating-system I/O error.
    Io,
    /// The peer violated the protocol.
    Protocol,
    /// The database failed.
    Storage,
    /// The recording sink failed.
    Recording,
    /// An operation did not finish in time.
    Timeout,
    /// The operation was cancelled.
    Cancelled,
    /// A bug or an unexpected internal state.
    Internal,
    /// The object's current state does not allow this (e.g. a built-in role
    /// is read-only, a gatekeeper is not registered yet, a session is not live).
    Conflict,
}

impl ErrorKind {
    /// The stable snake_case name of the kind, as used in JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::NotFound => "not_found",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::AccessExpired => "access_expired",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::TunnelUnavailable => "tunnel_unavailable",
            ErrorKind::Io => "io",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Storage => "storage",
            ErrorKind::Recording => "recording",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Internal => "internal",
            ErrorKind::Conflict => "conflict",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error with a stable kind and a human-readable message.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// Builds an error of `kind` with `message` (lowercase, no final period).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The stable kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Shorthand for [`ErrorKind::InvalidArgument`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }

    /// Shorthand for [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// Shorthand for [`ErrorKind::PermissionDenied`].
    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::PermissionDenied, message)
    }

    /// Shorthand for [`ErrorKind::Conflict`].
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    /// Shorthand for [`ErrorKind::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        let kind = match e.kind() {
            std::io::ErrorKind::TimedOut => ErrorKind::Timeout,
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
            _ => ErrorKind::Io,
        };
        Error::new(kind, e.to_string()).with_source(e)
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::RowNotFound => Error::not_found("no such record"),
            other => {
                Error::new(ErrorKind::Storage, format!("database: {other}")).with_source(other)
            }
        }
    }
}

impl From<russh::Error> for Error {
    fn from(e: russh::Error) -> Self {
        let kind = match &e {
            russh::Error::IO(_) | russh::Error::Disconnect => ErrorKind::TunnelUnavailable,
            russh::Error::ConnectionTimeout | russh::Error::KeepaliveTimeout => ErrorKind::Timeout,
            russh::Error::NotAuthenticated => ErrorKind::Unauthenticated,
            _ => ErrorKind::Protocol,
        };
        Error::new(kind, format!("ssh: {e}")).with_source(e)
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Prefixes the message with `context` (`context: message`), keeping the kind.
    pub fn context(mut self, context: &str) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}
