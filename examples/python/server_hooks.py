"""Run the cpam server inside your own product, with your own parts plugged in.

    cpam-server init --data-dir ./server --listen 127.0.0.1:2222
    python server_hooks.py --data-dir ./server --deny-user contractor

The engine calls three of your functions:

  * an audit sink: every audit record, once sealed into the hash chain and
    stored, is also handed to you (forward it to your SIEM);
  * an access hook: the last word on each session the built-in policy
    allowed (a ticket check, a change window, a second approver);
  * a credential source: the secret a protocol proxy injects so the vendor
    never sees it.

They run on the engine's threads, possibly several at once, so keep them
thread-safe and quick. If one raises, the traceback goes to
`sys.unraisablehook` and the server carries on: a raising access hook
refuses that session. Everything else is pulled: this program prints engine
events (gatekeepers online/offline, sessions started/ended/refused) as they
come, until Ctrl-C. Administer the data dir with `cpam-server ... --data-dir`
as usual.
"""

from __future__ import annotations

import argparse
import json
import threading
from typing import Optional, Union

import cpam
from cpam.types import AccessCheck, AuditRecord, CredentialRequest


class Integration:
    def __init__(self, deny_user: Optional[str]) -> None:
        self.deny_user = deny_user
        self.lock = threading.Lock()  # callbacks may run on several threads at once
        self.forwarded = 0

    def audit_sink(self, record: AuditRecord) -> None:
        with self.lock:
            self.forwarded += 1
        print(f"audit #{record['seq']} {record['action']} by {record['actor']}", flush=True)

    def access_hook(self, check: AccessCheck) -> Union[bool, tuple[bool, str]]:
        user, service = check["user"]["name"], check["service"]["name"]
        if user == self.deny_user:
            return (False, f"{user} needs an approved change ticket for {service}")
        return True

    def credential_source(self, request: CredentialRequest) -> Optional[cpam.Credential]:
        # Plain TCP services need none; a vault lookup would go here.
        if request["service"]["kind"] == "rdp":
            return cpam.Credential("svc-rdp", password="from-your-vault")
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True, help="made by `cpam-server init`")
    ap.add_argument("--listen", help="IP:PORT (default: the data dir's)")
    ap.add_argument("--deny-user", help="a user the access hook refuses")
    args = ap.parse_args()

    it = Integration(args.deny_user)
    # Plug the callbacks in before serving, so no session escapes them.
    with cpam.Server(args.data_dir, audit_sink=it.audit_sink, access_hook=it.access_hook,
                     credential_source=it.credential_source) as server:
        print(f"cpam server listening on {server.start(args.listen)}", flush=True)
        try:
            while True:
                event = server.next_event(timeout=60)
                if event is not None:
                    print("event", json.dumps(event, sort_keys=True), flush=True)
        except KeyboardInterrupt:
            print(f"stopping; {it.forwarded} audit records forwarded", flush=True)


if __name__ == "__main__":
    main()
