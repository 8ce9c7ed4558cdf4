"""onnx.reference one node at a time, below the targets: which ops it implements (`kernels.py`),
the spec fixes every ReferenceEvaluator hamr builds takes (`overrides.py`) and the registered
custom ops as onnx.reference op classes (`custom.py`). Constant folding, the native lowering's
placement and plans, and the reference target all use it."""
