"""Cast and CastLike between every element type native kernels hold, storage types included.

A value of a storage float is computed as its exact f32 value: the fuser rounds every result
to its type (`hamr.ir.dtypes.rounded`) unless the lowering `rounds` itself, as these do. A cast
to float16 or bfloat16 from a type that f32 holds exactly rounds from f32; from f64 and the wide
integers it rounds once, from f64 (`Storage.of64`). Casts to float8 always go through f64, with ONNX's `saturate`.
Casts from a float to int4/uint4/int2/uint2 truncate and give 0 out of range, as ml_dtypes does;
from an integer they wrap.
"""

from __future__ import annotations

from hamr.ir.dtypes import COMPUTE_FLOATS, CTYPES, STORAGE, STORAGE_FLOATS, ctype, rounded
from hamr.targets.native.ops.elementwise import Elementwise
from hamr.targets.native.ops.registry import register

EXACT_IN_F32 = frozenset({"float32", "int8", "int16", "uint8", "uint16", "bool"}) | frozenset(STORAGE)


def cast_expr(x: str, src: str, dst: str, saturate: bool) -> str:
    if dst == "bool":
        return f"((b8)({x} != 0))"
    storage = STORAGE.get(dst)
    if dst in STORAGE_FLOATS:
        if dst.startswith("float8"):
            return f"{storage.of64}({x}, {int(saturate)})"
        return rounded(dst, f"((f32){x})") if src in EXACT_IN_F32 else f"{storage.of64}({x}, 0)"
    if storage is not None and src in COMPUTE_FLOATS:
        return f"(({x}) > {storage.lo - 1} && ({x}) < {storage.hi + 1} ? ({storage.compute})({x}) : 0)"
    return rounded(dst, f"(({ctype(dst)}){x})")


class CastBase(Elementwise):
    element_dtypes = frozenset(CTYPES) | frozenset(STORAGE)
    rounds = True  # cast_expr's values are already ones the output type holds

    def expr(self, node, args):
        return [cast_expr(args[0], node.in_dtype(0), node.out_dtype(), bool(node.attr("saturate", 1)))]


@register
class Cast(CastBase):
    ops = ("Cast",)


@register
class CastLike(CastBase):
    ops = ("CastLike",)

    def infer(self, node, pc):
        return [pc.shape(node.inputs[0])]

    def uses(self, node):
        return [0]
