"""Graph passes and the manager that runs them."""

from hamr.ir.passes.manager import PassManager, PassRecord
from hamr.ir.passes.pipeline import optimise

__all__ = ["PassManager", "PassRecord", "optimise"]
