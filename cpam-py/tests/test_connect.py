"""The Connection Manager: services, sessions as byte streams, local forwards,
and refusals as exceptions of the refusal's kind."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

import cpam
from harness import Deployment, wait_until


def test_services_lists_the_granted_service(deployment: Deployment, gatekeeper: cpam.Gatekeeper) -> None:
    cm = cpam.ConnectionManager(str(deployment.profile))
    assert (cm.user, cm.customer, cm.gatekeeper, cm.server) == ("vendor", "acme", "gk1", deployment.address)
    listing = cm.services()
    assert listing["gatekeeper"] == "gk1" and listing["online"] is True, listing
    [svc] = listing["services"]
    assert svc["name"] == "ssh" and svc["target"] == deployment.service_target, listing
    # A user without a grant sees no services.
    assert cpam.ConnectionManager(str(deployment.profile_of("nogrant"))).services()["services"] == []


def test_session_is_a_byte_stream_to_the_target(deployment: Deployment, gatekeeper: cpam.Gatekeeper) -> None:
    cm = cpam.ConnectionManager.from_text(deployment.profile.read_text())
    before = len(deployment.sessions())
    with cm.open_session("ssh") as s:
        assert s.service == "ssh"
        assert s.read(0) == b""
        banner = s.read(256)
        assert banner.startswith(b"SSH-2.0-OpenSSH"), banner
        # Speak SSH to the real sshd: it answers a bad protocol line and closes.
        s.write(b"SSH-2.0-cpam-py-test\r\n")
        s.write(bytearray(b"this is not an SSH packet" * 10))
        rest = b""
        while chunk := s.read():
            rest += chunk
        assert s.read() == b""
    with pytest.raises(cpam.InvalidArgumentError, match="the session is closed"):
        s.read()
    s.close()  # twice is fine
    sessions = wait_until("the session recorded as ended", lambda: [
        x for x in deployment.sessions()[: len(deployment.sessions()) - before] if x["end_reason"]
    ])
    assert sessions[0]["service_name"] == "ssh" and sessions[0]["user_name"] == "vendor", sessions
    assert sessions[0]["bytes_up"] > 0 and sessions[0]["bytes_down"] > 0, sessions


def test_stock_ssh_runs_a_command_through_a_forward(deployment: Deployment, gatekeeper: cpam.Gatekeeper) -> None:
    cm = cpam.ConnectionManager(str(deployment.profile))
    with cm.forward("ssh") as fwd:
        assert fwd.host == "127.0.0.1" and fwd.port > 0 and fwd.address == f"127.0.0.1:{fwd.port}"
        out = subprocess.run(deployment.sshd.ssh_args(fwd.port, "echo", "hello", "from", "python"),
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr + deployment.logs()
        assert out.stdout.strip() == "hello from python"
    # Closed: nothing listens there any more.
    after = subprocess.run(deployment.sshd.ssh_args(fwd.port, "true"), capture_output=True, timeout=60)
    assert after.returncode != 0


def test_refused_session_is_permission_denied(deployment: Deployment, gatekeeper: cpam.Gatekeeper) -> None:
    cm = cpam.ConnectionManager(str(deployment.profile_of("nogrant")))
    with pytest.raises(cpam.PermissionDeniedError) as e:
        cm.open_session("ssh")
    assert e.value.kind == "permission_denied"
    assert isinstance(e.value, cpam.CpamError)
    refusals = [r for r in cpam.read_audit(str(deployment.data_dir)) if r["action"] == "session.refused"]
    assert any(r["actor"] == "nogrant" for r in refusals), refusals


def test_unknown_service_is_not_found(deployment: Deployment, gatekeeper: cpam.Gatekeeper) -> None:
    cm = cpam.ConnectionManager(str(deployment.profile))
    with pytest.raises(cpam.NotFoundError, match="no service `db`"):
        cm.open_session("db")


def test_bad_forward_address(deployment: Deployment, gatekeeper: cpam.Gatekeeper) -> None:
    cm = cpam.ConnectionManager(str(deployment.profile))
    with pytest.raises(cpam.InvalidArgumentError, match="must be IP:PORT"):
        cm.forward("ssh", listen="localhost")


def test_expired_grant_is_refused_and_audited_as_expired(deployment: Deployment,
                                                         gatekeeper: cpam.Gatekeeper) -> None:
    deployment.admin("user", "add", "expired")
    deployment.admin("grant", "add", "--user", "expired", "--customer", "acme", "--service", "ssh",
                     "--from", "2020-01-01T00:00:00Z", "--until", "2020-01-02T00:00:00Z")
    cm = cpam.ConnectionManager(str(deployment.profile_of("expired")))
    # The SSH channel refusal carries no reason: the vendor sees a refusal...
    with pytest.raises(cpam.PermissionDeniedError):
        cm.open_session("ssh")
    # ...and the audit log, why.
    refusal = [r for r in cpam.read_audit(str(deployment.data_dir))
               if r["action"] == "session.refused" and r["actor"] == "expired"]
    assert refusal and refusal[-1]["detail"]["reason"] == "expired", refusal
    assert refusal[-1]["detail"]["message"] == "grant has expired"


# The "desktop client" the tests launch: connects to the forwarded address
# it is given and exits 0 when the target (a real sshd) answers with its banner.
_BANNER_CLIENT = """
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
with socket.create_connection((host, int(port)), timeout=30) as s:
    sys.exit(0 if s.recv(64).startswith(b"SSH-2.0-OpenSSH") else 3)
"""


def test_launch_desktop_starts_the_client_on_the_forward(deployment: Deployment,
                                                         gatekeeper: cpam.Gatekeeper,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    cm = cpam.ConnectionManager(str(deployment.profile))
    before = len(deployment.sessions())
    with cm.forward("ssh") as fwd:
        # `{addr}` is replaced by the forward's address.
        assert fwd.launch_desktop(sys.executable, ["-c", _BANNER_CLIENT, "{addr}"]) == 0
        # The client's exit code comes back as it is.
        assert fwd.launch_desktop(sys.executable, ["-c", "import sys; sys.exit(5)", "{addr}"]) == 5
        # No native client on PATH: the error names the address to use by hand.
        monkeypatch.setenv("PATH", str(tmp_path))
        with pytest.raises(cpam.NotFoundError, match=f"connect yours to {fwd.address}"):
            fwd.launch_desktop()
        # A native client found on PATH gets `/v:ADDR` first, then the arguments.
        fake = tmp_path / "xfreerdp"
        fake.write_text(f"#!{sys.executable}\nimport sys\n"
                        f"sys.exit(0 if sys.argv[1:] == ['/v:{fwd.address}', '/cert:ignore'] else 4)\n")
        fake.chmod(0o755)
        assert fwd.launch_desktop(args=["/cert:ignore"]) == 0
        with pytest.raises(cpam.NotFoundError, match="cannot start /nonexistent/client"):
            fwd.launch_desktop("/nonexistent/client")
    # The banner client's connection was one audited session.
    sessions = wait_until("the desktop session recorded", lambda: [
        x for x in deployment.sessions()[: len(deployment.sessions()) - before] if x["end_reason"]
    ])
    assert sessions[0]["service_name"] == "ssh" and sessions[0]["user_name"] == "vendor", sessions


def test_launch_desktop_async(deployment: Deployment, gatekeeper: cpam.Gatekeeper) -> None:
    cm = cpam.ConnectionManager(str(deployment.profile))

    async def main() -> int:
        fwd = await cm.forward_async("ssh")
        try:
            return await fwd.launch_desktop_async(sys.executable, ["-c", _BANNER_CLIENT, "{addr}"])
        finally:
            await fwd.close_async()

    assert asyncio.run(main()) == 0
