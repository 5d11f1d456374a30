"""Run a command on a customer host with stock `ssh`, through a local forward.

    python run_command.py --profile vendor.profile --service ssh \
        --key ~/.ssh/id_ed25519 --login root -- uname -a

`ConnectionManager.forward` listens on a local port; each connection to it is
one session through the tunnel. Any TCP client works: here, OpenSSH.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import cpam


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", required=True)
    ap.add_argument("--service", required=True)
    ap.add_argument("--key", required=True, help="your SSH key for the target")
    ap.add_argument("--login", default="root")
    ap.add_argument("command", nargs="+")
    args = ap.parse_args()

    cm = cpam.ConnectionManager(args.profile)
    with cm.forward(args.service, listen="127.0.0.1:0") as fwd:
        ssh = [
            "ssh", "-F", "/dev/null", "-i", args.key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            # The forward's port changes every run; the target's key is checked by
            # the server's profile pinning, not by this throwaway known_hosts.
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-p", str(fwd.port), f"{args.login}@{fwd.host}", *args.command,
        ]
        return subprocess.run(ssh).returncode


if __name__ == "__main__":
    sys.exit(main())
