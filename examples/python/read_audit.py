"""Read a server's audit log and verify its hash chain.

    python read_audit.py --data-dir /var/lib/cpam [--category user-activity]

The source is a server data dir or a database URL (`sqlite:///...`,
`postgres://...`). Every record carries the hash of the one before it;
`verify_audit` names the first record that was edited, removed or reordered.
"""

from __future__ import annotations

import argparse
import datetime
import sys

import cpam


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True, help="server data dir or database URL")
    ap.add_argument("--category", choices=["user-activity", "system-messages"])
    args = ap.parse_args()

    for r in cpam.read_audit(args.data_dir, category=args.category):
        at = datetime.datetime.fromtimestamp(r["at"] / 1000, tz=datetime.timezone.utc)
        session = f" session={r['session_id']}" if r["session_id"] else ""
        print(f"{r['seq']:5} {at:%Y-%m-%d %H:%M:%S} {r['category']:15} {r['action']:24} {r['actor']}{session}")

    v = cpam.verify_audit(args.data_dir)
    if v["intact"]:
        print(f"audit chain intact ({v['checked']} records)")
        return 0
    broken = v["first_broken"]
    assert broken is not None
    print(f"audit chain BROKEN at record {broken['expected_seq']}: {broken['problem']}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
