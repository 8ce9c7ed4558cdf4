"""GEMM anchors with their fused epilogues as Triton kernels, compiled ahead of time for the GPU targets."""
