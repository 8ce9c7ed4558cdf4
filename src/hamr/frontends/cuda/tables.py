"""CUDA spellings and their portable (hamr kernel C) counterparts."""

from __future__ import annotations

BUILTIN_VARS = {"threadIdx": "get_local_id", "blockIdx": "get_group_id", "blockDim": "get_local_size"}
BUILTIN_VARS["gridDim"] = "get_num_groups"
AXES = {"x": "0", "y": "1", "z": "2"}

_GENERIC = (
    "exp exp2 log log2 log10 sqrt rsqrt fabs fmax fmin pow tanh tan sin cos erf erfc floor ceil round trunc fmod fma"
    " atan atan2 sinh cosh asin acos expm1 log1p hypot cbrt copysign"
).split()
MATH = {f + "f": f for f in _GENERIC}
MATH.update({"rintf": "rint", "__expf": "exp", "__logf": "log", "__sinf": "sin", "__cosf": "cos", "__tanf": "tan"})
MATH.update({"__powf": "pow", "__fsqrt_rn": "sqrt", "__fmaf_rn": "fma", "min": "H_MIN", "max": "H_MAX"})

SHUFFLES = {
    "__shfl_sync": "H_SHFL",
    "__shfl_down_sync": "H_SHFL_DOWN",
    "__shfl_up_sync": "H_SHFL_UP",
    "__shfl_xor_sync": "H_SHFL_XOR",
}
# Warp votes, (mask, predicate): collective like the shuffles, converted only with the full mask.
VOTES = {"__ballot_sync": "H_BALLOT", "__any_sync": "H_ANY", "__all_sync": "H_ALL"}
BIT_INTRINSICS = {"__popc": "H_POPC", "__clz": "H_CLZ", "__ffs": "H_FFS"}
LEGACY_SHUFFLES = {
    "__shfl": "H_SHFL",
    "__shfl_down": "H_SHFL_DOWN",
    "__shfl_up": "H_SHFL_UP",
    "__shfl_xor": "H_SHFL_XOR",
}

ATOMICS = {
    "atomicAdd": "H_ATOMIC_ADD",
    "atomicSub": "H_ATOMIC_SUB",
    "atomicMax": "H_ATOMIC_MAX",
    "atomicMin": "H_ATOMIC_MIN",
    "atomicExch": "H_ATOMIC_XCHG",
    "atomicCAS": "H_ATOMIC_CAS",
    "atomicInc": "H_ATOMIC_INC",
    "atomicAnd": "H_ATOMIC_AND",
    "atomicOr": "H_ATOMIC_OR",
    "atomicXor": "H_ATOMIC_XOR",
}
ATOMIC_TYPES = {"int", "unsigned int", "float"}
ATOMIC_INT_ONLY = {"atomicCAS", "atomicInc", "atomicAnd", "atomicOr", "atomicXor"}

BINARY_INTRINSICS = {"__fdividef": "/", "__fadd_rn": "+", "__fmul_rn": "*"}  # f(a, b) is ((a) op (b))
BARRIERS = {"__syncthreads", "__syncwarp"}

TYPES = {
    "bool": "int",
    "size_t": "ulong",
    "int8_t": "char",
    "uint8_t": "uchar",
    "int16_t": "short",
    "uint16_t": "ushort",
    "int32_t": "int",
    "uint32_t": "uint",
    "int64_t": "long",
    "uint64_t": "ulong",
}
WORDS = {"true": "1", "false": "0", "nullptr": "0", "NULL": "0", "constexpr": "const", "warpSize": "H_WARP_SIZE"}
DROPPED = {"__restrict__", "__restrict", "restrict"}
QUALIFIERS = {
    "__global__",
    "__device__",
    "__host__",
    "__forceinline__",
    "__inline__",
    "inline",
    "static",
    "__noinline__",
}

_FENCE = "memory fences are not in the portable form (a fence orders memory, it is not a barrier)"

# Identifiers that make a device function unconvertible, and why.
REFUSED = {
    "printf": "printf: the portable form has no device printf",
    "malloc": "dynamic allocation (malloc) in device code",
    "free": "dynamic allocation (free) in device code",
    "new": "dynamic allocation (new) in device code",
    "delete": "dynamic allocation (delete) in device code",
    "asm": "inline PTX asm",
    "cooperative_groups": "cooperative groups",
    "this": "C++ classes in device code",
    "__activemask": "__activemask: warp votes and partial warps are not in the portable form yet",
    "__syncthreads_count": "__syncthreads_count: barriers that count or vote are not in the portable form",
    "__syncthreads_and": "__syncthreads_and: barriers that count or vote are not in the portable form",
    "__syncthreads_or": "__syncthreads_or: barriers that count or vote are not in the portable form",
    "__threadfence": f"__threadfence: {_FENCE}",
    "__threadfence_block": f"__threadfence_block: {_FENCE}",
    "__threadfence_system": f"__threadfence_system: {_FENCE}",
    "clock": "clock(): timers are not in the portable form",
    "clock64": "clock64(): timers are not in the portable form",
    "atomicDec": "atomicDec: not in the portable form (add, sub, max, min, exch, CAS, inc, and, or, xor)",
    "dim3": "dim3 values in device code",
    "throw": "exceptions in device code",
    "try": "exceptions in device code",
    "__half": "half precision (__half) is not in the portable form: use float",
    "half": "half precision (half) is not in the portable form: use float",
    "__half2": "half precision (__half2) is not in the portable form: use float2",
    "half2": "half precision (half2) is not in the portable form: use float2",
    "__nv_bfloat16": "bfloat16 (__nv_bfloat16) is not in the portable form: use float",
    "__nv_bfloat162": "bfloat16 (__nv_bfloat162) is not in the portable form: use float2",
}
REFUSED_CALLS = {"printf", "free", "malloc", "clock", "clock64"}  # refused only when called: may name variables
REFUSED_TYPE_WORDS = {"half", "half2"}  # refused only where they declare something: may name variables
# The types refused before the AST is looked at: their values would otherwise be reported as unknown structs.
REFUSED_TYPES = {"__half", "half", "__half2", "half2", "__nv_bfloat16", "__nv_bfloat162"}
REFUSED_PREFIXES = {
    "tex": "texture fetches (textures/surfaces are not in the portable form)",
    "surf": "surface access (textures/surfaces are not in the portable form)",
}
TEXTURE_CALLS = {"tex1Dfetch", "tex1D", "tex2D", "tex3D", "tex2DLayered", "surf2Dread", "surf2Dwrite", "surf1Dwrite"}
VECTOR_TYPES = {f"{t}{n}" for t in ("float", "int", "uint") for n in (2, 4)} | {"double2"}

# Spellings of the full warp mask, the only one that converts.
FULL_MASKS = {"0xffffffff", "0xffffffffu", "0xffffffffU", "-1", "~0", "~0u", "0xFFFFFFFF", "0xFFFFFFFFu", "0xFFFFFFFFU"}
