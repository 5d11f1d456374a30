"""Run a command on a customer host without ever holding its credential.

    CPAM_MASTER_PASSWORD=... python privileged_session.py --profile vendor.profile \
        --service db1 [--for 3600] -- uptime

The service is of kind `ssh`: its credential lives in the server's vault.
The script checks the credential out for a while (the server keeps the
secret), opens a local forward, and runs stock `ssh` through it. `ssh`
verifies the server's host key (the one the profile pins) and is asked for
your **master password**, which `SSH_ASKPASS` answers here from the
environment; the server then logs in to the target with the vault's
credential, records the session, and relays it. The SSH user name is
ignored: the session runs as the vault's account. At the end the
credential is checked back in.

First time: set a master password with `--set-master` (it asks for your
login password in `CPAM_LOGIN_PASSWORD`).
"""

from __future__ import annotations

import argparse
import datetime
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import cpam


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", required=True)
    ap.add_argument("--service", required=True)
    ap.add_argument("--for", dest="seconds", type=int, help="checkout length in seconds (default: the longest)")
    ap.add_argument("--set-master", action="store_true", help="set the master password first")
    ap.add_argument("command", nargs="+")
    args = ap.parse_args()
    master = os.environ.get("CPAM_MASTER_PASSWORD")
    if not master:
        print("set CPAM_MASTER_PASSWORD", file=sys.stderr)
        return 2

    cm = cpam.ConnectionManager(args.profile)
    if args.set_master:
        cm.set_master_password(os.environ.get("CPAM_LOGIN_PASSWORD", ""), master)
    checkout = cm.checkout(args.service, args.seconds)
    until = datetime.datetime.fromtimestamp(checkout["expires_at"] / 1000, tz=datetime.timezone.utc)
    print(f"checked out {args.service} until {until:%Y-%m-%d %H:%M} UTC", file=sys.stderr)
    try:
        with tempfile.TemporaryDirectory() as tmp, cm.forward(args.service) as fwd:
            known_hosts = Path(tmp, "known_hosts")
            known_hosts.write_text(f"cpam {cm.server_key}\n")
            # SSH_ASKPASS answers the master password prompt without a terminal.
            askpass = Path(tmp, "askpass")
            askpass.write_text('#!/bin/sh\nprintf "%s\\n" "$CPAM_MASTER_PASSWORD"\n')
            askpass.chmod(stat.S_IRWXU)
            env = dict(os.environ, SSH_ASKPASS=str(askpass), SSH_ASKPASS_REQUIRE="force", DISPLAY=":0")
            ssh = [
                "ssh", "-F", "/dev/null", "-o", "HostKeyAlias=cpam", "-o", f"UserKnownHostsFile={known_hosts}",
                "-o", "StrictHostKeyChecking=yes", "-o", "PreferredAuthentications=keyboard-interactive",
                "-o", "NumberOfPasswordPrompts=1", "-p", str(fwd.port), f"vendor@{fwd.host}", *args.command,
            ]
            return subprocess.run(ssh, env=env).returncode
    finally:
        cm.checkin(args.service)
        print(f"checked {args.service} back in", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
