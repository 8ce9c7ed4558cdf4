"""Removes Identity nodes from the main graph.

onnx-ir's IdentityEliminationPass also works inside subgraphs, where it can rename an
outer-scope value to a branch output and break If/Loop bodies; this pass stays in the
main graph, where renaming is safe.
"""

from __future__ import annotations

import onnx_ir as ir

from hamr.ir.domains import is_onnx_domain


class IdentityEliminationPass(ir.passes.InPlacePass):
    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        modified = False
        for node in list(graph):
            if node.op_type != "Identity" or not is_onnx_domain(node.domain):
                continue
            source, out = node.inputs[0], node.outputs[0]
            if source is None:
                continue
            if not out.is_graph_output():
                out.replace_all_uses_with(source)
            elif source.producer() is not None and source.producer().graph is graph and not source.is_graph_output():
                name = out.name
                out.replace_all_uses_with(source, replace_graph_outputs=True)
                out.name = None
                source.name = name
            else:
                continue  # graph input straight to graph output: the node must stay
            graph.remove(node, safe=True)
            modified = True
        return ir.passes.PassResult(model, modified)
