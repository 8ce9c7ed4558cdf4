"""Resize and Upsample: every mode as a separable gather with per-axis tap tables.

Resize is separable: along each axis an output position reads `n` input positions with
weights that depend only on that position. The tables are computed on the host while
planning, with the spec's float64 arithmetic (as `onnx.reference` does), so nearest
rounding, every coordinate transformation, antialias and `exclude_outside` match the
reference exactly. The kernel then only gathers: one work item per output row reads the
outer axes' records once and walks the last axis, each element summing the product of its
axes' taps. The tables travel in the kernel's parameters: per axis and output position one
record `[extrapolated (tf_crop_and_resize only), offsets (n), weights as f32 bits (n; not for
nearest)]`, so the parameter count varies with the shapes.
"""

from __future__ import annotations

import math

import numpy as np

from hamr.ir.dtypes import CTYPES, FLOATS, ctype
from hamr.targets.native.ops.base import VARIABLE_PARAMS, Kernel, Lowering, numel, strides_of
from hamr.targets.native.ops.elementwise import lit
from hamr.targets.native.ops.movement import coords
from hamr.targets.native.ops.reduce import BITCASTS
from hamr.targets.native.ops.registry import register

MODES = ("nearest", "linear", "cubic")
TRANSFORMS = (
    "half_pixel",
    "half_pixel_symmetric",
    "pytorch_half_pixel",
    "align_corners",
    "asymmetric",
    "tf_crop_and_resize",
)
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
SMALL_INTS = frozenset({"int8", "uint8", "int16", "uint16"})  # interpolated through f32 exactly


def _text(node, name: str, default: str) -> str:
    value = node.attr(name, default)
    return value.decode() if isinstance(value, bytes) else str(value)


# ---- the spec's coefficients, per output position --------------------------------------


def _nearest(ratio: float, mode: str) -> list[float]:
    if float(ratio).is_integer():
        return [0.0, 1.0]
    if mode == "round_prefer_floor":
        return [float(ratio <= 0.5), float(ratio > 0.5)]
    if mode == "round_prefer_ceil":
        return [float(ratio < 0.5), float(ratio >= 0.5)]
    return [1.0, 0.0] if mode == "floor" else [0.0, 1.0]


def _linear(ratio: float, scale: float, antialias: bool) -> list[float]:
    if not antialias:
        return [1 - ratio, ratio]
    scale = min(scale, 1.0)
    start = int(np.floor(-1 / scale) + 1)
    args = (np.arange(start, 2 - start) - ratio) * scale
    coeffs = np.clip(1 - np.abs(args), 0, 1)
    return list(coeffs / coeffs.sum())


def _cubic(ratio: float, scale: float, a: float, antialias: bool) -> list[float]:
    if not antialias:
        r1 = 1 - ratio
        return [
            ((a * (ratio + 1) - 5 * a) * (ratio + 1) + 8 * a) * (ratio + 1) - 4 * a,
            ((a + 2) * ratio - (a + 3)) * ratio * ratio + 1,
            ((a + 2) * r1 - (a + 3)) * r1 * r1 + 1,
            ((a * (r1 + 1) - 5 * a) * (r1 + 1) + 8 * a) * (r1 + 1) - 4 * a,
        ]
    scale = min(scale, 1.0)

    def coeff(x: float) -> float:
        x = abs(x)
        if x <= 1:
            return (a + 2) * x**3 - (a + 3) * x * x + 1
        return a * x**3 - 5 * a * x * x + 8 * a * x - 4 * a if x < 2 else 0.0

    start = int(np.floor(-2 / scale) + 1)
    coeffs = [coeff(scale * (i - ratio)) for i in range(start, 2 - start)]
    return [c / sum(coeffs) for c in coeffs]


class Attrs:
    """The node's attributes that shape the tables."""

    def __init__(self, node):
        upsample = node.op == "Upsample"
        self.mode = _text(node, "mode", "nearest")
        self.transform = "asymmetric" if upsample else _text(node, "coordinate_transformation_mode", "half_pixel")
        self.nearest_mode = "floor" if upsample else _text(node, "nearest_mode", "round_prefer_floor")
        self.cubic_a = float(node.attr("cubic_coeff_a", -0.75))
        self.exclude_outside = bool(node.attr("exclude_outside", 0))
        self.extrapolation = float(node.attr("extrapolation_value", 0.0))
        self.antialias = bool(node.attr("antialias", 0))
        self.policy = _text(node, "keep_aspect_ratio_policy", "stretch")
        self.axes = node.attr("axes")

    def reason(self) -> str | None:
        if self.mode not in MODES:
            return f"mode {self.mode}"
        if self.transform not in TRANSFORMS:
            return f"coordinate_transformation_mode {self.transform}"
        if self.mode == "nearest" and (self.nearest_mode not in NEAREST_MODES or self.antialias):
            return f"nearest_mode {self.nearest_mode}" if not self.antialias else "antialias with nearest"
        if self.policy not in ("stretch", "not_larger", "not_smaller"):
            return f"keep_aspect_ratio_policy {self.policy}"
        return None

    def coeffs(self, ratio: float, scale: float) -> list[float]:
        if self.mode == "nearest":
            return _nearest(ratio, self.nearest_mode)
        if self.mode == "linear":
            return _linear(ratio, scale, self.antialias)
        return _cubic(ratio, scale, self.cubic_a, self.antialias)


def geometry(attrs: Attrs, shape, scales, sizes, roi):
    """(output shape, scale per axis, roi per axis or None) as the spec computes them."""
    rank = len(shape)
    axes = list(range(rank)) if attrs.axes is None else [a + rank if a < 0 else a for a in attrs.axes]
    if roi is not None and roi.size == 0:
        roi = None
    if roi is not None:
        full = [np.float32(0.0)] * rank + [np.float32(1.0)] * rank
        for i, a in enumerate(axes):
            full[a], full[rank + a] = roi[i], roi[len(axes) + i]
        roi = [(full[a], full[rank + a]) for a in range(rank)]
    if sizes is not None:
        out = [int(d) for d in shape]
        for i, a in enumerate(axes):
            out[a] = int(sizes[i])
        factors = [out[a] / shape[a] if shape[a] else 1.0 for a in range(rank)]
        if attrs.policy != "stretch":
            pick = min if attrs.policy == "not_larger" else max
            scale = pick(factors[a] for a in axes)
            factors = [scale if a in axes else 1.0 for a in range(rank)]
            out = [int(scale * shape[a] + 0.5) if a in axes else int(shape[a]) for a in range(rank)]
    else:
        factors = [1.0] * rank
        for i, a in enumerate(axes):
            factors[a] = float(scales[i])
        out = [int(v) for v in (np.array(factors, dtype=np.float64) * np.array(shape, dtype=np.float64))]
    return tuple(out), factors, roi, axes


def _source_coords(attrs: Attrs, y: np.ndarray, scale: float, in_w: int, out_w: int, roi):
    """Source coordinate of each output position, and which of them extrapolate (the spec's modes)."""
    width = scale * in_w
    mode = attrs.transform
    if mode == "align_corners":
        return (np.zeros(out_w) if width == 1 else y * (in_w - 1) / (width - 1)), None
    if mode == "asymmetric":
        return y / scale, None
    if mode == "tf_crop_and_resize":
        lo, hi = roi if roi is not None else (np.float32(0.0), np.float32(1.0))
        x = np.full(out_w, (hi - lo) * (in_w - 1) / 2) if width == 1 else y * (hi - lo) * (in_w - 1) / (width - 1)
        x = x + lo * (in_w - 1)
        return x, (x < 0) | (x > in_w - 1)
    if mode == "pytorch_half_pixel":
        return (np.full(out_w, -0.5) if width == 1 else (y + 0.5) / scale - 0.5), None
    if mode == "half_pixel":
        return (y + 0.5) / scale - 0.5, None
    offset = in_w / 2 * (1 - out_w / width)  # half_pixel_symmetric
    return offset + (y + 0.5) / scale - 0.5, None


def axis_table(attrs: Attrs, in_w: int, out_w: int, scale: float, roi):
    """(source indices [out_w, n], weights [out_w, n], extrapolated [out_w]) along one axis."""
    y = np.arange(out_w, dtype=np.float64)
    if not out_w or not in_w:
        return np.zeros((out_w, 1), np.int64), np.ones((out_w, 1)), np.zeros(out_w, bool)
    identity = math.isclose(scale, 1.0) and out_w == in_w
    if identity and (roi is None or (math.isclose(float(roi[0]), 0.0) and math.isclose(float(roi[1]), 1.0))):
        return np.arange(out_w, dtype=np.int64)[:, None], np.ones((out_w, 1)), np.zeros(out_w, bool)
    x, extrapolated = _source_coords(attrs, y, scale, in_w, out_w, roi)
    floor = np.floor(x).astype(np.int64)
    ratios = np.where(x == floor, 1.0, x - floor)
    weights = np.array([attrs.coeffs(float(r), scale) for r in ratios], dtype=np.float64)
    n = weights.shape[1]
    pad = int(np.ceil(n / 2))
    padded = x + pad
    p = np.floor(padded).astype(np.int64)
    frac = padded - p
    if n % 2 == 0:
        start = p + np.where(frac == 0, -(n // 2), -(n // 2) + 1)
    else:
        start = p + np.where(frac <= 0.5, -((n - 1) // 2), -((n - 1) // 2) + 1)
    index = start[:, None] + np.arange(n)[None, :] - pad
    if attrs.exclude_outside:
        weights = np.where((index < 0) | (index >= in_w), 0.0, weights)
        total = weights.sum(axis=1, keepdims=True)
        weights = weights / np.where(total == 0, 1.0, total)
    index = np.clip(index, 0, in_w - 1)
    if attrs.mode == "nearest":
        pick = np.argmax(weights, axis=1)
        rows = np.arange(out_w)
        index, weights = index[rows, pick][:, None], weights[rows, pick][:, None]
    flags = np.zeros(out_w, bool) if extrapolated is None else extrapolated
    return index, weights, flags


# ---- the lowering -------------------------------------------------------------------------

MODE_TAPS = {"nearest": 1, "linear": 2, "cubic": 4}


def static_taps(node, attrs: Attrs, rank: int) -> list[int | None]:
    """Taps per axis where known at compile time (None: read from the parameters): 1 on an axis that
    constant scales or sizes leave alone, the mode's count on the others. Unrolled loops follow."""
    if attrs.antialias or attrs.transform == "tf_crop_and_resize" or attrs.policy != "stretch":
        return [None] * rank
    axes = list(range(rank)) if attrs.axes is None else [a + rank if a < 0 else a for a in attrs.axes]
    shape = node.in_shape(0) or (None,) * rank
    if node.op == "Upsample":
        scales, sizes = node.attr("scales") if node.attr("scales") is not None else node.const(1), None
    else:
        scales, sizes = node.const(2), node.const(3)
    scales = None if scales is None or np.asarray(scales).size == 0 else np.asarray(scales).reshape(-1)
    sizes = None if sizes is None or sizes.size == 0 else sizes.reshape(-1)
    taps: list[int | None] = [1] * rank
    for i, a in enumerate(axes):
        if scales is not None and i < len(scales):
            same = math.isclose(float(scales[i]), 1.0)
        elif sizes is not None and i < len(sizes):
            same = isinstance(shape[a], int) and int(sizes[i]) == shape[a]
        else:
            return [None] * rank
        taps[a] = 1 if same else MODE_TAPS[attrs.mode]
    return taps


def _fit(index, weights, taps: int | None):
    """The table padded with zero-weight taps to the compiled count (an axis the spec skips at run time)."""
    if taps is None or index.shape[1] == taps:
        return index, weights
    if index.shape[1] > taps:
        raise ValueError(f"{index.shape[1]} taps on an axis compiled for {taps}")
    pad = taps - index.shape[1]
    return np.pad(index, ((0, 0), (0, pad))), np.pad(weights, ((0, 0), (0, pad)))


def _records(index, weights, flags, stride: int, attrs: Attrs) -> list[int]:
    parts = [index * stride]
    if attrs.transform == "tf_crop_and_resize":
        parts.insert(0, flags.astype(np.int64)[:, None])
    if attrs.mode != "nearest":
        parts.append(weights.astype(np.float32).view(np.int32).astype(np.int64))
    return np.concatenate(parts, axis=1).reshape(-1).tolist()


def _body(rank: int, dtype: str, attrs: Attrs, taps: list[int | None]) -> str:
    """One work item per output row (every axis but the last): the outer axes' records are read
    once, then the row's elements walk the last axis's records."""
    t = ctype(dtype)
    nearest = attrs.mode == "nearest"
    fl = int(attrs.transform == "tf_crop_and_resize")  # records start with the extrapolation flag
    last = rank - 1
    per = lambda a: f"({fl} + n{a})" if nearest else f"({fl} + 2 * n{a})"  # noqa: E731  (record length)
    lines = [coords(last, 1), "int ex_ = 0;"]
    for a in range(rank):
        at = f"c{a} * {per(a)}" if a < last else "0"
        n = f"p[{1 + rank + a}]" if taps[a] is None else str(taps[a])
        lines.append(
            f"const i64 n{a} = {n}, b{a} = p[{1 + 2 * rank + a}] + {at};"
            + (f" ex_ |= (int)p[b{a}];" if a < last and fl else "")
        )
    lines.append(f"const i64 ow_ = p[{rank}], ro_ = gid * ow_;")
    fill = lit(attrs.extrapolation, t) if dtype in FLOATS else f"({t}){int(attrs.extrapolation)}"
    lines.append(f"for (i64 w_ = 0; w_ < ow_; w_++) {{ const i64 bw_ = b{last} + w_ * {per(last)};")
    outside = "(ex_ | (int)p[bw_]) ? " + fill + " : " if fl else ""
    if nearest:
        if last:
            lines.insert(-2, "const i64 o_ = " + " + ".join(f"p[b{a} + {fl}]" for a in range(last)) + ";")
        lines.append(f"out0[ro_ + w_] = {outside}in0[{'o_ + ' if last else ''}p[bw_ + {fl}]]; }}")
        return " ".join(lines)
    acc = "f64" if dtype == "float64" else "f32"
    lines.append(f"{acc} acc_ = 0;")
    for a in range(last):
        w_prev, o_prev = (f"w{a - 1}_", f"o{a - 1}_ + ") if a else (f"({acc})1", "")
        weight = w_prev if taps[a] == 1 else f"{w_prev} * ({acc})H_I2F((i32)p[b{a} + {fl} + n{a} + k{a}])"
        lines.append(
            f"for (i64 k{a} = 0; k{a} < n{a}; k{a}++) {{ "
            f"const {acc} w{a}_ = {weight}; const i64 o{a}_ = {o_prev}p[b{a} + {fl} + k{a}];"
        )
    w_prev, o_prev = (f"w{last - 1}_ * ", f"o{last - 1}_ + ") if last else ("", "")
    lines.append(
        f"for (i64 kl_ = 0; kl_ < n{last}; kl_++) acc_ += {w_prev}({acc})H_I2F((i32)p[bw_ + {fl} + n{last} + kl_]) "
        f"* ({acc})in0[{o_prev}p[bw_ + {fl} + kl_]];" + " }" * last
    )
    if dtype in FLOATS:
        value = f"({t})acc_"
    else:
        info = np.iinfo(dtype)
        value = f"({t})H_MIN(H_MAX(rint(acc_), {info.min}.0f), {info.max}.0f)"
    lines.append(f"out0[ro_ + w_] = {outside}{value}; }}")
    return BITCASTS + " ".join(lines)


@register
class Resize(Lowering):
    ops = ("Resize", "Upsample")
    shape_inputs = (1, 2, 3)
    dtypes = frozenset(CTYPES) - {"bool"}

    def check(self, node):
        reason = super().check(node)
        if reason is None:
            reason = Attrs(node).reason()
        if reason is None and not node.in_rank(0):
            reason = "unknown rank" if node.in_rank(0) is None else "rank 0"
        if reason is None and Attrs(node).mode != "nearest" and node.in_dtype(0) not in FLOATS | SMALL_INTS:
            reason = f"{Attrs(node).mode} of {node.in_dtype(0)}"
        return reason

    def arguments(self, node, pc):
        """(scales, sizes, roi) as arrays, from the inputs of this node's opset or Upsample's attribute."""
        value = lambda i: pc.value(node.inputs[i]) if node.has_input(i) else None  # noqa: E731
        if node.op == "Upsample":
            scales = node.attr("scales") if node.attr("scales") is not None else value(1)
            return np.asarray(scales, np.float32), None, None
        if node.opset < 11:
            return value(1), None, None
        scales, sizes = value(2), value(3)
        if scales is not None and scales.size == 0:
            scales = None
        if sizes is not None and sizes.size == 0:
            sizes = None
        if (scales is None) == (sizes is None):
            raise ValueError("Resize needs exactly one of scales and sizes")
        return scales, sizes, value(1)

    def plan(self, node, pc):
        attrs = Attrs(node)
        shape = tuple(int(d) for d in pc.shape(node.inputs[0]))
        scales, sizes, roi = self.arguments(node, pc)
        count = len(sizes if sizes is not None else scales)
        expected = len(shape) if attrs.axes is None else len(attrs.axes)
        if count != expected:
            raise ValueError(f"{count} scales or sizes for {expected} axes")
        return attrs, shape, *geometry(attrs, shape, scales, sizes, roi)

    def infer(self, node, pc):
        return [self.plan(node, pc)[2]]

    def kernel(self, node):
        rank = node.in_rank(0)
        attrs = Attrs(node)
        nearest = attrs.mode == "nearest"

        compiled = static_taps(node, attrs, rank)

        def params(pc):
            _, shape, out, factors, roi, _ = self.plan(node, pc)
            header = [numel(out[:-1]), *out]
            taps, bases, tables = [], [], []
            at = 1 + 3 * rank
            for a, stride in enumerate(strides_of(shape)):
                index, weights, flags = axis_table(attrs, shape[a], out[a], factors[a], None if roi is None else roi[a])
                index, weights = _fit(index, weights, compiled[a])
                records = _records(index, weights, flags, stride, attrs)
                taps.append(index.shape[1])
                bases.append(at)
                tables += records
                at += len(records)
            return header + taps + bases + tables

        width = node.out_shape(0)[-1] if node.out_shape(0) is not None else None
        grain = (width if isinstance(width, int) else 64) * (1 if nearest else 4 ** min(rank, 2))
        body = _body(rank, node.in_dtype(0), attrs, compiled)
        return Kernel(
            [node.inputs[0]], [node.outputs[0]], VARIABLE_PARAMS, params, body=body, label="resize", grain=grain
        )
