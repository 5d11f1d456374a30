"""The wheel's session path end to end: services, then the target's banner."""

from __future__ import annotations

import cpam
from harness import Deployment


def test_session_reaches_the_target_sshd(deployment: Deployment, gatekeeper: cpam.Gatekeeper) -> None:
    cm = cpam.ConnectionManager(str(deployment.profile))
    listing = cm.services()
    assert listing["online"] is True, listing
    assert [s["name"] for s in listing["services"]] == ["ssh"], listing
    with cm.open_session("ssh") as s:
        banner = s.read(256)
        assert banner.startswith(b"SSH-2.0-OpenSSH"), banner
