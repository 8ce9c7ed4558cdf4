"""CUDA C and HIP, the cuda and rocm targets' dialects: the OpenCL C kernels under a dialect header.

Every lowering writes its device kernels once, in OpenCL C spellings (``__kernel``, ``__global``,
``__local``, ``get_global_id``, ``barrier``, ``as_float``...). The header of each GPU dialect maps those
spellings onto the vendor's, so one kernel text compiles for OpenCL, NVRTC and clang's HIP alike.
A launch is a grid of blocks: the OpenCL global size divided by the block (the local size, or
:data:`MAP_BLOCK` threads where the kernel leaves it open and bounds-checks its own work items).
"""

from __future__ import annotations

import math

from hamr.targets.native.assemble import Lowered
from hamr.targets.native.ops.base import Kernel
from hamr.targets.native.render.c import shared_functions
from hamr.targets.native.render.common import COMMON
from hamr.targets.native.render.conversions import CONVERSIONS
from hamr.targets.native.render.gpu_heads import CUDA_HEAD, HIP_HEAD, HIP_MATH
from hamr.targets.native.render.opencl import OpenCLRenderer
from hamr.targets.native.render.vecmath import VECMATH_OPENCL

MAP_BLOCK = 256  # threads per block of a kernel whose OpenCL local size is left to the implementation

# The OpenCL spellings both GPU dialects share; each dialect's head defines the vendor primitives they use
# (H_TID, H_BID, H_BDIM, H_SYNC, H_BITS_F32/H_F32_BITS, H_BITS_F64/H_F64_BITS, H_KERNEL_ATTR).
OPENCL_SPELLINGS = r"""
#define H_DEVICE_DIALECT 1
typedef signed char i8; typedef short i16; typedef int i32; typedef long i64;
typedef unsigned char u8; typedef unsigned short u16; typedef unsigned int u32; typedef unsigned long u64;
typedef unsigned char uchar; typedef unsigned short ushort; typedef unsigned int uint; typedef unsigned long ulong;
typedef u8 b8; typedef float f32; typedef double f64;
#define __kernel extern "C" __global__
#define __global
#define __local __shared__
#define CLK_LOCAL_MEM_FENCE 1
#define CLK_GLOBAL_MEM_FENCE 2
#define barrier(F) H_SYNC()
#define get_local_id(D) ((i64)H_TID(D))
#define get_group_id(D) ((i64)H_BID(D))
#define get_local_size(D) ((i64)H_BDIM(D))
#define get_global_id(D) (get_group_id(D) * get_local_size(D) + get_local_id(D))
#define as_uint(X) H_F32_BITS(X)
#define as_int(X) ((i32)H_F32_BITS(X))
#define as_float(X) H_BITS_F32((u32)(X))
#define as_ulong(X) H_F64_BITS(X)
#define as_double(X) H_BITS_F64((u64)(X))
#define mad(A, B, C) ((A) * (B) + (C))
#define clamp(X, LO, HI) H_MIN(H_MAX((X), (LO)), (HI))
#define select(A, B, C) ((C) ? (B) : (A))
#ifndef INFINITY
#define INFINITY H_BITS_F32(0x7f800000u)
#endif
#ifndef NAN
#define NAN H_BITS_F32(0x7fc00000u)
#endif
"""

CUDA_PRELUDE = CUDA_HEAD + OPENCL_SPELLINGS + COMMON + CONVERSIONS + VECMATH_OPENCL

HIP_PRELUDE = HIP_HEAD + HIP_MATH + OPENCL_SPELLINGS + COMMON + CONVERSIONS + VECMATH_OPENCL


class GpuRenderer(OpenCLRenderer):
    """A GPU dialect that renders the OpenCL C kernels under its own header."""

    kernels_from = "opencl"

    def source(self, lowered: Lowered) -> str:
        """The header, then each distinct kernel once (launches of one text share a function: hamr_k<i>)."""
        return self.joined(self.functions(lowered)[0], lowered)

    def joined(self, functions: dict[str, str], lowered: Lowered) -> str:
        return "\n".join([*self.preludes(lowered), *functions.values()])

    def functions(self, lowered: Lowered) -> tuple[dict[str, str], dict[str, str]]:
        """function name -> its text, and launch name -> the function it calls."""
        texts, called = shared_functions(self, lowered)
        return {f"hamr_k{i}": text for i, text in enumerate(texts)}, called

    def launch_grid(self, kernel: Kernel, params: list[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(blocks per grid dimension, threads per block) of one launch: the OpenCL range made whole blocks."""
        global_size, local_size = self.launch_range(kernel, params)
        block = tuple(local_size) if local_size is not None else (MAP_BLOCK,) + (1,) * (len(global_size) - 1)
        grid = tuple(math.ceil(int(g) / int(b)) for g, b in zip(global_size, block))
        return grid, block


class CudaRenderer(GpuRenderer):
    dialect = "cuda"
    prelude = CUDA_PRELUDE


class HipRenderer(GpuRenderer):
    dialect = "hip"
    prelude = HIP_PRELUDE
