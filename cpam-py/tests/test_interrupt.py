"""Process-level behaviour: Ctrl-C interrupts a blocking call (SIGINT to a
process blocked in Rust raises KeyboardInterrupt there at once, instead of
after the timeout), and a forked child gets an error instead of a hang."""

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


FORKED = """
import os, sys, cpam
def kind(f):
    try:
        f()
    except cpam.CpamError as e:
        return f"{e.kind}: {e}"
missing = "sqlite:///nonexistent/cpam.db"
print("parent", kind(lambda: cpam.verify_audit(missing)), flush=True)
pid = os.fork()
if pid == 0:
    print("child", kind(lambda: cpam.verify_audit(missing)), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
print("parent again", kind(lambda: cpam.verify_audit(missing)), flush=True)
"""


def test_a_forked_child_is_refused_not_hung() -> None:
    out = subprocess.run([sys.executable, "-c", FORKED], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("parent not_found: no database"), lines
    assert lines[1].startswith("child internal: cpam was started before this process forked"), lines
    assert lines[2].startswith("parent again not_found"), lines
