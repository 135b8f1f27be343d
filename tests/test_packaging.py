"""The wheel ships `backends/` only as `accelnn.backends`, never as a top-level package."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _can_build_wheels() -> str | None:
    """None when setuptools can build a wheel here without the network, else why not."""
    try:
        import setuptools
    except ImportError:
        return "setuptools is not installed (it comes with accelnn[test])"
    major, minor = (int(x) for x in setuptools.__version__.split(".")[:2])
    if (major, minor) < (70, 1) and importlib.util.find_spec("wheel") is None:
        return f"setuptools {setuptools.__version__} needs the wheel package to build wheels"
    return None


def test_wheel_has_no_top_level_backends(tmp_path):
    reason = _can_build_wheels()
    if reason:
        pytest.skip(reason)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("accelnn-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "accelnn/backends/__init__.py" in names
    assert "accelnn/backends/base.py" in names
    assert "accelnn/py.typed" in names
    assert not [n for n in names if n.startswith("backends/")]
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "accelnn = accelnn.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_import_backends_is_banned_by_ruff():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (it comes with accelnn[test])")
    proc = subprocess.run(
        [ruff, "check", "--config", str(ROOT / "pyproject.toml"), "--select", "TID251",
         "--stdin-filename", "probe.py", "-"], input="import backends\n",
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "TID251" in proc.stdout and "accelnn.backends" in proc.stdout
