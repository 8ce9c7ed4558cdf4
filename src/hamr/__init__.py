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
from hamr.runtime.devices import Device, devices  # noqa: E402
from hamr.runtime.profiling import Profile  # noqa: E402
from hamr.runtime.session import Migration, Session  # noqa: E402
from hamr.runtime.binding import IOBinding  # noqa: E402

__all__ = [
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
]
