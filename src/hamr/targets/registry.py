"""The targets this build of hamr knows, by name."""

from __future__ import annotations

from hamr.errors import HamrError
from hamr.targets.cpu import CpuTarget
from hamr.targets.opencl import OpenCLTarget
from hamr.targets.reference import ReferenceTarget

TARGETS = {"cpu": CpuTarget(), "opencl": OpenCLTarget(), "reference": ReferenceTarget()}


def get_target(name: str):
    try:
        return TARGETS[name]
    except KeyError:
        raise HamrError(f"unknown target '{name}'; known targets: {', '.join(sorted(TARGETS))}") from None
