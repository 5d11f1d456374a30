"""Register a gatekeeper with its one-time code and run it until Ctrl-C.

    python register_gatekeeper.py --server cpam.example.com:2222 --code CODE \
        --fingerprint SHA256:... --state-dir ./gk --allow 10.1.0.0/16:22

The customer runs this inside their network. The gatekeeper dials out to the
server; nothing listens here. `--allow` is the customer's own allow-list of
what the server may ask it to reach. Registering is needed once: on later
runs leave out `--code`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cpam


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", required=True, help="the server's HOST:PORT")
    ap.add_argument("--code", help="one-time registration code (first run only)")
    ap.add_argument("--fingerprint", help="the server key's SHA256:... fingerprint, to pin")
    ap.add_argument("--state-dir", type=Path, required=True)
    ap.add_argument("--allow", action="append", required=True, help="CIDR:PORTS, repeatable")
    args = ap.parse_args()

    if args.code:
        reg = cpam.register_gatekeeper(args.server, args.code, args.state_dir, server_fingerprint=args.fingerprint)
        print(f"registered {reg['name']} ({reg['gatekeeper_id']}) at {reg['server']}", flush=True)

    with cpam.Gatekeeper(args.state_dir, allow=args.allow) as gk:
        gk.start()
        try:
            # Events arrive as dicts; their "type" says what happened.
            while True:
                event = gk.next_event(timeout=60)
                if event is None:
                    continue
                if event["type"] == "gatekeeper_online":
                    print(f"gatekeeper {gk.name} online", flush=True)
                elif event["type"] == "gatekeeper_offline":
                    print(f"gatekeeper {gk.name} offline, reconnecting", flush=True)
                elif event["type"] == "gatekeeper_switch":
                    print(f"customer switch: {'disabled' if event['disabled'] else 'enabled'}", flush=True)
                elif event["type"] == "gatekeeper_stopped":
                    print(f"gatekeeper stopped: {event.get('error')}", flush=True)
                    break
        except KeyboardInterrupt:
            # Ctrl-C interrupts the blocking wait; leaving the `with` block
            # closes the tunnel and every session through it.
            print("stopping", flush=True)


if __name__ == "__main__":
    main()
