"""IP Connect from Python: the user's services at local addresses and names
(the legacy mode on loopback here; the driver needs a network namespace,
see tests/ipconnect_driver_e2e.rs), its status, mappings and events."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, Optional

import pytest

import cpam
from harness import Deployment

OTHER = "127.0.0.1\tlocalhost\n"


def next_of(ipc: cpam.IpConnect, kind: str) -> Any:
    """The next event of type ``kind`` (others are skipped)."""
    for _ in range(50):
        ev: Optional[Any] = ipc.next_event(timeout=30)
        assert ev is not None, f"no {kind} event"
        if ev["type"] == kind:
            return ev
    raise AssertionError(f"no {kind} event among 50")


def test_ip_connect_maps_the_service_and_reports_changes(
    deployment: Deployment, gatekeeper: cpam.Gatekeeper, tmp_path: Path
) -> None:
    deployment.admin("user", "ip-connect-mode", "vendor", "legacy")
    hosts = tmp_path / "hosts"
    hosts.write_text(OTHER)
    with pytest.raises(cpam.InvalidArgumentError, match="at least one profile"):
        cpam.IpConnect([], tmp_path / "state")
    ipc = cpam.IpConnect([str(deployment.profile)], tmp_path / "state", hosts_file=hosts,
                         range="127.78.0.0/16", poll=0.5)
    with ipc:
        ipc.start()
        mode = next_of(ipc, "mode")
        assert (mode["customer"], mode["mode"]) == ("acme", "legacy"), mode
        added = next_of(ipc, "mapping_added")["mapping"]
        assert added["mode"] == "legacy" and added["local"].startswith("127.78."), added
        assert added["hostnames"] == ["ssh.acme.cpam"] and added["target"] == deployment.service_target
        assert [m["local"] for m in ipc.mappings()] == [added["local"]]
        status = ipc.status()
        assert status["profiles"][0]["mode"] == "legacy" and status["driver"] is None, status
        assert "ssh.acme.cpam" in hosts.read_text()

        # Stock ssh reaches sshd at the mapped address.
        host, port = added["local"].rsplit(":", 1)
        args = [a if a != "root@127.0.0.1" else f"root@{host}"
                for a in deployment.sshd.ssh_args(int(port), "echo", "mapped")]
        out = subprocess.run(args, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and out.stdout.strip() == "mapped", out.stderr + deployment.logs()

        # Off, live: the mapping and its name go.
        deployment.admin("user", "ip-connect-mode", "vendor", "off")
        removed = next_of(ipc, "mapping_removed")["mapping"]
        assert removed["local"] == added["local"]
    assert hosts.read_text() == OTHER
    deployment.admin("user", "ip-connect-mode", "vendor", "global")
