"""The optimized BLAS the cpu target calls for GEMM and Conv (scipy-openblas32 from PyPI)."""

from __future__ import annotations

import ctypes
import functools
import os

from hamr.errors import HamrError


@functools.lru_cache(maxsize=1)
def openblas() -> ctypes.CDLL:
    try:
        import scipy_openblas32
    except ImportError as exc:
        raise HamrError("the cpu target needs scipy-openblas32 (pip install scipy-openblas32)") from exc
    path = os.path.join(scipy_openblas32.get_lib_dir(), f"lib{scipy_openblas32.get_library()}.so")
    return ctypes.CDLL(path)


def sgemm_address() -> int:
    return ctypes.cast(openblas().scipy_cblas_sgemm, ctypes.c_void_p).value


def set_blas_threads(n: int) -> None:
    openblas().scipy_openblas_set_num_threads(ctypes.c_int(n))
