"""Review a server's session recordings: verify each one and print its text.

    python review_recordings.py --data-dir /var/lib/cpam [--session ses_...] [--search TEXT]
                                [--frame-at SECONDS --frame-dir DIR]

Every terminal channel of a privileged session is recorded as asciicast v2,
and every RDP session's PDUs, hash-chained and sealed with a manifest
signed by the server's key. `verify_recording` checks all three and raises
`cpam.RecordingError` naming what was edited, removed or appended.
`read_recording` gives a terminal's events (`output`, `input`, `resize`)
and an RDP recording's desktop size and length; `recording_frame` the
desktop at a time as a PNG (written to DIR/<id>.png with --frame-dir);
`search_recordings` finds which sessions printed a text.
"""

from __future__ import annotations

import argparse
import sys

import cpam


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--session")
    ap.add_argument("--search")
    ap.add_argument("--frame-at", type=float, default=0.0, help="seconds into an RDP recording")
    ap.add_argument("--frame-dir", help="where to write each RDP recording's frame as <id>.png")
    args = ap.parse_args()

    if args.search:
        for hit in cpam.search_recordings(args.data_dir, args.search, args.session):
            times = ", ".join(f"{t:.1f}s" for t in hit["times"])
            print(f"{hit['id']}: {args.search!r} at {times}")
        return 0

    broken = 0
    for info in cpam.list_recordings(args.data_dir, args.session):
        try:
            v = cpam.verify_recording(args.data_dir, info["id"])
            print(f"== {info['id']}: {v['state']}, {v['size']} bytes in {v['chunks']} chunks, signed by {v['signer']}")
        except cpam.RecordingError as e:
            broken += 1
            print(f"== {info['id']}: DOES NOT VERIFY: {e}")
            continue
        rec = cpam.read_recording(args.data_dir, info["id"])
        desktop = rec["desktop"]
        if desktop is not None:
            print(f"remote desktop {desktop['width']}x{desktop['height']}, {desktop['duration']:.1f} s")
            if args.frame_dir:
                at = min(args.frame_at, desktop["duration"])
                png = cpam.recording_frame(args.data_dir, info["id"], at)
                path = f"{args.frame_dir}/{info['id']}.png"
                with open(path, "wb") as f:
                    f.write(png)
                print(f"frame at {at:.1f} s: {path} ({len(png)} bytes)")
            continue
        text = "".join(e["data"] for e in rec["events"] if e["kind"] == "output")
        print(text.replace("\r\n", "\n").rstrip())
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
