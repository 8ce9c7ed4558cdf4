"""The request and response body of a deployment: named raw tensors, each 64-byte aligned, after a JSON header.

    offset 0    magic b"HAMRTNS1" (8) | header size, u32 little-endian (4) | 4 bytes zero
    offset 16   the header: UTF-8 JSON {"tensors": [{"name", "dtype", "shape", "offset", "nbytes"}]}
    then        the tensors' bytes, C order, little-endian, each at its `offset` (a multiple of 64)

Media type `application/x-hamr-tensors`. Decoding checks every offset and size against the
body and takes only numeric and bool dtypes; nothing is executed or unpickled. Decoded arrays
are read-only views of the body (no copy).
"""

from __future__ import annotations

import json
import struct

import numpy as np

from hamr.errors import HamrError

MEDIA_TYPE = "application/x-hamr-tensors"
MAGIC = b"HAMRTNS1"
ALIGNMENT = 64
_PREFIX = struct.Struct("<8sI4x")
MAX_HEADER = 1 << 20
MAX_TENSORS = 4096


class TensorsError(HamrError):
    """A body that is not a well-formed tensors message."""


def _aligned(n: int) -> int:
    return -(-n // ALIGNMENT) * ALIGNMENT


def encode(tensors: dict[str, np.ndarray]) -> bytes:
    arrays = {name: np.ascontiguousarray(value) for name, value in tensors.items()}
    entries, offset = [], 0
    for name, array in arrays.items():
        _check_dtype(name, array.dtype)
        dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
        entries.append({"name": name, "dtype": dtype.str, "shape": list(array.shape), "offset": offset, "nbytes": array.nbytes})
        offset = _aligned(offset + array.nbytes)
    header = json.dumps({"tensors": entries}, separators=(",", ":")).encode()
    start = _aligned(_PREFIX.size + len(header))
    out = bytearray(start + offset)
    out[: _PREFIX.size] = _PREFIX.pack(MAGIC, len(header))
    out[_PREFIX.size : _PREFIX.size + len(header)] = header
    for entry, array in zip(entries, arrays.values(), strict=True):
        at = start + entry["offset"]
        out[at : at + array.nbytes] = array.astype(entry["dtype"], copy=False).tobytes()
    return bytes(out)


def decode(body: bytes | memoryview) -> dict[str, np.ndarray]:
    view = memoryview(body).cast("B")
    if len(view) < _PREFIX.size:
        raise TensorsError(f"not a tensors body: {len(view)} bytes, shorter than its {_PREFIX.size}-byte prefix")
    magic, size = _PREFIX.unpack_from(view)
    if magic != MAGIC:
        raise TensorsError(f"not a tensors body: magic {bytes(magic)!r}, expected {MAGIC!r} ({MEDIA_TYPE})")
    if size > MAX_HEADER or _PREFIX.size + size > len(view):
        raise TensorsError(f"tensors header of {size} bytes does not fit the {len(view)}-byte body")
    try:
        header = json.loads(bytes(view[_PREFIX.size : _PREFIX.size + size]))
        entries = header["tensors"]
        if not isinstance(entries, list) or len(entries) > MAX_TENSORS:
            raise TypeError("'tensors' is not a list of at most 4096 entries")
    except (ValueError, KeyError, TypeError) as exc:
        raise TensorsError(f"bad tensors header: {exc}") from None
    start = _aligned(_PREFIX.size + size)
    out = {}
    for entry in entries:
        name, array = _tensor(view, start, entry)
        if name in out:
            raise TensorsError(f"tensor '{name}' appears twice")
        out[name] = array
    return out


def _tensor(view: memoryview, start: int, entry) -> tuple[str, np.ndarray]:
    try:
        name, dtype, shape = entry["name"], np.dtype(entry["dtype"]), tuple(entry["shape"])
        offset, nbytes = entry["offset"], entry["nbytes"]
        if not isinstance(name, str) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise TypeError("name must be a string and shape non-negative integers")
        if not all(isinstance(v, int) and v >= 0 for v in (offset, nbytes)):
            raise TypeError("offset and nbytes must be non-negative integers")
    except (KeyError, TypeError, ValueError) as exc:
        raise TensorsError(f"bad tensor entry {str(entry)[:200]}: {exc}") from None
    _check_dtype(name, dtype)
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if nbytes != expected:
        raise TensorsError(f"tensor '{name}': {nbytes} bytes for shape {list(shape)} of {dtype} ({expected} expected)")
    if offset % ALIGNMENT or start + offset + nbytes > len(view):
        raise TensorsError(f"tensor '{name}': offset {offset} is unaligned or runs past the body")
    array = np.frombuffer(view, dtype=dtype, count=nbytes // dtype.itemsize, offset=start + offset).reshape(shape)
    return name, array


def _check_dtype(name: str, dtype: np.dtype) -> None:
    if dtype.kind not in "biuf" or dtype.hasobject or dtype.fields is not None:
        raise TensorsError(f"tensor '{name}': dtype {dtype} is not a numeric or bool dtype")


__all__ = ["MEDIA_TYPE", "TensorsError", "decode", "encode"]
