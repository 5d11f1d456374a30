"""Typed stubs of the native module ``cpam._cpam`` (re-exported by ``cpam``)."""

from os import PathLike
from types import TracebackType
from typing import Any, Awaitable, ClassVar, Literal, Optional, Sequence, Union, final

from typing_extensions import Self

from .types import (
    AccessCheck,
    AccessHookFn,
    AuditRecord,
    AuditSinkFn,
    BrokenLink,
    CredentialInfo,
    CredentialRequest,
    CredentialSourceFn,
    GatekeeperEvent,
    GatekeeperStatus,
    IpConnectEvent,
    IpConnectMapping,
    IpConnectStatus,
    Recording,
    RecordingInfo,
    RecordingVerification,
    Registration,
    SearchHit,
    ServerEvent,
    ServiceInfo,
    Services,
    Verification,
    VaultEntry,
    WatchFrame,
)

__version__: str
__all__ = [
    "AccessExpiredError",
    "ConflictError",
    "ConnectionManager",
    "CpamCancelledError",
    "CpamError",
    "CpamIoError",
    "CpamTimeoutError",
    "Credential",
    "Forward",
    "Gatekeeper",
    "InternalError",
    "InvalidArgumentError",
    "IpConnect",
    "LiveWatch",
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
    "list_recordings",
    "list_recordings_async",
    "read_audit",
    "read_audit_async",
    "read_recording",
    "read_recording_async",
    "recording_frame",
    "recording_frame_async",
    "recording_input",
    "recording_input_async",
    "register_gatekeeper",
    "register_gatekeeper_async",
    "search_recordings",
    "search_recordings_async",
    "verify_audit",
    "verify_audit_async",
    "verify_recording",
    "verify_recording_async",
]

_Path = Union[str, "PathLike[str]"]

# ---------------------------------------------------------------- errors

class CpamError(Exception):
    """Base class of every error cpam raises."""

    kind: ClassVar[str]
    """The stable error kind, e.g. ``"permission_denied"``."""
    code: ClassVar[int]
    """The kind's stable number, the C ``cpam_status``, e.g. ``102``."""

class InvalidArgumentError(CpamError): ...
class NotFoundError(CpamError): ...
class PermissionDeniedError(CpamError): ...
class AccessExpiredError(CpamError): ...
class UnauthenticatedError(CpamError): ...
class TunnelUnavailableError(CpamError): ...
class CpamIoError(CpamError): ...
class ProtocolError(CpamError): ...
class StorageError(CpamError): ...
class RecordingError(CpamError): ...
class CpamTimeoutError(CpamError): ...
class CpamCancelledError(CpamError): ...
class InternalError(CpamError): ...
class ConflictError(CpamError): ...

# ---------------------------------------------------------------- gatekeeper

def register_gatekeeper(
    server: str, code: str, state_dir: _Path, server_fingerprint: Optional[str] = None
) -> Registration:
    """Redeems the one-time ``code`` at ``server`` (``HOST:PORT``) and writes the
    gatekeeper's key and state into ``state_dir``."""

def register_gatekeeper_async(
    server: str, code: str, state_dir: _Path, server_fingerprint: Optional[str] = None
) -> Awaitable[Registration]: ...

@final
class Gatekeeper:
    """A registered gatekeeper run in the background of this process."""

    def __new__(cls, state_dir: _Path, allow: list[str]) -> Self: ...
    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    def start(self) -> None:
        """Starts holding the tunnel (reconnecting with backoff)."""
    def status(self) -> GatekeeperStatus: ...
    def disable(self) -> None:
        """The customer's switch on: refuse new sessions, close live ones."""
    def enable(self) -> None:
        """The customer's switch off."""
    def next_event(self, timeout: Optional[float] = None) -> Optional[GatekeeperEvent]:
        """The next event, or ``None`` after ``timeout`` seconds."""
    def next_event_async(self, timeout: Optional[float] = None) -> Awaitable[Optional[GatekeeperEvent]]: ...
    def stop(self) -> None:
        """Closes the tunnel and its sessions; waits for the agent to stop."""
    def stop_async(self) -> Awaitable[None]: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        ty: Optional[type[BaseException]],
        value: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...
    async def __aenter__(self) -> Self: ...
    async def __aexit__(
        self,
        ty: Optional[type[BaseException]],
        value: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...

@final
class IpConnect:
    """IP Connect over profiles: every service at a local address and name
    (loopback listeners or the TUN driver, as the server's mode says)."""

    def __new__(
        cls,
        profiles: list[_Path],
        state_dir: _Path,
        hosts_file: Optional[_Path] = None,
        range: Optional[str] = None,
        driver_range: Optional[str] = None,
        device: Optional[str] = None,
        poll: float = 5.0,
    ) -> Self: ...
    def start(self) -> None:
        """Starts the service in the background."""
    def status(self) -> IpConnectStatus: ...
    def mappings(self) -> list[IpConnectMapping]: ...
    def next_event(self, timeout: Optional[float] = None) -> Optional[IpConnectEvent]:
        """The next event, or ``None`` after ``timeout`` seconds."""
    def next_event_async(self, timeout: Optional[float] = None) -> Awaitable[Optional[IpConnectEvent]]: ...
    def stop(self) -> None:
        """Closes listeners, the driver and live sessions; removes the names."""
    def stop_async(self) -> Awaitable[None]: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        ty: Optional[type[BaseException]],
        value: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...

# ---------------------------------------------------------------- Connection Manager

@final
class ConnectionManager:
    """A Connection Manager bound to one profile, and so to one gatekeeper."""

    def __new__(cls, profile: _Path) -> Self: ...
    @classmethod
    def from_text(cls, text: str) -> "ConnectionManager": ...
    @property
    def user(self) -> str: ...
    @property
    def server(self) -> str: ...
    @property
    def server_key(self) -> str: ...
    @property
    def customer(self) -> str: ...
    @property
    def gatekeeper(self) -> str: ...
    def services(self) -> Services: ...
    def services_async(self) -> Awaitable[Services]: ...
    def checkout(self, service: str, seconds: Optional[int] = None) -> dict[str, Any]:
        """Checks the credential of an ``ssh`` service out (never the secret itself)."""
    def checkout_async(self, service: str, seconds: Optional[int] = None) -> Awaitable[dict[str, Any]]: ...
    def checkin(self, service: str) -> dict[str, Any]:
        """Checks the credential back in; the user's sessions on it end."""
    def checkin_async(self, service: str) -> Awaitable[dict[str, Any]]: ...
    def checkouts(self) -> dict[str, Any]:
        """The user's checkouts, newest first: ``{"checkouts": [...]}``."""
    def checkouts_async(self) -> Awaitable[dict[str, Any]]: ...
    def set_master_password(self, current: str, new: str) -> dict[str, Any]:
        """Sets the master password asked before every privileged session."""
    def set_master_password_async(self, current: str, new: str) -> Awaitable[dict[str, Any]]: ...
    def open_session(self, service: str) -> "Session":
        """One session to ``service`` as a byte stream."""
    def open_session_async(self, service: str) -> Awaitable["Session"]: ...
    def forward(self, service: str, listen: str = "127.0.0.1:0") -> "Forward":
        """Listens on ``listen``; every connection becomes a session to ``service``."""
    def forward_async(self, service: str, listen: str = "127.0.0.1:0") -> Awaitable["Forward"]: ...

@final
class Session:
    """One session as a byte stream; ``read`` returns ``b""`` at its end."""

    @property
    def service(self) -> str: ...
    def read(self, n: int = 65536) -> bytes: ...
    def read_async(self, n: int = 65536) -> Awaitable[bytes]: ...
    def read_exactly(self, n: int) -> bytes: ...
    def read_exactly_async(self, n: int) -> Awaitable[bytes]: ...
    def write(self, data: Union[bytes, bytearray]) -> None: ...
    def write_async(self, data: Union[bytes, bytearray]) -> Awaitable[None]: ...
    def shutdown_write(self) -> None: ...
    def shutdown_write_async(self) -> Awaitable[None]: ...
    def close(self) -> None: ...
    def close_async(self) -> Awaitable[None]: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        ty: Optional[type[BaseException]],
        value: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...
    async def __aenter__(self) -> Self: ...
    async def __aexit__(
        self,
        ty: Optional[type[BaseException]],
        value: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...

@final
class Forward:
    """A local listener forwarding each connection as a session."""

    @property
    def address(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def service(self) -> str: ...
    def launch_desktop(
        self, program: Optional[Union[str, PathLike[str]]] = None, args: Sequence[str] = ...
    ) -> int:
        """Starts a remote desktop client on this forward and returns its exit code."""
    def launch_desktop_async(
        self, program: Optional[Union[str, PathLike[str]]] = None, args: Sequence[str] = ...
    ) -> Awaitable[int]: ...
    def close(self) -> None: ...
    def close_async(self) -> Awaitable[None]: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        ty: Optional[type[BaseException]],
        value: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...
    async def __aenter__(self) -> Self: ...
    async def __aexit__(
        self,
        ty: Optional[type[BaseException]],
        value: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...

# ---------------------------------------------------------------- audit

def verify_audit(source: str) -> Verification:
    """Checks the audit chain of ``source``: a database URL or a server data dir."""

def verify_audit_async(source: str) -> Awaitable[Verification]: ...
def read_audit(
    source: str,
    from_seq: Optional[int] = None,
    limit: Optional[int] = None,
    category: Optional[Literal["user-activity", "system-messages"]] = None,
) -> list[AuditRecord]: ...
def read_audit_async(
    source: str,
    from_seq: Optional[int] = None,
    limit: Optional[int] = None,
    category: Optional[Literal["user-activity", "system-messages"]] = None,
) -> Awaitable[list[AuditRecord]]: ...

# ---------------------------------------------------------------- recordings

def list_recordings(data_dir: str, session: Optional[str] = None) -> list[RecordingInfo]:
    """The recordings of a server's data dir, of one ``session`` if given."""

def list_recordings_async(data_dir: str, session: Optional[str] = None) -> Awaitable[list[RecordingInfo]]: ...
def read_recording(data_dir: str, id: str) -> Recording:
    """One recording's header and events, in order."""

def read_recording_async(data_dir: str, id: str) -> Awaitable[Recording]: ...
def recording_frame(data_dir: str, id: str, at: float) -> bytes:
    """The desktop of RDP recording ``id`` at ``at`` seconds, as PNG bytes.

    Raises ``NotFoundError`` for an unknown recording, ``InvalidArgumentError``
    for a terminal recording or a time outside it."""

def recording_frame_async(data_dir: str, id: str, at: float) -> Awaitable[bytes]: ...
def recording_input(data_dir: str, id: str) -> dict[str, Any]:
    """The keys and mouse of RDP recording ``id``'s client: ``{"events": [{"t", "type", ...}],
    "pdus", "skipped", "last_error"}``.

    Raises ``NotFoundError`` for an unknown recording, ``InvalidArgumentError``
    for a terminal recording."""

def recording_input_async(data_dir: str, id: str) -> Awaitable[dict[str, Any]]: ...
def verify_recording(data_dir: str, id: str) -> RecordingVerification:
    """Checks the file, chunk chain and signed manifest; raises ``RecordingError`` naming what changed."""

def verify_recording_async(data_dir: str, id: str) -> Awaitable[RecordingVerification]: ...
def search_recordings(data_dir: str, text: str, session: Optional[str] = None) -> list[SearchHit]:
    """The recordings whose output shows ``text``."""

def search_recordings_async(
    data_dir: str, text: str, session: Optional[str] = None
) -> Awaitable[list[SearchHit]]: ...

# ---------------------------------------------------------------- server

@final
class Credential:
    """A credential for the engine to inject; its secret never shows in ``repr``."""

    def __new__(cls, username: str, *, password: Optional[str] = None, private_key: Optional[str] = None) -> Self:
        """Exactly one of ``password`` and ``private_key``."""
    @property
    def username(self) -> str: ...
    @property
    def kind(self) -> Literal["password", "private_key"]: ...
    def expose_secret(self) -> str: ...


@final
class Server:
    """A cpam server engine and SSH port in this process, with callbacks.

    Callbacks run on the engine's threads (holding the GIL while they run),
    possibly several at once. An exception in one goes to
    ``sys.unraisablehook``; from an access hook it refuses the session, from
    a credential source it fails the session with the exception's kind."""

    def __new__(
        cls,
        source: str,
        *,
        audit_sink: Optional[AuditSinkFn] = None,
        access_hook: Optional[AccessHookFn] = None,
        credential_source: Optional[CredentialSourceFn] = None,
    ) -> Self: ...
    @classmethod
    def open_async(
        cls,
        source: str,
        *,
        audit_sink: Optional[AuditSinkFn] = None,
        access_hook: Optional[AccessHookFn] = None,
        credential_source: Optional[CredentialSourceFn] = None,
    ) -> Awaitable["Server"]:
        """``Server(...)`` for asyncio: opening the database is awaited."""
    def set_audit_sink(self, sink: Optional[AuditSinkFn]) -> None: ...
    def set_access_hook(self, hook: Optional[AccessHookFn]) -> None: ...
    def set_credential_source(self, source: Optional[CredentialSourceFn]) -> None: ...
    def start(self, listen: Optional[str] = None) -> str:
        """Serves in the background; returns the ``IP:PORT`` it listens on."""
    @property
    def address(self) -> Optional[str]: ...
    def next_event(self, timeout: Optional[float] = None) -> Optional[ServerEvent]: ...
    def next_event_async(self, timeout: Optional[float] = None) -> Awaitable[Optional[ServerEvent]]: ...
    def credential(self, customer: str, service: str, user: str) -> Optional[Credential]: ...
    def credential_async(self, customer: str, service: str, user: str) -> Awaitable[Optional[Credential]]: ...
    def live_sessions(self) -> list[dict[str, Any]]:
        """The sessions live on this server (``id``, ``user_name``, ``service_name``, ...)."""
    def watch(self, session_id: str, actor: str) -> LiveWatch:
        """Watches a live terminal session as ``actor`` (audited)."""
    def watch_async(self, session_id: str, actor: str) -> Awaitable[LiveWatch]: ...
    def terminate(self, session_id: str, actor: str, reason: str) -> None:
        """Ends a live session now; the reason is audited and shown to the user."""
    def terminate_async(self, session_id: str, actor: str, reason: str) -> Awaitable[None]: ...
    def set_credential(
        self,
        service: str,
        username: str,
        *,
        actor: str,
        password: Optional[str] = None,
        private_key: Optional[str] = None,
    ) -> CredentialInfo:
        """Stores the credential of ``SERVICE@CUSTOMER`` in the vault (exactly one secret)."""
    def set_credential_async(
        self,
        service: str,
        username: str,
        *,
        actor: str,
        password: Optional[str] = None,
        private_key: Optional[str] = None,
    ) -> Awaitable[CredentialInfo]: ...
    def remove_credential(self, service: str, *, actor: str) -> None: ...
    def remove_credential_async(self, service: str, *, actor: str) -> Awaitable[None]: ...
    def credentials(self) -> list[VaultEntry]:
        """What the vault holds, never a secret."""
    def credentials_async(self) -> Awaitable[list[VaultEntry]]: ...
    def stop(self) -> None: ...
    def stop_async(self) -> Awaitable[None]: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        ty: Optional[type[BaseException]],
        value: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...
    async def __aenter__(self) -> Self: ...
    async def __aexit__(
        self,
        ty: Optional[type[BaseException]],
        value: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...

@final
class LiveWatch:
    """A live terminal session being watched (``Server.watch``); the watch
    ends (audited) when the session ends or this object is dropped."""

    def next(self, timeout: Optional[float] = None) -> Optional[WatchFrame]:
        """The next frame, or ``None`` after ``timeout`` seconds or after the ``end`` frame."""
    def next_async(self, timeout: Optional[float] = None) -> Awaitable[Optional[WatchFrame]]: ...
