"""Col2Im: one work item per image element sums the columns of every block position that covers it."""

from __future__ import annotations

from hamr.ir.dtypes import NUMERIC, ctype
from hamr.targets.native.ops.base import Kernel, Lowering, numel
from hamr.targets.native.ops.movement import coords, values_of
from hamr.targets.native.ops.registry import register


@register
class Col2Im(Lowering):
    ops = ("Col2Im",)
    shape_inputs = (1, 2)
    dtypes = NUMERIC

    def check(self, node):
        reason = super().check(node)
        shape = node.in_shape(1)
        if reason is None and (shape is None or len(shape) != 1 or not isinstance(shape[0], int)):
            reason = "image_shape length not static"
        return reason

    def geometry(self, node, pc):
        """(image dims, block dims, blocks per dim, strides, begin pads, dilations)."""
        image, block = values_of(pc, node.inputs[1]), values_of(pc, node.inputs[2])
        r = len(image)
        strides = list(node.attr("strides") or [1] * r)
        dil = list(node.attr("dilations") or [1] * r)
        pads = list(node.attr("pads") or [0] * (2 * r))
        counts = [(image[a] + pads[a] + pads[a + r] - dil[a] * (block[a] - 1) - 1) // strides[a] + 1 for a in range(r)]
        n, cols, length = pc.shape(node.inputs[0])
        if len(block) != r or cols % max(numel(block), 1) or numel(counts) != length:
            raise ValueError(f"columns of shape {(n, cols, length)} do not fit image {image} and block {block}")
        return image, block, counts, strides, pads[:r], dil

    def infer(self, node, pc):
        n, cols, _ = pc.shape(node.inputs[0])
        image, block, *_ = self.geometry(node, pc)
        return [(n, cols // numel(block), *image)]

    def kernel(self, node):
        r = node.in_shape(1)[0]
        t = ctype(node.in_dtype(0))

        def params(pc):
            out = self.infer(node, pc)[0]
            image, block, counts, strides, pads, dil = self.geometry(node, pc)
            return [numel(out), *out, *block, *counts, *strides, *pads, *dil]

        at = lambda group, a: f"p[{3 + r + group * r + a}]"  # noqa: E731  (0 block, 1 counts, 2 strides, 3 pads, 4 dils)
        ks = " * ".join(at(0, a) for a in range(r))
        ll = " * ".join(at(1, a) for a in range(r))
        lines = [coords(2 + r, 1), f"const i64 KS_ = {ks}, LL_ = {ll};", f"{t} acc_ = 0;"]
        lines.append("for (i64 k_ = 0; k_ < KS_; k_++) { i64 q_ = k_, l_ = 0, m_ = 1; int ok_ = 1;")
        for a in range(r - 1, -1, -1):
            lines.append(
                f"{{ const i64 ka_ = q_ % {at(0, a)}; q_ /= {at(0, a)}; "
                f"const i64 s_ = c{2 + a} + {at(3, a)} - ka_ * {at(4, a)}, o_ = s_ / {at(2, a)}; "
                f"ok_ = ok_ && s_ >= 0 && s_ % {at(2, a)} == 0 && o_ < {at(1, a)}; l_ += o_ * m_; m_ *= {at(1, a)}; }}"
            )
        lines.append("if (ok_) acc_ += in0[((c0 * p[2] + c1) * KS_ + k_) * LL_ + l_]; }")
        lines.append("out0[gid] = acc_;")
        return Kernel(
            [node.inputs[0]], [node.outputs[0]], 3 + 6 * r, params, body=" ".join(lines), label="col2im", grain=9
        )
