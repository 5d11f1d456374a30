"""The exception classes: one per stable error kind, under cpam.CpamError."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import cpam

# The published classes, kinds and codes (cpam_core::ErrorKind::ALL): a
# class, kind or code that changes breaks scripts that rely on it.
KINDS = {
    "InvalidArgumentError": ("invalid_argument", 100),
    "NotFoundError": ("not_found", 101),
    "PermissionDeniedError": ("permission_denied", 102),
    "AccessExpiredError": ("access_expired", 103),
    "UnauthenticatedError": ("unauthenticated", 104),
    "TunnelUnavailableError": ("tunnel_unavailable", 105),
    "CpamIoError": ("io", 106),
    "ProtocolError": ("protocol", 107),
    "StorageError": ("storage", 108),
    "RecordingError": ("recording", 109),
    "CpamTimeoutError": ("timeout", 110),
    "CpamCancelledError": ("cancelled", 111),
    "InternalError": ("internal", 112),
    "ConflictError": ("conflict", 113),
}

STUBS = Path(cpam.__file__).with_name("_cpam.pyi")


def native_classes() -> dict[str, type]:
    """The error classes the native module registers, one per ErrorKind::ALL."""
    return {
        name: cls
        for name, cls in vars(cpam._cpam).items()
        if isinstance(cls, type) and issubclass(cls, cpam.CpamError) and cls is not cpam.CpamError
    }


def test_one_class_per_kind_under_cpam_error() -> None:
    for name, (kind, code) in KINDS.items():
        cls = getattr(cpam, name)
        assert issubclass(cls, cpam.CpamError), name
        assert (cls.kind, cls.code) == (kind, code), name
        assert cls.__module__ == "cpam", name
    assert issubclass(cpam.CpamError, Exception)
    # Every kind has its own class, and there is no class of no kind.
    assert set(native_classes()) == set(KINDS)


def test_stubs_and_exports_list_every_kind_class() -> None:
    stubbed = set(re.findall(r"^class (\w+)\(CpamError\): \.\.\.$", STUBS.read_text(), re.M))
    assert stubbed == set(native_classes()), f"{STUBS} lists other error classes than the module"
    for name in native_classes():
        assert name in cpam.__all__, f"cpam.__all__ lacks {name}"
        assert getattr(cpam, name) is native_classes()[name], name


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
