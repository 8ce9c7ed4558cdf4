from hamr.targets.opencl.target import OpenCLTarget

__all__ = ["OpenCLTarget"]
