"""The tutorials in examples/python, run as a user would run them against a
real server, a stock sshd target and stock ssh."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from harness import Deployment, Proc

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
