"""Devices present on this host, what each has free, and which targets run on it.

Discovery never fails because hardware or a driver library is absent: a missing
OpenCL loader, platform or device simply contributes no devices.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass, field

from hamr.errors import HamrError


@dataclass(frozen=True)
class Device:
    id: str
    kind: str  # cpu | gpu | accelerator
    vendor: str
    architecture: str
    compute_units: int
    memory_total: int | None
    targets: tuple[str, ...] = field(default_factory=tuple)
    memory_free: int | None = None  # bytes, where the driver tells
    utilisation: float | None = None  # 0..1, where the driver tells
    driver: str = ""

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


def memory_available() -> int | None:
    """MemAvailable from /proc/meminfo (what can be allocated without swapping)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cpu_times() -> tuple[int, int] | None:
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields), idle


def cpu_utilisation(window: float = 0.05) -> float | None:
    """Share of CPU time not idle over a short window, from /proc/stat."""
    first = _cpu_times()
    if first is None:
        return None
    time.sleep(window)
    second = _cpu_times()
    total, idle = second[0] - first[0], second[1] - first[1]
    return round(1 - idle / total, 3) if total > 0 else None


def host_cpu(utilisation: float | None = None) -> Device:
    from hamr.targets import targets_for
    from hamr.targets.cpu import isa

    return Device(
        id="cpu",
        kind="cpu",
        vendor=_cpu_vendor(),
        architecture=f"{platform.machine()} ({isa.host_levels()[0]})",
        compute_units=os.cpu_count() or 1,
        memory_total=_memory_total(),
        targets=targets_for("cpu"),
        memory_free=memory_available(),
        utilisation=utilisation,
        driver="host",
    )


def opencl_devices(host_free: int | None = None) -> list[Device]:
    from hamr.targets import targets_for
    from hamr.targets.opencl.devices import cl_devices, device_kind

    found = []
    for index, dev in enumerate(cl_devices()):
        kind = device_kind(dev)
        total = int(dev.global_mem_size)
        # OpenCL has no portable free-memory query; a CPU device allocates from host memory.
        free = min(total, host_free) if kind == "cpu" and host_free is not None else None
        found.append(
            Device(
                id=f"opencl:{index}",
                kind=kind,
                vendor=dev.vendor.strip(),
                architecture=dev.name.strip(),
                compute_units=int(dev.max_compute_units),
                memory_total=total,
                targets=targets_for("opencl"),
                memory_free=free,
                driver=f"opencl ({dev.platform.name.strip()} {dev.driver_version.strip()})",
            )
        )
    return found


def gpu_devices() -> list[Device]:
    """NVIDIA GPUs through the CUDA driver, AMD GPUs through HIP; none where a driver is missing."""
    from hamr.targets import targets_for
    from hamr.targets.cuda.driver import devices as cuda_devices
    from hamr.targets.rocm.hip import devices as rocm_devices

    found = []
    for prefix, vendor, listed in (("cuda", "NVIDIA", cuda_devices()), ("rocm", "AMD", rocm_devices())):
        for dev in listed:
            found.append(
                Device(
                    id=f"{prefix}:{dev.index}",
                    kind="gpu",
                    vendor=vendor,
                    architecture=f"{dev.name} ({dev.arch})",
                    compute_units=dev.multiprocessors,
                    memory_total=dev.memory_total,
                    targets=targets_for(prefix),
                    driver=f"{prefix} {dev.driver_version}",
                )
            )
    return found


def available_devices(utilisation: bool = False) -> list[Device]:
    """Most preferred first: GPUs, other accelerators, then the host CPU, then OpenCL devices that are CPUs."""
    cpu = host_cpu(cpu_utilisation() if utilisation else None)
    opencl = opencl_devices(cpu.memory_free)
    accelerators = [d for d in opencl if d.kind != "cpu"]
    return gpu_devices() + accelerators + [cpu] + [d for d in opencl if d.kind == "cpu"]


def devices() -> list[Device]:
    """Every device present, with free memory and utilisation where the driver exposes them."""
    return available_devices(utilisation=True)


def find_device(device_id: str) -> Device:
    found = available_devices()
    for device in found:
        if device.id == device_id:
            return device
    present = ", ".join(d.id for d in found)
    raise HamrError(f"device '{device_id}' is not present on this host (present: {present})")
