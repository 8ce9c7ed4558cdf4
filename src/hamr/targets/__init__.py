"""Compilation targets. Each sub-package turns the portable graph into one variant of an executable."""

from hamr.plugins import target_names
from hamr.targets.registry import TARGETS, get_target, targets_for

__all__ = ["TARGETS", "get_target", "target_names", "targets_for"]
