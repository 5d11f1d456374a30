"""The server engine run from Python with callbacks: an audit sink, an access
hook and a credential source, plus engine events; sessions through it come
from an embedded gatekeeper and a Connection Manager like any other."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import pytest

import cpam
from harness import Deployment, bin_path, run, wait_until


class Hooks:
    """What the callbacks saw, and how the access hook answers."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records: list[cpam.types.AuditRecord] = []
        self.checks: list[cpam.types.AccessCheck] = []
        self.answer: Any = True

    def audit(self, record: cpam.types.AuditRecord) -> None:
        with self.lock:
            self.records.append(record)

    def access(self, check: cpam.types.AccessCheck) -> Union[bool, tuple[bool, str]]:
        with self.lock:
            self.checks.append(check)
        if check["user"]["name"] == "vendor2":
            return (False, "change window closed")
        answer = self.answer
        if isinstance(answer, BaseException):
            raise answer
        return answer  # type: ignore[no-any-return]

    def credential(self, request: cpam.types.CredentialRequest) -> Optional[cpam.Credential]:
        if request["user"] == "raises":
            raise cpam.NotFoundError(f"no vault entry for {request['service']['name']}")
        if request["user"] == "wrong-type":
            return "hunter2"  # type: ignore[return-value]
        if request["service"]["name"] == "ssh":
            return cpam.Credential("svc-ssh", password="from-the-vault")
        return None


class PyHub:
    """A data dir made by `cpam-server init`, served by `cpam.Server`."""

    def __init__(self, d: Deployment, dir: Path, hooks: Hooks):
        self.dir, self.data_dir = dir, dir / "server"
        run([str(bin_path("cpam-server")), "init", "--listen", "127.0.0.1:0", "--data-dir", str(self.data_dir)], dir)
        self.server = cpam.Server(str(self.data_dir), audit_sink=hooks.audit, access_hook=hooks.access,
                                  credential_source=hooks.credential)
        self.address = self.server.start("127.0.0.1:0")
        self.admin("customer", "add", "acme")
        code = json.loads(self.admin("gatekeeper", "add", "--customer", "acme", "gk1", "--json"))["code"]
        self.admin("service", "add", "--customer", "acme", "ssh", "--target", d.service_target)
        for user in ("vendor", "vendor2"):
            self.admin("user", "add", user)
            self.admin("grant", "add", "--user", user, "--customer", "acme", "--service", "ssh")
        cpam.register_gatekeeper(self.address, code, str(dir / "gk"))
        self.gatekeeper = cpam.Gatekeeper(str(dir / "gk"), allow=d.allow)
        self.gatekeeper.start()
        assert (self.gatekeeper.next_event(timeout=30) or {}).get("type") == "gatekeeper_online"

    def admin(self, *args: str) -> str:
        return run([str(bin_path("cpam-server")), *args, "--data-dir", str(self.data_dir)], self.dir)

    def profile(self, user: str) -> str:
        out = self.dir / f"{user}.profile"
        if not out.exists():
            self.admin("profile", "export", "--user", user, "--gatekeeper", "gk1", "--out", str(out),
                       "--server-address", self.address)
        return str(out)

    def events_until(self, wanted: str) -> list[cpam.types.ServerEvent]:
        seen: list[cpam.types.ServerEvent] = []
        while True:
            event = self.server.next_event(timeout=20)
            assert event is not None, f"no {wanted} event; saw {seen}"
            seen.append(event)
            if event["type"] == wanted:
                return seen


@pytest.fixture(scope="module")
def hooks() -> Hooks:
    return Hooks()


@pytest.fixture(scope="module")
def hub(deployment: Deployment, hooks: Hooks, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PyHub]:
    h = PyHub(deployment, tmp_path_factory.mktemp("pyhub"), hooks)
    try:
        yield h
    finally:
        h.gatekeeper.stop()
        h.server.stop()


def test_events_and_audit_sink_follow_a_session(hub: PyHub, hooks: Hooks) -> None:
    assert hub.server.address == hub.address
    online = hub.events_until("gatekeeper_online")[-1]
    assert online["gatekeeper"] == hub.gatekeeper.id
    with cpam.ConnectionManager(hub.profile("vendor")).open_session("ssh") as s:
        assert s.read(7) == b"SSH-2.0"
    started = hub.events_until("session_started")[-1]
    ended = hub.events_until("session_ended")[-1]
    assert started["session"]["id"] == ended["session"]["id"]
    assert ended["session"]["user_name"] == "vendor" and ended["session"]["end_reason"] == "completed", ended

    # The hook saw the session with the store's view of it.
    check = next(c for c in hooks.checks if c["user"]["name"] == "vendor")
    assert check["customer"]["name"] == "acme" and check["service"]["name"] == "ssh"
    assert check["gatekeeper"]["name"] == "gk1" and check["grant"]["id"].startswith("grt_")
    assert "password_hash" not in check["user"]

    # The sink got every record the engine wrote, sealed, in chain order, as
    # stored (admin commands run by the CLI write to the database directly).
    records = wait_until("the session's end record at the sink", lambda: [
        r for r in hooks.records if r["action"] == "session.end"] and list(hooks.records))
    stored = {r["seq"]: r for r in cpam.read_audit(str(hub.data_dir))}
    assert [r["seq"] for r in records] == sorted(r["seq"] for r in records)
    assert all(r == stored[r["seq"]] for r in records)
    assert {"gatekeeper.registered", "gatekeeper.online", "session.start"} <= {r["action"] for r in records}
    assert cpam.verify_audit(str(hub.data_dir))["intact"]


def test_access_hook_denial_is_permission_denied(hub: PyHub) -> None:
    # The vendor learns that it was refused; the reason is for the operators.
    with pytest.raises(cpam.PermissionDeniedError) as e:
        cpam.ConnectionManager(hub.profile("vendor2")).open_session("ssh")
    assert e.value.kind == "permission_denied"
    refused = hub.events_until("session_refused")[-1]
    assert refused["user"] == "vendor2" and refused["kind"] == "permission_denied", refused
    assert "change window closed" in refused["reason"]
    audit = [r for r in cpam.read_audit(str(hub.data_dir)) if r["action"] == "session.refused"]
    assert audit[-1]["actor"] == "vendor2" and audit[-1]["detail"]["reason"] == "access_hook", audit


@pytest.mark.parametrize("answer, reason", [
    (RuntimeError("ticket system down"), "the access hook raised: RuntimeError: ticket system down"),
    (None, "the access hook returned None, not a bool or (bool, reason)"),
    (False, "refused by the integrator's access hook"),
    ((False, "no ticket"), "no ticket"),
])
def test_a_failing_or_refusing_hook_refuses_and_the_server_goes_on(
    hub: PyHub, hooks: Hooks, answer: Any, reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    cm = cpam.ConnectionManager(hub.profile("vendor"))
    hooks.answer = answer
    try:
        with pytest.raises(cpam.PermissionDeniedError):
            cm.open_session("ssh")
    finally:
        hooks.answer = True
    refused = hub.events_until("session_refused")[-1]
    assert refused["kind"] == "permission_denied" and reason in refused["reason"], refused
    if isinstance(answer, BaseException):
        # The traceback went where Python reports errors in callbacks.
        assert [u.exc_value for u in unraisable] == [answer]
        assert unraisable[0].object == hooks.access
    with cm.open_session("ssh") as s:
        assert s.read(7) == b"SSH-2.0"


def test_sessions_at_once_from_several_threads(hub: PyHub, hooks: Hooks) -> None:
    cm = cpam.ConnectionManager(hub.profile("vendor"))
    before = len(hooks.checks)

    def banner(_: int) -> bytes:
        with cm.open_session("ssh") as s:
            return s.read_exactly(7)

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(banner, range(16))) == [b"SSH-2.0"] * 16
    assert len(hooks.checks) - before == 16


def test_admin_cli_terminates_a_session_through_the_control_socket(hub: PyHub) -> None:
    while hub.server.next_event(timeout=0.5) is not None:
        pass
    with cpam.ConnectionManager(hub.profile("vendor")).open_session("ssh") as s:
        assert s.read(7) == b"SSH-2.0"
        started = hub.events_until("session_started")[-1]
        sid = started["session"]["id"]
        hub.admin("sessions", "terminate", sid, "--reason", "change window closed")
        ended = hub.events_until("session_ended")[-1]
        assert ended["session"]["id"] == sid and ended["session"]["end_reason"] == "terminated_by", ended
        assert ended["session"]["end_detail"] == "admin-cli: change window closed", ended
        # The stream ends on the vendor's side too.
        while s.read():
            pass


def test_credential_source(hub: PyHub, monkeypatch: pytest.MonkeyPatch) -> None:
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    c = hub.server.credential("acme", "ssh", "vendor")
    assert c is not None and c.username == "svc-ssh" and c.kind == "password"
    assert c.expose_secret() == "from-the-vault"
    assert "from-the-vault" not in repr(c) and "redacted" in repr(c)
    with pytest.raises(cpam.NotFoundError, match="the credential source raised: NotFoundError: no vault entry for ssh"):
        hub.server.credential("acme", "ssh", "raises")
    assert [type(u.exc_value) for u in unraisable] == [cpam.NotFoundError]
    with pytest.raises(cpam.InternalError, match="returned 'hunter2', not a Credential or None"):
        hub.server.credential("acme", "ssh", "wrong-type")
    with pytest.raises(cpam.NotFoundError, match="no service `db`"):
        hub.server.credential("acme", "db", "vendor")
    async def ask() -> Optional[cpam.Credential]:
        return await hub.server.credential_async("acme", "ssh", "vendor")

    got = asyncio.run(ask())
    assert got is not None and got.username == "svc-ssh"

    with pytest.raises(cpam.InvalidArgumentError, match="exactly one of"):
        cpam.Credential("u", password="p", private_key="k")
    k = cpam.Credential("admin", private_key="-----BEGIN OPENSSH PRIVATE KEY-----")
    assert k.kind == "private_key"
    # Without a callback, sessions take credentials from the server's own
    # vault again: it answers for the service, and wants a checkout first.
    hub.server.set_credential_source(None)
    try:
        with pytest.raises(cpam.PermissionDeniedError, match="holds no active checkout of `ssh`"):
            hub.server.credential("acme", "ssh", "vendor")
    finally:
        hub.server.set_credential_source(Hooks().credential)


def test_bad_arguments(hub: PyHub, tmp_path: Path) -> None:
    with pytest.raises(cpam.InvalidArgumentError, match="must be callable"):
        hub.server.set_access_hook("allow")  # type: ignore[arg-type]
    with pytest.raises(cpam.InvalidArgumentError, match="already running"):
        hub.server.start()
    with pytest.raises(cpam.NotFoundError, match="cpam-server init"):
        cpam.Server(str(tmp_path))


def test_server_on_a_database_url_and_async_stop(tmp_path: Path) -> None:
    async def main() -> None:
        records: list[cpam.types.AuditRecord] = []
        async with await cpam.Server.open_async(f"sqlite://{tmp_path / 'cpam.db'}",
                                                audit_sink=records.append) as server:
            address = server.start()
            assert address.startswith("127.0.0.1:") and not address.endswith(":0")
            # A wrong code is refused by this server like by any other.
            with pytest.raises(cpam.UnauthenticatedError):
                await cpam.register_gatekeeper_async(address, "nope", str(tmp_path / "gk"))
            assert await server.next_event_async(timeout=0.1) is None
            await server.stop_async()
            assert server.address is None
            with pytest.raises(cpam.InvalidArgumentError, match="was stopped"):
                server.start()
            # The event queue is closed: no wait, even without a timeout.
            assert await server.next_event_async() is None
        refused = cpam.read_audit(f"sqlite://{tmp_path / 'cpam.db'}")
        assert records == refused
        assert [r["action"] for r in refused] == ["server.start", "gatekeeper.registration_refused"], refused
        assert refused[0]["detail"] == {
            "listen": address,
            "node": "default",
            "embedded": True,
            "orphan_sessions_closed": 0,
            "gatekeepers_marked_offline": 0,
        }

    asyncio.run(main())
