"""A real `hamr pool up` shared by a module's tests (tests.helpers.start_pool)."""

import pytest

from tests.helpers import start_pool, stop


@pytest.fixture(scope="module")
def cli_pool(tmp_path_factory):
    """(data dir, env, URL) of a `hamr pool up` with a 2 s heartbeat timeout, for the module's tests."""
    running = start_pool(tmp_path_factory.mktemp("pool"), heartbeat_timeout=2)
    try:
        yield running.root, running.env, running.url
    finally:
        running.admin.close()
        log = stop(running.server)
        assert "Traceback" not in log, log
