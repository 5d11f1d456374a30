"""cpam: customer privileged access management from Python.

Everything here comes from the native module ``cpam._cpam`` (Rust, built on
``cpam-core``). Every blocking call releases the GIL, can be interrupted with
Ctrl-C, and has an ``_async`` twin for asyncio. Errors are ``CpamError``
subclasses, one per stable error kind, each with a ``kind`` attribute.
"""

from . import types
from ._cpam import (
    AccessExpiredError,
    ConflictError,
    ConnectionManager,
    CpamCancelledError,
    Credential,
    CpamError,
    CpamIoError,
    CpamTimeoutError,
    Forward,
    Gatekeeper,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ProtocolError,
    RecordingError,
    Server,
    Session,
    StorageError,
    TunnelUnavailableError,
    UnauthenticatedError,
    __version__,
    read_audit,
    read_audit_async,
    register_gatekeeper,
    register_gatekeeper_async,
    verify_audit,
    verify_audit_async,
)

__all__ = [
    "AccessExpiredError",
    "ConflictError",
    "ConnectionManager",
    "CpamCancelledError",
    "Credential",
    "CpamError",
    "CpamIoError",
    "CpamTimeoutError",
    "Forward",
    "Gatekeeper",
    "InternalError",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "ProtocolError",
    "RecordingError",
    "Server",
    "Session",
    "StorageError",
    "TunnelUnavailableError",
    "UnauthenticatedError",
    "__version__",
    "read_audit",
    "read_audit_async",
    "register_gatekeeper",
    "register_gatekeeper_async",
    "types",
    "verify_audit",
    "verify_audit_async",
]
