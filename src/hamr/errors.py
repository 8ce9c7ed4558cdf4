"""Typed errors. Each carries one line meant for the person at the terminal."""


class HamrError(Exception):
    """Base of every error hamr raises on purpose; the CLI prints it as one line, exit 2."""


class ModelLoadError(HamrError):
    """The ONNX model is missing, malformed or invalid."""


class UnsupportedOpError(HamrError):
    """A node uses an op that no requested target can run."""

    def __init__(self, message: str, ops: list[str] | None = None):
        super().__init__(message)
        self.ops = ops or []


class FormatError(HamrError):
    """A .hamr file is corrupt, truncated, or from an incompatible format version."""


class InputError(HamrError):
    """Feeds do not match the executable's signature."""


class CustomOpError(HamrError):
    """A custom op definition, its plugin (entry point) or its shape function is broken."""


class KernelSourceError(HamrError):
    """A portable kernel source (hamr kernel C, a .hk file, a converted .cu) or a launch of it is wrong."""


class KernelError(HamrError):
    """A kernel failed while running; names the node and the device."""

    def __init__(self, message: str, node: str = "", device: str = ""):
        super().__init__(message)
        self.node = node
        self.device = device


def first_line(exc: BaseException, *, with_type: bool = True) -> str:
    """The first line of an exception's message, as ``Type: line`` (the bare line with
    ``with_type=False``); the type's name alone when the message is empty."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if with_type else text.splitlines()[0]
