"""What a driver reports about one device, and what a driver provides.

A vendor adds a device kind by shipping a package with an entry point in group
`hamr.drivers` that resolves to a `Driver`: no fork of hamr is needed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Protocol

HEALTHY, DEGRADED, UNHEALTHY = "healthy", "degraded", "unhealthy"


@dataclass(frozen=True)
class DeviceReport:
    uuid: str  # stable across restarts where the hardware has one (NVML UUID, PCI bus id...)
    driver: str  # the driver's name: cpu, opencl, nvidia, amd, ...
    vendor: str
    kind: str  # cpu | gpu | npu | fpga | accelerator
    architecture: str  # e.g. x86-64-v4, sm_90, gfx942, the OpenCL device name
    memory_total: int  # bytes
    memory_free: int | None  # bytes, where the driver tells
    compute_units: int
    health: str = HEALTHY
    targets: tuple[str, ...] = field(default_factory=tuple)  # hamr targets whose variants run here
    local_id: str = ""  # the id a Session on that node takes (cpu, opencl:0, cuda:0)
    details: dict = field(default_factory=dict)  # driver-specific facts (temperature, utilisation, ...)

    def to_json(self) -> dict:
        data = asdict(self)
        data["targets"] = list(self.targets)
        return data


class Driver(Protocol):
    name: str

    def present(self) -> tuple[bool, str]:
        """(True, "") when the library and hardware are there; else (False, why not) -- never raises."""
        ...

    def discover(self) -> list[DeviceReport]:
        """Every device of this kind on this node; [] when not present."""
        ...
