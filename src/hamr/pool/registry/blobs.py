"""The content-addressed blob store: executables and job inputs/outputs, as files named by sha256.

Blobs are raw bytes: `.hamr` files as uploaded, arrays as `.npy` written and read with
`allow_pickle=False`. Nothing here ever unpickles.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path

import numpy as np

from hamr.pool.registry.errors import RegistryError


class BlobStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def relative_path(self, digest: str) -> str:
        """Where a blob lives, relative to the store root: sha256/ab/abcd..."""
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise RegistryError(f"not a sha256 digest: {digest!r}")
        return f"sha256/{digest[:2]}/{digest}"

    def path(self, digest: str) -> Path:
        return self.root / self.relative_path(digest)

    def put(self, data: bytes | memoryview) -> str:
        """Store `data` (once: the same bytes are the same file) and return its sha256."""
        digest = hashlib.sha256(data).hexdigest()
        path = self.path(digest)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".partial-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)  # atomic: a reader never sees half a blob
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return digest

    def size(self, digest: str) -> int:
        return self.path(digest).stat().st_size

    def get(self, digest: str) -> bytes:
        """The blob's bytes, checked against its name."""
        try:
            data = self.path(digest).read_bytes()
        except FileNotFoundError:
            raise RegistryError(f"blob {digest} is missing from {self.root}") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise RegistryError(f"blob {digest} in {self.root} is corrupt (its sha256 differs)")
        return data

    def put_array(self, array: np.ndarray) -> str:
        buffer = io.BytesIO()
        try:
            np.save(buffer, np.asarray(array), allow_pickle=False)
        except ValueError as exc:  # object arrays would need pickle
            raise RegistryError(f"cannot store an array of dtype {np.asarray(array).dtype}: {exc}") from None
        return self.put(buffer.getbuffer())

    def get_array(self, digest: str) -> np.ndarray:
        return np.load(io.BytesIO(self.get(digest)), allow_pickle=False)
