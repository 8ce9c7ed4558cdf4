"""A real `hamr pool up` with two tenants, for the attack tests (docs/security.md).

Each test module under tests/security mounts one class of attack against this pool and
asserts that it fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers import bearer, start_pool, stop


@dataclass
class Tenant:
    name: str
    token: str
    client: httpx.Client


@dataclass
class RealPool:
    root: Path
    env: dict
    url: str
    admin_token: str
    admin: httpx.Client
    alice: Tenant
    bob: Tenant
    server: object

    def tenant(self, name: str) -> Tenant:
        token = self.admin.post("/v1/tenants", json={"name": name}).json()["token"]
        return Tenant(name, token, httpx.Client(base_url=self.url, headers=bearer(token), timeout=60))


@pytest.fixture(scope="module")
def real_pool(tmp_path_factory):
    """One `hamr pool up` per module, with tenants alice and bob (the attacker and the victim)."""
    tmp_path = tmp_path_factory.mktemp("pool")
    root, env, server, url, admin_token, admin = start_pool(tmp_path)
    pool = RealPool(root, env, url, admin_token, admin, None, None, server)  # type: ignore[arg-type]
    try:
        pool.alice = pool.tenant("alice")
        pool.bob = pool.tenant("bob")
        yield pool
    finally:
        for tenant in (pool.alice, pool.bob):
            if tenant is not None:
                tenant.client.close()
        admin.close()
        stop(server)
