"""The pool tests' registries and executable.

`backend` (and `registry`, which opens one on it) runs a test on SQLite and on PostgreSQL, each
PostgreSQL test in a schema of its own on the session's server (`postgres_url`, tests/conftest.py).
A fixture of a module can do the same for chosen tests with tests.helpers.BACKENDS and
tests.helpers.registry_for (e.g. test_pool_dispatcher.py's `pool`).
"""

import pytest

from tests.helpers import BACKENDS, backend_url, mlp_hamr, native_targets, registry_for


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path):
    """(registry URL, or None for SQLite; data dir)."""
    with backend_url(request, request.param) as url:
        yield url, tmp_path / "pool"


@pytest.fixture
def registry(backend):
    """A registry on SQLite, then on PostgreSQL."""
    url, data_dir = backend
    from hamr.pool.registry import open_registry

    with open_registry(url, data_dir=data_dir) as reg:
        yield reg


@pytest.fixture
def sqlite_registry(request, tmp_path):
    """A registry on SQLite only."""
    with registry_for(request, tmp_path, "sqlite") as reg:
        yield reg


@pytest.fixture(scope="session")
def exe_bytes() -> bytes:
    """The MLP (tests.helpers.mlp_model) as .hamr bytes, for cpu and, where this machine has a device, opencl."""
    return mlp_hamr(tuple(native_targets()))
