"""An OpenSSH `ProxyCommand`: stdin and stdout become one session.

    ssh -o ProxyCommand="python proxy_command.py --profile vendor.profile --service ssh" root@db1

No local port at all: `ssh` talks to this program's stdin/stdout, which this
program pumps into and out of a session opened with `open_session`.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading

import cpam


def pump_stdin(session: cpam.Session) -> None:
    """stdin -> session, then EOF towards the target."""
    try:
        while chunk := os.read(0, 64 * 1024):
            session.write(chunk)
        session.shutdown_write()
    except cpam.CpamError:
        pass  # the session ended first; the main thread reports it


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", required=True)
    ap.add_argument("--service", required=True)
    args = ap.parse_args()

    try:
        session = cpam.ConnectionManager(args.profile).open_session(args.service)
    except cpam.CpamError as e:
        print(f"cpam: {e.kind}: {e}", file=sys.stderr)
        return 1
    with session:
        # Blocking calls release the GIL, so both directions run at once.
        threading.Thread(target=pump_stdin, args=(session,), daemon=True).start()
        while data := session.read():
            os.write(1, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
