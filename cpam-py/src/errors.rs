//! One Python exception class per [`ErrorKind`], under `cpam.CpamError`.
//!
//! Each class carries the stable kind name as the class attribute `kind`
//! (`cpam.NotFoundError.kind == "not_found"`), the same names the C status
//! codes are derived from.

use cpam_core::{Error, ErrorKind};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyType;

create_exception!(
    cpam,
    CpamError,
    PyException,
    "Base class of every error cpam raises; `kind` is the stable error kind."
);
create_exception!(
    cpam,
    InvalidArgumentError,
    CpamError,
    "A value is malformed or out of range."
);
create_exception!(
    cpam,
    NotFoundError,
    CpamError,
    "The named object does not exist."
);
create_exception!(
    cpam,
    PermissionDeniedError,
    CpamError,
    "Known, but not allowed to do this."
);
create_exception!(
    cpam,
    AccessExpiredError,
    CpamError,
    "The grant expired or is outside its window."
);
create_exception!(
    cpam,
    UnauthenticatedError,
    CpamError,
    "The caller could not be authenticated."
);
create_exception!(
    cpam,
    TunnelUnavailableError,
    CpamError,
    "The gatekeeper or server tunnel is not available."
);
create_exception!(
    cpam,
    CpamIoError,
    CpamError,
    "An operating-system I/O error."
);
create_exception!(
    cpam,
    ProtocolError,
    CpamError,
    "The peer violated the protocol."
);
create_exception!(cpam, StorageError, CpamError, "The database failed.");
create_exception!(
    cpam,
    RecordingError,
    CpamError,
    "The recording sink failed."
);
create_exception!(
    cpam,
    CpamTimeoutError,
    CpamError,
    "An operation did not finish in time."
);
create_exception!(
    cpam,
    CpamCancelledError,
    CpamError,
    "The operation was cancelled."
);
create_exception!(
    cpam,
    InternalError,
    CpamError,
    "A bug or an unexpected internal state."
);
create_exception!(
    cpam,
    ConflictError,
    CpamError,
    "The object's current state does not allow this."
);

/// The Python exception for a cpam error: the class of its kind, its message.
pub fn to_py(e: Error) -> PyErr {
    let msg = e.message().to_string();
    match e.kind() {
        ErrorKind::InvalidArgument => InvalidArgumentError::new_err(msg),
        ErrorKind::NotFound => NotFoundError::new_err(msg),
        ErrorKind::PermissionDenied => PermissionDeniedError::new_err(msg),
        ErrorKind::AccessExpired => AccessExpiredError::new_err(msg),
        ErrorKind::Unauthenticated => UnauthenticatedError::new_err(msg),
        ErrorKind::TunnelUnavailable => TunnelUnavailableError::new_err(msg),
        ErrorKind::Io => CpamIoError::new_err(msg),
        ErrorKind::Protocol => ProtocolError::new_err(msg),
        ErrorKind::Storage => StorageError::new_err(msg),
        ErrorKind::Recording => RecordingError::new_err(msg),
        ErrorKind::Timeout => CpamTimeoutError::new_err(msg),
        ErrorKind::Cancelled => CpamCancelledError::new_err(msg),
        ErrorKind::Internal => InternalError::new_err(msg),
        ErrorKind::Conflict => ConflictError::new_err(msg),
        _ => InternalError::new_err(format!("{}: {msg}", e.kind())),
    }
}

/// Every kind's class with its Python name.
fn classes(py: Python<'_>) -> [(&'static str, Bound<'_, PyType>, ErrorKind); 14] {
    [
        (
            "InvalidArgumentError",
            py.get_type::<InvalidArgumentError>(),
            ErrorKind::InvalidArgument,
        ),
        (
            "NotFoundError",
            py.get_type::<NotFoundError>(),
            ErrorKind::NotFound,
        ),
        (
            "PermissionDeniedError",
            py.get_type::<PermissionDeniedError>(),
            ErrorKind::PermissionDenied,
        ),
        (
            "AccessExpiredError",
            py.get_type::<AccessExpiredError>(),
            ErrorKind::AccessExpired,
        ),
        (
            "UnauthenticatedError",
            py.get_type::<UnauthenticatedError>(),
            ErrorKind::Unauthenticated,
        ),
        (
            "TunnelUnavailableError",
            py.get_type::<TunnelUnavailableError>(),
            ErrorKind::TunnelUnavailable,
        ),
        ("CpamIoError", py.get_type::<CpamIoError>(), ErrorKind::Io),
        (
            "ProtocolError",
            py.get_type::<ProtocolError>(),
            ErrorKind::Protocol,
        ),
        (
            "StorageError",
            py.get_type::<StorageError>(),
            ErrorKind::Storage,
        ),
        (
            "RecordingError",
            py.get_type::<RecordingError>(),
            ErrorKind::Recording,
        ),
        (
            "CpamTimeoutError",
            py.get_type::<CpamTimeoutError>(),
            ErrorKind::Timeout,
        ),
        (
            "CpamCancelledError",
            py.get_type::<CpamCancelledError>(),
            ErrorKind::Cancelled,
        ),
        (
            "InternalError",
            py.get_type::<InternalError>(),
            ErrorKind::Internal,
        ),
        (
            "ConflictError",
            py.get_type::<ConflictError>(),
            ErrorKind::Conflict,
        ),
    ]
}

/// The kind a raised Python exception stands for: its class's kind when it
/// is one of ours, `internal` for anything else.
pub fn kind_of(py: Python<'_>, err: &PyErr) -> ErrorKind {
    classes(py)
        .into_iter()
        .find(|(_, class, _)| err.is_instance(py, class))
        .map_or(ErrorKind::Internal, |(_, _, kind)| kind)
}

/// Adds the classes to the module and sets each one's `kind`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("CpamError", py.get_type::<CpamError>())?;
    for (name, class, kind) in classes(py) {
        class.setattr("kind", kind.as_str())?;
        m.add(name, class)?;
    }
    Ok(())
}
