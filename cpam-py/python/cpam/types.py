"""The shapes of the dicts cpam hands to Python, and of the callbacks it
takes, as ``TypedDict``s and aliases for type checkers (and for your own
annotations: ``from cpam.types import AccessCheck``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Literal, Optional, TypedDict, Union

if TYPE_CHECKING:
    from ._cpam import Credential

class ServiceInfo(TypedDict):
    name: str
    kind: str
    target: str
    until: Optional[str]


class Services(TypedDict):
    gatekeeper: str
    online: bool
    services: list[ServiceInfo]


class Registration(TypedDict):
    server: str
    server_key: str
    gatekeeper_id: str
    name: str
    registered_at: int


class GatekeeperStatus(TypedDict):
    id: str
    name: str
    server: str
    registered_at: int
    running: bool
    online: bool
    disabled: bool


class IpConnectMapping(TypedDict):
    customer: str
    service: str
    kind: str
    target: str
    """The remote ``HOST:PORT`` inside the customer's network."""
    local: str
    """The local ``ADDR:PORT`` to connect to."""
    hostnames: list[str]
    mode: Literal["legacy", "driver"]
    error: Optional[str]
    """Why its listener is not up (legacy mode), if it is not."""


class IpConnectProfile(TypedDict):
    customer: str
    gatekeeper: str
    server: str
    requested: Optional[str]
    mode: Literal["off", "legacy", "driver"]
    note: Optional[str]
    error: Optional[str]


class IpConnectStatus(TypedDict):
    pid: int
    range: str
    names: str
    names_error: Optional[str]
    driver: Optional[str]
    """The driver's range and TUN device while it runs."""
    driver_error: Optional[str]
    profiles: list[IpConnectProfile]
    mappings: list[IpConnectMapping]
    skipped: list[dict[str, str]]


class IpConnectEvent(TypedDict, total=False):
    type: Literal["mode", "mapping_added", "mapping_removed", "driver"]
    customer: str
    gatekeeper: str
    mode: str
    note: Optional[str]
    mapping: IpConnectMapping
    """On ``mapping_added`` and ``mapping_removed``."""
    running: Optional[str]
    """On ``driver``: the range and device while it runs."""
    error: Optional[str]
    """On ``driver``: why it cannot run."""


class GatekeeperEvent(TypedDict, total=False):
    type: Literal["gatekeeper_online", "gatekeeper_offline", "gatekeeper_switch", "gatekeeper_stopped"]
    gatekeeper: str
    """The gatekeeper's id."""
    name: str
    at: int
    """Milliseconds since the Unix epoch."""
    disabled: bool
    """On ``gatekeeper_switch``: sessions are refused now (the customer's
    switch is off, or it is outside the customer's opening hours)."""
    switched_off: bool
    """On ``gatekeeper_switch``: the state of the customer's switch."""
    schedule: Optional[str]
    """On ``gatekeeper_switch``: the opening hours (UTC), if any."""
    error: Optional[str]
    """On ``gatekeeper_stopped``: why the agent stopped, if it failed."""


class BrokenLink(TypedDict):
    expected_seq: int
    found_seq: int
    problem: str


class Verification(TypedDict):
    intact: bool
    checked: int
    first_broken: Optional[BrokenLink]


class AuditRecord(TypedDict):
    seq: int
    at: int
    category: Literal["user-activity", "system-messages"]
    action: str
    actor: str
    customer_id: Optional[str]
    session_id: Optional[str]
    detail: dict[str, Any]
    prev_hash: str
    hash: str


class AccessCheck(TypedDict):
    """What an access hook decides on (user, customer, gatekeeper, service and
    grant as the store holds them)."""

    user: dict[str, Any]
    customer: dict[str, Any]
    gatekeeper: dict[str, Any]
    service: dict[str, Any]
    grant: dict[str, Any]
    originator: str
    at: int


class CredentialRequest(TypedDict):
    session: str
    user: str
    customer: str
    service: dict[str, Any]


class ServerEvent(TypedDict, total=False):
    type: Literal[
        "gatekeeper_online",
        "gatekeeper_offline",
        "gatekeeper_switch",
        "session_started",
        "session_ended",
        "session_refused",
        "session_activity",
        "events_lost",
    ]
    at: int
    gatekeeper: str
    customer: Optional[str]
    disabled: bool
    session: dict[str, Any]
    """On ``session_started``/``session_ended``: the session record."""
    user: str
    service: str
    kind: str
    """On ``session_refused``: the refusal's error kind, e.g. ``"permission_denied"``."""
    reason: str
    lost: int
    """On ``events_lost``: how many events this watcher missed by falling behind."""
    session_id: str
    """On ``session_activity``: the live session the user acted in."""
    action: str
    """On ``session_activity``: the Admin Log's action, e.g. ``"session.file"``
    (a file moved through File Transfer) or ``"session.ssh.exec"``."""
    detail: dict[str, Any]
    """On ``session_activity``: the record's detail; for ``session.file``:
    ``path``, ``direction``, ``size``, ``sha256``, ``result``."""


class WatchFrame(TypedDict, total=False):
    """One frame of a watched live session (``LiveWatch.next``)."""

    type: Literal["snapshot", "output", "resize", "desktop", "tile", "end"]
    cols: int
    """On ``snapshot`` and ``resize``: the terminal's size."""
    rows: int
    data: bytes
    """On ``snapshot`` (paints the current screen on a blank one) and ``output``
    (what the target wrote). What the user types is never in a frame."""
    width: int
    """On ``desktop`` (a remote desktop session, all of it): its size in pixels."""
    height: int
    x: int
    """On ``tile`` (a region of the desktop that changed): where its top left corner is."""
    y: int
    png: bytes
    """On ``desktop`` and ``tile``: the image."""
    reason: str
    """On ``end``: why the session ended (``terminated: <reason>``, ``closed``, ...)."""


class CredentialInfo(TypedDict):
    """A credential in the vault, never its secret (``Server.set_credential``)."""

    service_id: str
    username: str
    kind: Literal["password", "private_key"]
    key_version: int
    """The version of the data key it is encrypted under."""
    updated_at: int
    updated_by: str


class VaultEntry(CredentialInfo):
    """One row of ``Server.credentials()``."""

    service: str
    """``SERVICE@CUSTOMER``."""
    max_checkout_secs: int


class RecordingInfo(TypedDict):
    """One recording of a session's channel (``list_recordings``)."""

    id: str
    """``<session id>.<channel>``."""
    session_id: str
    channel: int
    kind: Literal["terminal", "rdp"]
    """A terminal's (asciicast v2) or a remote desktop's (see ``recording_frame``)."""
    started_at: Optional[int]
    ended_at: Optional[int]
    size: int
    state: Optional[Literal["complete", "incomplete"]]
    """None while the recording is being written."""


class RecordingEvent(TypedDict):
    t: float
    """Seconds since the recording started."""
    kind: Literal["output", "input", "resize", "marker"]
    data: str
    """Text shown or typed; for ``resize``, ``"COLSxROWS"``."""


class RecordingDesktop(TypedDict):
    """What ``read_recording`` says of an RDP recording."""

    width: int
    height: int
    """The desktop's size in pixels."""
    duration: float
    """Seconds from the first PDU to the last."""
    pdus: int


class Recording(TypedDict):
    """A whole recording (``read_recording``): its asciicast v2 header and events.

    An RDP recording has no events to show as text: ``events`` is empty and
    ``desktop`` says what it holds (its frames: ``recording_frame``); a
    terminal's ``desktop`` is None."""

    header: dict[str, Any]
    events: list[RecordingEvent]
    desktop: Optional[RecordingDesktop]


class RecordingVerification(TypedDict):
    """A recording whose file, chunk chain and signed manifest agree."""

    id: str
    state: Literal["complete", "incomplete"]
    size: int
    chunks: int
    signer: str


class SearchHit(TypedDict):
    id: str
    session_id: str
    times: list[float]
    """Seconds into the recording where the text shows."""


AuditSinkFn = Callable[[AuditRecord], object]
"""Receives each audit record once it is sealed and stored."""
AccessHookFn = Callable[[AccessCheck], Union[bool, tuple[bool, str]]]
CredentialSourceFn = Callable[[CredentialRequest], Optional["Credential"]]
