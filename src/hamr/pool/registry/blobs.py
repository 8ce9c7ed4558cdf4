"""The content-addressed blob store: executables and job inputs/outputs, as files named by sha256.

Blobs are raw bytes: `.hamr` files as uploaded, arrays as `.npy` written and read with
`allow_pickle=False`. Nothing here ever unpickles.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from hamr.pool.registry.errors import RegistryError


class StagedBlob:
    """A blob being received: written to a temporary file in the store while it is hashed, so it is
    never whole in memory. `commit` names it by its sha256 (atomically); `discard` removes it.
    Until committed it is no blob: a reader never sees it, and nothing refers to it."""

    def __init__(self, store: BlobStore) -> None:
        self.store = store
        fd, name = tempfile.mkstemp(dir=store.root, prefix=".partial-")
        self.path = Path(name)
        self._file = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self.size = 0
        self.digest: str | None = None  # once closed
        self.done = False

    def write(self, data: bytes | memoryview) -> None:
        self._hash.update(data)
        self._file.write(data)
        self.size += len(data)

    def close(self) -> str:
        """Finish writing; the sha256 of what was written."""
        if self.digest is None:
            self._file.close()
            self.digest = self._hash.hexdigest()
        return self.digest

    def commit(self) -> str:
        """Move the file into the store under its sha256 (once: the same bytes are the same file)."""
        if self.done:
            raise RegistryError(f"staged blob {self.path.name} was already committed or discarded")
        digest = self.close()
        path = self.store.path(digest)
        try:
            if path.exists():
                self.path.unlink()
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                os.replace(self.path, path)  # atomic: a reader never sees half a blob
        except BaseException:
            self.discard()
            raise
        self.done = True
        return digest

    def discard(self) -> None:
        """Remove the temporary file (nothing, once committed)."""
        if not self.done:
            self.done = True
            self._file.close()
            self.path.unlink(missing_ok=True)


STALE_STAGED_S = 24 * 3600  # a staged upload this old was left by a process that died mid-upload


class BlobStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._drop_stale_staged()

    def _drop_stale_staged(self) -> None:
        """Remove staged uploads that no live upload can still be writing (the process died mid-upload)."""
        now = time.time()
        for path in self.root.glob(".partial-*"):
            try:
                if now - path.stat().st_mtime > STALE_STAGED_S:
                    path.unlink()
            except FileNotFoundError:
                pass

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

    def stage(self) -> StagedBlob:
        """A blob to write piece by piece (an upload as it arrives), then commit or discard."""
        return StagedBlob(self)

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

    def read_chunks(self, digest: str, chunk: int = 1 << 20) -> tuple[int, Iterator[bytes]]:
        """The blob's size and its bytes piece by piece, for a download that holds one piece at a time.

        They are checked against the blob's name as they are read: a corrupt blob raises
        RegistryError after its last piece, so the download is cut short rather than completed."""
        try:
            f = self.path(digest).open("rb")
        except FileNotFoundError:
            raise RegistryError(f"blob {digest} is missing from {self.root}") from None
        size = os.fstat(f.fileno()).st_size

        def pieces() -> Iterator[bytes]:
            hashed = hashlib.sha256()
            with f:
                while piece := f.read(chunk):
                    hashed.update(piece)
                    yield piece
            if hashed.hexdigest() != digest:
                raise RegistryError(f"blob {digest} in {self.root} is corrupt (its sha256 differs)")

        return size, pieces()

    def put_array(self, array: np.ndarray) -> str:
        buffer = io.BytesIO()
        try:
            np.save(buffer, np.asarray(array), allow_pickle=False)
        except ValueError as exc:  # object arrays would need pickle
            raise RegistryError(f"cannot store an array of dtype {np.asarray(array).dtype}: {exc}") from None
        return self.put(buffer.getbuffer())

    def get_array(self, digest: str) -> np.ndarray:
        return np.load(io.BytesIO(self.get(digest)), allow_pickle=False)
