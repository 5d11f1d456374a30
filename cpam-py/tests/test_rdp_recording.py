"""An RDP recording from Python: its desktop at a time as PNG bytes.

The recording comes from a real RDP session (xfreerdp through cpam to
freerdp-shadow-cli on a desktop painted one colour), which
`tests/rdp_sdk_e2e.rs` records and then runs this file with
`CPAM_RDP_DATA_DIR`, `CPAM_RDP_RECORDING` and `CPAM_RDP_RGB` (the colour,
`RRGGBB`) set; the whole suite's run skips it. The PNG is decoded with the
standard library only."""

from __future__ import annotations

import asyncio
import os
import struct
import zlib

import pytest

import cpam

DATA_DIR = os.environ.get("CPAM_RDP_DATA_DIR", "")
RECORDING = os.environ.get("CPAM_RDP_RECORDING", "")
RGB = os.environ.get("CPAM_RDP_RGB", "")

pytestmark = pytest.mark.skipif(
    not (DATA_DIR and RECORDING and RGB), reason="run by tests/rdp_sdk_e2e.rs with a recorded RDP session"
)


def decode_png(png: bytes) -> tuple[int, int, bytes]:
    """Width, height and RGBA rows of an 8-bit RGBA PNG (filters undone)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", png[:8]
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, body = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert (depth, colour) == (8, 6), "8-bit RGBA"
        elif kind == b"IDAT":
            idat += body
    raw, stride, out = zlib.decompress(idat), width * 4, bytearray()
    prev = bytearray(stride)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - 4] if i >= 4 else 0
            b, c = prev[i], prev[i - 4] if i >= 4 else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xFF
            elif f == 2:
                line[i] = (line[i] + b) & 0xFF
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pred) & 0xFF
        out += line
        prev = line
    return width, height, bytes(out)


def test_a_frame_of_a_recorded_rdp_session_shows_the_targets_desktop() -> None:
    info = next(r for r in cpam.list_recordings(DATA_DIR) if r["id"] == RECORDING)
    assert info["kind"] == "rdp", info
    rec = cpam.read_recording(DATA_DIR, RECORDING)
    desktop = rec["desktop"]
    assert desktop is not None and rec["events"] == [], rec
    assert (desktop["width"], desktop["height"]) == (1024, 768), desktop
    png = cpam.recording_frame(DATA_DIR, RECORDING, desktop["duration"])
    width, height, rgba = decode_png(png)
    assert (width, height) == (1024, 768)
    want = bytes.fromhex(RGB)
    for x, y in [(100, 100), (512, 384), (900, 700)]:
        i = (y * width + x) * 4
        got = rgba[i : i + 3]
        assert all(abs(g - w) <= 8 for g, w in zip(got, want)), f"({x}, {y}) is {got.hex()}, want {RGB}"
        assert rgba[i + 3] == 255
    # The asyncio twin answers the same bytes.
    at = desktop["duration"]

    async def frame() -> bytes:
        return await cpam.recording_frame_async(DATA_DIR, RECORDING, at)

    assert asyncio.run(frame()) == png


def test_the_input_track_of_a_recorded_rdp_session() -> None:
    track = cpam.recording_input(DATA_DIR, RECORDING)
    assert track["skipped"] == 0, track
    times = [e["t"] for e in track["events"]]
    assert times == sorted(times), track
    assert all(isinstance(e["type"], str) for e in track["events"]), track

    async def again() -> dict[str, object]:
        return await cpam.recording_input_async(DATA_DIR, RECORDING)

    assert asyncio.run(again()) == track
    with pytest.raises(cpam.NotFoundError):
        cpam.recording_input(DATA_DIR, RECORDING.split(".")[0] + ".9")


def test_a_time_past_the_end_an_unknown_recording_and_a_terminal_one_are_refused() -> None:
    duration = cpam.read_recording(DATA_DIR, RECORDING)["desktop"]
    assert duration is not None
    with pytest.raises(cpam.InvalidArgumentError, match="beyond the end .* lasts"):
        cpam.recording_frame(DATA_DIR, RECORDING, duration["duration"] + 60)
    with pytest.raises(cpam.NotFoundError):
        cpam.recording_frame(DATA_DIR, RECORDING.split(".")[0] + ".9", 0.0)
    with pytest.raises(cpam.InvalidArgumentError):
        cpam.recording_frame(DATA_DIR, "not-an-id", 0.0)
