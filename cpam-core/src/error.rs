//! The crate-wide error type and its stable [`ErrorKind`].
//!
//! Every module has its own `thiserror` enum; they all convert into [`Error`],
//! whose [`ErrorKind`] is the stable, documented classification that the C
//! status codes and the Python exception classes are derived from.

use std::fmt;

/// Stable classification of every error cpam reports.
///
/// Each kind has a stable number ([`ErrorKind::code`], 100 and up, the same
/// number as its C `cpam_status`) and a stable snake_case name
/// ([`ErrorKind::as_str`], used in JSON, logs, the REST API and as the Python
/// exception's `kind`). Numbers and names are never reused or renumbered.
///
/// The list is deliberately exhaustive (not `#[non_exhaustive]`): every
/// surface (C status, Python exception class, REST status) maps kinds with a
/// `match` that has no catch-all arm, so a new kind does not compile until
/// each surface gives it its own code. [`ErrorKind::ALL`] lists every kind
/// for the tests that check those surfaces.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
#[repr(u16)]
pub enum ErrorKind {
    /// `invalid_argument` (100): a caller-supplied value is malformed or out of range.
    InvalidArgument = 100,
    /// `not_found` (101): the named object does not exist.
    NotFound = 101,
    /// `permission_denied` (102): the caller is known but not allowed to do this.
    PermissionDenied = 102,
    /// `access_expired` (103): the grant that allowed this has expired or is
    /// outside its time window.
    AccessExpired = 103,
    /// `unauthenticated` (104): the caller could not be authenticated.
    Unauthenticated = 104,
    /// `tunnel_unavailable` (105): the gatekeeper or server tunnel is not available.
    TunnelUnavailable = 105,
    /// `io` (106): an operating-system I/O error.
    Io = 106,
    /// `protocol` (107): the peer violated the protocol.
    Protocol = 107,
    /// `storage` (108): the database failed.
    Storage = 108,
    /// `recording` (109): the recording sink failed.
    Recording = 109,
    /// `timeout` (110): an operation did not finish in time.
    Timeout = 110,
    /// `cancelled` (111): the operation was cancelled.
    Cancelled = 111,
    /// `internal` (112): a bug or an unexpected internal state.
    Internal = 112,
    /// `conflict` (113): the object's current state does not allow this (a
    /// name already taken, a built-in role is read-only, a gatekeeper is not
    /// registered yet, a session is not live).
    Conflict = 113,
}

impl ErrorKind {
    /// Every kind, in the order of their codes.
    pub const ALL: &'static [ErrorKind] = <ErrorKind as strum::VariantArray>::VARIANTS;

    /// The stable snake_case name of the kind, as used in JSON and logs.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The stable number of the kind (100 and up), equal to its C `cpam_status`.
    pub const fn code(self) -> u16 {
        self as u16
    }

    /// The kind with the stable number `code`, if there is one.
    pub fn from_code(code: u16) -> Option<ErrorKind> {
        Self::ALL.iter().copied().find(|k| k.code() == code)
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
            sqlx::Error::Database(ref db) if db.is_unique_violation() => {
                Error::conflict(format!("database: {e}")).with_source(e)
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The published codes and names: changing one breaks every C program,
    /// Python script and REST client that relies on it.
    const PUBLISHED: [(u16, &str); 14] = [
        (100, "invalid_argument"),
        (101, "not_found"),
        (102, "permission_denied"),
        (103, "access_expired"),
        (104, "unauthenticated"),
        (105, "tunnel_unavailable"),
        (106, "io"),
        (107, "protocol"),
        (108, "storage"),
        (109, "recording"),
        (110, "timeout"),
        (111, "cancelled"),
        (112, "internal"),
        (113, "conflict"),
    ];

    #[test]
    fn codes_and_names_are_the_published_ones() {
        let got: Vec<(u16, &str)> = ErrorKind::ALL
            .iter()
            .map(|k| (k.code(), k.as_str()))
            .collect();
        assert_eq!(got, PUBLISHED, "a kind was renumbered, renamed or removed");
    }

    #[test]
    fn every_kind_round_trips_through_its_code_name_and_json() {
        for &kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_code(kind.code()), Some(kind));
            assert_eq!(kind.as_str().parse::<ErrorKind>().ok(), Some(kind));
            assert_eq!(kind.to_string(), kind.as_str());
            let json = serde_json::to_string(&kind).expect("a kind serializes");
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            let back: ErrorKind = serde_json::from_str(&json).expect("a kind parses");
            assert_eq!(back, kind);
        }
        assert_eq!(ErrorKind::from_code(99), None);
        assert!("no_such_kind".parse::<ErrorKind>().is_err());
    }
}
