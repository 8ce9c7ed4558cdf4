from hamr.targets.cpu.target import CpuTarget

__all__ = ["CpuTarget"]
