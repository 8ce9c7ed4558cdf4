from hamr.targets.rocm.target import RocmTarget

__all__ = ["RocmTarget"]
