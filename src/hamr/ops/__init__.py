"""Custom ops: ops of your own domain that hamr compiles, shapes and runs on every target.

Define a :class:`CustomOp` (shape/type function, NumPy reference, optional per-target
:class:`Elementwise` kernels), then either :func:`register` it in the process or publish
it from a package under the ``hamr.ops`` entry-point group. docs/api.md ("Custom ops")
describes the contract.
"""

from hamr.ops.definition import STANDARD_DOMAINS, CustomOp, Elementwise, broadcast, broadcast_shape
from hamr.ops.grid_kernel import GridKernel, Launch
from hamr.ops.registry import ENTRY_POINT_GROUP, lookup, register, registered, reload, unregister
from hamr.plugins import native_target_names  # the targets a kernel may be for

__all__ = [
    "ENTRY_POINT_GROUP",
    "STANDARD_DOMAINS",
    "CustomOp",
    "Elementwise",
    "GridKernel",
    "Launch",
    "broadcast",
    "broadcast_shape",
    "lookup",
    "native_target_names",
    "register",
    "registered",
    "reload",
    "unregister",
]


def __getattr__(name: str):
    if name == "NATIVE_TARGETS":  # the tuple of native target names, as hamr 0.1 exported it
        return native_target_names()
    raise AttributeError(f"module 'hamr.ops' has no attribute {name!r}")
