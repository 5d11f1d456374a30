"""Reading and verifying the hash-chained audit log."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import cpam
from harness import Deployment


def test_read_and_verify_after_a_session(deployment: Deployment, gatekeeper: cpam.Gatekeeper) -> None:
    with cpam.ConnectionManager(str(deployment.profile)).open_session("ssh") as s:
        s.read(7)
    source = str(deployment.data_dir)
    records = cpam.read_audit(source)
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    actions = {r["action"] for r in records}
    assert {"server.start", "gatekeeper.registered", "gatekeeper.online", "session.start"} <= actions, actions
    assert all(len(r["hash"]) == 64 and len(r["prev_hash"]) == 64 for r in records)
    assert records[1]["prev_hash"] == records[0]["hash"]

    system = cpam.read_audit(source, category="system-messages")
    assert system and all(r["category"] == "system-messages" for r in system)
    page = cpam.read_audit(source, from_seq=2, limit=2)
    assert [r["seq"] for r in page] == [2, 3]
    with pytest.raises(cpam.InvalidArgumentError, match="unknown audit category"):
        cpam.read_audit(source, category="everything")  # type: ignore[arg-type]

    v = cpam.verify_audit(source)
    assert v["intact"] is True and v["first_broken"] is None, v
    assert v["checked"] >= len(records)


def test_an_edited_record_is_pinpointed(deployment: Deployment, tmp_path: Path) -> None:
    copy = tmp_path / "copy.db"
    src = sqlite3.connect(str(deployment.data_dir / "cpam.db"))
    dst = sqlite3.connect(str(copy))
    src.backup(dst)
    src.close()
    dst.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 3")
    dst.commit()
    dst.close()
    v = cpam.verify_audit(f"sqlite://{copy}")
    assert v["intact"] is False, v
    broken = v["first_broken"]
    assert broken is not None and broken["expected_seq"] == 3 and "edited" in broken["problem"], v
    assert v["checked"] == 3


def test_a_missing_database_is_not_created(tmp_path: Path) -> None:
    with pytest.raises(cpam.NotFoundError, match="no database"):
        cpam.verify_audit(f"sqlite://{tmp_path / 'none.db'}")
    assert not (tmp_path / "none.db").exists()
