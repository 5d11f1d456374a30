"""Ctrl-C interrupts a blocking call: SIGINT to a process blocked in Rust
raises KeyboardInterrupt there at once, instead of after the timeout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import cpam
from harness import Deployment

BLOCKED = """
import sys, cpam
gk = cpam.Gatekeeper(sys.argv[1], allow=[sys.argv[2]])
try:
    print("blocking", flush=True)
    gk.next_event(timeout=120)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(3)
print("not interrupted", flush=True)
"""


def test_sigint_interrupts_next_event(deployment: Deployment, gatekeeper: cpam.Gatekeeper) -> None:
    p = subprocess.Popen([sys.executable, "-c", BLOCKED, str(deployment.gk_state), deployment.allow[0]],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "blocking"
        time.sleep(1)  # let it get into the call
        os.kill(p.pid, signal.SIGINT)
        # Far below the call's 120 s timeout: only the interrupt can end it.
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
    assert p.returncode == 3, (p.returncode, out, err)
    assert "interrupted" in out
