"""Devices present on this host, and which targets run on each."""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, field

from hamr.errors import HamrError


@dataclass(frozen=True)
class Device:
    id: str
    kind: str
    vendor: str
    architecture: str
    compute_units: int
    memory_total: int | None
    targets: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict:
        return asdict(self)


def _cpu_vendor() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("vendor_id", "CPU implementer")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_total() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def host_cpu() -> Device:
    return Device(
        id="cpu",
        kind="cpu",
        vendor=_cpu_vendor(),
        architecture=platform.machine(),
        compute_units=os.cpu_count() or 1,
        memory_total=_memory_total(),
        targets=("cpu", "reference"),
    )


def opencl_devices() -> list[Device]:
    from hamr.targets.opencl.devices import cl_devices, device_kind

    found = []
    for index, dev in enumerate(cl_devices()):
        found.append(
            Device(
                id=f"opencl:{index}",
                kind=device_kind(dev),
                vendor=dev.vendor.strip(),
                architecture=dev.name.strip(),
                compute_units=int(dev.max_compute_units),
                memory_total=int(dev.global_mem_size),
                targets=("opencl",),
            )
        )
    return found


def available_devices() -> list[Device]:
    """Most preferred first: accelerators, then the host CPU, then OpenCL devices that are CPUs."""
    opencl = opencl_devices()
    accelerators = [d for d in opencl if d.kind != "cpu"]
    return accelerators + [host_cpu()] + [d for d in opencl if d.kind == "cpu"]


def select_device(request: str, variants: list[str]) -> tuple[Device, str]:
    """Pick (device, target) for `request` ('auto' or a device id) among the executable's variants."""
    devices = available_devices()
    if request == "auto":
        candidates = devices
    else:
        candidates = [d for d in devices if d.id == request]
        if not candidates:
            present = ", ".join(d.id for d in devices)
            raise HamrError(f"device '{request}' is not present on this host (present: {present})")
    for device in candidates:
        for target in device.targets:
            if target in variants:
                return device, target
    raise HamrError(
        f"no variant of this executable runs on {request} "
        f"(variants: {', '.join(variants) or 'none'}; recompile with a matching --target)"
    )
