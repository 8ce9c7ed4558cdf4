"""Custom ops with a grid kernel (the portable form) as native custom kernels, in every dialect.

The node's kernel is the op's hamr kernel C entry rendered for the dialect (render/portable.py):
a launch of its own, which no neighbour fuses into. Its params are the grid, the block and the
scalars that the op's ``launch`` function computes from the concrete input shapes when a plan is
made, so new shapes never need a rebuild.
"""

from __future__ import annotations

import numpy as np

from hamr.errors import CustomOpError
from hamr.ir.node_view import NodeView
from hamr.ops.definition import CustomOp
from hamr.targets.native.ops.base import VARIABLE_PARAMS, Kernel, Lowering, Source
from hamr.targets.native.render.portable import model_template
from hamr.targets.native.render.portable_preludes import MODEL_PRELUDES

DIALECTS = ("c", "opencl", "cuda", "hip")


class GridKernelLowering(Lowering):
    def __init__(self, op: CustomOp):
        self.op = op
        self.grid = op.grid_kernel
        self.ops = (op.name,)
        self._templates = {d: model_template(self.grid.parsed, self.grid.entry, d) for d in DIALECTS}

    def check(self, node: NodeView) -> str | None:
        buffers = self.grid.buffers
        n_in, n_out = len(node.inputs), len(node.outputs)
        if n_in + n_out != len(buffers):
            return f"kernel '{self.grid.entry}' has {len(buffers)} buffers for {n_in} input(s) and {n_out} output(s)"
        for i in range(n_in):
            if not node.has_input(i):
                return f"input {i} is absent; a grid kernel reads every buffer"
            if node.in_dtype(i) != buffers[i].dtype:
                return f"input {i} is {node.in_dtype(i)}, kernel '{self.grid.entry}' reads {buffers[i].ctype}"
        for k in range(n_out):
            if node.out_dtype(k) is not None and node.out_dtype(k) != buffers[n_in + k].dtype:
                return f"output {k} is {node.out_dtype(k)}, kernel '{self.grid.entry}' writes {buffers[n_in + k].ctype}"
        return None

    def dialects(self, node: NodeView):
        return DIALECTS

    def _attributes(self, node: NodeView) -> dict:
        return self.op.resolve({name: node.attr(name) for name in node.node.attributes})

    def infer(self, node: NodeView, pc):
        shapes = [tuple(pc.shape(name)) for name in node.inputs]
        dtypes = [node.in_dtype(i) for i in range(len(node.inputs))]
        found = self.op.infer_outputs(dtypes, shapes, self._attributes(node), len(node.outputs), node.name)
        for k, (_, shape) in enumerate(found):
            if shape is None or not all(isinstance(d, int) for d in shape):
                raise CustomOpError(f"custom op {self.op.label}: output {k} has no concrete shape for inputs {shapes}")
        return [tuple(shape) for _, shape in found]

    def kernel(self, node: NodeView) -> Kernel:
        op, grid = self.op, self.grid
        names = list(node.inputs)

        def params(pc) -> list[int]:
            launch = grid.launch_for([tuple(pc.shape(n)) for n in names], self._attributes(node), op.label)
            dims = [
                tuple(launch.grid) + (1,) * (3 - len(launch.grid)),
                tuple(launch.block) + (1,) * (3 - len(launch.block)),
            ]
            scalars = [
                int(np.float64(v).view(np.int64)) if p.ctype in ("float", "double") else int(v)
                for p, v in zip(grid.scalars, launch.scalars)
            ]
            return [int(d) for dim in dims for d in dim] + scalars

        def launch_range(p):
            return tuple(int(p[d]) * int(p[3 + d]) for d in range(3)), tuple(int(p[3 + d]) for d in range(3))

        sources = {
            dialect: Source(template, range=launch_range, prelude=MODEL_PRELUDES[dialect])
            for dialect, template in self._templates.items()
        }
        return Kernel(names, list(node.outputs), VARIABLE_PARAMS, params, sources=sources, label=op.label)
