"""The element types native kernels handle, and their names in generated code."""

from __future__ import annotations

import numpy as np

#: numpy dtype name -> type name in generated C / OpenCL C (typedefs in the preludes)
CTYPES = {
    "float32": "f32",
    "float64": "f64",
    "int8": "i8",
    "int16": "i16",
    "int32": "i32",
    "int64": "i64",
    "uint8": "u8",
    "uint16": "u16",
    "uint32": "u32",
    "uint64": "u64",
    "bool": "b8",
}
FLOATS = frozenset({"float32", "float64"})
SIGNED = frozenset({"int8", "int16", "int32", "int64"})
UNSIGNED = frozenset({"uint8", "uint16", "uint32", "uint64"})
INTEGERS = SIGNED | UNSIGNED
NUMERIC = FLOATS | INTEGERS


def ctype(dtype: str) -> str:
    return CTYPES[dtype]


def itemsize(dtype: str) -> int:
    return np.dtype(dtype).itemsize
