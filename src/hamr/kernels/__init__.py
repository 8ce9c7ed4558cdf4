"""Portable kernels from Python: load hamr kernel C (a ``.hk`` file, or CUDA C converted on the way in)
and launch its kernels on any device hamr has.

    module = hamr.kernels.load("saxpy.cu")
    module.launch("saxpy", grid=(n // 256,), block=(256,), n, 2.0, x, y, device="opencl:0")

Arrays are copied to the device and back, so a kernel's writes show in them when ``launch`` returns.
docs/kernels.md describes the form and the launch.
"""

from hamr.kernels.module import KernelModule, from_source, load

__all__ = ["KernelModule", "from_source", "load"]
