"""Watch every session live, and stop the one that shows a forbidden text.

    cpam-server init --data-dir ./server --listen 127.0.0.1:2222
    python supervise_sessions.py --data-dir ./server --forbid 'DROP TABLE' \
        [--vault-set db1@acme --username root --key-file ./id_ed25519]

The cpam server runs inside this program (`cpam.Server` over the data dir).
With `--vault-set`, it first stores the credential of an SSH service in the
server's vault (encrypted; audited with the actor `supervisor`, never with
the secret), so vendors reach that host without ever learning it.

Then it follows the engine's events. For each session that starts, a thread
watches its terminal (`Server.watch`, audited as `session.watch.start` /
`.stop`), and prints what the target shows, line by line, prefixed with
the session's id. What the vendor types is never shown (only what the
target echoes), and password prompts never are. When the output contains
the forbidden text, the session is ended at once with `Server.terminate`:
the reason is audited and shown to the vendor in their terminal.

What users do inside their sessions arrives as `session_activity` events:
each file moved through File Transfer (path, direction, size, SHA-256),
each change on the target's files, each command. This program prints them
as `activity {...}` lines; a product would forward them to its own log.

Watching works for terminal sessions: SSH services (kind `ssh`) through the
server's SSH proxy, native or in the browser. Plain TCP services carry
bytes cpam does not interpret. Stop with Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cpam

ACTOR = "supervisor"


def supervise(server: cpam.Server, session: dict[str, Any], forbid: str) -> None:
    sid = session["id"]
    # The session's terminal opens a moment after the session starts.
    deadline = time.monotonic() + 10
    while True:
        try:
            watch = server.watch(sid, ACTOR)
            break
        except cpam.ConflictError:
            if time.monotonic() > deadline:
                print(f"[{sid}] has no terminal to watch", flush=True)
                return
            time.sleep(0.1)
        except cpam.NotFoundError:
            return  # already over
    print(f"[{sid}] watching {session['user_name']} on {session['service_name']}", flush=True)
    shown = ""
    line = ""
    while True:
        frame = watch.next(timeout=60)
        if frame is None:
            continue
        if frame["type"] in ("snapshot", "output"):
            text = frame["data"].decode("utf-8", "replace")
            shown = (shown + text)[-4096:]
            line += text
            *done, line = line.replace("\r", "").split("\n")
            for part in done:
                print(f"[{sid}] {part}", flush=True)
            if forbid in shown:
                reason = f"the output showed {forbid!r}, which this customer does not allow"
                try:
                    server.terminate(sid, ACTOR, reason)
                    print(f"[{sid}] terminated: {reason}", flush=True)
                except cpam.NotFoundError:
                    pass  # it ended by itself meanwhile
                shown = ""
        elif frame["type"] == "end":
            print(f"[{sid}] ended: {frame['reason']}", flush=True)
            return


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True, help="made by `cpam-server init`")
    ap.add_argument("--listen", help="IP:PORT (default: the data dir's)")
    ap.add_argument("--forbid", required=True, help="end a session whose output shows this text")
    ap.add_argument("--vault-set", metavar="SERVICE@CUSTOMER", help="store this service's credential first")
    ap.add_argument("--username", help="with --vault-set: the account on the target")
    ap.add_argument("--key-file", type=Path, help="with --vault-set: an OpenSSH private key")
    args = ap.parse_args()

    with cpam.Server(args.data_dir) as server:
        if args.vault_set:
            if not (args.username and args.key_file):
                print("--vault-set needs --username and --key-file", file=sys.stderr)
                return 2
            info = server.set_credential(args.vault_set, args.username, actor=ACTOR,
                                         private_key=args.key_file.read_text())
            print(f"stored the credential of {args.vault_set} ({info['kind']} for {info['username']})", flush=True)
        for c in server.credentials():
            print(f"vault: {c['service']} as {c['username']} ({c['kind']})", flush=True)
        print(f"cpam server listening on {server.start(args.listen)}", flush=True)
        try:
            while True:
                event = server.next_event(timeout=60)
                if event is None:
                    continue
                if event["type"] == "session_started":
                    threading.Thread(target=supervise, args=(server, event["session"], args.forbid),
                                     daemon=True).start()
                elif event["type"] in ("session_ended", "session_refused"):
                    print("event", json.dumps(event, sort_keys=True), flush=True)
                elif event["type"] == "session_activity":
                    print("activity", json.dumps(event, sort_keys=True), flush=True)
        except KeyboardInterrupt:
            live = server.live_sessions()
            print(f"stopping with {len(live)} live session(s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
