"""The suite's markers at work, and the session's PostgreSQL server.

Markers (registered in pyproject.toml): `opencl` tests are skipped where this machine has no OpenCL
device (found when the first such test runs, never at import); `integration` marks everything
under tests/pool/integration; `postgres` marks the PostgreSQL half of the `backend` fixture
(tests/pool/conftest.py); `ray` the Ray cluster tests; `slow` the sweeps left out by default.
"""

import os
import warnings
from pathlib import Path

import pytest

from tests import helpers

warnings.filterwarnings("ignore", category=RuntimeWarning, module="onnx.backend.test.case")

INTEGRATION = Path(__file__).parent / "pool" / "integration"

# One gcc build per cpu compile in the suite (the host's level): half the build time. The two-level build
# that `hamr compile` makes by default is checked on its own (tests/targets/test_native.py, test_gemm.py).
os.environ.setdefault("HAMR_CPU_ISA", "host")
# The suite runs in two xdist workers on two cores, each with two OpenMP threads: spinning workers would take
# the core another process needs, so they sleep at once (the cpu target's default is to spin briefly).
os.environ.setdefault("GOMP_SPINCOUNT", "0")
# Compiles that name no target build the host's: the GPU targets (NVRTC and clang for 5 and 3 architectures) are
# built where a test names them (tests/targets/test_gpu_targets.py), not by every compile in the suite.
os.environ.setdefault("HAMR_TARGETS", "cpu,opencl,reference")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if INTEGRATION in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)


def pytest_runtest_setup(item):
    if item.get_closest_marker("opencl") is not None and not helpers.opencl_devices():
        pytest.skip(helpers.NO_OPENCL)


@pytest.fixture(scope="session")
def postgres_url():
    """A PostgreSQL URL for the registry: $HAMR_TEST_POSTGRES_URL when set, else a private server of this
    session (tests/postgres.py) from the installed PostgreSQL binaries; skips when there are none."""
    url = os.environ.get("HAMR_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    from tests import postgres

    bin_dir = postgres.binaries()
    if bin_dir is None:
        pytest.skip(postgres.NOT_INSTALLED)
    server = postgres.Server(bin_dir)
    try:
        yield server.url
    finally:
        server.close()
