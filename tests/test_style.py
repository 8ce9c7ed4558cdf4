"""The code is formatted and linted as [tool.ruff] in pyproject.toml says: `ruff check` and `ruff format --check`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["src", "tests", "bench"]


def _ruff(*args: str) -> subprocess.CompletedProcess:
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    return subprocess.run([ruff, *args, *PATHS], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_check():
    run = _ruff("check", "--no-cache", "--output-format", "concise")
    assert run.returncode == 0, (
        f"ruff check found problems (ruff check --fix fixes some):\n{run.stdout[-6000:]}{run.stderr}"
    )


def test_ruff_format():
    run = _ruff("format", "--check", "--no-cache")
    assert run.returncode == 0, f"files ruff format would change (run ruff format):\n{run.stdout[-6000:]}{run.stderr}"
