"""hamr: the Heterogeneous Accelerator Migration Runtime.

The public names are imported on first use (PEP 562), so that importing one module of hamr
(``hamr.errors``, the pool's data-plane client ``hamr.pool.wire.client``) does not load onnx and the
compiler.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

#: public name -> (module, attribute in it; None: the module itself)
_EXPORTS: dict[str, tuple[str, str | None]] = {
    "compile": ("hamr.compiler", "compile_model"),
    "CustomOpError": ("hamr.errors", "CustomOpError"),
    "FormatError": ("hamr.errors", "FormatError"),
    "HamrError": ("hamr.errors", "HamrError"),
    "InputError": ("hamr.errors", "InputError"),
    "KernelError": ("hamr.errors", "KernelError"),
    "ModelLoadError": ("hamr.errors", "ModelLoadError"),
    "UnsupportedOpError": ("hamr.errors", "UnsupportedOpError"),
    "Executable": ("hamr.format.executable", "Executable"),
    "load": ("hamr.format.executable", "load"),
    "Device": ("hamr.runtime.devices", "Device"),
    "devices": ("hamr.runtime.devices", "devices"),
    "Profile": ("hamr.profiling", "Profile"),
    "Migration": ("hamr.runtime.session", "Migration"),
    "Session": ("hamr.runtime.session", "Session"),
    "IOBinding": ("hamr.runtime.binding", "IOBinding"),
    "ops": ("hamr.ops", None),  # hamr.ops: custom ops
}

__all__ = [
    "CustomOpError",
    "Device",
    "Executable",
    "IOBinding",
    "Migration",
    "Profile",
    "FormatError",
    "HamrError",
    "InputError",
    "KernelError",
    "ModelLoadError",
    "Session",
    "UnsupportedOpError",
    "compile",
    "devices",
    "load",
    "ops",
]


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(f"module 'hamr' has no attribute {name!r}")
    try:
        module, attribute = _EXPORTS[name]
    except KeyError:  # a submodule (hamr.errors, hamr.runtime ...), as when __init__ imported them all
        module, attribute = f"hamr.{name}", None
    try:
        value = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        raise AttributeError(f"module 'hamr' has no attribute {name!r}") from None
    if attribute is not None:
        value = getattr(value, attribute)
    globals()[name] = value  # once: later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what the names are, for type checkers and editors
    from hamr import ops
    from hamr.compiler import compile_model as compile
    from hamr.errors import (
        CustomOpError,
        FormatError,
        HamrError,
        InputError,
        KernelError,
        ModelLoadError,
        UnsupportedOpError,
    )
    from hamr.format.executable import Executable, load
    from hamr.profiling import Profile
    from hamr.runtime.binding import IOBinding
    from hamr.runtime.devices import Device, devices
    from hamr.runtime.session import Migration, Session
