"""hamr: the Heterogeneous Accelerator Migration Runtime."""

__version__ = "0.1.0"

from hamr.compiler import compile_model as compile  # noqa: E402
from hamr.errors import (  # noqa: E402
    FormatError,
    HamrError,
    InputError,
    KernelError,
    ModelLoadError,
    UnsupportedOpError,
)
from hamr.format.executable import Executable, load  # noqa: E402
from hamr.runtime.session import Session  # noqa: E402

__all__ = [
    "Executable",
    "FormatError",
    "HamrError",
    "InputError",
    "KernelError",
    "ModelLoadError",
    "Session",
    "UnsupportedOpError",
    "compile",
    "load",
]
