"""Binaries this machine built, by the hash of what they were built from: a rebuild of the same source is a read."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def cache_dir(kind: str) -> Path:
    from hamr.settings import settings

    path = settings().cache_dir / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


def built(kind: str, key: list[str], build: Callable[[], bytes]) -> bytes:
    """`build()`'s bytes, kept under `kind` by the hash of `key` (the source, the architecture, the compiler)."""
    digest = hashlib.sha256("\0".join(key).encode()).hexdigest()
    path = cache_dir(kind) / digest
    if path.exists():
        return path.read_bytes()
    data = build()
    fd, tmp = tempfile.mkstemp(dir=path.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return data
