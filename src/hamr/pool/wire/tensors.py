"""The request and response body of a deployment: named raw tensors, each 64-byte aligned, after a JSON header.

    offset 0    magic b"HAMRTNS1" (8) | header size, u32 little-endian (4) | 4 bytes zero
    offset 16   the header: UTF-8 JSON {"tensors": [{"name", "dtype", "shape", "offset", "nbytes"}]}
    then        the tensors' bytes, C order, little-endian, each at its `offset` (a multiple of 64)

Media type `application/x-hamr-tensors`. Decoding parses the header as strict JSON (UTF-8 without
lone surrogates, no NaN, nesting bounded), checks every dimension, offset and size as an exact
integer against the body, and takes only numeric and bool dtypes; nothing is executed or
unpickled. Any malformed body is a TensorsError, never another exception. Decoded arrays are
read-only views of the body (no copy).
"""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pydantic_core

from hamr.errors import HamrError

MEDIA_TYPE = "application/x-hamr-tensors"
MAGIC = b"HAMRTNS1"
ALIGNMENT = 64
_PREFIX = struct.Struct("<8sI4x")
MAX_HEADER = 1 << 20
MAX_TENSORS = 4096
MAX_RANK = 64  # numpy's limit on dimensions
MAX_DIM = 2**63 - 1  # numpy's shapes are int64
MAX_DTYPE_TEXT = 32


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
        entries.append(
            {"name": name, "dtype": dtype.str, "shape": list(array.shape), "offset": offset, "nbytes": array.nbytes}
        )
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
        header = pydantic_core.from_json(bytes(view[_PREFIX.size : _PREFIX.size + size]), allow_inf_nan=False)
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
        name, dtype_text, shape = entry["name"], entry["dtype"], entry["shape"]
        offset, nbytes = entry["offset"], entry["nbytes"]
        if not isinstance(name, str):
            raise TypeError("name must be a string")
        if not isinstance(dtype_text, str) or len(dtype_text) > MAX_DTYPE_TEXT:
            raise TypeError(f"dtype must be a numpy dtype string such as '<f4', at most {MAX_DTYPE_TEXT} characters")
        if not isinstance(shape, list) or len(shape) > MAX_RANK or not all(_natural(d, MAX_DIM) for d in shape):
            raise TypeError(f"shape must be a list of at most {MAX_RANK} integers from 0 to {MAX_DIM}")
        if not (_natural(offset, len(view)) and _natural(nbytes, len(view))):
            raise TypeError("offset and nbytes must be non-negative integers within the body")
        dtype = np.dtype(dtype_text)
    except (KeyError, TypeError, ValueError) as exc:
        raise TensorsError(f"bad tensor entry {str(entry)[:200]}: {exc}") from None
    _check_dtype(name, dtype)
    expected = math.prod(shape) * dtype.itemsize  # exact: no int64 product to wrap around
    if nbytes != expected:
        raise TensorsError(f"tensor '{name}': {nbytes} bytes for shape {shape} of {dtype} ({expected} expected)")
    if offset % ALIGNMENT or start + offset + nbytes > len(view):
        raise TensorsError(f"tensor '{name}': offset {offset} is unaligned or runs past the body")
    try:
        array = np.frombuffer(view, dtype=dtype, count=nbytes // dtype.itemsize, offset=start + offset).reshape(shape)
    except ValueError as exc:  # e.g. an empty tensor whose other dimensions numpy cannot hold
        raise TensorsError(f"tensor '{name}': shape {shape} is not one numpy can hold: {exc}") from None
    return name, array


def _natural(value, most: int) -> bool:
    """An integer (not a bool: JSON true is not a size) from 0 to `most`."""
    return type(value) is int and 0 <= value <= most


def _check_dtype(name: str, dtype: np.dtype) -> None:
    if dtype.kind not in "biuf" or dtype.hasobject or dtype.fields is not None:
        raise TensorsError(f"tensor '{name}': dtype {dtype} is not a numeric or bool dtype")


__all__ = ["MEDIA_TYPE", "TensorsError", "decode", "encode"]
