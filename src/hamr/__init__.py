"""hamr: the Heterogeneous Accelerator Migration Runtime."""

__version__ = "0.1.0"

from hamr.compiler import compile_model as compile  # noqa: E402
from hamr.errors import (  # noqa: E402
    CustomOpError,
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
from hamr import ops  # noqa: E402  (hamr.ops: custom ops)

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
