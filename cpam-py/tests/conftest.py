"""Fixtures: a real deployment (cpam-server + stock sshd) per test module,
and an embedded gatekeeper registered and online in it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import cpam  # noqa: E402
from harness import Deployment  # noqa: E402


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    d = Deployment(tmp_path_factory.mktemp("cpam"))
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture(scope="module")
def gatekeeper(deployment: Deployment) -> Iterator[cpam.Gatekeeper]:
    """gk1, registered from Python and online for the module."""
    cpam.register_gatekeeper(deployment.address, deployment.code, str(deployment.gk_state),
                             server_fingerprint=deployment.fingerprint)
    gk = cpam.Gatekeeper(str(deployment.gk_state), allow=deployment.allow)
    gk.start()
    event = gk.next_event(timeout=30)
    assert event is not None and event["type"] == "gatekeeper_online", f"{event}\n{deployment.logs()}"
    try:
        yield gk
    finally:
        gk.stop()
