"""The default optimisation pipeline for the portable graph."""

from __future__ import annotations

import onnx_ir as ir
import onnx_ir.passes.common as common

from hamr.ir.passes.constant_folding import ConstantFoldingPass
from hamr.ir.passes.custom_shapes import CustomOpShapePass
from hamr.ir.passes.equal_dims import EqualDimsPass
from hamr.ir.passes.fold_batchnorm import FoldBatchNormIntoConvPass
from hamr.ir.passes.fuse_normalization import FuseNormalizationPass
from hamr.ir.passes.identity import IdentityEliminationPass
from hamr.ir.passes.if_tails import IfTailPass
from hamr.ir.passes.manager import PassManager, PassRecord
from hamr.ir.passes.noop import NoOpToIdentityPass
from hamr.ir.passes.reduce_rank import ReduceRankPass
from hamr.ir.passes.scale_after_matmul import ScaleAfterMatMulPass
from hamr.ir.passes.swap_last_axes import SwapLastAxesPass


def default_passes() -> list[ir.passes.PassBase]:
    return [
        common.RemoveInitializersFromInputsPass(),  # IR<4 models list weights as inputs
        IfTailPass(),  # what follows a rank-changing If moves into its branches, where ranks are known
        common.NameFixPass(),  # after IfTailPass: an inlined branch's node names may repeat the graph's
        common.ShapeInferencePass(strict_mode=False),
        CustomOpShapePass(),  # custom ops' shape functions; a no-op for models of onnx's own domains
        ReduceRankPass(),
        ConstantFoldingPass(),
        FoldBatchNormIntoConvPass(),
        FuseNormalizationPass(),  # after constant folding: eps and exponents are initializers by then
        ScaleAfterMatMulPass(),
        SwapLastAxesPass(),
        NoOpToIdentityPass(),
        IdentityEliminationPass(),
        common.CommonSubexpressionEliminationPass(),
        common.RemoveUnusedNodesPass(),
        common.TopologicalSortPass(),
        common.ShapeInferencePass(strict_mode=False),
        CustomOpShapePass(),
        EqualDimsPass(),  # last: shape inference would name the dims afresh
    ]


def optimise(model: ir.Model) -> tuple[ir.Model, list[PassRecord]]:
    manager = PassManager(default_passes())
    model = manager(model)
    return model, manager.records
