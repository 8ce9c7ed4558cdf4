"""Compilation targets. Each sub-package turns the portable graph into one variant of an executable."""

from hamr.targets.registry import TARGETS, get_target

__all__ = ["TARGETS", "get_target"]
