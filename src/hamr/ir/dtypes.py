"""The element types native kernels handle, and their names in generated code."""

from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes  # noqa: F401  (gives numpy the names bfloat16, float8_*, int4...)
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


@dataclass(frozen=True)
class Storage:
    """A type kept in memory as bits and computed in a wider type: loads decode, stores encode.

    `load`/`store` name the prelude's conversions (render/conversions.py); `lo`/`hi` bound the
    integer types, `max` is the largest finite value of the float types.
    """

    buffer: str  # C type of the buffer elements
    compute: str  # C type of the values kernels compute with
    load: str
    store: str
    lo: int = 0
    hi: int = 0
    max: float = 0.0

    @property
    def of64(self) -> str:
        """The prelude macro `name(x, sat)`: an f64 rounded once to this float type, as its f32 value."""
        return self.load.removesuffix("_ld") + "_of64"


#: numpy (ml_dtypes) dtype name -> its storage; every such float is exact in f32
STORAGE = {
    "float16": Storage("u16", "f32", "h_f16_ld", "h_f16_st", max=65504.0),
    "bfloat16": Storage("u16", "f32", "h_bf16_ld", "h_bf16_st", max=3.3895313892515355e38),
    "float8_e4m3fn": Storage("u8", "f32", "h_e4m3fn_ld", "h_e4m3fn_st", max=448.0),
    "float8_e4m3fnuz": Storage("u8", "f32", "h_e4m3fnuz_ld", "h_e4m3fnuz_st", max=240.0),
    "float8_e5m2": Storage("u8", "f32", "h_e5m2_ld", "h_e5m2_st", max=57344.0),
    "float8_e5m2fnuz": Storage("u8", "f32", "h_e5m2fnuz_ld", "h_e5m2fnuz_st", max=57344.0),
    "float4_e2m1fn": Storage("u8", "f32", "h_e2m1_ld", "h_e2m1_st", max=6.0),
    "int4": Storage("u8", "i8", "h_i4_ld", "h_i4_st", lo=-8, hi=7),
    "uint4": Storage("u8", "u8", "h_u4_ld", "h_u4_st", lo=0, hi=15),
    "int2": Storage("u8", "i8", "h_i2_ld", "h_i2_st", lo=-2, hi=1),
    "uint2": Storage("u8", "u8", "h_u2_ld", "h_u2_st", lo=0, hi=3),
}
STORAGE_FLOATS = frozenset(d for d, s in STORAGE.items() if s.compute == "f32")
STORAGE_INTS = frozenset(STORAGE) - STORAGE_FLOATS
#: floats an elementwise expression may compute on (storage floats are computed in f32)
COMPUTE_FLOATS = FLOATS | STORAGE_FLOATS
ELEMENT = frozenset(CTYPES) | frozenset(STORAGE)


def ctype(dtype: str) -> str:
    """The C type values of `dtype` are computed in."""
    storage = STORAGE.get(dtype)
    return storage.compute if storage else CTYPES[dtype]


def buffer_ctype(dtype: str) -> str:
    """The C type of a buffer of `dtype`."""
    storage = STORAGE.get(dtype)
    return storage.buffer if storage else CTYPES[dtype]


def load(dtype: str, expr: str) -> str:
    """A buffer element `expr` of `dtype` as a computed value."""
    storage = STORAGE.get(dtype)
    return f"{storage.load}({expr})" if storage else expr


def store(dtype: str, expr: str) -> str:
    """A computed value of `dtype` as a buffer element."""
    storage = STORAGE.get(dtype)
    return f"{storage.store}({expr})" if storage else expr


def rounded(dtype: str, expr: str) -> str:
    """A computed value rounded to what `dtype` can hold, as numpy does after each op."""
    storage = STORAGE.get(dtype)
    return f"{storage.load}({storage.store}({expr}))" if storage else expr


def itemsize(dtype: str) -> int:
    return np.dtype(dtype).itemsize
