"""Reading uploads: raw bodies or multipart parts, and .npy arrays (never unpickled).

Files (an executable, a job's inputs, an agent's outputs) are streamed into the blob store as
they arrive (`StagedBlob`s: hashed on the way, never whole in memory), checked from the file,
and committed by the registry; the route discards them when anything fails. Only a deployment
request's inputs are read into memory, under the in-memory body limit (limits.py).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from fastapi import HTTPException, Request
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from hamr.pool.registry.blobs import BlobStore, StagedBlob
from hamr.pool.service.multipart import FLUSH_BYTES, read_multipart

NPY_MAGIC = b"\x93NUMPY"
MAX_PARTS = 256
BINARY = {"type": "string", "format": "binary"}


def request_body(description: str, content: dict[str, dict]) -> dict:
    """`openapi_extra` for a route that reads its body itself: media type -> schema."""
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {media: {"schema": schema} for media, schema in content.items()},
        }
    }


def is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


class _Dropped:
    """A sink for file parts nobody asked for."""

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


class _InMemory(bytearray):
    def write(self, data: bytes) -> None:
        self.extend(data)

    def close(self) -> None:
        pass


def discard(staged) -> None:
    """Remove what an upload staged and nothing committed: a StagedBlob, or a mapping or list of them."""
    for value in staged.values() if isinstance(staged, dict) else staged if isinstance(staged, list) else [staged]:
        if isinstance(value, StagedBlob):
            value.discard()


def _write(staged: StagedBlob, pieces: list[bytes]) -> None:
    for piece in pieces:
        staged.write(piece)


async def _stage_body(request: Request, staged: StagedBlob) -> None:
    """The raw body into `staged`, written by a worker thread in batches of about FLUSH_BYTES."""
    pending, size = [], 0
    async for chunk in request.stream():
        pending.append(chunk)
        size += len(chunk)
        if size >= FLUSH_BYTES:
            await run_in_threadpool(_write, staged, pending)
            pending, size = [], 0
    await run_in_threadpool(_write, staged, pending)
    staged.close()


async def stage_file_or_body(request: Request, field: str, blobs: BlobStore) -> StagedBlob:
    """A multipart body's (first) part `field`, or else the raw body, staged in the blob store."""
    if not is_multipart(request):
        staged = blobs.stage()
        try:
            await _stage_body(request, staged)
        except BaseException:
            staged.discard()
            raise
        return staged
    opened: list[StagedBlob] = []

    def open_sink(name: str):
        if name != field or opened:
            return _Dropped()
        opened.append(blobs.stage())
        return opened[0]

    try:
        await read_multipart(request, open_sink, MAX_PARTS)
    except BaseException:
        discard(opened)
        raise
    if not opened:
        raise HTTPException(400, f"the multipart body has no file part '{field}'")
    return opened[0]


def parse_npy(name: str, data: bytes, what: str = "input") -> np.ndarray:
    """A raw .npy file as an array: no .npz, no pickle (object arrays are refused)."""
    if not data.startswith(NPY_MAGIC):
        raise HTTPException(400, f"{what} '{name}' is not a .npy file (it does not start with \\x93NUMPY)")
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError, EOFError, OSError... on malformed files
        raise HTTPException(400, f"{what} '{name}' is a malformed .npy file: {exc}") from None
    if not isinstance(array, np.ndarray):
        raise HTTPException(400, f"{what} '{name}' is not a single .npy array")
    return array


def check_npy_file(name: str, path: Path, what: str = "input") -> None:
    """A .npy file as parse_npy would take it, checked from its header (memory-mapped, never read whole),
    and with nothing after its data."""
    with open(path, "rb") as f:
        if f.read(len(NPY_MAGIC)) != NPY_MAGIC:
            raise HTTPException(400, f"{what} '{name}' is not a .npy file (it does not start with \\x93NUMPY)")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError, EOFError, OSError... on malformed files
        raise HTTPException(400, f"{what} '{name}' is a malformed .npy file: {exc}") from None
    if not isinstance(array, np.ndarray):
        raise HTTPException(400, f"{what} '{name}' is not a single .npy array")
    extra = Path(path).stat().st_size - (getattr(array, "offset", 0) + array.nbytes)
    if extra:
        raise HTTPException(400, f"{what} '{name}' is a malformed .npy file: {extra} bytes after its data")


async def read_fields_and_arrays(
    request: Request, form: type[BaseModel] | None, what: str, blobs: BlobStore | None = None
) -> tuple[BaseModel | None, dict]:
    """A multipart body of `form`'s fields and one .npy file part per array (`what`: input, output).

    With `blobs`, each array is a StagedBlob in that store (checked .npy; the caller commits or
    discards it); without, an array read into memory. Without `form`, every part must be a file
    part. Fields are validated by `form` (422 with the first error's line); duplicates, unknown
    fields and misplaced parts are 400.
    """
    if not is_multipart(request):
        raise HTTPException(400, "expected a multipart/form-data body")
    names = form.model_fields if form is not None else {}
    fields, arrays, opened = {}, {}, []

    def open_sink(name: str):
        opened.append(blobs.stage() if blobs is not None else _InMemory())
        return opened[-1]

    try:
        items = await read_multipart(request, open_sink, MAX_PARTS)
        for key, value in items:
            if key in fields or key in arrays:
                raise HTTPException(400, f"the multipart body has '{key}' twice")
            if not isinstance(value, str):
                if key in names:
                    raise HTTPException(400, f"'{key}' is a field, not a file part")
                if isinstance(value, StagedBlob):
                    await run_in_threadpool(check_npy_file, key, value.path, what)
                    arrays[key] = value
                else:
                    arrays[key] = parse_npy(key, bytes(value), what=what)
            elif key in names:
                fields[key] = value
            elif names:
                raise HTTPException(400, f"unknown field '{key}' (fields: {', '.join(names)}; {what}s are file parts)")
            else:
                raise HTTPException(400, f"'{key}' is a field; every part here is a .npy file part")
        if form is None:
            return None, arrays
        try:
            return form.model_validate(fields), arrays
        except ValidationError as exc:
            first = exc.errors()[0]
            raise HTTPException(
                422, f"{'.'.join(map(str, first['loc']))}: {' '.join(str(first['msg']).split())}"
            ) from None
    except BaseException:
        discard(opened)
        raise


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()
