"""Shape-only ops: views that reuse their input's buffer, and host ops evaluated while planning."""

from __future__ import annotations

import numpy as np

from hamr.ir.dtypes import CTYPES, STORAGE
from hamr.targets.native.ops.base import Lowering, normalize_axis, numel
from hamr.targets.native.ops.registry import register


class View(Lowering):
    kind = "view"

    def check(self, node):
        return None if node.in_dtype(0) in CTYPES or node.in_dtype(0) in STORAGE else f"dtype {node.in_dtype(0)}"


@register
class Reshape(View):
    ops = ("Reshape",)
    shape_inputs = (1,)

    def infer(self, node, pc):
        src = pc.shape(node.inputs[0])
        target = [int(d) for d in pc.value(node.inputs[1]).reshape(-1)]
        allowzero = node.attr("allowzero", 0)
        out = [src[i] if d == 0 and not allowzero else d for i, d in enumerate(target)]
        if -1 in out:
            known = numel([d for d in out if d != -1])
            out[out.index(-1)] = numel(src) // known if known else 0
        if numel(out) != numel(src) or any(d < 0 for d in out):
            raise ValueError(f"cannot reshape {list(src)} ({numel(src)} elements) to {target}")
        return [tuple(out)]


@register
class Flatten(View):
    ops = ("Flatten",)

    def infer(self, node, pc):
        src = pc.shape(node.inputs[0])
        axis = normalize_axis(node.attr("axis", 1), len(src))
        return [(numel(src[:axis]), numel(src[axis:]))]


def _axes(node, pc):
    if node.has_input(1):
        return [int(a) for a in pc.value(node.inputs[1]).reshape(-1)]
    axes = node.attr("axes")
    return None if axes is None else list(axes)


@register
class Squeeze(View):
    ops = ("Squeeze",)
    shape_inputs = (1,)

    def infer(self, node, pc):
        src = pc.shape(node.inputs[0])
        axes = _axes(node, pc)
        if axes is None:
            return [tuple(d for d in src if d != 1)]
        drop = {normalize_axis(a, len(src)) for a in axes}
        return [tuple(d for i, d in enumerate(src) if i not in drop)]


@register
class Unsqueeze(View):
    ops = ("Unsqueeze",)
    shape_inputs = (1,)

    def infer(self, node, pc):
        src = list(pc.shape(node.inputs[0]))
        axes = _axes(node, pc)
        rank = len(src) + len(axes)
        for a in sorted(normalize_axis(a, rank) for a in axes):
            src.insert(a, 1)
        return [tuple(src)]


class Host(Lowering):
    kind = "host"

    def check(self, node):
        return None


@register
class ShapeOp(Host):
    ops = ("Shape",)

    def infer(self, node, pc):
        return [self.host(node, pc)[0].shape]

    def host(self, node, pc):
        dims = pc.shape(node.inputs[0])
        rank = len(dims)
        start = node.attr("start", 0)
        end = node.attr("end", None)
        start = min(max(normalize_axis(start, rank), 0), rank)
        end = rank if end is None else min(max(normalize_axis(end, rank), 0), rank)
        return [np.array(dims[start:end], dtype=np.int64)]


@register
class Size(Host):
    ops = ("Size",)

    def infer(self, node, pc):
        return [()]

    def host(self, node, pc):
        return [np.array(numel(pc.shape(node.inputs[0])), dtype=np.int64)]
