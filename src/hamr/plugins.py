"""hamr's plugin groups (entry points): how one is named in a message, and the targets' group.

Targets register through the ``hamr.targets`` entry points (pyproject.toml), as drivers do
through ``hamr.drivers`` (``pool/drivers/loader.py``) and custom ops through ``hamr.ops``
(``ops/registry.py``), so that a target's name is written once. This module sits below
every layer: it reads names from the installed metadata and imports no target;
``targets/registry.py`` loads them.
"""

from __future__ import annotations

import functools
import importlib.metadata

TARGETS_GROUP = "hamr.targets"

#: The target that interprets the graph with onnx.reference (and custom ops' NumPy
#: references); every other target is native, and falls back to it node by node.
REFERENCE_TARGET = "reference"

#: hamr's own ``hamr.targets`` entry points, as pyproject.toml declares them. Used only when
#: the installed metadata has no such group: hamr run from a source tree on PYTHONPATH, or
#: installed before the group existed (``pip install -e .`` registers it).
BUILTIN_TARGETS = {
    "cpu": "hamr.targets.cpu:CpuTarget",
    "cuda": "hamr.targets.cuda:CudaTarget",
    "opencl": "hamr.targets.opencl:OpenCLTarget",
    "reference": "hamr.targets.reference:ReferenceTarget",
    "rocm": "hamr.targets.rocm:RocmTarget",
}


def entry_point_label(ep: importlib.metadata.EntryPoint) -> str:
    """``'name = module:attr' (from dist version)``: how messages name an entry point."""
    dist = getattr(ep, "dist", None)
    source = f" (from {dist.name} {dist.version})" if dist is not None else ""
    return f"'{ep.name} = {ep.value}'{source}"


@functools.lru_cache(maxsize=1)
def target_entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    """name -> entry point of every registered target, in preference order (`target_names`)."""
    found = {ep.name: ep for ep in sorted(importlib.metadata.entry_points(group=TARGETS_GROUP), key=lambda e: e.name)}
    if REFERENCE_TARGET not in found:  # no hamr.targets metadata: hamr's own table
        found = {
            name: importlib.metadata.EntryPoint(name, value, TARGETS_GROUP)
            for name, value in sorted(BUILTIN_TARGETS.items())
        } | found
    return {name: found[name] for name in sorted(found, key=lambda n: (n == REFERENCE_TARGET, n))}


def target_names() -> tuple[str, ...]:
    """Every registered target, in the order variants are built and preferred in: by name,
    the reference target last (it is every other target's fallback)."""
    return tuple(target_entry_points())


def native_target_names() -> tuple[str, ...]:
    """The targets a custom op may bring a native kernel for: every target but the reference one."""
    return tuple(name for name in target_names() if name != REFERENCE_TARGET)
