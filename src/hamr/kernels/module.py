"""A loaded kernel source and its launches, built once per device it runs on."""

from __future__ import annotations

from pathlib import Path

from hamr.errors import KernelSourceError
from hamr.frontends.cuda import convert_file, read_hk
from hamr.kernels.arguments import checked, launch_shape
from hamr.ops.kernel_source import KernelSource

TARGETS = ("cpu", "opencl", "cuda", "rocm")


class KernelModule:
    """The kernels of one portable source. ``launch`` runs one of them on a device, building for it on first use."""

    def __init__(self, source: KernelSource, refused: tuple[str, ...] = ()):
        self.source = source
        self.refused = refused  # what the CUDA converter refused, one line each (file:line: construct: why)
        self._built: dict[str, object] = {}

    @property
    def kernels(self) -> list[str]:
        return list(self.source.kernels)

    def launch(self, name: str, grid, block, *args, shared_bytes: int = 0, device: str | None = None) -> None:
        """Run kernel `name` over `grid` work-groups of `block` work-items each.

        `args` are the kernel's parameters in order (its dynamic ``__local`` buffer excepted: `shared_bytes`
        sizes it): NumPy arrays for buffers, numbers for scalars. Arrays go to the device and come back.
        """
        if name not in self.source.kernels and self.refused:
            raise KernelSourceError(
                f"kernel '{name}' is not among those converted ({', '.join(self.kernels)}); "
                f"the converter refused {len(self.refused)} construct(s), the first {self.refused[0]}"
            )
        kernel = self.source.kernel(name)
        grid, block = launch_shape(grid, block, name)
        arrays = checked(kernel, args)
        if not isinstance(shared_bytes, int) or shared_bytes < 0:
            raise KernelSourceError(f"launch of '{name}': shared_bytes must be an int >= 0, got {shared_bytes!r}")
        if shared_bytes and kernel.local_param is None:
            raise KernelSourceError(f"launch of '{name}': shared_bytes given, but the kernel has no __local parameter")
        self._on(_device_id(device)).launch(kernel, grid, block, arrays, shared_bytes)

    def compile_for(self, target: str, arch: str | None = None) -> dict[str, bytes]:
        """Build for `target` without running (cuda, rocm: code objects per architecture; cpu, opencl: none)."""
        if target not in TARGETS:
            raise KernelSourceError(f"unknown target '{target}' (targets: {', '.join(TARGETS)})")
        if target in ("cuda", "rocm"):
            from hamr.kernels.gpu import build

            return build(self.source, target, arch)
        self._on("cpu" if target == "cpu" else "opencl:0")
        return {}

    def _on(self, device_id: str):
        built = self._built.get(device_id)
        if built is None:
            built = self._built[device_id] = _launcher(self.source, device_id)
        return built


def _device_id(device: str | None) -> str:
    from hamr.runtime.devices import available_devices, find_device

    if device is None:
        return available_devices()[0].id
    if device in ("opencl", "cuda", "rocm"):
        device = f"{device}:0"
    return find_device(device).id


def _launcher(source: KernelSource, device_id: str):
    if device_id == "cpu":
        from hamr.kernels.host import HostKernels

        return HostKernels(source)
    if device_id.startswith("opencl:"):
        from hamr.kernels.opencl import OpenCLKernels

        return OpenCLKernels(source, device_id)
    from hamr.kernels.gpu import GpuKernels

    return GpuKernels(source, device_id)


def from_source(text: str, origin: str = "<kernels>") -> KernelModule:
    """A module from hamr kernel C text."""
    return KernelModule(KernelSource(text, origin))


def load(path: str | Path) -> KernelModule:
    """A module from a ``.hk`` file (``hamr convert``'s output) or a CUDA ``.cu`` file, converted on the way in."""
    path = Path(path)
    if path.suffix == ".cu":
        conversion = convert_file(path)
        if not conversion.kernels:
            raise KernelSourceError(f"{path}: no kernel could be converted ({len(conversion.refused)} refused)")
        return KernelModule(KernelSource(conversion.source, str(path)), tuple(map(str, conversion.refused)))
    source, _ = read_hk(path)
    return from_source(source, str(path))
