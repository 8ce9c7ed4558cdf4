import contextlib
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

warnings.filterwarnings("ignore", category=RuntimeWarning, module="onnx.backend.test.case")


def require(module: str):
    """Import an optional package or skip the test with the reason."""
    return pytest.importorskip(module, reason=f"{module} is not installed (pip install -e '.[test]')")


@contextlib.contextmanager
def installed_plugin(source: Path, module: str, root: Path):
    """pip-install a test plugin distribution into a private folder (offline) and put it on sys.path:
    its entry points are then found as an installed package's are."""
    copy, site = root / "src", root / "site"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--quiet", "--target", str(site),
         str(copy)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sys.path.insert(0, str(site))
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        sys.modules.pop(module, None)
