"""Renderers: one class per native dialect turns a lowered model into source text.

``base.Renderer`` holds what every dialect shares (argument lists, the STORE macros of
anchors, custom kernels from ``Kernel.sources``); ``c.CRenderer`` (C with OpenMP, the cpu
target) and ``opencl.OpenCLRenderer`` (OpenCL C) add their prelude, qualifiers, map kernels
and launch. ``template.render`` is the one templating function of code generation.
"""
