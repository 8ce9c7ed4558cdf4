"""The graph layer: onnx-ir graphs, their signature, and the optimisation passes."""
