//! One Python exception class per [`ErrorKind`], under `cpam.CpamError`.
//!
//! Each class carries the stable kind name as the class attribute `kind`
//! (`cpam.NotFoundError.kind == "not_found"`) and its stable number as
//! `code` (`101`, the C `CPAM_NOT_FOUND`).

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

/// One table: each kind, its class and the class's docstring. It declares
/// the classes and the two exhaustive matches below, which have no catch-all
/// arm: a kind added to cpam-core does not compile here until it has a class
/// of its own. `register` adds the classes to the module from
/// `ErrorKind::ALL`; `cpam-py/tests/test_errors.py` checks the stubs and the
/// package's exports against them.
macro_rules! kinds {
    ($($kind:ident => $class:ident, $doc:literal;)*) => {
        $(create_exception!(cpam, $class, CpamError, $doc);)*

        /// A lazily built exception of `kind`'s class (no GIL needed).
        fn new_err(kind: ErrorKind, message: String) -> PyErr {
            match kind {
                $(ErrorKind::$kind => $class::new_err(message),)*
            }
        }

        /// The Python name of a kind's class.
        fn class_name(kind: ErrorKind) -> &'static str {
            match kind {
                $(ErrorKind::$kind => stringify!($class),)*
            }
        }

        /// The class of a kind.
        fn class_of(py: Python<'_>, kind: ErrorKind) -> Bound<'_, PyType> {
            match kind {
                $(ErrorKind::$kind => py.get_type::<$class>(),)*
            }
        }
    };
}

kinds! {
    InvalidArgument => InvalidArgumentError, "A value is malformed or out of range.";
    NotFound => NotFoundError, "The named object does not exist.";
    PermissionDenied => PermissionDeniedError, "Known, but not allowed to do this.";
    AccessExpired => AccessExpiredError, "The grant expired or is outside its window.";
    Unauthenticated => UnauthenticatedError, "The caller could not be authenticated.";
    TunnelUnavailable => TunnelUnavailableError, "The gatekeeper or server tunnel is not available.";
    Io => CpamIoError, "An operating-system I/O error.";
    Protocol => ProtocolError, "The peer violated the protocol.";
    Storage => StorageError, "The database failed.";
    Recording => RecordingError, "The recording sink failed.";
    Timeout => CpamTimeoutError, "An operation did not finish in time.";
    Cancelled => CpamCancelledError, "The operation was cancelled.";
    Internal => InternalError, "A bug or an unexpected internal state.";
    Conflict => ConflictError, "The object's current state does not allow this (e.g. a name already taken).";
}

/// The Python exception for a cpam error: the class of its kind, its message.
pub fn to_py(e: Error) -> PyErr {
    new_err(e.kind(), e.message().to_string())
}

/// Every kind's class with its Python name.
fn classes(py: Python<'_>) -> impl Iterator<Item = (&'static str, Bound<'_, PyType>, ErrorKind)> {
    ErrorKind::ALL
        .iter()
        .map(move |&kind| (class_name(kind), class_of(py, kind), kind))
}

/// The kind a raised Python exception stands for: its class's kind when it
/// is one of ours, `internal` for anything else.
pub fn kind_of(py: Python<'_>, err: &PyErr) -> ErrorKind {
    classes(py)
        .find(|(_, class, _)| err.is_instance(py, class))
        .map_or(ErrorKind::Internal, |(_, _, kind)| kind)
}

/// Adds the classes to the module and sets each one's `kind` (the stable
/// name) and `code` (the stable number, the C `cpam_status`).
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("CpamError", py.get_type::<CpamError>())?;
    for (name, class, kind) in classes(py) {
        class.setattr("kind", kind.as_str())?;
        class.setattr("code", kind.code())?;
        m.add(name, class)?;
    }
    Ok(())
}
