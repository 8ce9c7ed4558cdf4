from hamr.targets.cuda.target import CudaTarget

__all__ = ["CudaTarget"]
