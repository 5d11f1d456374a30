"""The embedded gatekeeper: registration, background run, status, events,
the customer's switch, stop."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest

import cpam
from harness import Deployment, bin_path


def test_registration_refusals(deployment: Deployment, tmp_path: Path) -> None:
    with pytest.raises(cpam.UnauthenticatedError, match="registration refused") as e:
        cpam.register_gatekeeper(deployment.address, "not-a-code", str(tmp_path / "a"))
    assert e.value.kind == "unauthenticated"
    code = deployment.new_gatekeeper_code("gk-pinned")
    with pytest.raises(cpam.UnauthenticatedError, match="does not match the pinned one"):
        cpam.register_gatekeeper(deployment.address, code, str(tmp_path / "b"),
                                 server_fingerprint="SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")


def test_status_of_the_running_gatekeeper(deployment: Deployment, gatekeeper: cpam.Gatekeeper) -> None:
    st = gatekeeper.status()
    assert st["running"] and st["online"] and not st["disabled"], st
    assert st["name"] == "gk1" == gatekeeper.name and st["id"] == gatekeeper.id and st["id"].startswith("gk_")
    assert st["server"] == deployment.address
    with pytest.raises(cpam.InvalidArgumentError, match="already running"):
        gatekeeper.start()
    with pytest.raises(cpam.InvalidArgumentError, match="already registered"):
        cpam.register_gatekeeper(deployment.address, "x", str(deployment.gk_state))


def test_customer_switch_refuses_then_allows_sessions(deployment: Deployment,
                                                      gatekeeper: cpam.Gatekeeper) -> None:
    cm = cpam.ConnectionManager(str(deployment.profile))
    gatekeeper.disable()
    try:
        event = gatekeeper.next_event(timeout=10)
        assert event is not None and event["type"] == "gatekeeper_switch" and event["disabled"] is True, event
        assert gatekeeper.status()["disabled"] is True
        with pytest.raises(cpam.PermissionDeniedError, match="refused `ssh`"):
            cm.open_session("ssh")
    finally:
        gatekeeper.enable()
    event = gatekeeper.next_event(timeout=10)
    assert event is not None and event["type"] == "gatekeeper_switch" and event["disabled"] is False, event
    with cm.open_session("ssh") as s:
        assert s.read(7) == b"SSH-2.0"


def test_opening_hours_close_the_gatekeeper(deployment: Deployment, gatekeeper: cpam.Gatekeeper) -> None:
    """The customer's opening hours (set with `cpam-gatekeeper schedule`) close
    the gatekeeper like the switch, and the event says why."""
    while gatekeeper.next_event(timeout=0.2) is not None:
        pass
    days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    other = days[(int(time.time()) // 86_400 + 3 + 2) % 7]  # a whole day that is not today (UTC)

    def schedule(*args: str) -> None:
        subprocess.run([str(bin_path("cpam-gatekeeper")), "schedule", "--state-dir", str(deployment.gk_state),
                        *args], check=True, capture_output=True)

    cm = cpam.ConnectionManager(str(deployment.profile))
    schedule("--days", other, "--hours", "00:00-00:00")
    try:
        event = gatekeeper.next_event(timeout=10)
        assert event is not None and event["type"] == "gatekeeper_switch", event
        assert event["disabled"] is True and event["switched_off"] is False, event
        assert event["schedule"] == f"{other} 00:00-00:00", event
        with pytest.raises(cpam.PermissionDeniedError):
            cm.open_session("ssh")
    finally:
        schedule("--always")
    event = gatekeeper.next_event(timeout=10)
    assert event is not None and event["disabled"] is False and event["schedule"] is None, event
    with cm.open_session("ssh") as s:
        assert s.read(7) == b"SSH-2.0"


def test_blocking_wait_releases_the_gil(deployment: Deployment, gatekeeper: cpam.Gatekeeper) -> None:
    got: list[object] = []
    waiter = threading.Thread(target=lambda: got.append(gatekeeper.next_event(timeout=30)))
    waiter.start()
    # This thread keeps running Python while the other one waits in Rust:
    # it is the one that makes the awaited event happen.
    gatekeeper.disable()
    waiter.join(timeout=30)
    gatekeeper.enable()
    assert got and isinstance(got[0], dict) and got[0]["type"] == "gatekeeper_switch", got
    assert gatekeeper.next_event(timeout=10) is not None  # the enable


def test_second_gatekeeper_lifecycle(deployment: Deployment, tmp_path: Path) -> None:
    code = deployment.new_gatekeeper_code("gk2")
    state = tmp_path / "gk2"
    reg = cpam.register_gatekeeper(deployment.address, code, state, server_fingerprint=deployment.fingerprint)
    assert reg["name"] == "gk2" and reg["gatekeeper_id"].startswith("gk_") and reg["server"] == deployment.address
    with cpam.Gatekeeper(state, allow=deployment.allow) as gk:
        assert gk.status()["running"] is False
        assert gk.next_event(timeout=0.1) is None
        gk.start()
        assert (gk.next_event(timeout=30) or {}).get("type") == "gatekeeper_online"
        listed = deployment.admin_json("gatekeeper", "list")
        assert any(g["name"] == "gk2" and g["online"] for g in listed), listed
    # Leaving the block stopped it.
    assert gk.status()["running"] is False and gk.status()["online"] is False
    events = [gk.next_event(timeout=5), gk.next_event(timeout=5)]
    assert [e and e["type"] for e in events] == ["gatekeeper_offline", "gatekeeper_stopped"], events
    assert events[1] is not None and events[1]["error"] is None
    gk.stop()  # stopping twice is fine


def test_offline_gatekeeper_is_tunnel_unavailable(deployment: Deployment, gatekeeper: cpam.Gatekeeper) -> None:
    cm = cpam.ConnectionManager(str(deployment.profile))
    gatekeeper.stop()
    try:
        assert [(gatekeeper.next_event(timeout=10) or {}).get("type") for _ in range(2)] == [
            "gatekeeper_offline", "gatekeeper_stopped"]
        with pytest.raises(cpam.TunnelUnavailableError) as e:
            cm.open_session("ssh")
        assert e.value.kind == "tunnel_unavailable"
    finally:
        gatekeeper.start()  # a stopped gatekeeper starts again
    assert (gatekeeper.next_event(timeout=30) or {}).get("type") == "gatekeeper_online"
    with cm.open_session("ssh") as s:
        assert s.read(7) == b"SSH-2.0"
