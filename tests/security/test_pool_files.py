"""The pool's directory and database are its user's alone (issue 11, item 8): on a real `hamr pool up`,
another local user can read neither the registry (every tenant's jobs, the tokens' hashes) nor a blob."""

from __future__ import annotations

import stat

import numpy as np

import hamr
from tests.helpers import mlp_model, npy


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_pool_directory_and_its_database_files_are_private(real_pool):
    exe = real_pool.alice.client.post(
        "/v1/executables", content=hamr.compile(mlp_model(), targets=["reference"]).to_bytes()
    )
    job = real_pool.alice.client.post(
        "/v1/jobs",
        data={"executable_id": str(exe.json()["id"])},
        files={"x": ("x.npy", npy(np.zeros((1, 16), np.float32)))},
    )
    assert job.status_code == 201, job.text
    root = real_pool.root
    assert _mode(root) == 0o700
    database = ["pool.db", "pool.db-wal", "pool.db-shm"]
    assert all((root / name).exists() for name in database)  # WAL mode, with a write behind it
    for name in [*database, "admin.token", "pool.json"]:
        assert _mode(root / name) == 0o600, f"{name} is {oct(_mode(root / name))}"
    blobs = [p for p in (root / "blobs").rglob("*") if p.is_file()]
    assert blobs and all(_mode(p) & 0o077 == 0 for p in blobs), [(p.name, oct(_mode(p))) for p in blobs]
