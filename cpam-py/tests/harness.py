"""Real peers for the Python tests: the built ``cpam-server`` binary and a
stock OpenSSH ``sshd`` target, both on loopback, on free ports.

``CPAM_BIN_DIR`` names the directory holding the built binaries
(``target/debug``); ``tests/python_e2e.rs`` sets it. Processes are stopped by
PID; a missing binary or peer is an error, never a skip.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Optional

START_TIMEOUT = 30.0
SSHD = "/usr/sbin/sshd"


def bin_path(name: str) -> Path:
    d = os.environ.get("CPAM_BIN_DIR")
    if not d:
        raise RuntimeError(
            "CPAM_BIN_DIR is not set: run the Python tests through `cargo test -p cpam-tests "
            "--test python_e2e` (or set it to the directory holding cpam-server)"
        )
    p = Path(d) / name
    if not p.is_file():
        raise RuntimeError(f"binary {p} not found; run `cargo build --workspace` first")
    return p


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def can_connect(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def wait_until(what: str, check: Any, timeout: float = START_TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = check()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class Proc:
    """A child process with its output in ``DIR/NAME.out``; stopped by PID."""

    def __init__(self, name: str, args: list[str], cwd: Path, env: Optional[dict[str, str]] = None):
        self.name = name
        self.log = cwd / f"{name}.out"
        self._out = open(self.log, "wb")
        self.popen = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT,
            cwd=cwd, env={**os.environ, **(env or {})},
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_line(self, prefix: str) -> str:
        def found() -> Optional[tuple[str]]:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.popen.returncode}):\n{self.output()}")
            for line in self.output().splitlines():
                if line.startswith(prefix):
                    return (line[len(prefix):].strip(),)
            return None
        return str(wait_until(f"{self.name} to print {prefix!r}", found)[0])

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        self._out.close()


def run(args: list[str], cwd: Path, timeout: float = 60) -> str:
    """Runs a command to completion; fails with its output unless it exits 0."""
    out = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out.stdout


def keygen(path: Path) -> None:
    if shutil.which("ssh-keygen") is None:
        raise RuntimeError("ssh-keygen not found: install openssh-client (tests/run.sh does)")
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "cpam-py", "-f", str(path)], path.parent)


class Sshd:
    """Stock ``sshd -D -e`` on 127.0.0.1:PORT authorising ``client_key`` for root."""

    def __init__(self, dir: Path):
        if not Path(SSHD).is_file():
            raise RuntimeError(f"{SSHD} not found: install openssh-server (tests/run.sh does)")
        d = dir / "sshd"
        d.mkdir()
        host_key, self.client_key = d / "host_ed25519", dir / "client_ed25519"
        keygen(host_key)
        keygen(self.client_key)
        authorized = d / "authorized_keys"
        shutil.copy(self.client_key.with_suffix(".pub"), authorized)
        self.port = free_port()
        config = d / "sshd_config"
        config.write_text(
            f"ListenAddress 127.0.0.1\nPort {self.port}\nHostKey {host_key}\nPidFile none\n"
            f"AuthorizedKeysFile {authorized}\nPermitRootLogin prohibit-password\nUsePAM no\n"
            "StrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            # The tests open many sessions at once that only read the banner:
            # more unauthenticated connections than sshd's default of 10.
            "MaxStartups 200\n"
            # File Transfer goes through the target's own SFTP server.
            "Subsystem sftp internal-sftp\n"
        )
        Path("/run/sshd").mkdir(exist_ok=True)
        self.proc = Proc("sshd", [SSHD, "-D", "-e", "-f", str(config)], dir)
        wait_until("sshd to accept", lambda: can_connect(self.port) or self.proc.popen.poll() is not None)
        if self.proc.popen.poll() is not None:
            raise RuntimeError(f"sshd exited at start:\n{self.proc.output()}")

    def ssh_args(self, port: int, *command: str) -> list[str]:
        """Stock ``ssh`` to root@127.0.0.1:PORT (e.g. a forward) with the client key."""
        return [
            "ssh", "-F", "/dev/null", "-i", str(self.client_key), "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10", "-p", str(port), "root@127.0.0.1", *command,
        ]


class Deployment:
    """A running ``cpam-server`` with customer ``acme``, gatekeeper ``gk1``
    (not yet registered: ``code``), service ``ssh`` -> the sshd, user
    ``vendor`` with a grant, and user ``nogrant`` without one. Profiles are
    exported once gk1 is registered (``profile_of``)."""

    def __init__(self, dir: Path):
        self.dir = dir
        self.sshd = Sshd(dir)
        self.server: Optional[Proc] = None
        try:
            self._set_up(dir)
        except BaseException:
            # A failed set-up leaves nothing running behind it.
            self.stop()
            raise

    def _set_up(self, dir: Path) -> None:
        self.data_dir = dir / "server"
        init = run([str(bin_path("cpam-server")), "init", "--listen", "127.0.0.1:0",
                    "--data-dir", str(self.data_dir)], dir)
        self.fingerprint = init.split("server key fingerprint:")[1].split()[0]
        self.start_server()
        self.admin("customer", "add", "acme")
        gk = self.admin_json("gatekeeper", "add", "--customer", "acme", "gk1")
        self.code: str = gk["code"]
        self.service_target = f"127.0.0.1:{self.sshd.port}"
        self.admin("service", "add", "--customer", "acme", "ssh", "--target", self.service_target)
        for user in ("vendor", "nogrant"):
            self.admin("user", "add", user)
        self.admin("grant", "add", "--user", "vendor", "--customer", "acme", "--service", "ssh")
        self.allow = [f"127.0.0.0/8:{self.sshd.port}"]
        self.gk_state = dir / "gatekeeper"
        self._profiles: dict[str, Path] = {}

    def start_server(self) -> None:
        self.server = Proc("server", [str(bin_path("cpam-server")), "run", "--listen", "127.0.0.1:0",
                                      "--web-listen", "127.0.0.1:0", "--data-dir", str(self.data_dir)],
                           self.dir)
        self.address = self.server.wait_for_line("cpam-server listening on ")

    def admin(self, *args: str) -> str:
        return run([str(bin_path("cpam-server")), *args, "--data-dir", str(self.data_dir)], self.dir)

    def admin_json(self, *args: str) -> Any:
        return json.loads(self.admin(*args, "--json"))

    def profile_of(self, user: str) -> Path:
        """``user``'s profile for gk1 (exported once gk1 is registered)."""
        if user not in self._profiles:
            out = self.dir / f"{user}.profile"
            self.admin("profile", "export", "--user", user, "--gatekeeper", "gk1", "--out", str(out),
                       "--server-address", self.address)
            self._profiles[user] = out
        return self._profiles[user]

    @property
    def profile(self) -> Path:
        return self.profile_of("vendor")

    def new_gatekeeper_code(self, name: str) -> str:
        return str(self.admin_json("gatekeeper", "add", "--customer", "acme", name)["code"])

    def sessions(self) -> list[dict[str, Any]]:
        return list(self.admin_json("sessions", "list", "--limit", "100000"))

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')}" for p in sorted(self.dir.glob("*.out")))

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.sshd.proc.stop()
