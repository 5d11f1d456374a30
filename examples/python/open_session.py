"""Open a session through the tunnel and use it as a byte stream.

    python open_session.py --profile vendor.profile --service ssh

A Connection Manager profile (what `cpam-server profile export` writes) binds
a vendor user to one gatekeeper. Every session is authorized, recorded and
audited by the server; a refused one raises the refusal's exception class.
"""

from __future__ import annotations

import argparse
import sys

import cpam


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", required=True)
    ap.add_argument("--service", required=True)
    args = ap.parse_args()

    cm = cpam.ConnectionManager(args.profile)
    listing = cm.services()
    print(f"gatekeeper {listing['gatekeeper']} online: {listing['online']}")
    for svc in listing["services"]:
        until = f" until {svc['until']}" if svc["until"] else ""
        print(f"  {svc['name']:12} {svc['kind']:8} {svc['target']}{until}")

    try:
        with cm.open_session(args.service) as session:
            # An SSH server speaks first: its version line.
            print("target says:", session.read(256).decode(errors="replace").strip())
    except cpam.PermissionDeniedError as e:
        print(f"refused ({e.kind}): {e}", file=sys.stderr)
        return 2
    except cpam.CpamError as e:
        print(f"failed ({e.kind}): {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
