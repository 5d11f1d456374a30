"""The tutorials in examples/python, run as a user would run them against a
real server, a stock sshd target and stock ssh."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

import cpam
from harness import Deployment, Proc, bin_path, run, wait_until

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "python"


def example(name: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(EXAMPLES / name), *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def running_gatekeeper(deployment: Deployment) -> Iterator[Proc]:
    """register_gatekeeper.py, left running in the background."""
    p = Proc("register_gatekeeper", [
        sys.executable, str(EXAMPLES / "register_gatekeeper.py"), "--server", deployment.address,
        "--code", deployment.code, "--fingerprint", deployment.fingerprint,
        "--state-dir", str(deployment.gk_state), "--allow", deployment.allow[0],
    ], deployment.dir)
    p.wait_for_line("gatekeeper gk1 online")
    yield p
    # Ctrl-C: the example stops its gatekeeper and exits 0.
    os.kill(p.popen.pid, signal.SIGINT)
    assert p.popen.wait(timeout=20) == 0, p.output()
    assert "stopping" in p.output()
    p.stop()


def test_register_gatekeeper(deployment: Deployment, running_gatekeeper: Proc) -> None:
    assert "registered gk1 (gk_" in running_gatekeeper.output()
    listed = deployment.admin_json("gatekeeper", "list")
    assert any(g["name"] == "gk1" and g["online"] for g in listed), listed


def test_open_session(deployment: Deployment, running_gatekeeper: Proc) -> None:
    out = example("open_session.py", "--profile", str(deployment.profile), "--service", "ssh")
    assert out.returncode == 0, out.stderr
    assert "gatekeeper gk1 online: True" in out.stdout
    assert "target says: SSH-2.0-OpenSSH" in out.stdout
    refused = example("open_session.py", "--profile", str(deployment.profile_of("nogrant")), "--service", "ssh")
    assert refused.returncode == 2 and "refused (permission_denied)" in refused.stderr, refused


def test_run_command(deployment: Deployment, running_gatekeeper: Proc) -> None:
    out = example("run_command.py", "--profile", str(deployment.profile), "--service", "ssh",
                  "--key", str(deployment.sshd.client_key), "--", "echo", "ran", "through", "cpam")
    assert out.returncode == 0, out.stderr + deployment.logs()
    assert out.stdout.strip() == "ran through cpam"


def test_proxy_command(deployment: Deployment, running_gatekeeper: Proc) -> None:
    proxy = f"{sys.executable} {EXAMPLES / 'proxy_command.py'} --profile {deployment.profile} --service ssh"
    args = deployment.sshd.ssh_args(22, "echo", "via", "ProxyCommand")
    args[1:1] = ["-o", f"ProxyCommand={proxy}"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr + deployment.logs()
    assert out.stdout.strip() == "via ProxyCommand"


def test_read_audit(deployment: Deployment, running_gatekeeper: Proc) -> None:
    out = example("read_audit.py", "--data-dir", str(deployment.data_dir))
    assert out.returncode == 0, out.stderr
    assert "session.start" in out.stdout and "gatekeeper.online" in out.stdout
    assert out.stdout.strip().splitlines()[-1].startswith("audit chain intact (")
    user = example("read_audit.py", "--data-dir", str(deployment.data_dir), "--category", "user-activity")
    assert "gatekeeper.online" not in user.stdout and "session.refused" in user.stdout


def test_server_hooks(deployment: Deployment, tmp_path: Path) -> None:
    data = tmp_path / "server"
    cli = str(bin_path("cpam-server"))
    run([cli, "init", "--listen", "127.0.0.1:0", "--data-dir", str(data)], tmp_path)
    server = Proc("server_hooks", [sys.executable, str(EXAMPLES / "server_hooks.py"), "--data-dir", str(data),
                                   "--listen", "127.0.0.1:0", "--deny-user", "contractor"], tmp_path)
    try:
        address = server.wait_for_line("cpam server listening on ")

        def admin(*args: str) -> str:
            return run([cli, *args, "--data-dir", str(data)], tmp_path)

        admin("customer", "add", "acme")
        code = json.loads(admin("gatekeeper", "add", "--customer", "acme", "gk1", "--json"))["code"]
        admin("service", "add", "--customer", "acme", "ssh", "--target", deployment.service_target)
        cpam.register_gatekeeper(address, code, str(tmp_path / "gk"))
        with cpam.Gatekeeper(str(tmp_path / "gk"), allow=deployment.allow) as gk:
            gk.start()
            assert (gk.next_event(timeout=30) or {}).get("type") == "gatekeeper_online"
            for user in ("vendor", "contractor"):
                admin("user", "add", user)
                admin("grant", "add", "--user", user, "--customer", "acme", "--service", "ssh")
                admin("profile", "export", "--user", user, "--gatekeeper", "gk1",
                      "--out", str(tmp_path / user), "--server-address", address)
            with cpam.ConnectionManager(str(tmp_path / "vendor")).open_session("ssh") as s:
                assert s.read(7) == b"SSH-2.0"
            with pytest.raises(cpam.PermissionDeniedError):
                cpam.ConnectionManager(str(tmp_path / "contractor")).open_session("ssh")
            wait_until("the refusal event", lambda: '"type": "session_refused"' in server.output())
        out = server.output()
        assert "contractor needs an approved change ticket for ssh" in out, out
        assert '"type": "gatekeeper_online"' in out and '"type": "session_started"' in out, out
        assert "session.start by vendor" in out and "session.refused by contractor" in out, out
        os.kill(server.popen.pid, signal.SIGINT)
        assert server.popen.wait(timeout=20) == 0, server.output()
        assert "audit records forwarded" in server.output()
    finally:
        server.stop()
    assert cpam.verify_audit(str(data))["intact"]


def test_privileged_session_and_review_recordings(deployment: Deployment, running_gatekeeper: Proc) -> None:
    """privileged_session.py runs a command through the SSH proxy with the
    vault's key; review_recordings.py verifies and prints its recording."""
    d = deployment
    server = str(bin_path("cpam-server"))
    d.admin("service", "add", "--customer", "acme", "db1", "--target", d.service_target, "--kind", "ssh")
    subprocess.run([server, "vault", "set", "db1@acme", "--username", "root", "--key-file", str(d.sshd.client_key),
                    "--data-dir", str(d.data_dir)], check=True, capture_output=True, timeout=60)
    subprocess.run([server, "user", "add", "psm", "--password-stdin", "--data-dir", str(d.data_dir)],
                   input="psm-login-password\n", text=True, check=True, capture_output=True, timeout=60)
    d.admin("grant", "add", "--user", "psm", "--customer", "acme", "--service", "db1")
    env = dict(os.environ, CPAM_MASTER_PASSWORD="psm-master-password", CPAM_LOGIN_PASSWORD="psm-login-password")
    out = subprocess.run([sys.executable, str(EXAMPLES / "privileged_session.py"), "--profile",
                          str(d.profile_of("psm")), "--service", "db1", "--set-master", "--",
                          "echo", "privileged-$((6*7))", "as", "$(whoami)"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr + d.logs()
    assert out.stdout.strip() == "privileged-42 as root"
    assert "checked db1 back in" in out.stderr
    session = next(s for s in d.sessions() if s["service_name"] == "db1")
    assert session["protocol"] == "ssh"
    recordings = wait_until("the recording to be sealed", lambda: [
        r for r in cpam.list_recordings(str(d.data_dir), session["id"]) if r["state"] == "complete"
    ])
    review = example("review_recordings.py", "--data-dir", str(d.data_dir), "--session", session["id"])
    assert review.returncode == 0, review.stdout + review.stderr
    assert f"== {recordings[0]['id']}: complete" in review.stdout
    assert "privileged-42 as root" in review.stdout
    found = example("review_recordings.py", "--data-dir", str(d.data_dir), "--search", "privileged-42")
    assert recordings[0]["id"] in found.stdout, found.stdout
    # The same from asyncio, and a tampered recording is named.
    import asyncio

    async def read() -> cpam.types.Recording:
        return await cpam.read_recording_async(str(d.data_dir), recordings[0]["id"])

    rec = asyncio.run(read())
    assert any("privileged-42" in e["data"] for e in rec["events"] if e["kind"] == "output")
    cast = d.data_dir / "recordings" / f"{recordings[0]['id']}.cast"
    data = bytearray(cast.read_bytes())
    data[len(data) // 2] ^= 0x20
    cast.write_bytes(bytes(data))
    with pytest.raises(cpam.RecordingError):
        cpam.verify_recording(str(d.data_dir), recordings[0]["id"])
    bad = example("review_recordings.py", "--data-dir", str(d.data_dir), "--session", session["id"])
    assert bad.returncode == 1 and "DOES NOT VERIFY" in bad.stdout, bad.stdout


def test_supervise_sessions(deployment: Deployment, tmp_path: Path) -> None:
    """supervise_sessions.py stores a credential in the vault of the server
    it embeds, watches a privileged session live and ends it when its
    output shows the forbidden text; the vendor sees why."""
    d = deployment
    data = tmp_path / "server"
    cli = str(bin_path("cpam-server"))
    run([cli, "init", "--listen", "127.0.0.1:0", "--data-dir", str(data)], tmp_path)

    def admin(*args: str) -> str:
        return run([cli, *args, "--data-dir", str(data)], tmp_path)

    admin("customer", "add", "acme")
    code = json.loads(admin("gatekeeper", "add", "--customer", "acme", "gk1", "--json"))["code"]
    admin("service", "add", "--customer", "acme", "db1", "--target", d.service_target, "--kind", "ssh")
    subprocess.run([cli, "user", "add", "psm", "--password-stdin", "--data-dir", str(data)],
                   input="psm-login-password\n", text=True, check=True, capture_output=True, timeout=60)
    admin("grant", "add", "--user", "psm", "--customer", "acme", "--service", "db1")
    server = Proc("supervise_sessions", [
        sys.executable, str(EXAMPLES / "supervise_sessions.py"), "--data-dir", str(data), "--listen", "127.0.0.1:0",
        "--forbid", "forbidden-42", "--vault-set", "db1@acme", "--username", "root",
        "--key-file", str(d.sshd.client_key)], tmp_path)
    try:
        address = server.wait_for_line("cpam server listening on ")
        assert "vault: db1@acme as root (private_key)" in server.output(), server.output()
        cpam.register_gatekeeper(address, code, str(tmp_path / "gk"))
        with cpam.Gatekeeper(str(tmp_path / "gk"), allow=d.allow) as gk:
            gk.start()
            assert (gk.next_event(timeout=30) or {}).get("type") == "gatekeeper_online"
            admin("profile", "export", "--user", "psm", "--gatekeeper", "gk1",
                  "--out", str(tmp_path / "psm.profile"), "--server-address", address)
            env = dict(os.environ, CPAM_MASTER_PASSWORD="psm-master-password",
                       CPAM_LOGIN_PASSWORD="psm-login-password")
            started = time.monotonic()
            vendor = subprocess.run([
                sys.executable, str(EXAMPLES / "privileged_session.py"), "--profile", str(tmp_path / "psm.profile"),
                "--service", "db1", "--set-master", "--",
                "echo hello-from-$(whoami); sleep 1; echo forbidden-$((6*7)); sleep 60"],
                env=env, capture_output=True, text=True, timeout=90)
            took = time.monotonic() - started

            # A file sent with `cpam-connect put` (a checkout of the vault's
            # key, the master password on standard input) arrives as an
            # activity event with its SHA-256.
            local = tmp_path / "fix.bin"
            local.write_bytes(os.urandom(200_003))
            remote = f"/tmp/cpam-py-fix-{os.getpid()}-{time.time_ns()}.bin"
            try:
                checkout = subprocess.run([str(bin_path("cpam-connect")), "--profile", str(tmp_path / "psm.profile"),
                                           "checkout", "db1"], capture_output=True, text=True, timeout=60)
                assert checkout.returncode == 0, checkout
                put = subprocess.run([str(bin_path("cpam-connect")), "--profile", str(tmp_path / "psm.profile"),
                                      "put", "db1", str(local), remote], input="psm-master-password\n",
                                     capture_output=True, text=True, timeout=90)
                assert put.returncode == 0, put
                sha = hashlib.sha256(local.read_bytes()).hexdigest()
                assert Path(remote).read_bytes() == local.read_bytes()

                def file_event() -> dict[str, Any] | None:
                    for line in server.output().splitlines():
                        if line.startswith("activity "):
                            event: dict[str, Any] = json.loads(line[len("activity "):])
                            if event["action"] == "session.file":
                                return event
                    return None

                event = wait_until("the file event", file_event)
                assert event["detail"]["sha256"] == sha and sha in put.stdout + put.stderr, (event, put)
                assert event["detail"]["size"] == 200_003 and event["detail"]["direction"] == "upload", event
                assert event["detail"]["path"] == remote and event["user"] == "psm", event
            finally:
                Path(remote).unlink(missing_ok=True)
        assert vendor.returncode != 0, vendor
        assert took < 30, f"the session was not ended: it ran {took:.0f} s"
        assert "[cpam] session terminated by supervisor" in vendor.stderr + vendor.stdout, vendor
        out = wait_until("the supervisor to see the end", lambda: "ended: terminated" in server.output()
                         and server.output())
        assert "hello-from-root" in out and "terminated: the output showed 'forbidden-42'" in out, out
    finally:
        os.kill(server.popen.pid, signal.SIGINT)
        server.popen.wait(timeout=20)
        server.stop()
    records = cpam.read_audit(str(data))
    actions = [(r["action"], r["actor"]) for r in records]
    for expected in [("admin.vault.set", "supervisor"), ("session.watch.start", "supervisor"),
                     ("admin.session.terminate", "supervisor"), ("session.watch.stop", "supervisor")]:
        assert expected in actions, actions
    assert "BEGIN OPENSSH PRIVATE KEY" not in (data / "cpam.db").read_bytes().decode("latin-1")
    assert cpam.verify_audit(str(data))["intact"]
