"""The typed stubs hold: the tutorials and these tests type-check under
`mypy --strict` against the installed wheel's `_cpam.pyi`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_examples_and_tests_type_check_strictly() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir", "/dev/null",
         str(ROOT / "examples" / "python"), str(ROOT / "cpam-py" / "tests")],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Success: no issues found" in out.stdout


def test_stubs_match_the_native_module(tmp_path: Path) -> None:
    """`stubtest` compares the stubs with the runtime objects: every class,
    function, parameter and default."""
    out = subprocess.run([sys.executable, "-m", "mypy.stubtest", "cpam"], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr


def test_stubs_and_marker_ship_in_the_package() -> None:
    import cpam

    pkg = Path(cpam.__file__).parent
    assert (pkg / "py.typed").is_file()
    assert (pkg / "_cpam.pyi").is_file()
