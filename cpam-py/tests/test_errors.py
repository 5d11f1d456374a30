"""The exception classes: one per stable error kind, under cpam.CpamError."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import cpam

KINDS = {
    "InvalidArgumentError": "invalid_argument",
    "NotFoundError": "not_found",
    "PermissionDeniedError": "permission_denied",
    "AccessExpiredError": "access_expired",
    "UnauthenticatedError": "unauthenticated",
    "TunnelUnavailableError": "tunnel_unavailable",
    "CpamIoError": "io",
    "ProtocolError": "protocol",
    "StorageError": "storage",
    "RecordingError": "recording",
    "CpamTimeoutError": "timeout",
    "CpamCancelledError": "cancelled",
    "InternalError": "internal",
    "ConflictError": "conflict",
}


def test_one_class_per_kind_under_cpam_error() -> None:
    for name, kind in KINDS.items():
        cls = getattr(cpam, name)
        assert issubclass(cls, cpam.CpamError), name
        assert cls.kind == kind, name
        assert cls.__module__ == "cpam", name
    assert issubclass(cpam.CpamError, Exception)
    # Every kind has its own class.
    assert len({getattr(cpam, n) for n in KINDS}) == len(KINDS)


def test_missing_profile_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(cpam.NotFoundError) as e:
        cpam.ConnectionManager(str(tmp_path / "nope.profile"))
    assert e.value.kind == "not_found"
    assert "nope.profile" in str(e.value)


def test_bad_profile_names_the_field(tmp_path: Path) -> None:
    p = tmp_path / "bad.profile"
    p.write_text(json.dumps({"cpam_profile": 1}))
    with pytest.raises(cpam.InvalidArgumentError, match="field `server` is missing"):
        cpam.ConnectionManager(str(p))
    with pytest.raises(cpam.InvalidArgumentError, match="not JSON"):
        cpam.ConnectionManager.from_text("{")


def test_bad_allow_rule_and_unregistered_dir(tmp_path: Path) -> None:
    with pytest.raises(cpam.InvalidArgumentError, match="allow rule `everything`"):
        cpam.Gatekeeper(str(tmp_path), allow=["everything"])
    with pytest.raises(cpam.NotFoundError, match="is this gatekeeper registered"):
        cpam.Gatekeeper(str(tmp_path), allow=["127.0.0.1/32:22"])


def test_audit_source_that_is_neither_data_dir_nor_database(tmp_path: Path) -> None:
    with pytest.raises(cpam.NotFoundError, match="cpam-server init"):
        cpam.verify_audit(str(tmp_path))
    with pytest.raises(cpam.InvalidArgumentError, match="not supported"):
        cpam.verify_audit("mysql://db/cpam")
