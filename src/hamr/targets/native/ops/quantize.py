"""QuantizeLinear, DequantizeLinear (per tensor, per axis, blocked) and DynamicQuantizeLinear.

The arithmetic follows onnx.reference: x / scale in x's type, rounded half to even, plus the
zero point, clipped to the integer range; float8 outputs round x / scale once, saturating
unless `saturate=0`, and ignore the zero point. Dequantizing computes (x - zero point) * scale
in f32 (f64 for int32, as numpy promotes it) and rounds once to the output type.

A scale (and zero point) element is found from gid's coordinates around `axis`:
index = outer * p[4] + (axis coordinate / block) * p[5] + inner * p[6] (p[7..9] for the zero point);
a scalar scale has every multiplier 0, a per-axis scale (1-D) only the axis one, a blocked scale all three.
"""

from __future__ import annotations

from hamr.ir.dtypes import STORAGE, STORAGE_FLOATS, ctype, load, rounded, store
from hamr.targets.native.ops.base import Kernel, Lowering, Source, normalize_axis, numel
from hamr.targets.native.ops.movement import around, split3
from hamr.targets.native.ops.registry import register

QUANT_INTS = {
    "int8": (-128, 127),
    "uint8": (0, 255),
    "int16": (-32768, 32767),
    "uint16": (0, 65535),
    **{name: (s.lo, s.hi) for name, s in STORAGE.items() if name not in STORAGE_FLOATS},
}
QUANT_FLOATS = frozenset({"float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz", "float4_e2m1fn"})
SCALES = frozenset({"float32", "float16", "bfloat16"})
N_PARAMS = 10  # items, axis size, inner size, block, the scale's three index multipliers, the zero point's


def index_mults(x_shape, shape, axis: int, block: int) -> list[int]:
    """[outer, axis, inner] multipliers of the index into a scale (or zero point) of `shape`."""
    if numel(shape) == 1:
        return [0, 0, 0]
    outer, size, inner = around(x_shape, axis)
    if not block:
        if len(shape) != 1 or shape[0] != size:
            raise ValueError(f"scale of shape {list(shape)} does not fit axis {axis} of {list(x_shape)}")
        return [0, 1, 0]
    blocks = -(-size // block)
    expected = tuple(x_shape[:axis]) + (blocks,) + tuple(x_shape[axis + 1 :])
    if tuple(shape) != expected:
        raise ValueError(f"blocked scale of shape {list(shape)}, expected {list(expected)}")
    return [blocks * inner, inner, 1]


class Linear(Lowering):
    """What QuantizeLinear and DequantizeLinear share: the scale's index and the checks."""

    def check_types(self, node) -> str | None:
        raise NotImplementedError

    def check(self, node):
        if node.in_rank(0) is None or node.in_rank(1) is None:
            return "unknown rank"
        if node.attr("block_size", 0) < 0 or node.attr("precision", 0):
            return "precision or block_size attribute"
        return self.check_types(node)

    def infer(self, node, pc):
        return [pc.shape(node.inputs[0])]

    def kernel(self, node):
        x, scale, zero = node.inputs[0], node.inputs[1], node.inputs[2] if node.has_input(2) else None
        block = node.attr("block_size", 0)

        def params(pc):
            shape = pc.shape(x)
            shapes = [pc.shape(scale)] + ([pc.shape(zero)] if zero else [])
            if all(numel(s) == 1 for s in shapes):
                return [numel(shape), 1, 1, 1] + [0] * 6
            axis = normalize_axis(node.attr("axis", 1), len(shape))
            if not 0 <= axis < len(shape):
                raise ValueError(f"{node.op}: axis {node.attr('axis', 1)} out of range for rank {len(shape)}")
            _, size, inner = around(shape, axis)
            zp = index_mults(shape, shapes[-1], axis, block) if zero else [0, 0, 0]
            return [numel(shape), size, inner, block or 1] + index_mults(shape, shapes[0], axis, block) + zp

        index = (
            f"{split3(1)} const i64 s_ = o_ * p[4] + (a_ / p[3]) * p[5] + i_ * p[6], "
            "z_ = o_ * p[7] + (a_ / p[3]) * p[8] + i_ * p[9]; "
        )
        inputs = [name for name in node.inputs[:3] if name]
        return Kernel(inputs, [node.outputs[0]], N_PARAMS, params, body=index + self.value(node), label=node.op.lower())

    def value(self, node) -> str:
        raise NotImplementedError


@register
class QuantizeLinear(Linear):
    ops = ("QuantizeLinear",)

    def check_types(self, node):
        if node.in_dtype(0) not in SCALES or node.in_dtype(1) != node.in_dtype(0):
            return f"dtype {node.in_dtype(0)}"
        out = node.out_dtype()
        if out not in QUANT_INTS and out not in QUANT_FLOATS:
            return f"dtype {out}"
        if not node.has_input(2) and not node.attr("output_dtype", 0) and out != "uint8":
            return f"output {out} without a zero point or output_dtype (onnx says uint8)"
        return None

    def value(self, node):
        x_type, out = node.in_dtype(0), node.out_dtype()
        zp = node.has_input(2)
        q = rounded(x_type, f"{load(x_type, 'in0[gid]')} / {load(x_type, 'in1[s_]')}")
        head = f"const f32 q_ = {q}; "
        if out in QUANT_FLOATS:
            if out == "float4_e2m1fn" and zp:
                head += f"const f32 w_ = q_ + {load(out, 'in2[z_]')}; "
            else:
                head += "const f32 w_ = q_; "
            sat = int(bool(node.attr("saturate", 1)))
            return head + f"out0[gid] = {store(out, f'{STORAGE[out].of64}(w_, {sat})')};"
        lo, hi = QUANT_INTS[out]
        shifted = f"rint((f64)q_) + (f64){load(out, 'in2[z_]')}" if zp else "rint((f64)q_)"
        clipped = f"(!(r_ >= {lo}) ? {lo} : r_ > {hi} ? {hi} : r_)"  # NaN -> the low end, as numpy's int cast
        return head + f"const f64 r_ = {shifted}; out0[gid] = {store(out, f'({ctype(out)}){clipped}')};"


@register
class DequantizeLinear(Linear):
    ops = ("DequantizeLinear",)

    def check_types(self, node):
        x_type = node.in_dtype(0)
        if x_type not in QUANT_INTS and x_type not in QUANT_FLOATS and x_type != "int32":
            return f"dtype {x_type}"
        if node.in_dtype(1) not in SCALES or node.out_dtype() not in SCALES:
            return f"dtype {node.in_dtype(1)}"
        return None

    def value(self, node):
        x_type, out = node.in_dtype(0), node.out_dtype()
        t = "f64" if x_type == "int32" else "f32"
        dx = f"({t})(f32){load(x_type, 'in0[gid]')}"
        if node.has_input(2) and x_type not in QUANT_FLOATS:
            dx = f"({dx} - ({t}){load(x_type, 'in2[z_]')})"
        y = f"{dx} * ({t}){load(node.in_dtype(1), 'in1[s_]')}"
        return f"out0[gid] = {store(out, f'({ctype(out)})({y})')};"


# the range of x (OpenMP reductions in C), the scale and zero point, then every element; p: [1, elements]
C_DYNAMIC_QUANTIZE = """static void $name(const i64 *p, const f32 *in0, u8 *out0, f32 *out1, u8 *out2) {
  const i64 m_ = p[1];
  const int nt = m_ > PARALLEL_THRESHOLD ? omp_get_max_threads() : 1;
  f32 hi_ = 0, lo_ = 0;
  #pragma omp parallel for schedule(static) num_threads(nt) reduction(max:hi_) reduction(min:lo_) if(nt > 1)
  for (i64 k_ = 0; k_ < m_; k_++) { const f32 v_ = in0[k_]; hi_ = v_ > hi_ ? v_ : hi_; lo_ = v_ < lo_ ? v_ : lo_; }
  $SCALE
  #pragma omp parallel for schedule(static) num_threads(nt) if(nt > 1)
  for (i64 k_ = 0; k_ < m_; k_++) { $QUANTIZE }
  out1[0] = sc_; out2[0] = (u8)zp_;
}
"""

CL_DYNAMIC_QUANTIZE = """__kernel void $name(__global const long *P, const long poff, __global const f32 *in0, __global u8 *out0,
                    __global f32 *out1, __global u8 *out2) {
  __global const long *p = P + poff;
  if (get_global_id(0) != 0) return;
  const long m_ = p[1];
  f32 hi_ = 0, lo_ = 0;
  for (long k_ = 0; k_ < m_; k_++) { const f32 v_ = in0[k_]; hi_ = v_ > hi_ ? v_ : hi_; lo_ = v_ < lo_ ? v_ : lo_; }
  $SCALE
  for (long k_ = 0; k_ < m_; k_++) { $QUANTIZE }
  out1[0] = sc_; out2[0] = (u8)zp_;
}
"""

DYNAMIC_QUANTIZE_VALUES = dict(
    SCALE="const f32 sc_ = (hi_ == lo_ ? 1.0f : hi_ - lo_) / 255.0f; const f32 z0_ = 0.0f - lo_ / sc_; "
    "const f32 zp_ = rint(z0_ < 0 ? 0.0f : z0_ > 255 ? 255.0f : z0_);",
    QUANTIZE="const f32 y_ = rint(in0[k_] / sc_) + zp_; out0[k_] = (u8)(!(y_ >= 0) ? 0 : y_ > 255 ? 255 : y_);",
)


@register
class DynamicQuantizeLinear(Lowering):
    """The scale needs the whole tensor first: one function, its two passes parallel in C, one work item in OpenCL."""

    ops = ("DynamicQuantizeLinear",)

    def check(self, node):
        if node.in_dtype(0) != "float32":
            return f"dtype {node.in_dtype(0)}"
        if any(not name for name in node.outputs):
            return "skipped optional output"
        return None

    def dialects(self, node):
        return ("c", "opencl")

    def infer(self, node, pc):
        return [pc.shape(node.inputs[0]), (), ()]

    def kernel(self, node):
        x = node.inputs[0]

        def params(pc):
            return [1, numel(pc.shape(x))]

        sources = {
            "c": Source(C_DYNAMIC_QUANTIZE, DYNAMIC_QUANTIZE_VALUES),
            "opencl": Source(CL_DYNAMIC_QUANTIZE, DYNAMIC_QUANTIZE_VALUES, lambda params: ((1,), None)),
        }
        return Kernel([x], list(node.outputs), 2, params, sources=sources, label="dynamicquantize", own_args=(1, 3))
