"""A pool shared by a module's tests, started in this process: `PoolServer`, as `hamr pool up` builds it.
The client commands run against it as real `hamr` processes; a real `hamr pool up` process is tested end
to end in test_pool_agent.py, test_pool_tls.py and tests/security/."""

import json
import os

import pytest

from hamr.pool.server import PoolServer


def in_process_pool(tmp_path_factory, **options):
    """(data dir, env, URL) of an in-process pool with a 2 s heartbeat timeout; `options` go to PoolServer."""
    root = tmp_path_factory.mktemp("pool")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAMR_")}
    env.update(HAMR_POOL_DIR=str(root / "pool"), HAMR_CACHE_DIR=str(root / "cache"), NO_COLOR="1", COLUMNS="200")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HAMR_CACHE_DIR", str(root / "cache"))  # the pool's workers inherit it, as from `hamr pool up`
        with PoolServer(data_dir=root / "pool", port=0, heartbeat_timeout=2, **options) as server:  # it answers
            assert json.loads((root / "pool" / "pool.json").read_text())["url"] == server.url
            yield root / "pool", env, server.url


@pytest.fixture(scope="module")
def cli_pool(tmp_path_factory):
    """The module's pool, with the default policy."""
    yield from in_process_pool(tmp_path_factory)
